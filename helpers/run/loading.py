"""Load a registry model as a ready diffusers pipeline, with errors that say what to do next.

>>> from helpers import load_pipeline
>>> pipe = load_pipeline("sd15")                     # cuda, then mps, then cpu; fp16 on a GPU
>>> inpaint = load_pipeline("sd15", task="img2img")  # shares the weights through `from_pipe`
"""

from __future__ import annotations

import contextlib
import importlib
import json
import re
from pathlib import Path

import diffusers
import huggingface_hub
import torch
from huggingface_hub import errors as hub_errors

from ..base import online as hub
from ..base import quiet
from ..base.devices import pick_device, pick_dtype
from ..base.errors import ModelAccessError, ModelNotCachedError, ZooError
from ..base.families import FAMILIES
from ..base.loaded import LoadedModel, attach, record
from ..zoo import checkpoints
from ..zoo.registry import ModelSpec, Registry
from ..zoo.registry import default as default_registry
from . import fast as fast_mod
from . import memory as memory_mod
from . import plan as plan_mod

TASK_PIPELINES = {
    "text2img": diffusers.AutoPipelineForText2Image,
    "img2img": diffusers.AutoPipelineForImage2Image,
    "inpaint": diffusers.AutoPipelineForInpainting,
}
# Instruction editing (an instruction prompt and an input image) runs on the editing models' own pipelines.
INSTRUCT_PIPELINES = frozenset({"FluxKontextPipeline", "QwenImageEditPlusPipeline"})
TASKS = (*TASK_PIPELINES, "instruct")


def check_task(spec: ModelSpec, task: str, registry: Registry) -> None:
    """An error naming the models that can, when `spec` cannot do `task`."""
    if task not in TASKS:
        raise ZooError(f"Unknown task '{task}'; use one of {sorted(TASKS)}")
    if task not in spec.tasks:
        if task == "instruct":  # editing models are few and of several families: name them all
            others = [m.key for m in registry.list(task=task)]
            raise ZooError(
                f"Model '{spec.key}' cannot edit an image by instruction (it supports {spec.tasks}). "
                f"Models that can: {others or 'none'}; or use img2img or inpaint with '{spec.key}'"
            )
        others = [m.key for m in registry.list(family=spec.family, task=task)]
        raise ZooError(
            f"Model '{spec.key}' does not support task '{task}' (it supports {spec.tasks}). "
            f"{spec.family} models that do: {others or 'none'}"
        )


def task_of_pipeline(name: str) -> str:
    """The task a diffusers pipeline class (by name) does."""
    if name in INSTRUCT_PIPELINES:
        return "instruct"
    return "inpaint" if "Inpaint" in name else "img2img" if "Img2Img" in name else "text2img"


def native_task(spec: ModelSpec) -> str:
    return task_of_pipeline(spec.pipeline)


def default_task(spec: ModelSpec) -> str:
    """The task a model loads for when none is named: text to image, else its own (an editing model's instruct)."""
    return "text2img" if "text2img" in spec.tasks else native_task(spec)


