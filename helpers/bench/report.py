"""The benchmark's report: the machine, ratios to the baseline, targets, and the JSON and markdown files."""

from __future__ import annotations

import json
import math
import platform
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from ..base.devices import pick_device
from ..base.timestats import round_sig

# Dense fp16/bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets; matched on the GPU's name, first hit wins.
PEAK_FLOPS = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("RTX 4090", 165e12),
    ("A10", 125e12),
    ("T4", 65e12),
)
# The targets, checked on GPU results: (what, family or None, limit, "min" or "max").
TARGETS = (
    ("steps/s vs diffusers, best fast variant", "sd1", 2.0, "min"),
    ("steps/s vs diffusers, best fast variant", "sdxl", 1.6, "min"),
    ("compile time added to the first image (s)", None, 60.0, "max"),
    ("first image from a warm disk cache, eager (s)", "sdxl", 3.0, "max"),
    ("switch between two models held in RAM (s)", "sdxl", 1.0, "max"),
)

FAST_VARIANTS = ("auto", "max", "graphs")
# A fast image matches the eager one at this PSNR or above: half-precision kernels (fused, compiled) round
# differently and the differences grow over the steps, but at 35 dB they are not visible side by side.
TOLERANCE_PSNR_DB = 35.0


def machine(device: str = "auto") -> dict:
    """What the figures were measured on: GPU, driver, CUDA, CPU, RAM and library versions."""
    import diffusers
    import psutil
    import torch
    import transformers

    info = {
        "device": pick_device(device),
        "gpu": None,
        "gpu_memory_gb": None,
        "driver": None,
        "cuda": torch.version.cuda,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": psutil.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }
    if info["device"].startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1), driver=_driver())
    info["peak_flops"] = peak_flops(info["gpu"])
    return info


def _driver() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                         text=True)  # fmt: skip
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def compare_images(results: list[dict], key: str, folder: str) -> None:
    """Add each variant's pixel difference from the eager image of the same model (`vs_eager`)."""
    eager = Path(folder) / f"{key}-eager.png"
    if not eager.exists():
        return
    ref = np.asarray(Image.open(eager).convert("RGB"), dtype=np.float64)
    for r in results:
        path = Path(folder) / f"{key}-{r['variant']}.png"
        if r["model"] != key or r["variant"] == "eager" or not path.exists():
            continue
        img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
        if img.shape != ref.shape:
            continue
        diff = np.abs(img - ref)
        mse = float((diff**2).mean())
        psnr = None if mse == 0 else 10 * math.log10(255**2 / mse)
        r["vs_eager"] = {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "psnr_db": psnr}
        r["vs_eager"]["within_tolerance"] = psnr is None or psnr >= TOLERANCE_PSNR_DB


def summarise(report: dict) -> tuple[list[dict], list[dict]]:
    """Per model and variant: ratios to `diffusers`, compile cost, break-even images, MFU; and the targets."""
    peak = report["machine"]["peak_flops"]
    rows, by = [], {(r["model"], r["variant"]): r for r in report["results"] if "error" not in r}
    for (model, variant), r in by.items():
        base, eager = by.get((model, "diffusers")), by.get((model, "eager"))
        flops = r.get("flops_per_step")
        row = {"model": model, "variant": variant, "family": report["settings"]["family"][model]}
        if base and r.get("steps_per_s") and base.get("steps_per_s"):
            row["speedup_steps"] = r["steps_per_s"] / base["steps_per_s"]
            row["speedup_latency"] = base["latency_s"] / r["latency_s"]
        if eager and variant in FAST_VARIANTS:
            row["compile_s"] = max(0.0, r["first_image_s"] - eager["first_image_s"])
            gain = eager["latency_s"] - r["latency_s"]
            row["break_even_images"] = row["compile_s"] / gain if gain > 0 else None
        if flops and peak and r.get("steps_per_s"):
            row["mfu"] = flops * r["steps_per_s"] / peak
        rows.append(row)
    return rows, _targets(report, rows, by)


