"""The generation panel's sections: each holds its controls, shows what they mean and turns them into arguments.

A section knows one job: the model picker, the prompts, the sampler, the size, the seeds, the task and its
input images, a LoRA, a control, an image prompt, the hires fix, a PNG's recipe. It fills itself from a registry
entry (`apply`), puts a recipe back (`reuse`, which returns notes on what it could not) and gives its part of
`generate()`'s arguments (`inputs`, which raises a `ZooError` that says what to fix). The panel
(`helpers.panels.generation`) assembles them and runs the generation.

>>> seeds = SeedSection()
>>> seeds.seed.value = 7; seeds.chosen()
7
"""

from __future__ import annotations

import html
import random

import ipywidgets as w

from ..base.errors import ZooError
from ..base.images import fingerprint, parse_size
from ..base.records import Record
from ..run import clip_skip
from ..run import control as control_mod
from ..run import hires as hires_mod
from ..run.ip_adapter import ImagePrompt
from . import settings
from .settings import control_choices, lora_choices, negative_off, presets, size_problem

TASKS = ("text2img", "img2img", "inpaint", "instruct")
TAB_TITLES = ("Text to image", "Image to image", "Inpaint", "Edit by instruction")
WIDE = w.Layout(width="520px")


def _label(m) -> str:
    gated = ", gated" if m.gated else ""
    return f"{m.key} ({m.family}, {_gb(m.size.vram_gb)}{gated})"


def _gb(vram_gb) -> str:
    """The entry's GPU memory, or that no source gave it (the registry leaves it out rather than guess)."""
    return "GPU memory unknown" if vram_gb is None else f"{vram_gb:g} GB"


def _offered(dropdown, value) -> bool:
    return value in [v for _, v in dropdown.options]


class ModelSection(w.VBox):
    """The model picker, narrowed by a filter, and the chosen entry's licence, size and tasks."""

    controls = ("model", "filter", "info", "plan")

    def __init__(self, registry, machine=None):
        self.reg, self.machine = registry, machine  # the machine plans are made for (None: this one)
        self.model = w.Dropdown(description="Model", layout=WIDE)
        self.filter = w.Text(placeholder="filter: family, tag or name", layout=w.Layout(width="220px"))
        self.plan = w.Dropdown(description="Plan", options=[("auto", "")], layout=WIDE)
        self.info = w.HTML()
        self.filter.observe(lambda _: self.refresh(), "value")
        super().__init__([w.HBox([self.model, self.filter]), self.plan, self.info])

    def refresh(self, select: str | None = None) -> None:
        """The models the filter lets through; the chosen one stays chosen while it is among them."""
        text = self.filter.value.strip().lower()
        shown = [m for m in self.reg.models.values() if not text or text in f"{m.key} {m.family} {' '.join(m.tags)}"]
        current = select or self.model.value
        self.model.options = [(_label(m), m.key) for m in shown]
        if current in [m.key for m in shown]:
            self.model.value = current

    def apply(self, spec) -> None:
        licence = html.escape(spec.license) + (" · <b>gated</b>: accept it on the Hub and log in" if spec.gated else "")
        tasks = ", ".join(TAB_TITLES[TASKS.index(t)].lower() for t in TASKS if t in spec.tasks)
        self.info.value = (
            f"<b>{html.escape(spec.name)}</b> · {spec.family} · {licence} · "
            + (f"about {_gb(spec.size.vram_gb)} of GPU memory" if spec.size.vram_gb is not None else _gb(None))
            + f" · {tasks}<br><i>{html.escape(spec.description)}</i>"
        )
        self.plan.options = settings.plan_choices(spec, self.reg, self.machine)
        self.plan.value = ""

    def inputs(self) -> dict:
        return {"plan": self.plan.value} if self.plan.value else {}

    def reuse(self, record: Record) -> list[str]:
        key = record.plan.get("key", "")
        if key and not _offered(self.plan, key):
            return [f"plan {key} does not fit this machine; the plan's own choice is used"]
        self.plan.value = key if key else ""
        return []


