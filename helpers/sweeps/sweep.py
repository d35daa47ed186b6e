"""X/Y/Z sweeps over any generation parameter (and over models), resumable, on one process or many.

>>> result = sweep({"model": "sd15", "prompt": "a lighthouse at dusk", "seed": 42},
...                {"x": ("num_inference_steps", [10, 20, 30]), "y": ("guidance_scale", [3, 7, 11])},
...                out_dir="outputs/steps-by-cfg")
>>> result.grids[0]      # a labelled grid; result.table is the manifest as a DataFrame

Each image is saved with its record; `manifest.jsonl` lists every cell with its parameters, path, timings,
memory and status. Running again into the same folder skips the finished cells. Under `accelerate launch`
the cells are split between the processes, each writes its own manifest, and the main process merges them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import itertools
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from ..base import quiet, records
from ..base.errors import ZooError
from ..base.grids import image_grid
from ..base.images import parse_size
from ..base.loaded import record
from ..base.schedulers import DEFAULT, sampler_name
from ..base.timestats import cost_table, run_table
from ..judge.evaluate import score_cells
from ..run.cache import get_pipeline
from ..run.control import Control, as_control
from ..run.generate import generate

AXIS_ALIASES = {
    "steps": "num_inference_steps",
    "cfg": "guidance_scale",
    "sampler": "scheduler",
    "negative": "negative_prompt",
}
# prompt_sr: A1111's "Prompt S/R"
SPECIAL_AXES = {"model", "prompt_sr", "size", "control_scale", "hires_strength", "hires_upscaler"}
MANIFEST = "manifest.jsonl"
# The axes that are also settings a row label names (a cell's `used`), under their names there.
USED_BY_AXIS = {"num_inference_steps": "steps", "guidance_scale": "guidance_scale", "scheduler": "scheduler"}
USED_BY_AXIS["size"] = "size"
_GENERATE_ARGS = set(inspect.signature(generate).parameters) - {"model", "pipeline_kwargs", "seeds", "num_images"}


def generate_arguments() -> set[str]:
    """The names a sweep can vary: `generate`'s own arguments, plus model, prompt_sr and size."""
    return _GENERATE_ARGS | SPECIAL_AXES


@dataclass(frozen=True)
class Axis:
    """One sweep axis: a parameter and its values."""

    name: str
    values: tuple

    @classmethod
    def make(cls, name: str, values) -> Axis:
        name = AXIS_ALIASES.get(name, name)
        if name not in generate_arguments():
            import difflib

            close = difflib.get_close_matches(name, sorted(generate_arguments()), n=2)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ZooError(f"'{name}' cannot be a sweep axis.{hint} Axes are generate() arguments, model or size")
        values = tuple(values)
        if not values:
            raise ZooError(f"sweep axis '{name}' has no values")
        if name == "size":
            values = tuple(parse_size(v) for v in values)
        return cls(name, values)

    def label(self, value) -> str:
        if self.name == "size":
            return f"{value[0]}x{value[1]}"
        if self.name == "prompt_sr":
            return str(value)
        return f"{value:g}" if isinstance(value, float) else str(value)

    def apply(self, params: dict, value) -> dict:
        out = dict(params)
        if self.name == "prompt_sr":
            search = self.values[0]
            if search not in out.get("prompt", ""):
                raise ZooError(f"Prompt S/R: the first value '{search}' must appear in the prompt to be replaced")
            out["prompt"] = out["prompt"].replace(search, value)
        elif self.name == "size":
            out["width"], out["height"] = value
        elif self.name == "control_scale":  # every ControlNet of the params at this scale
            if not out.get("control"):
                raise ZooError("a control_scale axis needs control in the params: {controlnet_key: image}")
            controls = out["control"]
            controls = [Control(k, v) for k, v in controls.items()] if isinstance(controls, dict) else controls
            out["control"] = [dataclasses.replace(as_control(c), scale=value) for c in controls]
        elif self.name in ("hires_strength", "hires_upscaler"):  # A1111's "Denoising" and "Hires upscaler" axes
            out["hires"] = {"scale": 2.0, **(out.get("hires") or {}), self.name.removeprefix("hires_"): value}
        else:
            out[self.name] = value
        return out


