"""Several models on the same prompts and seeds, side by side, with what each costs.

>>> result = compare(["sd15", "sdxl-turbo", "flux-schnell"], ["a lighthouse at dusk", "a red fox"], seeds=[1])
>>> result.grid          # models by prompts, each row labelled with the settings that model used
>>> result.table         # load time, seconds per image, it/s, peak memory, per model
>>> result.chart()       # bar charts of time and memory
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .grids import image_grid
from .sweep import SweepResult, sweep


@dataclass
class CompareResult:
    models: list[str]
    prompts: list[str]
    seeds: list[int]
    sweep: SweepResult
    grid_paths: list[Path]
    scores: object = None  # a DataFrame of metric columns per model (helpers.evaluate), when metrics were asked for

    @property
    def grid(self) -> Image.Image:
        """The first seed's grid (see `grids` for every seed)."""
        return Image.open(self.grid_paths[0])

    @property
    def grids(self) -> list[Image.Image]:
        return [Image.open(p) for p in self.grid_paths]

    @property
    def table(self):
        """One row per model: images made, load time, seconds per image, steps per second, peak memory, settings."""
        import pandas as pd

        out = []
        for model in self.models:
            rows = [r for r in self.sweep.rows if r["params"]["model"] == model]
            ok = [r for r in rows if r["status"] == "ok"]
            loads = [r["load_s"] for r in rows if r.get("load_s") is not None]
            used = ok[0]["used"] if ok else {}
            rates = [r["timings"]["steps_per_s"] for r in ok if r["timings"].get("steps_per_s")]
            peaks = [r["peak_memory_gb"] for r in ok if r.get("peak_memory_gb") is not None]
            out.append(
                {
                    "model": model,
                    "images": len(ok),
                    "failed": len(rows) - len(ok),
                    "load_s": loads[0] if loads else None,
                    "s_per_image": _mean([r["timings"]["total"] for r in ok]),
                    "it_per_s": _mean(rates),
                    "peak_memory_gb": max(peaks) if peaks else None,
                    **used,
                }
            )
        table = pd.DataFrame(out).set_index("model")
        if self.scores is not None:
            table = table.join(self.scores.drop(columns=["images"], errors="ignore"))
            table.attrs = dict(self.scores.attrs)
        return table

    def cost_plot(self, metric: str):
        """Quality against cost: each model a point, `metric` against seconds per image, the frontier joined."""
        from .evaluate import quality_cost_plot

        return quality_cost_plot(self.table, metric)

    def chart(self):
        """Bar charts of seconds per image and peak memory per model (a matplotlib figure)."""
        import matplotlib.pyplot as plt

        table = self.table
        scored = [c for c in (self.scores.columns if self.scores is not None else []) if f"{c}_std" in table]
        fig, axes = plt.subplots(1, 2 + len(scored), figsize=(5.5 * (2 + len(scored)), 0.5 * len(table) + 1.8))
        for ax, metric in zip(axes[2:], scored, strict=True):
            table[metric].plot.barh(ax=ax, xerr=table[f"{metric}_std"], color="#55a868", title=metric)
        table["s_per_image"].plot.barh(ax=axes[0], color="#4c72b0", title="seconds per image (lower is faster)")
        memory = table["peak_memory_gb"].fillna(0)
        memory.plot.barh(ax=axes[1], color="#dd8452", title="peak GPU memory, GB (0: not measured on CPU)")
        for ax in axes:
            ax.invert_yaxis()
            ax.set_ylabel("")
        fig.tight_layout()
        return fig


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


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

    `metrics` (see `helpers.metrics.METRICS`, e.g. ["clip", "pickscore"]) scores each model's images; set
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
    paths = []
    for k, seed in enumerate(seeds):
        rows = [r for r in result.rows if r.get("z", 0) == k]
        cells, labels = [], []
        for i, model in enumerate(models):
            line = [next(r for r in rows if r.get("y") == i and r.get("x") == j) for j in range(len(prompts))]
            cells.append(
                [Image.open(out / r["path"]) if r["status"] == "ok" else r.get("error", "missing") for r in line]
            )
            used = next((r["used"] for r in line if r["status"] == "ok"), None)
            steps = f"{used['steps']} step{'s' if used['steps'] != 1 else ''}" if used else ""
            settings = f"{steps} · CFG {used['guidance_scale']:g} · {used['scheduler']}" if used else ""
            labels.append(f"{model}\n{settings}")
        grid = image_grid(cells, col_labels=prompts, row_labels=labels, title=f"seed {seed}", x_title="prompt")
        path = out / f"compare-seed{seed}.png"
        grid.save(path)
        paths.append(path)
    scores = None
    if metrics:
        from .evaluate import score_rows

        scores = score_rows(result.rows, out, metrics, reference, by=("model",), device=device)
    return CompareResult(list(models), prompts, seeds, result, paths, scores)
