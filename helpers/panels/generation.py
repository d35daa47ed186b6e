"""The generation panel: a model, a prompt, text-to-image or an edit, and a gallery of this session's images.

>>> GenerationPanel("sdxl-turbo")      # write a prompt, Generate (or Ctrl+Enter over the results); Cancel stops it

Seed -1 draws a new seed for each run (recorded, and the recycle button brings it back). The gallery opens an
image at full size and puts its settings (or seed) back; a PNG dropped on "PNG info", from this project or the
AUTOMATIC1111 web UI, fills the controls. The callbacks are plain methods (`generate`, `cancel`, `save`,
`reuse`, `load_png_info`, ...), so tests and scripts drive the panel without a browser. Work runs in a thread
so the Cancel button and the progress line stay live.
"""

from __future__ import annotations

import html
import random
import threading
from pathlib import Path

import ipywidgets as w
from ipyevents import Event

from ..base.errors import ZooError
from ..base.images import fingerprint, parse_size
from ..base.records import Record
from ..run import control as control_mod
from ..run import hires as hires_mod
from ..run.generate import generate
from ..run.ip_adapter import ImagePrompt
from ..run.previews import preview_vae_key
from ..zoo import registry as registry_mod
from . import settings
from .background import Background
from .gallery import Gallery, png_bytes, recipe_html
from .settings import StepClock, control_choices, lora_choices, negative_off, presets, size_problem

TASKS = ("text2img", "img2img", "inpaint")
TAB_TITLES = ("Text to image", "Image to image", "Inpaint")
WIDE = w.Layout(width="520px")
# Disabled fields look disabled (Jupyter's own style barely changes them); HTML widgets apply <style> as given.
STYLE = "<style>.sdzoo-off textarea{background:#eee;color:#888;cursor:not-allowed}</style>"


class Cancelled(Exception):
    """Raised from the step callback when Cancel is pressed."""


def _label(m) -> str:
    gated = ", gated" if m.gated else ""
    return f"{m.key} ({m.family}, {m.size.vram_gb:g} GB{gated})"


