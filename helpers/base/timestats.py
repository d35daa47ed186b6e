"""Honest cost figures: the median and spread of measured seconds, rounded to what the spread supports.

>>> s = spread([0.101, 0.098, 0.104, 0.350])
>>> s.median, s.low, s.high, s.noisy        # the spread is over twice the median: too wide to rank by
(0.1025, 0.098, 0.35, True)
>>> round_to(7.379589, 0.2), round_sig(0.123456)
(7.4, 0.12)

A table of costs reads sweep manifest rows (`cost_columns`): the load, the first call (warm-up: kernels picked,
memory allocated, graphs compiled) and the steady state are separate columns, and what was not measured (GPU
memory on a CPU) is left out rather than shown as None.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# A spread (highest minus lowest) above this fraction of the median is too wide to rank models by: the
# machine was busy, or something else ran during those calls. Rerun before trusting the order.
NOISY = 0.25


@dataclass(frozen=True)
class Spread:
    """The median of some measurements, their lowest and highest, and how many there were."""

    median: float
    low: float
    high: float
    n: int

    @property
    def width(self) -> float:
        return self.high - self.low

    @property
    def relative(self) -> float:
        """The spread as a fraction of the median (0 when the median is 0)."""
        return self.width / self.median if self.median else 0.0

    @property
    def noisy(self) -> bool:
        """Whether the spread is too wide to rank by (`NOISY`); never for a single measurement."""
        return self.n > 1 and self.relative > NOISY


def spread(values) -> Spread | None:
    """Median, lowest and highest of the values that are not None; None when there are none."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    return Spread(statistics.median(values), min(values), max(values), len(values))


def round_sig(value: float | None, digits: int = 2) -> float | None:
    """`value` to `digits` significant figures (a single measurement supports no more than two)."""
    if value is None or value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def round_to(value: float | None, width: float | None) -> float | None:
    """`value` rounded at the leading digit of its spread `width`: two to four significant figures."""
    if value is None or value == 0 or not math.isfinite(value):
        return value
    magnitude = math.floor(math.log10(abs(value)))
    if not width:
        return round_sig(value, 2)
    decimals = -math.floor(math.log10(width))
    decimals = min(max(decimals, 1 - magnitude), 3 - magnitude)  # at least 2, at most 4 significant figures
    return round(value, decimals)


def cost_columns(rows: list[dict]) -> dict:
    """One group's costs from sweep manifest rows: load, warm-up, median and spread per image, it/s, memory.

    Rounded; a figure that was not measured is left out. `timing_note` flags a spread too wide to rank by.
    """
    ok = [r for r in rows if r.get("status") == "ok"]
    out = {}
    load = next((r["load_s"] for r in rows if r.get("load_s") is not None), None)
    warm = next((r["warmup_s"] for r in rows if r.get("warmup_s") is not None), None)
    if load is not None:
        out["load_s"] = round_sig(load)
    if warm is not None:
        out["warmup_s"] = round_sig(warm)
    seconds = spread(r["timings"].get("total") for r in ok)
    if seconds:
        out["s_per_image"] = round_to(seconds.median, seconds.width)
        if seconds.n > 1:
            out["s_per_image_spread"] = round_sig(seconds.width, 1) if seconds.width else 0.0
    rates = spread(r["timings"].get("steps_per_s") for r in ok)
    if rates:
        out["it_per_s"] = round_to(rates.median, rates.width)
    peaks = [r["peak_memory_gb"] for r in ok if r.get("peak_memory_gb") is not None]
    if peaks:
        out["peak_memory_gb"] = round(max(peaks), 1)
    if seconds and seconds.noisy:
        out["timing_note"] = f"spread {seconds.relative:.0%} of the median: too wide to rank by, rerun"
    elif seconds:
        out["timing_note"] = ""
    return out


def cost_table(rows: list[dict], by: str = "model"):
    """One row per value of the parameter `by` (a DataFrame indexed by it): images, failures, `cost_columns`."""
    import pandas as pd

    groups = {}
    for r in rows:
        groups.setdefault(r["params"][by], []).append(r)
    out = []
    for value, group in groups.items():
        ok = sum(r.get("status") == "ok" for r in group)
        out.append({by: value, "images": ok, "failed": len(group) - ok, **cost_columns(group)})
    table = pd.DataFrame(out).set_index(by)
    if not table["failed"].any():
        table = table.drop(columns="failed")
    return table.dropna(axis=1, how="all")


def run_table(rows: list[dict]):
    """One row per cell: the parameters that vary, status, seconds and it/s (two significant figures), memory.

    Columns of figures nobody measured (GPU memory on a CPU) and of errors that did not happen are left out.
    """
    import pandas as pd

    params = [r["params"] for r in rows]
    names = list(dict.fromkeys(k for p in params for k in p))
    varying = [k for k in names if len({repr(p.get(k)) for p in params}) > 1]
    out = []
    for r in rows:
        t = r.get("timings") or {}
        line = {k: r["params"].get(k) for k in varying} | {"status": r["status"]}
        line |= {"s_per_image": round_sig(t.get("total")), "it_per_s": round_sig(t.get("steps_per_s"))}
        line |= {"peak_memory_gb": round(r["peak_memory_gb"], 1) if r.get("peak_memory_gb") is not None else None}
        line |= {"error": r.get("error"), "path": r.get("path")}
        out.append(line)
    return pd.DataFrame(out).dropna(axis=1, how="all")


READABLE = {
    "load_s": "load (s)",
    "warmup_s": "first call, warm-up (s)",
    "s_per_image": "s / image (median)",
    "s_per_image_spread": "spread, highest − lowest (s)",
    "it_per_s": "steps / s (median)",
    "peak_memory_gb": "peak GPU memory (GB)",
    "timing_note": "note",
    "guidance_scale": "guidance",
    "scheduler": "sampler",
    "num_inference_steps": "steps",
}


def readable(table):
    """A cost table for people: the columns named in words with their units, the index (models) unnamed.

    An unnamed index adds no header row of its own (pandas draws a named one as a row with nothing else in it).
    """
    return table.rename(columns=READABLE).rename_axis(None)
