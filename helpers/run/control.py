"""ControlNet: steer a model with an image (edges, depth, pose), on the weights already loaded.

A `Control` names a registry ControlNet (`models.yaml`, section `controlnets`; T2I-Adapters of `t2i_adapters`
steer the same way with lighter networks), its control image and how hard and when it steers.
`generate(..., control=...)` takes one, a list (several ControlNets at once, each with its own scale and
start/end), `{key: image}`, or `[(key, picture)]`, whose control image is made here by the preprocessor of
the ControlNet's kind (openpose-sd15 -> an OpenPose map). The ControlNet pipeline is made from the loaded model with
diffusers' `from_pipe` (no weights copied) and shares its record; each ControlNet loads once per model.

>>> edges = helpers.control.preprocess("photo.png", "canny")       # look at it before generating
>>> generate("sd15", "a house in the woods", control={"canny-sd15": edges}, seed=1)
>>> generate("sd15", "a dancer", control=[Control("openpose-sd15", pose, scale=0.8, end=0.6)], seed=1)
"""

from __future__ import annotations

import inspect
import os
import warnings
import weakref
from dataclasses import dataclass, field

import diffusers
import huggingface_hub
import numpy as np
import torch
import transformers
from PIL import Image

from ..base import quiet
from ..base.errors import ZooError
from ..base.images import fingerprint, load_image
from ..base.loaded import attach, record
from ..zoo.registry import ControlNetSpec, ModelSpec, PreprocessorSpec, Registry, T2IAdapterSpec
from ..zoo.registry import default as default_registry
from . import memory as memory_mod
from .loading import hub_errors_explained, hub_kwargs

# The ControlNet pipeline class of each family and task (diffusers' names).
PIPELINES = {
    ("sd1", "text2img"): "StableDiffusionControlNetPipeline",
    ("sd1", "img2img"): "StableDiffusionControlNetImg2ImgPipeline",
    ("sd1", "inpaint"): "StableDiffusionControlNetInpaintPipeline",
    ("sd2", "text2img"): "StableDiffusionControlNetPipeline",
    ("sd2", "img2img"): "StableDiffusionControlNetImg2ImgPipeline",
    ("sd2", "inpaint"): "StableDiffusionControlNetInpaintPipeline",
    ("sdxl", "text2img"): "StableDiffusionXLControlNetPipeline",
    ("sdxl", "img2img"): "StableDiffusionXLControlNetImg2ImgPipeline",
    ("sdxl", "inpaint"): "StableDiffusionXLControlNetInpaintPipeline",
    ("flux", "text2img"): "FluxControlNetPipeline",
}
# A union ControlNet (one network, many control types) has pipelines of its own.
UNION_PIPELINES = {
    ("sdxl", "text2img"): "StableDiffusionXLControlNetUnionPipeline",
    ("sdxl", "img2img"): "StableDiffusionXLControlNetUnionImg2ImgPipeline",
    ("sdxl", "inpaint"): "StableDiffusionXLControlNetUnionInpaintPipeline",
}
# A T2I-Adapter (registry section `t2i_adapters`) adds its features to the U-Net's: text-to-image only.
T2I_PIPELINES = {
    ("sd1", "text2img"): "StableDiffusionAdapterPipeline",
    ("sdxl", "text2img"): "StableDiffusionXLAdapterPipeline",
}


@dataclass
class Control:
    """One ControlNet in a generation: its registry key, control image, strength and the share of steps it acts in."""

    model: str
    image: object  # a path, URL or PIL image: the control image itself (see `preprocess`)
    scale: float = 1.0  # A1111's "Weight"
    start: float = 0.0  # the share of the steps after which it starts ("Guidance Start")
    end: float = 1.0  # ... and after which it stops ("Guidance End")
    kind: str | None = None  # a union ControlNet: what the control image is ("canny", "depth", ...; canny if None)
    mode: int | None = field(default=None, repr=False)  # ... and that kind's number for the network (from `settle`)
    preprocessor: str | None = None  # the `preprocess` kind that made `image` from a picture, where the zoo made it

    def recipe(self) -> dict:
        """What the image record keeps: model, scale, steps, the control image's fingerprint (and a union's kind,
        the preprocessor that made the image)."""
        out = {"model": self.model, "scale": self.scale, "start": self.start, "end": self.end,
               "image": fingerprint(self.image)}  # fmt: skip
        out |= {"kind": self.kind} if self.kind is not None else {}
        return out | ({"preprocessor": self.preprocessor} if self.preprocessor else {})


