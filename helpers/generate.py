"""From a prompt to images that carry their recipe: one call for every registry model.

>>> from helpers import generate
>>> result = generate("sd15", "a watercolor fox", seed=42, num_images=2)
>>> result.images[1]            # the same image as generate("sd15", "a watercolor fox", seed=43)
>>> result.save("outputs")      # PNGs with the A1111 `parameters` text and the full record
"""

from __future__ import annotations

import inspect
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import diffusers
import numpy as np
import torch
import transformers
from diffusers.image_processor import VaeImageProcessor
from PIL import Image
from tqdm.auto import tqdm

from . import previews, records, styles, timing
from .cache import get_pipeline
from .errors import ZooError
from .records import Record
from .registry import ModelSpec
from .schedulers import set_scheduler

# Latent side multiples: the VAE's 8x, times the transformer's 2x2 patches (or FLUX's 2x2 packing).
SIZE_MULTIPLE = {"sd1": 8, "sd2": 8, "sdxl": 8, "sd3": 16, "flux": 16, "pixart": 16}


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
        return [records.save_image(im, rec, out_dir) for i, (im, rec) in pairs if i not in self.problems]


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
    **pipeline_kwargs,
) -> GenerationResult:
    """Generate images with a registry model (by key) or a pipeline from `load_pipeline`.

    What is left out comes from the model's registry defaults. Image i uses seed `seed + i` (or `seeds[i]`) and
    equals a single run with that seed; `seed=None` draws one and records it. The generator lives on the CPU so
    a seed gives the same starting noise on CPU, CUDA and MPS. Images are made one pipeline call each; a larger
    `batch_size` is faster on big GPUs, but batched arithmetic may round differently (pixels within 1 level).
    `on_step(done, total)` is called after every denoising step (progress bars, cancelling by raising);
    `on_preview(image, done, total)` gets the step's latents decoded by the family's tiny VAE (`helpers.previews`).
    `loras` ({adapter: scale}) makes exactly those LoRAs active (loading any missing); `lora_scale` sets them
    all to one scale (a sweep axis). `task`, `image` and `mask_image` are for editing (see `helpers.edit`).
    Other keyword arguments go to the pipeline.
    """
    if isinstance(model, diffusers.DiffusionPipeline):
        pipe = model
        name = type(pipe).__name__
        task = task or ("inpaint" if "Inpaint" in name else "img2img" if "Img2Img" in name else "text2img")
    else:
        task = task or ("inpaint" if mask_image is not None else "img2img" if image is not None else "text2img")
        pipe = get_pipeline(model, task=task, device=device, memory=memory)
    spec: ModelSpec | None = getattr(pipe, "zoo_spec", None)
    if spec is None:
        raise ZooError("generate() needs a registry key or a pipeline made by helpers.load_pipeline")
    d = spec.defaults
    steps = d.steps if num_inference_steps is None else int(num_inference_steps)
    guidance = d.guidance_scale if guidance_scale is None else float(guidance_scale)
    inputs = {}
    if task != "text2img":
        image, mask_image, inputs = _edit_inputs(task, image, mask_image)
        width, height = width or image.width, height or image.height
    height, width = height or spec.resolution, width or spec.resolution
    scheduler = scheduler or d.scheduler
    sched_options = d.scheduler_options if scheduler_options is None and scheduler == d.scheduler else {}
    sched_options = {**sched_options, **(scheduler_options or {})}
    _check(spec, steps, guidance, height, width, "input image " if task != "text2img" else "")
    seed_list = _seeds(seed, seeds, num_images)

    set_scheduler(pipe, scheduler, sched_options)
    call = dict(num_inference_steps=steps, guidance_scale=guidance, height=height, width=width)
    params = _call_params(pipe)
    strength = pipeline_kwargs.get("strength", inspect.signature(type(pipe).__call__).parameters.get("strength"))
    strength = getattr(strength, "default", strength)
    if task != "text2img" and isinstance(strength, float) and int(steps * strength) < 1:
        raise ZooError(
            f"strength {strength:g} of {steps} steps runs no step at all: use at least {int(1 / strength) + 1} steps"
        )
    if task != "text2img":
        call["image"] = image
        if mask_image is not None:
            call["mask_image"] = mask_image
        if "height" not in params:  # img2img pipelines take the size from the image
            call.pop("height"), call.pop("width")
    if d.max_sequence_length and "max_sequence_length" in _call_params(pipe):
        call["max_sequence_length"] = d.max_sequence_length
    if "output_type" in pipeline_kwargs:
        raise ZooError("generate() returns PIL images with their records; for latents or tensors call the pipeline")
    call.update(pipeline_kwargs)
    negative_prompt = negative_prompt or None
    if negative_prompt:
        if not _uses_negative(spec, pipe, guidance):
            warnings.warn(
                f"'{spec.key}' ignores the negative prompt (guidance {guidance:g}"
                f"{', distilled guidance' if not d.negative_prompt else ''}); it was not used.",
                stacklevel=2,
            )
            negative_prompt = None
        else:
            call["negative_prompt"] = negative_prompt
    _warn_long_prompt(pipe, spec, prompt, call.get("max_sequence_length"))
    if loras is not None or lora_scale is not None:
        styles.apply(pipe, styles.loras(pipe) if loras is None else loras, lora_scale)
    missing = styles.trigger_words_missing(pipe, prompt)
    if missing:
        warnings.warn(
            f"'{spec.key}' (or its LoRA) is trained on the trigger word(s) {missing}: add them to the prompt "
            "to get its style.",
            stacklevel=2,
        )

    images, timings = [], {"text_encoding": 0.0, "denoising": 0.0, "decoding": 0.0, "total": 0.0}
    if batch_size < 1:
        raise ZooError(f"batch_size must be at least 1 (got {batch_size})")
    batch = batch_size
    dev = pipe.device
    timing.reset_peak(dev)
    batches = [seed_list[i : i + batch] for i in range(0, len(seed_list), batch)]
    previewer = previews.previewer_for(pipe) if on_preview is not None else None
    if on_preview is not None and previewer is None:
        warnings.warn(f"'{spec.key}': no tiny preview VAE for {spec.family} models; no previews", stacklevel=2)
    if on_step is not None or previewer is not None:
        total, counter = steps * len(batches), iter(range(1, 10**9))

        def _step_end(pipeline, i, t, tensors):
            done = next(counter)
            if previewer is not None:
                on_preview(previewer(tensors["latents"], height, width), done, total)
            if on_step is not None:
                on_step(done, total)
            return tensors

        call["callback_on_step_end"] = _step_end
    unit = "image" if batch == 1 else "batch"
    problems = {}
    for chunk in tqdm(batches, desc=f"{spec.key}: {len(seed_list)} images", unit=unit, disable=len(batches) == 1):
        arrays, nsfw, t = _run(pipe, prompt, chunk, generator_device, call)
        bad = [i for i, a in enumerate(arrays) if _broken(a) and not nsfw[i]]
        if bad and pipe.vae.dtype != torch.float32:
            warnings.warn(
                f"'{spec.key}': the VAE overflowed in {str(pipe.vae.dtype).replace('torch.', '')} (NaN or black "
                "image); decoding again with the VAE in float32, which it keeps from now on.",
                stacklevel=2,
            )
            pipe.vae.to(torch.float32)
            arrays, nsfw, t2 = _run(pipe, prompt, chunk, generator_device, call)
            t = {k: t[k] + t2[k] for k in t}
        for i, a in enumerate(arrays):
            index = len(images) + i
            if nsfw[i]:
                problems[index] = "blacked out by the model's safety checker (NSFW concept detected)"
            elif _broken(a):
                problems[index] = "NaN or all-black output (the VAE overflowed even in float32)"
        images += VaeImageProcessor.numpy_to_pil(np.nan_to_num(np.stack(arrays)))
        for k in timings:
            timings[k] += t[k]
    for index, why in problems.items():
        seed_i = seed_list[index]
        warnings.warn(f"'{spec.key}' image {index} (seed {seed_i}): {why}; it will not be saved.", stacklevel=2)
    timings["steps_per_s"] = steps * len(batches) / timings["denoising"] if timings["denoising"] else None
    base = Record(
        prompt=prompt,
        negative_prompt=negative_prompt,
        seed=0,
        num_inference_steps=steps,
        guidance_scale=guidance,
        scheduler=scheduler,
        scheduler_options=sched_options,
        width=images[0].width,
        height=images[0].height,
        model=spec.key,
        extra={k: v for k, v in pipeline_kwargs.items() if isinstance(v, (int, float, str, bool))},
        task=task,
        inputs=inputs,
        loras=styles.loras(pipe),
        repo=spec.repo,
        revision=spec.revision,
        dtype=str(pipe.dtype).replace("torch.", ""),
        vae=getattr(pipe, "zoo_vae", ""),
        device=str(dev),
        versions=versions(),
    )
    recs = [Record.from_dict({**base.__dict__, "seed": s}) for s in seed_list]
    return GenerationResult(images, recs, timings, timing.peak_gb(dev), problems)