SETTINGS = (  # what a row label can say of a model's settings, and how
    ("scheduler", str),
    ("steps", lambda n: f"{n} step{'s' if n != 1 else ''}"),
    ("guidance_scale", lambda g: f"CFG {g:g}"),
    ("size", str),
)


def settings_labels(used: dict[str, dict]) -> tuple[dict[str, str], str]:
    """Row labels (model, then the settings in which the models differ) and the settings they all share.

    `used` maps each model to the settings its images were made with (a sweep row's `used`).
    """
    known = {m: u for m, u in used.items() if u}
    differ = [k for k, _ in SETTINGS if len({repr(u.get(k)) for u in known.values()}) > 1]
    shared = [k for k, _ in SETTINGS if k not in differ]

    def text(u, keys):
        return " · ".join(fmt(u[k]) for k, fmt in SETTINGS if k in keys and u.get(k) is not None)

    labels = {m: "\n".join(filter(None, [m, text(used[m], differ) if used.get(m) else ""])) for m in used}
    first = next(iter(known.values()), None)
    return labels, (text(first, shared) if first and len(known) > 1 else "")


@dataclass(frozen=True)
class Cell:
    """One image of the sweep: its place on the axes and its full parameters."""

    x: int
    y: int
    z: int
    params: dict

    @property
    def key(self) -> str:
        digest = hashlib.sha1(json.dumps(self.params, sort_keys=True, default=str).encode()).hexdigest()[:10]
        return f"z{self.z}-y{self.y}-x{self.x}-{digest}"


def plan(params: dict, axes) -> tuple[list[Axis], list[Cell]]:
    """The axes and every cell, ordered so that each model is loaded once."""
    items = list(axes.items()) if isinstance(axes, dict) else list(enumerate(axes))
    if len(items) > 3:
        raise ZooError(f"a sweep has at most three axes (x, y, z); got {len(items)}")
    if not isinstance(axes, dict):
        items = [("xyz"[i], spec) for i, spec in items]
    named = {}
    for slot, spec in items:
        if slot not in ("x", "y", "z"):
            raise ZooError(f"sweep axes are named x, y and z; got '{slot}'")
        name, values = (spec["name"], spec["values"]) if isinstance(spec, dict) else spec
        named[slot] = Axis.make(name, values)
    axis_list = [named.get(s, Axis("none", (None,))) for s in "xyz"]
    if "model" not in params and not any(a.name == "model" for a in axis_list):
        raise ZooError("a sweep needs a model: in params (model: KEY) or as an axis")
    unknown = set(params) - generate_arguments() - {"prompt"}
    if unknown:
        raise ZooError(f"unknown sweep parameter(s) {sorted(unknown)}; use generate() arguments")
    cells = []
    for (k, zv), (i, yv), (j, xv) in itertools.product(*(enumerate(a.values) for a in reversed(axis_list))):
        p = dict(params)
        for axis, v in zip(axis_list, (xv, yv, zv), strict=True):
            if axis.name != "none":
                p = axis.apply(p, v)
        cells.append(Cell(j, i, k, p))
    order = {m: n for n, m in enumerate(dict.fromkeys(c.params["model"] for c in cells))}
    cells.sort(key=lambda c: (order[c.params["model"]], c.z, c.y, c.x))
    return [a for a in axis_list if a.name != "none"], cells


@dataclass
class SweepResult:
    """Where a sweep wrote its images, manifest and grids."""

    out_dir: Path
    rows: list[dict]
    grid_paths: list[Path] = field(default_factory=list)

    @property
    def table(self):
        """The manifest as a pandas DataFrame, one row a cell."""
        import pandas as pd

        return pd.json_normalize(self.rows)

    @property
    def run_table(self):
        """One row per cell, for reading: what varies, status, seconds and it/s rounded, memory where measured."""
        return run_table(self.rows)

    @property
    def costs(self):
        """What each model cost: load, warm-up (first call), median and spread of seconds per image, it/s."""
        return cost_table(self.rows, "model")

    @property
    def grids(self) -> list[Image.Image]:
        return [Image.open(p) for p in self.grid_paths]

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] != "ok"]