def preprocess(image, kind: str = "canny", low: int = 100, high: int = 200, estimator: str = "depth-anything-v2-small",
               registry: Registry | None = None) -> Image.Image:  # fmt: skip
    """The control image for a ControlNet kind, to look at before generating.

    "canny": OpenCV's edge map between the `low` and `high` thresholds (no weights). "depth": the registry
    depth `estimator`'s map, near bright, at the picture's size. controlnet_aux's detectors, their weights
    registry entries: "openpose" (body, hands and face), "lineart", "lineart_anime", "softedge" (HED),
    "softedge_pidinet", "mlsd", "normal" (NormalBae) and "shuffle" (no weights). "tile" passes it through.
    """
    image = load_image(image)
    reg = registry or default_registry()
    if kind in AUX_KINDS:
        return _aux(image, kind, reg)
    if kind == "depth":
        return _depth(image, reg.preprocessor(estimator))
    if kind == "canny":
        import cv2  # OpenCV is large: loaded only for edge maps

        edges = cv2.Canny(np.asarray(image.convert("L")), low, high)
        return Image.fromarray(edges).convert("RGB")
    if kind == "tile":
        return image
    raise ZooError(f"No preprocessor for '{kind}'; kinds: canny, depth, {', '.join(AUX_KINDS)} and tile")


# controlnet_aux's maps: kind -> the registry preprocessor whose files it reads (None: no weights).
AUX_KINDS = {"openpose": "openpose", "lineart": "lineart", "lineart_anime": "lineart-anime", "softedge": "hed",
             "softedge_pidinet": "pidinet", "mlsd": "mlsd", "normal": "normalbae", "shuffle": None}  # fmt: skip
# The preprocessor a ControlNet kind's picture goes through when `control=` gets (key, picture).
FOR_CONTROLNET = {"canny": "canny", "depth": "depth", "tile": "tile", **{k: k for k in AUX_KINDS}}


def _aux(image: Image.Image, kind: str, reg: Registry) -> Image.Image:
    """A controlnet_aux map at the picture's size (openpose with hands and face; shuffle needs no weights)."""
    size = {"detect_resolution": min(image.size), "image_resolution": min(image.size)}
    if kind == "shuffle":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from controlnet_aux.shuffle import ContentShuffleDetector

        np.random.seed(0)  # its random flow field: the same picture gives the same map
        out = ContentShuffleDetector()(image, **size)
    else:
        detector = _detector(reg.preprocessor(AUX_KINDS[kind]))
        extra = {"include_hand": True, "include_face": True} if kind == "openpose" else {}
        with torch.no_grad():
            out = detector(image, **size, **extra)
    return out.convert("RGB").resize(image.size, Image.Resampling.BILINEAR)


_DETECTORS: dict = {}  # (repo, revision, key) -> a controlnet_aux detector: loaded once per session


def _detector(spec: PreprocessorSpec):
    """A controlnet_aux detector from the entry's files at its revision (fetched here, so the Hub cache and the
    offline hub serve them), on the CPU; the pickles are read with weights_only (torch's default)."""
    ident = (spec.repo, spec.revision, spec.key)
    if ident not in _DETECTORS:
        with hub_errors_explained(spec), quiet.loading():
            hub_kwargs(_NoVariant(spec))  # asks the Hub once; offline, the cache is read at once
            paths = [huggingface_hub.hf_hub_download(spec.repo, f, revision=spec.revision) for f in spec.files]
            folder = os.path.dirname(paths[0])
            with warnings.catch_warnings():  # its package import warns about optional extras no user needs here
                warnings.simplefilter("ignore")
                import controlnet_aux

            cls = getattr(controlnet_aux, spec.cls_name)
            roles = ("filename", "coarse_filename" if spec.kind == "lineart" else "hand_filename", "face_filename")
            names = dict(zip(roles[: len(spec.files)], spec.files, strict=True))
            _DETECTORS[ident] = cls.from_pretrained(folder, **names)
    return _DETECTORS[ident]


