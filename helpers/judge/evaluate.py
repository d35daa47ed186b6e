"""Scoring many images at once: grouped by model and settings, as tables, plots and files.

>>> table = evaluate_folder("outputs/compare", metrics=["clip", "pickscore"], out="scores.csv")
>>> quality_cost_plot(compare_result.table, "clip")     # each model a point: score against seconds per image

From the command line: `python -m helpers evaluate FOLDER [--reference DIR] [--metrics clip,fid] [--out FILE]`.
The PNGs' own recipes (`helpers.base.records`) say which model and settings made each image and with which prompt.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from ..base.errors import ZooError
from ..base.records import read_record
from . import metrics as judge

DEFAULT_METRICS = ["clip", "pickscore"]
LOWER_IS_BETTER = {"fid", "kid", "fd-dinov2"}
GROUP_FIELDS = ["model", "steps", "guidance", "scheduler", "size"]  # always shown
# Also grouped by, and shown when any image has them: what else in a recipe changes the picture.
RECIPE_FIELDS = ["task", "negative", "options", "vae", "lora", "controlnet", "ip_adapter", "hires"]


def _pairs(values: dict) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(values.items()))


def settings_of(record, size: tuple[int, int] | None = None) -> dict:
    """The fields images are grouped by: model and everything in its recipe that changes the picture.

    `size` is the image's real (width, height); a hires-fixed recipe records its first pass's size (as A1111 does).
    """
    width, height = size or (record.width, record.height)
    hires = record.hires
    return {
        "model": record.model,
        "steps": record.num_inference_steps,
        "guidance": record.guidance_scale,
        "scheduler": record.scheduler,
        "size": f"{width}x{height}",
        "task": "" if record.task == "text2img" else record.task,
        "negative": record.negative_prompt or "",
        "options": _pairs({**record.scheduler_options, **record.extra}),
        "vae": record.vae,
        "lora": " ".join(f"{k}:{v:g}" for k, v in sorted(record.loras.items())),
        "controlnet": " ".join(f"{c['model']}:{c['scale']:g} ({c['start']:g}-{c['end']:g})" for c in record.controls),
        "ip_adapter": f"{record.image_prompt['model']}:{record.image_prompt['scale']:g}" if record.image_prompt else "",
        "hires": _hires(hires, record) if hires else "",
    }


def _hires(hires: dict, record) -> str:
    return (
        f"x{hires['scale']:g} strength {hires['strength']:g}, {hires['steps']} steps, {hires['upscaler']} "
        f"(first pass {record.width}x{record.height})"
    )


def group_folder(folder) -> dict:
    """{label fields (tuple of pairs): [(path, prompt), ...]} of the PNGs under `folder`, grouped by `settings_of`.

    The recipe fields no image has (no LoRA anywhere, say) are left out of the labels.
    """
    found = []
    for path, rec in read_folder(folder):
        with Image.open(path) as im:
            found.append((path, rec, settings_of(rec, im.size)))
    used = [f for f in RECIPE_FIELDS if any(fields[f] for _, _, fields in found)]
    groups: dict = {}
    for path, rec, fields in found:
        label = tuple((k, fields[k]) for k in [*GROUP_FIELDS, *used])
        groups.setdefault(label, []).append((path, rec.prompt))
    return groups


def read_folder(folder) -> list[tuple[Path, object]]:
    """(path, record) of every PNG under `folder` that carries a recipe; the others are skipped with a warning."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ZooError(f"{folder}: no such folder of images")
    found, skipped = [], []
    for path in sorted(folder.rglob("*.png")):
        try:
            found.append((path, read_record(path)))
        except ZooError:
            skipped.append(path.name)
    if skipped:
        warnings.warn(f"{len(skipped)} PNG(s) in {folder} have no recipe, not scored: {skipped[:3]}", stacklevel=2)
    if not found:
        raise ZooError(f"{folder}: no PNG with a generation recipe (images saved by helpers or the A1111 web UI)")
    return found


def check_metrics(names) -> list[str]:
    names = [names] if isinstance(names, str) else list(names)
    unknown = [m for m in names if m not in judge.METRICS]
    if unknown:
        raise ZooError(f"unknown metric(s) {unknown}; choose from {judge.METRICS}")
    return names


def reference_images(references):
    """Reference images (a folder, paths or images) whose features every group reuses; None stays None."""
    if references is None or isinstance(references, judge.Reference):
        return references
    return judge.Reference(judge.as_images(references))