def read_manifest(out_dir: Path, warn: bool = True) -> dict[str, dict]:
    """The latest row of every cell in a folder's manifests (merged and per-process); warns of lines cut short."""
    rows, cut = {}, []
    for path in sorted(Path(out_dir).glob("manifest*.jsonl")):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise ZooError(
                f"{path}: not a sweep manifest (not UTF-8 text: {e.reason}); move it out of the folder"
            ) from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a crash: that cell is run again
                cut.append(f"{path.name}:{n}")
                continue
            if not (isinstance(row, dict) and isinstance(row.get("key"), str) and isinstance(row.get("status"), str)):
                raise ZooError(
                    f"{path}, line {n}: not a sweep manifest row (a JSON object with 'key' and 'status'); "
                    "fix or delete that line, or move the file out of the folder"
                )
            if row["status"] == "ok" or row["key"] not in rows:
                rows[row["key"]] = row
    if cut and warn:
        warnings.warn(
            f"{Path(out_dir)}: {len(cut)} manifest line(s) cut short ({', '.join(cut[:3])}), probably by a crash; "
            "those cells are run again",
            stacklevel=2,
        )
    return rows


def _done(row: dict | None, out_dir: Path) -> bool:
    return bool(row) and row["status"] == "ok" and (out_dir / row["path"]).is_file()


def sweep(
    params: dict,
    axes,
    out_dir: str | Path = "outputs/sweep",
    device: str = "auto",
    title: str | None = None,
    on_cell=None,
    metrics: list[str] | None = None,
    warmup: bool = True,
):
    """Run every cell not already done in `out_dir`, then write the merged manifest and the grids.

    `on_cell(row)` is called with each cell's manifest row as it finishes (to fill a grid as it goes).
    `warmup` makes each model's first image twice and keeps the second: the first call's extra seconds (kernels
    chosen, memory allocated, graphs compiled) go to the row's `warmup_s`, not into its seconds per image.
    `metrics` (per-image ones, e.g. ["clip"]) gives each finished cell `scores` (`helpers.judge.evaluate.sweep_plot`).
    """
    from accelerate import PartialState

    axis_list, cells = plan(params, axes)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    # Without cpu=True, processes that `accelerate launch --multi_gpu` starts on a machine without CUDA each
    # think they are alone and every one of them runs every cell.
    state = PartialState(cpu=device == "cpu" or not torch.cuda.is_available())
    if device == "auto" and state.num_processes > 1:
        device = str(state.device)  # under accelerate launch: this process's own GPU (cuda:0, cuda:1, ...)
    done = read_manifest(out, warn=state.is_main_process)
    todo = [c for c in cells if not _done(done.get(c.key), out)]
    state.wait_for_everyone()  # every process has read the manifest before any writes to it: the same split
    with state.split_between_processes(todo) as mine:
        skipped = len(cells) - len(todo)
        _run_cells(mine, out, device, (state.process_index, state.num_processes), skipped, on_cell, warmup)
    state.wait_for_everyone()
    result = SweepResult(out, [])
    if state.is_main_process:
        result = _finish(out, axis_list, cells, title)
        if metrics:
            score_cells(result, metrics)
    state.wait_for_everyone()
    if not state.is_main_process:
        result = SweepResult(out, [read_manifest(out, warn=False)[c.key] for c in cells])
    return result


