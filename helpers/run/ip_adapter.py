"""IP-Adapter: a picture as a prompt beside the text, on the weights already loaded.

`generate(..., ip_adapter=IMAGE)` (or `(IMAGE, scale)`, or an `ImagePrompt`) loads the family's registry IP-Adapter
(`models.yaml`, section `ip_adapters`) into a pipeline made with diffusers' `from_pipe` (no weights copied), runs,
and unloads it, so the cached model stays as it was. The CLIP image encoder loads once per model.

>>> generate("sd15", "a cat", ip_adapter=("style.png", 0.6), seed=1)
>>> generate("sdxl-base", "a cat", ip_adapter=ImagePrompt("style.png", scale=0.5, model="ip-adapter-sdxl"), seed=1)
"""

from __future__ import annotations

import inspect
import weakref
from dataclasses import dataclass

import transformers

from ..base import quiet
from ..base.errors import ZooError
from ..base.images import fingerprint, load_image
from ..base.loaded import attach, record
from ..zoo.registry import IpAdapterSpec, ModelSpec, Registry
from ..zoo.registry import default as default_registry
from . import memory as memory_mod
from .loading import hub_errors_explained


@dataclass
class ImagePrompt:
    """An image prompt: the picture, how strongly it steers (0 leaves the model alone) and the registry IP-Adapter."""

    image: object  # a path, URL or PIL image
    scale: float = 1.0  # A1111's "Weight"; about 0.5 mixes picture and text evenly
    model: str | None = None  # a key of the `ip_adapters` section; None: the first for the model's family

    def recipe(self) -> dict:
        """What the image record keeps: the adapter, its scale and the picture's fingerprint."""
        return {"model": self.model, "scale": self.scale, "image": fingerprint(self.image)}


def settle(spec: ModelSpec, ip_adapter, registry: Registry | None = None) -> ImagePrompt | None:
    """The image prompt of a request, checked against the model before anything loads."""
    if ip_adapter is None:
        return None
    reg = registry or default_registry()
    if isinstance(ip_adapter, tuple):
        ip_adapter = ImagePrompt(*ip_adapter)
    elif not isinstance(ip_adapter, ImagePrompt):
        ip_adapter = ImagePrompt(ip_adapter)
    fits = [k for k, v in reg.ip_adapters.items() if v.family == spec.family]
    key = ip_adapter.model or (fits[0] if fits else None)
    if key is None:
        raise ZooError(f"No IP-Adapter for {spec.family} models yet ('{spec.key}'); those there are: "
                       f"{', '.join(f'{k} ({v.family})' for k, v in reg.ip_adapters.items())}")  # fmt: skip
    ip = reg.ip_adapter(key)
    if ip.family != spec.family:
        raise ZooError(f"IP-Adapter '{ip.key}' is for {ip.family} models; '{spec.key}' is {spec.family}: use {fits}")
    if not hasattr(spec.pipeline_class, "load_ip_adapter"):
        raise ZooError(f"'{spec.key}' ({spec.pipeline}) takes no IP-Adapter in diffusers")
    if ip_adapter.scale < 0:
        raise ZooError(f"IP-Adapter scale cannot be negative (got {ip_adapter.scale:g}); 0 turns it off")
    return ImagePrompt(load_image(ip_adapter.image), float(ip_adapter.scale), ip.key)


def specs(prompt: ImagePrompt | None, registry: Registry | None = None) -> list[IpAdapterSpec]:
    """The registry entry of a request's IP-Adapter, if any (for the memory policy)."""
    return [] if prompt is None else [(registry or default_registry()).ip_adapter(prompt.model)]


_ENCODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # a model's record -> {encoder: module}


def image_encoder(ip: IpAdapterSpec, pipe):
    """The adapter's CLIP image encoder for a loaded model, loaded once in the model's dtype."""
    loaded = _ENCODERS.setdefault(record(pipe), {})
    ident = (ip.repo, ip.revision, ip.image_encoder)
    if ident not in loaded:
        kwargs = {"subfolder": ip.image_encoder, "revision": ip.revision, "dtype": pipe.dtype}
        with hub_errors_explained(ip), quiet.loading():
            model = transformers.CLIPVisionModelWithProjection.from_pretrained(ip.repo, **kwargs)
        loaded[ident] = model.eval()
    return loaded[ident]


def extra_modules(pipe) -> list:
    """The image encoders loaded for a model (what its memory budget must count beside its own weights)."""
    return list(_ENCODERS.get(record(pipe), {}).values())


def pipeline(pipe, prompt: ImagePrompt, registry: Registry | None = None):
    """`pipe` with the IP-Adapter loaded, on the same weights (`from_pipe`); undo it with `unload`."""
    ip = (registry or default_registry()).ip_adapter(prompt.model)
    rec = record(pipe)
    if "ip_adapter_image" not in inspect.signature(type(pipe).__call__).parameters:
        raise ZooError(
            f"'{rec.spec.key}' with {type(pipe).__name__} takes no image prompt in diffusers: "
            "leave out ip_adapter, or the control (a T2I-Adapter on SD 1.5) that needs this pipeline"
        )
    encoder = image_encoder(ip, pipe)
    derived = attach(type(pipe).from_pipe(pipe, image_encoder=encoder), rec)
    unet = derived.unet
    _SAVED[derived] = unet.attn_processors  # what `unload` puts back (diffusers' own unload resets them to defaults)
    with hub_errors_explained(ip):
        derived.load_ip_adapter(ip.repo, subfolder=ip.subfolder, weight_name=ip.weight_name, revision=ip.revision)
    derived.set_ip_adapter_scale(prompt.scale)
    policy = rec.policy
    if policy is None or policy.name in ("gpu", "cpu"):
        encoder.to(pipe.device)
    else:  # offloading hooks are per pipeline: the new one places its modules (the encoder among them) again
        memory_mod.apply(derived, policy, str(pipe._execution_device))
    return derived


_SAVED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # a pipeline with an IP-Adapter -> its processors


def unload(pipe) -> None:
    """Take the IP-Adapter out of the denoiser again (a no-op for a pipeline without one)."""
    saved = _SAVED.pop(pipe, None)
    if saved is None:
        return
    pipe.unload_ip_adapter()
    pipe.unet.set_attn_processor(saved)


def call_kwargs(prompt: ImagePrompt | None) -> dict:
    """The pipeline call's image prompt argument."""
    return {} if prompt is None else {"ip_adapter_image": prompt.image}


def from_recipe(recipe: dict, image) -> ImagePrompt | None:
    """The image prompt of a record again, given its picture."""
    if not recipe:
        return None
    if image is None:
        raise ZooError(
            f"this image was made with the image prompt of IP-Adapter '{recipe['model']}': "
            "regenerate(path, ip_adapter_image=IMAGE) with the same picture"
        )
    image = load_image(image)
    if fingerprint(image) != recipe["image"]:
        raise ZooError(f"the image prompt given is not the one this image was made with ({recipe['image']})")
    return ImagePrompt(image, recipe["scale"], recipe["model"])
