"""The curated registry: `models.yaml` loaded once, validated, and queried by key.

>>> from helpers import registry
>>> registry.get("sd15").repo
'stable-diffusion-v1-5/stable-diffusion-v1-5'
>>> [m.key for m in registry.models(family="flux")]
['flux-schnell', 'flux-dev', 'flux-krea-dev']
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..base.errors import RegistryError, UnknownModelError
from ..base.families import FAMILIES
from ..base.schedulers import scheduler_names
from . import checkpoints

# The project's models.yaml, at the top of a checkout; the package holds a link to it, which an installed
# package (pip install) holds as a copy, so the registry is found from the package wherever it is.
REGISTRY_PATH = (Path(__file__).parents[1] / "models.yaml").resolve()

Family = Literal[tuple(FAMILIES)]
Task = Literal["text2img", "img2img", "inpaint", "instruct"]  # instruct: an instruction edits an input image
KEY_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")
SHA_RE = re.compile(r"^[0-9a-f]{40}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Size(_Strict):
    download_gb: float = Field(ge=0)
    vram_gb: float | None = Field(default=None, ge=0)
    denoiser_gb: float | None = Field(default=None, ge=0)  # half-precision U-Net/transformer, where not the family's


class Defaults(_Strict):
    steps: int = Field(ge=1)
    guidance_scale: float = Field(ge=0)
    scheduler: str = "default"
    scheduler_options: dict = Field(default_factory=dict)
    negative_prompt: bool = True
    max_sequence_length: int | None = None
    clip_skip: int = Field(default=1, ge=1)  # A1111's numbering: 2 reads the CLIP text encoder's penultimate layer
    prompt_prefix: str = ""  # quality tags the model was trained with (Pony's score tags), put before the prompt


class Layout(_Strict):
    """Facts about a repo's files where they differ from the plain diffusers layout."""

    safety_checker: bool = False
    missing: list[str] = Field(default_factory=list)
    sharded: dict[str, int] = Field(default_factory=dict)
    variant_components: list[str] | None = None


class _Pinned(_Strict):
    """A Hub repo at a revision: a commit SHA where known, else a branch, and the entry says which."""

    key: str
    name: str
    repo: str
    revision: str = "main"
    revision_kind: Literal["commit", "branch"] = "branch"
    license: str
    description: str
    notes: str = ""
    sources: list[str] = Field(default_factory=list)

    @field_validator("key")
    @classmethod
    def _key_form(cls, v):
        if not KEY_RE.match(v):
            raise ValueError("keys are lower-case letters, digits, '.' and '-'")
        return v

    @field_validator("repo")
    @classmethod
    def _repo_form(cls, v):
        if v.count("/") != 1 or not all(v.split("/")):
            raise ValueError(f"'{v}' is not a Hub repo id of the form 'owner/name'")
        return v

    @model_validator(mode="after")
    def _revision_matches_kind(self):
        is_sha = bool(SHA_RE.match(self.revision))
        if is_sha != (self.revision_kind == "commit"):
            raise ValueError(
                f"revision '{self.revision}' and revision_kind '{self.revision_kind}' disagree: "
                "a commit is 40 lower-case hex digits"
            )
        return self

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo}"


class VaeSpec(_Pinned):
    cls_name: Literal["AutoencoderKL", "AutoencoderTiny"] = Field(alias="class")
    subfolder: str | None = None
    variant: str | None = None
    weights: Literal["safetensors", "bin"] = "safetensors"
    families: list[Family]
    fp16_fix_for: list[Family] = Field(default_factory=list)  # families whose own VAE overflows in float16
    size: Size

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AdapterSpec(_Pinned):
    kind: Literal["lora", "textual_inversion"]
    weight_name: str
    family: Family
    scale: float = 1.0
    trigger_words: list[str] = Field(default_factory=list)
    token: str | None = None  # textual inversion: the token the embedding binds to
    size: Size


