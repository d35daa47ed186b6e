"""Live previews while an image denoises: the latents of each step decoded by a tiny VAE (TAESD and kin).

TAESD decodes a 1024 px SDXL latent in milliseconds on a GPU, against a large share of a step for the full VAE,
so a panel can show every step without slowing the generation down much.

>>> preview = Previewer(pipe)                      # the registry's tiny VAE for the pipeline's family
>>> frames = Frames()                              # or any `f(image, done, total)`
>>> helpers.generate(pipe, "a fox", on_preview=frames)
>>> helpers.image_grid([frames[-4:]])
"""

from __future__ import annotations

import torch
from PIL import Image

from ..base.errors import ZooError
from ..base.loaded import record, spec_of
from ..zoo.registry import default as default_registry
from .loading import load_vae


def preview_vae_key(family: str, registry=None) -> str | None:
    """The registry's tiny VAE (`AutoencoderTiny`) for a family, or None."""
    reg = registry or default_registry()
    return next((v.key for v in reg.vaes.values() if v.cls_name == "AutoencoderTiny" and family in v.families), None)


class Previewer:
    """Decode a pipeline's in-progress latents to a small PIL image with the family's tiny VAE."""

    def __init__(self, pipe, registry=None):
        spec = spec_of(pipe)
        if spec is None:
            raise ZooError("previews need a pipeline made by helpers.load_pipeline")
        key = preview_vae_key(spec.family, registry)
        if key is None:
            raise ZooError(f"no tiny preview VAE in the registry for {spec.family} models ('{spec.key}')")
        self.key = key
        self.unpack = getattr(type(pipe), "_unpack_latents", None)  # FLUX packs 2x2 latent patches into tokens
        self.vae_scale_factor = pipe.vae_scale_factor
        dtype = pipe.dtype if pipe.device.type != "cpu" else torch.float32
        self.vae = load_vae(key, dtype, registry).to(pipe.device)

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor, height: int, width: int) -> Image.Image:
        """The first image of a batch of step latents (packed FLUX latents are unpacked first)."""
        if latents.ndim == 3:
            latents = self.unpack(latents, height, width, self.vae_scale_factor)
        cfg = self.vae.config
        z = latents[:1].to(self.vae.device, self.vae.dtype) / cfg.scaling_factor + (cfg.shift_factor or 0.0)
        image = self.vae.decode(z).sample[0].float().clamp(-1, 1)
        array = ((image + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(array)


def previewer_for(pipe, registry=None) -> Previewer | None:
    """The pipeline's `Previewer`, made once and kept in its record; None when its family has no tiny VAE."""
    rec = record(pipe)
    if rec.previewer is None and rec.spec is not None and preview_vae_key(rec.spec.family, registry) is not None:
        rec.previewer = Previewer(pipe, registry)
    return rec.previewer


class Frames(list):
    """An `on_preview` callback that keeps every preview image, in order."""

    def __call__(self, image: Image.Image, done: int, total: int) -> None:
        self.append(image)
