"""Judging images: CLIP score, PickScore, DINO similarity, FID, KID, FD-DINOv2 and the Inception score.

>>> from helpers.judge import metrics
>>> metrics.clip_score(images, prompts)                    # per image, 100 * max(cos, 0), CLIP ViT-L/14
>>> metrics.preference_score(images, prompts)              # per image, PickScore (predicts what people prefer)
>>> metrics.image_similarity(images, references)           # per image, mean DINOv2 cosine to the references
>>> metrics.fid(images, references).value                  # a SetScore: value, std, n, and how it was computed

Choices (issue 15): every judging network is an `evaluators` entry of `models.yaml`, loaded with transformers
(CLIPModel, Dinov2Model) or, for the FID Inception-v3, `helpers.judge.inception` (pytorch-fid's FID blocks written
out, so that the zoo needs no torchvision; tested against torch-fidelity's on the same random weights).
torchmetrics' CLIPScore crashes on transformers 5 (torchmetrics#3407), so CLIP score is computed here from
CLIPModel's own embeddings. FID/KID/IS images are resized as clean-fid does (PIL bicubic, antialiased, 299 px);
the formulas are in `helpers.judge.metricmath`. Every set-level number carries its extractor, resize and
implementation (`SetScore`). On CUDA the judges run in float16, except the FID network (float32, as the
reference implementations; `dtype=torch.float16` for speed).
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..base import quiet
from ..base.devices import pick_device
from ..base.errors import ZooError
from ..zoo.registry import default as default_registry
from . import inception, metricmath

MIN_IMAGES = 2048  # below this FID is biased upwards and unstable (Chong & Forsyth 2020; clean-fid's advice)
PER_IMAGE = {  # name -> (evaluator, needs): each image gets a number
    "clip": ("clip-vit-l-14", "prompts"),
    "clip-b16": ("clip-vit-b-16", "prompts"),
    "pickscore": ("pickscore", "prompts"),
    "dino": ("dinov2-base", "references"),
    "clip-i": ("clip-vit-l-14", "references"),
}
PER_SET = {"fid": "references", "kid": "references", "fd-dinov2": "references", "is": None}  # one number a set
# The fewest images a set metric is defined for, in each set: a Gaussian's covariance needs 2; KID's subsets hold half
# the smaller set and at least 2 (helpers.judge.metricmath.kid_subset_size).
MIN_SET = {"fid": 2, "fd-dinov2": 2, "kid": 4, "is": 1}
METRICS = [*PER_IMAGE, *PER_SET]


@dataclass(frozen=True)
class SetScore:
    """A number about a whole image set, with everything needed to compare it with another one."""

    metric: str
    value: float
    std: float | None
    n: int
    n_reference: int | None
    extractor: str
    resize: str
    implementation: str
    warning: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Judge:
    spec: object
    model: torch.nn.Module
    processor: object
    device: str
    dtype: torch.dtype


# --- loading the judges -----------------------------------------------------------------------------------------


def _device_and_dtype(key: str, device, dtype) -> tuple[str, torch.dtype]:
    """float16 on CUDA, except the FID network: float32, as the reference implementations compute FID."""
    dev = pick_device(device or "auto")  # None and "auto": cuda, then mps, then cpu
    if dtype is not None:
        return dev, dtype
    return dev, torch.float16 if dev.startswith("cuda") and key != "fid-inception" else torch.float32


@functools.cache
def _load(key: str, device: str, dtype: torch.dtype) -> Judge:
    spec = default_registry().evaluator(key)
    try:
        with quiet.loading():  # no "Loading weights" bars: the scoring bar says what runs
            model, processor = _load_network(spec, dtype)
    except OSError as e:
        source = spec.url or f"https://huggingface.co/{spec.repo} (revision {spec.revision})"
        raise ZooError(
            f"evaluator '{key}' could not be loaded from {source}: {e}. It downloads once with network; offline "
            "(HF_HUB_OFFLINE=1) it must be in the cache already: run the same call once with network."
        ) from None
    return Judge(spec, model.to(device, dtype).eval(), processor, device, dtype)


def _load_network(spec, dtype: torch.dtype):
    """(model, processor) of an evaluator entry."""
    if spec.kind == "inception":
        return _load_inception(spec), None
    if spec.kind == "dinov2":
        from transformers import AutoImageProcessor, Dinov2Model

        model = Dinov2Model.from_pretrained(spec.repo, revision=spec.revision, dtype=dtype)
        return model, AutoImageProcessor.from_pretrained(spec.repo, revision=spec.revision)
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(spec.repo, revision=spec.revision, dtype=dtype)
    where = (spec.processor, spec.processor_revision) if spec.processor else (spec.repo, spec.revision)
    return model, CLIPProcessor.from_pretrained(where[0], revision=where[1])


def _load_inception(spec) -> inception.FIDInceptionV3:
    """pytorch-fid's weights through torch.hub: the hash is checked on download, the cached copy is trusted."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / spec.file
    if not cached.exists() and os.environ.get("HF_HUB_OFFLINE", "").strip() not in ("", "0"):
        raise OSError(f"not cached at {cached}, and HF_HUB_OFFLINE is set; download {spec.url} to that path")
    state = torch.hub.load_state_dict_from_url(spec.url, map_location="cpu", check_hash=True, file_name=spec.file)
    return inception.load_weights(inception.FIDInceptionV3(), state)


