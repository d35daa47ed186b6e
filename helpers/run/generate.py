"""From a prompt to images that carry their recipe: one call for every registry model.

`generate` is four named steps: `settle` the request against the registry entry (before anything is loaded or
downloaded, so a bad size or sampler costs nothing), `prepare` the pipeline call, `run` it, and `record` how
each image was made.

>>> from helpers import generate
>>> result = generate("sd15", "a watercolor fox", seed=42, num_images=2)
>>> result.images[1]            # the same image as generate("sd15", "a watercolor fox", seed=43)
>>> result.save("outputs")      # PNGs with the A1111 `parameters` text and the full record
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import diffusers
import numpy as np
import torch
from diffusers.image_processor import VaeImageProcessor
from PIL import Image

from ..base import masks, quiet, records, timing
from ..base.devices import peak_gb, reset_peak
from ..base.errors import ZooError
from ..base.families import FAMILIES
from ..base.images import fingerprint, load_image
from ..base.loaded import record as record_of
from ..base.loaded import spec_of
from ..base.records import Record
from ..base.schedulers import set_scheduler
from ..base.versions import versions
from ..zoo.registry import ModelSpec, Registry
from ..zoo.registry import default as default_registry
from . import clip_skip as clip_skip_mod
from . import control as control_mod
from . import hires as hires_mod
from . import ip_adapter as ip_mod
from . import memory as memory_mod
from . import previews, prompt_weights, singlefile, styles
from .cache import get_pipeline
from .loading import task_of_pipeline
from .request import (
    Request,
    call_default,
    call_params,
    check_model,
    check_negative_prompt,
    check_prompt_length,
    check_strength,
    check_trigger_words,
    settle,
)


@dataclass
class GenerationResult:
    """Images, the record of each, and what they cost."""

    images: list[Image.Image]
    records: list[Record]
    timings: dict = field(default_factory=dict)  # seconds: text_encoding, denoising, decoding, total; steps_per_s
    peak_memory_gb: float | None = None
    problems: dict = field(default_factory=dict)  # image index -> why it is not a real image (black, NaN)

    def save(self, out_dir: str | Path = "outputs") -> list[Path]:
        """Write each good image as a PNG with its record; returns the paths (existing files are never replaced).

        Images listed in `problems` (black or NaN output) are not saved as if they were images.
        """
        pairs = enumerate(zip(self.images, self.records, strict=True))
        return records.save_images([(im, rec) for i, (im, rec) in pairs if i not in self.problems], out_dir)


def generate(
    model: str | ModelSpec | diffusers.DiffusionPipeline,
    prompt: str,
    negative_prompt: str | None = None,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    height: int | None = None,
    width: int | None = None,
    seed: int | None = None,
    seeds: list[int] | None = None,
    scheduler: str | None = None,
    scheduler_options: dict | None = None,
    num_images: int = 1,
    batch_size: int = 1,
    device: str = "auto",
    memory="auto",
    generator_device: str = "cpu",
    task: str | None = None,
    image=None,
    mask_image=None,
    loras: dict | None = None,
    lora_scale: float | None = None,
    on_step=None,
    on_preview=None,
    registry: Registry | None = None,
    control=None,
    hires=None,
    ip_adapter=None,
    embeddings: dict | None = None,
    clip_skip: int | None = None,
    prompt_prefix: str | None = None,
    plan: str | None = None,
    **pipeline_kwargs,
) -> GenerationResult:
    """Generate images with a registry model (by key) or a pipeline from `load_pipeline`.

    What is left out comes from the model's registry defaults. Image i uses seed `seed + i` (or `seeds[i]`) and
    equals a single run with that seed; `seed=None` draws one and records it. The generator lives on the CPU so
    a seed gives the same starting noise on CPU, CUDA and MPS. Images are made one pipeline call each; a larger
    `batch_size` is faster on big GPUs, but batched arithmetic may round differently (pixels within 1 level).
    `on_step(done, total)` is called after every denoising step (progress bars, cancelling by raising);
    `on_preview(image, done, total)` gets the step's latents decoded by the family's tiny VAE (`helpers.previews`).
    `loras` ({adapter: scale}) makes exactly those LoRAs active (loading any missing) for this call only; after
    it the model's LoRAs are as the caller left them (a LoRA fused with `styles.fuse` stays). `lora_scale` sets
    them all to one scale (a sweep axis). `embeddings` ({source: token or None}) loads textual-inversion
    embeddings (registry key, trained adapter name or file) before the call; their tokens go in the prompt.
    `task`, `image` and `mask_image` are for editing (see `helpers.edit`).
    `registry` is the registry a key is looked up in (the project's `models.yaml` by default).
    `control` steers the image with ControlNets: `{controlnet_key: image}` or `helpers.control.Control`s.
    `hires` ({"scale": 2, "strength": 0.5, "steps": N, "upscaler": "Lanczos"}) finishes each image larger.
    `ip_adapter` is an image prompt: a picture, `(picture, scale)` or a `helpers.run.ip_adapter.ImagePrompt`.
    `clip_skip` counts as A1111's "Clip skip" does (2: the CLIP text encoder's penultimate layer; diffusers calls
    that 1; see `helpers.run.clip_skip`); `prompt_prefix` replaces the model's quality tags put before the prompt
    ("" for none). Both default to the registry entry's.
    Other keyword arguments go to the pipeline.
    """
    pipe = model if isinstance(model, diffusers.DiffusionPipeline) else None
    if pipe is not None:
        spec = spec_of(pipe)
        if spec is None:
            raise ZooError("generate() needs a registry key or a pipeline made by helpers.load_pipeline")
        task = task or _task_of(pipe)
    else:
        spec = (registry or default_registry()).get(model)
        task = task or _default_task(spec, image, mask_image)
    request = settle(
        spec, task, prompt, negative_prompt, num_inference_steps, guidance_scale, height, width,
        seed, seeds, num_images, batch_size, scheduler, scheduler_options, image, mask_image, pipeline_kwargs,
        clip_skip=clip_skip, prompt_prefix=prompt_prefix,
    )  # fmt: skip
    request.controls = control_mod.settle(spec, task, control, registry)
    request.hires = hires_mod.settle(spec, hires, request.steps, registry, request.controls)
    request.image_prompt = ip_mod.settle(spec, ip_adapter, registry)
    if pipe is None:  # a model loaded for ControlNets or an image prompt counts them in its memory policy
        extras = [*control_mod.specs(request.controls, registry), *ip_mod.specs(request.image_prompt, registry)]
        memory = memory if plan else memory_mod.with_extras(spec, device, memory, extras)
        pipe = get_pipeline(spec.key, task=task, device=device, memory=memory, registry=registry,
                            **({"plan": plan} if plan else {}))  # fmt: skip
    if request.controls:
        pipe = control_mod.pipeline(pipe, request.controls, registry)
    if request.image_prompt:
        pipe = ip_mod.pipeline(pipe, request.image_prompt, registry)
    before = styles.loras(pipe)  # what the caller set on the pipeline (styles.load_lora): kept after this call
    try:
        request.embeddings = {source: styles.ensure_embedding(pipe, source, token)
                              for source, token in (embeddings or {}).items()}  # fmt: skip
        call = prepare(pipe, request, loras, lora_scale)
        call |= _step_kwargs(pipe, _step_callback(pipe, request, on_step, on_preview))
        images, problems, timings = run(pipe, request, call, generator_device)
        recipes = record(pipe, request, images)  # the first pass's size, as A1111 records it
        used = styles.loras(pipe)
    finally:  # the cached model stays as it was, even when the call fails or is cancelled: its LoRAs are this call's
        ip_mod.unload(pipe)
        styles.restore(pipe, before)
    if request.hires:  # its upscaling and second pass count in the call's time, as the user waited for them
        start = time.perf_counter()
        images = _hires_pass(request, images, device, memory, registry, generator_device, used)
        timings["hires"] = time.perf_counter() - start
        timings["total"] += timings["hires"]
    return GenerationResult(images, recipes, timings, peak_gb(pipe.device), problems)


def _hires_pass(request: Request, images, device, memory, registry, generator_device, loras) -> list[Image.Image]:
    """A1111's second pass: each image upscaled, then repainted by img2img at the hires strength, same seed and
    the first pass's LoRAs."""
    h, spec = request.hires, request.spec
    pipe = get_pipeline(spec.key, task="img2img", device=device, memory=memory, registry=registry)
    steps = hires_mod.second_pass_steps(h["steps"], h["strength"], spec.family)  # runs h["steps"], as A1111 does
    settings = dict(negative_prompt=request.negative_prompt, num_inference_steps=steps,
                    guidance_scale=request.guidance, scheduler=request.scheduler,
                    scheduler_options=request.scheduler_options, generator_device=generator_device,
                    loras=loras, clip_skip=request.clip_skip, prompt_prefix="")  # fmt: skip
    out = []
    for im, s in zip(images, request.seeds, strict=True):
        big = hires_mod.upscale(im, h, spec.family, request.prompt, s, device, registry)
        control = hires_mod.controls_at(request.controls, big.size) or None  # the same control, upscaled
        out.append(generate(pipe, request.prompt, image=big, strength=h["strength"], seed=s, control=control,
                            registry=registry, **settings).images[0])  # fmt: skip
    return out