class _NoVariant:
    """An entry seen as hub_kwargs reads one: its revision and weight format, no variant."""

    def __init__(self, spec):
        self.revision, self.weights, self.variant = spec.revision, spec.weights, None


@torch.no_grad()
def _depth(image: Image.Image, spec: PreprocessorSpec) -> Image.Image:
    processor, model = _estimator(spec)
    out = model(**processor(images=image, return_tensors="pt"))
    depth = processor.post_process_depth_estimation(out, target_sizes=[image.size[::-1]])[0]["predicted_depth"]
    depth = (depth - depth.min()) / (depth.max() - depth.min()).clamp(min=1e-8)
    return Image.fromarray((depth.numpy() * 255).round().astype(np.uint8)).convert("RGB")


_ESTIMATORS: dict = {}  # (repo, revision) -> (image processor, model): loaded once per session


def _estimator(spec: PreprocessorSpec):
    """A registry estimator's image processor and model, loaded once (on the CPU: it runs once per picture)."""
    ident = (spec.repo, spec.revision)
    if ident not in _ESTIMATORS:
        kwargs = {"revision": spec.revision}
        with hub_errors_explained(spec), quiet.loading():
            processor = transformers.AutoImageProcessor.from_pretrained(spec.repo, **kwargs)
            model = getattr(transformers, spec.cls_name).from_pretrained(spec.repo, **kwargs)
        _ESTIMATORS[ident] = processor, model.eval()
    return _ESTIMATORS[ident]


def settle(spec: ModelSpec, task: str, control, registry: Registry | None = None) -> list[Control]:
    """The controls of a request, checked against the model before anything loads."""
    if control is None:
        return []
    reg = registry or default_registry()
    if isinstance(control, dict):
        control = [Control(k, v) for k, v in control.items()]
    elif isinstance(control, Control):
        control = [control]
    out = []
    for c in control:
        c = as_control(c, reg)
        if not isinstance(c, Control):
            raise ZooError(
                f"control takes Control(...) objects, (controlnet_key, picture) or {{controlnet_key: control image}}, "
                f"not {type(c).__name__}"
            )
        cn = _entry(reg, c.model)
        if cn.family != spec.family:
            fits = [k for k, v in (reg.controlnets | reg.t2i_adapters).items() if v.family == spec.family]
            raise ZooError(
                f"ControlNet '{cn.key}' is for {cn.family} models; '{spec.key}' is {spec.family}: "
                f"use one of {fits or 'none (no ControlNet for this family yet)'}"
            )
        if (spec.family, task) not in _pipelines(cn):
            raise ZooError(f"ControlNet '{cn.key}' with task '{task}' is not supported for {spec.family} models")
        if not 0 <= c.start < c.end <= 1:
            raise ZooError(f"ControlNet '{cn.key}': need 0 <= start < end <= 1 (got start {c.start}, end {c.end})")
        if isinstance(cn, T2IAdapterSpec):
            _check_t2i(cn, c, _pipelines(cn)[(spec.family, task)])
        kind = _union_kind(cn, c.kind)
        mode = cn.control_modes[kind] if kind else None
        out.append(Control(cn.key, load_image(c.image), float(c.scale), float(c.start), float(c.end), kind, mode,
                           c.preprocessor))  # fmt: skip
    if len(out) > 1 and spec.family == "flux":
        raise ZooError("FLUX takes one ControlNet at a time here")
    alone = [c.model for c in out if c.kind is not None or c.model in reg.t2i_adapters]
    if alone and len(out) > 1:
        raise ZooError(
            f"{alone[0]} (a union ControlNet or T2I-Adapter) runs alone here: give it one control image, nothing else"
        )
    return out