def _targets(report: dict, rows: list[dict], by: dict) -> list[dict]:
    gpu = report["machine"]["gpu"]
    family = report["settings"]["family"]
    out = []
    for what, fam, limit, kind in TARGETS:
        value = None
        if what.startswith("steps/s"):
            found = [r["speedup_steps"] for r in rows if r["family"] == fam and r["variant"] in FAST_VARIANTS
                     and "speedup_steps" in r]  # fmt: skip
            value = max(found) if found else None
        elif what.startswith("compile"):
            found = [r["compile_s"] for r in rows if r.get("compile_s") is not None]
            value = max(found) if found else None
        elif what.startswith("first image"):
            found = [r["first_image_s"] for (m, v), r in by.items() if v == "eager" and family.get(m) == fam]
            value = min(found) if found else None
        elif report.get("switch") and "switch_s" in report["switch"]:
            if all(family.get(m) == fam or m not in family for m in report["switch"]["models"]):
                value = report["switch"]["switch_s"]
        met = None if value is None or gpu is None else (value >= limit if kind == "min" else value <= limit)
        out.append({"target": what, "family": fam, "limit": limit, "value": value, "met": met})
    return out


def chart(report: dict):
    """Bars of steps per second, first-image time and peak memory for every model and variant (matplotlib)."""
    import matplotlib.pyplot as plt

    ok = [r for r in report["results"] if "error" not in r]
    models = list(dict.fromkeys(r["model"] for r in ok))
    variants = list(dict.fromkeys(r["variant"] for r in ok))
    panels = [("steps_per_s", "denoising steps / s"), ("first_image_s", "first image from disk (s)")]
    panels += [("peak_memory_gb", "peak GPU memory (GB)")] if any(r.get("peak_memory_gb") for r in ok) else []
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    width = 0.8 / max(1, len(variants))
    for ax, (field, title) in zip(axes[0], panels, strict=True):
        for i, v in enumerate(variants):
            values = [next((r.get(field) or 0 for r in ok if r["model"] == m and r["variant"] == v), 0) for m in models]
            ax.bar([j + i * width for j in range(len(models))], values, width, label=v)
        ax.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(models))], models)
        ax.set_title(title)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(report["machine"]["gpu"] or "CPU (no GPU): figures only show the harness works")
    fig.tight_layout()
    plt.close(fig)  # shown once in a notebook, as the value the cell returns
    return fig


# Single measurements (one load, one first image) support two significant figures; medians of repeats three.
SINGLE = ("load_s", "first_image_s")
TIMES = (*SINGLE, "steps_per_s", "latency_s", "text_encoding_s", "denoising_s", "decode_s", "peak_memory_gb")


def results_table(report: dict):
    """Every model and variant's figures (a DataFrame): rounded, and a column nobody measured left out."""
    import pandas as pd

    rows = []
    for r in report["results"]:
        row = {"model": r["model"], "variant": r["variant"]}
        row |= {k: round_sig(r.get(k), 2 if k in SINGLE else 3) for k in TIMES}
        row |= {"flops_per_step": round_sig(r.get("flops_per_step"), 3), "error": r.get("error")}
        rows.append(row)
    return pd.DataFrame(rows).set_index(["model", "variant"]).dropna(axis=1, how="all")