class PromptSection(w.VBox):
    """The prompt and the negative prompt, turned off (and saying why) where the model ignores it."""

    controls = ("prompt", "negative", "negative_note")

    def __init__(self):
        self.prompt = w.Textarea(description="Prompt", placeholder="what to make (Ctrl+Enter over the results runs it)",
                                 layout=w.Layout(width="520px", height="64px"))  # fmt: skip
        self.negative = w.Textarea(description="Negative", layout=w.Layout(width="520px", height="40px"))
        self.negative_note = w.HTML()
        super().__init__([self.prompt, w.HBox([self.negative, self.negative_note])])

    def show_negative(self, spec, guidance: float) -> None:
        why = negative_off(spec, guidance) if spec is not None else None
        self.negative.disabled = why is not None
        self.negative.placeholder = f"off: {why}" if why else "what to avoid"
        self.negative_note.value = f"<i style='color:#777'>off: {html.escape(why)}</i>" if why else ""
        (self.negative.add_class if why else self.negative.remove_class)("sdzoo-off")

    def inputs(self) -> dict:
        if not self.prompt.value.strip():
            raise ZooError("Write a prompt first: nothing was generated from an empty prompt")
        negative = self.negative.value if not self.negative.disabled else None
        return {"prompt": self.prompt.value, "negative_prompt": negative}

    def reuse(self, record: Record) -> list[str]:
        self.prompt.value, self.negative.value = record.prompt, record.negative_prompt or ""
        return []


class SamplingSection(w.VBox):
    """Steps, guidance, the sampler and A1111's clip skip, from the entry's defaults."""

    controls = ("steps", "guidance", "scheduler", "clip_skip")

    def __init__(self):
        self.steps = w.IntSlider(description="Steps", min=1, max=150)
        self.guidance = w.FloatSlider(description="Guidance", min=0, max=20, step=0.5)
        self.scheduler = w.Dropdown(description="Sampler")
        self.clip_skip = w.Dropdown(description="Clip skip", options=[1], value=1)
        super().__init__([self.steps, self.guidance, self.scheduler, self.clip_skip])

    def apply(self, spec) -> None:
        d = spec.defaults
        self.steps.value, self.guidance.value = d.steps, d.guidance_scale
        self.scheduler.options = spec.schedulers
        self.scheduler.value = d.scheduler
        self.clip_skip.options = clip_skip.choices(spec.family)
        self.clip_skip.value = d.clip_skip if d.clip_skip in self.clip_skip.options else 1

    def inputs(self) -> dict:
        return {"num_inference_steps": self.steps.value, "guidance_scale": self.guidance.value,
                "scheduler": self.scheduler.value, "clip_skip": self.clip_skip.value}  # fmt: skip

    def reuse(self, record: Record, key: str) -> list[str]:
        self.steps.value, self.guidance.value = record.num_inference_steps, record.guidance_scale
        if record.clip_skip in self.clip_skip.options:
            self.clip_skip.value = record.clip_skip
        if record.scheduler in self.scheduler.options:
            self.scheduler.value = record.scheduler
            return []
        return [f"sampler '{record.scheduler}' is not one of {key}'s; kept {self.scheduler.value}"]


class SizeSection(w.HBox):
    """A size preset or any width and height, with what is wrong with them said beside them."""

    controls = ("size", "width", "height", "size_note")

    def __init__(self):
        self.spec = None
        self.size = w.Dropdown(description="Size")
        narrow = {"layout": w.Layout(width="110px"), "style": {"description_width": "16px"}}
        self.width = w.IntText(description="W", tooltip="width in pixels", **narrow)
        self.height = w.IntText(description="H", tooltip="height in pixels", **narrow)
        self.size_note = w.HTML()
        self.size.observe(lambda _: self.use_preset(), "value")
        self.width.observe(lambda _: self.show(), "value")
        self.height.observe(lambda _: self.show(), "value")
        super().__init__([self.size, self.width, self.height, self.size_note])

    def apply(self, spec) -> None:
        self.spec = spec
        self.size.options = presets(spec)
        self.size.value = self.size.options[0]

    def use_preset(self) -> None:
        if self.size.value:
            self.width.value, self.height.value = parse_size(self.size.value)

    def problem(self) -> str | None:
        return size_problem(self.spec, self.width.value, self.height.value) if self.spec else None

    def show(self) -> None:
        problem = self.problem()
        self.size_note.value = f"<span style='color:#b00'>{html.escape(problem)}</span>" if problem else ""

    def inputs(self) -> dict:
        problem = self.problem()
        if problem:
            raise ZooError(problem)
        return {"width": self.width.value, "height": self.height.value}

    def reuse(self, record: Record) -> list[str]:
        size = f"{record.width}x{record.height}"
        if size in self.size.options:
            self.size.value = size
        self.width.value, self.height.value = record.width, record.height
        return []