def load_pipeline(
    key: str | ModelSpec,
    task: str | None = None,
    device: str = "auto",
    dtype: str | torch.dtype = "auto",
    registry: Registry | None = None,
    memory="auto",
    fast="auto",
    plan: str | None = None,
    **from_pretrained_kwargs,
):
    """Load a registry model for a task (by default text2img, or the entry's own where it has none: instruct).

    Uses the entry's revision and weight variant, safetensors only (unless the entry says `weights: bin`),
    its VAE override and its adapters (fused). `memory` is `"auto"` (a policy chosen for this machine and
    printed in one line: the model's plan for this machine, `helpers.plan`), a policy name from
    `helpers.memory.POLICIES`, or a `Policy`. `plan` names one option of the plan instead ("gguf-q4_k_s",
    "nf4+model-offload", "torchao-int8": `python -m helpers plan KEY` lists them). In float16 the SDXL
    VAE, which overflows to black images, is replaced by the registry's fp16-safe one. `fast` is a preset of
    `helpers.fast.PRESETS` ("auto", "off", "max", "graphs") or a `FastMode`. `from_pretrained_kwargs` go to
    diffusers unchanged.

    >>> pipe = load_pipeline("sdxl-turbo", device="cuda")
    """
    reg = registry or default_registry()
    spec = reg.get(key)
    task = task or default_task(spec)
    check_task(spec, task, reg)
    device = pick_device(device)
    torch_dtype = pick_dtype(spec, device, dtype)
    try:
        policy = plan_mod.policy_for(spec, device, memory, plan, reg)
    except ZooError as e:  # "does not fit" must not hide that the download will need a licence and a token
        if not spec.gated or is_cached(spec, from_pretrained_kwargs.get("cache_dir")):
            raise
        raise ZooError(f"{e}{_gated_note(spec)}") from e
    kwargs = hub_kwargs(spec) | {"dtype": torch_dtype}
    vaes = dict(spec.components)
    fix = fp16_vae_fix(spec, torch_dtype, reg)
    if fix and "vae" not in vaes:
        vaes["vae"] = fix
    for role, vae_key in vaes.items():
        kwargs[role] = load_vae(vae_key, torch_dtype, reg)
    if policy.quantize and memory_mod.quantization_config(spec, torch_dtype, policy.quantize) is not None:
        kwargs["quantization_config"] = memory_mod.quantization_config(spec, torch_dtype, policy.quantize)
    if policy.quantize and policy.quantize.startswith("gguf:"):  # the file replaces the repo's denoiser folder
        with hub_errors_explained(spec), quiet.loading():
            denoiser = memory_mod.gguf_denoiser(spec, policy.quantize[5:], torch_dtype, reg)
        kwargs[FAMILIES[spec.family].denoiser] = denoiser
    # diffusers maps "cuda", not "cuda:1"; layerwise casting happens on the CPU, before the weights move
    direct = policy.name == "gpu" and device == "cuda" and not spec.adapters and policy.quantize != "layerwise-fp8"
    if direct:  # weights go shard by shard to the GPU: system RAM never holds the whole model
        kwargs["device_map"] = device
    kwargs.update(from_pretrained_kwargs)
    print(f"[{spec.key}] memory: {policy.describe()}" + (f"; vae: {fix} (fp16-safe)" if fix else ""))
    with hub_errors_explained(spec), quiet.loading():
        if spec.single_file:
            pipe = from_single_file(spec, kwargs, reg)
        else:
            variant, full = weight_plan(spec, kwargs.get("cache_dir"), skip=set(kwargs))
            if not variant:  # no component has the variant files: the whole pipeline loads without the variant
                kwargs.pop("variant", None)
            for name, cls in full.items():  # no variant files: full precision for this component alone
                kwargs[name] = cls.from_pretrained(
                    spec.repo, subfolder=name, revision=spec.revision, torch_dtype=torch_dtype,
                    use_safetensors=True, cache_dir=kwargs.get("cache_dir"),
                )  # fmt: skip
            pipe = spec.pipeline_class.from_pretrained(spec.repo, **kwargs)
        for adapter_key in spec.adapters:
            _fuse_adapter(pipe, reg.adapter(adapter_key))
    memory_mod.cast_layerwise(pipe, policy, torch_dtype)
    attach(pipe, LoadedModel(spec, policy, vaes.get("vae", ""), default_scheduler=pipe.scheduler))
    if task != native_task(spec):
        pipe = derive(pipe, task)
    memory_mod.apply(pipe, policy, device)  # after a direct load this only moves components passed in (a VAE)
    mode = fast_mod.apply(pipe, fast_mod.choose(fast, device, policy.name, fast_mod.denoiser(pipe)))
    if mode != fast_mod.PRESETS["off"]:
        print(f"[{spec.key}] fast: {mode.describe()}")
    return pipe


_CONFIG_FILES = ["*.json", "**/*.json", "*.txt", "**/*.txt", "**/*.model"]


