"""What each step-caching mode (`helpers.run.stepcache`) costs in quality and gains in speed, by the zoo's judges.

For the same prompts and seeds, images with and without the cache: CLIP score and PickScore of both sets (their
relative drop is the cost), and the DINO similarity of each cached image to its uncached twin; the speed-up is that
of the denoising time. `stepcache.acceptable` says whether a cost is within the bound `auto` keeps to.

    measure(pipe, ["first-block", "taylorseer"], num_inference_steps=28, height=1024, width=1024)
"""

from __future__ import annotations

import statistics

from ..judge import metrics
from ..run import stepcache
from ..run.fast import denoiser
from ..run.generate import generate
from .throughput import PROMPTS


def _images(pipe, prompts, seeds, **call) -> tuple[list, float]:
    images, seconds = [], 0.0
    for prompt in prompts:
        r = generate(pipe, prompt, seeds=list(seeds), scheduler="default", **call)
        images += r.images
        seconds += r.timings["denoising"]
    return images, seconds


def _relative_drop(base: float, value: float) -> float:
    return (base - value) / max(abs(base), 1e-6)


def measure(pipe, modes=stepcache.CHOICES[1:], prompts=PROMPTS[:2], seeds=(0, 1), **call) -> dict:
    """Per mode: speed-up, CLIP score and PickScore drops, DINO similarity to the uncached images, within bound."""
    net = denoiser(pipe)
    stepcache.use(pipe, net, "off")
    generate(pipe, prompts[0], seed=seeds[0], scheduler="default", **call)  # warm-up
    base, base_s = _images(pipe, prompts, seeds, **call)
    texts = [p for p in prompts for _ in seeds]
    clip0 = statistics.mean(metrics.clip_score(base, texts))
    pick0 = statistics.mean(metrics.preference_score(base, texts))
    out = {"uncached": {"denoising_s": base_s, "clip_score": clip0, "pickscore": pick0}, "bound": stepcache.BOUND}
    for mode in modes:
        if stepcache.use(pipe, net, mode, call.get("num_inference_steps")) != mode:
            out[mode] = {"error": stepcache.why_not(mode, net)}
            continue
        images, seconds = _images(pipe, prompts, seeds, **call)
        stepcache.use(pipe, net, "off")
        dino = [metrics.image_similarity([a], [b])[0] for a, b in zip(images, base, strict=True)]
        cost = {"speedup": base_s / seconds, "denoising_s": seconds,
                "clip_drop": _relative_drop(clip0, statistics.mean(metrics.clip_score(images, texts))),
                "pick_drop": _relative_drop(pick0, statistics.mean(metrics.preference_score(images, texts))),
                "dino_similarity": statistics.mean(dino)}  # fmt: skip
        out[mode] = cost | {"acceptable": stepcache.acceptable(cost)}
    return out
