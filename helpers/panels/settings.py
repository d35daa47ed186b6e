"""What the generation panel's inputs mean, without widgets: sizes, the progress line, uploads and PNG info.

>>> progress_text(12, 30, 2.1)
'step 12/30 · 2.1 it/s · 9 s left'
>>> size_problem(helpers.get("sd15"), 500, 512)
'width 500 is not a multiple of 8, which sd1 models need: use 496 or 504'
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

from PIL import Image

from ..base import adapters as trainexport
from ..base.errors import UnknownModelError, ZooError
from ..base.families import FAMILIES
from ..base.records import Record, from_a1111, read_record
from ..run.plan import plan
from ..run.request import registry_key_for
from ..zoo.registry import Registry


def presets(spec) -> list[str]:
    """Size presets for a model: its native size first, then the family's usual aspect ratios."""
    native = f"{spec.resolution}x{spec.resolution}"
    return [native] + [s for s in FAMILIES[spec.family].sizes if s != native]


def plan_choices(spec, registry=None, machine=None) -> list[tuple[str, str]]:
    """The plans that fit this machine (or `machine`), fastest first, after "auto" (the plan's own choice)."""
    p = plan(spec, machine=machine, registry=registry)
    auto = f"auto: {p.choice.label}" if p.choice else "auto (nothing fits: see `python -m helpers plan`)"
    return [(auto, "")] + [(f"{o.label} · {o.gpu_gb:.1f} GB · x{o.speed:g}", o.key) for o in p.fitting()]


def lora_choices(spec, registry) -> list[tuple[str, str]]:
    """The LoRAs a model can take in the panel: "none", its family's registry LoRAs, then adapters trained here."""
    out = [("none", "")]
    for a in registry.adapters.values():
        if a.kind == "lora" and a.family == spec.family and a.key not in spec.adapters:  # not those fused in
            out.append((f"{a.key} (registry)", a.key))
    for name, meta in trainexport.available(spec.family).items():
        if meta.get("kind") in ("lora", "dreambooth"):
            out.append((f"{name} (trained)", name))
    return out


def controlnet_choices(spec, registry) -> list[tuple[str, str]]:
    """The registry ControlNets of the model's family, by kind, after "none"."""
    nets = [(f"{k} ({cn.kind})", k) for k, cn in registry.controlnets.items() if cn.family == spec.family]
    return [("none", ""), *nets]


def control_choices(spec, registry) -> list[tuple[str, str]]:
    """The ControlNets and T2I-Adapters of the model's family after "none", each labelled with what it is."""
    family = spec.family
    nets = [(f"{k} (ControlNet, {cn.kind})", k) for k, cn in registry.controlnets.items() if cn.family == family]
    adapters = [(f"{k} (T2I-Adapter, {a.kind})", k) for k, a in registry.t2i_adapters.items() if a.family == family]
    return [("none", ""), *nets, *adapters]


def control_kind(key: str, registry) -> str:
    """What a control's image is ("canny", "depth", ...), for a ControlNet or a T2I-Adapter key."""
    return (registry.t2i_adapters[key] if key in registry.t2i_adapters else registry.controlnet(key)).kind


def negative_off(spec, guidance: float) -> str | None:
    """Why the negative prompt is not used with these settings, or None when it is."""
    if not spec.defaults.negative_prompt:
        return f"{spec.key} does not use a negative prompt (its guidance is distilled into the model)"
    if guidance <= 1:
        return f"guidance {guidance:g} turns classifier-free guidance off, and with it the negative prompt"
    return None


def size_problem(spec, width: int, height: int) -> str | None:
    """Why a width and height do not suit the model's family (its size multiple), or None when they do."""
    m = FAMILIES[spec.family].size_multiple
    for name, v in (("width", width), ("height", height)):
        if v < m or v % m:
            low = max(m, v // m * m)
            high = low if v <= low else low + m
            return f"{name} {v} is not a multiple of {m}, which {spec.family} models need: use {low}" + (
                f" or {high}" if high != low else ""
            )
    return None


def progress_text(done: int, total: int, rate: float | None) -> str:
    """The progress line: "step 12/30 · 2.1 it/s · 9 s left" (the rate once it is known)."""
    text = f"step {done}/{total}"
    if rate:
        text += f" · {rate:.1f} it/s · {(total - done) / rate:.0f} s left"
    return text


class StepClock:
    """Steps per second since the first step of a run (so loading the model does not count), for `progress_text`."""

    def __init__(self, clock=time.monotonic):
        self.clock, self.first = clock, None

    def reset(self) -> None:
        self.first = None

    def __call__(self, done: int, total: int) -> str:
        now = self.clock()
        if self.first is None or done <= self.first[0]:
            self.first = (done, now)
        steps, seconds = done - self.first[0], now - self.first[1]
        return progress_text(done, total, steps / seconds if steps and seconds > 0 else None)


def upload_bytes(upload) -> tuple[str, bytes] | None:
    """The name and bytes of the last file in an ipywidgets 8 `FileUpload`, or None when it holds none."""
    if not upload.value:
        return None
    item = upload.value[-1]
    return item["name"], bytes(item["content"])


def upload_image(upload, what: str, mode: str = "RGB") -> Image.Image | None:
    """The image in a `FileUpload` (None when empty); a file that is not an image is named in the error."""
    got = upload_bytes(upload)
    if got is None:
        return None
    name, data = got
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert(mode)
    except OSError:
        raise ZooError(f"{what}: '{name}' is not an image PNG, JPEG or WebP can be read from; upload another") from None


def record_from_png(name: str, data: bytes) -> Record:
    """The recipe inside a PNG's bytes: this project's or the AUTOMATIC1111 web UI's."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(name).name
        path.write_bytes(data)
        try:
            return read_record(path)
        except ZooError as e:
            raise ZooError(str(e).replace(str(path), f"'{name}'")) from None


def record_from_text(text: str) -> Record:
    """The recipe in a pasted AUTOMATIC1111 "PNG Info" text."""
    try:
        return from_a1111(text)
    except ZooError as e:
        raise ZooError(f"the pasted PNG info: {e} (paste the whole text, ending in 'Steps: ..., Seed: ...')") from None


def model_for(record: Record, registry: Registry, current: str) -> tuple[str, str]:
    """The registry key to use for a record's model, and a note when it is not the record's own."""
    try:
        return registry.get(record.model).key, ""
    except UnknownModelError:
        pass
    guess = registry_key_for(record.model, registry) if record.model else None
    if guess:
        return guess, f"model '{record.model}' is not a registry key; chose '{guess}', the closest"
    return current, f"the recipe names no model the registry knows; kept '{current}'"