# --- 1. settle, in helpers/run/request.py: the request checked against the registry entry, before anything loads -


# --- 2. prepare: the sampler, adapters and the keyword arguments of the pipeline call ------------------------


def prepare(pipe, request: Request, loras: dict | None = None, lora_scale: float | None = None) -> dict:
    """Set the sampler and LoRAs on `pipe` and return the pipeline call's keyword arguments (with warnings)."""
    spec, params = request.spec, call_params(pipe)
    set_scheduler(pipe, request.scheduler, request.scheduler_options)
    family = FAMILIES[spec.family]
    call = {"num_inference_steps": request.steps, family.guidance_arg: request.guidance}
    call |= {"height": request.height, "width": request.width}
    if request.task != "text2img":
        check_strength(request.steps, request.pipeline_kwargs.get("strength", call_default(pipe, "strength")))
        call["image"] = request.image
        if request.mask_image is not None:
            call["mask_image"] = request.mask_image
        if "height" not in params:  # img2img pipelines take the size from the image
            call.pop("height"), call.pop("width")
        elif request.task == "instruct" and "max_area" in params:  # Kontext: the size asked, not its 1 MP default
            call["max_area"] = request.height * request.width
    call |= control_mod.call_kwargs(pipe, request.controls)
    call |= ip_mod.call_kwargs(request.image_prompt)
    if spec.defaults.max_sequence_length and "max_sequence_length" in params:
        call["max_sequence_length"] = spec.defaults.max_sequence_length
    skip = clip_skip_mod.to_diffusers(spec.family, request.clip_skip)
    if skip is not None:
        clip_skip_mod.expose_text_model(pipe)
        call["clip_skip"] = skip
    call.update(request.pipeline_kwargs)
    if check_negative_prompt(pipe, request):
        call["negative_prompt"] = request.negative_prompt
    elif family.empty_negative and request.guidance > 1.0:  # its CFG runs only with a negative prompt
        call["negative_prompt"] = " "
    guided = request.guidance > 1.0
    embeds = prompt_weights.embeddings(pipe, spec.family, request.prompt, call.get("negative_prompt"), guided, skip)
    if embeds:  # A1111 weights or a prompt beyond 77 tokens: encoded here (helpers.run.prompt_weights), never cut
        call.pop("negative_prompt", None)
        call.pop("clip_skip", None)  # read by the encoding above
        call |= embeds
    else:
        check_prompt_length(pipe, spec, request.prompt, call.get("max_sequence_length"))
    if loras is not None or lora_scale is not None:
        styles.apply(pipe, styles.loras(pipe) if loras is None else loras, lora_scale)
    check_trigger_words(pipe, request)
    return call


