"""Several models on the same prompts and seeds, side by side, with what each costs.

>>> result = compare(["sd15", "sdxl-turbo", "flux-schnell"], ["a lighthouse at dusk", "a red fox"], seeds=[1])
>>> result.grid          # models by prompts and seeds, rows labelled with the settings in which models differ
>>> result.table         # per model: load, warm-up, median and spread of seconds per image, it/s, memory
>>> result.chart()       # bar charts of time (with its spread) and memory (where measured)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..base.grids import image_grid
from ..base.timestats import cost_table, spread
from ..judge.evaluate import quality_cost_plot, score_rows
from .sweep import SweepResult, settings_labels, sweep


def column_labels(prompts: list[str], seeds: list[int]) -> list[str]:
    """Column headers of a comparison: every prompt under every seed, in that order."""
    return [f"{prompt}\nseed {seed}" for seed in seeds for prompt in prompts]


@dataclass
class CompareResult:
    models: list[str]
    prompts: list[str]
    seeds: list[int]
    sweep: SweepResult
    grid_paths: list[Path]
    scores: object = None  # metric columns per model (a DataFrame, helpers.judge.evaluate), when metrics were asked

    @property
    def grid(self) -> Image.Image:
        """Models (rows, with their settings) by prompts and seeds (columns, labelled), in one image."""
        return Image.open(self.grid_paths[0])

    @property
    def grids(self) -> list[Image.Image]:
        return [Image.open(p) for p in self.grid_paths]

    @property
    def table(self):
        """One row per model: images, load, warm-up, median and spread of seconds per image, it/s, memory, settings
        and the plan that fitted it to the GPU (`helpers.run.plan`: "NF4 (bitsandbytes) transformer + T5, ...").

        The warm-up (each model's first call, made twice) is its own column; the steady state is the median
        over the images, `timing_note` flags a spread too wide to rank by; figures are rounded to what their
        spread supports, and a figure not measured (GPU memory on a CPU) has no column.
        """
        table = cost_table(self.sweep.rows, "model").reindex(self.models)
        for key in ("steps", "guidance_scale", "scheduler", "size"):
            table[key] = [self._used(m).get(key) for m in self.models]
        table["plan"] = [self._used(m).get("plan") or "" for m in self.models]  # "": as the repo stores it
        table.index.name = "model"
        if self.scores is not None:
            table = table.join(self.scores.drop(columns=["images"], errors="ignore"))
            table.attrs = dict(self.scores.attrs)
        return table

    def _used(self, model: str) -> dict:
        return next((r["used"] for r in self.sweep.rows if r["params"]["model"] == model and r["status"] == "ok"), {})

    def cost_plot(self, metric: str):
        """Quality against cost: each model a point, `metric` against seconds per image, the frontier joined."""
        return quality_cost_plot(self.table, metric)

    def chart(self):
        """Bars of seconds per image (median, lowest to highest) and peak memory where measured; one figure.

        The figure is closed in pyplot, so a notebook shows it once: as the value of the cell that returns it.
        """
        import matplotlib.pyplot as plt

        table = self.table
        scored = [c for c in (self.scores.columns if self.scores is not None else []) if f"{c}_std" in table]
        panels = ["s_per_image"] + (["peak_memory_gb"] if "peak_memory_gb" in table else []) + scored
        fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 0.5 * len(table) + 1.8), squeeze=False)
        axes = axes[0]
        seconds = {m: spread(r["timings"]["total"] for r in self.sweep.rows
                             if r["params"]["model"] == m and r["status"] == "ok") for m in self.models}  # fmt: skip
        low = [s.median - s.low if s else 0 for s in seconds.values()]
        high = [s.high - s.median if s else 0 for s in seconds.values()]
        n = max((s.n for s in seconds.values() if s), default=0)
        title = f"seconds per image, median of {n}" + (" (bars: lowest to highest)" if n > 1 else "")
        table["s_per_image"].plot.barh(ax=axes[0], xerr=[low, high], color="#4c72b0", title=title, capsize=3)
        for ax, metric in zip(axes[1:], panels[1:], strict=True):
            if metric == "peak_memory_gb":
                table[metric].plot.barh(ax=ax, color="#dd8452", title="peak GPU memory, GB")
            else:
                table[metric].plot.barh(ax=ax, xerr=table[f"{metric}_std"], color="#55a868", title=metric)
        for ax in axes:
            ax.invert_yaxis()
            ax.set_ylabel("")
        fig.tight_layout()
        plt.close(fig)  # shown once, as the returned value, not again by the inline backend
        return fig


def comparison_grid(rows: list[dict], out: Path, models: list[str], prompts: list[str], seeds: list[int]):
    """Models by prompts and seeds: labelled columns (prompt, seed) and rows (model, the settings that differ)."""
    cells = []
    for i in range(len(models)):
        line = []
        for k in range(len(seeds)):
            for j in range(len(prompts)):
                r = next((r for r in rows if (r.get("y"), r.get("x"), r.get("z", 0)) == (i, j, k)), None)
                line.append(None if r is None else Image.open(out / r["path"]) if r["status"] == "ok" else r["error"])
        cells.append(line)
    used = {m: next((r["used"] for r in rows if r.get("y") == i and r["status"] == "ok"), {})
            for i, m in enumerate(models)}  # fmt: skip
    labels, shared = settings_labels(used)
    title = f"every model: {shared}" if shared else None
    return image_grid(cells, col_labels=column_labels(prompts, seeds), row_labels=[labels[m] for m in models],
                      title=title, x_title="prompt, seed")  # fmt: skip


def compare(
    models: list[str],
    prompts: list[str] | str,
    seeds: list[int] | int = 0,
    out_dir: str | Path | None = None,
    device: str = "auto",
    on_cell=None,
    metrics: list[str] | None = None,
    reference=None,
    **overrides,
) -> CompareResult:
    """Generate every prompt and seed with every model (each with its own registry defaults unless overridden).

    `metrics` (see `helpers.judge.metrics.METRICS`, e.g. ["clip", "pickscore"]) scores each model's images; set
    metrics such as "fid" and "kid" compare them with `reference` (a folder or a list of images).
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    if out_dir is None:
        digest = hashlib.sha1(repr((models, prompts, seeds, sorted(overrides.items()))).encode()).hexdigest()[:8]
        out_dir = Path("outputs") / "compare" / f"{'-'.join(models)[:60]}-{digest}"
    axes = {"x": ("prompt", prompts), "y": ("model", models)}
    if len(seeds) > 1:
        axes["z"] = ("seed", seeds)
    params = {"seed": seeds[0], "prompt": prompts[0], **overrides}
    result = sweep(params, axes, out_dir=out_dir, device=device, on_cell=on_cell)
    out = Path(out_dir)
    grid = comparison_grid(result.rows, out, list(models), prompts, seeds)
    path = out / "compare-grid.png"
    grid.save(path)
    paths = [path]
    scores = None
    if metrics:
        scores = score_rows(result.rows, out, metrics, reference, by=("model",), device=device)
    return CompareResult(list(models), prompts, seeds, result, paths, scores)
