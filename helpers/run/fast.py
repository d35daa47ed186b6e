"""Fast mode: attention backends, channels-last convolutions, fused QKV projections, regional torch.compile (with
its artifacts kept on disk), CUDA graphs and caching across steps, applied to a loaded pipeline.

`load_pipeline(key, fast=...)` calls `apply`. Presets (`PRESETS`):

- `"off"`: the pipeline as diffusers builds it.
- `"auto"` (the default): on a CUDA GPU with everything on it, SDPA attention and channels-last memory layout of
  the U-Net and VAE: no warm-up, no extra memory, the same arithmetic.
- `"max"`: `auto` plus fused QKV projections and regional compilation (each repeated block is compiled once, in
  seconds, and reused). The first image of each new size pays the compilation.
- `"graphs"`: `auto` plus fused QKV and the whole denoiser compiled with CUDA graphs (`mode="reduce-overhead"`):
  the fewest kernel launches, for many images of one size. On transformer models (SD3, FLUX, PixArt, the 2026 DiTs)
  presets compile by regions: the whole model takes minutes to compile, its repeated blocks seconds.

Options beside the presets (`FastMode(...)` fields): `attention` ("default", "flash", "sage", "best":
`helpers.run.attention`), `cache` (step caching: "first-block", "taylorseer", "magcache", "fastercache":
`helpers.run.stepcache`, each with a measured quality cost), and `compile_cache` (compiled artifacts kept in the user's
cache folder and loaded by the next process: `helpers.run.compilecache`; on by default wherever something is compiled).

Fused QKV is not in `auto`: it keeps both the separate and the fused weights (about 1 GB more for SDXL) for about 1%
(SDXL on an A100, compiled: 2.546 s -> 2.522 s, 8.8 -> 9.8 GB; sayakpaul/diffusers-torchao results). Loading a LoRA
unfuses the projections first (`unfuse_qkv`), because fused layers would silently skip the LoRA's q/k/v.

>>> pipe = load_pipeline("sdxl-base", fast="max")
>>> record(pipe).fast.describe()
'channels-last, fused QKV, compiled (regional)'
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..base.errors import ZooError
from ..base.loaded import record
from . import attention as attention_mod
from . import compilecache, stepcache

COMPILE_MODES = ("off", "regional", "full")
# The blocks a denoiser repeats, compiled once per shape and reused by every copy (regional compilation), where
# diffusers does not name them itself in `_repeated_blocks` (it does for the U-Net and FLUX).
REGIONS = {
    "SD3Transformer2DModel": ("JointTransformerBlock",),
    "PixArtTransformer2DModel": ("BasicTransformerBlock",),
}


@dataclass(frozen=True)
class FastMode:
    """Which speed-ups a pipeline gets; `apply` sets them."""

    channels_last: bool = False
    fuse_qkv: bool = False
    compile: str = "off"  # "off", "regional" (repeated blocks) or "full" (the whole denoiser, with CUDA graphs on CUDA)
    attention: str = "default"  # "default", "flash", "sage" or "best" (helpers.run.attention)
    cache: str = "off"  # step caching (helpers.run.stepcache): "first-block", "taylorseer", "magcache", "fastercache"
    compile_cache: bool = True  # keep compiled artifacts on disk for the next process (helpers.run.compilecache)

    def describe(self) -> str:
        parts = ["channels-last"] * self.channels_last + ["fused QKV"] * self.fuse_qkv
        if self.compile != "off":
            parts.append(f"compiled ({self.compile})")
        parts += [f"{self.attention} attention"] * (self.attention != "default")
        parts += [f"{self.cache} cache"] * (self.cache != "off")
        return ", ".join(parts) or "off"


PRESETS = {
    "off": FastMode(),
    "auto": FastMode(channels_last=True),
    "max": FastMode(channels_last=True, fuse_qkv=True, compile="regional"),
    "graphs": FastMode(channels_last=True, fuse_qkv=True, compile="full"),
}


def _flat(model: torch.nn.Module) -> bool:
    """Whether channels-last applies: 2-D convolutions only (Qwen-Image's video-style VAE has 3-D ones)."""
    return not any(isinstance(m, torch.nn.Conv3d) for m in model.modules())


def choose(fast, device: str, policy_name: str = "gpu", net: torch.nn.Module | None = None) -> FastMode:
    """The `FastMode` for a preset name, bool or `FastMode` on this device and memory policy (and denoiser `net`).

    `"auto"` is off on the CPU and MPS (channels-last does not pay there) and with offloading or 4-bit weights,
    and caches steps only with a mode whose measured quality cost is within `stepcache.BOUND`; a named preset or
    a `FastMode` is applied as asked, except compilation under offloading (hooks move the weights under the
    compiled graph every call) and a preset's whole-model compile of a transformer, which is done by regions.
    """
    if isinstance(fast, FastMode):
        mode = fast
    elif isinstance(fast, bool) or fast is None:
        mode = PRESETS["max" if fast else "off"]
    elif fast in PRESETS:
        mode = PRESETS[fast]
    else:
        raise ZooError(f"Unknown fast mode {fast!r}; use one of {', '.join(PRESETS)}, True/False or a FastMode")
    for field, allowed in (("compile", COMPILE_MODES), ("attention", attention_mod.CHOICES),
                           ("cache", stepcache.CHOICES)):  # fmt: skip
        if getattr(mode, field) not in allowed:
            raise ZooError(f"FastMode.{field} {getattr(mode, field)!r} is not one of {', '.join(allowed)}")
    if fast == "auto" and not (device.startswith("cuda") and policy_name == "gpu"):
        return PRESETS["off"]
    if fast == "auto" and net is not None:
        cache = stepcache.auto()
        mode = replace(mode, cache=cache if stepcache.why_not(cache, net) is None else "off")
    if not isinstance(fast, FastMode) and mode.compile == "full" and is_transformer(net):
        mode = replace(mode, compile="regional")  # the whole model: minutes to compile; its blocks: seconds
    if mode.compile != "off" and "offload" in policy_name:
        return replace(mode, compile="off")  # offload hooks move weights under the compiled graph every call
    return mode


def denoiser(pipe) -> torch.nn.Module:
    return pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer


def is_transformer(net: torch.nn.Module | None) -> bool:
    """A transformer denoiser (DiT), whose repeated blocks are most of it: regional compilation is its default."""
    return net is not None and "Transformer" in type(net).__name__ and bool(regions(net))


def apply(pipe, mode: FastMode) -> FastMode:
    """Apply `mode` to a loaded pipeline and note it in the pipeline's record; returns it."""
    net = denoiser(pipe)
    key = record(pipe).spec.key if getattr(record(pipe), "spec", None) else type(net).__name__
    if mode.attention != "default":
        attention_mod.use(net, mode.attention, key)
    if mode.cache != "off" or getattr(net, "is_cache_enabled", False):  # a mode without a cache removes one
        steps = getattr(getattr(record(pipe).spec, "defaults", None), "steps", None)
        mode = replace(mode, cache=stepcache.use(pipe, net, mode.cache, steps, key))
    if mode.channels_last:
        for model in (getattr(pipe, "unet", None), getattr(pipe, "vae", None)):
            if isinstance(model, torch.nn.Module) and not getattr(model, "is_quantized", False) and _flat(model):
                model.to(memory_format=torch.channels_last)
    if mode.fuse_qkv:
        fuse_qkv(pipe)
        # Z-Image's transformer has no fusing, Qwen-Image's attention is not fused by diffusers 0.42: the record says so
        if not any(getattr(m, "fused_projections", False) for m in net.modules()):
            print(f"[{key}] fast: diffusers does not fuse the QKV projections of {type(net).__name__}; left separate")
            mode = replace(mode, fuse_qkv=False)
    if mode.compile == "regional":
        compile_regions(net)
    elif mode.compile == "full":
        _raise_recompile_limit()
        cuda = next(net.parameters()).device.type == "cuda"
        net.compile(fullgraph=True, dynamic=False, mode="reduce-overhead" if cuda else "default")
    if mode.compile != "off" and mode.compile_cache:
        compilecache.attach(net, f"{key}-{mode.compile}")
    record(pipe).fast = mode
    return mode


def fuse_qkv(pipe) -> None:
    """Fuse the attention projections of the denoiser and the VAE (one matmul instead of three)."""
    for model in (denoiser(pipe), getattr(pipe, "vae", None)):
        if hasattr(model, "fuse_qkv_projections") and not getattr(model, "is_quantized", False):
            model.fuse_qkv_projections()  # 4-bit weights cannot be concatenated


def unfuse_qkv(pipe) -> None:
    """Undo `fuse_qkv`, dropping the fused copies: before a LoRA changes the separate q/k/v weights."""
    from diffusers.models.attention_processor import Attention

    for model in (denoiser(pipe), getattr(pipe, "vae", None)):
        if not isinstance(model, torch.nn.Module) or not hasattr(model, "unfuse_qkv_projections"):
            continue
        if not any(getattr(m, "fused_projections", False) for m in model.modules()):
            continue
        model.unfuse_qkv_projections()
        for m in model.modules():
            if isinstance(m, Attention) or hasattr(m, "unfuse_projections"):
                for name in ("to_qkv", "to_kv", "to_added_qkv"):
                    if hasattr(m, name):
                        delattr(m, name)
                m.fused_projections = False


def compile_regions(net: torch.nn.Module) -> int:
    """Compile each repeated block of a denoiser (`regions`) with static shapes; returns how many.

    diffusers' `compile_repeated_blocks` where the model names its blocks (`_repeated_blocks`: the U-Net, FLUX,
    FLUX.2, Qwen-Image, Z-Image ...), the same by `REGIONS` for the others.
    """
    names = regions(net)
    if not names:
        raise ZooError(f"No regional compilation is known for {type(net).__name__}; use FastMode(compile='full')")
    _raise_recompile_limit()
    count = sum(type(m).__name__ in names for m in net.modules())
    if getattr(net, "_repeated_blocks", None):
        net.compile_repeated_blocks(fullgraph=True, dynamic=False)
        return count
    count = 0
    for module in net.modules():
        if type(module).__name__ in names:
            module.compile(fullgraph=True, dynamic=False)
            count += 1
    return count


def regions(net: torch.nn.Module) -> tuple[str, ...]:
    """The class names of the blocks regional compilation compiles in this denoiser."""
    return tuple(getattr(net, "_repeated_blocks", None) or REGIONS.get(type(net).__name__, ()))


def _raise_recompile_limit(limit: int = 64) -> None:
    """Each block shape (channels x resolution) is one graph: more than torch's default 8 in the larger U-Nets."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), limit))