def _step_callback(pipe, request: Request, on_step, on_preview):
    """A `callback_on_step_end` that reports progress and previews across all of the call's batches, or None."""
    previewer = previews.previewer_for(pipe) if on_preview is not None else None
    if on_preview is not None and previewer is None:
        warnings.warn(
            f"'{request.spec.key}': no tiny preview VAE for {request.spec.family} models; no previews", stacklevel=3
        )
    if on_step is None and previewer is None:
        return None
    total, counter = request.steps * len(request.batches), iter(range(1, 10**9))

    def step_end(pipeline, i, t, tensors):
        done = next(counter)
        if previewer is not None:
            on_preview(previewer(tensors["latents"], request.height, request.width), done, total)
        if on_step is not None:
            on_step(done, total)
        return tensors

    return step_end


def _step_kwargs(pipe, step_end) -> dict:
    """The call's step callback: `callback_on_step_end`, or the older `callback` of pipelines that lack it
    (diffusers' T2I-Adapter pipelines), so progress, previews and Cancel work there too."""
    if step_end is None:
        return {}
    if "callback_on_step_end" in call_params(pipe):
        return {"callback_on_step_end": step_end}
    return {"callback": lambda i, t, latents: step_end(pipe, i, t, {"latents": latents}), "callback_steps": 1}


