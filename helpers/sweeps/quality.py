"""Quality measured, not assumed: quantized plans against full precision on the same prompts and seeds.

Each plan (`helpers.run.plan`) draws every prompt under every seed; the zoo's judges score the images: CLIP score
and PickScore against the prompt, and DINO similarity to the full-precision image of the same prompt and seed (1.0:
the same picture). The pixel difference says how far each image moved, in 0-255 levels.

>>> result = quality("flux-dev", ["nf4", "gguf-q4_k_s"], ["a lighthouse at dusk"], seeds=[1, 2])
>>> result.table        # one row per plan: the judges' means, similarity to full precision, seconds per image
>>> result.grid         # plans (rows) by prompts and seeds (columns)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..base.grids import image_grid
from ..judge import metricmath, metrics
from ..run.cache import free
from ..run.generate import generate
from .compare import column_labels

JUDGES = {"clip": "clip-vit-l-14", "pickscore": "pickscore", "dino": "dinov2-base"}


@dataclass
class QualityResult:
    model: str
    plans: list[str]  # the reference first
    prompts: list[str]
    seeds: list[int]
    images: dict  # plan -> images, prompts under seeds in `column_labels` order
    table: object  # a pandas DataFrame, one row per plan

    @property
    def grid(self) -> Image.Image:
        """Plans (rows) by prompts and seeds (columns), in one labelled image."""
        rows = [list(self.images[p]) for p in self.plans]
        return image_grid(rows, col_labels=column_labels(self.prompts, self.seeds), row_labels=self.plans)


def quality(model: str, plans: list[str], prompts: list[str], seeds=(0,), reference: str = "full",
            out: str | Path | None = None, device: str = "auto", **generate_kwargs) -> QualityResult:  # fmt: skip
    """Run `plans` and the `reference` plan of `model` on the same prompts and seeds; score them; write the table
    (markdown and CSV) to `out` when given. `generate_kwargs` go to every `generate` call (steps, size, ...)."""
    import pandas as pd

    order = [reference, *[p for p in plans if p != reference]]
    images, seconds = {}, {}
    for plan_key in order:
        free()  # one plan's pipeline at a time: plans of a big model do not fit together
        images[plan_key], start = [], time.perf_counter()
        for seed in seeds:
            for prompt in prompts:
                r = generate(model, prompt=prompt, seed=seed, plan=plan_key, device=device, **generate_kwargs)
                images[plan_key].append(r.images[0])
        seconds[plan_key] = (time.perf_counter() - start) / max(len(images[plan_key]), 1)
    free()
    texts = [p for _ in seeds for p in prompts]
    ref = images[reference]
    dino = metrics.judge(JUDGES["dino"])
    ref_emb = metrics.image_embeddings(dino, ref)
    rows = []
    for plan_key in order:
        ims = images[plan_key]
        similar = metricmath.row_cosines(metrics.image_embeddings(dino, ims), ref_emb)
        pixels = [np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean()
                  for a, b in zip(ims, ref, strict=True)]  # fmt: skip
        rows.append({
            "plan": plan_key,
            "CLIP score": float(np.mean(metrics.clip_score(ims, texts, evaluator=JUDGES["clip"]))),
            "PickScore": float(np.mean(metrics.preference_score(ims, texts, evaluator=JUDGES["pickscore"]))),
            f"DINO similarity to {reference}": float(np.mean(similar)),
            f"pixel difference to {reference}": float(np.mean(pixels)),
            "s/image": seconds[plan_key],
            "images": len(ims),
        })  # fmt: skip
    table = pd.DataFrame(rows).set_index("plan")
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / f"quality-{model}.csv")
        (out / f"quality-{model}.md").write_text(_markdown(table))
    return QualityResult(model, order, list(prompts), list(seeds), images, table)


def _markdown(table) -> str:
    head = ["plan", *table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for plan_key, row in table.iterrows():
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row]
        lines.append(f"| {plan_key} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["quality", "QualityResult"]