def checkpoint_file(spec: ModelSpec, cache_dir=None) -> Path:
    """The entry's checkpoint file on disk: a local path, or the file downloaded from its repo (cached)."""
    if Path(spec.single_file).is_absolute():
        path = Path(spec.single_file)
    else:
        path = Path(huggingface_hub.hf_hub_download(
            spec.repo, spec.single_file, revision=spec.revision, cache_dir=cache_dir
        ))  # fmt: skip
    checkpoints.refuse_pickle(path, spec.weights == "bin")
    return path


def from_single_file(spec: ModelSpec, kwargs: dict, reg: Registry):
    """A single-file entry through diffusers' `from_single_file`: the config is the registry's base model of its
    family (read from the cache offline), and whatever the file lacks (a VAE, text encoders) comes from that base."""
    path = checkpoint_file(spec, kwargs.get("cache_dir"))
    found = checkpoints.detect_file(path, allow_pickle=spec.weights == "bin")
    base = checkpoints.config_entry(spec, reg)
    config = huggingface_hub.snapshot_download(
        base.repo, revision=base.revision, allow_patterns=_CONFIG_FILES, cache_dir=kwargs.get("cache_dir"),
        local_files_only=huggingface_hub.constants.HF_HUB_OFFLINE,
    )  # fmt: skip
    index = json.loads((Path(config) / "model_index.json").read_text())
    in_file = {"vae": found.vae, "text_encoder": found.text_encoders, "text_encoder_2": found.text_encoders,
               "text_encoder_3": found.text_encoders}  # fmt: skip
    parts = {}
    for name, entry in index.items():
        if isinstance(entry, list) and entry[0] and not in_file.get(name, True) and name not in kwargs:
            borrowed = hub_kwargs(base) | {"dtype": kwargs["dtype"], "cache_dir": kwargs.get("cache_dir")}
            if base.layout.variant_components is not None and name not in base.layout.variant_components:
                borrowed.pop("variant", None)
            parts[name] = _component_class(*entry).from_pretrained(base.repo, subfolder=name, **borrowed)
    if spec.family == "sdxl" and found.text_encoders and found.kind != "refiner" and "text_encoder_2" not in kwargs:
        parts["text_encoder_2"] = _open_clip_from_file(path, config, _component_class(*index["text_encoder_2"]),
                                                       kwargs["dtype"])  # fmt: skip
    if "safety_checker" in index:  # checkpoint files carry no safety checker
        parts |= {"safety_checker": None, "requires_safety_checker": False}
    passed = {k: v for k, v in kwargs.items() if k not in ("revision", "use_safetensors", "variant",
                                                           "quantization_config", "device_map")}  # fmt: skip
    pipe = spec.pipeline_class.from_single_file(str(path), config=config, local_files_only=True, **passed, **parts)
    scheduler = pipe.scheduler
    if spec.prediction in ("epsilon", "v_prediction") and scheduler.config.get("prediction_type") != spec.prediction:
        pipe.scheduler = type(scheduler).from_config(scheduler.config, prediction_type=spec.prediction)
    return pipe


def _open_clip_from_file(path: Path, config: str, cls, dtype):
    """SDXL's second text encoder (OpenCLIP bigG) read from its SGM prefix with diffusers' converter. diffusers itself
    picks an SDXL file's encoders by their width, which cannot tell apart two encoders of one width (tiny models)."""
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
    from safetensors import safe_open

    prefix = "conditioner.embedders.1.model."
    with safe_open(str(path), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}  # noqa: SIM118 - not a dict
    model = cls(cls.config_class.from_pretrained(config, subfolder="text_encoder_2"))
    model.load_state_dict(convert_open_clip_checkpoint(model, state, prefix=prefix), strict=True)
    return model.to(dtype).eval()


def derive(pipe, task: str):
    """The pipeline for another task on the same weights (diffusers' `from_pipe`), sharing the model's record."""
    return attach(TASK_PIPELINES[task].from_pipe(pipe), record(pipe))


