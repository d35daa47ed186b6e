"""Styles: LoRA adapters, textual-inversion embeddings, and prompt-only style templates.

>>> pipe = helpers.get_pipeline("sd15")
>>> styles.load_lora(pipe, "lcm-lora-sdv1-5")                 # a registry adapter, a Hub repo or a local file
>>> helpers.generate(pipe, "a fox", loras={"lcm-lora-sdv1-5": 0.8}, num_inference_steps=4, guidance_scale=1)
>>> styles.unload(pipe)                                       # back to the original weights, exactly
>>> prompt, negative = styles.style("a fox", "watercolor")    # no adapter at all: words only
"""

from __future__ import annotations

import re
from pathlib import Path

from ..base import adapters as trainexport
from ..base.errors import ZooError
from ..base.loaded import record, spec_of
from ..zoo.registry import default as default_registry
from . import adapter_files, fast

# Prompt-only styles: the subject stays, the words around it change. "{prompt}" marks where it goes.
STYLES = {
    "photograph": ("a photograph of {prompt}, 35mm, natural light, sharp focus", "painting, drawing, illustration"),
    "watercolor": ("a watercolor painting of {prompt}, soft washes, paper texture", "photo, 3d render"),
    "oil painting": ("an oil painting of {prompt}, visible brush strokes, canvas texture", "photo, flat colours"),
    "anime": ("anime illustration of {prompt}, clean line art, cel shading", "photo, realistic"),
    "pixel art": ("pixel art of {prompt}, 16-bit, limited palette", "blurry, smooth gradients, photo"),
    "line art": ("black ink line art of {prompt}, white background, no shading", "colour, photo, shading"),
    "cyberpunk": ("{prompt}, cyberpunk, neon lights, rain, night city", "daylight, pastoral"),
    "3d render": ("a 3d render of {prompt}, octane render, studio lighting", "photo, drawing, sketch"),
}


def style(prompt: str, name: str) -> tuple[str, str]:
    """The prompt and negative prompt of a named style (see `STYLES`)."""
    if name not in STYLES:
        raise ZooError(f"Unknown style '{name}'; use one of: {', '.join(STYLES)}")
    template, negative = STYLES[name]
    return template.format(prompt=prompt), negative


def _family(pipe) -> str | None:
    spec = spec_of(pipe)
    return spec.family if spec else None


def load_lora(pipe, source: str, weight_name: str | None = None, name: str | None = None, scale: float | None = None,
              allow_pickle: bool = False):  # fmt: skip
    """Load a LoRA: a registry adapter key, a Hub repo id (with `weight_name`), a local file (diffusers or kohya/A1111
    layout), or a file's name in the adapters folders (`helpers.run.adapter_files`).

    Returns its adapter name. A LoRA made for another family (an SD 1.5 LoRA into SDXL) is an error; a pickled file
    is refused unless `allow_pickle`.
    """
    reg = default_registry()
    source = _trained(pipe, source) or source  # an adapter trained with helpers.train, by name
    if source in reg.adapters:
        spec = reg.adapter(source)
        if spec.kind != "lora":
            raise ZooError(f"'{source}' is a {spec.kind}; load it with styles.load_embedding")
        family = _family(pipe)
        if family and spec.family != family:
            raise ZooError(
                f"'{source}' is a LoRA for {spec.family} models; this pipeline is {family}. "
                f"LoRAs for {family}: {[a.key for a in reg.adapters.values() if a.family == family] or 'none'}"
            )
        args, kwargs = (spec.repo,), {"weight_name": spec.weight_name, "revision": spec.revision}
        name, scale = name or source, spec.scale if scale is None else scale
    elif (path := adapter_files.lora_file(source, allow_pickle)) is not None:
        args, kwargs = (str(path.parent),), {"weight_name": path.name}
        name = name or path.stem
    else:
        if not _looks_like_repo_id(source):  # a mistyped path would otherwise be looked up on the Hub
            family = _family(pipe)
            known = [a.key for a in reg.adapters.values() if a.kind == "lora" and family in (a.family, None)]
            raise ZooError(
                f"no LoRA file '{source}' (from {Path.cwd()}), no registry adapter of that name, and no trained "
                f"adapter of that name in {trainexport.adapters_dir().resolve()} (set {trainexport.ENV}, or --adapters "
                f"DIR on the command line, to look in another folder). Check the name or path, or use a registry LoRA "
                f"({', '.join(known) or 'none for this family'}; `python -m helpers list adapters`) or a Hub repo id "
                "'owner/name'"
            )
        args, kwargs = (source,), ({"weight_name": weight_name} if weight_name else {})
        name = name or source.replace("/", "--")
    if name in loras(pipe):
        raise ZooError(f"a LoRA named '{name}' is loaded already; unload it first or give another name")
    fast.unfuse_qkv(pipe)  # fused q/k/v layers would run without the LoRA's q/k/v
    try:
        pipe.load_lora_weights(*args, adapter_name=name, **kwargs)
    except (RuntimeError, ValueError) as e:
        if name in (pipe.get_list_adapters() or {}).get(_denoiser_name(pipe), []):
            pipe.delete_adapters([name])
        if "size mismatch" in str(e):
            raise ZooError(
                f"the LoRA {source} does not fit this {_family(pipe) or ''} model: its layers have other sizes, "
                "so it was made for another family (an SD 1.5 LoRA in SDXL, say)"
            ) from None
        raise
    set_scales(pipe, {**loras(pipe), name: 1.0 if scale is None else scale})
    return name


