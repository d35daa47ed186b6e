"""Caching across denoising steps as opt-in fast modes, through diffusers' hooks (`model.enable_cache(config)`).

`FastMode(cache=...)`:

- `"first-block"`: First Block Cache: when the first block's output barely changed since the last step, the other
  blocks' residual is reused (`FirstBlockCacheConfig`, threshold 0.05).
- `"taylorseer"`: TaylorSeer: full steps every few, the steps between predicted from a Taylor series of each block's
  output (`TaylorSeerCacheConfig`, every 5th step computed, the first 3 always).
- `"magcache"`: MagCache: blocks skipped while the accumulated change in the output's magnitude stays small
  (`MagCacheConfig`); it needs the model's magnitude ratios, which diffusers ships for FLUX only.
- `"fastercache"`: FasterCache: attention reused every other step in the middle of the schedule
  (`FasterCacheConfig`).

Each mode trades image quality for speed. `helpers.bench.cachequality` measures what each costs with the zoo's
judges (CLIP score, PickScore and DINO similarity to the uncached image, same seeds); `MEASURED` holds the figures
of a GPU run on the real models, and `auto` never picks a mode whose cost exceeds `BOUND` (none until measured).
Only transformer models with diffusers' `CacheMixin` can cache (FLUX, Qwen-Image, Z-Image, FLUX.2 ...); elsewhere a
mode falls back to no caching with one line saying why.
"""

from __future__ import annotations

import torch

CHOICES = ("off", "first-block", "taylorseer", "magcache", "fastercache")

# The most a mode may cost and still be chosen by `auto`: the DINO cosine similarity to the uncached image of the
# same seed at least 0.95 (the same picture, small texture changes), and CLIP score and PickScore lower by at most
# 1% of the uncached images'.
BOUND = {"dino_similarity": 0.95, "clip_drop": 0.01, "pick_drop": 0.01}

# Per mode, measured on a GPU with the real weights (`benchmarks/gpu.sh`): "speedup" (denoising, vs no cache),
# "dino_similarity", "clip_drop", "pick_drop" (relative), "source" (the results file). Empty until that run.
MEASURED: dict[str, dict] = {}


def config(mode: str, pipe, steps: int | None = None):
    """diffusers' config object for `mode` on `pipe`'s denoiser."""
    from diffusers.hooks import FasterCacheConfig, FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

    if mode == "first-block":
        return FirstBlockCacheConfig(threshold=0.05)
    if mode == "taylorseer":
        return TaylorSeerCacheConfig(cache_interval=5, disable_cache_before_step=3, taylor_factors_dtype=torch.float32)
    if mode == "magcache":
        from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

        return MagCacheConfig(mag_ratios=FLUX_MAG_RATIOS, num_inference_steps=steps or 28)
    if mode == "fastercache":
        return FasterCacheConfig(
            spatial_attention_block_skip_range=2,
            spatial_attention_timestep_skip_range=(-1, 681),
            current_timestep_callback=lambda: pipe.current_timestep,
            is_guidance_distilled=True,  # the cached models run guidance as separate calls, or have it distilled in
        )
    raise ValueError(f"Unknown cache mode {mode!r}; use one of {', '.join(CHOICES)}")


def why_not(mode: str, net: torch.nn.Module) -> str | None:
    """Why `mode` cannot cache `net` (no hooks for it, no magnitude ratios for the model), or None."""
    if mode == "off":
        return None
    if not hasattr(net, "enable_cache"):
        return f"{type(net).__name__} has no diffusers cache hooks (transformer models with CacheMixin do)"
    if mode == "magcache" and type(net).__name__ != "FluxTransformer2DModel":
        return "MagCache needs the model's magnitude ratios; diffusers has them for FLUX only"
    return None


def use(pipe, net: torch.nn.Module, mode: str, steps: int | None = None, model: str = "") -> str:
    """Enable `mode` on `net` (replacing any cache on it); returns the mode in use ("off" when it fell back)."""
    if getattr(net, "is_cache_enabled", False):
        net.disable_cache()
    reason = why_not(mode, net)
    if reason:
        print(f"[{model or type(net).__name__}] cache: off ({mode}: {reason})")
        return "off"
    if mode != "off":
        net.enable_cache(config(mode, pipe, steps))
    return mode


def acceptable(cost: dict, bound: dict = BOUND) -> bool:
    """Whether a measured cost is within `bound` (a cost missing a figure is not)."""
    try:
        return (cost["dino_similarity"] >= bound["dino_similarity"] and cost["clip_drop"] <= bound["clip_drop"]
                and cost["pick_drop"] <= bound["pick_drop"])  # fmt: skip
    except (KeyError, TypeError):
        return False


def auto(measured: dict | None = None, bound: dict = BOUND) -> str:
    """The fastest measured mode whose quality cost is within `bound`, or "off"."""
    measured = MEASURED if measured is None else measured
    ok = [
        (cost.get("speedup", 0), mode) for mode, cost in measured.items() if mode in CHOICES and acceptable(cost, bound)
    ]
    best = max(ok, default=(0, "off"))
    return best[1] if best[0] > 1 else "off"
