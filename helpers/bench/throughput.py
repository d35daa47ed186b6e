"""Sweep throughput: images per minute for a 4 x 4 grid (4 prompts x 4 seeds) at batch 1 and at the best batch size.

Every image keeps its own seed at any batch size (`generate(seeds=...)` gives each image its own generator), so a
batched grid is the same grid, made faster: the run checks that the batched images match the batch-1 ones.

    measure(pipe, steps=30, height=1024, width=1024)   # {"batch_1": {...}, "best": {...}, "by_batch": [...]}
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..base.devices import synchronize
from ..run.generate import generate

PROMPTS = (
    "a photograph of an astronaut riding a horse on the moon",
    "a watercolour of a lighthouse in a storm",
    "a bowl of ramen, studio lighting, highly detailed",
    "an isometric pixel-art castle on a floating island",
)
SEEDS = (0, 1, 2, 3)
# A batch-1 image and the same seed's image in a batch differ by batched kernels' rounding only.
SAME_IMAGE_MAX_ABS = 8


def grid(pipe, batch_size: int, **call) -> tuple[float, list]:
    """Make the 4 x 4 grid at `batch_size`; (seconds, images in prompt-major order)."""
    images = []
    device = torch.device(pipe.device)
    synchronize(device)
    start = time.perf_counter()
    for prompt in PROMPTS:
        images += generate(pipe, prompt, seeds=list(SEEDS), batch_size=batch_size, scheduler="default", **call).images
    synchronize(device)
    return time.perf_counter() - start, images


def measure(pipe, batch_sizes=(1, 2, 4), warmup: bool = True, **call) -> dict:
    """Images per minute of the grid at each batch size (after a warm-up grid cell), the best, and the seed check."""
    if warmup:
        generate(pipe, PROMPTS[0], seeds=[SEEDS[0]], batch_size=1, scheduler="default", **call)
    by_batch, reference = [], None
    for bs in batch_sizes:
        try:
            seconds, images = grid(pipe, bs, **call)
        except torch.OutOfMemoryError:
            by_batch.append({"batch_size": bs, "error": "out of memory"})
            torch.cuda.empty_cache()
            break
        pixels = [np.asarray(im).astype(int) for im in images]
        reference = reference or pixels
        diff = max(int(np.abs(a - b).max()) for a, b in zip(pixels, reference, strict=True))
        by_batch.append({"batch_size": bs, "seconds": seconds, "images": len(images),
                         "distinct_images": len({im.tobytes() for im in images}),
                         "images_per_minute": 60 * len(images) / seconds, "max_abs_vs_batch_1": diff,
                         "same_images": diff <= SAME_IMAGE_MAX_ABS})  # fmt: skip
    ok = [r for r in by_batch if "error" not in r and r["same_images"]]
    return {"grid": f"{len(PROMPTS)} prompts x {len(SEEDS)} seeds", "batch_1": by_batch[0],
            "best": max(ok, key=lambda r: r["images_per_minute"]), "by_batch": by_batch}  # fmt: skip
