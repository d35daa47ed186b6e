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
from . import library_notices  # noqa: F401, I001
import importlib
import sys
import types

from .versions import __version__

_MODULES = ("control", "edit", "fast", "masks", "memory", "previews", "quiet", "registry", "smoke", "styles",
            "sweepfile", "timestats", "upscale")  # fmt: skip

# public name -> the module that defines it
_NAMES = {
    "free": "cache", "get_pipeline": "cache",
    "CompareResult": "compare", "compare": "compare",
    "pick_device": "devices", "pick_dtype": "devices",
    "ModelAccessError": "errors", "ModelNotCachedError": "errors", "RegistryError": "errors",
    "UnknownModelError": "errors", "ZooError": "errors",
    "GenerationResult": "generate", "generate": "generate", "regenerate": "generate",
    "image_grid": "grids",
    "load_pipeline": "loading", "load_vae": "loading",
    "Record": "records", "read_record": "records",
    "get": "registry", "models": "registry",
    "set_scheduler": "schedulers",
    "SweepResult": "sweep", "sweep": "sweep",
    "setup_notebook": "widgets",
}  # fmt: skip

__all__ = ["__version__", *_MODULES, *_NAMES]


def __getattr__(name: str):
    if name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    elif name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    else:
        raise AttributeError(f"module 'helpers' has no attribute '{name}'")
    globals()[name] = value  # looked up once
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """`helpers.generate`, `helpers.compare` and `helpers.sweep` are the functions, as they were when this file
    imported everything: importing the module of the same name (`from .generate import ...`) must not put the
    module in the function's place. The modules stay at `sys.modules["helpers.generate"]` and so on."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and _NAMES.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
