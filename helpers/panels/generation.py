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
import threading
from pathlib import Path

import ipywidgets as w
from ipyevents import Event

from ..base.errors import ZooError
from ..base.records import Record
from ..run.generate import generate
from ..run.previews import preview_vae_key
from ..zoo import registry as registry_mod
from . import settings
from .background import Background
from .gallery import Gallery, png_bytes, recipe_html
from .sections import (
    TAB_TITLES,
    TASKS,
    ControlSection,
    HiresSection,
    ImagePromptSection,
    LoraSection,
    ModelSection,
    PngInfoSection,
    PromptSection,
    SamplingSection,
    SeedSection,
    SizeSection,
    TaskSection,
)
from .settings import StepClock

__all__ = ["GenerationPanel", "TASKS", "TAB_TITLES"]
# Disabled fields look disabled (Jupyter's own style barely changes them); HTML widgets apply <style> as given.
STYLE = "<style>.sdzoo-off textarea{background:#eee;color:#888;cursor:not-allowed}</style>"


class Cancelled(Exception):
    """Raised from the step callback when Cancel is pressed."""


class GenerationPanel(Background, w.VBox):
    """One model, one prompt, a few images, with their recipes, and a gallery of the session's images.

    The panel is assembled from its sections (`helpers.panels.sections`); their controls read as the panel's own
    (`panel.seed` is `panel.seeds.seed`), so scripts and tests drive it by the names a person sees.
    """

    def __init__(self, model: str = "sd15", out_dir: str = "outputs/panel", device: str = "auto", machine=None,
                 **generate_kwargs):  # fmt: skip
        """`machine`: a `helpers.run.memory.Machine` to offer plans for (default: this one, as it is now)."""
        self.reg, self.out_dir, self.device, self.extra = registry_mod.default(), out_dir, device, generate_kwargs
        self.result, self._thread, self._cancel = None, None, threading.Event()
        self._seen_stamp = None  # the last key event's timeStamp
        self.previews_shown, self.clock = 0, StepClock()
        self.models, self.prompts, self.sampling = ModelSection(self.reg, machine), PromptSection(), SamplingSection()
        self.sizes, self.seeds, self.task_tabs = SizeSection(), SeedSection(), TaskSection()
        self.loras, self.controls, self.image_prompt = LoraSection(), ControlSection(self.reg), ImagePromptSection()
        self.hires_fix, self.png = HiresSection(self.reg), PngInfoSection()
        self.sections = (self.models, self.prompts, self.sampling, self.sizes, self.seeds, self.task_tabs, self.loras,
                         self.controls, self.image_prompt, self.hires_fix, self.png)  # fmt: skip
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
        self.models.refresh(select=model)
        super().__init__(self._layout())
        self.key_events = Event(source=self.results, watched_events=["keydown"])
        self.key_events.on_dom_event(self.press)

    def __getattr__(self, name: str):
        """A section's control by its own name: `panel.prompt`, `panel.seed`, `panel.hires_scale`."""
        for section in self.__dict__.get("sections", ()):
            if name in section.controls:
                return getattr(section, name)
        raise AttributeError(f"'GenerationPanel' object has no attribute '{name}'")

    def _wire(self) -> None:
        self.model.observe(lambda _: self.apply_defaults(), "value")
        self.guidance.observe(lambda _: self._show_negative(), "value")
        self.png_info.observe(lambda _: self.load_png_info(), "value")
        self.info_apply.on_click(lambda _: self.load_png_info(text=self.info_text.value))
        self.go.on_click(lambda _: self.generate())
        self.stop.on_click(lambda _: self.cancel())
        self.save_button.on_click(lambda _: self.save())

    def _layout(self) -> list:
        extras = w.Accordion(children=[self.loras, self.controls, self.image_prompt, self.hires_fix, self.png],
                             titles=("LoRA", "ControlNet / T2I-Adapter", "IP-Adapter", "Hires fix",
                                     "PNG info: reuse a PNG's recipe"))  # fmt: skip
        buttons = w.HBox([self.go, self.stop, self.save_button, self.progress, self.live])
        self.results = w.VBox([buttons, self.progress_line, self.status, self.images, self.recipe])
        return [w.HTML(STYLE), self.models, self.task_tabs, self.prompts, self.sampling, self.sizes, self.seeds,
                extras, self.results, self.gallery]  # fmt: skip

    # --- what the controls show ---------------------------------------------------------------------------
    def apply_defaults(self) -> None:
        """Fill every control from the chosen model's registry entry."""
        if not self.model.value:
            return
        spec = self.reg.get(self.model.value)
        for section in (self.models, self.sampling, self.sizes, self.controls, self.task_tabs):
            section.apply(spec)
        self.loras.apply(spec, self.reg)
        self._show_negative()

    def _show_negative(self) -> None:
        self.prompts.show_negative(self.reg.get(self.model.value) if self.model.value else None, self.guidance.value)

    # --- seeds and settings ---------------------------------------------------------------------------------
    def roll(self) -> int:
        """A new concrete random seed in the field."""
        return self.seeds.roll()

    def random_seed(self) -> None:
        """Seed -1: a new random seed for every Generate (the dice button)."""
        self.seeds.random_seed()

    def reuse_last_seed(self) -> None:
        """The last image's seed back in the field, locked (the recycle button)."""
        self.seeds.reuse_last_seed()

    @property
    def last_seed(self) -> int | None:
        return self.seeds.last_seed

    def reuse(self, record: Record, seed_only: bool = False) -> None:
        """Put a recipe's settings (or only its seed) into the controls; the seed is locked."""
        notes = []
        if not seed_only:
            key, note = settings.model_for(record, self.reg, self.model.value)
            notes += [note] if note else []
            self.model.value = key
            notes += self.prompts.reuse(record) + self.sampling.reuse(record, key) + self.sizes.reuse(record)
            notes += self.task_tabs.reuse(record) + self.loras.reuse(record, key) + self.controls.reuse(record)
            notes += self.image_prompt.reuse(record) + self.hires_fix.reuse(record) + self.models.reuse(record)
        self.seeds.reuse(record, seed_only)
        what = "seed" if seed_only else "settings"
        self.status.value = f"{what} of seed {record.seed} put back" + "".join(
            f"; {html.escape(n, quote=False)}" for n in notes
        )

    def load_png_info(self, text: str | None = None) -> Record | None:
        """Fill the controls from the uploaded PNG's recipe, or from a pasted A1111 text."""
        try:
            record = self.png.read(text)
        except ZooError as e:
            self._error(e)
            return None
        if record is not None:
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
        """generate()'s arguments from the sections; a ZooError says what to fix first."""
        spec = self.reg.get(self.model.value)
        kw = self.prompts.inputs() | self.task_tabs.inputs(spec, self.reg)
        if kw["task"] == "text2img":
            kw |= self.sizes.inputs()
        for section in (self.models, self.sampling, self.loras, self.controls, self.image_prompt, self.hires_fix):
            kw |= section.inputs()
        return kw  # the seed is read when the run starts, after a new one is rolled

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
        kwargs |= self.seeds.inputs()
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
            self.seeds.last_seed = self.result.records[0].seed
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
