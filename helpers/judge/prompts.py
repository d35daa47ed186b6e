"""Prompt suites to compare models on: PartiPrompts (Yu et al. 2022), shipped in `helpers/data/partiprompts/`.

1,632 prompts in 12 categories (Animals, Artifacts, People, World Knowledge, ...) and 11 challenges (Basic,
Fine-grained Detail, Writing & Symbols, ...), Apache-2.0, Copyright Google LLC (see the folder's NOTICE).

>>> suite = parti_prompts(per_category=2, categories=["Animals", "Vehicles"])
>>> suite[0]
{'prompt': ..., 'category': 'Animals', 'challenge': ...}
"""

from __future__ import annotations

import csv
import functools
import random
from pathlib import Path

from ..base.errors import ZooError

PARTI = Path(__file__).resolve().parents[1] / "data" / "partiprompts" / "PartiPrompts.tsv"


@functools.cache
def _rows() -> tuple[dict, ...]:
    with PARTI.open(encoding="utf-8", newline="") as f:
        return tuple(
            {"prompt": r["Prompt"], "category": r["Category"], "challenge": r["Challenge"]}
            for r in csv.DictReader(f, delimiter="\t")
        )


def parti_categories() -> list[str]:
    """PartiPrompts' categories, in the file's order."""
    return list(dict.fromkeys(r["category"] for r in _rows()))


def parti_challenges() -> list[str]:
    return list(dict.fromkeys(r["challenge"] for r in _rows()))


def parti_prompts(per_category: int | None = None, categories=None, challenge=None, seed: int = 0) -> list[dict]:
    """`per_category` prompts drawn from each category (all if None), the same ones for the same seed."""
    known = parti_categories()
    wanted = known if categories is None else [categories] if isinstance(categories, str) else list(categories)
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise ZooError(f"PartiPrompts has no category {unknown}; it has {sorted(known)}")
    out = []
    for category in wanted:
        rows = [r for r in _rows() if r["category"] == category and challenge in (None, r["challenge"])]
        if per_category is not None and per_category < len(rows):
            picked = set(random.Random(f"{seed}:{category}").sample(range(len(rows)), per_category))
            rows = [r for i, r in enumerate(rows) if i in picked]  # file order, so a larger draw reads the same
        out.extend(dict(r) for r in rows)
    return out
