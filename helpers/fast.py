"""Fast mode: SDPA attention, channels-last convolutions, fused QKV projections, regional torch.compile and
CUDA graphs, applied to a loaded pipeline.

`load_pipeline(key, fast=...)` calls `apply`. Presets (`PRESETS`):

- `"off"`: the pipeline as diffusers builds it.
- `"auto"` (the default): on a CUDA GPU with everything on it, SDPA attention and channels-last memory layout of
  the U-Net and VAE: no warm-up, no extra memory, the same arithmetic.
- `"max"`: `auto` plus fused QKV projections and regional compilation (each repeated block is compiled once, in
  seconds, and reused). The first image of each new size pays the compilation.
- `"graphs"`: `auto` plus fused QKV and the whole denoiser compiled with CUDA graphs (`mode="reduce-overhead"`):
  the fewest kernel launches, for many images of one size.

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

from .errors import ZooError
from .loaded import record

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

    def describe(self) -> str:
        parts = ["channels-last"] * self.channels_last + ["fused QKV"] * self.fuse_qkv
        if self.compile != "off":
            parts.append(f"compiled ({self.compile})")
        return ", ".join(parts) or "off"


PRESETS = {
    "off": FastMode(),
    "auto": FastMode(channels_last=True),
    "max": FastMode(channels_last=True, fuse_qkv=True, compile="regional"),
    "graphs": FastMode(channels_last=True, fuse_qkv=True, compile="full"),
}


def choose(fast, device: str, policy_name: str = "gpu") -> FastMode:
    """The `FastMode` for a preset name, bool or `FastMode` on this device and memory policy.

    `"auto"` is off on the CPU and MPS (channels-last does not pay there) and with offloading or 4-bit weights;
    a named preset or a `FastMode` is applied as asked, except compilation under offloading (hooks move the
    weights under the compiled graph every call).
    """
    if isinstance(fast, FastMode):
        mode = fast
    elif isinstance(fast, bool) or fast is None:
        mode = PRESETS["max" if fast else "off"]
    elif fast in PRESETS:
        mode = PRESETS[fast]
    else:
        raise ZooError(f"Unknown fast mode {fast!r}; use one of {', '.join(PRESETS)}, True/False or a FastMode")
    if mode.compile not in COMPILE_MODES:
        raise ZooError(f"FastMode.compile {mode.compile!r} is not one of {COMPILE_MODES}")
    if fast == "auto" and not (device.startswith("cuda") and policy_name == "gpu"):
        return PRESETS["off"]
    if mode.compile != "off" and "offload" in policy_name:
        return replace(mode, compile="off")  # offload hooks move weights under the compiled graph every call
    return mode


def denoiser(pipe) -> torch.nn.Module:
    return pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer


def apply(pipe, mode: FastMode) -> FastMode:
    """Apply `mode` to a loaded pipeline and note it in the pipeline's record; returns it."""
    net = denoiser(pipe)
    if mode.channels_last:
        for model in (getattr(pipe, "unet", None), getattr(pipe, "vae", None)):
            if isinstance(model, torch.nn.Module) and not getattr(model, "is_quantized", False):
                model.to(memory_format=torch.channels_last)
    if mode.fuse_qkv:
        fuse_qkv(pipe)
    if mode.compile == "regional":
        compile_regions(net)
    elif mode.compile == "full":
        _raise_recompile_limit()
        cuda = next(net.parameters()).device.type == "cuda"
        net.compile(fullgraph=True, dynamic=False, mode="reduce-overhead" if cuda else "default")
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
    """Compile each repeated block of a denoiser (`regions`) with static shapes; returns how many."""
    names = regions(net)
    if not names:
        raise ZooError(f"No regional compilation is known for {type(net).__name__}; use FastMode(compile='full')")
    _raise_recompile_limit()
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