def _task_of(pipe) -> str:
    return task_of_pipeline(type(pipe).__name__)


def _default_task(spec: ModelSpec, image, mask_image) -> str:
    """The task the inputs given imply: an editing model edits the image it is given by instruction."""
    if mask_image is not None:
        return "inpaint"
    if "instruct" in spec.tasks and "img2img" not in spec.tasks:  # without an image, settle() asks for one
        return "instruct"
    return "text2img" if image is None else "img2img"


# --- 3. run: the pipeline calls, with the float32 decode where the VAE overflowed ---------------------------


def run(pipe, request: Request, call: dict, generator_device: str = "cpu"):
    """Images, problems (index -> why) and timings of the request's pipeline calls, one per batch of seeds."""
    spec, batches = request.spec, request.batches
    images, problems = [], {}
    timings = dict.fromkeys(("text_encoding", "denoising", "decoding", "total"), 0.0)
    reset_peak(pipe.device)
    n = len(request.seeds)
    desc = f"[{spec.key}] {n} image{'s' if n > 1 else ''}"
    with quiet.one_bar(pipe, desc, len(batches), request.steps) as chain, quiet.no_truncation_notice(pipe):
        call = chain(call)
        for chunk in batches:
            arrays, nsfw, watch = _call(pipe, request.prompt, chunk, generator_device, call)
            bad = [i for i, a in enumerate(arrays) if _broken(a) and not nsfw[i]]
            if bad and pipe.vae.dtype != torch.float32:
                arrays, nsfw = _decode_again_in_float32(pipe, spec, watch)
            for i, a in enumerate(arrays):
                index = len(images) + i
                if nsfw[i]:
                    problems[index] = "blacked out by the model's safety checker (NSFW concept detected)"
                elif _broken(a):
                    problems[index] = "NaN or all-black output (the VAE overflowed even in float32)"
            images += VaeImageProcessor.numpy_to_pil(np.nan_to_num(np.stack(arrays)))
            for k in timings:
                timings[k] += watch.seconds[k]
    for index, why in problems.items():
        warnings.warn(
            f"'{spec.key}' image {index} (seed {request.seeds[index]}): {why}; it will not be saved.", stacklevel=3
        )
    denoising = timings["denoising"]
    timings["steps_per_s"] = request.steps * len(batches) / denoising if denoising else None
    return images, problems, timings


def _call(pipe, prompt, seeds, generator_device, call):
    """One pipeline call: float images in [0, 1], the safety checker's flags, and its stopwatch."""
    generators = [torch.Generator(generator_device).manual_seed(s) for s in seeds]
    with timing.timed(pipe) as watch:
        prompt = None if "prompt_embeds" in call else prompt
        kind = "pil" if call.get("padding_mask_crop") is not None else "np"  # diffusers pastes crops only as PIL
        out = pipe(prompt=prompt, num_images_per_prompt=len(seeds), generator=generators, output_type=kind, **call)
    nsfw = getattr(out, "nsfw_content_detected", None) or [False] * len(seeds)
    images = [np.asarray(im, dtype=np.float32) / 255 for im in out.images] if kind == "pil" else list(out.images)
    return images, [bool(x) for x in nsfw], watch


@torch.no_grad()
def _decode_again_in_float32(pipe, spec: ModelSpec, watch: timing.Stopwatch):
    """Decode the call's latents again with the VAE in float32, as the pipeline would have: images and NSFW flags.

    Only the decode is redone, not the denoising. Pipelines that can upcast their VAE themselves (SDXL's, through
    `force_upcast`) are told to from now on; the others decode again whenever the VAE overflows.
    """
    vae = pipe.vae
    half = vae.dtype
    upcasts = hasattr(pipe, "upcast_vae") and not vae.config.get("force_upcast", False)
    warnings.warn(
        f"'{spec.key}': the VAE overflowed in {str(half).replace('torch.', '')} (NaN or black image); decoding "
        "again in float32" + (", as it will from now on." if upcasts else "."),
        stacklevel=4,
    )
    vae.to(torch.float32)
    try:
        image = torch.cat([vae.decode(z.to(torch.float32), return_dict=False)[0] for z in watch.decoded])
    finally:
        vae.to(half)
    if upcasts:
        vae.register_to_config(force_upcast=True)
    nsfw = [False] * len(image)
    if getattr(pipe, "safety_checker", None) is not None:
        image, flags = pipe.run_safety_checker(image, pipe.device, half)
        nsfw = [bool(x) for x in flags]
    if getattr(pipe, "watermark", None) is not None:
        image = pipe.watermark.apply_watermark(image)
    denormalize = [not x for x in nsfw]
    arrays = pipe.image_processor.postprocess(image.float(), output_type="np", do_denormalize=denormalize)
    return list(arrays), nsfw