def regenerate(source: str | Path | Record, image=None, mask_image=None, **overrides) -> GenerationResult:
    """Make an image again from its PNG (or record): same model, prompt, seed and settings.

    An edit (img2img, inpainting) needs its input image (and mask) again; their fingerprints must match.
    """
    record = source if isinstance(source, Record) else records.read_record(source)
    if not record.model:
        raise ZooError(f"{source}: the record names no model; call generate() with a registry key")
    given = {"image": image, "mask_image": mask_image}
    for name, fp in record.inputs.items():
        if given.get(name) is None:
            raise ZooError(f"{source}: this {record.task} image needs its {name} again: regenerate(path, {name}=...)")
        from .edit import load_image
        from .masks import fingerprint

        loaded = load_image(given[name], mode="L" if name == "mask_image" else "RGB")
        if fingerprint(loaded) != fp:
            raise ZooError(f"{source}: the {name} given is not the one this image was made from ({fp})")
        given[name] = loaded
    inputs = {k: v for k, v in given.items() if v is not None}
    return generate(record.model, **{**record.generate_kwargs(), **inputs, **overrides})


def _edit_inputs(task: str, image, mask_image):
    """Load and check an edit's inputs; their fingerprints go into the record."""
    from .edit import load_image
    from .masks import check, fingerprint

    if image is None:
        raise ZooError(f"task '{task}' needs an input image: generate(..., image=PATH_URL_OR_PIL)")
    image = load_image(image)
    inputs = {"image": fingerprint(image)}
    if task == "inpaint":
        if mask_image is None:
            raise ZooError("inpainting needs a mask_image (white is repainted): see helpers.masks")
        mask_image = check(mask_image if isinstance(mask_image, Image.Image) else load_image(mask_image, "L"), image)
        inputs["mask_image"] = fingerprint(mask_image)
    return image, mask_image, inputs


