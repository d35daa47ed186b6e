"""The Stable Diffusion model zoo: a curated registry of Hub checkpoints and the code to run them.

Data flows one way: `models.yaml` -> `registry` -> `loading` -> notebooks and the command line.

>>> import helpers
>>> helpers.models(family="sdxl")[0].key
'sdxl-base'
>>> pipe = helpers.load_pipeline("sd15")
"""

from .errors import ModelAccessError, ModelNotCachedError, RegistryError, UnknownModelError, ZooError
from .loading import load_pipeline, load_vae, pick_device, pick_dtype
from .registry import get, models

__all__ = [
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