class EvaluatorSpec(_Strict):
    """A network that judges images: on the Hub (repo + revision) or a file at a URL (url + file + sha256)."""

    key: str
    name: str
    kind: Literal["clip", "dinov2", "preference", "inception"]
    repo: str | None = None
    revision: str = "main"
    revision_kind: Literal["commit", "branch", "release"] = "branch"
    processor: str | None = None  # a Hub repo whose tokenizer and image processor the model uses (PickScore)
    processor_revision: str = "main"
    url: str | None = None
    file: str | None = None
    sha256: str | None = None  # the full digest, or the prefix that torch.hub checks (the one in the file name)
    license: str
    description: str
    notes: str = ""
    sources: list[str] = Field(default_factory=list)

    @field_validator("repo", "processor")
    @classmethod
    def _repo_form(cls, v):
        if v is not None and (v.count("/") != 1 or not all(v.split("/"))):
            raise ValueError(f"'{v}' is not a Hub repo id of the form 'owner/name'")
        return v

    @field_validator("sha256")
    @classmethod
    def _sha_form(cls, v):
        if v is not None and not re.match(r"^[0-9a-f]{8,64}$", v):
            raise ValueError(f"'{v}' is not a sha256 digest or prefix (8 to 64 lower-case hex digits)")
        return v

    @model_validator(mode="after")
    def _where_from(self):
        if (self.repo is None) == (self.url is None):
            raise ValueError("give either repo (a Hub model) or url + file + sha256 (a file elsewhere), not both")
        if self.url is not None and not (self.file and self.sha256):
            raise ValueError(f"{self.url}: a file at a URL needs `file` (its cache name) and `sha256`")
        if self.repo is not None and bool(SHA_RE.match(self.revision)) != (self.revision_kind == "commit"):
            raise ValueError(
                f"revision '{self.revision}' and revision_kind '{self.revision_kind}' disagree: "
                "a commit is 40 lower-case hex digits"
            )
        return self


class ControlNetSpec(_Pinned):
    """A ControlNet: a copy of a family's denoiser encoder that steers it with an image (edges, depth, pose)."""

    cls_name: Literal["ControlNetModel", "ControlNetUnionModel", "FluxControlNetModel"] = Field(alias="class")
    kind: Literal["canny", "depth", "openpose", "lineart", "lineart_anime", "softedge", "mlsd", "normal", "shuffle",
                  "tile", "union"]  # fmt: skip
    family: Family
    subfolder: str | None = None
    variant: str | None = None
    weights: Literal["safetensors", "bin"] = "safetensors"
    weight_name: str | None = None  # a single file in the repo root instead of a diffusers folder
    control_modes: dict[str, int] = Field(default_factory=dict)  # a union ControlNet: control type -> its number
    size: Size

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# controlnet_aux's detectors (its class names), each reading its files from lllyasviel/Annotators.
AUX_DETECTORS = ("OpenposeDetector", "LineartDetector", "LineartAnimeDetector", "HEDdetector", "PidiNetDetector",
                 "MLSDdetector", "NormalBaeDetector")  # fmt: skip


class PreprocessorSpec(_Pinned):
    """A model that makes control images from pictures: a depth estimator (transformers) or one of controlnet_aux's
    detectors (openpose, lineart, soft edges, MLSD lines, normals), with the files it reads from the repo."""

    cls_name: Literal[("DepthAnythingForDepthEstimation", "DPTForDepthEstimation", *AUX_DETECTORS)] = Field(
        alias="class"
    )
    kind: Literal["depth", "openpose", "lineart", "lineart_anime", "softedge", "softedge_pidinet", "mlsd", "normal"]
    files: list[str] = Field(default_factory=list)  # a controlnet_aux detector's files in the repo, in its order
    weights: Literal["safetensors", "pth"] = "safetensors"  # pth: pickles, opted into, read with weights_only
    size: Size

    @model_validator(mode="after")
    def _files_for_detectors(self):
        aux = self.cls_name in AUX_DETECTORS
        if aux != bool(self.files):
            raise ValueError("a controlnet_aux detector lists its `files`; a transformers model has none")
        if any(f.endswith((".pth", ".pt")) for f in self.files) and self.weights != "pth":
            raise ValueError(f"{self.files} are pickles: the entry opts into reading them with `weights: pth`")
        return self

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class UpscalerDefaults(_Strict):
    steps: int = Field(ge=1)
    guidance_scale: float = Field(ge=0)
    noise_level: int | None = Field(default=None, ge=0)  # the x4 upscaler's noise added to its input
    tile: int = Field(gt=0)  # input tile edge (px) for pictures larger than this: what the model was trained at


