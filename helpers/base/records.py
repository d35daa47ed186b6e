"""How an image was made, written into its PNG so that anyone can read it back and make it again.

The `parameters` text chunk is in the AUTOMATIC1111 format, so the PNG-info readers people already use
(the web UI's "PNG Info" tab, civitai, ComfyUI, ...) show prompt, Steps, Sampler, CFG scale, Seed, Size and
Model; the `sdzoo` chunk holds the full record as JSON.

>>> record = read_record("outputs/sd15-42-0001.png")
>>> record.seed, record.scheduler
(42, 'DPM++ 2M Karras')
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, PngImagePlugin

from .errors import ZooError
from .images import parse_size

JSON_KEY = "sdzoo"
# AUTOMATIC1111's `Key: value` pattern (modules/infotext_utils.py, `re_param_code`): a quoted value is JSON.
A1111_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def quote(value) -> str:
    """A value as A1111 writes it: JSON-quoted if it holds a comma, a colon or a line break (its `quote()`)."""
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ",:\n") else text


def unquote(text: str) -> str:
    """A value as A1111 reads it back (its `unquote()`)."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@dataclass(frozen=True)
class Record:
    """Everything needed to make one image again."""

    prompt: str
    seed: int
    num_inference_steps: int
    guidance_scale: float
    scheduler: str
    width: int
    height: int
    model: str
    negative_prompt: str | None = None
    task: str = "text2img"
    loras: dict = field(default_factory=dict)  # active LoRA adapters and their scales
    inputs: dict = field(default_factory=dict)  # input images by argument name -> fingerprint (helpers.base.images)
    scheduler_options: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # other pipeline arguments, e.g. max_sequence_length
    repo: str = ""
    revision: str = ""
    dtype: str = ""
    vae: str = ""  # the registry VAE used instead of the repo's, if any
    blend: int = 0  # outpainting: the result was blended into the input image with this feather (0: not blended)
    device: str = ""
    versions: dict = field(default_factory=dict)
    controls: list = field(default_factory=list)  # ControlNets: model, scale, start, end, image fingerprint
    hires: dict = field(default_factory=dict)  # hires fix: scale, strength, steps, upscaler (helpers.run.hires)
    image_prompt: dict = field(default_factory=dict)  # IP-Adapter: model, scale, image fingerprint
    embeddings: dict = field(default_factory=dict)  # textual-inversion embeddings: source -> token
    schedule_type: str = ""  # A1111's "Schedule type" where not the sampler's own ("Exponential", ...)
    model_hash: str = ""  # A1111's "Model hash" of a checkpoint file: its sha256's first 10 hex digits
    clip_skip: int | None = None  # A1111's "Clip skip" (1: none); None in records made before it was recorded
    plan: dict = field(default_factory=dict)  # how the model fitted the GPU: {"key": "gguf-q4_k_s", "label": ...}

    def generate_kwargs(self) -> dict:
        """Arguments for `helpers.generate` that make this image again."""
        kw = {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            "scheduler": self.scheduler,
            "scheduler_options": dict(self.scheduler_options),
            "width": self.width,
            "height": self.height,
            "seed": self.seed,
        }
        if self.task != "text2img":
            kw["task"] = self.task
        if self.loras:
            kw["loras"] = dict(self.loras)
        if self.hires:
            kw["hires"] = dict(self.hires)
        if self.embeddings:
            kw["embeddings"] = dict(self.embeddings)
        if self.clip_skip is not None:
            kw["clip_skip"] = self.clip_skip
        kw["prompt_prefix"] = ""  # the prompt recorded already holds the model's quality tags
        if self.plan.get("key"):
            kw["plan"] = self.plan["key"]
        return kw | dict(self.extra)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> Record:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def a1111(self) -> str:
        """The AUTOMATIC1111 `parameters` text."""
        lines = [self.prompt]
        if self.negative_prompt:
            lines.append(f"Negative prompt: {self.negative_prompt}")
        fields = {
            "Steps": self.num_inference_steps,
            "Sampler": self.scheduler,
            **({"Schedule type": self.schedule_type} if self.schedule_type else {}),
            "CFG scale": f"{self.guidance_scale:g}",
            "Seed": self.seed,
            "Size": f"{self.width}x{self.height}",
            **({"Model hash": self.model_hash} if self.model_hash else {}),
            "Model": self.model,
        }
        if self.clip_skip and self.clip_skip > 1:  # A1111 writes it only when it skips (processing.py)
            fields["Clip skip"] = self.clip_skip
        if self.loras:
            fields["Lora"] = " ".join(f"{k}:{v:g}" for k, v in self.loras.items())
        if self.task != "text2img":
            fields["Task"] = self.task
            if "strength" in self.extra:
                fields["Denoising strength"] = self.extra["strength"]
            if self.task == "instruct" and "image" in self.inputs:  # the edited picture, as its fingerprint
                fields["Input image"] = self.inputs["image"].removeprefix("sha256:")[:8]
        for i, c in enumerate(self.controls):  # A1111's ControlNet extension writes one quoted field per unit
            short = c["image"].removeprefix("sha256:")[:8]
            unit = f"Module: {c.get('preprocessor', 'none')}, Model: {c['model']} [{short}], Weight: {c['scale']:g}"
            fields[f"ControlNet {i}"] = f"{unit}, Guidance Start: {c['start']:g}, Guidance End: {c['end']:g}"
        if self.image_prompt:  # the ControlNet extension runs IP-Adapters as one more unit
            ip = self.image_prompt
            unit = f"Module: ip-adapter_clip, Model: {ip['model']} [{ip['image'].removeprefix('sha256:')[:8]}]"
            fields[f"ControlNet {len(self.controls)}"] = f"{unit}, Weight: {ip['scale']:g}"
        if self.hires:  # A1111's hires fix fields; Size stays the first pass's
            fields["Denoising strength"] = f"{self.hires['strength']:g}"
            fields["Hires upscale"] = f"{self.hires['scale']:g}"
            fields["Hires steps"] = self.hires["steps"]
            fields["Hires upscaler"] = self.hires["upscaler"]
        if self.plan.get("label"):
            fields["Plan"] = self.plan["label"]
        if self.versions.get("diffusers"):
            fields["Version"] = f"diffusers {self.versions['diffusers']}"
        lines.append(", ".join(f"{k}: {quote(v)}" for k, v in fields.items()))
        return "\n".join(lines)