def versions() -> dict:
    import helpers

    return {
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "helpers": getattr(helpers, "__version__", ""),
    }


def _check(spec: ModelSpec, steps: int, guidance: float, height: int, width: int, what: str = "") -> None:
    if steps < 1:
        raise ZooError(f"num_inference_steps must be at least 1 (got {steps})")
    if guidance < 0:
        raise ZooError(f"guidance_scale cannot be negative (got {guidance:g}); 0 turns guidance off")
    m = SIZE_MULTIPLE[spec.family]
    for name, v in (("height", height), ("width", width)):  # for edits these are the input image's
        if v < m or v % m:
            low = max(m, v // m * m)
            high = low if v <= low else low + m
            raise ZooError(
                f"{what}{name} {v} is not a multiple of {m}, which {spec.family} models need: "
                f"use {low}" + (f" or {high}" if high != low else "") + (" (resize or crop the image)" if what else "")
            )


def _seeds(seed, seeds, num_images: int) -> list[int]:
    if seeds is not None:
        if seed is not None:
            raise ZooError("give seed (the first of consecutive seeds) or seeds (a list), not both")
        return [int(s) for s in seeds]
    if num_images < 1:
        raise ZooError(f"num_images must be at least 1 (got {num_images})")
    start = random.SystemRandom().randrange(2**32) if seed is None else int(seed)
    return [start + i for i in range(num_images)]


def _call_params(pipe) -> set:
    return set(inspect.signature(type(pipe).__call__).parameters)


def _uses_negative(spec: ModelSpec, pipe, guidance: float) -> bool:
    if "negative_prompt" not in _call_params(pipe) or not spec.defaults.negative_prompt:
        return False
    return guidance > 1.0  # classifier-free guidance runs only above 1


def _warn_long_prompt(pipe, spec: ModelSpec, prompt: str, max_sequence_length: int | None) -> None:
    """Warn, naming the words dropped, when the prompt is longer than the text encoder reads."""
    t5_first = spec.family in ("sd3", "flux", "pixart")
    names = ["tokenizer_3", "tokenizer_2", "tokenizer"] if t5_first else ["tokenizer"]
    tok = next((getattr(pipe, n) for n in names if getattr(pipe, n, None) is not None), None)
    if tok is None:
        return
    limit = max_sequence_length if t5_first and max_sequence_length else tok.model_max_length
    if t5_first and not max_sequence_length:
        limit = {"sd3": 256, "pixart": 120}.get(spec.family, 512)
    ids = tok(prompt, add_special_tokens=False, verbose=False).input_ids
    budget = limit - len(tok("", add_special_tokens=True).input_ids)  # room left by <bos>/<eos>
    if len(ids) <= budget:
        return
    dropped = tok.decode(ids[budget:]).strip()
    warnings.warn(
        f"The prompt is {len(ids)} tokens; '{spec.key}' reads {budget}. Dropped: \"{dropped}\". "
        "Shorten the prompt or put the important words first.",
        stacklevel=3,
    )


def _run(pipe, prompt, seeds, generator_device, call):
    """One pipeline call: float images in [0, 1], the safety checker's flags, and the timings."""
    generators = [torch.Generator(generator_device).manual_seed(s) for s in seeds]
    with timing.timed(pipe) as t:
        out = pipe(prompt=prompt, num_images_per_prompt=len(seeds), generator=generators, output_type="np", **call)
    nsfw = getattr(out, "nsfw_content_detected", None) or [False] * len(seeds)
    return list(out.images), [bool(x) for x in nsfw], t


def _broken(image: np.ndarray) -> bool:
    """NaN anywhere, or black everywhere: what an overflowing VAE makes."""
    return bool(np.isnan(image).any() or np.nanmax(image) < 1 / 255)
