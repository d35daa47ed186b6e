"""Interactive panels for notebooks, built on `helpers.generate` and `helpers.compare`.

>>> GenerationPanel()      # pick a model, write a prompt, Generate (Cancel stops it), Save
>>> ComparePanel()         # several models on the same prompts and seeds, filled in as images finish

The callbacks are plain methods (`generate`, `cancel`, `save`, `run`, ...), so tests and scripts drive the
panels without a browser. Work runs in a thread so the Cancel button and the progress bar stay live.
In Colab, `setup_notebook()` (every notebook's set-up cell calls it) turns on the widget manager they need.
"""

from __future__ import annotations

import html
import io
import random
import sys
import threading
from pathlib import Path

import ipywidgets as w

from . import registry as registry_mod
from . import trainexport
from .compare import column_labels, compare
from .devices import pick_device
from .errors import ZooError
from .families import FAMILIES
from .generate import generate
from .images import parse_size
from .previews import preview_vae_key
from .records import read_record
from .sweep import settings_labels
from .timestats import readable
from .versions import __version__


def setup_notebook() -> None:
    """What every notebook's set-up cell calls: Colab's widget manager for the panels, and one line on this machine."""
    if "google.colab" in sys.modules:
        from google.colab import output  # exists only in Colab

        output.enable_custom_widget_manager()  # the panels are ipywidgets 8
    print(f"helpers {__version__}: {len(registry_mod.default().models)} models; computing on {pick_device()}")


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


class _Background:
    """Work in a thread, so the buttons and the progress bar stay live; `wait` joins it (scripts, tests)."""

    _thread: threading.Thread | None = None

    def _start(self, target, *args, wait: bool = False) -> None:
        self._thread = threading.Thread(target=target, args=args, daemon=True)
        self._thread.start()
        if wait:
            self.wait()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread:
            self._thread.join(timeout)


class GenerationPanel(_Background, w.VBox):
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