def parse_a1111(text: str) -> dict:
    """The fields of an AUTOMATIC1111 `parameters` text, read by its rules (`parse_generation_parameters`).

    The last line holds the settings when it has at least three `Key: value` pairs; the lines before it are the
    prompt, then the negative prompt from the line that starts with "Negative prompt:". Quoted values are unquoted.
    """
    *lines, last = text.strip().split("\n")
    if len(A1111_PARAM.findall(last)) < 3:
        lines, last = [*lines, last], ""
    prompt, negative, in_negative = [], [], False
    for line in (line.strip() for line in lines):
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[len("Negative prompt:") :].strip()
        (negative if in_negative else prompt).append(line)
    out = {"prompt": "\n".join(prompt), "negative_prompt": "\n".join(negative) if in_negative else None}
    for key, value in A1111_PARAM.findall(last):
        out[key] = unquote(value)
    return out


# A1111's "Schedule type" -> the diffusers scheduler options that make it, from diffusers' table of A1111 schedule
# types (https://huggingface.co/docs/diffusers/api/schedulers/overview, "Noise schedules and schedule types").
# "Automatic" is the sampler's own schedule; Karras is also folded into the sampler name ("DPM++ 2M Karras").
SCHEDULE_TYPES = {
    "Automatic": {},
    "Karras": {"use_karras_sigmas": True},
    "Exponential": {"timestep_spacing": "linspace", "use_exponential_sigmas": True},
    "Beta": {"timestep_spacing": "linspace", "use_beta_sigmas": True},
    "SGM Uniform": {"timestep_spacing": "trailing"},
    "Simple": {"timestep_spacing": "trailing"},
}


def schedule_type(options: dict) -> str:
    """A1111's schedule type of scheduler options (Karras is in the sampler's name), or ""."""
    return next((name for name, wanted in SCHEDULE_TYPES.items() if wanted and name != "Karras"
                 and all(options.get(k) == v for k, v in wanted.items())), "")  # fmt: skip


def _schedule(fields: dict) -> tuple[dict, str]:
    """The scheduler options and the schedule type's name of an A1111 text; one diffusers lacks is kept by name."""
    name = fields.get("Schedule type", "")
    if name and name not in SCHEDULE_TYPES:
        warnings.warn(f"A1111's schedule type '{name}' has no diffusers equivalent: it is kept in the record, and "
                      "making the image again uses the sampler's own schedule", stacklevel=3)  # fmt: skip
        return {}, name
    options = {} if name == "Karras" else dict(SCHEDULE_TYPES.get(name, {}))  # Karras: in the sampler's name
    return options, "" if name in ("", "Automatic", "Karras") else name