class GenerationPanel(Background, w.VBox):
    """One model, one prompt, a few images, with their recipes, and a gallery of the session's images."""

    def __init__(self, model: str = "sd15", out_dir: str = "outputs/panel", device: str = "auto", **generate_kwargs):
        self.reg, self.out_dir, self.device, self.extra = registry_mod.default(), out_dir, device, generate_kwargs
        self.result, self._thread, self._cancel = None, None, threading.Event()
        self._seen_stamp = None  # the last key event's timeStamp
        self.previews_shown, self.last_seed, self.clock = 0, None, StepClock()
        self.model = w.Dropdown(description="Model", layout=WIDE)
        self.filter = w.Text(placeholder="filter: family, tag or name", layout=w.Layout(width="220px"))
        self.info = w.HTML()
        self.prompt = w.Textarea(description="Prompt", placeholder="what to make (Ctrl+Enter over the results runs it)",
                                 layout=w.Layout(width="520px", height="64px"))  # fmt: skip
        self.negative = w.Textarea(description="Negative", layout=w.Layout(width="520px", height="40px"))
        self.negative_note = w.HTML()
        self.steps = w.IntSlider(description="Steps", min=1, max=150)
        self.guidance = w.FloatSlider(description="Guidance", min=0, max=20, step=0.5)
        self.scheduler = w.Dropdown(description="Sampler")
        self.size = w.Dropdown(description="Size")
        narrow = {"layout": w.Layout(width="110px"), "style": {"description_width": "16px"}}
        self.width = w.IntText(description="W", tooltip="width in pixels", **narrow)
        self.height = w.IntText(description="H", tooltip="height in pixels", **narrow)
        self.size_note = w.HTML()
        self.seed = w.IntText(description="Seed", value=-1, tooltip="-1: a new random seed for each Generate")
        self.dice = w.Button(description="⚄ random", tooltip="seed -1: a new random seed each time",
                             layout=w.Layout(width="96px"))  # fmt: skip
        self.recycle = w.Button(description="last", icon="recycle", tooltip="the last image's seed",
                                layout=w.Layout(width="80px"))  # fmt: skip
        self.lock = w.ToggleButton(tooltip="keep this seed for every Generate", layout=w.Layout(width="110px"))
        self.num_images = w.IntSlider(description="Images", min=1, max=8, value=1)
        self.edit_image = w.FileUpload(accept="image/*", description="Input image", icon="image")
        self.mask = w.FileUpload(accept="image/*", description="Mask (white: repaint)", icon="image")
        self.strength = w.FloatSlider(description="Strength", min=0.05, max=1, step=0.05, value=0.6)
        edits = [w.VBox([self.edit_image, self.strength]), w.VBox([self.edit_image, self.mask, self.strength])]
        self.tasks = w.Tab(children=[w.HTML("from the prompt alone"), *edits], titles=TAB_TITLES)
        self.lora = w.Dropdown(description="LoRA", layout=WIDE)
        self.lora_scale = w.FloatSlider(description="LoRA scale", min=0, max=1.5, step=0.05, value=1.0)
        self.controlnet = w.Dropdown(description="Control", layout=WIDE, tooltip="a ControlNet or a T2I-Adapter")
        self.control_image = w.FileUpload(accept="image/*", description="Control image", icon="image")
        self.preprocess = w.Checkbox(description="make the edge or depth map from it", value=True, indent=False)
        self.control_scale = w.FloatSlider(description="Weight", min=0, max=2, step=0.05, value=1.0)
        self.ip_use = w.Checkbox(description="steer with an image prompt (IP-Adapter)", value=False, indent=False)
        self.ip_image = w.FileUpload(accept="image/*", description="Image prompt", icon="image")
        self.ip_scale = w.FloatSlider(description="Weight", min=0, max=1.5, step=0.05, value=0.6,
                                      tooltip="0: off; 0.5 mixes picture and prompt evenly")  # fmt: skip
        self.hires = w.Checkbox(description="hires fix: upscale, then repaint", value=False, indent=False)
        self.hires_scale = w.FloatSlider(description="Upscale", min=1.25, max=4, step=0.25, value=2.0)
        self.hires_strength = w.FloatSlider(description="Strength", min=0.05, max=1, step=0.05, value=0.5)
        self.hires_upscaler = w.Dropdown(description="Upscaler", options=[*hires_mod.UPSCALERS, *self.reg.upscalers],
                                         value="Lanczos", tooltip="a filter, or a registry upscaler")  # fmt: skip
        self.png_info = w.FileUpload(accept=".png,image/png", description="PNG info", icon="upload")
        self.info_text = w.Textarea(placeholder="…or paste an AUTOMATIC1111 PNG info text", layout=WIDE)
        self.info_apply = w.Button(description="Use this text", icon="check")
        self.live = w.Checkbox(description="live preview (tiny VAE)", value=True, indent=False)
        self.go = w.Button(description="Generate", button_style="primary", icon="play")
        self.stop = w.Button(description="Cancel", disabled=True, icon="stop")
        self.save_button = w.Button(description="Save", disabled=True, icon="floppy-o")
        self.progress = w.IntProgress(value=0, min=0, max=1, description="")
        self.progress_line = w.HTML()
        self.status = w.HTML()
        self.images = w.HBox()
        self.recipe = w.HTML()
        self.gallery = Gallery(self.reuse, out_dir)
        self._wire()
        self._refresh_models(select=model)
        self._show_lock()
        super().__init__(self._layout())
        self.key_events = Event(source=self.results, watched_events=["keydown"])
        self.key_events.on_dom_event(self.press)

    def _wire(self) -> None:
        self.filter.observe(lambda _: self._refresh_models(), "value")
        self.model.observe(lambda _: self.apply_defaults(), "value")
        self.guidance.observe(lambda _: self._show_negative(), "value")
        self.size.observe(lambda _: self._use_preset(), "value")
        self.width.observe(lambda _: self._show_size(), "value")
        self.height.observe(lambda _: self._show_size(), "value")
        self.lock.observe(lambda _: self._show_lock(), "value")
        self.png_info.observe(lambda _: self.load_png_info(), "value")
        self.info_apply.on_click(lambda _: self.load_png_info(text=self.info_text.value))
        self.dice.on_click(lambda _: self.random_seed())
        self.recycle.on_click(lambda _: self.reuse_last_seed())
        self.go.on_click(lambda _: self.generate())
        self.stop.on_click(lambda _: self.cancel())
        self.save_button.on_click(lambda _: self.save())

    def _layout(self) -> list:
        extras = w.Accordion(children=[
            w.VBox([self.lora, self.lora_scale]),
            w.VBox([self.controlnet, self.control_image, self.preprocess, self.control_scale]),
            w.VBox([self.ip_use, self.ip_image, self.ip_scale]),
            w.VBox([self.hires, self.hires_scale, self.hires_strength, self.hires_upscaler]),
            w.VBox([self.png_info, self.info_text, self.info_apply]),
        ], titles=("LoRA", "ControlNet / T2I-Adapter", "IP-Adapter", "Hires fix",
                   "PNG info: reuse a PNG's recipe"))  # fmt: skip
        buttons = w.HBox([self.go, self.stop, self.save_button, self.progress, self.live])
        self.results = w.VBox([buttons, self.progress_line, self.status, self.images, self.recipe])
        return [w.HTML(STYLE), w.HBox([self.model, self.filter]), self.info, self.tasks, self.prompt,
                w.HBox([self.negative, self.negative_note]), self.steps, self.guidance, self.scheduler,
                w.HBox([self.size, self.width, self.height, self.size_note]),
                w.HBox([self.seed, self.dice, self.recycle, self.lock]), self.num_images, extras,
                self.results, self.gallery]  # fmt: skip

    # --- what the controls show ---------------------------------------------------------------------------
    def _refresh_models(self, select: str | None = None) -> None:
        text = self.filter.value.strip().lower()
        shown = [m for m in self.reg.models.values() if not text or text in f"{m.key} {m.family} {' '.join(m.tags)}"]
        current = select or self.model.value
        self.model.options = [(_label(m), m.key) for m in shown]
        if current in [m.key for m in shown]:
            self.model.value = current

    def apply_defaults(self) -> None:
        """Fill every control from the chosen model's registry entry."""
        if not self.model.value:
            return
        spec = self.reg.get(self.model.value)
        d = spec.defaults
        self.steps.value, self.guidance.value = d.steps, d.guidance_scale
        self.size.options = presets(spec)
        self.size.value = self.size.options[0]
        self.scheduler.options = spec.schedulers
        self.scheduler.value = d.scheduler
        self.lora.options = lora_choices(spec, self.reg)
        self.lora.value = ""
        self.controlnet.options = control_choices(spec, self.reg)
        self.controlnet.value = ""
        self._show_negative()
        licence = html.escape(spec.license) + (" · <b>gated</b>: accept it on the Hub and log in" if spec.gated else "")
        tasks = ", ".join(TAB_TITLES[TASKS.index(t)].lower() for t in TASKS if t in spec.tasks)
        self.info.value = (
            f"<b>{html.escape(spec.name)}</b> · {spec.family} · {licence} · about {spec.size.vram_gb:g} GB "
            f"of GPU memory · {tasks}<br><i>{html.escape(spec.description)}</i>"
        )

    def _show_negative(self) -> None:
        why = negative_off(self.reg.get(self.model.value), self.guidance.value) if self.model.value else None
        self.negative.disabled = why is not None
        self.negative.placeholder = f"off: {why}" if why else "what to avoid"
        self.negative_note.value = f"<i style='color:#777'>off: {html.escape(why)}</i>" if why else ""
        (self.negative.add_class if why else self.negative.remove_class)("sdzoo-off")

    def _use_preset(self) -> None:
        if self.size.value:
            self.width.value, self.height.value = parse_size(self.size.value)

    def _show_size(self) -> None:
        problem = size_problem(self.reg.get(self.model.value), self.width.value, self.height.value)
        self.size_note.value = f"<span style='color:#b00'>{html.escape(problem)}</span>" if problem else ""

    def _show_lock(self) -> None:
        locked = self.lock.value
        self.lock.description, self.lock.icon = ("locked", "lock") if locked else ("unlocked", "unlock")
        self.lock.button_style = "warning" if locked else ""

    # --- seeds and settings ---------------------------------------------------------------------------------
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

    def reuse(self, record: Record, seed_only: bool = False) -> None:
        """Put a recipe's settings (or only its seed) into the controls; the seed is locked."""
        notes = []
        if not seed_only:
            key, note = settings.model_for(record, self.reg, self.model.value)
            notes += [note] if note else []
            self.model.value = key
            self.prompt.value, self.negative.value = record.prompt, record.negative_prompt or ""
            self.steps.value, self.guidance.value = record.num_inference_steps, record.guidance_scale
            if record.scheduler in self.scheduler.options:
                self.scheduler.value = record.scheduler
            else:
                notes.append(f"sampler '{record.scheduler}' is not one of {key}'s; kept {self.scheduler.value}")
            size = f"{record.width}x{record.height}"
            if size in self.size.options:
                self.size.value = size
            self.width.value, self.height.value = record.width, record.height
            self.num_images.value = 1
            self.tasks.selected_index = TASKS.index(record.task) if record.task in TASKS else 0
            self.strength.value = record.extra.get("strength", self.strength.value)
            name, scale = next(iter(record.loras.items()), ("", 1.0))
            if name in [v for _, v in self.lora.options]:
                self.lora.value, self.lora_scale.value = name, scale
            else:
                notes.append(f"LoRA '{name}' is not offered for {key}")
            net = record.controls[0] if record.controls else {"model": "", "scale": 1.0}
            if net["model"] in [v for _, v in self.controlnet.options]:
                self.controlnet.value, self.control_scale.value = net["model"], net["scale"]
            notes += self._reuse_image_prompt(record)
            self.hires.value = bool(record.hires)
            if record.hires:
                self.hires_scale.value, self.hires_strength.value = record.hires["scale"], record.hires["strength"]
                if record.hires.get("upscaler") in self.hires_upscaler.options:
                    self.hires_upscaler.value = record.hires["upscaler"]
        self.seed.value, self.lock.value = record.seed, True
        what = "seed" if seed_only else "settings"
        self.status.value = f"{what} of seed {record.seed} put back" + "".join(
            f"; {html.escape(n, quote=False)}" for n in notes
        )

    def _reuse_image_prompt(self, record: Record) -> list[str]:
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

    def load_png_info(self, text: str | None = None) -> Record | None:
        """Fill the controls from the uploaded PNG's recipe, or from a pasted A1111 text."""
        try:
            if text is not None:
                record = settings.record_from_text(text)
            else:
                got = settings.upload_bytes(self.png_info)
                if got is None:
                    return None
                record = settings.record_from_png(*got)
        except ZooError as e:
            self._error(e)
            return None
        self.reuse(record)
        return record

    # --- running ---------------------------------------------------------------------------------------------
    def press(self, event: dict) -> None:
        """A key over the results: Ctrl+Enter (or Cmd+Enter) generates (once: ipyevents may deliver a key twice)."""
        stamp = event.get("timeStamp")
        if stamp is not None and stamp == self._seen_stamp:
            return
        self._seen_stamp = stamp
        if event.get("key") == "Enter" and (event.get("ctrlKey") or event.get("metaKey")):
            self.generate()

    def _error(self, e) -> None:
        self.status.value = f"<span style='color:#b00'>{html.escape(str(e))}</span>"

    def _inputs(self) -> dict:
        """generate()'s arguments from the controls; a ZooError says what to fix first."""
        spec, task = self.reg.get(self.model.value), TASKS[self.tasks.selected_index or 0]
        if not self.prompt.value.strip():
            raise ZooError("Write a prompt first: nothing was generated from an empty prompt")
        if task not in spec.tasks:
            raise ZooError(f"{spec.key} cannot do {TAB_TITLES[TASKS.index(task)].lower()}: choose another model")
        kw = {"task": task, "loras": {self.lora.value: self.lora_scale.value} if self.lora.value else {}}
        if task == "text2img":
            problem = size_problem(spec, self.width.value, self.height.value)
            if problem:
                raise ZooError(problem)
            kw |= {"width": self.width.value, "height": self.height.value}
        else:
            kw |= {"image": settings.upload_image(self.edit_image, "Input image"), "strength": self.strength.value}
            if kw["image"] is None:
                raise ZooError(f"{TAB_TITLES[TASKS.index(task)]} needs an input image: upload one in its tab")
        if task == "inpaint":
            kw["mask_image"] = settings.upload_image(self.mask, "Mask", "L")
            if kw["mask_image"] is None:
                raise ZooError("Inpaint needs a mask (white where the image is repainted): upload one in its tab")
        if self.controlnet.value:
            image = settings.upload_image(self.control_image, "Control image")
            if image is None:
                raise ZooError(f"{self.controlnet.value} needs a control image: upload one, or choose none")
            kind = settings.control_kind(self.controlnet.value, self.reg)
            if self.preprocess.value and kind in ("canny", "depth"):
                image = control_mod.preprocess(image, kind, registry=self.reg)
            kw["control"] = [control_mod.Control(self.controlnet.value, image, self.control_scale.value)]
        if self.ip_use.value:
            image = settings.upload_image(self.ip_image, "Image prompt")
            if image is None:
                raise ZooError("The IP-Adapter needs an image prompt: upload a picture, or untick the image prompt")
            kw["ip_adapter"] = ImagePrompt(image, self.ip_scale.value)
        if self.hires.value:
            kw["hires"] = {"scale": self.hires_scale.value, "strength": self.hires_strength.value,
                           "upscaler": self.hires_upscaler.value}  # fmt: skip
        return kw

    def generate(self, wait: bool = False) -> None:
        """Start generating in a thread (the Generate button); `wait` blocks until it is done."""
        if self._thread and self._thread.is_alive():
            return
        try:
            kwargs = self._inputs()
        except ZooError as e:
            self._error(e)
            return
        if not self.lock.value and self.result is not None and self.seed.value != -1:
            self.roll()
        self._cancel.clear()
        self.clock.reset()
        self.go.disabled, self.stop.disabled, self.save_button.disabled = True, False, True
        self.status.value, self.progress_line.value, self.progress.value = "generating…", "", 0
        self._start(self._work, kwargs, wait=wait)

    def cancel(self) -> None:
        """Stop after the current step (the Cancel button)."""
        self._cancel.set()

    def _on_step(self, done: int, total: int) -> None:
        self.progress.max, self.progress.value = total, done
        self.progress_line.value = self.clock(done, total)
        if self._cancel.is_set():
            raise Cancelled

    def _on_preview(self, image, done: int, total: int) -> None:
        """Show the image as it forms: the step's latents through the family's tiny VAE."""
        self.previews_shown += 1
        self.images.children = [w.Image(value=png_bytes(image), format="png", width=256)]

    def _work(self, kwargs: dict) -> None:
        live = self.live.value and preview_vae_key(self.reg.get(self.model.value).family) is not None
        try:
            self.result = generate(
                self.model.value,
                self.prompt.value,
                negative_prompt=self.negative.value if not self.negative.disabled else None,
                num_inference_steps=self.steps.value,
                guidance_scale=self.guidance.value,
                seed=None if self.seed.value == -1 else self.seed.value,
                scheduler=self.scheduler.value,
                num_images=self.num_images.value,
                device=self.device,
                on_step=self._on_step,
                on_preview=self._on_preview if live else None,
                **{**kwargs, **self.extra},
            )
            good = [i for i in range(len(self.result.images)) if i not in self.result.problems]
            self.images.children = [w.Image(value=png_bytes(self.result.images[i]), format="png", width=256)
                                    for i in good]  # fmt: skip
            self.recipe.value = "".join(recipe_html(r) for r in self.result.records)
            self.gallery.add([self.result.images[i] for i in good], [self.result.records[i] for i in good])
            self.last_seed = self.result.records[0].seed
            self.status.value = f"done in {self.result.timings['total']:.1f} s · seed {self.last_seed}"
            self.save_button.disabled = False
        except Cancelled:
            self.images.children, self.recipe.value = [], ""
            self.status.value = "cancelled: no image was made"
        except (ZooError, KeyError) as e:
            self._error(e)
        finally:
            self.go.disabled, self.stop.disabled = False, True

    def save(self) -> list[Path]:
        """Write the images with their recipes (the Save button); returns the paths."""
        if self.result is None:
            return []
        paths = self.result.save(self.out_dir)
        self.status.value = "saved " + ", ".join(html.escape(str(p)) for p in paths)
        return paths
