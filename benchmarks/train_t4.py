"""Training under the Colab T4 preset: peak GPU memory and steps per second of a LoRA run (issue 16).

Targets: SD 1.5 LoRA at 512 px at most 10 GB, SDXL LoRA at 1024 px at most 15 GB, peaks including the
validation images and the checkpoint saving (where the diffusers scripts most often run out of memory).
Full-size models with random weights are built from the real configs (`helpers.bench.randomweights`), so no
network is needed; random weights cost what real ones cost. Each model runs in a fresh process.

    python benchmarks/train_t4.py --config-dir ../shared/real-configs            # on a CUDA GPU
    python benchmarks/train_t4.py --smoke --out /tmp/train-bench                 # tiny form: offline hub, CPU

Writes `results/train-<date>-<gpu>.json` and `.md`: every figure, the machine, versions and settings.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CASES = {"sd15": (512, 10.0), "sdxl-base": (1024, 15.0)}  # model -> (resolution, target peak GB)


def measure(key: str, resolution: int, steps: int, smoke: bool) -> dict:
    """One LoRA run under the T4 preset (the machine's own preset in smoke form); its peak memory and speed."""
    import torch

    from helpers.train import data as traindata
    from helpers.train import loop as train

    cuda = torch.cuda.is_available() and not smoke
    with tempfile.TemporaryDirectory() as tmp:
        images = traindata.draw_examples(Path(tmp) / "data", "star", count=8, size=resolution, caption="a sks star")
        stamps, peaks = [], []

        def on_step(step, loss):
            stamps.append(time.perf_counter())
            if cuda and step == steps - 1:  # before the last step's validation and checkpoint
                peaks.append(torch.cuda.max_memory_allocated() / 2**30)

        config = train.TrainConfig("lora", key, str(images), out=f"{tmp}/out", steps=steps, rank=4,
                                   resolution=resolution, validation_every=10**6, checkpoint_every=10**6,
                                   validation_inference_steps=2 if smoke else 20,
                                   preset="t4" if cuda else "auto", device="cuda" if cuda else "cpu")  # fmt: skip
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        result = train.train(config, on_step=on_step)
        timed = stamps[2:-1] if len(stamps) > 4 else stamps
        rate = (len(timed) - 1) / (timed[-1] - timed[0]) if len(timed) > 1 else None
        return {
            "model": key,
            "resolution": resolution,
            "steps": steps,
            "preset": result.preset.describe(),
            "estimate_gb": round(result.estimate.gpu_gb, 2),
            "peak_training_gb": round(peaks[0], 2) if peaks else None,
            "peak_with_validation_and_saving_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            "steps_per_s": round(rate, 3) if rate else None,
            "final_loss": result.losses[-1],
            "seconds": round(result.seconds, 1),
        }


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# Training under the T4 preset: {m['gpu'] or 'CPU (smoke form: tiny models, figures meaningless)'}",
             "", f"{report['date']}; torch {m['torch']}, diffusers {m['diffusers']}; settings: {report['settings']}",
             "", "| model | px | preset | estimate GB | peak training GB | peak incl. validation + saving GB | "
             "target GB | met | steps/s |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in report["results"]:
        peak = r.get("peak_with_validation_and_saving_gb")
        met = "n/a" if peak is None else ("yes" if peak <= r["target_gb"] else "NO")
        lines.append(f"| {r['model']} | {r['resolution']} | {r['preset']} | {r['estimate_gb']} | "
                     f"{r['peak_training_gb']} | {peak} | {r['target_gb']} | {met} | {r['steps_per_s']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="sd15,sdxl-base")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--config-dir", default="../shared/real-configs")
    p.add_argument("--hub-cache", default=".cache/bench-hub")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--smoke", action="store_true", help="tiny models of the offline hub on the CPU, 32 px, 4 steps")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model in this process, print JSON
    args = p.parse_args(argv)
    keys = [k for k in args.models.split(",") if k]
    if args.one:
        res, _ = CASES[args.one]
        print("RESULT " + json.dumps(measure(args.one, 32 if args.smoke else res, args.steps, args.smoke)))
        return 0
    from helpers.bench import report as bench_report

    env = dict(os.environ)
    if not args.smoke:
        import torch

        from helpers.bench import randomweights

        if not torch.cuda.is_available():
            print("no CUDA GPU: run with --smoke for the tiny CPU form", file=sys.stderr)
            return 2
        hub = randomweights.build(keys, args.config_dir, args.hub_cache, device="cuda")
        env.update(HF_HUB_CACHE=str(hub), HF_HUB_OFFLINE="1")
    results = []
    for key in keys:
        cmd = [sys.executable, __file__, "--one", key, "--steps", str(4 if args.smoke else args.steps)]
        done = subprocess.run(cmd + (["--smoke"] if args.smoke else []), env=env, capture_output=True, text=True)
        line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
        if done.returncode != 0 or not line:
            results.append({"model": key, "error": done.stderr[-2000:]})
            print(done.stderr[-2000:], file=sys.stderr)
            continue
        results.append({**json.loads(line[0][7:]), "target_gb": CASES[key][1]})
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": bench_report.machine(),
        "settings": {"steps": args.steps, "smoke": args.smoke, "rank": 4, "batch_size": 1, "preset": "t4"},
        "results": [r for r in results if "error" not in r],
        "errors": [r for r in results if "error" in r],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", (report["machine"]["gpu"] or "cpu").lower()).strip("-")
    stem = f"train-{report['date'][:10]}-{slug}"
    n = 1
    while (out / f"{stem}.json").exists():
        n += 1
        stem = f"train-{report['date'][:10]}-{slug}-{n}"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1, default=str))
    (out / f"{stem}.md").write_text(markdown(report))
    print(out / f"{stem}.json")
    print(out / f"{stem}.md")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
