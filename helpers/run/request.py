"""A generate call checked against its registry entry before anything is loaded or downloaded.

`settle` fills in the entry's defaults and checks every value, so a bad size, sampler or seed costs nothing and
the error says what to use instead; `check_model` does the same for the model a recipe names. Once the pipeline
is loaded, the prompt is checked against it: a negative prompt the model ignores, words past what its text encoder
reads, trigger words its LoRAs want (`check_negative_prompt`, `check_prompt_length`, `check_trigger_words`).

>>> from helpers.zoo.registry import default
>>> settle(default().get("sd15"), "text2img", "a fox", seed=7, num_images=2).seeds
[7, 8]
"""

from __future__ import annotations

import difflib
import inspect
import random
import warnings
from dataclasses import dataclass, field

from PIL import Image

from ..base import masks
from ..base.errors import UnknownModelError, ZooError
from ..base.families import FAMILIES
from ..base.images import fingerprint, load_image
from ..base.schedulers import scheduler_names
from ..zoo.registry import ModelSpec, Registry
from . import clip_skip as clip_skip_mod
from . import styles


@dataclass
class Request:
    """One generate call, settled: the registry defaults filled in and every value checked against the entry."""

    spec: ModelSpec
    task: str
    prompt: str
    negative_prompt: str | None
    steps: int
    guidance: float
    height: int
    width: int
    scheduler: str
    scheduler_options: dict
    seeds: list[int]
    batch_size: int
    image: Image.Image | None = None
    mask_image: Image.Image | None = None
    inputs: dict = field(default_factory=dict)  # input name -> fingerprint, for the record
    pipeline_kwargs: dict = field(default_factory=dict)
    controls: list = field(default_factory=list)  # helpers.control.Control, settled
    hires: dict = field(default_factory=dict)  # helpers.run.hires settings, settled
    image_prompt: object = None  # helpers.run.ip_adapter.ImagePrompt, settled
    embeddings: dict = field(default_factory=dict)  # textual inversion: source -> the token it binds to
    clip_skip: int = 1  # A1111's numbering (helpers.run.clip_skip)

    @property
    def batches(self) -> list[list[int]]:
        return [self.seeds[i : i + self.batch_size] for i in range(0, len(self.seeds), self.batch_size)]


def settle(spec, task, prompt, negative_prompt=None, steps=None, guidance=None, height=None, width=None, seed=None,
           seeds=None, num_images=1, batch_size=1, scheduler=None, scheduler_options=None, image=None,
           mask_image=None, pipeline_kwargs=None, clip_skip=None, prompt_prefix=None) -> Request:  # fmt: skip
    """Fill in the entry's defaults and check every value; raises a `ZooError` that says what to use instead.

    The entry's `prompt_prefix` (quality tags such as Pony's score tags) goes before the prompt, unless the prompt
    already starts with it or `prompt_prefix` is given ("" for none).
    """
    d = spec.defaults
    prompt = with_prefix(d.prompt_prefix if prompt_prefix is None else prompt_prefix, prompt)
    clip_skip = clip_skip_mod.check(spec.family, spec.key, d.clip_skip if clip_skip is None else clip_skip)
    steps = d.steps if steps is None else int(steps)
    guidance = d.guidance_scale if guidance is None else float(guidance)
    inputs = {}
    if task != "text2img":
        image, mask_image, inputs = _edit_inputs(task, image, mask_image)
        width, height = width or image.width, height or image.height
    height, width = height or spec.resolution, width or spec.resolution
    scheduler = scheduler or d.scheduler
    options = d.scheduler_options if scheduler_options is None and scheduler == d.scheduler else {}
    options = {**options, **(scheduler_options or {})}
    pipeline_kwargs = dict(pipeline_kwargs or {})
    if "output_type" in pipeline_kwargs:
        raise ZooError("generate() returns PIL images with their records; for latents or tensors call the pipeline")
    _check(spec, steps, guidance, height, width, "input image " if task != "text2img" else "")
    _check_scheduler(spec, scheduler)
    if batch_size < 1:
        raise ZooError(f"batch_size must be at least 1 (got {batch_size})")
    if "strength" in pipeline_kwargs:
        check_strength(steps, pipeline_kwargs["strength"])
    return Request(
        spec, task, prompt, negative_prompt or None, steps, guidance, height, width, scheduler, options,
        _seeds(seed, seeds, num_images), batch_size, image, mask_image, inputs, pipeline_kwargs, clip_skip=clip_skip,
    )  # fmt: skip


