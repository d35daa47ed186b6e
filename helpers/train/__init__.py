"""Fine-tuning: LoRA, DreamBooth-LoRA and textual inversion.

`data` (images, captions, buckets), `plan` (the machine's preset and the memory plan), `steps` (one step), `loop`
(the loop, checkpoints, validation) and `report` (base against fine-tune). What it saves (diffusers, kohya and
A1111 files) is written by `helpers.base.adapters`, where `helpers.run.styles` finds it again by name. It imports
`helpers.run`, `helpers.judge` and everything below them, never the panels or sweeps.
"""

import importlib
import warnings

_ROOMS = ("data", "plan", "steps", "loop", "report")  # this wing's modules: imported as modules, never forwarded


def __getattr__(name: str):
    """The old module `helpers.train` (now `helpers.train.loop`): `helpers.train.train`, `TrainConfig`, ... keep
    working for one release, with a warning naming the new path."""
    if name.startswith("__") or name in _ROOMS:
        raise AttributeError(name)
    loop = importlib.import_module(".loop", __name__)
    if not hasattr(loop, name):
        raise AttributeError(f"module 'helpers.train' has no attribute '{name}'")
    warnings.warn(f"helpers.train.{name} moved to helpers.train.loop.{name}: import it from helpers.train.loop "
                  "(the old path goes in the next release)", DeprecationWarning, stacklevel=2)
    globals()[name] = value = getattr(loop, name)  # said once: `from helpers.train import X` looks X up twice
    return value
