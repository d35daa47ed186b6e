"""A compile that survives the kernel: torch.compile's artifacts kept on disk, loaded by the next process.

`torch.compiler.save_cache_artifacts()` serialises what inductor (and autotuning) produced; a new process that
hands the bytes to `torch.compiler.load_cache_artifacts()` before compiling finds its graphs in the cache instead of
generating and building kernels again. One file per model and input shape, in a folder keyed by torch, Triton and
the device, under the user's cache folder (`$SDZOO_CACHE`, else `$XDG_CACHE_HOME/sdzoo`, else `~/.cache/sdzoo`):

    ~/.cache/sdzoo/compiled/torch-2.14.1-triton-3.8.0-cuda-nvidia-h100-80gb-hbm3/sdxl-base/2x4x128x128.bin

`helpers.fast.apply` calls `attach` on every pipeline it compiles: earlier artifacts of that model are loaded at
once, and the first call of each new shape saves them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch


def root() -> Path:
    """The user's cache folder for this project."""
    if os.environ.get("SDZOO_CACHE"):
        return Path(os.environ["SDZOO_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "sdzoo"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def machine_key(device: torch.device | str) -> str:
    """torch, Triton and device: compiled kernels from one are not valid on another."""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type
    return _slug(f"torch-{torch.__version__}-triton-{triton_version}-{dev.type}-{name}")


def folder(model: str, device: torch.device | str) -> Path:
    return root() / "compiled" / machine_key(device) / _slug(model)


def path_for(model: str, device: torch.device | str, shape) -> Path:
    """The artifacts file of `model` for inputs of `shape` on `device`."""
    return folder(model, device) / ("x".join(str(int(n)) for n in shape) + ".bin")


def load(model: str, device: torch.device | str) -> int:
    """Hand every saved artifact file of `model` on this machine to torch; returns how many were loaded."""
    count = 0
    for path in sorted(folder(model, device).glob("*.bin")) if folder(model, device).is_dir() else []:
        try:
            torch.compiler.load_cache_artifacts(path.read_bytes())
            count += 1
        except Exception as exc:  # a stale or truncated file only costs a compile: say so and go on
            print(f"[{model}] compile cache: {path.name} not loaded ({type(exc).__name__}: {exc}); compiling afresh")
    return count


def save(model: str, device: torch.device | str, shape) -> Path | None:
    """Write what torch compiled so far (for `model` at `shape`) to the cache; returns the file, or None."""
    saved = torch.compiler.save_cache_artifacts()
    if not saved:
        return None
    path = path_for(model, device, shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(saved[0])
    tmp.replace(path)  # a reader never sees half a file
    return path


def attach(net: torch.nn.Module, model: str) -> int:
    """Load `model`'s saved artifacts, and save them after the first call of `net` at each new input shape.

    Call it after compiling `net` (whole or by regions): the saving runs outside the compiled graph.
    """
    device = next(net.parameters()).device
    loaded = load(model, device)
    seen: set[tuple] = set()

    def note(args, kwargs):
        x = args[0] if args else next(iter(kwargs.values()), None)
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else ()
        if shape not in seen:
            seen.add(shape)
            if not path_for(model, device, shape).exists():
                save(model, device, shape)

    compiled = getattr(net, "_compiled_call_impl", None)
    if compiled is not None:  # the whole model compiled: its hooks are inside the graph, so wrap the call instead

        def call(*args, **kwargs):
            out = compiled(*args, **kwargs)
            note(args, kwargs)
            return out

        net._compiled_call_impl = call
    else:
        net.register_forward_hook(lambda module, args, kwargs, output: note(args, kwargs), with_kwargs=True)
    return loaded
