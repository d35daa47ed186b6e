"""Devices and number formats: which device to compute on, which dtype, waiting for it, its peak memory.

The ground floor: everything that runs a model asks here, so cuda/mps/cpu differences live in one place.

>>> pick_device()                     # "cuda", then "mps", then "cpu"
>>> pick_dtype(registry.get("sd15"), "cpu")  # torch.float32: half precision is slow or unsupported on a CPU
"""

from __future__ import annotations

import contextlib

import torch

from .errors import ZooError

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def pick_device(device: str = "auto") -> str:
    """`"auto"` picks cuda, then mps, then cpu; anything else is checked and returned."""
    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ZooError(f"device '{device}' was asked for, but torch sees no CUDA GPU; use device='cpu'")
        if device == "mps" and not torch.backends.mps.is_available():
            raise ZooError("device 'mps' was asked for, but this torch build or machine has no Apple MPS")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(spec, device: str, dtype: str | torch.dtype = "auto") -> torch.dtype:
    """The entry's dtype (a registry spec, or its name) on a GPU, float32 on the CPU; an explicit `dtype` wins."""
    preferred = getattr(spec, "dtype", spec)
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype != "auto":
        if dtype not in DTYPES:
            raise ZooError(f"dtype '{dtype}' is not one of {sorted(DTYPES)} or 'auto'")
        return DTYPES[dtype]
    if device == "cpu":
        return torch.float32
    if device == "mps" and preferred == "bfloat16":
        return torch.float16  # bf16 on MPS needs macOS 14 and is slower; fp16 is the safe default there
    return DTYPES[preferred]


def synchronize(device: torch.device) -> None:
    """Wait until the device has finished its queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> float | None:
    """The most memory the device held since `reset_peak` (CUDA), or what the driver holds now (MPS)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    if device.type == "mps":
        return torch.mps.driver_allocated_memory() / 2**30
    return None


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Within the block, new tensors and modules are made in `dtype`."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)