class ComparePanel(_Background, w.VBox):
    """Several models on the same prompts and seeds; the grid fills in as each image finishes.

    Columns are headed by prompt and seed, rows by model and the settings in which the models differ, as in
    the exported grid (`helpers.compare.comparison_grid`).
    """

    def __init__(self, models=("sd15", "sdxl-turbo"), out_dir: str = "outputs/compare-panel", device: str = "auto",
                 **overrides):  # fmt: skip
        self.reg, self.out_dir, self.device, self.overrides = registry_mod.default(), Path(out_dir), device, overrides
        self.result, self._thread, self._cells, self._used, self._headers = None, None, {}, {}, []
        chosen = [m for m in models if m in self.reg.models]
        options = chosen + [m for m in self.reg.models if m not in chosen]  # the chosen first, so they show
        self.models = w.SelectMultiple(options=options, value=chosen, description="Models", rows=8)
        self.prompts = w.Textarea(description="Prompts", placeholder="one prompt per line",
                                  layout=w.Layout(width="520px", height="64px"))  # fmt: skip
        self.seeds = w.Text(description="Seeds", value="1")
        self.go = w.Button(description="Run", button_style="primary")
        self.export_button = w.Button(description="Export grid and table", disabled=True,
                                      layout=w.Layout(width="auto"))  # fmt: skip
        self.status = w.HTML()
        self.grid = w.GridBox(layout=w.Layout(grid_gap="4px"))
        self.cells: list = []  # the image tiles, row by row (the grid adds the headers)
        self.detail = w.HTML()
        self.large = w.Image(format="png", width=512, layout=w.Layout(display="none"))  # shown on the first click
        self.table = w.HTML()
        self.go.on_click(lambda _: self.run())
        self.export_button.on_click(lambda _: self.export())
        super().__init__([self.models, self.prompts, self.seeds, w.HBox([self.go, self.export_button]), self.status,
                          self.grid, self.table, self.large, self.detail])  # fmt: skip

    def _plan(self):
        prompts = [p.strip() for p in self.prompts.value.splitlines() if p.strip()]
        try:
            seeds = [int(s) for s in self.seeds.value.replace(",", " ").split()]
        except ValueError:
            raise ZooError(f"seeds '{self.seeds.value}' are not whole numbers separated by commas") from None
        if not prompts or not seeds or not self.models.value:
            raise ZooError("choose at least one model, one prompt and one seed")
        return list(self.models.value), prompts, seeds

    def run(self, wait: bool = False) -> None:
        """Start the comparison (the Run button); cells appear as they finish."""
        try:
            models, prompts, seeds = self._plan()
        except ZooError as e:
            self.status.value = f"<span style='color:#b00'>{html.escape(str(e))}</span>"
            return
        self._cells, self._used = {}, dict.fromkeys(models)
        self._headers = [_header(label) for label in column_labels(prompts, seeds)]
        self.grid.layout.grid_template_columns = f"160px repeat({len(self._headers)}, 200px)"
        self.cells = [w.Label("…") for _ in range(len(models) * len(self._headers))]
        self._draw()
        self.go.disabled = True
        self._start(self._work, models, prompts, seeds, wait=wait)

    def _draw(self) -> None:
        """The grid's children: a header row (prompt, seed), then each model's header and its tiles."""
        labels, _ = settings_labels({m: u or {} for m, u in self._used.items()})
        cols = len(self._headers)
        children = [w.HTML(""), *self._headers]
        for i, model in enumerate(self._used):
            children += [_header(labels[model], bold_first=True), *self.cells[i * cols : (i + 1) * cols]]
        self.grid.children = children

    def _on_cell(self, row: dict, prompts, seeds) -> None:
        cols = len(prompts) * len(seeds)
        index = row["y"] * cols + row.get("z", 0) * len(prompts) + row["x"]
        if row["status"] == "ok":
            image = w.Image(value=(self.out_dir / row["path"]).read_bytes(), format="png", width=196)
            button = w.Button(description=f"view · {row['timings']['total']:.2g} s", layout=w.Layout(width="196px"),
                              tooltip="show it large, with its recipe")  # fmt: skip
            button.on_click(lambda _, r=row: self.show_cell(r))
            self.cells[index] = w.VBox([image, button])
            model = row["params"]["model"]
            self._used[model] = self._used.get(model) or row["used"]
        else:
            self.cells[index] = w.HTML(f"<div style='color:#b00;width:196px'>{html.escape(row.get('error', ''))}</div>")
        self._cells[index] = row
        self._draw()
        self.status.value = f"{len(self._cells)} of {len(self.cells)} cells"

    def show_cell(self, row: dict) -> None:
        """Show one cell large, with its recipe (a click on a cell)."""
        path = self.out_dir / row["path"]
        self.large.value = path.read_bytes()
        self.large.layout.display = ""
        self.detail.value = f"<pre style='white-space:pre-wrap'>{html.escape(read_record(path).a1111())}</pre>"

    def _work(self, models, prompts, seeds) -> None:
        try:
            self.result = compare(
                models, prompts, seeds=seeds, out_dir=self.out_dir, device=self.device,
                on_cell=lambda row: self._on_cell(row, prompts, seeds), **self.overrides,
            )  # fmt: skip
            for row in self.result.sweep.rows:  # cells finished by an earlier run into this folder
                cols = len(prompts) * len(seeds)
                if row["y"] * cols + row.get("z", 0) * len(prompts) + row["x"] not in self._cells:
                    self._on_cell(row, prompts, seeds)
            table = readable(self.result.table).reset_index(names="model")
            self.table.value = table.to_html(index=False, na_rep="", border=0)
            self.status.value = "done"
            self.export_button.disabled = False
        except ZooError as e:
            self.status.value = f"<span style='color:#b00'>{html.escape(str(e))}</span>"
        finally:
            self.go.disabled = False

    def export(self) -> list[Path]:
        """Write the grid image (labelled as the panel is) and the table as CSV next to the images (Export)."""
        if self.result is None:
            return []
        table = self.out_dir / "table.csv"
        self.result.table.to_csv(table)
        paths = [*self.result.grid_paths, table]
        self.status.value = "exported " + ", ".join(html.escape(str(p)) for p in paths)
        return paths


def _header(label: str, bold_first: bool = False):
    """A grid header: its lines of text, the first in bold for a row (the model)."""
    lines = [html.escape(line) for line in label.split("\n")]
    if bold_first and lines:
        lines[0] = f"<b>{lines[0]}</b>"
    return w.HTML("<div style='line-height:1.3;padding:2px'>" + "<br>".join(lines) + "</div>")