def _looks_like_repo_id(source: str) -> bool:
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", source)) and not source.endswith((".safetensors", ".bin", ".pt"))


def _denoiser_name(pipe) -> str:
    return "unet" if hasattr(pipe, "unet") else "transformer"


def loras(pipe) -> dict[str, float]:
    """The LoRAs loaded on a pipeline and their scales."""
    return dict(record(pipe).lora_scales)


def set_scales(pipe, scales: dict[str, float]) -> None:
    """Set each loaded LoRA's scale; LoRAs left out are switched off (scale 0). Combines several by weight."""
    loaded = set((pipe.get_list_adapters() or {}).get(_denoiser_name(pipe), []))
    unknown = set(scales) - loaded
    if unknown:
        raise ZooError(f"LoRA(s) {sorted(unknown)} are not loaded on this pipeline; loaded: {sorted(loaded)}")
    weights = {n: float(scales.get(n, 0.0)) for n in sorted(loaded)}
    pipe.set_adapters(list(weights), adapter_weights=list(weights.values()))
    record(pipe).lora_scales = {n: w for n, w in weights.items() if w}


def apply(pipe, wanted: dict[str, float], scale: float | None = None) -> dict[str, float]:
    """Make exactly these LoRAs active at these scales (loading what is missing); `scale` overrides them all."""
    if not hasattr(pipe, "get_list_adapters"):  # a pipeline diffusers gives no LoRA loader (the T2I-Adapter ones)
        if wanted:
            raise ZooError(f"{type(pipe).__name__} takes no LoRA in diffusers: leave out the LoRA ({sorted(wanted)}) "
                           "or the control that needs this pipeline")  # fmt: skip
        return {}
    loaded = set((pipe.get_list_adapters() or {}).get(_denoiser_name(pipe), []))
    names = {}
    for source, s in wanted.items():
        name = source if source in loaded else _name_for(source)
        if name not in loaded:
            name = load_lora(pipe, source)
        names[name] = s if scale is None else scale
    if names or loaded:
        set_scales(pipe, names)
    return names


def _name_for(source: str) -> str:
    if source in default_registry().adapters:
        return source
    path = adapter_files.find(source)
    return path.stem if path is not None else source


def fuse(pipe) -> None:
    """Bake the active LoRAs into the weights at their scales (faster; `unfuse` takes them out again)."""
    pipe.fuse_lora(adapter_names=list(loras(pipe)), lora_scale=1.0)


