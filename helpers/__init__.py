"""The Stable Diffusion model zoo: a curated registry of Hub checkpoints and the code to run them.

Data flows one way: `models.yaml` -> `registry` -> `loading` -> notebooks and the command line.

>>> import helpers
>>> helpers.models(family="sdxl")[0].key
'sdxl-base'
>>> pipe = helpers.load_pipeline("sd15")

Names load on first use (PEP 562), so `import helpers` and the command line's `list`, `show` and `--help` do not
import torch, diffusers or transformers; only what runs a model does.
"""

# First: library notices printed while torch, diffusers and transformers import are kept out (stdlib only).
from .base import library_notices  # noqa: F401, I001
import importlib

from . import moved
from .base.versions import __version__

# the modules on the package's face -> where they live
_MODULES = {
    "control": "run.control", "edit": "run.edit", "fast": "run.fast", "masks": "base.masks",
    "memory": "run.memory", "previews": "run.previews", "quiet": "base.quiet", "registry": "zoo.registry",
    "smoke": "base.smoke", "styles": "run.styles", "sweepfile": "sweeps.file", "timestats": "base.timestats",
    "upscale": "run.upscale",
}  # fmt: skip

# public name -> the module that defines it
_NAMES = {
    "free": "run.cache", "get_pipeline": "run.cache",
    "CompareResult": "sweeps.compare", "compare": "sweeps.compare",
    "pick_device": "base.devices", "pick_dtype": "base.devices",
    "ModelAccessError": "base.errors", "ModelNotCachedError": "base.errors", "RegistryError": "base.errors",
    "UnknownModelError": "base.errors", "ZooError": "base.errors",
    "GenerationResult": "run.generate", "generate": "run.generate", "regenerate": "run.generate",
    "image_grid": "base.grids",
    "plan": "run.plan", "quality": "sweeps.quality",
    "load_pipeline": "run.loading", "load_vae": "run.loading",
    "load_single_file": "run.singlefile", "local_models": "run.singlefile", "model_hash": "zoo.checkpoints",
    "Record": "base.records", "read_record": "base.records",
    "get": "zoo.registry", "models": "zoo.registry",
    "set_scheduler": "base.schedulers",
    "SweepResult": "sweeps.sweep", "sweep": "sweeps.sweep",
    "setup_notebook": "panels.widgets",
}  # fmt: skip

__all__ = ["__version__", *_MODULES, *_NAMES]


def __getattr__(name: str):
    if name in _MODULES:
        value = importlib.import_module(f".{_MODULES[name]}", __name__)
    elif name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    else:
        raise AttributeError(f"module 'helpers' has no attribute '{name}'")
    globals()[name] = value  # looked up once
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


moved.keep_old_paths()  # old module paths, for one release
