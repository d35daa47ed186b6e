"""The teaching code is the real thing: equations against diffusers' schedulers, the loop against pipe()."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from PIL import Image

import helpers
from helpers.teaching import diffusion as D

pytestmark = pytest.mark.usefixtures("fresh_hub")


@pytest.mark.parametrize(
    "key, sampler",
    [
        ("sd15", "default"),
        ("sd15", "Euler a"),
        ("sd21", "default"),
        ("sdxl-base", "default"),
        ("sdxl-base", "DPM++ 2M SDE Karras"),
    ],
)
def test_hand_written_loop_gives_the_pipelines_image(key, sampler):
    pipe = helpers.load_pipeline(key, device="cpu")
    helpers.set_scheduler(pipe, sampler)
    kw = {"num_inference_steps": 3, "guidance_scale": 5.0, "height": 64, "width": 64}
    ref = pipe("a red fox", negative_prompt="", generator=torch.Generator().manual_seed(3), **kw).images[0]
    mine = D.denoise(pipe, "a red fox", "", steps=3, guidance_scale=5.0, height=64, width=64, seed=3)
    assert np.array_equal(np.asarray(ref), np.asarray(mine)), "same seed, same pixels"


def test_ddim_step_is_diffusers_ddim():
    sd = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "clip_sample": False}
    s = DDIMScheduler(**sd, set_alpha_to_one=False)
    s.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    t, t_prev = s.timesteps[3], s.timesteps[4]
    ours = D.ddim_step(eps, x, s.alphas_cumprod[t], s.alphas_cumprod[t_prev])
    torch.testing.assert_close(ours, s.step(eps, t, x).prev_sample)


def test_ddpm_step_is_diffusers_ddpm():
    s = DDPMScheduler(beta_schedule="linear", clip_sample=False)
    s.set_timesteps(1000)
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    t = 500
    expected = s.step(eps, t, x, generator=torch.Generator().manual_seed(1)).prev_sample
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    ours = D.ddpm_step(eps, x, s.alphas_cumprod[t], s.alphas_cumprod[t - 1], noise)
    torch.testing.assert_close(ours, expected)


def test_x0_from_epsilon_v_and_flow_predictions():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    ab = D.noise_schedule()[400]
    x_t = D.q_sample(x0, 400, D.noise_schedule(), noise)
    torch.testing.assert_close(D.predict_x0(noise, x_t, ab, "epsilon"), x0)
    v = ab.sqrt() * noise - (1 - ab).sqrt() * x0  # the v-target of Salimans and Ho
    torch.testing.assert_close(D.predict_x0(v, x_t, ab, "v_prediction"), x0)
    sd = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "clip_sample": False}
    s = DDIMScheduler(prediction_type="v_prediction", **sd)  # diffusers clips x0 to [-1, 1] unless told not to
    s.set_timesteps(10)
    t = s.timesteps[2]
    expected = s.step(v, t, x_t).pred_original_sample
    torch.testing.assert_close(D.predict_x0(v, x_t, s.alphas_cumprod[t], "v_prediction"), expected)
    sigma = 0.7
    x_sigma = (1 - sigma) * x0 + sigma * noise
    torch.testing.assert_close(D.predict_x0(noise - x0, x_sigma, sigma, "flow"), x0)


def test_guidance_is_the_cfg_equation():
    u, c = torch.zeros(3), torch.ones(3)
    assert torch.equal(D.guidance(u, c, 1.0), c) and torch.equal(D.guidance(u, c, 7.5), 7.5 * c)


def test_schedules_and_forward_process():
    for name in ("linear", "scaled_linear", "squaredcos_cap_v2"):
        ab = D.noise_schedule(name)
        assert ab.shape == (1000,) and (ab[1:] < ab[:-1]).all() and ab[-1] < 0.01 < 0.99 < ab[0]
        assert (D.snr(ab)[1:] < D.snr(ab)[:-1]).all()
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1, torch.randn(1, 3, 64, 64, generator=g)
    ab = D.noise_schedule()
    corr = lambda a, b: float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])  # noqa: E731
    assert corr(D.q_sample(x0, 0, ab, noise), x0) > 0.99
    assert abs(corr(D.q_sample(x0, 999, ab, noise), x0)) < 0.1
    assert D.plot_schedules() is not None


def test_latent_space_and_text(offline_hub_dir):
    pipe = helpers.load_pipeline("sd15", device="cpu")
    image = Image.new("RGB", (64, 64), (200, 80, 30))
    latents = D.encode(pipe, image)
    assert latents.shape == (1, 4, 8, 8) and D.compression(pipe, 512, 512) == 48
    assert D.decode(pipe, latents).size == (64, 64) and len(D.latent_channels(latents)) == 4
    assert D.to_image(D.to_tensor(image)).getpixel((0, 0)) == (200, 80, 30)
    tokens = D.tokenize(pipe.tokenizer, "a red fox")
    assert len(tokens) == 77 and tokens[0] == "<|startoftext|>" and "<|endoftext|>" in tokens
    assert D.encode_text_sd(pipe, "a red fox").shape == (1, 77, pipe.text_encoder.config.hidden_size)
    labels, previews = D.x0_previews(pipe, "a red fox", every=2, steps=4, height=64, width=64, seed=1)
    assert labels[-1] == "final" and len(previews) == len(labels) >= 2
