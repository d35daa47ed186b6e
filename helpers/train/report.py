"""Was it worth it? The base model against the fine-tune on held-out prompts with the same seeds.

Prompt following is the CLIP score (`helpers.judge.metrics.clip_score`); for a subject (DreamBooth, textual
inversion) the images are also compared with the instance images (DINOv2 similarity, as in the DreamBooth
paper, or CLIP-I with `evaluator="clip-vit-l-14"`).

>>> cmp = compare_to_base("my-dog", ["a sks dog on the beach", "a sks dog in the snow"], seeds=[1, 2])
>>> cmp.grid, cmp.table, cmp.summary   # base | fine-tune side by side; per image and mean scores
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..base import adapters as trainexport
from ..base.errors import ZooError
from ..base.grids import image_grid
from ..base.records import read_record
from ..judge import metrics
from ..run import styles
from ..run.cache import get_pipeline
from ..run.generate import generate
from . import data as traindata


@dataclass
class Comparison:
    grid: Image.Image
    table: object  # a pandas DataFrame: prompt, seed, and each score for base and fine-tune
    summary: dict  # mean of each score column
    base: list[Image.Image]
    tuned: list[Image.Image]


def compare_to_base(
    name: str,
    prompts: list[str],
    seeds: list[int] = (1, 2),
    instance_images: str | Path | None = None,
    similarity_evaluator: str = "dinov2-base",
    clip_evaluator: str = "clip-vit-l-14",
    device: str = "auto",
    **generate_kwargs,
) -> Comparison:
    """Images of the base model and of the trained adapter `name` (same prompts and seeds), scored.

    For a textual-inversion embedding the base model gets the prompt with the token replaced by its initial
    word, and every CLIP score reads that readable prompt. Other keyword arguments go to `generate`.
    """
    import pandas as pd

    meta = trainexport.metadata(name)
    pipe = get_pipeline(meta["base_model"], device=device)
    token, word = meta.get("token"), meta.get("hyperparameters", {}).get("init_word", "")
    if token and token not in pipe.tokenizer.get_vocab():
        styles.load_embedding(pipe, name)
    readable = [p.replace(token, word) if token else p for p in prompts]
    base, tuned, rows = [], [], []
    for prompt, plain in zip(prompts, readable, strict=True):
        b = generate(pipe, plain if token else prompt, seeds=list(seeds), loras={}, **generate_kwargs)
        t = generate(pipe, prompt, seeds=list(seeds), loras={} if token else {name: 1.0}, **generate_kwargs)
        base += b.images
        tuned += t.images
        rows += [{"prompt": prompt, "seed": s} for s in seeds]
    scored = [p for p in readable for _ in seeds]
    table = pd.DataFrame(rows)
    table["clip_base"] = metrics.clip_score(base, scored, evaluator=clip_evaluator)
    table["clip_tuned"] = metrics.clip_score(tuned, scored, evaluator=clip_evaluator)
    folder = instance_images or (meta.get("hyperparameters", {}).get("images") if meta["kind"] != "lora" else None)
    if folder:
        refs = [i.image for i in traindata.load_folder(folder, 224, default_prompt="-")]
        table["similarity_base"] = metrics.image_similarity(base, refs, evaluator=similarity_evaluator)
        table["similarity_tuned"] = metrics.image_similarity(tuned, refs, evaluator=similarity_evaluator)
    summary = {c: float(table[c].mean()) for c in table.columns if c.startswith(("clip", "similarity"))}
    cells = [[b, t] for b, t in zip(base, tuned, strict=True)]
    labels = [f"{r['prompt'][:40]} (seed {r['seed']})" for r in rows]
    base_label = f"base {meta['base_model']} (CLIP {summary['clip_base']:.1f})"
    cols = [base_label, f"{name} (CLIP {summary['clip_tuned']:.1f})"]
    grid = image_grid(cells, col_labels=cols, row_labels=labels, title="was it worth it? same prompts, same seeds")
    return Comparison(grid, table, summary, base, tuned)


def language_drift(name: str, evaluator: str = "dinov2-base") -> dict:
    """How far the class prompt moved towards the subject: no new images needed.

    The base model's class images (made before training, DreamBooth's prior) against the last validation images
    of the class prompt (made with the adapter on), each scored by similarity to the instance images. A rise
    near 0 means no drift; a large one means the plain class word now draws your subject.
    """
    meta = trainexport.metadata(name)
    hp = meta.get("hyperparameters", {})
    out, class_prompt = trainexport.find(name).parent, hp.get("class_prompt")
    folders = sorted((out / "validation").glob("step-*"))
    last = [p for p in sorted(folders[-1].glob("*.png")) if read_record(p).prompt == class_prompt] if folders else []
    base = sorted((out / "class_images").glob("*.png"))
    if not (class_prompt and last and base):
        raise ZooError(f"'{name}': drift needs a DreamBooth run validated on its class prompt '{class_prompt}'")
    refs = [i.image for i in traindata.load_folder(hp["images"], 224, default_prompt="-")]
    before = metrics.image_similarity([Image.open(p) for p in base], refs, evaluator=evaluator)
    after = metrics.image_similarity([Image.open(p) for p in last], refs, evaluator=evaluator)
    b, a = sum(before) / len(before), sum(after) / len(after)
    return {"class_prompt": class_prompt, "similarity_before": b, "similarity_after": a, "drift": a - b}
