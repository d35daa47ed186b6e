"""Your own checkpoint files: open one, or a whole A1111 / ComfyUI models folder, and use them by name.

A file is told apart by its tensors (`helpers.zoo.checkpoints`), loads through diffusers' `from_single_file` with
the config of the registry's base model of its family, and gets A1111's model hash (cached) in every PNG it makes.

>>> pipe = load_single_file("~/sd/models/Stable-diffusion/dreamshaper_8.safetensors")
>>> helpers.local_models("~/sd/models/Stable-diffusion")     # a table: key, file, family, size, hash
>>> helpers.compare(["dreamshaper_8", "sd15"], "a lighthouse at dusk")
"""

from __future__ import annotations

from pathlib import Path

from ..base.errors import ZooError
from ..zoo import checkpoints
from ..zoo.registry import ModelSpec, Registry
from ..zoo.registry import default as default_registry
from .loading import checkpoint_file, load_pipeline

# Where A1111 and ComfyUI keep their checkpoints, under their install folder.
MODEL_FOLDERS = ("models/Stable-diffusion", "models/checkpoints")


def spec_for(path_or_spec, registry: Registry | None = None, allow_pickle: bool = False) -> ModelSpec:
    """The entry of a checkpoint file (registered under its file stem), or the registry entry given."""
    reg = registry or default_registry()
    if isinstance(path_or_spec, ModelSpec):
        return path_or_spec
    if checkpoints.looks_like_path(path_or_spec):
        return reg.add_file(path_or_spec, allow_pickle=allow_pickle)
    return reg.get(path_or_spec)


def load_single_file(path_or_spec, task: str = "text2img", allow_pickle: bool = False,
                     registry: Registry | None = None, **load_kwargs):  # fmt: skip
    """Load a checkpoint file (or a registry single-file entry) as a ready pipeline, like `load_pipeline`.

    `allow_pickle=True` opens `.ckpt`/`.pt` files, which can run code when loaded: only for files you trust.

    >>> pipe = load_single_file("juggernautXL_v9.safetensors", device="cuda")
    """
    reg = registry or default_registry()
    return load_pipeline(spec_for(path_or_spec, reg, allow_pickle), task=task, registry=reg, **load_kwargs)


def model_name(spec: ModelSpec) -> str:
    """The PNG info's "Model": a local file's stem, as A1111 writes it (usable by name once scanned), else the key."""
    return Path(spec.single_file).stem if spec.single_file and Path(spec.single_file).is_absolute() else spec.key


def hash_of(spec: ModelSpec) -> str:
    """A1111's model hash of a single-file entry's checkpoint ("" for a diffusers folder)."""
    if not spec.single_file:
        return ""
    return checkpoints.model_hash(checkpoint_file(spec))


def _files(folder: Path) -> list[tuple[Path, Path]]:
    """(models folder, file) for each checkpoint under an install folder's model folders, or under `folder`."""
    roots = [folder / sub for sub in MODEL_FOLDERS if (folder / sub).is_dir()] or [folder]
    return [(root, p) for root in roots for p in sorted(root.rglob("*")) if p.suffix.lower() in checkpoints.SUFFIXES]


def local_models(folder: str | Path, allow_pickle: bool = False, registry: Registry | None = None):
    """Scan a models folder (A1111's `models/Stable-diffusion`, ComfyUI's `models/checkpoints`, or an install folder
    holding either) and make each checkpoint usable by key wherever a registry key is: generate, compare, sweep.

    Returns a table (pandas DataFrame), one row a file: key, file, family, kind, size, A1111 hash, or why it was
    skipped. Pickled files are listed as refused unless `allow_pickle`.

    >>> helpers.local_models("~/stable-diffusion-webui")
    """
    import pandas as pd

    reg = registry or default_registry()
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ZooError(f"{folder}: no such folder; give A1111's models/Stable-diffusion or ComfyUI's "
                       "models/checkpoints")
    rows = []
    for root, path in _files(folder):
        row = {"key": "", "file": path.relative_to(root).as_posix(), "family": "", "kind": "",
               "size_gb": round(path.stat().st_size / 1e9, 2), "hash": "", "note": ""}  # fmt: skip
        try:
            spec = reg.add_file(path, allow_pickle=allow_pickle)
            found = checkpoints.detect_file(path, allow_pickle=allow_pickle)
        except ZooError as e:
            rows.append(row | {"note": str(e).replace(str(path), path.name)})
            continue
        row |= {"key": spec.key, "family": spec.family, "kind": found.kind, "hash": checkpoints.model_hash(path)}
        rows.append(row)
    return pd.DataFrame(rows, columns=["key", "file", "family", "kind", "size_gb", "hash", "note"])


__all__ = ["load_single_file", "local_models", "hash_of", "spec_for"]