def unfuse(pipe) -> None:
    pipe.unfuse_lora()


def unload(pipe) -> None:
    """Remove every LoRA: the model is back to its original weights."""
    pipe.unload_lora_weights()
    record(pipe).lora_scales = {}


def load_embedding(pipe, source: str, token: str | None = None, weight_name: str | None = None,
                   allow_pickle: bool = False) -> str:  # fmt: skip
    """Load a textual-inversion embedding (registry key, Hub repo, or a file: A1111 `.pt`/`.safetensors`, by path or
    by name in the adapters folders); returns the token to prompt with (a file's name, as in A1111, by default).

    A pickled `.pt` is refused unless `allow_pickle` (then read with `torch.load(weights_only=True)`).
    """
    reg = default_registry()
    if source in reg.adapters:
        spec = reg.adapter(source)
        token = token or spec.token
        pipe.load_textual_inversion(spec.repo, weight_name=spec.weight_name, token=token, revision=spec.revision)
    elif _trained(pipe, source):
        token = token or trainexport.metadata(source).get("token")
        trainexport.load_embedding_file(pipe, _trained(pipe, source), token)
    else:
        path = adapter_files.find(source)
        if path is not None:
            token = adapter_files.load_embedding(pipe, path, token, allow_pickle)
        elif not _looks_like_repo_id(source):  # a mistyped path would otherwise be looked up on the Hub
            known = [a.key for a in reg.adapters.values() if a.kind != "lora" and _family(pipe) in (a.family, None)]
            raise ZooError(
                f"no embedding file '{source}' (from {Path.cwd()}), no registry embedding of that name, and no trained "
                f"embedding of that name in {trainexport.adapters_dir().resolve()} (set {trainexport.ENV}, or "
                f"--adapters DIR on the command line, to look in another folder). Check the name or path, or use a "
                f"registry embedding ({', '.join(known) or 'none for this family'}; `python -m helpers list adapters`) "
                "or a Hub repo id 'owner/name'"
            )
        else:
            pipe.load_textual_inversion(source, weight_name=weight_name, token=token)
    if token is None:
        raise ZooError("give the token the embedding binds to, e.g. token='<my-style>'")
    return token


def ensure_embedding(pipe, source: str, token: str | None = None) -> str:
    """Load an embedding unless its token is loaded already (a cached model keeps it); returns the token."""
    reg = default_registry()
    if token is None and source in reg.adapters:
        token = reg.adapter(source).token
    elif token is None and trainexport.find(source):
        token = trainexport.metadata(source).get("token")
    elif token is None and adapter_files.find(source) is not None:  # A1111: the file's name is the token
        token = adapter_files.find(source).stem
    if token is not None and token in pipe.tokenizer.get_vocab():
        return token
    return load_embedding(pipe, source, token)


def restore(pipe, scales: dict[str, float]) -> None:
    """Put back the LoRA scales a generate call found (helpers.generate): a call's LoRAs are that call's."""
    if hasattr(pipe, "get_list_adapters") and loras(pipe) != scales:
        set_scales(pipe, scales)


def trigger_words_missing(pipe, prompt: str) -> list[str]:
    """Trigger words of the model and its active registry LoRAs that the prompt lacks."""
    reg = default_registry()
    spec = spec_of(pipe)
    words = list(spec.trigger_words) if spec else []
    for name in loras(pipe):
        if name in reg.adapters:
            words += reg.adapter(name).trigger_words
    return [w for w in words if w.lower() not in prompt.lower()]


def _trained(pipe, source: str) -> str | None:
    """The weights file of an adapter trained with `helpers.train` when `source` is its name (not a registry key)."""
    path = None if source in default_registry().adapters else trainexport.find(source)
    if path is None:
        return None
    family = trainexport.metadata(path).get("family")
    if family and _family(pipe) and family != _family(pipe):
        raise ZooError(f"'{source}' was trained on a {family} model; this pipeline is {_family(pipe)}")
    return str(path)