def _run_cells(cells: list[Cell], out: Path, device: str, where: tuple, skipped: int, on_cell, warmup: bool) -> None:
    rank, world = where
    shard = out / (f"manifest-{rank}-of-{world}.jsonl" if world > 1 else "manifest-run.jsonl")
    loaded = {}  # model -> the name of the sampler its repo ships (what "default" means for it)
    bar = tqdm(total=len(cells) + skipped, initial=skipped, desc="sweep", unit="cell", disable=rank != 0)
    with shard.open("a", encoding="utf-8") as log, quiet.outer_bar():  # one bar: the sweep's, per cell
        if log.tell() and not shard.read_bytes().endswith(b"\n"):
            log.write("\n")  # after a line cut short by a crash, so the next row is not glued onto it
        for cell in cells:
            row = {"key": cell.key, "x": cell.x, "y": cell.y, "z": cell.z, "params": cell.params, "process": rank}
            model = cell.params["model"]
            kwargs = {k: v for k, v in cell.params.items() if k != "model"}
            try:
                if model not in loaded:
                    start = time.perf_counter()
                    pipe = get_pipeline(model, device=device)
                    row["load_s"] = round(time.perf_counter() - start, 3)
                    if warmup:  # the same call, thrown away: the cell's own seconds are then the steady state
                        start = time.perf_counter()
                        generate(model, device=device, **kwargs)
                        row["warmup_s"] = round(time.perf_counter() - start, 3)
                    loaded[model] = sampler_name(record(pipe).default_scheduler)
                result = generate(model, device=device, **kwargs)
                if result.problems:
                    raise ZooError(result.problems[0])
                path = Path("images") / f"{cell.key}.png"
                tmp = out / path.with_suffix(".tmp")
                result.images[0].save(tmp, format="PNG", pnginfo=records.png_info(result.records[0]))
                os.replace(tmp, out / path)  # a cell's image appears whole or not at all
                rec = result.records[0]
                row |= {"status": "ok", "path": str(path), "seed": rec.seed, "used": _used(rec, loaded[model])}
                row |= {"timings": result.timings, "peak_memory_gb": result.peak_memory_gb}
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - one bad cell must not stop the sweep; its reason is kept
                row |= {"status": "error", "error": f"{type(e).__name__}: {e}".strip()[:500]}
            log.write(json.dumps(row, default=str) + "\n")
            log.flush()
            bar.update(1)
            if on_cell is not None:
                on_cell(row)
    bar.close()


def _used(rec: records.Record, repo_sampler: str) -> dict:
    """The settings a cell actually ran with, after the model's defaults filled the gaps (the sampler by name)."""
    return {
        "steps": rec.num_inference_steps,
        "guidance_scale": rec.guidance_scale,
        "scheduler": repo_sampler if rec.scheduler == DEFAULT else rec.scheduler,
        "size": f"{rec.width}x{rec.height}",
        "plan": rec.plan.get("label", ""),  # how the model was fitted to the GPU (helpers.run.plan)
    }


def _finish(out: Path, axes: list[Axis], cells: list[Cell], title: str | None) -> SweepResult:
    latest = read_manifest(out, warn=False)  # warned when the sweep began
    rows = [latest.get(c.key) or {"key": c.key, "status": "missing", "params": c.params} for c in cells]
    with (out / f"{MANIFEST}.tmp").open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, default=str) + "\n")
    os.replace(out / f"{MANIFEST}.tmp", out / MANIFEST)
    for stale in out.glob("manifest-*.jsonl"):  # merged: the per-process logs are now in manifest.jsonl
        stale.unlink()
    by_cell = {c.key: r for c, r in zip(cells, rows, strict=True)}
    x, y, z = (axes + [None, None, None])[:3]
    paths = []
    zs = z.values if z else (None,)
    for k, zv in enumerate(zs):
        grid_cells = []
        for i in range(len(y.values) if y else 1):
            line = []
            for j in range(len(x.values) if x else 1):
                cell = next(c for c in cells if (c.x, c.y, c.z) == (j, i, k))
                row = by_cell[cell.key]
                line.append(Image.open(out / row["path"]) if row["status"] == "ok" else row.get("error", "missing"))
            grid_cells.append(line)
        name = f"{title} · {z.name} = {z.label(zv)}" if z and title else (f"{z.name} = {z.label(zv)}" if z else title)
        grid = image_grid(
            grid_cells,
            col_labels=_axis_labels(x, axes, rows),
            row_labels=_axis_labels(y, axes, rows),
            title=name,
            x_title=x.name if x else None,
            y_title=y.name if y else None,
        )
        path = out / (f"grid-z{k}.png" if z else "grid.png")
        grid.save(path)
        paths.append(path)
    return SweepResult(out, rows, paths)


def _axis_labels(axis: Axis | None, axes: list[Axis], rows: list[dict]) -> list[str] | None:
    """An axis's labels; a model axis also says the settings in which its models differ (not those swept)."""
    if axis is None:
        return None
    if axis.name != "model":
        return [axis.label(v) for v in axis.values]
    swept = {USED_BY_AXIS.get(a.name) for a in axes}
    used = {m: next((r["used"] for r in rows if r["params"]["model"] == m and r["status"] == "ok"), {})
            for m in axis.values}  # fmt: skip
    labels, _ = settings_labels({m: {k: v for k, v in u.items() if k not in swept} for m, u in used.items()})
    return [labels[m] for m in axis.values]