def _row(fields: dict, scores: dict, n: int) -> dict:
    import numpy as np

    row = {**fields, "images": n}
    for name, value in scores.items():
        if isinstance(value, judge.SetScore):
            row[name], row[f"{name}_std"] = value.value, value.std
        else:
            row[name], row[f"{name}_std"] = float(np.mean(value)), float(np.std(value))
    return row


def _describe_group(label) -> str:
    return "the group " + ", ".join(f"{k} {v}" for k, v in label if v not in ("", None))


def score_groups(groups: dict, metrics, references=None, *, batch_size=32, device=None, progress=True):
    """groups: {label fields (tuple of pairs): [(image or path, prompt), ...]} -> a DataFrame, a row a group.

    Every group's size is checked against the metrics before any network runs. The table's `attrs` hold how each
    metric was computed (`how`) and the small-sample warnings (`warnings`).
    """
    import pandas as pd

    metrics = check_metrics(metrics)
    judge.check_batch_size(batch_size)
    refs = reference_images(references)
    for label, items in groups.items():
        judge.check_set_sizes(metrics, len(items), len(refs.images) if refs is not None else None,
                              _describe_group(label))  # fmt: skip
    rows, notes = [], []
    bar = tqdm(total=sum(len(v) for v in groups.values()), desc="scoring", unit="image", disable=not progress)
    for label, items in groups.items():
        images, prompts = [i for i, _ in items], [p for _, p in items]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            scores = judge.score(images, prompts, metrics, refs, batch_size=batch_size, device=device)
        notes += list(dict.fromkeys(str(w.message) for w in caught))
        rows.append(_row(dict(label), scores, len(items)))
        bar.update(len(items))
    bar.close()
    table = pd.DataFrame(rows)
    table.attrs["how"] = {m: judge.describe(m) for m in metrics}
    table.attrs["warnings"] = list(dict.fromkeys(notes))
    return table


def evaluate_folder(folder, metrics=None, reference=None, out=None, *, batch_size=32, device=None, progress=True):
    """Score every PNG with a recipe under `folder`, grouped by model and settings; write `out` (CSV or JSON) + .md.

    `out` is checked before anything is scored, and an existing results file is never replaced: the table then
    goes to a new name (`scores-2.csv`), said in a warning; `table.attrs["files"]` holds the paths written.
    """
    metrics = check_metrics(metrics or DEFAULT_METRICS)
    judge.check_batch_size(batch_size)
    target = None if out is None else free_name(check_out(out))
    groups = group_folder(folder)
    table = score_groups(groups, metrics, reference, batch_size=batch_size, device=device,
                         progress=progress)  # fmt: skip
    if target is not None:
        table.attrs["files"] = [str(p) for p in write(table, target)]
    return table