def as_control(c, registry: Registry | None = None):
    """A `(key, picture)` pair as the Control it asks for: the map made by the ControlNet kind's preprocessor;
    anything else as it is."""
    if isinstance(c, tuple) and len(c) == 2:
        return _from_picture(registry or default_registry(), *c)
    return c


def _from_picture(reg: Registry, key: str, picture) -> Control:
    """A Control whose image is the map the ControlNet's kind takes, made from `picture` (openpose, lineart ...)."""
    kind = _entry(reg, key).kind
    if kind not in FOR_CONTROLNET:
        raise ZooError(f"ControlNet '{key}' ({kind}) has no preprocessor here: give Control('{key}', control_image)")
    made = FOR_CONTROLNET[kind]
    return Control(key, preprocess(picture, made, registry=reg), preprocessor=made if made != "tile" else None)


def _entry(reg: Registry, key: str):
    """A ControlNet or T2I-Adapter of the registry by key (both steer with a control image)."""
    return reg.t2i_adapters[key] if key in reg.t2i_adapters else reg.controlnet(key)


def _pipelines(cn) -> dict:
    if isinstance(cn, T2IAdapterSpec):
        return T2I_PIPELINES
    return UNION_PIPELINES if cn.control_modes else PIPELINES


def _check_t2i(cn: T2IAdapterSpec, c: Control, pipeline_name: str) -> None:
    """A T2I-Adapter acts from the first step; SDXL's pipeline can stop it early (`end`), SD 1.5's cannot."""
    if c.start > 0:
        raise ZooError(f"T2I-Adapter '{cn.key}' acts from the first step: start must be 0 (got {c.start:g})")
    ends = "adapter_conditioning_factor" in inspect.signature(getattr(diffusers, pipeline_name).__call__).parameters
    if c.end < 1 and not ends:
        raise ZooError(
            f"T2I-Adapter '{cn.key}' acts in every step on {cn.family} models ({pipeline_name}): end must be 1"
        )


def _union_kind(cn: ControlNetSpec, kind: str | None) -> str | None:
    """The control type of a union ControlNet's image (canny unless told); None for other ControlNets."""
    if not getattr(cn, "control_modes", None):
        if kind is not None:
            raise ZooError(f"ControlNet '{cn.key}' is a {cn.kind} ControlNet; kind= is for union ControlNets only")
        return None
    kind = kind or "canny"
    if kind not in cn.control_modes:
        raise ZooError(
            f"union ControlNet '{cn.key}' knows no control type '{kind}': use one of {list(cn.control_modes)}"
        )
    return kind


def specs(controls: list[Control], registry: Registry | None = None) -> list[ControlNetSpec]:
    """The registry entries of a request's ControlNets (for the memory policy)."""
    reg = registry or default_registry()
    return [_entry(reg, c.model) for c in controls]


_LOADED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # a model's record -> {controlnet key: module}


def load_controlnet(cn: ControlNetSpec, pipe):
    """The ControlNet module for a loaded model, loaded once in the model's dtype and placed as its policy says."""
    loaded = _LOADED.setdefault(record(pipe), {})
    if cn.key not in loaded:
        kwargs = hub_kwargs(cn) | {"dtype": pipe.dtype}
        if getattr(cn, "subfolder", None):
            kwargs["subfolder"] = cn.subfolder
        if getattr(cn, "weight_name", None):
            kwargs["weight_name"] = cn.weight_name
        with hub_errors_explained(cn), quiet.loading():
            loaded[cn.key] = getattr(diffusers, cn.cls_name).from_pretrained(cn.repo, **kwargs).eval()
    return loaded[cn.key]


def parameter_count(key: str, pipe, registry: Registry | None = None) -> int:
    """How many parameters the ControlNet or T2I-Adapter `key` has, as loaded for `pipe`'s model."""
    net = load_controlnet(_entry(registry or default_registry(), key), pipe)
    return sum(p.numel() for p in net.parameters())


