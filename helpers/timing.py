"""Where the time and memory of one pipeline call go: text encoding, denoising, decoding; peak memory.

Hooks on the text encoders and a wrapper of `vae.decode` are added for one call and removed after it.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@contextmanager
def timed(pipe):
    """Time text encoding, denoising and decoding of one pipeline call with hooks, removed afterwards."""
    t = {"text_encoding": 0.0, "denoising": 0.0, "decoding": 0.0, "total": 0.0}
    marks = {"text_end": None, "decode_start": None}
    dev, handles, starts = pipe.device, [], {}

    def pre(module, *args, **kwargs):
        sync(dev)
        starts[id(module)] = time.perf_counter()

    def post(module, *args, **kwargs):
        sync(dev)
        now = time.perf_counter()
        t["text_encoding"] += now - starts.pop(id(module), now)
        marks["text_end"] = now

    for name in ("text_encoder", "text_encoder_2", "text_encoder_3"):
        enc = getattr(pipe, name, None)
        if isinstance(enc, torch.nn.Module):
            handles += [enc.register_forward_pre_hook(pre), enc.register_forward_hook(post)]
    vae = pipe.vae
    decode = vae.decode

    def timed_decode(z, *args, **kwargs):
        sync(dev)
        start = time.perf_counter()
        marks["decode_start"] = marks["decode_start"] or start
        out = decode(z.to(vae.dtype), *args, **kwargs)  # an upcast VAE takes the half-precision latents too
        sync(dev)
        t["decoding"] += time.perf_counter() - start
        return out

    vae.decode = timed_decode  # an instance attribute, deleted below: the class method is untouched
    sync(dev)
    begin = time.perf_counter()
    try:
        yield t
    finally:
        sync(dev)
        end = time.perf_counter()
        del vae.decode
        for h in handles:
            h.remove()
    t["total"] = end - begin
    start = marks["text_end"] or begin
    t["denoising"] = max(0.0, (marks["decode_start"] or end) - start)


def reset_peak(device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    if device.type == "mps":
        return torch.mps.driver_allocated_memory() / 2**30
    return None