class UpscalerSpec(_Pinned):
    """A learned image upscaler: a diffusers pipeline that takes a picture (and a prompt) and returns it larger."""

    pipeline: Literal["StableDiffusionUpscalePipeline", "StableDiffusionLatentUpscalePipeline"]
    scale: Literal[2, 4]
    family: Family  # whose text encoder and VAE it shares: what its memory is planned by
    dtype: Literal["float16", "bfloat16"]
    variant: Literal["fp16"] | None = None
    weights: Literal["safetensors", "bin"] = "safetensors"
    resolution: int = Field(gt=0)  # the output size it was trained at
    defaults: UpscalerDefaults
    layout: Layout = Field(default_factory=Layout)
    size: Size

    @property
    def pipeline_class(self):
        return _diffusers_class(self.pipeline)


class NetworkUpscalerSpec(_Pinned):
    """An upscaler network in one file (ESRGAN, Real-ESRGAN, SwinIR, ...), loaded by spandrel: no prompt, no steps.

    Its `name` is the one AUTOMATIC1111 lists (the file's stem), which recipes record as `Hires upscaler`.
    """

    file: str  # the weights' file in the repo
    architecture: Literal["ESRGAN", "SwinIR", "RealCUGAN", "SPAN", "Compact"]  # spandrel's name; checked on load
    scale: Literal[1, 2, 4, 8]
    weights: Literal["safetensors", "pth"] = "safetensors"  # pth: a pickle, opted into, read with weights_only
    tile: int = Field(default=256, gt=0)  # input tile edge (px): larger pictures run in overlapping tiles
    size: Size

    @model_validator(mode="after")
    def _format_opted_in(self):
        pickled = self.file.endswith((".pth", ".pt", ".ckpt"))
        if pickled != (self.weights == "pth"):
            raise ValueError(
                f"file '{self.file}' is {'a pickle' if pickled else 'not a pickle'} but weights is '{self.weights}': "
                "a .pth file loads only where the entry says `weights: pth` (read with torch.load(weights_only=True)); "
                "prefer a .safetensors file where the repo has one"
            )
        return self


def upscaler_spec(entry: dict):
    """The spec class of an `upscalers` entry: a network in one file (`file:`) or a diffusers pipeline."""
    return NetworkUpscalerSpec if "file" in entry else UpscalerSpec


class IpAdapterSpec(_Pinned):
    """An IP-Adapter: an image prompt through a CLIP image encoder and extra cross-attention in the denoiser."""

    family: Family
    subfolder: str  # the adapter file's folder in the repo
    weight_name: str
    image_encoder: str  # the CLIPVisionModelWithProjection folder it was trained with
    size: Size


class T2IAdapterSpec(_Pinned):
    """A T2I-Adapter: a small network that turns a control image into features added to the denoiser's."""

    cls_name: Literal["T2IAdapter"] = Field(alias="class")
    kind: Literal["canny", "depth", "sketch", "lineart", "openpose"]
    family: Family
    variant: str | None = None
    weights: Literal["safetensors", "bin"] = "safetensors"
    in_channels: Literal[1, 3] = 3  # the control image's channels: 1 for adapters trained on grayscale edge maps
    size: Size

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class GgufSpec(_Pinned):
    """A pre-quantized GGUF file that replaces a registry model's denoiser (diffusers' `from_single_file` +
    `GGUFQuantizationConfig`): the community files people run FLUX, Qwen-Image and Z-Image from on small GPUs."""

    name: str = ""
    description: str = ""
    model: str  # the registry model whose denoiser the file replaces
    component: Literal["transformer", "unet"] = "transformer"
    file: str
    quant: str  # the GGUF quantization type: Q4_K_S, Q8_0, ...
    size_gb: float = Field(gt=0)

    @field_validator("file")
    @classmethod
    def _gguf_file(cls, v):
        if not v.endswith(".gguf"):
            raise ValueError(f"'{v}' is not a .gguf file")
        return v