def _broken(image: np.ndarray) -> bool:
    """NaN anywhere, or black everywhere: what an overflowing VAE makes."""
    return bool(np.isnan(image).any() or np.nanmax(image) < 1 / 255)


# --- 4. record: how each image was made ---------------------------------------------------------------------


def record(pipe, request: Request, images: list[Image.Image]) -> list[Record]:
    """One record per image: the request, the model's repo, revision and VAE, the device and library versions."""
    spec = request.spec
    base = Record(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        seed=0,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
        scheduler=request.scheduler,
        scheduler_options=request.scheduler_options,
        schedule_type=records.schedule_type(request.scheduler_options),
        width=images[0].width,
        height=images[0].height,
        model=singlefile.model_name(spec),
        model_hash=singlefile.hash_of(spec),
        extra={k: v for k, v in request.pipeline_kwargs.items() if isinstance(v, (int, float, str, bool))},
        task=request.task,
        inputs=request.inputs,
        loras=styles.loras(pipe),
        repo=spec.repo,
        revision=spec.revision,
        dtype=str(pipe.dtype).replace("torch.", ""),
        vae=record_of(pipe).vae,
        plan=_plan_of(record_of(pipe).policy),
        device=str(pipe.device),
        versions=versions(),
        controls=[c.recipe() for c in request.controls],
        hires=dict(request.hires),
        image_prompt=request.image_prompt.recipe() if request.image_prompt else {},
        embeddings=dict(request.embeddings),
        clip_skip=request.clip_skip,
    )
    return [Record.from_dict({**base.__dict__, "seed": s}) for s in request.seeds]


def _plan_of(policy) -> dict:
    """The recipe's plan: the option's key (`generate(plan=...)` takes it back) and its words, when one was used."""
    key = getattr(policy, "plan", "")
    return {"key": key, "label": policy.label} if key else {}


def regenerate(source: str | Path | Record, image=None, mask_image=None, control_images=None,
               ip_adapter_image=None, **overrides) -> GenerationResult:  # fmt: skip
    """Make an image again from its PNG (or record): same model, prompt, seed and settings.

    An edit (img2img, inpainting) needs its input image (and mask) again; their fingerprints must match. So do
    the control images of a ControlNet generation (`control_images`: a list in order, or {controlnet key: image})
    and the picture of an image prompt (`ip_adapter_image`).
    """
    rec = source if isinstance(source, Record) else records.read_record(source)
    if not rec.model:
        raise ZooError(f"{source}: the record names no model; call generate() with a registry key")
    given = {"image": image, "mask_image": mask_image}
    for name, fp in rec.inputs.items():
        if given.get(name) is None:
            raise ZooError(f"{source}: this {rec.task} image needs its {name} again: regenerate(path, {name}=...)")
        loaded = load_image(given[name], mode="L" if name == "mask_image" else "RGB")
        if fingerprint(loaded) != fp:
            raise ZooError(f"{source}: the {name} given is not the one this image was made from ({fp})")
        given[name] = loaded
    inputs = {k: v for k, v in given.items() if v is not None}
    if rec.controls:
        inputs["control"] = control_mod.from_recipe(rec.controls, control_images)
    if rec.image_prompt:
        inputs["ip_adapter"] = ip_mod.from_recipe(rec.image_prompt, ip_adapter_image)
    model = overrides.pop("model", None) or rec.model
    registry = overrides.get("registry") or default_registry()
    check_model(source, rec.model, model, registry)
    result = generate(model, **{**rec.generate_kwargs(), **inputs, **overrides})
    if rec.blend:  # an outpainting: blended into its canvas after generation, so again here
        canvas, mask = inputs["image"], inputs["mask_image"]
        result.images = [masks.blend(canvas, im, mask, feather=rec.blend) for im in result.images]
        result.records = [dataclasses.replace(r, blend=rec.blend) for r in result.records]
    return result