def check_out(out) -> Path:
    """A results path that can be written (a .csv or .json file in a folder that can be made), or a `ZooError`."""
    out = Path(out)
    if out.is_dir():
        raise ZooError(f"--out {out} is a folder: give a file in it, such as {out / 'scores.csv'}")
    if out.suffix.lower() not in (".csv", ".json"):
        raise ZooError(f"--out {out}: give a file ending in .csv or .json (a .md table is written beside it)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out.parent):
            pass
    except OSError as e:
        raise ZooError(f"--out {out}: results cannot be written there ({e.strerror or e}); choose another") from None
    return out


def free_name(out: Path) -> Path:
    """`out`, or `STEM-2.csv`, `STEM-3.csv`... when it or its .md table exists already (earlier results are kept)."""
    n, path = 1, out
    while path.exists() or path.with_suffix(".md").exists():
        n += 1
        path = out.with_name(f"{out.stem}-{n}{out.suffix}")
    if path != out:
        warnings.warn(f"{out} exists and is kept: these results go to {path} and {path.with_suffix('.md')}",
                      stacklevel=3)  # fmt: skip
    return path


def write(table, out) -> list[Path]:
    """`out` as CSV (or JSON if it ends in .json), and a markdown table beside it; returns both paths.

    Neither file may exist already (`free_name` picks one that does not): results are never replaced.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".json":
        data = {"rows": json.loads(table.to_json(orient="records")), **table.attrs}
        text = json.dumps(data, indent=2, ensure_ascii=False)
    else:
        text = table.to_csv(index=False)
    md = out.with_suffix(".md")
    for path, content in ((out, text), (md, markdown(table) + "\n")):
        try:
            with open(path, "x", encoding="utf-8", newline="") as f:
                f.write(content)
        except FileExistsError:
            raise ZooError(f"{path} exists and is kept: write these results under another name") from None
    return [out, md]


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")  # a prompt may hold either


def markdown(table) -> str:
    """A GitHub markdown table, then how each metric was made and any warnings."""
    frame = table.reset_index() if table.index.name else table
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    lines += ["", *(f"- {how}" for how in table.attrs.get("how", {}).values())]
    lines += [f"- warning: {w}" for w in table.attrs.get("warnings", [])]
    return "\n".join(lines)


# --- compare and sweep -------------------------------------------------------------------------------------------


def score_rows(rows: list[dict], out_dir, metrics, references=None, by=("model",), **options):
    """Score a sweep's or comparison's finished cells, grouped by the parameters in `by`."""
    groups: dict = {}
    for row in rows:
        if row.get("status") == "ok":
            label = tuple((k, row["params"][k]) for k in by)
            groups.setdefault(label, []).append((Path(out_dir) / row["path"], row["params"]["prompt"]))
    if not groups:
        raise ZooError("no finished images to score: every cell failed (see the table's errors)")
    return score_groups(groups, metrics, references, **options).set_index(list(by))


def score_cells(result, metrics, **options) -> None:
    """Give each finished sweep cell `scores` (per-image metrics only) and rewrite its manifest with them."""
    metrics = check_metrics(metrics)
    sets = [m for m in metrics if m not in judge.PER_IMAGE or judge.PER_IMAGE[m][1] != "prompts"]
    if sets:
        raise ZooError(f"{sets} need many images or references; a sweep cell is one image. Use compare or evaluate")
    todo = [r for r in result.rows if r["status"] == "ok" and not set(metrics) <= set(r.get("scores", {}))]
    if todo:
        paths = [result.out_dir / r["path"] for r in todo]
        scores = judge.score(paths, [r["params"]["prompt"] for r in todo], metrics, **options)
        for i, row in enumerate(todo):
            row["scores"] = {**row.get("scores", {}), **{m: scores[m][i] for m in metrics}}
    manifest = result.out_dir / "manifest.jsonl"
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, default=str) + "\n" for r in result.rows), encoding="utf-8")
    os.replace(tmp, manifest)


def sweep_plot(result, metric: str, x: str, hue: str | None = None):
    """A metric against one sweep parameter (e.g. CLIP score against steps), a line per value of `hue`."""
    import matplotlib.pyplot as plt

    rows = [r for r in result.rows if metric in r.get("scores", {})]
    if not rows:
        raise ZooError(f"no cell has a '{metric}' score: run the sweep with metrics=['{metric}']")
    lines: dict = {}
    for r in rows:
        lines.setdefault(r["params"].get(hue) if hue else None, []).append((r["params"][x], r["scores"][metric]))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, points in lines.items():
        xs = sorted({p[0] for p in points})
        ys = [sum(v for k, v in points if k == xv) / sum(1 for k, _ in points if k == xv) for xv in xs]
        ax.plot(xs, ys, marker="o", label=f"{hue} = {key}" if hue else None)
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    if hue:
        ax.legend()
    fig.tight_layout()
    return fig


def pareto_front(table, metric: str, cost: str = "s_per_image") -> list:
    """The rows no other row beats on both score and cost (the quality-against-cost frontier), cheapest first."""
    sign = -1 if metric in LOWER_IS_BETTER else 1
    ordered = table.dropna(subset=[metric, cost]).sort_values([cost, metric], ascending=[True, sign < 0])
    front, best = [], float("-inf")
    for key, row in ordered.iterrows():
        if sign * row[metric] > best:
            front.append(key)
            best = sign * row[metric]
    return front


def quality_cost_plot(table, metric: str, cost: str = "s_per_image"):
    """Each model a point, `metric` against seconds per image; the frontier joined by a line."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(table[cost], table[metric], color="#4c72b0")
    for key, row in table.iterrows():
        ax.annotate(str(key), (row[cost], row[metric]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    front = table.loc[pareto_front(table, metric, cost)]
    ax.plot(front[cost], front[metric], color="#dd8452", label="frontier: nothing is better and cheaper")
    better = "lower" if metric in LOWER_IS_BETTER else "higher"
    ax.set_xlabel("seconds per image (lower is cheaper)")
    ax.set_ylabel(f"{metric} ({better} is better)")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig
