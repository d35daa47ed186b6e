"""Load once, reuse: loaded pipelines kept within a memory budget, least recently used evicted first.

Keyed by model, dtype and device; other tasks of a model (img2img, inpainting) are derived with `from_pipe`
and share its weights. Evicting a model moves it to system RAM when the host budget allows (moving back is
fast, from pinned memory on CUDA, and its host copy is kept so the next parking copies nothing back), else
drops it; `free()` drops everything (the loaded upscaler of `helpers.upscale` too). Nothing else here keeps a
reference: once your own variables let go, the weights are garbage-collected and their memory returned.

>>> pipe = helpers.get_pipeline("sdxl-base")            # loads
>>> pipe = helpers.get_pipeline("sdxl-base", "img2img")  # shares the weights, no load
>>> helpers.free()
"""

from __future__ import annotations

import gc
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from ..base.devices import pick_device, pick_dtype
from ..base.loaded import record
from ..zoo.registry import Registry
from ..zoo.registry import default as default_registry
from . import upscale
from .loading import check_task, default_task, derive, load_pipeline
from .memory import footprint


def module_bytes(pipe) -> int:
    """Bytes of the parameters and buffers of a pipeline's models (shared modules counted once)."""
    return sum(t.numel() * t.element_size() for t in _tensors(pipe))


@dataclass
class _Entry:
    pipes: dict = field(default_factory=dict)  # task -> pipeline, all sharing the same modules
    bytes: int = 0
    parked: bool = False  # moved to system RAM to make room on the device
    host: dict = field(default_factory=dict)  # id(tensor) -> [host copy, device data_ptr, checksum] (see _park)


class PipelineCache:
    """Pipelines within `device_budget_gb` on the compute device and `host_budget_gb` parked in system RAM."""

    def __init__(self, device_budget_gb: float | None = None, host_budget_gb: float | None = None):
        self.device_budget_gb, self.host_budget_gb = device_budget_gb, host_budget_gb
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()

    def get(self, key, task=None, device="auto", dtype="auto", registry: Registry | None = None, **load_kw):
        """The pipeline for a model and task (its own, by default), loading or un-parking it as needed."""
        reg = registry or default_registry()
        spec = reg.get(key)
        task = task or default_task(spec)
        check_task(spec, task, reg)
        device = pick_device(device)
        ident = (spec.key, id(reg), device, str(pick_dtype(spec, device, dtype)), load_kw.get("plan"))
        entry = self._entries.get(ident)
        if entry is None:
            # On a GPU, make room before loading (from the registry's size facts), not after an out-of-memory.
            incoming = int(footprint(spec).weights_gb * 2**30) if device.startswith("cuda") else 0
            self._make_room(device, incoming=incoming)
            pipe = load_pipeline(spec, task=task, device=device, dtype=dtype, registry=reg, **load_kw)
            entry = self._entries[ident] = _Entry({task: pipe}, module_bytes(pipe))
        self._entries.move_to_end(ident)
        if entry.parked:
            self._make_room(device, incoming=entry.bytes, keep=ident)
            _unpark(entry, device)
        if task not in entry.pipes:
            entry.pipes[task] = derive(next(iter(entry.pipes.values())), task)
        self._make_room(device, incoming=0, keep=ident)
        return entry.pipes[task]

    def _budget(self, device: str) -> tuple[float, float]:
        import psutil

        if self.device_budget_gb is not None:
            dev = self.device_budget_gb
        elif device.startswith("cuda"):
            dev = torch.cuda.get_device_properties(torch.device(device)).total_memory / 2**30 * 0.85
        else:  # CPU and MPS compute in system RAM
            dev = psutil.virtual_memory().total / 2**30 * 0.5
        host = self.host_budget_gb
        if host is None:
            host = psutil.virtual_memory().total / 2**30 * 0.4 if device.startswith("cuda") else 0.0
        return dev * 2**30, host * 2**30

    def _make_room(self, device: str, incoming: int, keep=None) -> None:
        """Park (or drop) least recently used models until the device budget holds `incoming` more bytes."""
        dev_budget, host_budget = self._budget(device)
        on_device = [i for i, e in self._entries.items() if not e.parked and i[2] == device]
        used = sum(self._entries[i].bytes for i in on_device)
        for ident in on_device:
            if used + incoming <= dev_budget:
                break
            if ident == keep:
                continue
            entry = self._entries[ident]
            held = sum(e.bytes for e in self._entries.values() if e.parked or e.host)  # host copies count too
            if device != "cpu" and held + (0 if entry.host else entry.bytes) <= host_budget and _movable(entry):
                _park(entry)
            else:
                self.evict(ident)
            used -= entry.bytes

    def evict(self, ident=None) -> None:
        """Drop one cached model (by key, or the internal id), or all of them."""
        if ident is None:
            self._entries.clear()
        elif isinstance(ident, tuple):
            self._entries.pop(ident, None)
        else:
            for i in [i for i in self._entries if i[0] == ident]:
                self._entries.pop(i)
        release()

    def keys(self) -> list[str]:
        return [i[0] for i in self._entries]

    def where(self, key: str) -> str | None:
        """'device', 'host' (parked in system RAM) or None."""
        for ident, entry in self._entries.items():
            if ident[0] == key:
                return "host" if entry.parked else "device"
        return None