class SeedSection(w.VBox):
    """The seed (-1: a new one each time), the dice, the last image's seed, the lock, and how many images."""

    controls = ("seed", "dice", "recycle", "lock", "num_images")

    def __init__(self):
        self.last_seed = None
        self.seed = w.IntText(description="Seed", value=-1, tooltip="-1: a new random seed for each Generate")
        self.dice = w.Button(description="⚄ random", tooltip="seed -1: a new random seed each time",
                             layout=w.Layout(width="96px"))  # fmt: skip
        self.recycle = w.Button(description="last", icon="recycle", tooltip="the last image's seed",
                                layout=w.Layout(width="80px"))  # fmt: skip
        self.lock = w.ToggleButton(tooltip="keep this seed for every Generate", layout=w.Layout(width="110px"))
        self.num_images = w.IntSlider(description="Images", min=1, max=8, value=1)
        self.lock.observe(lambda _: self.show_lock(), "value")
        self.dice.on_click(lambda _: self.random_seed())
        self.recycle.on_click(lambda _: self.reuse_last_seed())
        self.show_lock()
        super().__init__([w.HBox([self.seed, self.dice, self.recycle, self.lock]), self.num_images])

    def show_lock(self) -> None:
        locked = self.lock.value
        self.lock.description, self.lock.icon = ("locked", "lock") if locked else ("unlocked", "unlock")
        self.lock.button_style = "warning" if locked else ""

    def roll(self) -> int:
        """A new concrete random seed in the field."""
        self.seed.value = random.randrange(2**32)
        return self.seed.value

    def random_seed(self) -> None:
        """Seed -1: a new random seed for every Generate (the dice button)."""
        self.seed.value = -1

    def reuse_last_seed(self) -> None:
        """The last image's seed back in the field, locked (the recycle button)."""
        if self.last_seed is not None:
            self.seed.value, self.lock.value = self.last_seed, True

    def chosen(self) -> int | None:
        """The seed to use: None for -1 (a new one)."""
        return None if self.seed.value == -1 else self.seed.value

    def inputs(self) -> dict:
        return {"seed": self.chosen(), "num_images": self.num_images.value}

    def reuse(self, record: Record, seed_only: bool = False) -> list[str]:
        if not seed_only:
            self.num_images.value = 1
        self.seed.value, self.lock.value = record.seed, True
        return []


