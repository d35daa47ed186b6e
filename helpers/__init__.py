"""The Stable Diffusion model zoo: a curated registry of Hub checkpoints and the code to run them.

Data flows one way: `models.yaml` -> `registry` -> `loading` -> notebooks and the command line.

>>> import helpers
>>> helpers.models(family="sdxl")[0].key
'sdxl-base'
>>> pipe = helpers.load_pipeline("sd15")
"""

# First: some library notices are printed while torch, diffusers and transformers import.
from . import library_notices  # noqa: I001, F401
from . import (
    control,
    edit,
    fast,
    masks,
    memory,
    previews,
    quiet,
    registry,
    smoke,
    styles,
    sweepfile,
    timestats,
    upscale,
)
from .cache import free, get_pipeline
from .compare import CompareResult, compare
from .devices import pick_device, pick_dtype
from .errors import ModelAccessError, ModelNotCachedError, RegistryError, UnknownModelError, ZooError
from .generate import GenerationResult, generate, regenerate
from .grids import image_grid
from .loading import load_pipeline, load_vae
from .records import Record, read_record
from .registry import get, models
from .schedulers import set_scheduler
from .sweep import SweepResult, sweep
from .versions import __version__
from .widgets import setup_notebook

__all__ = [
    "__version__",
    "control",
    "edit",
    "fast",
    "previews",
    "quiet",
    "masks",
    "memory",
    "registry",
    "smoke",
    "styles",
    "sweepfile",
    "timestats",
    "upscale",
    "CompareResult",
    "SweepResult",
    "compare",
    "image_grid",
    "sweep",
    "GenerationResult",
    "Record",
    "free",
    "generate",
    "get_pipeline",
    "read_record",
    "regenerate",
    "set_scheduler",
    "setup_notebook",
    "ModelAccessError",
    "ModelNotCachedError",
    "RegistryError",
    "UnknownModelError",
    "ZooError",
    "get",
    "load_pipeline",
    "load_vae",
    "models",
    "pick_device",
    "pick_dtype",
]
