"""The generation panel: one model, one prompt, a few images with their recipes.

>>> GenerationPanel("sdxl-turbo")      # pick a model, write a prompt, Generate (Cancel stops it), Save

The callbacks are plain methods (`generate`, `cancel`, `save`, ...), so tests and scripts drive the panel
without a browser. Work runs in a thread so the Cancel button and the progress bar stay live.
"""

from __future__ import annotations

import html
import io
import random
import threading
from pathlib import Path

import ipywidgets as w

from . import registry as registry_mod
from . import trainexport
from .background import Background
from .errors import ZooError
from .families import FAMILIES
from .generate import generate
from .images import parse_size
from .previews import preview_vae_key


class Cancelled(Exception):
    """Raised from the step callback when Cancel is pressed."""


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _label(m) -> str:
    gated = ", gated" if m.gated else ""
    return f"{m.key} ({m.family}, {m.size.vram_gb:g} GB{gated})"


def presets(spec) -> list[str]:
    """Size presets for a model: its native size first, then the family's usual aspect ratios."""
    native = f"{spec.resolution}x{spec.resolution}"
    return [native] + [s for s in FAMILIES[spec.family].sizes if s != native]


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


class GenerationPanel(Background, w.VBox):
    """One model, one prompt, a few images, with their recipes."""

    def __init__(self, model: str = "sd15", out_dir: str = "outputs/panel", device: str = "auto", **generate_kwargs):
        self.reg, self.out_dir, self.device, self.extra = registry_mod.default(), out_dir, device, generate_kwargs
        self.result, self._thread, self._cancel = None, None, threading.Event()
        self.previews_shown = 0
        self.filter = w.Text(placeholder="filter: family, tag or name", description="Models")
        self.model = w.Dropdown(description="Model", layout=w.Layout(width="520px"))
        self.info = w.HTML()
        self.prompt = w.Textarea(description="Prompt", layout=w.Layout(width="520px", height="64px"))
        self.negative = w.Textarea(description="Negative", layout=w.Layout(width="520px", height="40px"))
        self.steps = w.IntSlider(description="Steps", min=1, max=100)
        self.guidance = w.FloatSlider(description="Guidance", min=0, max=20, step=0.5)
        self.size = w.Dropdown(description="Size")
        self.scheduler = w.Dropdown(description="Sampler")
        self.seed = w.IntText(description="Seed", value=random.randrange(2**32))
        self.dice = w.Button(description="new seed", tooltip="draw a random seed", layout=w.Layout(width="96px"))
        self.lock = w.ToggleButton(description="lock", tooltip="keep this seed for every Generate")
        self.num_images = w.IntSlider(description="Images", min=1, max=8, value=1)
        self.lora = w.Dropdown(description="LoRA", layout=w.Layout(width="520px"))
        self.lora_scale = w.FloatSlider(description="LoRA scale", min=0, max=1.5, step=0.05, value=1.0)
        self.live = w.Checkbox(description="live preview (tiny VAE)", value=True, indent=False)
        self.go = w.Button(description="Generate", button_style="primary")
        self.stop = w.Button(description="Cancel", disabled=True)
        self.save_button = w.Button(description="Save", disabled=True)
        self.progress = w.IntProgress(value=0, min=0, max=1, description="")
        self.status = w.HTML()
        self.images = w.HBox()
        self.recipe = w.HTML()
        self.filter.observe(lambda _: self._refresh_models(), "value")
        self.model.observe(lambda _: self.apply_defaults(), "value")
        self.dice.on_click(lambda _: self.roll())
        self.go.on_click(lambda _: self.generate())
        self.stop.on_click(lambda _: self.cancel())
        self.save_button.on_click(lambda _: self.save())
        self._refresh_models(select=model)
        seed_row = w.HBox([self.seed, self.dice, self.lock])
        buttons = w.HBox([self.go, self.stop, self.save_button, self.progress, self.live])
        super().__init__([self.filter, self.model, self.info, self.prompt, self.negative, self.steps, self.guidance,
                          self.size, self.scheduler, seed_row, self.num_images, self.lora, self.lora_scale, buttons,
                          self.status, self.images, self.recipe])  # fmt: skip

    # --- callbacks --------------------------------------------------------------------------------------
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
        self.negative.disabled = not d.negative_prompt
        self.lora.options = lora_choices(spec, self.reg)
        self.lora.value = ""
        licence = html.escape(spec.license) + (" · <b>gated</b>: accept it on the Hub and log in" if spec.gated else "")
        self.info.value = (
            f"<b>{html.escape(spec.name)}</b> · {spec.family} · {licence} · about {spec.size.vram_gb:g} GB "
            f"of GPU memory<br><i>{html.escape(spec.description)}</i>"
        )

    def roll(self) -> int:
        self.seed.value = random.randrange(2**32)
        return self.seed.value

    def generate(self, wait: bool = False) -> None:
        """Start generating in a thread (the Generate button); `wait` blocks until it is done."""
        if self._thread and self._thread.is_alive():
            return
        if not self.lock.value and self.result is not None:
            self.roll()
        self._cancel.clear()
        self.go.disabled, self.stop.disabled, self.save_button.disabled = True, False, True
        self.status.value = "generating…"
        self._start(self._work, wait=wait)

    def cancel(self) -> None:
        """Stop after the current step (the Cancel button)."""
        self._cancel.set()

    def _on_step(self, done: int, total: int) -> None:
        self.progress.max, self.progress.value = total, done
        if self._cancel.is_set():
            raise Cancelled

    def _on_preview(self, image, done: int, total: int) -> None:
        """Show the image as it forms: the step's latents through the family's tiny VAE."""
        self.previews_shown += 1
        self.images.children = [w.Image(value=_png(image), format="png", width=256)]

    def _work(self) -> None:
        width, height = parse_size(self.size.value)
        live = self.live.value and preview_vae_key(self.reg.get(self.model.value).family) is not None
        try:
            self.result = generate(
                self.model.value,
                self.prompt.value,
                negative_prompt=self.negative.value if not self.negative.disabled else None,
                num_inference_steps=self.steps.value,
                guidance_scale=self.guidance.value,
                height=height,
                width=width,
                seed=self.seed.value,
                scheduler=self.scheduler.value,
                num_images=self.num_images.value,
                device=self.device,
                on_step=self._on_step,
                on_preview=self._on_preview if live else None,
                **{"loras": {self.lora.value: self.lora_scale.value} if self.lora.value else {}, **self.extra},
            )
            self.images.children = [w.Image(value=_png(im), format="png", width=256) for im in self.result.images]
            self.recipe.value = "<br>".join(
                f"<pre style='white-space:pre-wrap'>{html.escape(r.a1111())}</pre>" for r in self.result.records
            )
            t = self.result.timings
            self.status.value = f"done in {t['total']:.1f} s"
            self.save_button.disabled = False
        except Cancelled:
            self.status.value = "cancelled"
        except (ZooError, KeyError) as e:
            self.status.value = f"<span style='color:#b00'>{html.escape(str(e))}</span>"
        finally:
            self.go.disabled, self.stop.disabled = False, True

    def save(self) -> list[Path]:
        """Write the images with their recipes (the Save button); returns the paths."""
        if self.result is None:
            return []
        paths = self.result.save(self.out_dir)
        self.status.value = "saved " + ", ".join(html.escape(str(p)) for p in paths)
        return paths
