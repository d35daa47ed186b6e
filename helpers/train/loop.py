"""Fine-tuning on your own images: LoRA, DreamBooth-LoRA and textual inversion, resumable, for a Colab T4.

>>> from helpers.train import loop as train
>>> result = train.train(train.TrainConfig("lora", "sd15", images="my-photos", instance_prompt="a photo in zkz style"))
>>> result.files["lora"], result.files["kohya"], result.grid        # weights, A1111/ComfyUI copy, validation grid
>>> helpers.generate("sd15", "a fox, zkz style", loras={result.name: 1.0})

The same call (or `python -m helpers train ...`) after a crash resumes from the last checkpoint. peft makes the
LoRA layers, accelerate does mixed precision, devices, several processes and the checkpoints; the frozen model
comes from `helpers.run.loading`, so revisions, variants and errors are the zoo's. Plans and presets are in
`helpers.train.plan`, data in `helpers.train.data`, the files written in `helpers.base.adapters`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from ..base import adapters as trainexport
from ..base.errors import ZooError
from ..base.grids import image_grid
from ..base.records import read_record
from ..base.versions import versions
from ..run.generate import generate
from ..run.loading import load_pipeline
from ..run.memory import MACHINES, Machine, Policy, cached_scale
from ..zoo.registry import default as default_registry
from . import data as traindata
from . import plan as trainplan
from . import steps as trainsteps
from .steps import fixed_batch_loss  # noqa: F401 - part of this module's interface

_NOT_IN_FINGERPRINT = ("out", "steps", "device", "validation_every", "validation_prompts", "validation_seeds",
                       "validation_inference_steps", "checkpoint_every", "keep_checkpoints")  # fmt: skip
DEFAULT_LR = {"lora": 1e-4, "dreambooth": 1e-4, "textual-inversion": 5e-4}
# A name is a file and folder name and a peft adapter name (which may not hold "."): letters, digits, - and _.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
# The command line's flag of each field whose name differs from it.
FLAGS = {"validation_inference_steps": "validation-steps"}


@dataclass
class TrainConfig:
    """One training run. What is left out gets a sensible default for the kind and the model."""

    kind: str  # "lora", "dreambooth" or "textual-inversion"
    model: str  # a registry key (sd1, sd2 or sdxl family)
    images: str  # a folder of images, each with an optional same-name .txt caption
    out: str | None = None  # default: the adapters folder / name (see helpers.base.adapters)
    name: str | None = None  # default: "<model>-<kind>"
    steps: int = 500
    rank: int = 4
    alpha: float | None = None  # LoRA alpha; default the rank (scale 1)
    lr: float | None = None
    batch_size: int = 1
    resolution: int | None = None  # default: the model's native size
    buckets: bool = False  # aspect-ratio buckets instead of centre crops
    instance_prompt: str | None = None  # the prompt of images without a caption (DreamBooth: "a photo of sks dog")
    class_prompt: str | None = None  # DreamBooth prior preservation: "a photo of a dog"
    num_class_images: int = 100
    prior_loss_weight: float = 1.0
    token: str | None = None  # textual inversion: the new token, e.g. "<my-toy>"
    init_word: str = "object"  # textual inversion: the word whose embedding the token starts from
    num_vectors: int = 1
    seed: int = 0
    validation_prompts: list[str] = field(default_factory=list)  # default: the instance prompt
    validation_seeds: list[int] = field(default_factory=lambda: [1, 2])
    validation_every: int = 100
    validation_inference_steps: int | None = None  # default: the model's
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    device: str = "auto"
    max_grad_norm: float = 1.0
    preset: str = "auto"  # "auto": picked for this machine; "t4": the Colab T4 preset on any CUDA GPU (benchmarks)

    def resolved(self, spec) -> TrainConfig:
        """The config with every default filled in (what the metadata records)."""
        c = dataclasses.replace(self)
        if c.kind not in trainplan.KINDS:
            raise ZooError(f"unknown training kind '{c.kind}'; use one of {', '.join(trainplan.KINDS)}")
        c.name = check_name(c.name) if c.name is not None else f"{spec.key}-{c.kind}".replace(".", "-")
        c.out = str(c.out or trainexport.adapters_dir() / c.name)
        c.alpha = c.rank if c.alpha is None else c.alpha  # 0 is refused below, not replaced by a default
        c.lr = DEFAULT_LR[c.kind] if c.lr is None else c.lr
        c.resolution = spec.resolution if c.resolution is None else c.resolution
        check_numbers(c)
        c.alpha = float(c.alpha)
        if c.kind == "textual-inversion":
            c.token = c.token or f"<{c.name}>"
            c.instance_prompt = c.instance_prompt or trainsteps.TI_TEMPLATES[0].format(c.token)
        if c.kind == "dreambooth" and not (c.instance_prompt and c.class_prompt):
            raise ZooError(
                "DreamBooth needs --instance-prompt ('a photo of sks dog') and --class-prompt ('a photo of a dog')"
            )
        c.validation_prompts = list(c.validation_prompts) or [c.instance_prompt or "a photo"]
        return c

    def fingerprint(self) -> str:
        """A hash of what decides the trained weights (not where they go or how often they are looked at)."""
        keep = {k: v for k, v in dataclasses.asdict(self).items() if k not in _NOT_IN_FINGERPRINT}
        return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _flag(field_name: str) -> str:
    return "--" + FLAGS.get(field_name, field_name.replace("_", "-"))


def check_name(name: str) -> str:
    """An adapter name: a file name (it becomes adapters/NAME/NAME.safetensors), not a path; said once, up front."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ZooError(
            f"--name {name!r}: a name is a file name, not a path: letters, digits, '-' and '_' (no '/', no '.', "
            f"at most 100), starting with a letter or digit; it becomes adapters/NAME/NAME.safetensors and the "
            f"name you load it by. For example --name {_suggest(name)}"
        )
    return name


