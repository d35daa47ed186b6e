"""Full-size models with random weights, built from a checkpoint's config files, for benchmarks with no network.

Random weights cost exactly what real ones cost (the same shapes, files, kernels and bytes), so load time,
speed and memory measured on them are real; the images are noise. The models are written into a Hugging Face
cache at each registry entry's real repo id and revision, with the entry's variant file names, so the ordinary
loading code (and plain `DiffusionPipeline.from_pretrained`) finds them with `HF_HUB_CACHE=DIR HF_HUB_OFFLINE=1`.

    python -m helpers bench sd15 sdxl-base --random-weights --config-dir ../shared/real-configs
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import diffusers
import torch
import transformers

from ..base.devices import default_dtype
from ..base.errors import ZooError
from ..offline.hub import commit_to_cache, mark_built
from ..run.loading import fp16_vae_fix
from ..zoo.registry import ModelSpec, Registry
from ..zoo.registry import default as default_registry

# Where a family's configs sit under --config-dir, when there is no folder named after the registry key.
FAMILY_FOLDERS = {"sd1": "sd15", "sdxl": "sdxl", "flux": "flux"}
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, None: None}


def config_folder(config_dir: str | Path, spec: ModelSpec) -> Path:
    """The folder with `spec`'s model_index.json: DIR/KEY, DIR/<family folder> or DIR itself."""
    root = Path(config_dir).expanduser()
    tried = [root / spec.key, root / FAMILY_FOLDERS.get(spec.family, spec.family), root]
    for folder in tried:
        index = folder / "model_index.json"
        if index.is_file():
            cls = json.loads(index.read_text())["_class_name"]
            if cls != spec.pipeline:
                raise ZooError(
                    f"{index} is a {cls}, but '{spec.key}' is a {spec.pipeline}: point --config-dir at its configs"
                )
            return folder
    raise ZooError(
        f"No model_index.json for '{spec.key}' in {', '.join(str(t) for t in tried)}. --config-dir needs the "
        "checkpoint's config files in diffusers layout (model_index.json and one folder per component)."
    )


def _random_model(library: str, cls_name: str, folder: Path, dtype: torch.dtype, device: str):
    """A model of the component's class and config with freshly initialised weights, in `dtype` on `device`."""
    with torch.device(device), default_dtype(dtype):
        if library == "diffusers":
            cls = getattr(diffusers, cls_name)
            return cls.from_config(cls.load_config(str(folder)))
        if library == "stable_diffusion":  # the SD 1.x safety checker: a CLIP vision model and concept embeddings
            from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

            return StableDiffusionSafetyChecker(transformers.CLIPConfig.from_pretrained(str(folder)))
        cls = getattr(transformers, cls_name)
        return cls(cls.config_class.from_pretrained(str(folder)))


def write_random_pipeline(spec: ModelSpec, configs: Path, out: Path, device: str = "cpu") -> None:
    """Write `spec`'s pipeline in diffusers layout with random weights, saved as the entry's variant files."""
    if spec.adapters:
        raise ZooError(f"'{spec.key}' fuses adapters; benchmark its base model instead")
    index = json.loads((configs / "model_index.json").read_text())
    dtype = _DTYPES.get(spec.variant) or (torch.bfloat16 if spec.dtype == "bfloat16" else torch.float16)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(configs / "model_index.json", out / "model_index.json")
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        library, cls_name = value
        src, dst = configs / name, out / name
        if not (src / "config.json").is_file():
            shutil.copytree(src, dst, dirs_exist_ok=True)  # tokenizer, scheduler, image processor: files as they are
            continue
        model = _random_model(library, cls_name, src, dtype, device)
        model.save_pretrained(str(dst), variant=spec.variant, safe_serialization=True)
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


def vae_config(vae_spec, configs: Path) -> dict:
    """A registry VAE's own config: the family's `vae/config.json` architecture, with what that VAE changes.

    madebyollin/sdxl-vae-fp16-fix has SDXL's architecture and `force_upcast: false` (it is safe in float16): built
    from SDXL's config as it is, it would upcast to float32 for every decode and time the wrong VAE.
    """
    config = json.loads((configs / "vae" / "config.json").read_text())
    if vae_spec.fp16_fix_for:
        config["force_upcast"] = False
    return config


def write_random_vae(vae_spec, configs: Path, out: Path, device: str = "cpu") -> None:
    """A registry VAE (the SDXL fp16-fix, say) with random weights, from its own config (`vae_config`)."""
    target = out / vae_spec.subfolder if vae_spec.subfolder else out
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(vae_config(vae_spec, configs)))
        model = _random_model("diffusers", vae_spec.cls_name, Path(tmp), torch.float16, device)
    model.save_pretrained(str(target), variant=vae_spec.variant, safe_serialization=True)


def build(keys, config_dir: str | Path, cache_dir: str | Path, registry: Registry | None = None, device: str = "cpu"):
    """Write random-weight models of `keys` (and the VAEs they load) into a Hugging Face cache; returns the cache."""
    reg = registry or default_registry()
    cache = Path(cache_dir).expanduser().resolve()
    cache.mkdir(parents=True, exist_ok=True)
    for key in keys:
        spec = reg.get(key)
        configs = config_folder(config_dir, spec)
        vaes = list(spec.components.values())
        fix = fp16_vae_fix(spec, torch.float16 if spec.dtype == "float16" else torch.bfloat16, reg)
        vaes += [fix] if fix and fix not in vaes else []
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            write_random_pipeline(spec, configs, Path(tmp) / "model", device)
            commit_to_cache(cache, spec.repo, spec.revision, spec.revision_kind, Path(tmp) / "model", move=True)
            for vae_key in vaes:
                vae = reg.vae(vae_key)
                write_random_vae(vae, configs, Path(tmp) / vae_key, device)
                commit_to_cache(cache, vae.repo, vae.revision, vae.revision_kind, Path(tmp) / vae_key, move=True)
    mark_built(cache, f"Full-size random-weight models for benchmarks ({', '.join(keys)}); their images are noise.")
    return cache