def _movable(entry: _Entry) -> bool:
    policy = record(next(iter(entry.pipes.values()))).policy
    return policy is None or policy.name == "gpu"


def _tensors(pipe) -> list[torch.Tensor]:
    """The parameters and buffers of a pipeline's models, each once."""
    seen, out = set(), []
    for comp in pipe.components.values():
        if isinstance(comp, torch.nn.Module):
            for t in [*comp.parameters(), *comp.buffers()]:
                if id(t) not in seen:
                    seen.add(id(t))
                    out.append(t)
    return out


_INTS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _checksums(tensors: list[torch.Tensor]) -> list[int]:
    """An exact integer sum of each tensor's bits, computed where it lives, fetched in one transfer."""
    if not tensors:
        return []
    sums = [t.detach().view(_INTS[t.element_size()]).sum(dtype=torch.int64) for t in tensors]
    return torch.stack(sums).cpu().tolist()


def _park(entry: _Entry) -> None:
    """Move a pipeline's weights to system RAM (pinned on CUDA), reusing the copy from its last parking.

    A model parked once keeps its host copy while it works on the device: parking it again only checks that
    each tensor is unchanged (same storage, same bits: a fused LoRA or a float32 VAE are copied anew) and frees
    the device memory, instead of copying gigabytes back. What moves back to the GPU comes from pinned memory.
    """
    pipe = next(iter(entry.pipes.values()))
    tensors = _tensors(pipe)
    kept = [entry.host.get(id(t)) for t in tensors]
    sums = iter(_checksums([t for t, k in zip(tensors, kept, strict=True) if k is not None]))
    pin = torch.cuda.is_available()
    for t, k in zip(tensors, kept, strict=True):
        total = next(sums) if k is not None else None
        if k is None or k[1] != t.data_ptr() or k[2] != total:
            host = t.data.to("cpu")
            k = entry.host[id(t)] = [host.pin_memory() if pin else host, None, None]
        t.data = k[0]
    entry.parked = True


def _unpark(entry: _Entry, device: str) -> None:
    """Move a parked pipeline back to the device, remembering what each tensor was so `_park` can reuse it."""
    pipe = next(iter(entry.pipes.values()))
    tensors = _tensors(pipe)
    for t in tensors:
        t.data = t.data.to(device, non_blocking=True)
    for t, total in zip(tensors, _checksums(tensors), strict=True):
        if id(t) in entry.host:
            entry.host[id(t)][1:] = [t.data_ptr(), total]
    entry.parked = False


def release() -> None:
    """Collect garbage and hand cached allocator memory back to the device."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if torch.backends.mps.is_available():
        torch.mps.empty_cache()


CACHE = PipelineCache()


def get_pipeline(key, task: str | None = None, device: str = "auto", dtype="auto", registry=None, **load_kw):
    """A pipeline from the shared cache (see `PipelineCache.get`)."""
    return CACHE.get(key, task, device, dtype, registry, **load_kw)


def free() -> None:
    """Drop every cached pipeline, and the loaded upscaler, and return the memory."""
    CACHE.evict()
    upscale.free()  # a few GB of its own, kept outside this cache
    try:
        torch._dynamo.reset()  # compiled graphs hold references to the modules they were traced from
    except Exception:  # noqa: BLE001 - dynamo may be unavailable on some builds; nothing was compiled then
        pass
    release()