def _suggest(name) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(name)).strip("-_")[:100] or "my-style"


def check_numbers(c: TrainConfig) -> None:
    """Every number of a run checked before anything loads, each refused with its flag and what it takes."""
    whole = {"steps": 1, "rank": 1, "batch_size": 1, "num_vectors": 1, "validation_every": 1,
             "checkpoint_every": 1, "keep_checkpoints": 1, "num_class_images": 1}  # fmt: skip
    if c.validation_inference_steps is not None:
        whole["validation_inference_steps"] = 1
    for name, least in whole.items():
        value = getattr(c, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ZooError(f"{_flag(name)} {value}: give a whole number of {least} or more")
    for name in ("lr", "alpha"):
        value = getattr(c, name)
        if not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
            raise ZooError(f"{_flag(name)} {value}: give a number above 0")
    for name in ("max_grad_norm", "prior_loss_weight"):
        value = getattr(c, name)
        if not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            raise ZooError(f"{_flag(name)} {value}: give a number of 0 or more")
    r = c.resolution
    if not isinstance(r, int) or isinstance(r, bool) or r < 8 or r % 8:
        near = max(8, round(r / 8) * 8) if isinstance(r, (int, float)) and r > 0 else 512
        raise ZooError(
            f"--resolution {r}: give a multiple of 8 (the VAE makes latents 8 times smaller, and the validation "
            f"images need it), such as {near}"
        )
    if not c.validation_seeds:
        raise ZooError("validation_seeds is empty: give at least one seed for the validation images")


@dataclass
class TrainResult:
    name: str
    out_dir: Path
    files: dict  # "lora", "kohya", "embedding", "a1111", "metadata" -> Path
    losses: list[float]  # one per step, from the start (a resumed run keeps the earlier ones)
    validation: dict  # step -> [PNG paths]
    grid: Image.Image | None
    metadata: dict
    preset: trainplan.Preset
    estimate: trainplan.Estimate
    seconds: float = 0.0  # the whole call: loading, training, validation, saving
    train_seconds: float = 0.0  # the optimizer steps of this call only (what steps/s is made of)
    validation_seconds: float = 0.0  # validation images and checkpoints of this call
    steps_this_call: int = 0  # a resumed run's earlier steps are not this call's

    @property
    def steps_per_s(self) -> float:
        """Training speed: this call's steps over their own time (validation and checkpoints left out)."""
        return self.steps_this_call / self.train_seconds if self.train_seconds else 0.0


class Stopped(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C, a stopped kernel); says where, and from where a rerun resumes."""

    def __init__(self, step: int, resume_from: int):
        super().__init__(step, resume_from)
        self.step, self.resume_from = step, resume_from

    def __str__(self) -> str:
        if self.resume_from:
            return f"stopped at step {self.step}; rerun the same command to resume from step {self.resume_from}"
        return f"stopped at step {self.step}, before the first checkpoint; rerun the same command to start again"


class _Progress:
    """What a checkpoint holds besides the optimizer: the step, the noise generator and the trained tensors."""

    def __init__(self, tensors: dict, generator: torch.Generator):
        self.step, self.losses, self.tensors, self.generator = 0, [], tensors, generator

    def state_dict(self):
        return {"step": self.step, "losses": list(self.losses), "rng": self.generator.get_state(),
                "tensors": {k: v.detach().cpu().clone() for k, v in self.tensors.items()}}  # fmt: skip

    def load_state_dict(self, state):
        self.step, self.losses = int(state["step"]), list(state["losses"])
        self.generator.set_state(state["rng"])
        with torch.no_grad():
            for k, v in state["tensors"].items():
                self.tensors[k].copy_(v)


def plan(config: TrainConfig, machine: Machine | None = None, bf16: bool | None = None):
    """The preset and memory estimate for a run on a machine (default: this one); refuses what cannot fit."""
    spec = default_registry().get(config.model)
    c = config.resolved(spec)
    if c.preset not in ("auto", "t4"):
        raise ZooError(f"preset '{c.preset}' is not 'auto' or 't4'")
    if c.preset == "t4":  # planned and trained as on a Colab T4, whatever the GPU
        machine, bf16 = MACHINES["T4 16 GB, 12 GB RAM (Colab)"], False
    machine = machine or Machine.detect(c.device)
    if bf16 is None:
        bf16 = machine.device == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    preset = trainplan.pick_preset(machine, bf16=bf16)
    est = trainplan.estimate(spec, c.kind, preset, c.resolution, c.batch_size, c.rank,
                             prior_preservation=c.kind == "dreambooth", num_vectors=c.num_vectors,
                             scale=cached_scale(spec))  # fmt: skip
    what = f"{c.kind} on '{spec.key}' at {c.resolution} px, batch {c.batch_size}"
    trainplan.check_fits(est, machine, what)
    return c, preset, est


def train(config: TrainConfig, on_step=None) -> TrainResult:
    """Train, validating and checkpointing as it goes; resumes from the last checkpoint of the same run.

    `on_step(step, loss)` is called after every optimizer step (raise in it to stop, as a crash would).
    """
    from accelerate import Accelerator

    started = time.perf_counter()
    c, preset, est = plan(config)
    spec = default_registry().get(c.model)
    acc = Accelerator(mixed_precision=preset.mixed_precision, cpu=preset.device == "cpu")
    main = acc.is_main_process
    say = print if main else (lambda *a, **k: None)
    say(f"[{c.name}] {preset.describe()}")
    say(f"[{c.name}] memory: {est.describe()}")
    out = Path(c.out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    with open(out / "ranks.log", "a") as log:  # which processes ran (a multi-process run has one line each)
        log.write(f"rank {acc.process_index} of {acc.num_processes} on {acc.device.type}\n")

    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(preset.mixed_precision, torch.float32)
    device = "cpu" if acc.device.type == "cpu" else str(acc.device)
    policy = Policy("cpu" if device == "cpu" else "gpu", "training (planned by helpers.train.plan)")
    # A zoo PNG's recipe prompt captions a LoRA's image; DreamBooth and textual inversion keep their instance prompt
    # (its identifier or token is what they learn).
    items = traindata.load_folder(c.images, c.resolution, c.buckets, c.instance_prompt or "", _multiple(c.resolution),
                                  recipes=c.kind == "lora")  # fmt: skip
    pipe = load_pipeline(spec.key, device=device, dtype=weight_dtype, fast="off", memory=policy)
    pipe.set_progress_bar_config(disable=True)
    classes = _class_images(pipe, c, acc) if c.kind == "dreambooth" else []
    acc.wait_for_everyone()

    torch.manual_seed(c.seed)  # the LoRA's initial weights
    trained, ti = trainsteps.make_trainable(pipe, c)
    if preset.gradient_checkpointing:
        pipe.unet.enable_gradient_checkpointing()
    cache = trainsteps.cache_inputs(pipe, items + classes, c, ti is not None)
    if device != "cpu":  # text encoders and VAE wait in RAM until validation
        trainsteps.offload(pipe, keep_text=ti is not None)

    params = list(trained.values())
    optimizer = trainsteps.make_optimizer(preset, params, c)
    optimizer = acc.prepare(optimizer)
    generator = torch.Generator("cpu").manual_seed(c.seed)
    progress = _Progress(trained, generator)
    acc.register_for_checkpointing(progress)
    _resume(acc, out, c)
    noise_scheduler = trainsteps.training_scheduler(pipe)

    per_epoch = len(traindata.batches(items, c.batch_size * acc.num_processes, c.seed, 0))
    bar = tqdm(total=c.steps, initial=progress.step, desc=f"{c.name}", disable=not main, unit="step")
    pipe.unet.train()
    t0, s0, paused = time.perf_counter(), progress.step, 0.0
    try:
        while progress.step < c.steps:
            step = progress.step
            epoch = traindata.batches(items, c.batch_size * acc.num_processes, c.seed, step // per_epoch)
            batch = epoch[step % per_epoch]
            mine = batch[acc.process_index :: acc.num_processes] or batch[:1]
            cls = [len(items) + (step * c.batch_size + j) % len(classes) for j in range(len(mine))] if classes else []
            loss = trainsteps.loss(pipe, cache, mine + cls, noise_scheduler, generator, c, ti, acc, weight_dtype,
                                   len(mine))  # fmt: skip
            acc.backward(loss)
            trainsteps.sync_grads(acc, params)
            if acc.sync_gradients and c.max_grad_norm:
                acc.clip_grad_norm_(params, c.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            value = float(acc.reduce(loss.detach(), "mean"))
            progress.losses.append(value)
            progress.step += 1
            rate = (progress.step - s0) / max(1e-9, time.perf_counter() - t0 - paused)  # training only
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", steps_per_s=f"{rate:.2f}")
            pause = time.perf_counter()
            if progress.step % c.validation_every == 0 or progress.step == c.steps:
                _validate(pipe, c, progress.step, acc, ti)
            if progress.step % c.checkpoint_every == 0 or progress.step == c.steps:
                _checkpoint(acc, out, progress.step, c)
            paused += time.perf_counter() - pause
            if on_step is not None:
                on_step(progress.step, value)
    except KeyboardInterrupt:  # Ctrl-C, a stopped kernel: where it stopped and where a rerun resumes
        bar.close()
        done = _checkpoints(out)
        raise Stopped(progress.step, int(done[-1].name.split("-")[1]) if done else 0) from None
    elapsed = time.perf_counter() - t0
    bar.close()
    acc.wait_for_everyone()
    files = _export(pipe, c, spec, trained, ti, progress, items, classes) if main else {}
    grid = validation_grid(out) if main else None
    if grid is not None:
        files["grid"] = out / "validation" / "grid.png"
        grid.save(files["grid"])
    meta = json.loads(files["metadata"].read_text()) if main else {}
    result = TrainResult(c.name, out, files, progress.losses, _validation_paths(out), grid, meta, preset, est)
    result.seconds = time.perf_counter() - started
    result.train_seconds, result.validation_seconds = elapsed - paused, paused
    result.steps_this_call = progress.step - s0
    acc.end_training()
    return result


def _multiple(resolution: int) -> int:
    return 64 if resolution >= 256 else 8


def _class_images(pipe, c: TrainConfig, acc) -> list:
    """DreamBooth's class images, made by the base model itself with recorded seeds (reused when present)."""
    folder = Path(c.out) / "class_images"
    have = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if acc.is_main_process and len(have) < c.num_class_images:
        seeds = [10_000 + i for i in range(len(have), c.num_class_images)]
        steps = c.validation_inference_steps
        result = generate(pipe, c.class_prompt, seeds=seeds, num_inference_steps=steps,
                          height=c.resolution, width=c.resolution)  # fmt: skip
        result.save(folder)
    acc.wait_for_everyone()
    items = traindata.load_folder(folder, c.resolution, False, c.class_prompt, _multiple(c.resolution), recipes=False)
    return [dataclasses.replace(i, prompt=c.class_prompt) for i in items[: c.num_class_images]]


def _validate(pipe, c: TrainConfig, step: int, acc, ti) -> None:
    """Images from the fixed validation prompts and seeds, saved with their recipes under validation/."""
    acc.wait_for_everyone()
    if acc.is_main_process:
        dev = pipe.unet.device
        for enc in trainsteps.text_encoders(pipe):
            enc.to(dev)
        pipe.vae.to(dev)
        pipe.unet.eval()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        folder = Path(c.out) / "validation" / f"step-{step:06d}"
        shutil.rmtree(folder, ignore_errors=True)  # a resumed run makes this step's images again
        for prompt in c.validation_prompts:
            result = generate(pipe, prompt, seeds=c.validation_seeds, num_inference_steps=c.validation_inference_steps,
                              height=c.resolution, width=c.resolution)  # fmt: skip
            result.records[:] = [dataclasses.replace(r, loras={c.name: 1.0}) for r in result.records]
            result.save(folder)
        pipe.unet.train()
        if dev.type != "cpu":
            trainsteps.offload(pipe, keep_text=ti is not None)
    acc.wait_for_everyone()


def _validation_paths(out: Path) -> dict:
    root = out / "validation"
    folders = sorted(root.glob("step-*")) if root.is_dir() else []
    return {int(f.name.split("-")[1]): sorted(f.glob("*.png")) for f in folders}


def validation_grid(out: str | Path) -> Image.Image | None:
    """The validation images of a run as a grid: one column per step, one row per prompt and seed."""
    by_step = _validation_paths(Path(out))
    if not by_step:
        return None
    steps = sorted(by_step)
    rows, labels = {}, {}
    for col, step in enumerate(steps):
        for path in by_step[step]:
            rec = read_record(path)
            key = (rec.prompt, rec.seed)
            rows.setdefault(key, [None] * len(steps))[col] = Image.open(path).convert("RGB")
            labels[key] = f"{rec.prompt[:40]} (seed {rec.seed})"
    keys = sorted(rows)
    return image_grid([rows[k] for k in keys], col_labels=[f"step {s}" for s in steps],
                      row_labels=[labels[k] for k in keys], x_title="training step")  # fmt: skip


def _checkpoint(acc, out: Path, step: int, c: TrainConfig) -> None:
    """accelerate's full state (trained tensors, optimizer, RNGs) with a mark written last, so a save cut off
    by a crash is never resumed from; older checkpoints beyond `keep_checkpoints` are removed."""
    folder = out / "checkpoints" / f"step-{step:06d}"
    acc.save_state(str(folder))
    acc.wait_for_everyone()
    if acc.is_main_process:
        (folder / "complete.json").write_text(json.dumps({"step": step, "fingerprint": c.fingerprint()}))
        done = _checkpoints(out)
        for old in done[: -c.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()


def _checkpoints(out: Path) -> list[Path]:
    root = out / "checkpoints"
    return sorted(p for p in root.glob("step-*") if (p / "complete.json").is_file()) if root.is_dir() else []


def require_checkpoint(config: TrainConfig) -> Path:
    """The last complete checkpoint of a run, or a `ZooError` saying there is none."""
    c = config.resolved(default_registry().get(config.model))
    done = _checkpoints(Path(c.out))
    if not done:
        raise ZooError(f"--resume: {c.out} holds no complete checkpoint; run without --resume to start")
    return done[-1]


def _resume(acc, out: Path, c: TrainConfig) -> None:
    done = _checkpoints(out)
    if not done:
        return
    last = done[-1]
    mark = json.loads((last / "complete.json").read_text())
    if mark["fingerprint"] != c.fingerprint():
        raise ZooError(
            f"{out} holds checkpoints of a run with other settings (data, model or hyper-parameters); "
            "give another --out or --name, or delete its checkpoints/ folder to start again"
        )
    acc.load_state(str(last))
    print(f"[{c.name}] resumed from {last.name}")


def _export(pipe, c, spec, trained, ti, progress, items, classes) -> dict:
    """The adapter files and the metadata JSON."""
    out = Path(c.out)
    files = {}
    if ti is not None:
        files["embedding"], files["a1111"] = trainexport.save_embedding(ti.vectors(), c.token, out, c.name,
                                                                        progress.step, spec.key)  # fmt: skip
    else:
        from peft.utils import get_peft_model_state_dict

        layers = get_peft_model_state_dict(pipe.unet)
        files["lora"], files["kohya"] = trainexport.save_lora(pipe, layers, out, c.name, c.rank, c.alpha)
    facts = {
        "name": c.name,
        "kind": c.kind,
        "base_model": spec.key,
        "repo": spec.repo,
        "revision": spec.revision,
        "family": spec.family,
        "data_hash": traindata.data_hash(items),
        "images": [i.source for i in items],
        "class_images": len(classes),
        "class_image_seeds": [10_000 + i for i in range(len(classes))],
        "hyperparameters": {k: v for k, v in dataclasses.asdict(c).items() if k not in ("out", "device")},
        "steps": progress.step,
        "seed": c.seed,
        "validation_seeds": list(c.validation_seeds),
        "token": c.token if ti is not None else None,
        "final_loss": progress.losses[-1] if progress.losses else None,
        "files": {k: v.name for k, v in files.items()},
        "versions": versions(),
    }
    files["metadata"] = trainexport.write_metadata(out, c.name, facts)
    return files