def fp16_vae_fix(spec: ModelSpec, dtype: torch.dtype, reg: Registry) -> str | None:
    """The registry VAE that replaces a family's VAE which overflows in float16 (SDXL's), if any applies."""
    if dtype != torch.float16 or spec.prediction == "edm":  # Playground v2.5 normalises latents its own way
        return None
    return next((v.key for v in reg.vaes.values() if spec.family in v.fp16_fix_for), None)


def load_vae(key: str, dtype: torch.dtype, registry: Registry | None = None):
    """A VAE from the registry's `vaes` section."""
    vae = (registry or default_registry()).vae(key)
    cls = getattr(diffusers, vae.cls_name)
    kwargs = hub_kwargs(vae) | {"dtype": dtype}
    if vae.subfolder:
        kwargs["subfolder"] = vae.subfolder
    with hub_errors_explained(vae), quiet.loading():
        return cls.from_pretrained(vae.repo, **kwargs)


def is_cached(spec, cache_dir=None) -> bool:
    """Whether the entry's revision is in the local cache (its `model_index.json`, the first file a load reads)."""
    found = huggingface_hub.try_to_load_from_cache(
        spec.repo, "model_index.json", revision=spec.revision, cache_dir=cache_dir
    )
    return isinstance(found, str)


def _repo_files(spec, cache_dir=None) -> list[str] | None:
    """The repo's files: the local snapshot's offline, the Hub's listing online; None if unknown."""
    try:
        if huggingface_hub.constants.HF_HUB_OFFLINE:
            root = Path(
                huggingface_hub.snapshot_download(
                    spec.repo, revision=spec.revision, cache_dir=cache_dir, local_files_only=True
                )
            )
            return [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        return huggingface_hub.list_repo_files(spec.repo, revision=spec.revision)
    except Exception:  # noqa: BLE001 - from_pretrained then says what is wrong (gated, not cached, ...)
        return None


def weight_plan(spec, cache_dir=None, skip=()) -> tuple[str | None, dict]:
    """Decide each component's files from the repo's listing: (the variant to load, {component: class} to load alone).

    The components without the variant's files load alone in full precision; when no component has them, the
    variant is None and the whole pipeline loads without it. Prints one line when components fall back to full
    precision; refuses a component with only pickled weights.
    """
    files = _repo_files(spec, cache_dir)
    if files is None or "model_index.json" not in files:
        return spec.variant, {}
    by_folder = {}
    for f in files:
        folder, _, name = f.rpartition("/")
        if folder and "/" not in folder and name.endswith((".safetensors", ".bin")):
            by_folder.setdefault(folder, []).append(name)
    what = f"'{spec.key}' ({spec.repo} at revision {spec.revision})"
    fallback = []
    for folder, names in sorted(by_folder.items()):
        if folder in skip:
            continue
        safe = [n for n in names if n.endswith(".safetensors")]
        if spec.weights == "safetensors" and not safe:
            raise ModelAccessError(
                f"Model {what}: component '{folder}' has only pickled .bin files ({', '.join(sorted(names))}), "
                "which can run code when loaded. Only if you trust the repo, set `weights: bin` in its models.yaml "
                "entry."
            )
        pool = safe if spec.weights == "safetensors" else names
        v = spec.variant
        if v and not any(f".{v}." in n or f".{v}-" in n for n in pool):
            fallback.append(folder)
    if not fallback:
        return spec.variant, {}
    used = sorted(set(by_folder) - set(fallback) - set(skip))
    if not used:
        print(
            f"[{spec.key}] weights: full precision for {', '.join(fallback)} (the repo has no {spec.variant} files "
            "for any component)"
        )
        return None, {}
    index = json.loads(Path(huggingface_hub.hf_hub_download(
        spec.repo, "model_index.json", revision=spec.revision, cache_dir=cache_dir
    )).read_text())  # fmt: skip
    print(
        f"[{spec.key}] weights: {spec.variant} for {', '.join(used)}; full precision for "
        f"{', '.join(fallback)} (the repo has no {spec.variant} files for them)"
    )
    return spec.variant, {name: _component_class(*index[name]) for name in fallback}


def _component_class(library: str, name: str):
    """A model_index.json entry's class: a library's ("diffusers", "transformers") or a diffusers pipeline's."""
    try:
        return getattr(importlib.import_module(library), name)
    except ModuleNotFoundError:  # e.g. ["stable_diffusion", "StableDiffusionSafetyChecker"]
        return getattr(importlib.import_module(f"diffusers.pipelines.{library}"), name)


def hub_kwargs(spec) -> dict:
    """from_pretrained's revision, safetensors and variant arguments of an entry. Every load asks for these
    first, so here the Hub is asked once whether it can be reached (helpers.base.online): without a network the load
    then reads the cache at once, and fails fast with our message, instead of after five retries."""
    hub.unreachable()
    kwargs = {"revision": spec.revision, "use_safetensors": spec.weights == "safetensors"}
    if spec.variant:
        kwargs["variant"] = spec.variant
    return kwargs


def _fuse_adapter(pipe, adapter) -> None:
    """Load a registry LoRA, fuse it at its recommended scale, and drop the LoRA layers."""
    pipe.load_lora_weights(
        adapter.repo, weight_name=adapter.weight_name, revision=adapter.revision, adapter_name=adapter.key
    )
    pipe.fuse_lora(adapter_names=[adapter.key], lora_scale=adapter.scale)
    pipe.unload_lora_weights()


@contextlib.contextmanager
def hub_errors_explained(spec):
    """Turn Hub and diffusers loading errors into one `ModelAccessError` that says what to do next."""
    try:
        yield
    except ZooError:
        raise
    except Exception as e:
        message = explain(spec, e)
        if message is None:
            raise
        not_cached = isinstance(_hub_cause(e), (hub_errors.LocalEntryNotFoundError, hub_errors.OfflineModeIsEnabled))
        raise (ModelNotCachedError if not_cached or "not in the local cache" in message else ModelAccessError)(
            message
        ) from e


def _hub_cause(e: BaseException):
    """The first Hub error in an exception's chain (diffusers re-raises them as OSError)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(
            e, (hub_errors.HfHubHTTPError, hub_errors.LocalEntryNotFoundError, hub_errors.OfflineModeIsEnabled)
        ):
            return e
        e = e.__cause__ or e.__context__
    return None


def explain(spec, e: BaseException) -> str | None:
    """A message for people about why loading `spec` failed, or None when it is not a Hub or file problem."""
    what = f"'{spec.key}' ({spec.repo} at revision {spec.revision})"
    cause = _hub_cause(e)
    if isinstance(cause, hub_errors.GatedRepoError):
        return _gated_message(spec, what)
    if isinstance(cause, hub_errors.RevisionNotFoundError):
        return (
            f"Model {what}: revision '{spec.revision}' does not exist in the repo any more. "
            f"Run `python -m helpers doctor {spec.key} --pin` to pin the current commit."
        )
    if isinstance(cause, hub_errors.RepositoryNotFoundError):
        moved = getattr(spec, "previous_repos", [])
        hint = f" (it used to be at {', '.join(moved)})" if moved else ""
        token = "" if huggingface_hub.get_token() else " If it is private, log in with `hf auth login`."
        return (
            f"Model {what}: the repo does not exist on the Hub{hint}: it was deleted, renamed or made private."
            f"{token} Run `python -m helpers doctor {spec.key}` to check the registry, and update models.yaml."
        )
    if _no_safetensors(spec, e):  # before "not cached": offline, a missing file reads as a cache miss
        return (
            f"Model {what}: the repo has no safetensors weights, only pickled .bin files, which can run code "
            "when loaded. Only if you trust the repo, set `weights: bin` in its models.yaml entry."
        )
    if isinstance(cause, (hub_errors.LocalEntryNotFoundError, hub_errors.OfflineModeIsEnabled)):
        return _not_cached_message(what) + _gated_note(spec)
    damaged = _damaged_file(e)
    if damaged:
        return (
            f"Model {what}: the weight file {damaged} is damaged (cut short by an interrupted download, or corrupt). "
            f"Delete it (or the model's whole folder: `hf cache delete`, or remove {_snapshot_folder(damaged)}) "
            "and load the model again online to download it again."
        )
    text = str(e)
    if (
        isinstance(e, (OSError, ValueError))
        and "necessary `safetensors` weights" in text
        and getattr(spec, "weights", "") == "safetensors"
    ):
        return (
            f"Model {what}: the repo has no safetensors weights, only pickled .bin files, which can run code "
            "when loaded. Only if you trust the repo, set `weights: bin` in its models.yaml entry."
        )
    if "variant" in text and getattr(spec, "variant", None):
        return (
            f"Model {what}: the repo has no '{getattr(spec, 'variant', None)}' variant files for some component "
            f"({_first_line(text)}). Set `variant: null` in its models.yaml entry if the repo stores "
            "half-precision weights without a suffix."
        )
    if isinstance(e, OSError) and ("not fully cached" in text or "offline" in text.lower()):
        return _not_cached_message(what) + _gated_note(spec)
    return None


def _no_safetensors(spec, e: BaseException) -> bool:
    """Whether a module entry asking for safetensors failed because its repo keeps only pickled .bin weights."""
    if getattr(spec, "weights", "") != "safetensors" or not re.search(r"file named \S+\.safetensors", str(e)):
        return False
    try:
        files = huggingface_hub.get_cached_repo_tree(spec.repo, revision=spec.revision)
    except Exception:  # noqa: BLE001 - not cached: diffusers said the Hub has no such file
        return "does not appear to have" in str(e)
    return any(f.path.endswith(".bin") for f in files) and not any(f.path.endswith(".safetensors") for f in files)


def _damaged_file(e: BaseException) -> str | None:
    """The weight file named in an exception chain that says it could not be read (safetensors, torch.load)."""
    seen, texts, damaged = set(), [], False
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        texts.append(str(e))
        damaged |= type(e).__name__ in ("SafetensorError", "UnpicklingError", "HeaderTooLarge") or isinstance(
            e, UnicodeDecodeError
        )
        e = e.__cause__ or e.__context__
    joined = "\n".join(texts)
    if not (damaged or "Unable to load weights from checkpoint file" in joined):
        return None
    found = re.search(r"""['"]?(/[^'"\n]+?\.(?:safetensors|bin))['"]?""", joined)
    return found.group(1) if found else None


def _snapshot_folder(path: str) -> str:
    parts = Path(path).parts
    return str(Path(*parts[: parts.index("snapshots") + 2])) if "snapshots" in parts else str(Path(path).parent)


def _gated_message(spec, what: str) -> str:
    if huggingface_hub.get_token() is None:
        return (
            f"Model {what} is gated and no Hugging Face token is set. Accept its licence at {spec.url} "
            "(logged in), then run `hf auth login` (in Colab: add HF_TOKEN under Secrets) and try again."
        )
    return (
        f"Model {what} is gated and your token has no access to it. Accept the licence at {spec.url} "
        "with the account the token belongs to (see `hf auth whoami`), then try again."
    )


def _gated_note(spec) -> str:
    if not getattr(spec, "gated", False):
        return ""
    return (
        f" It is gated: once online, accept its licence at {spec.url} (logged in) and run `hf auth login`, "
        "or the download will be refused."
    )


def _not_cached_message(what: str) -> str:
    offline = hub.offline_by_setting()
    why = "HF_HUB_OFFLINE=1 is set" if offline else f"the Hub cannot be reached ({hub.unreachable() or 'no answer'})"
    cache = huggingface_hub.constants.HF_HUB_CACHE
    return (
        f"Model {what} is not in the local cache ({cache}) and {why}. Connect to the network once "
        f"{'(unset HF_HUB_OFFLINE) ' if offline else ''}to download it; to try the project with no network at "
        "all, build tiny stand-ins with `python -m helpers offline-hub DIR` and set HF_HUB_CACHE=DIR."
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else ""


__all__ = ["load_pipeline", "load_vae", "derive", "native_task"]
