"""Attention backends as a fast-mode option: diffusers' `set_attention_backend`, with a fallback that says why.

`FastMode(attention=...)`:

- `"default"`: what diffusers does (PyTorch's `scaled_dot_product_attention`, which picks its own kernel);
- `"flash"`: FlashAttention (the `flash-attn` package; FlashAttention 3 first on Hopper);
- `"sage"`: SageAttention (the `sageattention` package): 8-bit quantised attention, faster and not exact;
- `"best"`: the fastest exact one this machine has: FlashAttention 3, then 2, then what torch offers on the device
  (cuDNN attention on a CUDA GPU, its default elsewhere).

Only models whose attention goes through diffusers' dispatcher can switch (FLUX, Qwen-Image, Z-Image, FLUX.2 ...);
the U-Net, SD3 and PixArt call SDPA themselves. Whatever cannot be used falls back to `"default"` with one line.

>>> use(pipe.transformer, "flash", "flux-schnell")
[flux-schnell] attention: default (flash: Flash Attention backend 'flash' is not usable because of missing package...)
'default'
"""

from __future__ import annotations

import contextlib
import logging

import torch

CHOICES = ("default", "flash", "sage", "best")
# Tried in order; the first usable wins. Backend names are diffusers' `AttentionBackendName` values.
CANDIDATES = {
    "flash": ("_flash_3", "flash"),
    "sage": ("sage",),
    "best": ("_flash_3", "flash", "_native_cudnn"),
}
_NEEDS_CUDA = ("_flash_3", "flash", "sage", "_native_cudnn")


def dispatches(net: torch.nn.Module) -> bool:
    """Whether the model's attention goes through diffusers' backend dispatcher (so a backend can be set)."""
    return any(hasattr(getattr(m, "processor", None), "_attention_backend") for m in net.modules())


def why_not(backend: str, device: torch.device) -> str | None:
    """Why `backend` cannot run here (a missing package, the wrong device), or None."""
    from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements

    if backend in _NEEDS_CUDA and device.type != "cuda":
        return f"{backend} needs a CUDA GPU, this model is on {device.type}"
    try:
        _check_attention_backend_requirements(AttentionBackendName(backend))
    except (RuntimeError, ImportError) as exc:
        return str(exc).split(". ")[0]
    return None


def choose(net: torch.nn.Module, name: str) -> tuple[str, str | None]:
    """The backend `name` becomes for `net` ("default" or a diffusers backend name) and, if it fell back, why."""
    if name == "default":
        return "default", None
    if not dispatches(net):
        return "default", f"{type(net).__name__} calls PyTorch's attention itself, not diffusers' backends"
    device = next(net.parameters()).device
    reasons = []
    for backend in CANDIDATES[name]:
        reason = why_not(backend, device)
        if reason is None:
            return backend, None
        reasons.append(reason)
    return "default", "; ".join(dict.fromkeys(reasons))


@contextlib.contextmanager
def _no_experimental_warning():
    """diffusers warns on every call that backends are experimental: said once here, in the module docstring."""
    log = logging.getLogger("diffusers.models.modeling_utils")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def use(net: torch.nn.Module, name: str, model: str = "") -> str:
    """Set the attention backend `name` (one of `CHOICES`) on `net`; returns the one in use."""
    backend, reason = choose(net, name)
    if reason:
        print(f"[{model or type(net).__name__}] attention: default ({name}: {reason})")
    if backend != "default":
        with _no_experimental_warning():
            net.set_attention_backend(backend)
    return backend
