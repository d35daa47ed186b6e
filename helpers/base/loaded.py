"""What a loaded pipeline is: one record per loaded model, kept beside the diffusers pipeline, never on it.

`load_pipeline` makes the record; every task pipeline derived from the model (`loading.derive`) shares it,
so the text2img, img2img and inpainting pipelines of one model agree on its entry, VAE, LoRAs and the rest.
A pipeline the zoo did not load gets a blank record the first time a helper asks for one.

>>> record(pipe).spec.key, record(pipe).vae
('realistic-vision-5.1', 'sd-vae-ft-mse')
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field


@dataclass(eq=False)
class LoadedModel:
    """The registry entry a pipeline was loaded from and everything the zoo did to it since.

    The record sits below the modules whose types it holds, so it names them in comments, not imports.
    """

    spec: object = None  # the registry.ModelSpec; None for a pipeline the zoo did not load
    policy: object = None  # the memory.Policy: where its weights live
    vae: str = ""  # the registry VAE that replaced the repo's own, if any
    fast: object = None  # the fast.FastMode applied
    default_scheduler: object = None  # the scheduler the repo ships: what `set_scheduler(pipe, "default")` restores
    lora_scales: dict[str, float] = field(default_factory=dict)  # active LoRAs (helpers.styles)
    previewer: object = None  # the tiny-VAE live previewer, made on first use (helpers.previews)


_RECORDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # pipeline -> its record, gone with the pipeline


def record(pipe) -> LoadedModel:
    """The pipeline's record; a blank one (no registry entry) for a pipeline the zoo did not load."""
    rec = _RECORDS.get(pipe)
    if rec is None:
        rec = _RECORDS[pipe] = LoadedModel(default_scheduler=pipe.scheduler)
    return rec


def attach(pipe, rec: LoadedModel):
    """Give `pipe` the record `rec` (shared, not copied: derived pipelines share their model's); returns `pipe`."""
    _RECORDS[pipe] = rec
    return pipe


def spec_of(pipe):
    """The registry entry a pipeline was loaded from, or None."""
    rec = _RECORDS.get(pipe)
    return rec.spec if rec else None