def _fmt(value, digits=3) -> str:
    """A figure to `digits` significant figures (no more than it supports), "–" when not measured."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{round_sig(value, digits):g}"
    return str(value)


def markdown(report: dict) -> str:
    """The report as a markdown page: machine, settings, one table of every model and variant, targets."""
    m, s = report["machine"], report["settings"]
    lines = [f"# Benchmark, {report['date']}", ""]
    where = m["gpu"] or f"CPU only ({m['cpu']}, {m['cpu_count']} cores): no GPU figure here"
    lines += [f"- **Machine**: {where}" + (f", {m['gpu_memory_gb']} GB, driver {m['driver']}, CUDA {m['cuda']}"
                                            if m["gpu"] else "") + f"; {m['ram_gb']} GB RAM"]  # fmt: skip
    lines += [f"- **Versions**: torch {m['torch']}, diffusers {m['diffusers']}, transformers {m['transformers']}, "
              f"Python {m['python']}"]  # fmt: skip
    weights = "random weights built from the real configs" if report["random_weights"] else "the local Hub cache"
    lines += [f"- **Settings**: batch 1, seed {s['seed']}, {s['scheduler']} scheduler, {s['warmup']} warm-up and "
              f"{s['repeats']} timed runs (medians), models from {weights}; prompt \"{s['prompt']}\""]  # fmt: skip
    lines += ["", "| model | size | steps | variant | load s | first image s | steps/s | × diffusers | latency s | "
              "decode s | peak GB | MFU | compile s | vs eager |", "|" + "---|" * 14]  # fmt: skip
    summary = {(r["model"], r["variant"]): r for r in report["summary"]}
    for r in report["results"]:
        k, v = r["model"], r["variant"]
        size = f"{s['width'][k]}x{s['height'][k]}"
        if "error" in r:
            lines.append(f"| `{k}` | {size} | {s['steps'][k]} | {v} | failed: {r['error']} |" + " |" * 9)
            continue
        row = summary.get((k, v), {})
        vs = r.get("vs_eager")
        vs_text = "–" if not vs else "identical" if vs["psnr_db"] is None else f"{vs['psnr_db']:.1f} dB"
        vs_text += f", max {vs['max_abs']:.0f}" if vs and vs["psnr_db"] is not None else ""
        vs_text += "" if not vs or vs["within_tolerance"] else " (**outside the tolerance**)"
        mfu = row.get("mfu")
        lines.append(
            f"| `{k}` | {size} | {s['steps'][k]} | {v} | {_fmt(r['load_s'], 2)} | {_fmt(r['first_image_s'], 2)} | "
            f"{_fmt(r['steps_per_s'])} | {_fmt(row.get('speedup_steps'))} | {_fmt(r['latency_s'])} | "
            f"{_fmt(r['decode_s'])} | {_fmt(r.get('peak_memory_gb'))} | {'–' if mfu is None else f'{mfu:.1%}'} | "
            f"{_fmt(row.get('compile_s'), 2)} | {vs_text} |"
        )
    sw = report.get("switch")
    if sw:
        text = (
            f"failed: {sw['error']}"
            if "error" in sw
            else (
                f"{sw['switch_s']:.3f} s (median; {sw['how']}; the first switch, which makes the host copy, "
                f"{sw['first_switch_s']:.3f} s); diffusers (`a.to('cpu'); b.to('cuda')`): "
                f"{sw['diffusers_switch_s']:.3f} s"
            )
        )
        lines += ["", f"**Switching** between {' and '.join(f'`{k}`' for k in sw.get('models', []))}: {text}"]
    lines += ["", "| target | family | limit | measured | met |", "|---|---|---|---|---|"]
    for t in report["targets"]:
        met = {True: "yes", False: "**no**", None: "not measured" if m["gpu"] is None else "–"}[t["met"]]
        lines.append(f"| {t['target']} | {t['family'] or 'any'} | {t['limit']:g} | {_fmt(t['value'])} | {met} |")
    return "\n".join(lines) + "\n"


def new_files(report: dict, out_dir, kind: str = "") -> list[Path]:
    """`<date>-[kind-]<machine>[-n].json` and `.md` in `out_dir`: names no earlier run's files have."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", (report["machine"]["gpu"] or "cpu").lower()).strip("-")
    stem = base = f"{report['date'][:10]}-{kind + '-' if kind else ''}{slug}"
    n = 1
    while (out / f"{stem}.json").exists() or (out / f"{stem}.md").exists():
        n += 1
        stem = f"{base}-{n}"
    return [out / f"{stem}.json", out / f"{stem}.md"]


def write(report: dict, out_dir, paths: list[Path] | None = None) -> list[Path]:
    """Write `<date>-<machine>.json` and `.md` into `out_dir`, never replacing an earlier run's files (but this
    run's own `paths`, rewritten as each result comes in)."""
    paths = paths or new_files(report, out_dir)
    report = {**report, "files": [str(p) for p in paths]}
    paths[0].write_text(json.dumps(report, indent=1, default=str))
    paths[1].write_text(markdown(report))
    return paths


def peak_flops(gpu_name: str | None) -> float | None:
    """The GPU's dense half-precision peak from `PEAK_FLOPS`, or None when unknown (or no GPU)."""
    for name, flops in PEAK_FLOPS:
        if gpu_name and name in gpu_name:
            return flops
    return None