class ModelSpec(_Pinned):
    aliases: list[str] = Field(default_factory=list)
    previous_repos: list[str] = Field(default_factory=list)
    base: str | None = None
    family: Family
    pipeline: str
    variant: Literal["fp16", "bf16"] | None = None
    dtype: Literal["float16", "bfloat16"]
    weights: Literal["safetensors", "bin"] = "safetensors"
    gated: bool
    commercial_use: bool | Literal["unclear"]
    tasks: list[Task]
    resolution: int = Field(gt=0)
    prediction: Literal["epsilon", "v_prediction", "flow", "edm"]
    defaults: Defaults
    components: dict[Literal["vae"], str] = Field(default_factory=dict)
    adapters: list[str] = Field(default_factory=list)
    layout: Layout = Field(default_factory=Layout)
    size: Size
    trigger_words: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    single_file: str | None = None  # a checkpoint file in `repo` (or a local path) loaded with `from_single_file`

    @field_validator("pipeline")
    @classmethod
    def _pipeline_known(cls, v):
        known = sorted({p for family in FAMILIES.values() for p in family.pipelines})
        if v not in known:
            close = difflib.get_close_matches(v, known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"the zoo's families run {known}"
            raise ValueError(f"no family of the zoo runs the pipeline '{v}'; {hint}")
        return v

    @field_validator("aliases")
    @classmethod
    def _alias_form(cls, v):
        bad = [a for a in v if not KEY_RE.match(a)]
        if bad:
            raise ValueError(f"aliases {bad} must be lower-case letters, digits, '.' and '-'")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        pipelines = FAMILIES[self.family].pipelines
        if self.pipeline not in pipelines:
            raise ValueError(
                f"pipeline {self.pipeline} does not belong to family '{self.family}' "
                f"(expected one of {sorted(pipelines)})"
            )
        valid = scheduler_names(self.family, self.prediction)
        if self.defaults.scheduler not in valid:
            raise ValueError(f"defaults.scheduler '{self.defaults.scheduler}' is not valid here; use one of {valid}")
        if self.dtype == "bfloat16" and self.variant == "fp16":
            raise ValueError("dtype bfloat16 with variant fp16 would round weights twice; use variant bf16 or none")
        return self

    @property
    def pipeline_class(self):
        return _diffusers_class(self.pipeline)

    @property
    def schedulers(self) -> list[str]:
        """Scheduler names valid for this model."""
        return scheduler_names(self.family, self.prediction)

    def fits(self, vram_gb: float) -> bool:
        """Whether the model runs with everything on a GPU of `vram_gb`."""
        return self.size.vram_gb is not None and self.size.vram_gb <= vram_gb


def _diffusers_class(name: str):
    """A diffusers class by name, imported only when a model is run (listing the registry needs no torch)."""
    import diffusers

    return getattr(diffusers, name)


class Registry:
    """Validated models, VAEs and adapters, looked up by key or alias."""

    def __init__(self, models: dict, vaes: dict, adapters: dict, path: Path | None = None, evaluators=None,
                 controlnets=None, preprocessors=None, ip_adapters=None, t2i_adapters=None,
                 upscalers=None, gguf=None):  # fmt: skip
        self.models, self.vaes, self.adapters, self.path = models, vaes, adapters, path
        self.evaluators = evaluators or {}
        self.controlnets, self.preprocessors = controlnets or {}, preprocessors or {}
        self.ip_adapters, self.t2i_adapters = ip_adapters or {}, t2i_adapters or {}
        self._aliases = {a: m.key for m in models.values() for a in m.aliases}
        self.upscalers: dict[str, UpscalerSpec | NetworkUpscalerSpec] = upscalers or {}
        self.local: dict[str, ModelSpec] = {}  # checkpoint files opened or scanned this session, by key
        self.gguf: dict[str, GgufSpec] = gguf or {}

    def add_file(self, path, allow_pickle: bool = False) -> ModelSpec:
        """A checkpoint file as an entry usable by key (its file stem) from now on; the same file keeps its key."""
        resolved = str(Path(path).expanduser().resolve())
        for spec in self.local.values():
            if spec.single_file == resolved and (allow_pickle or spec.weights == "safetensors"):
                return spec
        key = checkpoints.local_key(Path(resolved))
        taken = {*self.models, *self._aliases, *self.local}
        if key in taken:  # never shadow a registry model, nor another folder's file of the same name
            key = f"{key}-{hashlib.sha1(resolved.encode()).hexdigest()[:6]}"
        spec = checkpoints.spec_for_file(resolved, self, allow_pickle=allow_pickle, key=key)
        self.local[key] = spec
        return spec

    def gguf_for(self, key: str) -> list[GgufSpec]:
        """The GGUF files of the `gguf:` section that replace the denoiser of model `key` (smallest first)."""
        key = self.get(key).key
        return sorted((g for g in self.gguf.values() if g.model == key), key=lambda g: g.size_gb)

    def get(self, key: str) -> ModelSpec:
        """The model for a key or alias; an unknown key gets a 'did you mean'."""
        if isinstance(key, ModelSpec):
            return key
        key_l = str(key).strip().lower()
        if key_l in self.models:
            return self.models[key_l]
        if key_l in self._aliases:
            return self.models[self._aliases[key_l]]
        if key_l in self.local:
            return self.local[key_l]
        if checkpoints.looks_like_path(key) and Path(str(key)).expanduser().is_file():
            return self.add_file(key)
        by_repo = [m for m in self.models.values() if m.base is None and key in (m.repo, *m.previous_repos)]
        if by_repo:
            return by_repo[0]
        raise UnknownModelError(_unknown("model", key, [*self.models, *self._aliases], "models"))

    def entry(self, section: str, key: str):
        """The entry of `key` in a section ("vaes", "controlnets", ...; see `SECTIONS`); a typo gets a 'did you
        mean' and the `list` command that shows the section's keys."""
        entries = getattr(self, section)
        if key not in entries:
            raise UnknownModelError(_unknown(SECTIONS[section], key, entries, section))
        return entries[key]

    def vae(self, key: str) -> VaeSpec:
        return self.entry("vaes", key)

    def adapter(self, key: str) -> AdapterSpec:
        return self.entry("adapters", key)

    def evaluator(self, key: str) -> EvaluatorSpec:
        return self.entry("evaluators", key)

    def controlnet(self, key: str) -> ControlNetSpec:
        return self.entry("controlnets", key)

    def preprocessor(self, key: str) -> PreprocessorSpec:
        return self.entry("preprocessors", key)

    def upscaler(self, key: str) -> UpscalerSpec | NetworkUpscalerSpec:
        """An upscaler by key, or by its name as AUTOMATIC1111 records it (`4x-UltraSharp`), in any case."""
        named = {u.name.lower(): k for k, u in self.upscalers.items() if isinstance(u, NetworkUpscalerSpec)}
        return self.entry("upscalers", named.get(str(key).lower(), key))

    def ip_adapter(self, key: str) -> IpAdapterSpec:
        return self.entry("ip_adapters", key)

    def t2i_adapter(self, key: str) -> T2IAdapterSpec:
        return self.entry("t2i_adapters", key)

    def find(self, key: str) -> tuple[str, object]:
        """(section, entry) of a key in any section, models first; a typo gets the closest keys of every section."""
        for section in SECTIONS:
            try:
                return section, (self.get(key) if section == "models" else self.entry(section, key))
            except UnknownModelError:
                continue
        everything = {k: section for section in SECTIONS for k in getattr(self, section)}
        everything.update({a: "models" for a in self._aliases})
        close = difflib.get_close_matches(str(key).lower(), sorted(everything), n=3, cutoff=0.5)
        hint = "".join(f" Did you mean '{c}' (`python -m helpers list {_cli(everything[c])}`)?" for c in close[:1])
        more = f" Other close keys: {', '.join(repr(c) for c in close[1:])}." if len(close) > 1 else ""
        raise UnknownModelError(f"No registry entry '{key}'.{hint}{more} Run `python -m helpers list all` "
                                "to see every section's keys.")  # fmt: skip

    def list(
        self,
        family: str | None = None,
        task: str | None = None,
        tag: str | None = None,
        gated: bool | None = None,
        fits_gb: float | None = None,
        commercial: bool | None = None,
    ) -> list[ModelSpec]:
        """Models matching every filter given, in registry order."""
        out = []
        for m in self.models.values():
            if family and m.family != family:
                continue
            if task and task not in m.tasks:
                continue
            if tag and tag not in m.tags:
                continue
            if gated is not None and m.gated != gated:
                continue
            if fits_gb is not None and not m.fits(fits_gb):
                continue
            if commercial is not None and (m.commercial_use is True) != commercial:
                continue
            out.append(m)
        return out

    def table(self, models: list[ModelSpec] | None = None):
        """A pandas DataFrame of the key facts, one row a model, for notebooks."""
        import pandas as pd

        rows = [
            {
                "key": m.key,
                "name": m.name,
                "family": m.family,
                "tasks": ", ".join(m.tasks),
                "resolution": m.resolution,
                "steps": m.defaults.steps,
                "guidance": m.defaults.guidance_scale,
                "gated": m.gated,
                "license": m.license,
                "commercial": m.commercial_use,
                "download_gb": m.size.download_gb,
                "vram_gb": m.size.vram_gb,
                "repo": m.repo,
                "description": m.description,
            }
            for m in (self.models.values() if models is None else models)
        ]
        return pd.DataFrame(rows).set_index("key")


def _unknown(what: str, key: str, known, section: str) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(str(key).lower(), known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    listing = "python -m helpers list" + ("" if section == "models" else f" {_cli(section)}")
    return f"Unknown {what} '{key}'.{hint} Run `{listing}` to see them all."


def _cli(section: str) -> str:
    """A section's name on the command line: `ip_adapters` -> `ip-adapters`."""
    return section.replace("_", "-")


# The registry's sections: attribute (and models.yaml section) -> what one entry is called in messages.
SECTIONS = {
    "models": "model",
    "adapters": "adapter",
    "vaes": "VAE",
    "controlnets": "ControlNet",
    "t2i_adapters": "T2I-Adapter",
    "ip_adapters": "IP-Adapter",
    "upscalers": "upscaler",
    "preprocessors": "preprocessor",
    "evaluators": "evaluator",
    "gguf": "GGUF file",
}


_INHERITED = (
    "repo",
    "previous_repos",
    "revision",
    "revision_kind",
    "family",
    "pipeline",
    "variant",
    "dtype",
    "weights",
    "layout",
)


def parse(data: dict, path: Path | None = None) -> Registry:
    """Validate a registry mapping; any error names the entry and the field."""
    where = path or "registry"
    if not isinstance(data, dict) or "models" not in data:
        raise RegistryError(f"{where}: expected top-level sections 'models', 'vaes' and 'adapters'")
    extra = set(data) - {"models", "vaes", "adapters", "evaluators", "controlnets", "preprocessors", *_EXTRA_SECTIONS}
    if extra:
        raise RegistryError(f"{where}: unknown top-level section(s) {sorted(extra)}")
    vaes = _section(data.get("vaes") or {}, VaeSpec, "vaes", where)
    adapters = _section(data.get("adapters") or {}, AdapterSpec, "adapters", where)
    raw_models = data["models"] or {}
    for key, entry in raw_models.items():
        base_key = (entry or {}).get("base")
        if base_key:
            base = raw_models.get(base_key)
            if base is None or base.get("base"):
                raise RegistryError(f"{where}: models.{key}.base: '{base_key}' is not a model without a base")
            for field in _INHERITED:
                if field in entry:
                    raise RegistryError(f"{where}: models.{key}.{field}: inherited from base '{base_key}'; remove it")
                if field in base:
                    entry[field] = base[field]
    models = _section(raw_models, ModelSpec, "models", where)
    _check_references(models, vaes, adapters, where)
    evaluators = _section(data.get("evaluators") or {}, EvaluatorSpec, "evaluators", where)
    controlnets = _section(data.get("controlnets") or {}, ControlNetSpec, "controlnets", where)
    preprocessors = _section(data.get("preprocessors") or {}, PreprocessorSpec, "preprocessors", where)
    extras = _extra_sections(data, where)
    for g in extras["gguf"].values():
        if g.model not in models:
            raise RegistryError(f"{where}: gguf.{g.key}.model: no model '{g.model}' in 'models'")
    return Registry(models, vaes, adapters, path, evaluators, controlnets=controlnets, preprocessors=preprocessors,
                    **extras)  # fmt: skip


# Sections of modules used beside a model: IP-Adapters and T2I-Adapters join a loaded model for one generation
# (helpers.run.ip_adapter, helpers.control); upscalers run after it (helpers.upscale).
_EXTRA_SECTIONS = {"ip_adapters": IpAdapterSpec, "t2i_adapters": T2IAdapterSpec, "upscalers": upscaler_spec,
                   "gguf": GgufSpec}  # fmt: skip


def _extra_sections(data: dict, where) -> dict:
    """The IP-Adapter, T2I-Adapter and upscaler sections, validated: section name -> {key: spec}."""
    return {name: _section(data.get(name) or {}, spec, name, where) for name, spec in _EXTRA_SECTIONS.items()}


def _section(raw: dict, spec, name: str, where) -> dict:
    out = {}
    for key, entry in raw.items():
        if not isinstance(entry, dict):
            raise RegistryError(f"{where}: {name}.{key}: expected a mapping of fields")
        try:
            out[key] = (spec(entry) if spec is upscaler_spec else spec).model_validate({**entry, "key": key})
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "(entry)"
            raise RegistryError(f"{where}: {name}.{key}.{field}: {err['msg']}") from None
    return out


def _check_references(models, vaes, adapters, where):
    seen = {}
    for m in models.values():
        for name in (m.key, *m.aliases):
            if name in seen and seen[name] != m.key:
                raise RegistryError(f"{where}: models.{m.key}.aliases: '{name}' is already used by '{seen[name]}'")
            seen[name] = m.key
        for role, vae_key in m.components.items():
            if vae_key not in vaes:
                raise RegistryError(f"{where}: models.{m.key}.components.{role}: no VAE '{vae_key}' in 'vaes'")
            if m.family not in vaes[vae_key].families:
                raise RegistryError(
                    f"{where}: models.{m.key}.components.{role}: VAE '{vae_key}' is for {vaes[vae_key].families}"
                )
        for a in m.adapters:
            if a not in adapters:
                raise RegistryError(f"{where}: models.{m.key}.adapters: no adapter '{a}' in 'adapters'")
            if adapters[a].family != m.family:
                raise RegistryError(
                    f"{where}: models.{m.key}.adapters: '{a}' is a {adapters[a].family} adapter, "
                    f"this is a {m.family} model"
                )


# Another registry file for the whole session (the CLI, notebooks): read here and nowhere else.
REGISTRY_ENV = "SDZOO_REGISTRY"


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""


def _unique_mapping(loader, node, deep=False):
    lines = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if key in lines:
            raise RegistryError(
                f"{loader.name}: '{key}' is given twice, at lines {lines[key]} and {line}: "
                "remove or rename one of them (otherwise the last one would silently win)"
            )
        lines[key] = line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load(path: str | Path | None = None) -> Registry:
    """Load and validate a registry file (default: `$SDZOO_REGISTRY`, else the project's `models.yaml`)."""
    path = Path(path) if path else default_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegistryError(f"{path}: no such registry file; check the path (or unset ${REGISTRY_ENV})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RegistryError(f"{path}: cannot read the registry file: {e}") from None
    loader = _UniqueKeyLoader(text)
    loader.name = str(path)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as e:
        raise RegistryError(f"{path}: not valid YAML: {e}") from None
    finally:
        loader.dispose()
    return parse(data, path)


def default_path() -> Path:
    """The registry file in use: `$SDZOO_REGISTRY` where set, else the project's `models.yaml`."""
    return Path(os.environ.get(REGISTRY_ENV) or REGISTRY_PATH)


@functools.cache
def _load_cached(path: Path) -> Registry:
    return load(path)


def default() -> Registry:
    """The registry in use (`$SDZOO_REGISTRY` or the project's `models.yaml`), loaded once per file."""
    return _load_cached(default_path())


def get(key: str) -> ModelSpec:
    """A model of the project's registry by key or alias."""
    return default().get(key)


def models(**filters) -> list[ModelSpec]:
    """Models of the project's registry matching the filters of `Registry.list`."""
    return default().list(**filters)
