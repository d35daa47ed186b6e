"""Old module paths (`helpers.registry`, `helpers.traindata`, ...) keep working for one release, with a warning.

`import helpers` puts a stand-in module at each old path; reading a name from it warns with `DeprecationWarning`,
names the new path and hands over the name from the module that now holds it. The stand-ins live in `sys.modules`,
not as files, so the package's folder shows only its wings, and `import helpers.generate` cannot replace the
`helpers.generate` function with a module.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings

# old path -> new path (a module whose old name is now a package, like `helpers.train`, has no stand-in)
MOVED = {
    "helpers.errors": "helpers.base.errors",
    "helpers.devices": "helpers.base.devices",
    "helpers.images": "helpers.base.images",
    "helpers.families": "helpers.base.families",
    "helpers.loaded": "helpers.base.loaded",
    "helpers.versions": "helpers.base.versions",
    "helpers.records": "helpers.base.records",
    "helpers.masks": "helpers.base.masks",
    "helpers.timing": "helpers.base.timing",
    "helpers.quiet": "helpers.base.quiet",
    "helpers.smoke": "helpers.base.smoke",
    "helpers.timestats": "helpers.base.timestats",
    "helpers.schedulers": "helpers.base.schedulers",
    "helpers.grids": "helpers.base.grids",
    "helpers.trainexport": "helpers.base.adapters",
    "helpers.library_notices": "helpers.base.library_notices",
    "helpers.hub": "helpers.base.online",
    "helpers.registry": "helpers.zoo.registry",
    "helpers.doctor": "helpers.zoo.doctor",
    "helpers.memory": "helpers.run.memory",
    "helpers.fast": "helpers.run.fast",
    "helpers.attention": "helpers.run.attention",
    "helpers.stepcache": "helpers.run.stepcache",
    "helpers.compilecache": "helpers.run.compilecache",
    "helpers.loading": "helpers.run.loading",
    "helpers.previews": "helpers.run.previews",
    "helpers.control": "helpers.run.control",
    "helpers.ip_adapter": "helpers.run.ip_adapter",
    "helpers.upscale": "helpers.run.upscale",
    "helpers.hires": "helpers.run.hires",
    "helpers.styles": "helpers.run.styles",
    "helpers.prompt_weights": "helpers.run.prompt_weights",
    "helpers.cache": "helpers.run.cache",
    "helpers.request": "helpers.run.request",
    "helpers.generate": "helpers.run.generate",
    "helpers.edit": "helpers.run.edit",
    "helpers.metrics": "helpers.judge.metrics",
    "helpers.metricmath": "helpers.judge.metricmath",
    "helpers.inception": "helpers.judge.inception",
    "helpers.evaluate": "helpers.judge.evaluate",
    "helpers.votes": "helpers.judge.votes",
    "helpers.prompts": "helpers.judge.prompts",
    "helpers.sweep": "helpers.sweeps.sweep",
    "helpers.sweepfile": "helpers.sweeps.file",
    "helpers.compare": "helpers.sweeps.compare",
    "helpers.traindata": "helpers.train.data",
    "helpers.trainplan": "helpers.train.plan",
    "helpers.trainsteps": "helpers.train.steps",
    "helpers.trainreport": "helpers.train.report",
    "helpers.widgets": "helpers.panels.widgets",
    "helpers.generation_panel": "helpers.panels.generation",
    "helpers.gallery": "helpers.panels.gallery",
    "helpers.panel_settings": "helpers.panels.settings",
    "helpers.ab_panel": "helpers.panels.ab",
    "helpers.background": "helpers.panels.background",
    "helpers.diffusion": "helpers.teaching.diffusion",
    "helpers.unet": "helpers.teaching.unet",
    "helpers.digits": "helpers.teaching.digits",
    "helpers.tinydiffusion": "helpers.teaching.tinydiffusion",
    "helpers.tinyvae": "helpers.teaching.tinyvae",
    "helpers.offline_hub": "helpers.offline.hub",
    "helpers.tiny": "helpers.offline.tiny",
}


class _Moved(types.ModuleType):
    """A module at an old path: each name read from it warns and comes from the module at the new path."""

    def __init__(self, old: str, new: str):
        super().__init__(old, f"Moved to {new}; this path goes in the next release.")
        self.__moved_to__ = new

    def __getattr__(self, name: str):
        if name.startswith("__") and name != "__all__":
            raise AttributeError(name)
        new = self.__moved_to__
        warnings.warn(f"{self.__name__} moved to {new}: import from {new} (the old path goes in the next release)",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new), name)


def keep_old_paths() -> None:
    """Put a stand-in at each old module path that nothing else holds."""
    for old, new in MOVED.items():
        sys.modules.setdefault(old, _Moved(old, new))
