"""Blind A/B votes between models: the pairs to show, a vote log that survives a crash, a Bradley–Terry ranking.

>>> pairs = pairs_from_compare(comparison, seed=0)        # same prompt and seed, two models, a random side each
>>> append_vote("outputs/votes.jsonl", pairs[0], "left")  # one JSON line, on disk before this returns
>>> remaining(pairs, read_votes("outputs/votes.jsonl"))    # what is left after a restart
>>> ranking = rank(read_votes("outputs/votes.jsonl"))
>>> ranking.table, ranking.separated, ranking.verdict
>>> rank(simulate_votes(pairs, {"sd15": 0.0, "sdxl-turbo": 1.0}, n=300))   # a simulated rater, to see the maths

How votes count (Bradley–Terry, fitted with choix's I-LSR, Maystre & Grossglauser 2015):
- "left" / "right": a win for that side's model.
- "tie": half a win to each model (both images equally good).
- "both_bad": left out of the fit, since it says nothing about which is better; counted in the `both_bad` column.
Strengths are natural-log Bradley–Terry scores centred on 0: model A beats B with probability
1 / (1 + exp(B - A)). The intervals are percentiles of a bootstrap over votes.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import os
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..base.errors import ZooError
from ..base.records import read_record

VOTES = ("left", "right", "tie", "both_bad")


@dataclass(frozen=True)
class Pair:
    """Two images of the same prompt and seed, from two models, as they are shown: which model on which side."""

    id: str
    prompt: str
    seed: int
    left: str
    right: str
    left_image: Path
    right_image: Path


def pair_id(model_a: str, model_b: str, prompt: str, seed: int) -> str:
    """A stable name for a pair, whichever side each model is shown on."""
    a, b = sorted([model_a, model_b])
    return f"{a}~{b}~{seed}~{hashlib.sha1(prompt.encode()).hexdigest()[:10]}"


def make_pairs(images: list[tuple[str, str, int, Path]], seed: int = 0) -> list[Pair]:
    """Every two models on the same (prompt, seed), from `(model, prompt, seed, path)` rows, in a seeded random order.

    Each pair also gets a seeded random side: the same `seed` gives the same order and sides after a restart.
    """
    groups: dict[tuple[str, int], dict[str, Path]] = {}
    for model, prompt, image_seed, path in sorted(images, key=lambda r: (r[1], r[2], r[0], str(r[3]))):
        group = groups.setdefault((prompt, image_seed), {})
        if model in group:
            where = f"{model}, seed {image_seed}, '{prompt[:40]}'"
            warnings.warn(f"{where}: two images; {group[model]} is used", stacklevel=2)
            continue
        group[model] = Path(path)
    candidates = [
        (a, b, prompt, image_seed, group)
        for (prompt, image_seed), group in groups.items()
        for a, b in itertools.combinations(sorted(group), 2)
    ]
    rng = random.Random(seed)
    rng.shuffle(candidates)
    pairs = []
    for a, b, prompt, image_seed, group in candidates:
        left, right = (b, a) if rng.random() < 0.5 else (a, b)
        name = pair_id(a, b, prompt, image_seed)
        pairs.append(Pair(name, prompt, image_seed, left, right, group[left], group[right]))
    return pairs


def pairs_from_compare(result, seed: int = 0) -> list[Pair]:
    """The blind pairs of a `helpers.compare` result (its finished images)."""
    out_dir = Path(result.sweep.out_dir)
    rows = [r for r in result.sweep.rows if r["status"] == "ok"]
    images = [(r["params"]["model"], r["params"]["prompt"], int(r["params"]["seed"]), out_dir / r["path"])
              for r in rows]  # fmt: skip
    return make_pairs(images, seed=seed)


def pairs_from_folder(folder: str | Path, seed: int = 0) -> list[Pair]:
    """The blind pairs of a folder of PNGs that carry their recipes (same prompt and seed, different model)."""
    images = []
    for path in sorted(Path(folder).rglob("*.png")):
        try:
            record = read_record(path)
        except ZooError:
            continue  # grids and other PNGs without a recipe
        if record.model:
            images.append((record.model, record.prompt, record.seed, path))
    return make_pairs(images, seed=seed)


def append_vote(path: str | Path, pair: Pair, vote: str) -> dict:
    """Append one vote as a JSON line and fsync it, so that a crash or kernel restart right after loses nothing."""
    if vote not in VOTES:
        raise ZooError(f"vote '{vote}' is not one of {', '.join(VOTES)}")
    row = {"pair": pair.id, "left": pair.left, "right": pair.right, "prompt": pair.prompt, "seed": pair.seed,
           "vote": vote, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab+") as f:
        f.seek(0, os.SEEK_END)
        if f.tell():  # a line cut short by a crash stays on its own line, so this one is whole
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write((json.dumps(row, ensure_ascii=False) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())
    return row


def read_votes(path: str | Path) -> list[dict]:
    """The votes in a log, in order; an unreadable line (one cut short by a crash) is skipped with one warning."""
    path = Path(path)
    if not path.exists():
        return []
    votes, bad = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if row.get("vote") not in VOTES or not {"pair", "left", "right"} <= row.keys():
                raise ValueError
            votes.append(row)
        except ValueError:
            bad.append(number)
    if bad:
        warnings.warn(f"{path}: skipped {len(bad)} unreadable line(s) ({', '.join(map(str, bad[:5]))}), "
                      "most likely cut short by a crash; every other vote is kept", stacklevel=2)  # fmt: skip
    return votes


def remaining(pairs: list[Pair], votes: list[dict]) -> list[Pair]:
    """The pairs not voted on yet, in their order."""
    done = {v["pair"] for v in votes}
    return [p for p in pairs if p.id not in done]


def simulate_votes(pairs: list[Pair], strengths: dict[str, float], n: int, seed: int = 0) -> list[dict]:
    """`n` votes of a simulated rater who prefers A to B with probability 1 / (1 + exp(B - A)), cycling the pairs.

    For checks and teaching only: each vote is marked `"simulated": true`. Never let one stand in for a person's.
    """
    import math

    rng = random.Random(seed)
    out = []
    for k in range(n):
        pair = pairs[k % len(pairs)]
        p_left = 1 / (1 + math.exp(strengths[pair.right] - strengths[pair.left]))
        vote = "left" if rng.random() < p_left else "right"
        out.append({"pair": pair.id, "left": pair.left, "right": pair.right, "prompt": pair.prompt,
                    "seed": pair.seed, "vote": vote, "time": None, "simulated": True})  # fmt: skip
    return out


def comparisons(votes: list[dict]) -> list[tuple[str, str]]:
    """(winner, loser) rows for the fit: a decisive vote twice, a tie once each way (half a win each), both-bad not."""
    out = []
    for v in votes:
        if v["vote"] in ("left", "right"):
            winner, loser = (v["left"], v["right"]) if v["vote"] == "left" else (v["right"], v["left"])
            out += [(winner, loser), (winner, loser)]
        elif v["vote"] == "tie":
            out += [(v["left"], v["right"]), (v["right"], v["left"])]
    return out


def bradley_terry(rows: list[tuple[str, str]], models: list[str], alpha: float = 0.02) -> dict[str, float]:
    """Bradley–Terry log-strengths from (winner, loser) rows, centred on 0 (choix's I-LSR; `alpha` regularises).

    A model without comparisons gets NaN: nothing is known about it.
    """
    import choix
    import numpy as np

    seen = sorted({m for row in rows for m in row}, key=models.index)
    if len(seen) < 2:
        return {m: float("nan") for m in models}
    index = {m: i for i, m in enumerate(seen)}
    data = [(index[w], index[lo]) for w, lo in rows]
    # Every row is doubled (see `comparisons`), so alpha is too: the estimate is that of half-weight rows with `alpha`.
    params = choix.ilsr_pairwise(len(seen), data, alpha=2 * alpha, max_iter=1000)
    params = params - np.mean(params)
    return {m: float(params[index[m]]) if m in index else float("nan") for m in models}


@dataclass
class Ranking:
    """A Bradley–Terry ranking: `table` (best first), whether the intervals `separated`, and a sentence `verdict`."""

    table: object  # a pandas DataFrame indexed by model
    separated: bool
    verdict: str

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(self.verdict)}</p>" + self.table.to_html(float_format=lambda v: f"{v:.2f}")


def rank(votes: list[dict], n_boot: int = 500, seed: int = 0, level: float = 0.95, min_votes: int = 10,
         alpha: float = 0.02) -> Ranking:  # fmt: skip
    """Rank the models in `votes` by Bradley–Terry strength, with `level` bootstrap intervals over the votes.

    "separated": neighbouring models' intervals no longer overlap and every model has `min_votes` votes that count,
    so more votes would not change the order. Otherwise "keep voting", with the models whose intervals overlap.
    """
    import numpy as np
    import pandas as pd

    models = sorted({v["left"] for v in votes} | {v["right"] for v in votes})
    columns = ["strength", "low", "high", "wins", "losses", "ties", "both_bad", "votes"]
    if len(models) < 2:
        empty = pd.DataFrame(columns=columns, index=pd.Index(models, name="model"))
        return Ranking(empty, False, f"keep voting: {len(votes)} vote(s) so far, no two models compared yet")
    strength = bradley_terry(comparisons(votes), models, alpha)
    per_vote = [comparisons([v]) for v in votes]
    rng = np.random.default_rng(seed)
    draws = np.full((n_boot, len(models)), np.nan)
    for b in range(n_boot):
        sample = [row for i in rng.integers(0, len(votes), len(votes)) for row in per_vote[i]]
        try:
            fit = bradley_terry(sample, models, alpha)
        except RuntimeError:  # I-LSR did not converge on this resample; leave it out
            continue
        draws[b] = [fit[m] for m in models]
    tail = 100 * (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a model absent from every resample: NaN, as it should be
        low, high = np.nanpercentile(draws, tail, axis=0), np.nanpercentile(draws, 100 - tail, axis=0)
    rows = []
    for i, m in enumerate(models):
        won = sum(1 for v in votes if (v["vote"], m) in {("left", v["left"]), ("right", v["right"])})
        lost = sum(1 for v in votes if (v["vote"], m) in {("left", v["right"]), ("right", v["left"])})
        mine = [v for v in votes if m in (v["left"], v["right"])]
        ties = sum(1 for v in mine if v["vote"] == "tie")
        both_bad = sum(1 for v in mine if v["vote"] == "both_bad")
        rows.append([strength[m], low[i], high[i], won, lost, ties, both_bad, len(mine)])
    table = pd.DataFrame(rows, columns=columns, index=pd.Index(models, name="model"))
    table = table.sort_values("strength", ascending=False, na_position="last")
    separated, verdict = _verdict(table, level, min_votes)
    simulated = sum(1 for v in votes if v.get("simulated"))
    if simulated:
        verdict = f"SIMULATED ({simulated} of {len(votes)} votes from a simulated rater, not people). {verdict}"
    return Ranking(table, separated, verdict)


def _verdict(table, level: float, min_votes: int) -> tuple[bool, str]:
    few = [m for m, r in table.iterrows() if r["wins"] + r["losses"] + r["ties"] < min_votes]
    if few:
        return False, f"keep voting: {', '.join(few)} {'has' if len(few) == 1 else 'have'} fewer than {min_votes} votes"
    names = list(table.index)
    overlaps = [f"{a} and {b}" for a, b in itertools.pairwise(names) if table.at[a, "low"] <= table.at[b, "high"]]
    if overlaps:
        return False, f"keep voting: the {level:.0%} intervals of {'; '.join(overlaps)} overlap"
    order = " > ".join(names)
    return True, f"separated: {order}; the {level:.0%} intervals no longer overlap, more votes would not reorder them"


def votes_to_separate(pairs: list[Pair], strengths: dict[str, float], counts=(50, 100, 200, 400, 800, 1600),
                      seed: int = 0, n_boot: int = 200) -> int | None:  # fmt: skip
    """The fewest of `counts` simulated votes after which `rank` calls `strengths` separated; None if none suffices.

    >>> votes_to_separate(pairs, {"sd15": 0.0, "sdxl-turbo": 1.0})   # a gap of 1 point: fewer votes than 0.3
    """
    for n in counts:
        if rank(simulate_votes(pairs, strengths, n=n, seed=seed), n_boot=n_boot, seed=seed).separated:
            return n
    return None
