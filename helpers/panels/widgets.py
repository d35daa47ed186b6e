"""Interactive panels for notebooks, built on `helpers.generate` and `helpers.compare`.

>>> GenerationPanel()      # pick a model, write a prompt, Generate (Cancel stops it), Save
>>> ComparePanel()         # several models on the same prompts and seeds, filled in as images finish

The callbacks are plain methods (`generate`, `cancel`, `save`, `run`, ...), so tests and scripts drive the
panels without a browser. Work runs in a thread so the Cancel button and the progress bar stay live.
In Colab, `setup_notebook()` (every notebook's set-up cell calls it) turns on the widget manager they need.
"""

from __future__ import annotations

import html
import sys
from pathlib import Path

import ipywidgets as w

from ..base.devices import pick_device
from ..base.errors import ZooError
from ..base.records import read_record
from ..base.timestats import readable
from ..base.versions import __version__
from ..sweeps.compare import column_labels, compare
from ..sweeps.sweep import settings_labels
from ..zoo import registry as registry_mod
from .background import Background as _Background
from .generation import GenerationPanel
from .settings import lora_choices, presets

__all__ = ["ComparePanel", "GenerationPanel", "lora_choices", "presets", "setup_notebook"]


def setup_notebook() -> None:
    """What every notebook's set-up cell calls: Colab's widget manager for the panels, and one line on this machine."""
    if "google.colab" in sys.modules:
        from google.colab import output  # exists only in Colab

        output.enable_custom_widget_manager()  # the panels are ipywidgets 8
    print(f"helpers {__version__}: {len(registry_mod.default().models)} models; computing on {pick_device()}")


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
