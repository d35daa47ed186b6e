"""Hires fix as AUTOMATIC1111 does it: generate at the model's native size, upscale, then img2img at a strength.

`generate(..., hires={"scale": 2, "strength": 0.5})` runs it; the record keeps A1111's fields (`Hires upscale`,
`Hires steps`, `Hires upscaler`, `Denoising strength`) so the PNG regenerates. As in A1111, the second pass runs
`Hires steps` denoising steps (of a longer schedule that the strength cuts into; see `second_pass_steps`).
Upscalers here are PIL's resampling filters, by A1111's names, or a registry upscaler (`helpers.upscale`): a
diffusion upscaler by key, guided by the prompt and seed, or an ESRGAN-class network by A1111's name
("4x-UltraSharp") or key; each upscales by its own factor, and the result is resized (Lanczos) to `scale` times
the first pass.

>>> generate("sd15", "a castle", seed=1, hires={"scale": 2, "strength": 0.45, "steps": 15})
>>> generate("sd15", "a castle", seed=1, hires={"scale": 2, "upscaler": "sd-x2-latent-upscaler"})
>>> generate("sd15", "a castle", seed=1, hires={"scale": 2, "upscaler": "4x-UltraSharp"})
"""

from __future__ import annotations

import dataclasses

from PIL import Image

from ..base.errors import ZooError
from ..base.families import FAMILIES
from ..zoo.registry import NetworkUpscalerSpec, Registry
from ..zoo.registry import default as default_registry
from . import upscale as upscale_mod
from .control import PIPELINES as CONTROL_PIPELINES

UPSCALERS = {
    "Lanczos": Image.Resampling.LANCZOS,
    "Nearest": Image.Resampling.NEAREST,
    "Bicubic": Image.Resampling.BICUBIC,
}


def settle(spec, hires, steps: int, registry: Registry | None = None, controls=()) -> dict:
    """The hires settings checked against the model before anything loads: scale, strength, steps, upscaler.

    With ControlNets (`controls`, settled) the second pass runs the family's ControlNet img2img pipeline.
    """
    if hires is None or hires is False or hires == {}:
        return {}
    if isinstance(hires, (int, float)):  # a scale; 0 is refused below, not taken for "off"
        hires = {"scale": hires}
    unknown = set(hires) - {"scale", "strength", "steps", "upscaler", "upscaler_steps"}
    if unknown:
        raise ZooError(f"hires takes scale, strength, steps, upscaler and upscaler_steps (got {sorted(unknown)})")
    out = {"scale": float(hires.get("scale", 2.0)), "strength": float(hires.get("strength", 0.5)),
           "steps": int(steps if hires.get("steps") is None else hires["steps"]),
           "upscaler": hires.get("upscaler", "Lanczos")}  # fmt: skip
    if "img2img" not in spec.tasks:
        raise ZooError(f"hires fix repaints with img2img, which '{spec.key}' does not support")
    if controls and (spec.family, "img2img") not in CONTROL_PIPELINES:
        raise ZooError(
            f"hires fix with ControlNet repaints with a ControlNet img2img pipeline, which {spec.family} models "
            "lack here: drop `hires`, or `control`"
        )
    if not 1 < out["scale"] <= 4:
        raise ZooError(f"hires scale must be above 1 and at most 4 (got {out['scale']:g})")
    if not 0 < out["strength"] <= 1:
        raise ZooError(f"hires strength must be in (0, 1] (got {out['strength']:g})")
    if out["steps"] < 1:
        raise ZooError(f"hires steps must be at least 1 (got {out['steps']})")
    reg = registry or default_registry()
    learned = [k for k, u in reg.upscalers.items() if not isinstance(u, NetworkUpscalerSpec)]
    if out["upscaler"] not in UPSCALERS:
        try:
            found = reg.upscaler(out["upscaler"])
        except ZooError:
            raise ZooError(
                f"Unknown hires upscaler '{out['upscaler']}'; use one of {', '.join(UPSCALERS)}, "
                f"or a registry upscaler: {', '.join(names(reg)) or 'none'}"
            ) from None
        # A network upscaler is recorded by the name AUTOMATIC1111 records ("Hires upscaler: 4x-UltraSharp").
        out["upscaler"] = found.name if isinstance(found, NetworkUpscalerSpec) else found.key
    if hires.get("upscaler_steps") is not None:  # a learned upscaler's own denoising steps (its entry's otherwise)
        if out["upscaler"] not in learned:
            raise ZooError(f"hires upscaler_steps is for diffusion upscalers ({', '.join(learned)}), "
                           f"not '{out['upscaler']}'")  # fmt: skip
        out["upscaler_steps"] = int(hires["upscaler_steps"])
        if out["upscaler_steps"] < 1:
            raise ZooError(f"hires upscaler_steps must be at least 1 (got {out['upscaler_steps']})")
    return out


def names(registry: Registry | None = None) -> list[str]:
    """The registry upscalers as the hires fix takes them: network upscalers by AUTOMATIC1111's name, others by key."""
    reg = registry or default_registry()
    return [u.name if isinstance(u, NetworkUpscalerSpec) else k for k, u in reg.upscalers.items()]


def second_pass_steps(steps: int, strength: float, family: str) -> int:
    """The img2img `num_inference_steps` whose last `steps` steps diffusers runs at `strength`: A1111's hires pass.

    A1111 runs "Hires steps" denoising steps, on a schedule of int(steps / min(strength, 0.999)) steps of which it
    skips the first part (`setup_img2img_steps` in modules/sd_samplers_common.py, which the hires pass always calls
    with its steps); diffusers runs int(n * strength) of n steps (flow models: n - int(n - n * strength)). So the
    second pass asks diffusers for the n that runs exactly `steps`, not for `steps` (which ran fewer).
    """
    flow = FAMILIES[family].samplers == "flow"
    for n in range(steps, int(steps / strength) + 3):
        runs = n - int(max(n - min(n * strength, n), 0)) if flow else min(int(n * strength), n)
        if runs == steps:
            return n
    return int(steps / min(strength, 0.999))


def upscale(image: Image.Image, hires: dict, family: str, prompt: str = "", seed: int = 0, device: str = "auto",
            registry: Registry | None = None) -> Image.Image:  # fmt: skip
    """The image at `scale` times its size, rounded to the multiple the family needs, by the named upscaler.

    A registry upscaler runs with the image's prompt and seed; its output is then resized to that size.
    """
    m = FAMILIES[family].size_multiple
    size = tuple(max(m, round(v * hires["scale"] / m) * m) for v in image.size)
    name = hires["upscaler"]
    if name in UPSCALERS:
        return image.resize(size, UPSCALERS[name])
    if isinstance((registry or default_registry()).upscaler(name), NetworkUpscalerSpec):
        big = upscale_mod.upscale(image, name, device=device, registry=registry)  # no prompt: a network
    else:
        steps = hires.get("upscaler_steps")
        big = upscale_mod.upscale(image, name, prompt, seed=seed, num_inference_steps=steps, device=device,
                                  registry=registry)  # fmt: skip
    return big if big.size == size else big.resize(size, Image.Resampling.LANCZOS)


def controls_at(controls: list, size: tuple[int, int]) -> list:
    """The first pass's ControlNets for the second pass: the same ones, their control images resized to `size`."""
    return [dataclasses.replace(c, image=c.image.resize(size, Image.Resampling.LANCZOS)) for c in controls]