def judge(key: str, device=None, dtype: torch.dtype | None = None) -> Judge:
    """The loaded evaluator `key` of the registry (loaded once per device and dtype)."""
    return _load(key, *_device_and_dtype(key, device, dtype))


def free() -> None:
    """Forget every loaded evaluator (their memory is freed when nothing else holds them)."""
    _load.cache_clear()


# --- inputs -----------------------------------------------------------------------------------------------------


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def _expand(item) -> list:
    """A folder stands for the images in it (PNG, JPEG, WebP), sorted by name."""
    if isinstance(item, (str, Path)) and Path(item).is_dir():
        found = sorted(p for p in Path(item).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise ZooError(f"{item}: no images (PNG, JPEG or WebP) in this folder")
        return found
    return [item]


def as_images(items) -> list[Image.Image]:
    """PIL images from images, paths or folders of images (one image, path or folder is a list of one)."""
    items = [items] if isinstance(items, (str, Path, Image.Image)) else list(items)
    items = [path for item in items for path in _expand(item)]
    out = []
    for item in items:
        if isinstance(item, Image.Image):
            out.append(item.convert("RGB"))
            continue
        try:
            with Image.open(item) as im:
                out.append(im.convert("RGB"))
        except OSError as e:
            raise ZooError(f"{item}: cannot read it as an image ({e})") from None
    if not out:
        raise ZooError("no images to score")
    return out


def _prompts(prompts, n: int) -> list[str]:
    prompts = [prompts] * n if isinstance(prompts, str) else list(prompts)
    if len(prompts) != n:
        raise ZooError(f"{n} images but {len(prompts)} prompts: give one prompt per image, or one for all")
    return prompts


def check_batch_size(size) -> int:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ZooError(f"batch size {size!r}: give a whole number of 1 or more (--batch-size)")
    return size


def check_set_sizes(metrics, n: int, n_reference: int | None, what: str = "the images") -> None:
    """A `ZooError` naming the metric and the set when a set metric is asked of too few images."""
    for m in metrics:
        need = MIN_SET.get(m)
        if need is None:
            continue
        if n < need:
            raise ZooError(f"{m} needs at least {need} images in each set; {what} has {n}: add images, or drop {m}")
        if PER_SET[m] and n_reference is not None and n_reference < need:
            raise ZooError(
                f"{m} needs at least {need} images in each set; the reference has {n_reference}: add reference "
                f"images, or drop {m}"
            )


def _batches(items: list, size: int):
    check_batch_size(size)
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _pooled(out) -> torch.Tensor:
    """transformers 5 returns a model output from get_*_features; 4.x returned the tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


# --- embeddings -------------------------------------------------------------------------------------------------


@torch.inference_mode()
def image_embeddings(j: Judge, images: list[Image.Image], batch_size: int = 32) -> np.ndarray:
    """Projected CLIP image embeddings, or DINOv2's pooled CLS token, one row per image."""
    rows = []
    image_processor = j.processor if j.spec.kind == "dinov2" else j.processor.image_processor
    for batch in _batches(images, batch_size):
        pixels = image_processor(images=batch, return_tensors="pt")["pixel_values"].to(j.device, j.dtype)
        if j.spec.kind == "dinov2":
            rows.append(j.model(pixel_values=pixels).pooler_output.float().cpu())
        else:
            rows.append(_pooled(j.model.get_image_features(pixel_values=pixels)).float().cpu())
    return torch.cat(rows).numpy()


def _warn_if_truncated(j: Judge, prompt: str, limit: int) -> None:
    ids = j.processor.tokenizer(prompt, truncation=False, verbose=False)["input_ids"]
    if len(ids) > limit:
        dropped = j.processor.tokenizer.decode(ids[limit - 1 : -1])
        dropped = dropped if len(dropped) <= 80 else dropped[:77] + "..."
        warnings.warn(
            f"evaluator '{j.spec.key}' reads {limit} tokens; this prompt is {len(ids)} long and is scored without "
            f"its end: '{dropped}' (prompt starts '{prompt[:60]}')",
            stacklevel=4,
        )


@torch.inference_mode()
def text_embeddings(j: Judge, prompts: list[str], batch_size: int = 32) -> np.ndarray:
    """Projected CLIP text embeddings, prompts cut at the text encoder's limit (77 tokens) with a warning."""
    limit = j.model.config.text_config.max_position_embeddings
    rows = []
    for prompt in dict.fromkeys(prompts):
        _warn_if_truncated(j, prompt, limit)
    for batch in _batches(prompts, batch_size):
        tokens = j.processor.tokenizer(batch, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        tokens = {k: v.to(j.device) for k, v in tokens.items()}
        rows.append(_pooled(j.model.get_text_features(**tokens)).float().cpu())
    return torch.cat(rows).numpy()


# --- per-image metrics ------------------------------------------------------------------------------------------


def clip_score(images, prompts, *, evaluator="clip-vit-l-14", batch_size=32, device=None) -> list[float]:
    """CLIP score per image: 100 * max(cos(image, prompt), 0) (Hessel et al. 2021; the diffusers evaluation docs)."""
    images = as_images(images)
    j = judge(evaluator, device)
    img = image_embeddings(j, images, batch_size)
    txt = text_embeddings(j, _prompts(prompts, len(images)), batch_size)
    return metricmath.clip_score_from_embeddings(img, txt).tolist()


def preference_score(images, prompts, *, evaluator="pickscore", batch_size=32, device=None) -> list[float]:
    """PickScore per image: logit_scale.exp() * cos(image, prompt) (Kirstain et al. 2023, about 18 to 24)."""
    images = as_images(images)
    j = judge(evaluator, device)
    img = image_embeddings(j, images, batch_size)
    txt = text_embeddings(j, _prompts(prompts, len(images)), batch_size)
    scale = float(j.model.logit_scale.detach().exp())
    return (scale * metricmath.row_cosines(img, txt)).tolist()


def image_similarity(images, references, *, evaluator="dinov2-base", batch_size=32, device=None) -> list[float]:
    """Per image, the mean cosine similarity to the reference images (DINO as in DreamBooth; a CLIP gives CLIP-I)."""
    j = judge(evaluator, device)
    a = image_embeddings(j, as_images(images), batch_size)
    b = image_embeddings(j, as_images(references), batch_size)
    return metricmath.mean_cosine_to_references(a, b).tolist()


# --- set metrics ------------------------------------------------------------------------------------------------


@torch.inference_mode()
def inception_outputs(images, batch_size=32, device=None, resize="clean", dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """FID Inception pool3 features (N x 2048) and class probabilities (N x 1008), clean-fid resize by default."""
    j = judge("fid-inception", device, dtype)
    feats, logits = [], []
    for batch in _batches(as_images(images), batch_size):
        pool, logit = j.model(inception.to_batch(batch, resize).to(j.device, j.dtype))
        feats.append(pool.double().cpu())
        logits.append(logit.double().cpu())
    return torch.cat(feats).numpy(), torch.softmax(torch.cat(logits), dim=1).numpy()


def _describe(metric: str) -> tuple[str, str, str]:
    """(feature extractor, resize, implementation) recorded with a set metric."""
    reg = default_registry()
    if metric == "fd-dinov2":
        spec = reg.evaluator("dinov2-base")
        extractor = f"DINOv2 {spec.repo}@{spec.revision[:8]} pooled CLS token"
        resize = "the model's BitImageProcessor (bicubic, shortest side, centre crop)"
        return extractor, resize, "helpers.judge.metricmath"
    spec = reg.evaluator("fid-inception")
    what = "softmax of the 1008 logits without bias" if metric == "is" else "pool3, 2048-d"
    subsets = ", 100 random subsets of min(1000, half the smaller set)"
    how = "helpers.judge.metricmath" + (subsets if metric == "kid" else "")
    return f"FID Inception-v3 {spec.file} ({what})", inception.RESIZE, how


def _small_set_warning(metric: str, n: int, n_ref: int | None) -> str | None:
    smallest = min(n, n_ref or n)
    if metric not in ("fid", "fd-dinov2") or smallest >= MIN_IMAGES:
        return None
    text = (
        f"{metric.upper()} from {smallest} images is biased upwards and unstable (it falls as the set grows, "
        f"{MIN_IMAGES}+ images advised): compare only numbers made from equal counts, and see KID with its std"
    )
    warnings.warn(text, stacklevel=3)
    return text


@dataclass
class Reference:
    """Reference images whose features are computed once, however many sets are compared with them."""

    images: list
    features: dict = field(default_factory=dict)

    def inception(self, batch_size=32, device=None) -> np.ndarray:
        if "inception" not in self.features:
            self.features["inception"] = inception_outputs(self.images, batch_size, device)[0]
        return self.features["inception"]

    def dinov2(self, batch_size=32, device=None) -> np.ndarray:
        if "dinov2" not in self.features:
            self.features["dinov2"] = image_embeddings(judge("dinov2-base", device), self.images, batch_size)
        return self.features["dinov2"]


def set_scores(images, references=None, metrics=("fid", "kid"), *, batch_size=32, device=None, **kid_options):
    """Set-level metrics of `images` (against `references` where the metric needs them), features computed once.

    `references`: images, paths, a folder, or a `Reference` (to reuse its features across several sets).
    """
    unknown = set(metrics) - set(PER_SET)
    if unknown:
        raise ZooError(f"unknown set metric(s) {sorted(unknown)}; choose from {sorted(PER_SET)}")
    images = as_images(images)
    ref = references if isinstance(references, Reference) or references is None else Reference(as_images(references))
    if ref is None and any(PER_SET[m] for m in metrics):
        raise ZooError(f"{[m for m in metrics if PER_SET[m]]} compare two sets: give reference images")
    check_batch_size(batch_size)
    check_set_sizes(metrics, len(images), len(ref.images) if ref is not None else None)
    inc = inception_outputs(images, batch_size, device) if {"fid", "kid", "is"} & set(metrics) else None
    out = {}
    for m in metrics:
        n_ref = len(ref.images) if PER_SET[m] else None
        if m == "fid":
            value, std = metricmath.frechet_distance(inc[0], ref.inception(batch_size, device)), None
        elif m == "kid":
            value, std = metricmath.kid(inc[0], ref.inception(batch_size, device), **kid_options)
        elif m == "is":
            value, std = metricmath.inception_score(inc[1])
        else:
            a = image_embeddings(judge("dinov2-base", device), images, batch_size)
            value, std = metricmath.frechet_distance(a, ref.dinov2(batch_size, device)), None
        warning = _small_set_warning(m, len(images), n_ref)
        extractor, resize, implementation = _describe(m)
        if m == "kid":  # the subsets these sets got
            size = metricmath.kid_subset_size(len(images), n_ref, kid_options.get("subset_size", 1000))
            subsets = kid_options.get("subsets", 100)
            implementation = f"helpers.judge.metricmath, {subsets} random subsets of {size} images"
        out[m] = SetScore(m, value, std, len(images), n_ref, extractor, resize, implementation, warning)
    return out


def fid(images, references, **options) -> SetScore:
    """Fréchet Inception distance (Heusel et al. 2017) with clean-fid's resize; lower is closer."""
    return set_scores(images, references, ["fid"], **options)["fid"]


def kid(images, references, **options) -> SetScore:
    """Kernel Inception distance (Bińkowski et al. 2018): unbiased, with its std over subsets; lower is closer."""
    return set_scores(images, references, ["kid"], **options)["kid"]


def fd_dinov2(images, references, **options) -> SetScore:
    """Fréchet distance on DINOv2 features (Stein et al. 2023), the modern alternative to FID."""
    return set_scores(images, references, ["fd-dinov2"], **options)["fd-dinov2"]


def inception_score(images, **options) -> SetScore:
    """Inception score (Salimans et al. 2016), mean and std over 10 splits; higher is more confident and varied."""
    return set_scores(images, None, ["is"], **options)["is"]


# --- everything at once -----------------------------------------------------------------------------------------


def score(images, prompts=None, metrics=("clip",), references=None, *, batch_size=32, device=None) -> dict:
    """Every metric asked for: per-image metrics as lists, set metrics as `SetScore`s."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ZooError(f"unknown metric(s) {unknown}; choose from {METRICS}")
    check_batch_size(batch_size)
    images = as_images(images)
    out = {}
    for m in metrics:
        if m not in PER_IMAGE:
            continue
        evaluator, needs = PER_IMAGE[m]
        if needs == "prompts":
            if prompts is None:
                raise ZooError(f"metric '{m}' scores images against their prompts: give prompts")
            fn = preference_score if m == "pickscore" else clip_score
            out[m] = fn(images, prompts, evaluator=evaluator, batch_size=batch_size, device=device)
        else:
            if references is None:
                raise ZooError(f"metric '{m}' compares images with references: give reference images")
            refs = references.images if isinstance(references, Reference) else references
            out[m] = image_similarity(images, refs, evaluator=evaluator, batch_size=batch_size, device=device)
    sets = [m for m in metrics if m in PER_SET]
    if sets:
        out |= set_scores(images, references, sets, batch_size=batch_size, device=device)
    return out


def describe(metric: str) -> str:
    """One line saying how a metric's numbers are made (for tables and reports)."""
    if metric in PER_IMAGE:
        spec = default_registry().evaluator(PER_IMAGE[metric][0])
        how = {
            "clip": "CLIP score 100*max(cos,0)",
            "clip-b16": "CLIP score 100*max(cos,0)",
            "pickscore": "PickScore logit_scale*cos",
            "dino": "mean cosine to references",
            "clip-i": "CLIP-I, mean cosine to references",
        }[metric]
        return f"{metric}: {how}; {spec.repo}@{spec.revision[:8]}, transformers, the repo's own image processor"
    extractor, resize, implementation = _describe(metric)
    return f"{metric}: {extractor}; resize: {resize}; {implementation}"
