"""Hires fix as AUTOMATIC1111 does it: generate at the model's native size, upscale, then img2img at a strength.

`generate(..., hires={"scale": 2, "strength": 0.5})` runs it; the record keeps A1111's fields (`Hires upscale`,
`Hires steps`, `Hires upscaler`, `Denoising strength`) so the PNG regenerates. Upscalers here are PIL's
resampling filters, by A1111's names; learned upscalers (registry entries) are still to come.

>>> generate("sd15", "a castle", seed=1, hires={"scale": 2, "strength": 0.45, "steps": 15})
"""

from __future__ import annotations

from PIL import Image

from .errors import ZooError
from .families import FAMILIES

UPSCALERS = {
    "Lanczos": Image.Resampling.LANCZOS,
    "Nearest": Image.Resampling.NEAREST,
    "Bicubic": Image.Resampling.BICUBIC,
}


def settle(spec, hires, steps: int) -> dict:
    """The hires settings checked against the model before anything loads: scale, strength, steps, upscaler."""
    if not hires:
        return {}
    if isinstance(hires, (int, float)):
        hires = {"scale": hires}
    unknown = set(hires) - {"scale", "strength", "steps", "upscaler"}
    if unknown:
        raise ZooError(f"hires takes scale, strength, steps and upscaler (got {sorted(unknown)})")
    out = {"scale": float(hires.get("scale", 2.0)), "strength": float(hires.get("strength", 0.5)),
           "steps": int(hires.get("steps") or steps), "upscaler": hires.get("upscaler", "Lanczos")}  # fmt: skip
    if "img2img" not in spec.tasks:
        raise ZooError(f"hires fix repaints with img2img, which '{spec.key}' does not support")
    if not 1 < out["scale"] <= 4:
        raise ZooError(f"hires scale must be above 1 and at most 4 (got {out['scale']:g})")
    if not 0 < out["strength"] <= 1:
        raise ZooError(f"hires strength must be in (0, 1] (got {out['strength']:g})")
    if int(out["steps"] * out["strength"]) < 1:
        raise ZooError(f"hires strength {out['strength']:g} of {out['steps']} steps runs no step: use more steps")
    if out["upscaler"] not in UPSCALERS:
        raise ZooError(f"Unknown hires upscaler '{out['upscaler']}'; use one of {', '.join(UPSCALERS)}")
    return out


def upscale(image: Image.Image, hires: dict, family: str) -> Image.Image:
    """The image at `scale` times its size, rounded to the multiple the family needs, by the named filter."""
    m = FAMILIES[family].size_multiple
    size = [max(m, round(v * hires["scale"] / m) * m) for v in image.size]
    return image.resize(tuple(size), UPSCALERS[hires["upscaler"]])
