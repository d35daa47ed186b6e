"""The one smoke switch. With `SDZOO_SMOKE=1` (set by the test suite), notebooks shrink their work (steps,
sizes, counts) so that they run on a CPU in seconds against the offline hub. Unset, nothing changes: the
same notebooks run at full fidelity on a GPU. This module is the only place the switch is read.

>>> STEPS, SIZE, SEEDS = helpers.smoke.shrink(steps=30, size=1024, seeds=[1, 2, 3, 4])
>>> # (30, 1024, [1, 2, 3, 4]) normally; (4, 64, [1, 2]) in CI
"""

from __future__ import annotations

import os

from .images import parse_size

ENV = "SDZOO_SMOKE"
MAX_STEPS, SIDE, MAX_ITEMS = 4, 64, 2  # 4 steps: an edit at strength 0.3 still runs one


def enabled() -> bool:
    return os.environ.get(ENV, "").strip().lower() not in ("", "0", "false", "no")


def _size(value):
    if value is None or isinstance(value, int):
        return SIDE
    w, h = parse_size(value)
    scale = SIDE / min(w, h)
    return f"{max(16, round(w * scale / 16) * 16)}x{max(16, round(h * scale / 16) * 16)}"


def _shrink_one(name: str, value):
    """Shrink by what the name says: anything with 'step' is a step count, with 'size' a size, else counts."""
    if isinstance(value, (list, tuple)):
        return type(value)(_shrink_one(name, v) for v in value[:MAX_ITEMS])
    if "step" in name:
        return MAX_STEPS if value is None else min(value, MAX_STEPS)
    if "size" in name or name in ("height", "width"):
        return _size(value)
    if name in ("num_images", "count", "repeats"):
        return min(value, MAX_ITEMS)
    return value


def shrink(**values):
    """The values, shrunk when the smoke switch is on: steps to 4, sizes to 64 px, lists to 2 items."""
    out = tuple(_shrink_one(k, v) for k, v in values.items()) if enabled() else tuple(values.values())
    return out[0] if len(out) == 1 else out


def cap(value, limit):
    """`value`, or at most `limit` when the smoke switch is on: for work a notebook's asserted claims need more of
    than `shrink` leaves (training a model from scratch: 4 steps would teach it nothing to check)."""
    return min(value, limit) if enabled() else value