class TaskSection(w.Tab):
    """Text to image, image to image, inpaint or edit by instruction: a tab each, with the input image, the mask and
    the strength (an instruction edit has no strength: the prompt says what to change)."""

    controls = ("tasks", "edit_image", "mask", "strength")

    def __init__(self):
        self.edit_image = w.FileUpload(accept="image/*", description="Input image", icon="image")
        self.mask = w.FileUpload(accept="image/*", description="Mask (white: repaint)", icon="image")
        self.strength = w.FloatSlider(description="Strength", min=0.05, max=1, step=0.05, value=0.6)
        instruct = w.HTML("the prompt is the instruction, e.g. <i>make it night</i>")
        edits = [w.VBox([self.edit_image, self.strength]), w.VBox([self.edit_image, self.mask, self.strength]),
                 w.VBox([self.edit_image, instruct])]  # fmt: skip
        super().__init__(children=[w.HTML("from the prompt alone"), *edits], titles=TAB_TITLES)
        self.tasks = self

    @property
    def task(self) -> str:
        return TASKS[self.selected_index or 0]

    def inputs(self, spec, registry=None) -> dict:
        task, title = self.task, TAB_TITLES[TASKS.index(self.task)]
        if task not in spec.tasks:
            able = [m.key for m in registry.list(task=task)] if registry is not None else []
            raise ZooError(f"{spec.key} cannot do {title.lower()}: choose another model"
                           + (f" ({', '.join(able)} can)" if able else ""))  # fmt: skip
        if task == "text2img":
            return {"task": task}
        kw = {"task": task, "image": settings.upload_image(self.edit_image, "Input image")}
        if task != "instruct":
            kw["strength"] = self.strength.value
        if kw["image"] is None:
            raise ZooError(f"{title} needs an input image: upload one in its tab")
        if task == "inpaint":
            kw["mask_image"] = settings.upload_image(self.mask, "Mask", "L")
            if kw["mask_image"] is None:
                raise ZooError("Inpaint needs a mask (white where the image is repainted): upload one in its tab")
        return kw

    def apply(self, spec) -> None:
        """An editing model opens on its instruction tab; a model without the chosen task on its first."""
        if self.task not in spec.tasks:
            self.selected_index = TASKS.index(spec.tasks[0]) if spec.tasks[0] in TASKS else 0

    def reuse(self, record: Record) -> list[str]:
        self.selected_index = TASKS.index(record.task) if record.task in TASKS else 0
        self.strength.value = record.extra.get("strength", self.strength.value)
        return []


class LoraSection(w.VBox):
    """A LoRA of the model's family (from the registry or trained here) and its scale."""

    controls = ("lora", "lora_scale")

    def __init__(self):
        self.lora = w.Dropdown(description="LoRA", layout=WIDE)
        self.lora_scale = w.FloatSlider(description="LoRA scale", min=0, max=1.5, step=0.05, value=1.0)
        super().__init__([self.lora, self.lora_scale])

    def apply(self, spec, registry) -> None:
        self.lora.options = lora_choices(spec, registry)
        self.lora.value = ""

    def inputs(self) -> dict:
        return {"loras": {self.lora.value: self.lora_scale.value} if self.lora.value else {}}

    def reuse(self, record: Record, key: str) -> list[str]:
        name, scale = next(iter(record.loras.items()), ("", 1.0))
        if not _offered(self.lora, name):
            return [f"LoRA '{name}' is not offered for {key}"]
        self.lora.value, self.lora_scale.value = name, scale
        return []


class ControlSection(w.VBox):
    """A ControlNet or T2I-Adapter of the model's family, its control image (or the map made from it) and weight."""

    controls = ("controlnet", "control_image", "preprocess", "control_scale")

    def __init__(self, registry):
        self.reg = registry
        self.controlnet = w.Dropdown(description="Control", layout=WIDE, tooltip="a ControlNet or a T2I-Adapter")
        self.control_image = w.FileUpload(accept="image/*", description="Control image", icon="image")
        self.preprocess = w.Checkbox(description="make the edge or depth map from it", value=True, indent=False)
        self.control_scale = w.FloatSlider(description="Weight", min=0, max=2, step=0.05, value=1.0)
        super().__init__([self.controlnet, self.control_image, self.preprocess, self.control_scale])

    def apply(self, spec) -> None:
        self.controlnet.options = control_choices(spec, self.reg)
        self.controlnet.value = ""

    def inputs(self) -> dict:
        if not self.controlnet.value:
            return {}
        image = settings.upload_image(self.control_image, "Control image")
        if image is None:
            raise ZooError(f"{self.controlnet.value} needs a control image: upload one, or choose none")
        kind = settings.control_kind(self.controlnet.value, self.reg)
        if self.preprocess.value and kind in ("canny", "depth"):
            image = control_mod.preprocess(image, kind, registry=self.reg)
        return {"control": [control_mod.Control(self.controlnet.value, image, self.control_scale.value)]}

    def reuse(self, record: Record) -> list[str]:
        net = record.controls[0] if record.controls else {"model": "", "scale": 1.0}
        if _offered(self.controlnet, net["model"]):
            self.controlnet.value, self.control_scale.value = net["model"], net["scale"]
        return []


