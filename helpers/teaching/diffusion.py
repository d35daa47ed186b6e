"""How Stable Diffusion works, as small functions on a real pipeline's parts, checked against diffusers.

The equations of DDPM (Ho et al. 2020), DDIM (Song et al. 2021), improved DDPM's cosine schedule
(Nichol and Dhariwal 2021), latent diffusion (Rombach et al. 2022) and classifier-free guidance
(Ho and Salimans 2022), each a few lines of code; and `denoise`, a hand-written sampling loop that gives
the pipeline's own image for the same seed (a test asserts it for SD 1.x and SDXL).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from ..base.schedulers import set_scheduler

# --- the forward process -------------------------------------------------------------------------


def noise_schedule(name: str = "scaled_linear", steps: int = 1000) -> torch.Tensor:
    """alpha-bar_t = prod(1 - beta_s, s <= t) for a named beta schedule, as diffusers defines it.

    linear: DDPM (beta 1e-4 .. 0.02); scaled_linear: Stable Diffusion (linear in sqrt(beta), 0.00085 .. 0.012);
    squaredcos_cap_v2: improved DDPM's cosine schedule.
    """
    from diffusers import DDPMScheduler

    kw = {"beta_start": 0.00085, "beta_end": 0.012} if name == "scaled_linear" else {}
    return DDPMScheduler(num_train_timesteps=steps, beta_schedule=name, **kw).alphas_cumprod


def snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio of each timestep: alpha-bar / (1 - alpha-bar)."""
    return alphas_cumprod / (1 - alphas_cumprod)


def q_sample(x0: torch.Tensor, t: int, alphas_cumprod: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t ~ q(x_t | x_0) in closed form: sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) noise (DDPM eq. 4)."""
    ab = alphas_cumprod[t]
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def plot_schedules(names=("linear", "scaled_linear", "squaredcos_cap_v2")):
    """alpha-bar and log-SNR against t for each schedule (a matplotlib figure)."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    for name in names:
        ab = noise_schedule(name)
        a.plot(ab.numpy(), label=name)
        b.plot(snr(ab).log().numpy(), label=name)
    a.set(title="alpha-bar: signal left at step t", xlabel="t")
    b.set(title="log SNR", xlabel="t")
    a.legend()
    fig.tight_layout()
    return fig


def to_tensor(image: Image.Image) -> torch.Tensor:
    """A PIL image as a (1, 3, H, W) tensor in [-1, 1], the range the VAE and diffusion work in."""
    x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1)
    return x.permute(2, 0, 1)[None]


