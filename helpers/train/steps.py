"""What one training step computes: the trained tensors, the cached inputs, the denoising loss.

Used by `helpers.train`, which runs the loop; `fixed_batch_loss` is the fair before/after number. `c` is always
the run's `train.TrainConfig` (not imported: this module sits below `train`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..base.errors import ZooError

LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]  # the U-Net's attention projections
TI_TEMPLATES = ["a photo of {}", "a rendering of {}", "a close-up photo of {}", "a picture of {}",
                "a cropped photo of {}", "a bright photo of {}", "a good photo of {}", "an image of {}"]  # fmt: skip


class Embedding:
    """Textual inversion: the new tokens' vectors as one small fp32 parameter, put in by a hook on the embedding.

    The embedding matrix itself never changes while training, so a prompt without the token is computed exactly
    as before, and the optimizer holds state for a few vectors, not for the whole vocabulary.
    """

    def __init__(self, tok, enc, token: str, init_word: str, num_vectors: int):
        tokens = [token] + [f"{token}_{i}" for i in range(1, num_vectors)]
        check_token(tok, token)
        if tok.add_tokens(tokens) != num_vectors:
            raise ZooError(f"the tokenizer already has the token '{token}'; choose another --token")
        init = tok.encode(init_word, add_special_tokens=False)
        if not init:
            raise ZooError(f"--init-word '{init_word}' gives no token")
        enc.resize_token_embeddings(len(tok))
        self.ids = tok.convert_tokens_to_ids(tokens)
        self.token = token
        table = enc.get_input_embeddings()
        with torch.no_grad():
            table.weight[self.ids] = table.weight[init[0]].clone()
        self.param = torch.nn.Parameter(table.weight[self.ids].detach().float().clone())
        lookup = torch.full((table.weight.shape[0],), -1, dtype=torch.long)
        lookup[self.ids] = torch.arange(len(self.ids))
        self.lookup = lookup.to(table.weight.device)
        self.handle = table.register_forward_hook(self._put_vectors)

    def _put_vectors(self, module, inputs, output):
        where = self.lookup[inputs[0]]
        mask = where >= 0
        if not bool(mask.any()):
            return output
        out = output.clone()
        out[mask] = self.param[where[mask]].to(out.dtype)
        return out

    def vectors(self) -> torch.Tensor:
        return self.param.detach()


def check_token(tok, token: str) -> None:
    """Refuse a token the tokenizer already reads as one of its own: training it would change every prompt with it."""
    ids = tok.encode(token, add_special_tokens=False)
    if token in tok.get_vocab() or len(ids) == 1:
        raise ZooError(
            f"--token '{token}': the tokenizer already knows it (as '{tok.convert_ids_to_tokens(ids)[0]}'), so "
            f"training it would change every prompt that uses it. Choose a string it does not know, such as "
            f"'<{token.strip('<>')}-concept>'"
        )


class TokenVectors:
    """The new token in every text encoder of the pipeline (SDXL has two: CLIP-L and OpenCLIP-bigG)."""

    def __init__(self, pipe, token: str, init_word: str, num_vectors: int):
        pairs = [
            (pipe.tokenizer, pipe.text_encoder),
            (getattr(pipe, "tokenizer_2", None), getattr(pipe, "text_encoder_2", None)),
        ]
        self.parts = [
            Embedding(t, e, token, init_word, num_vectors) for t, e in pairs if t is not None and e is not None
        ]
        self.token = token
        self.params = {f"token_vectors_{i}": e.param for i, e in enumerate(self.parts)}

    def vectors(self) -> list[torch.Tensor]:
        return [e.vectors() for e in self.parts]


def make_trainable(pipe, c):
    """The trained tensors by name (LoRA layers through peft, or the token embedding), in fp32."""
    pipe.unet.requires_grad_(False)
    pipe.vae.requires_grad_(False)
    for enc in text_encoders(pipe):
        enc.requires_grad_(False)
    if c.kind == "textual-inversion":
        ti = TokenVectors(pipe, c.token, c.init_word, c.num_vectors)
        return ti.params, ti
    from peft import LoraConfig

    config = LoraConfig(r=c.rank, lora_alpha=c.alpha, init_lora_weights="gaussian", target_modules=LORA_TARGETS)
    pipe.unet.add_adapter(config)
    trained = {}
    for name, p in pipe.unet.named_parameters():
        if p.requires_grad:
            p.data = p.data.float()  # fp16 gradients cannot be unscaled: trained parameters live in fp32
            trained[name] = p
    return trained, None


def text_encoders(pipe):
    return [e for e in (getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None)) if e is not None]


def offload(pipe, keep_text: bool, device: str = "cpu"):
    for enc in [] if keep_text else text_encoders(pipe):
        enc.to(device)
    pipe.vae.to(device)


def cache_inputs(pipe, items, c, ti: bool) -> dict:
    """Latent distributions of every image and (unless the text trains) the text embeddings of every prompt."""
    vae = pipe.vae
    latents = []
    with torch.no_grad():
        for item in items:
            x = torch.from_numpy(np.asarray(item.image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
            dist = vae.encode(x.to(vae.device, vae.dtype)).latent_dist
            latents.append((dist.mean.float(), dist.std.float()))
        texts = {}
        if not ti:
            for prompt in sorted({i.prompt for i in items}):
                texts[prompt] = encode(pipe, prompt)
    return {"latents": latents, "texts": texts, "items": items}


def encode(pipe, prompts):
    """Text embeddings (and SDXL's pooled embedding) exactly as the pipeline makes them for generation."""
    out = pipe.encode_prompt(prompt=prompts, device=pipe.unet.device, num_images_per_prompt=1,
                             do_classifier_free_guidance=False)  # fmt: skip
    return (out[0], out[2]) if len(out) == 4 else (out[0], None)


def make_optimizer(preset, params, c):
    decay = 0.0 if c.kind == "textual-inversion" else 1e-2
    if preset.optimizer == "adamw8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=c.lr, weight_decay=decay)
    return torch.optim.AdamW(params, lr=c.lr, weight_decay=decay)


def training_scheduler(pipe):
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(pipe.scheduler.config)


def _share(draw, acc):
    """Each process makes every process's draw and keeps its own: one generator state for all, so a checkpoint
    (which holds the main process's) resumes every process exactly."""
    draws = [draw() for _ in range(acc.num_processes)]
    return draws[acc.process_index]


def loss(pipe, cache, indices, scheduler, generator, c, ti, acc, dtype, n_instance):
    """The denoising loss of one batch; with prior preservation the class half is weighted separately."""
    dev = pipe.unet.device
    scale = pipe.vae.config.scaling_factor
    mean = torch.cat([cache["latents"][i][0] for i in indices]).cpu()
    std = torch.cat([cache["latents"][i][1] for i in indices]).cpu()
    latents = (mean + std * _share(lambda: torch.randn(mean.shape, generator=generator), acc)) * scale
    noise = _share(lambda: torch.randn(latents.shape, generator=generator), acc)
    steps = scheduler.config.num_train_timesteps
    t = _share(lambda: torch.randint(0, steps, (len(indices),), generator=generator), acc)
    noisy = scheduler.add_noise(latents, noise, t)
    target = scheduler.get_velocity(latents, noise, t) if scheduler.config.prediction_type == "v_prediction" else noise
    items = [cache["items"][i] for i in indices]
    if ti is not None:
        prompts = [TI_TEMPLATES[i % len(TI_TEMPLATES)].format(ti.token) for i in indices]
        embeds, pooled = encode(pipe, prompts)
    else:
        pairs = [cache["texts"][item.prompt] for item in items]
        embeds = torch.cat([p[0] for p in pairs])
        pooled = torch.cat([p[1] for p in pairs]) if pairs[0][1] is not None else None
    kwargs = {}
    if pooled is not None:  # SDXL: the pooled text and the size/crop conditioning
        ids = [list(i.original_size) + list(i.crop) + [i.image.height, i.image.width] for i in items]
        kwargs["added_cond_kwargs"] = {
            "text_embeds": pooled.to(dev, dtype),
            "time_ids": torch.tensor(ids, device=dev, dtype=dtype),
        }
    with acc.autocast():
        pred = pipe.unet(noisy.to(dev, dtype), t.to(dev), embeds.to(dev, dtype), **kwargs).sample
    err = F.mse_loss(pred.float(), target.to(dev).float(), reduction="none").mean(dim=(1, 2, 3))
    if len(indices) > n_instance:
        return err[:n_instance].mean() + c.prior_loss_weight * err[n_instance:].mean()
    return err.mean()


def sync_grads(acc, params):
    """Average the trained parameters' gradients over processes (LoRA gradients are a few MB)."""
    if acc.num_processes > 1:
        for p in params:
            if p.grad is not None:
                p.grad.copy_(acc.reduce(p.grad, "mean"))


def fixed_batch_loss(pipe, images: list[Image.Image], prompt: str, seed: int = 0, timesteps=(100, 500, 900)) -> float:
    """The denoising loss of the pipeline's U-Net on fixed images, noise and timesteps: a fair before/after."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    g = torch.Generator("cpu").manual_seed(seed)
    dev, dtype = pipe.unet.device, pipe.unet.dtype
    with torch.no_grad():
        x = torch.stack(
            [torch.from_numpy(np.asarray(i, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1) for i in images]
        )
        vae = pipe.vae
        latents = vae.encode(x.to(vae.device, vae.dtype)).latent_dist.mean.float().cpu() * vae.config.scaling_factor
        embeds, pooled = encode(pipe, [prompt] * len(images))
        total = 0.0
        for step in timesteps:
            noise = torch.randn(latents.shape, generator=g)
            t = torch.full((len(images),), step)
            noisy = scheduler.add_noise(latents, noise, t)
            v = scheduler.config.prediction_type == "v_prediction"
            target = scheduler.get_velocity(latents, noise, t) if v else noise
            kwargs = {}
            if pooled is not None:
                h, w = images[0].height, images[0].width
                ids = torch.tensor([[h, w, 0, 0, h, w]] * len(images), device=dev, dtype=dtype)
                kwargs["added_cond_kwargs"] = {"text_embeds": pooled.to(dev, dtype), "time_ids": ids}
            pred = pipe.unet(noisy.to(dev, dtype), t.to(dev), embeds.to(dev, dtype), **kwargs).sample
            total += F.mse_loss(pred.float().cpu(), target.float()).item()
    return total / len(timesteps)