def with_prefix(prefix: str, prompt: str) -> str:
    """The prompt after the prefix and a comma, as the model cards write it; unchanged if it starts with it."""
    prefix = prefix.strip().rstrip(",").strip()
    if not prefix or prompt.lstrip().startswith(prefix):
        return prompt
    return f"{prefix}, {prompt}" if prompt.strip() else prefix


def _check(spec: ModelSpec, steps: int, guidance: float, height: int, width: int, what: str = "") -> None:
    if steps < 1:
        raise ZooError(f"num_inference_steps must be at least 1 (got {steps})")
    if guidance < 0:
        raise ZooError(f"guidance_scale cannot be negative (got {guidance:g}); 0 turns guidance off")
    m = FAMILIES[spec.family].size_multiple
    for name, v in (("height", height), ("width", width)):  # for edits these are the input image's
        if v < m or v % m:
            low = max(m, v // m * m)
            high = low if v <= low else low + m
            raise ZooError(
                f"{what}{name} {v} is not a multiple of {m}, which {spec.family} models need: "
                f"use {low}" + (f" or {high}" if high != low else "") + (" (resize or crop the image)" if what else "")
            )


def _check_scheduler(spec: ModelSpec, name: str) -> None:
    valid = scheduler_names(spec.family, spec.prediction)
    if name not in valid:
        who = f"'{spec.key}' ({spec.family})"
        raise ZooError(f"Scheduler '{name}' is not valid for {who}; use one of: {', '.join(valid)}")


def check_strength(steps: int, strength) -> None:
    if isinstance(strength, float) and int(steps * strength) < 1:
        raise ZooError(
            f"strength {strength:g} of {steps} steps runs no step at all: use at least {int(1 / strength) + 1} steps"
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


def _edit_inputs(task: str, image, mask_image):
    """Load and check an edit's inputs; their fingerprints go into the record."""
    if image is None:
        raise ZooError(
            f"task '{task}' needs an input image: generate(..., image=PATH_URL_OR_PIL)"
            + (" or helpers.edit.instruct(model, image, instruction)" if task == "instruct" else "")
        )
    image = load_image(image)
    inputs = {"image": fingerprint(image)}
    if task == "instruct" and mask_image is not None:
        raise ZooError(
            "instruction editing takes no mask_image: the instruction says what to change; "
            "for a masked edit use task 'inpaint'"
        )
    if task == "inpaint":
        if mask_image is None:
            raise ZooError("inpainting needs a mask_image (white is repainted): see helpers.masks")
        mask = mask_image if isinstance(mask_image, Image.Image) else load_image(mask_image, "L")
        mask_image = masks.check(mask, image)
        if mask_image.getextrema()[1] == 0:
            raise ZooError(
                "the mask_image is all black, so nothing would be repainted: paint white where the image should "
                "change (helpers.masks.box, ellipse, polygon), or use img2img to change the whole image"
            )
        inputs["mask_image"] = fingerprint(mask_image)
    return image, mask_image, inputs


def _known(key: str, registry: Registry) -> bool:
    try:
        registry.get(key)
    except UnknownModelError:
        return False
    return True


def check_model(source, recorded: str, model, registry: Registry) -> None:
    """Raise, naming the likeliest registry key, when a recipe's own model is one the registry does not know."""
    if isinstance(model, str) and model == recorded and not _known(model, registry):
        guess = registry_key_for(recorded, registry)
        raise UnknownModelError(
            f"{source}: its recipe names model '{recorded}', which the registry does not know"
            + (f". Did you mean '{guess}'? Then: regenerate(path, model='{guess}')" if guess else "")
            + "; pass model=KEY to regenerate it with a registry model (`python -m helpers list`)"
        )


def registry_key_for(name: str, registry: Registry) -> str | None:
    """The registry key a checkpoint name (e.g. A1111's 'v1-5-pruned-emaonly') most likely means, if any."""

    def norm(text):
        return "".join(c for c in text.lower() if c.isalnum())

    target, best = norm(name), (2, 0.0, None)
    for m in registry.models.values():
        for cand in (m.key, *m.aliases, m.repo.split("/")[1]):
            match = difflib.SequenceMatcher(None, target, norm(cand))
            # versions decide ('v1-5' is sd15, not sd14): the longest common run that holds a digit
            runs = [b.size for b in match.get_matching_blocks() if any(c.isdigit() for c in target[b.a : b.a + b.size])]
            best = max(best, (max(runs, default=0), match.ratio(), m.key), key=lambda s: s[:2])
    return best[2]


# --- the prompt against the loaded pipeline: what its text encoders read, what its LoRAs want -----------------


def call_params(pipe) -> set:
    """The names the pipeline's call takes."""
    return set(inspect.signature(type(pipe).__call__).parameters)


def call_default(pipe, name: str):
    """The default of one of the pipeline call's arguments (None when it has no such argument)."""
    param = inspect.signature(type(pipe).__call__).parameters.get(name)
    return None if param is None else param.default


def check_negative_prompt(pipe, request: Request) -> bool:
    """Whether the call uses the request's negative prompt; one the model ignores is dropped, with a warning."""
    if not request.negative_prompt:
        return False
    spec = request.spec
    if "negative_prompt" in call_params(pipe) and spec.defaults.negative_prompt and request.guidance > 1.0:
        return True  # classifier-free guidance runs only above 1
    warnings.warn(
        f"'{spec.key}' ignores the negative prompt (guidance {request.guidance:g}"
        f"{', distilled guidance' if not spec.defaults.negative_prompt else ''}); it was not used.",
        stacklevel=4,
    )
    request.negative_prompt = None
    return False


def check_prompt_length(pipe, spec: ModelSpec, prompt: str, max_sequence_length: int | None) -> None:
    """Warn, naming the words dropped, when the prompt is longer than the text encoder reads."""
    family = FAMILIES[spec.family]
    tok = getattr(pipe, family.prompt_tokenizer, None)
    if tok is None:
        return
    limit = tok.model_max_length
    if family.t5:  # T5 reads what the pipeline call says: ours, else the call's own default
        limit = max_sequence_length or call_default(pipe, "max_sequence_length") or limit
    ids = tok(prompt, add_special_tokens=False, verbose=False).input_ids
    budget = limit - len(tok("", add_special_tokens=True).input_ids)  # room left by <bos>/<eos>
    if len(ids) <= budget:
        return
    words = tok.decode(ids[budget:]).split()
    dropped = " ".join(words[:8]) + (f" ... ({len(words) - 8} more words)" if len(words) > 8 else "")
    warnings.warn(
        f"The prompt is {len(ids)} tokens; '{spec.key}' reads {budget}. Dropped: \"{dropped}\". "
        "Shorten the prompt or put the important words first.",
        stacklevel=4,
    )


def check_trigger_words(pipe, request: Request) -> None:
    """Warn when the model (or a LoRA on it) is trained on trigger words the prompt leaves out."""
    missing = styles.trigger_words_missing(pipe, request.prompt)
    if missing:
        warnings.warn(
            f"'{request.spec.key}' (or its LoRA) is trained on the trigger word(s) {missing}: add them to the "
            "prompt to get its style.",
            stacklevel=4,
        )