def to_image(x: torch.Tensor) -> Image.Image:
    """A (1, 3, H, W) tensor in [-1, 1] as a PIL image (rounded as diffusers rounds, to the same pixels)."""
    x = (x[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 0).float().cpu().numpy()
    return Image.fromarray((x * 255).round().astype(np.uint8))


# --- latent space --------------------------------------------------------------------------------


@torch.no_grad()
def encode(pipe, image: Image.Image) -> torch.Tensor:
    """Pixels to latents: the VAE encoder's mean, times the scaling factor that gives latents unit variance."""
    x = to_tensor(image).to(pipe.vae.device, pipe.vae.dtype)
    return pipe.vae.encode(x).latent_dist.mean * pipe.vae.config.scaling_factor


@torch.no_grad()
def decode(pipe, latents: torch.Tensor) -> Image.Image:
    """Latents to pixels."""
    return to_image(pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample)


def latent_channels(latents: torch.Tensor) -> list[Image.Image]:
    """Each latent channel as a grey image, scaled to its own range."""
    out = []
    for c in latents[0].float().cpu():
        c = (c - c.min()) / (c.max() - c.min() + 1e-8)
        out.append(Image.fromarray((c.numpy() * 255).astype(np.uint8)).resize((256, 256), Image.Resampling.NEAREST))
    return out


def compression(pipe, height: int, width: int) -> float:
    """How many times fewer numbers the latent has than the image (48 for SD's 8x, 4-channel VAE)."""
    f = pipe.vae_scale_factor
    return (3 * height * width) / (pipe.vae.config.latent_channels * (height // f) * (width // f))


# --- text conditioning ---------------------------------------------------------------------------


def tokenize(tokenizer, prompt: str) -> list[str]:
    """The prompt as the text encoder sees it: 77 tokens, start and end markers, padding."""
    ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True).input_ids
    return tokenizer.convert_ids_to_tokens(ids)


@torch.no_grad()
def encode_text_sd(pipe, prompt: str) -> torch.Tensor:
    """SD 1.x/2.x: the CLIP text encoder's last hidden states, one vector per token (1, 77, d)."""
    ids = pipe.tokenizer(prompt, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    return pipe.text_encoder(ids.input_ids.to(pipe.device))[0]


@torch.no_grad()
def encode_text_sdxl(pipe, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """SDXL: both encoders' penultimate hidden states side by side, and the second encoder's pooled vector."""
    states, pooled = [], None
    for tokenizer, encoder in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
        ids = tokenizer(prompt, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
        out = encoder(ids.input_ids.to(pipe.device), output_hidden_states=True)
        states.append(out.hidden_states[-2])
        pooled = out[0]  # the projected pooled output of the last encoder
    return torch.cat(states, dim=-1), pooled


# --- the reverse process -------------------------------------------------------------------------


def predict_x0(model_output, x_t, alpha_bar, prediction_type: str = "epsilon"):
    """The clean sample the model's output implies at this step.

    epsilon: x0 = (x_t - sqrt(1 - a) eps) / sqrt(a); v (Salimans and Ho 2022): x0 = sqrt(a) x_t - sqrt(1 - a) v;
    flow matching with x_t = (1 - sigma) x0 + sigma noise and velocity = noise - x0: x0 = x_t - sigma v.
    """
    if prediction_type == "flow":
        sigma = alpha_bar  # for flow models the second argument is sigma
        return x_t - sigma * model_output
    a = torch.as_tensor(alpha_bar, dtype=x_t.dtype)
    if prediction_type == "v_prediction":
        return a.sqrt() * x_t - (1 - a).sqrt() * model_output
    return (x_t - (1 - a).sqrt() * model_output) / a.sqrt()


def ddim_step(eps, x_t, alpha_bar_t, alpha_bar_prev):
    """DDIM with eta = 0 (Song et al. eq. 12): jump to the x0 estimate, then re-noise it to the previous level."""
    x0 = predict_x0(eps, x_t, alpha_bar_t)
    return alpha_bar_prev.sqrt() * x0 + (1 - alpha_bar_prev).sqrt() * eps


def ddpm_step(eps, x_t, alpha_bar_t, alpha_bar_prev, noise):
    """DDPM ancestral step (Ho et al. eq. 6-7): the posterior mean of q(x_{t-1} | x_t, x0), plus its noise."""
    beta_t = 1 - alpha_bar_t / alpha_bar_prev
    x0 = predict_x0(eps, x_t, alpha_bar_t)
    mean = (alpha_bar_prev.sqrt() * beta_t * x0 + (1 - beta_t).sqrt() * (1 - alpha_bar_prev) * x_t) / (1 - alpha_bar_t)
    variance = beta_t * (1 - alpha_bar_prev) / (1 - alpha_bar_t)
    return mean + variance.sqrt() * noise


def guidance(eps_uncond, eps_text, scale: float):
    """Classifier-free guidance: start from the unconditional prediction and move `scale` times towards the text."""
    return eps_uncond + scale * (eps_text - eps_uncond)


@torch.no_grad()
def denoise(pipe, prompt, negative_prompt="", steps=30, guidance_scale=7.5, height=512, width=512, seed=0,
            callback: Callable | None = None) -> Image.Image:  # fmt: skip
    """Sample an image by hand with the pipeline's own parts: the same image as `pipe(...)` for SD 1.x and SDXL.

    `callback(i, t, latents, x0)` sees each step (k-diffusion style), e.g. to watch x0 emerge.
    """
    sdxl, unet, scheduler = hasattr(pipe, "text_encoder_2"), pipe.unet, pipe.scheduler
    if sdxl:
        (cond, pooled), (uncond, pooled_neg) = encode_text_sdxl(pipe, prompt), encode_text_sdxl(pipe, negative_prompt)
        time_ids = torch.tensor([[height, width, 0, 0, height, width]] * 2, dtype=cond.dtype, device=pipe.device)
        extra = {"added_cond_kwargs": {"text_embeds": torch.cat([pooled_neg, pooled]), "time_ids": time_ids}}
    else:
        cond, uncond, extra = encode_text_sd(pipe, prompt), encode_text_sd(pipe, negative_prompt), {}
    text = torch.cat([uncond, cond])  # one batch: the unconditional half, then the conditional half
    shape = (1, unet.config.in_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    generator = torch.Generator("cpu").manual_seed(seed)
    latents = torch.randn(shape, generator=generator, dtype=cond.dtype).to(pipe.device) * scheduler.init_noise_sigma
    scheduler.set_timesteps(steps, device=pipe.device)
    noisy = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    for i, t in enumerate(scheduler.timesteps):
        x = scheduler.scale_model_input(torch.cat([latents] * 2), t)
        eps_uncond, eps_text = unet(x, t, encoder_hidden_states=text, **extra).sample.chunk(2)
        out = scheduler.step(guidance(eps_uncond, eps_text, guidance_scale), t, latents, **noisy)
        latents = out.prev_sample
        if callback:
            callback(i, t, latents, getattr(out, "pred_original_sample", None))
    return decode(pipe, latents)


def x0_previews(pipe, prompt, every: int = 5, **denoise_kwargs) -> tuple[list[str], list[Image.Image]]:
    """The model's guess of the final image (x0, decoded) every few steps of a DDIM run, and the final image.

    DDIM reports its x0 estimate at each step; the pipeline's own sampler is put back afterwards.
    """
    labels, latents, previous = [], [], pipe.scheduler

    def keep(i, t, _latents, x0):
        if i % every == 0:
            labels.append(f"step {i + 1}, t={int(t)}")
            latents.append(x0.clone())

    set_scheduler(pipe, "DDIM")
    try:
        final = denoise(pipe, prompt, callback=keep, **denoise_kwargs)
    finally:
        pipe.scheduler = previous
    return labels + ["final"], [decode(pipe, x) for x in latents] + [final]
