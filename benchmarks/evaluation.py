"""How fast the judges are (issue 15): CLIP score and FID features in images per second at batch 32 in half
precision, and the seconds to score a 4-model x 50-prompt comparison. Writes `<date>-evaluation-<gpu>.json` and
`.md` with the machine, the versions and the settings.

    python benchmarks/evaluation.py                         # on a GPU with the judges in the Hugging Face cache
    python benchmarks/evaluation.py --images 4 --batch 2 --models 2 --prompts 2 --size 64 --out /tmp/x   # smoke

The images are noise of the given size: scoring costs the same whatever they show. A first batch warms up
each network (loading, kernel selection) and is not timed. "End to end" includes preprocessing on the CPU
(PIL resizes); "network only" times the forward passes on ready tensors, so the gap is the CPU's share.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _noise(n: int, size: int, seed: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def _timed(fn, device: str) -> float:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure_clip(images, batch: int, device: str, repeats: int = 3) -> dict:
    """CLIP score, end to end (processor, both encoders) and the image tower alone."""
    import torch

    from helpers.judge import metrics

    j = metrics.judge("clip-vit-l-14", device)
    prompts = ["a photo of a red fox in the snow"] * len(images)
    metrics.clip_score(images[:batch], prompts[:batch], batch_size=batch, device=device)  # warm-up
    total = _timed(lambda: metrics.clip_score(images, prompts, batch_size=batch, device=device), device)
    pixels = j.processor.image_processor(images=images[:batch], return_tensors="pt")["pixel_values"]
    pixels = pixels.to(j.device, j.dtype)
    with torch.inference_mode():
        network = _timed(lambda: [j.model.get_image_features(pixel_values=pixels) for _ in range(repeats)], device)
    network /= repeats
    return {"images_per_s": len(images) / total, "network_images_per_s": batch / network, "dtype": str(j.dtype)}


def measure_fid_features(images, batch: int, device: str, repeats: int = 3) -> dict:
    """FID Inception features, end to end (clean-fid resize on the CPU) and the network alone."""
    import torch

    from helpers.judge import inception, metrics

    half = torch.float16 if device.startswith("cuda") else None  # the issue asks for half precision on a GPU
    j = metrics.judge("fid-inception", device, half)
    metrics.inception_outputs(images[:batch], batch_size=batch, device=device, dtype=half)  # warm-up
    total = _timed(lambda: metrics.inception_outputs(images, batch_size=batch, device=device, dtype=half), device)
    x = inception.to_batch(images[:batch]).to(j.device, j.dtype)
    with torch.inference_mode():
        network = _timed(lambda: [j.model(x) for _ in range(repeats)], device) / repeats
    return {"images_per_s": len(images) / total, "network_images_per_s": batch / network, "dtype": str(j.dtype)}


def measure_comparison(models: int, prompts: int, size: int, batch: int, metric_names, device: str) -> dict:
    """Seconds to score `models` x `prompts` images, grouped per model, as `compare(..., metrics=...)` does."""
    from helpers.judge import evaluate

    images = _noise(models * prompts, size, seed=1)
    groups = {(("model", f"model-{m}"),): [(im, f"prompt {i}") for i, im in enumerate(images[m::models])]
              for m in range(models)}  # fmt: skip
    reference = _noise(prompts, size, seed=2) if set(metric_names) & {"fid", "kid", "fd-dinov2"} else None
    seconds = _timed(
        lambda: evaluate.score_groups(groups, metric_names, reference, batch_size=batch, device=device, progress=False),
        device,
    )
    return {"seconds": seconds, "images": len(images), "metrics": list(metric_names)}


def run(args) -> dict:
    from helpers.base.devices import pick_device
    from helpers.bench.report import machine

    device = pick_device(args.device)
    images = _noise(args.images, args.size, seed=0)
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(device),
        "settings": {k: v for k, v in vars(args).items() if k != "out"} | {"device": device},
        "clip_score": measure_clip(images, args.batch, device, args.repeats),
        "fid_features": measure_fid_features(images, args.batch, device, args.repeats),
    }
    report["comparison"] = measure_comparison(args.models, args.prompts, args.size, args.batch, args.metrics, device)
    return report


def markdown(report: dict) -> str:
    m, s, c = report["machine"], report["settings"], report["comparison"]
    lines = [
        f"# Evaluation speed, {report['date']}",
        "",
        f"{m['gpu'] or m['cpu']} · torch {m['torch']} · transformers {m['transformers']} · batch {s['batch']} · "
        f"{s['images']} images of {s['size']} px (noise)",
        "",
        "| what | images/s end to end | images/s network only | dtype |",
        "|---|---|---|---|",
    ]
    for name in ("clip_score", "fid_features"):
        r = report[name]
        lines.append(f"| {name} | {r['images_per_s']:.1f} | {r['network_images_per_s']:.1f} | {r['dtype']} |")
    lines += ["", f"Scoring {s['models']} models x {s['prompts']} prompts ({c['images']} images) with "
              f"{', '.join(c['metrics'])}: {c['seconds']:.1f} s."]  # fmt: skip
    return "\n".join(lines) + "\n"


def write(report: dict, out_dir) -> list[Path]:
    """`<date>-evaluation-<machine>.json` and `.md`; an earlier run's files are never replaced."""
    from helpers.bench.report import new_files

    paths = new_files(report, out_dir, kind="evaluation")
    paths[0].write_text(json.dumps(report, indent=1, default=str))
    paths[1].write_text(markdown(report))
    return paths


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=512, help="images timed for each network")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=512, help="side of the noise images, px")
    p.add_argument("--repeats", type=int, default=3, help="timed forward passes of one batch, network only")
    p.add_argument("--models", type=int, default=4)
    p.add_argument("--prompts", type=int, default=50)
    p.add_argument("--metrics", type=lambda t: t.split(","), default=["clip", "pickscore", "fid", "kid"])
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    return p


def main(argv=None) -> list[Path]:
    args = parser().parse_args(argv)
    paths = write(run(args), args.out)
    for path in paths:
        print(path)
    return paths


if __name__ == "__main__":
    main()