def pipeline(pipe, controls: list[Control], registry: Registry | None = None):
    """The ControlNet pipeline for `pipe`'s task on the same weights (`from_pipe`), sharing the model's record."""
    reg = registry or default_registry()
    rec = record(pipe)
    spec = rec.spec
    task = "inpaint" if "Inpaint" in type(pipe).__name__ else "img2img" if "Img2Img" in type(pipe).__name__ else ""
    entries = [_entry(reg, c.model) for c in controls]
    cls = getattr(diffusers, _pipelines(entries[0])[(spec.family, task or "text2img")])
    nets = [load_controlnet(cn, pipe) for cn in entries]
    role = "adapter" if isinstance(entries[0], T2IAdapterSpec) else "controlnet"
    derived = cls.from_pipe(pipe, **{role: nets[0] if len(nets) == 1 else nets})
    attach(derived, rec)
    policy = rec.policy
    if policy is None or policy.name in ("gpu", "cpu"):
        for net in nets:
            net.to(pipe.device)
    else:  # offloading hooks are per pipeline: the new one places its modules (the ControlNets among them) again
        memory_mod.apply(derived, policy, str(pipe._execution_device))
    return derived


def call_kwargs(pipe, controls: list[Control]) -> dict:
    """The pipeline call's ControlNet arguments: images, scales and start/end, one per ControlNet."""
    if not controls:
        return {}
    params = inspect.signature(type(pipe).__call__).parameters
    name = "control_image" if "control_image" in params else "image"
    one = len(controls) == 1
    pick = (lambda xs: xs[0]) if one else list
    if "adapter_conditioning_scale" in params:  # a T2I-Adapter: its scale, and on SDXL the share of steps it acts in
        c = controls[0]
        grey = getattr(getattr(pipe, "adapter", None), "config", {}).get("in_channels") == 1
        image = c.image.convert("L") if grey else c.image  # an adapter trained on one-channel edge maps
        return {"image": image, "adapter_conditioning_scale": c.scale} | (
            {"adapter_conditioning_factor": c.end} if "adapter_conditioning_factor" in params else {}
        )
    if controls[0].kind is not None:  # a union ControlNet: its images as a list, each with its control type
        c = controls[0]
        return {name: [c.image], "control_mode": [c.mode], "controlnet_conditioning_scale": c.scale,
                "control_guidance_start": c.start, "control_guidance_end": c.end}  # fmt: skip
    return {
        name: pick([c.image for c in controls]),
        "controlnet_conditioning_scale": pick([c.scale for c in controls]),
        "control_guidance_start": pick([c.start for c in controls]),
        "control_guidance_end": pick([c.end for c in controls]),
    }


def from_recipe(recipes: list[dict], images) -> list[Control]:
    """The controls of a record again, given their images (a list in order, or {controlnet key: image})."""
    if not recipes:
        return []
    if images is None:
        raise ZooError(
            f"this image was made with ControlNet {[r['model'] for r in recipes]}: "
            "regenerate(path, control_images=[IMAGE, ...]) with the same control images"
        )
    if isinstance(images, dict):
        images = [images.get(r["model"]) for r in recipes]
    elif not isinstance(images, (list, tuple)):
        images = [images]
    if len(images) != len(recipes) or any(im is None for im in images):
        raise ZooError(f"need {len(recipes)} control image(s), one for each of {[r['model'] for r in recipes]}")
    out = []
    for r, im in zip(recipes, images, strict=True):
        im = load_image(im)
        if fingerprint(im) != r["image"] and r.get("preprocessor"):  # the picture its map was made from, maybe
            im = preprocess(im, r["preprocessor"])
        if fingerprint(im) != r["image"]:
            made = f" (or the picture its {r['preprocessor']} map was made from)" if r.get("preprocessor") else ""
            raise ZooError(f"the control image for '{r['model']}'{made} is not the one this image was made with")
        out.append(Control(r["model"], im, r["scale"], r["start"], r["end"], r.get("kind"),
                           preprocessor=r.get("preprocessor")))  # fmt: skip
    return out
