"""Load once, reuse: loaded pipelines kept within a memory budget, least recently used evicted first.

Keyed by model, dtype and device; other tasks of a model (img2img, inpainting) are derived with `from_pipe`
and share its weights. Evicting a model moves it to system RAM when the host budget allows (moving back is
fast, from pinned memory on CUDA), else drops it; `free()` drops everything. Nothing else here keeps a
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

from .loading import TASK_PIPELINES, check_task, load_pipeline, pick_device, pick_dtype
from .registry import Registry
from .registry import default as default_registry


def module_bytes(pipe) -> int:
    """Bytes of the parameters and buffers of a pipeline's models (shared modules counted once)."""
    seen, total = set(), 0
    for comp in pipe.components.values():
        if isinstance(comp, torch.nn.Module):
            for t in [*comp.parameters(), *comp.buffers()]:
                if id(t) not in seen:
                    seen.add(id(t))
                    total += t.numel() * t.element_size()
    return total


@dataclass
class _Entry:
    pipes: dict = field(default_factory=dict)  # task -> pipeline, all sharing the same modules
    bytes: int = 0
    parked: bool = False  # moved to system RAM to make room on the device


class PipelineCache:
    """Pipelines within `device_budget_gb` on the compute device and `host_budget_gb` parked in system RAM."""

    def __init__(self, device_budget_gb: float | None = None, host_budget_gb: float | None = None):
        self.device_budget_gb, self.host_budget_gb = device_budget_gb, host_budget_gb
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()

    def get(self, key, task="text2img", device="auto", dtype="auto", registry: Registry | None = None, **load_kw):
        """The pipeline for a model and task, loading or un-parking it as needed."""
        reg = registry or default_registry()
        spec = reg.get(key)
        check_task(spec, task, reg)
        device = pick_device(device)
        ident = (spec.key, id(reg), device, str(pick_dtype(spec, device, dtype)))
        entry = self._entries.get(ident)
        if entry is None:
            # On a GPU, make room before loading (from the registry's size facts), not after an out-of-memory.
            from .memory import footprint

            incoming = int(footprint(spec).weights_gb * 2**30) if device.startswith("cuda") else 0
            self._make_room(device, incoming=incoming)
            pipe = load_pipeline(spec, task=task, device=device, dtype=dtype, registry=reg, **load_kw)
            entry = self._entries[ident] = _Entry({task: pipe}, module_bytes(pipe))
        self._entries.move_to_end(ident)
        if entry.parked:
            self._make_room(device, incoming=entry.bytes, keep=ident)
            next(iter(entry.pipes.values())).to(device)
            entry.parked = False
        if task not in entry.pipes:
            pipe = TASK_PIPELINES[task].from_pipe(next(iter(entry.pipes.values())))
            pipe.zoo_spec, pipe.zoo_default_scheduler = spec, pipe.scheduler
            entry.pipes[task] = pipe
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
            parked = sum(e.bytes for e in self._entries.values() if e.parked)
            if device != "cpu" and parked + entry.bytes <= host_budget and _movable(entry):
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
    pipe = next(iter(entry.pipes.values()))
    return getattr(pipe, "zoo_policy", None) is None or pipe.zoo_policy.name == "gpu"


def _park(entry: _Entry) -> None:
    pipe = next(iter(entry.pipes.values()))
    pipe.to("cpu")
    if torch.cuda.is_available():  # page-locked host memory copies back to the GPU several times faster
        for comp in pipe.components.values():
            if isinstance(comp, torch.nn.Module):
                for p in [*comp.parameters(), *comp.buffers()]:
                    p.data = p.data.pin_memory()
    entry.parked = True


def release() -> None:
    """Collect garbage and hand cached allocator memory back to the device."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if torch.backends.mps.is_available():
        torch.mps.empty_cache()


CACHE = PipelineCache()


def get_pipeline(key, task: str = "text2img", device: str = "auto", dtype="auto", registry=None, **load_kw):
    """A pipeline from the shared cache (see `PipelineCache.get`)."""
    return CACHE.get(key, task, device, dtype, registry, **load_kw)


def free() -> None:
    """Drop every cached pipeline and return the memory."""
    CACHE.evict()
    try:
        torch._dynamo.reset()  # compiled graphs hold references to the modules they were traced from
    except Exception:  # noqa: BLE001 - dynamo may be unavailable on some builds; nothing was compiled then
        pass
    release()
