"""Editing: img2img, inpainting, outpainting, instruction editing and SDXL's base-plus-refiner.

Each call goes through `helpers.generate`, so seeds, defaults, checks and recipes work as for text to
image; the record also names the input image and mask by fingerprint. Images can be a path, a URL or a
PIL image. Other tasks of a loaded model share its weights (diffusers' `from_pipe`), nothing reloads.

>>> helpers.edit.img2img("sd15", "photo.png", "the same scene as a watercolor", strength=0.6, seed=1)
>>> helpers.edit.inpaint("sd15-inpainting", image, helpers.masks.box(image.size, (100, 100, 300, 300)), "a cat")
>>> helpers.edit.outpaint("sdxl-inpainting", image, "a wide beach", left=256, right=256)
>>> helpers.edit.instruct("qwen-image-edit", "photo.png", "make the sky stormy", seed=1)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from PIL import Image, ImageFilter

from ..base import masks
from ..base.errors import ZooError
from ..base.families import FAMILIES
from ..base.images import load_image
from ..zoo.registry import default as default_registry
from .cache import get_pipeline
from .generate import GenerationResult, generate


def img2img(model, image, prompt: str, strength: float = 0.6, **kwargs) -> GenerationResult:
    """Repaint a whole image; `strength` 0 keeps it, 1 ignores it (the share of the noise schedule re-run)."""
    _strength(strength)
    return generate(model, prompt, task="img2img", image=image, strength=strength, **kwargs)


def instruct(model, image, instruction: str, **kwargs) -> GenerationResult:
    """Edit a picture by an instruction ("make it night", "remove the cup") with an editing model (FLUX.1 Kontext,
    Qwen-Image-Edit); the output has the input's size unless `width`/`height` say otherwise."""
    if image is None:
        raise ZooError("instruction editing needs the image to edit: instruct(model, PATH_URL_OR_PIL, instruction)")
    return generate(model, instruction, task="instruct", image=image, **kwargs)


def inpaint(model, image, mask, prompt: str, strength: float = 1.0, blur: float = 0, padding: int | None = None,
            **kwargs) -> GenerationResult:  # fmt: skip
    """Repaint the white part of `mask`. `blur` feathers its edge; `padding` repaints only a crop around it,
    at the model's full resolution, with that many pixels of context (good for small areas of big images).
    """
    _strength(strength)
    image = load_image(image)
    mask = masks.check(mask if isinstance(mask, Image.Image) else load_image(mask, "L"), image)
    if blur:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    if padding is not None:
        kwargs["padding_mask_crop"] = int(padding)
    return generate(model, prompt, task="inpaint", image=image, mask_image=mask, strength=strength, **kwargs)


def extend(image, left: int = 0, top: int = 0, right: int = 0, bottom: int = 0, fill: str = "edge",
           overlap: int = 16, multiple: int = 8, seed: int = 0) -> tuple[Image.Image, Image.Image]:  # fmt: skip
    """A larger canvas with the image placed at (left, top), its new area filled, and the mask to paint.

    The canvas is rounded up to a multiple of `multiple` (the extra goes right and bottom). `fill` starts the
    new area from the nearest edge colours ("edge") or from noise around the image's mean colour ("noise").
    The mask is white over the new area and `overlap` pixels into the image, so the seam is repainted.
    """
    image = load_image(image)
    if min(left, top, right, bottom) < 0 or left + top + right + bottom == 0:
        raise ZooError("outpainting extends by a positive number of pixels on at least one side")
    w, h = image.size
    width = -(-(w + left + right) // multiple) * multiple
    height = -(-(h + top + bottom) // multiple) * multiple
    pad = ((top, height - h - top), (left, width - w - left), (0, 0))
    pixels = np.asarray(image)
    if fill == "edge":
        canvas = np.pad(pixels, pad, mode="edge")
    elif fill == "noise":
        rng = np.random.default_rng(seed)
        canvas = rng.normal(pixels.mean((0, 1)), 40, (height, width, 3)).clip(0, 255).astype(np.uint8)
        canvas[top : top + h, left : left + w] = pixels
    else:
        raise ZooError(f"fill '{fill}' is not 'edge' or 'noise'")
    mask = np.full((height, width), 255, np.uint8)
    inner = (slice(top + (overlap if top else 0), top + h - (overlap if pad[0][1] else 0)),
             slice(left + (overlap if left else 0), left + w - (overlap if pad[1][1] else 0)))  # fmt: skip
    mask[inner] = 0
    return Image.fromarray(canvas), Image.fromarray(mask)


blend = masks.blend  # where regenerate() can reach it too


def outpaint(model, image, prompt: str, left: int = 0, top: int = 0, right: int = 0, bottom: int = 0,
             fill: str = "edge", overlap: int = 16, strength: float = 1.0, **kwargs) -> GenerationResult:  # fmt: skip
    """Extend the canvas and paint the new area, blending into the original so no seam shows."""
    family = (kwargs.get("registry") or default_registry()).get(model).family if isinstance(model, str) else None
    multiple = FAMILIES[family].size_multiple if family else 16
    canvas, mask = extend(image, left, top, right, bottom, fill, overlap, multiple, kwargs.get("seed") or 0)
    result = inpaint(model, canvas, mask, prompt, strength=strength, **kwargs)
    feather = max(1, overlap // 2)
    result.images = [blend(canvas, im, mask, feather=feather) for im in result.images]
    result.records = [dataclasses.replace(r, blend=feather) for r in result.records]  # so regenerate() blends too
    return result


def refine(prompt: str, base: str = "sdxl-base", refiner: str = "sdxl-refiner", high_noise_frac: float = 0.8,
           num_inference_steps: int = 40, seed: int = 0, device: str = "auto", **kwargs) -> Image.Image:  # fmt: skip
    """SDXL's two-stage recipe: the base model denoises the first `high_noise_frac` of the steps and hands its
    latents to the refiner, which finishes the fine detail (the refiner shares the base's VAE and text encoder).
    """
    if not 0 < high_noise_frac < 1:
        raise ZooError(f"high_noise_frac must be between 0 and 1 (got {high_noise_frac})")
    first = get_pipeline(base, device=device)
    second = get_pipeline(refiner, device=device, task="img2img", text_encoder_2=first.text_encoder_2, vae=first.vae)
    generator = torch.Generator("cpu").manual_seed(seed)
    common = {"num_inference_steps": num_inference_steps, "generator": generator, **kwargs}
    latents = first(prompt, denoising_end=high_noise_frac, output_type="latent", **common).images
    return second(prompt, image=latents, denoising_start=high_noise_frac, **common).images[0]


def _strength(strength: float) -> None:
    if not 0 < strength <= 1:
        raise ZooError(f"strength must be in (0, 1] (got {strength}): 0 would change nothing, 1 repaints fully")