class ImagePromptSection(w.VBox):
    """An image prompt (IP-Adapter): a picture that steers the image beside the words, and its weight."""

    controls = ("ip_use", "ip_image", "ip_scale")

    def __init__(self):
        self.ip_use = w.Checkbox(description="steer with an image prompt (IP-Adapter)", value=False, indent=False)
        self.ip_image = w.FileUpload(accept="image/*", description="Image prompt", icon="image")
        self.ip_scale = w.FloatSlider(description="Weight", min=0, max=1.5, step=0.05, value=0.6,
                                      tooltip="0: off; 0.5 mixes picture and prompt evenly")  # fmt: skip
        super().__init__([self.ip_use, self.ip_image, self.ip_scale])

    def inputs(self) -> dict:
        if not self.ip_use.value:
            return {}
        image = settings.upload_image(self.ip_image, "Image prompt")
        if image is None:
            raise ZooError("The IP-Adapter needs an image prompt: upload a picture, or untick the image prompt")
        return {"ip_adapter": ImagePrompt(image, self.ip_scale.value)}

    def reuse(self, record: Record) -> list[str]:
        """The image prompt's weight back; a note when the uploaded picture is not the one the image was made with."""
        ip = record.image_prompt
        self.ip_use.value = bool(ip)
        if not ip:
            return []
        self.ip_scale.value = ip["scale"]
        got = settings.upload_image(self.ip_image, "Image prompt")
        if got is None or fingerprint(got) != ip["image"]:
            return ["upload the image prompt it was made with again (only its fingerprint is in the recipe)"]
        return []


class HiresSection(w.VBox):
    """A1111's hires fix: upscale by a filter or a registry upscaler, then repaint at a strength."""

    controls = ("hires", "hires_scale", "hires_strength", "hires_upscaler")

    def __init__(self, registry):
        self.hires = w.Checkbox(description="hires fix: upscale, then repaint", value=False, indent=False)
        self.hires_scale = w.FloatSlider(description="Upscale", min=1.25, max=4, step=0.25, value=2.0)
        self.hires_strength = w.FloatSlider(description="Strength", min=0.05, max=1, step=0.05, value=0.5)
        self.hires_upscaler = w.Dropdown(description="Upscaler",
                                         options=[*hires_mod.UPSCALERS, *hires_mod.names(registry)],
                                         value="Lanczos", tooltip="a filter, or a registry upscaler")  # fmt: skip
        super().__init__([self.hires, self.hires_scale, self.hires_strength, self.hires_upscaler])

    def inputs(self) -> dict:
        if not self.hires.value:
            return {}
        return {"hires": {"scale": self.hires_scale.value, "strength": self.hires_strength.value,
                          "upscaler": self.hires_upscaler.value}}  # fmt: skip

    def reuse(self, record: Record) -> list[str]:
        self.hires.value = bool(record.hires)
        if record.hires:
            self.hires_scale.value, self.hires_strength.value = record.hires["scale"], record.hires["strength"]
            if record.hires.get("upscaler") in self.hires_upscaler.options:
                self.hires_upscaler.value = record.hires["upscaler"]
        return []


class PngInfoSection(w.VBox):
    """A PNG's recipe (this project's or AUTOMATIC1111's), dropped as a file or pasted as text."""

    controls = ("png_info", "info_text", "info_apply")

    def __init__(self):
        self.png_info = w.FileUpload(accept=".png,image/png", description="PNG info", icon="upload")
        self.info_text = w.Textarea(placeholder="…or paste an AUTOMATIC1111 PNG info text", layout=WIDE)
        self.info_apply = w.Button(description="Use this text", icon="check")
        super().__init__([self.png_info, self.info_text, self.info_apply])

    def read(self, text: str | None = None) -> Record | None:
        """The recipe of the pasted text or of the uploaded PNG (None: none uploaded); a ZooError if unreadable."""
        if text is not None:
            return settings.record_from_text(text)
        got = settings.upload_bytes(self.png_info)
        return None if got is None else settings.record_from_png(*got)
