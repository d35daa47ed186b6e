"""Where the time of one pipeline call goes: text encoding, denoising, decoding.

Hooks on the text encoders and a pass-through wrapper of `vae.decode` are added for one call and removed after
it. They only read the clock (and keep a reference to the latents the pipeline decodes, so that an overflowing
decode can be redone without rerunning the denoiser): the arithmetic is exactly the pipeline's own.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from .devices import synchronize


@dataclass
class Stopwatch:
    """Seconds of one call (text_encoding, denoising, decoding, total) and the latents its VAE decoded."""

    seconds: dict = field(
        default_factory=lambda: dict.fromkeys(("text_encoding", "denoising", "decoding", "total"), 0.0)
    )
    decoded: list = field(default_factory=list)  # the latents given to vae.decode, as given


@contextmanager
def timed(pipe):
    """Time text encoding, denoising and decoding of one pipeline call with hooks, removed afterwards."""
    watch = Stopwatch()
    t = watch.seconds
    marks = {"text_end": None, "decode_start": None}
    dev, handles, starts = pipe.device, [], {}

    def pre(module, *args, **kwargs):
        synchronize(dev)
        starts[id(module)] = time.perf_counter()

    def post(module, *args, **kwargs):
        synchronize(dev)
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
        synchronize(dev)
        start = time.perf_counter()
        marks["decode_start"] = marks["decode_start"] or start
        watch.decoded.append(z)
        out = decode(z, *args, **kwargs)
        synchronize(dev)
        t["decoding"] += time.perf_counter() - start
        return out

    vae.decode = timed_decode  # an instance attribute, deleted below: the class method is untouched
    synchronize(dev)
    begin = time.perf_counter()
    try:
        yield watch
    finally:
        synchronize(dev)
        end = time.perf_counter()
        del vae.decode
        for h in handles:
            h.remove()
    t["total"] = end - begin
    start = marks["text_end"] or begin
    t["denoising"] = max(0.0, (marks["decode_start"] or end) - start)