def _sampler(fields: dict) -> str:
    """A1111 1.9+ writes "Sampler: DPM++ 2M, Schedule type: Karras"; the sampler table knows "DPM++ 2M Karras"."""
    sampler = fields.get("Sampler", "default")
    if fields.get("Schedule type") == "Karras" and not sampler.endswith("Karras"):
        sampler += " Karras"
    return sampler


def from_a1111(text: str) -> Record:
    """The record in an AUTOMATIC1111 `parameters` text (the web UI's "PNG Info"): its prompt and main fields."""
    p = parse_a1111(text)
    options, stype = _schedule(p)
    try:
        width, height = parse_size(p["Size"])
        return Record(
            prompt=p["prompt"],
            negative_prompt=p["negative_prompt"],
            seed=int(p["Seed"]),
            num_inference_steps=int(p["Steps"]),
            guidance_scale=float(p["CFG scale"]),
            scheduler=_sampler(p),
            scheduler_options=options,
            schedule_type=stype,
            width=width,
            height=height,
            model=p.get("Model", ""),
            model_hash=p.get("Model hash", ""),
            clip_skip=int(p.get("Clip skip", 1)),
        )
    except (KeyError, ValueError, ZooError) as e:
        raise ZooError(f"its 'parameters' text lacks a field this needs ({e})") from None


def read_record(path: str | Path) -> Record:
    """The record of a PNG written by `helpers` (or the main fields of one from the A1111 web UI)."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            text = dict(getattr(image, "text", {}) or image.info)
    except (OSError, ValueError) as e:
        raise ZooError(f"{path}: cannot read it as an image ({e})") from None
    if JSON_KEY in text:
        try:
            return Record.from_dict(json.loads(text[JSON_KEY]))
        except (json.JSONDecodeError, TypeError, AttributeError) as e:
            raise ZooError(
                f"{path}: its '{JSON_KEY}' recipe is damaged or incomplete ({str(e).splitlines()[0][:120]}); "
                "it cannot be regenerated from it (read the prompt and settings by eye, or use generate())"
            ) from None
    if "parameters" in text:
        try:
            return from_a1111(text["parameters"])
        except ZooError as e:
            raise ZooError(f"{path}: {e}") from None
    raise ZooError(f"{path}: the PNG holds no generation record (no 'parameters' or '{JSON_KEY}' text chunk)")


def png_info(record: Record) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", record.a1111())
    info.add_itxt(JSON_KEY, record.to_json())
    return info


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "image"


def check_folder(out_dir: str | Path) -> Path:
    """Make sure images can be written into `out_dir` (creating it), before any work is done; say why not."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ZooError(f"{out} is a file, not a folder: choose a folder for the images (--out DIR)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise ZooError(f"{out}: images cannot be written there ({e.strerror or e}); choose another folder") from None
    return out


def save_images(pairs, out_dir: str | Path = "outputs") -> list[Path]:
    """Save (image, record) pairs; if the folder fails midway, save the rest in a new temporary folder and say so."""
    pairs = list(pairs)
    paths = []
    for i, (image, record) in enumerate(pairs):
        try:
            paths.append(save_image(image, record, out_dir))
        except OSError as e:
            kept = Path(tempfile.mkdtemp(prefix="sdzoo-unsaved-"))
            for im, rec in pairs[i:]:
                save_image(im, rec, kept)
            raise ZooError(
                f"{out_dir}: saving failed ({e.strerror or e}); the {len(pairs) - i} unsaved image(s) were saved in "
                f"{kept} instead" + (f" (and {len(paths)} in {out_dir})" if paths else "") + ": move them from there"
            ) from None
    return paths


def save_image(image: Image.Image, record: Record, out_dir: str | Path = "outputs") -> Path:
    """Save as `MODEL-SEED-NNNN.png` with the record inside; never overwrites (the counter moves on)."""
    return save_png(image, out_dir, f"{_slug(record.model)}-{record.seed}", png_info(record))


def save_png(image: Image.Image, out_dir: str | Path, stem: str, pnginfo=None) -> Path:
    """Save as `STEM-NNNN.png` in `out_dir`; never overwrites (the counter moves on to a free name)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = _slug(stem)
    for counter in range(1, 100_000):
        path = out / f"{stem}-{counter:04d}.png"
        try:
            with open(path, "xb") as f:  # exclusive create: a file that exists is never replaced
                image.save(f, format="PNG", pnginfo=pnginfo)
            return path
        except FileExistsError:
            continue
    raise ZooError(f"{out}: 99,999 images named {stem}-NNNN.png already; choose another folder")
