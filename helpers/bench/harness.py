"""The benchmark harness: this project's loading and fast mode against the plain diffusers recipe, in one run.

For each model and variant, in a fresh process (so that no variant inherits another's warm GPU, allocator or
compiled graphs), it measures the time to the first image from the local disk cache (load plus first
generation), steady-state denoising steps per second, end-to-end latency, VAE decode time and peak GPU memory;
the FLOPs of one denoising step (`helpers.bench.flops`, counted from the configs) give the model FLOP
utilisation. Variants:

- `diffusers`: the model-card recipe, `DiffusionPipeline.from_pretrained(repo, dtype=...).to(device)`, the repo's
  scheduler, and the same fp16-safe VAE as ours where we swap one in (SDXL): the baseline ratios are taken against;
- `eager`, `auto`, `max`, `graphs`: `load_pipeline(key, fast=...)` + `generate`, with the presets of `helpers.fast`.

Every variant uses the repo's own scheduler, the same steps, guidance, size and seed. The switch time is that of
bringing a model parked in system RAM back to the GPU while another is parked (`helpers.run.cache`). Results go to a
JSON file and a markdown table, with the machine, versions and settings.

    python -m helpers bench sd15 sdxl-base --switch sdxl-base,animagine-xl-3.1
"""

from __future__ import annotations

import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import diffusers
import psutil
import torch
from huggingface_hub import snapshot_download

from ..base import timing
from ..base.devices import peak_gb, pick_device, pick_dtype, reset_peak, synchronize
from ..base.errors import ZooError
from ..base.images import parse_size
from ..base.loaded import record
from ..run.cache import PipelineCache
from ..run.generate import generate
from ..run.loading import fp16_vae_fix, hub_kwargs, load_pipeline
from ..run.memory import RAM_HEADROOM_GB, footprint
from ..zoo.registry import default
from .flops import step_flops
from .report import compare_images, machine, summarise, write

PROMPT = "a photograph of an astronaut riding a horse on the moon, highly detailed"
VARIANTS = ("diffusers", "eager", "auto", "max", "graphs")
DEFAULT_VARIANTS = ("diffusers", "eager", "auto", "max")
# --- inside one worker process -------------------------------------------------------------------


def _snapshot(spec) -> Path:
    return Path(snapshot_download(spec.repo, revision=spec.revision, local_files_only=True))


def _warm_disk_cache(spec) -> int:
    """Read every file of the model's snapshot once, so load times are from a warm page cache; returns bytes."""
    folder, total = _snapshot(spec), 0
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                while chunk := f.read(1 << 24):
                    total += len(chunk)
    return total


def measure(key: str, variant: str, settings: dict, image_path: str | None = None) -> dict:
    """Load `key` as `variant`, make the first image, then time `warmup` + `repeats` more; one dict of figures."""
    spec = default().get(key)
    device = pick_device(settings.get("device", "auto"))
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.init()
        torch.empty(1, device=dev)  # the CUDA context exists before the clock starts, as in a notebook
    steps, guidance = settings["steps"][key], settings["guidance"][key]
    height, width = settings["height"][key], settings["width"][key]
    out = {"model": key, "variant": variant, "bytes_read": _warm_disk_cache(spec)}
    reset_peak(dev)
    start = time.perf_counter()
    if variant == "diffusers":
        pipe = _plain_pipeline(spec, device, device)
        extra = {"max_sequence_length": spec.defaults.max_sequence_length} if spec.defaults.max_sequence_length else {}

        def run(seed=0):
            call = dict(num_inference_steps=steps, guidance_scale=guidance, height=height, width=width, **extra)
            with timing.timed(pipe) as watch:
                image = pipe(PROMPT, generator=torch.Generator("cpu").manual_seed(seed), **call).images[0]
            return image, watch.seconds
    else:
        pipe = load_pipeline(key, device=device, fast="off" if variant == "eager" else variant)
        out["fast"] = record(pipe).fast.describe()  # what the preset became here: "auto" is "off" on a CPU

        def run(seed=0):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                r = generate(pipe, PROMPT, seed=seed, num_inference_steps=steps, guidance_scale=guidance,
                             height=height, width=width, scheduler="default")  # fmt: skip
            if any("overflowed" in str(w.message) for w in caught):
                out["vae_retry_in_float32"] = True
            return r.images[0], r.timings

    out["load_s"] = time.perf_counter() - start
    image, _ = run()
    synchronize(dev)
    out["first_image_s"] = time.perf_counter() - start
    for i in range(settings["warmup"]):
        run(seed=i + 1)
    runs = []
    for _ in range(settings["repeats"]):
        begin = time.perf_counter()
        image, t = run()
        synchronize(dev)
        runs.append({**t, "wall": time.perf_counter() - begin})
    med = {k: statistics.median(r[k] for r in runs) for k in ("wall", "denoising", "decoding", "text_encoding")}
    out.update(
        latency_s=med["wall"],
        denoising_s=med["denoising"],
        decode_s=med["decoding"],
        text_encoding_s=med["text_encoding"],
        steps_per_s=steps / med["denoising"] if med["denoising"] else None,
        peak_memory_gb=peak_gb(dev),
    )
    if image_path:
        image.save(image_path)
    out["flops_per_step"] = step_flops(spec, _snapshot(spec), height, width, guidance)
    return out


def measure_switch(keys: list[str], settings: dict, times: int = 3) -> dict:
    """Seconds to bring a model held in system RAM onto the device while the other leaves it: this project's
    cache (parked in pinned RAM, host copies kept) and, as the baseline, `pipe_a.to("cpu"); pipe_b.to("cuda")`.

    The first switch (which makes the first host copy) is reported apart; `switch_s` is the median of the rest.
    """
    reg, device = default(), pick_device(settings.get("device", "auto"))
    dev, order = torch.device(device), [keys[i % len(keys)] for i in range(times * len(keys) + 1)]
    problem = ram_problem(keys, device, psutil.virtual_memory().available / 2**30)
    if problem:
        return {"models": keys, "error": problem}

    def timed(switch) -> list[float]:
        seconds = []
        for key in order:
            start = time.perf_counter()
            switch(key)
            synchronize(dev)
            seconds.append(time.perf_counter() - start)
        return seconds

    budget = max(footprint(reg.get(k)).weights_gb for k in keys) * 1.3  # room for one model at a time
    cache = PipelineCache(device_budget_gb=budget, host_budget_gb=10_000)
    for key in keys:
        cache.get(key, device=device)
    ours = timed(lambda key: cache.get(key, device=device))
    cache.evict()
    pipes = {k: _plain_pipeline(reg.get(k), device, "cpu") for k in keys}
    current = [keys[-1]]
    pipes[keys[-1]].to(device)

    def plain(key):
        pipes[current[0]].to("cpu")
        pipes[key].to(device)
        current[0] = key

    theirs = timed(plain)
    how = "parked in pinned system RAM, moved to the GPU" if device != "cpu" else "no GPU: both stay in RAM"
    return {"models": keys, "switch_s": statistics.median(ours[1:]), "first_switch_s": ours[0], "all_s": ours,
            "diffusers_switch_s": statistics.median(theirs[1:]), "how": how}  # fmt: skip


def ram_problem(keys: list[str], device: str, free_gb: float) -> str | None:
    """Why the switching test must not run here (its baseline holds both models in system RAM), or None.

    Running out of RAM kills a Colab runtime; on a T4 runtime (12 GB) two SDXL-class models do not fit.
    """
    need = sum(footprint(default().get(k)).weights_gb for k in keys) + RAM_HEADROOM_GB
    if device == "cpu" or free_gb >= need:
        return None
    return f"skipped: switching needs {need:.0f} GB of free RAM for both models, {free_gb:.0f} GB are free"


def _plain_pipeline(spec, device: str, to: str, dtype: torch.dtype | None = None):
    """The model-card recipe: `DiffusionPipeline.from_pretrained(repo, dtype=...)`, moved to `to`.

    Like with like: where this project swaps in an fp16-safe VAE (SDXL in float16), the baseline gets the same VAE
    the way diffusers' docs do it (`vae=AutoencoderKL.from_pretrained("madebyollin/sdxl-vae-fp16-fix")`), so both
    decode in float16 and make the same image; otherwise the baseline would decode in float32 (`force_upcast`).
    """
    dtype = dtype or pick_dtype(spec, device)
    kwargs = hub_kwargs(spec) | {"dtype": dtype}  # revision, safetensors, variant
    fix = fp16_vae_fix(spec, dtype, default())
    if fix:
        vae = default().vae(fix)
        vae_kwargs = hub_kwargs(vae) | {"dtype": dtype} | ({"subfolder": vae.subfolder} if vae.subfolder else {})
        kwargs["vae"] = getattr(diffusers, vae.cls_name).from_pretrained(vae.repo, **vae_kwargs)
    return diffusers.DiffusionPipeline.from_pretrained(spec.repo, **kwargs).to(to)


def _worker(argv: list[str]) -> int:
    """`python -m helpers.bench.harness measure|switch JSON`: one measurement in this process; JSON on the last line."""
    what, spec = argv[0], json.loads(argv[1])
    if what == "measure":
        result = measure(spec["key"], spec["variant"], spec["settings"], spec.get("image"))
    else:
        result = measure_switch(spec["keys"], spec["settings"])
    print("\n" + json.dumps(result))
    return 0


# --- the parent: settings, workers, report --------------------------------------------------------


def settings_for(keys, steps=None, size=None, repeats=3, warmup=1, device="auto") -> dict:
    """Each model's steps, guidance and size (its registry defaults unless given), and the run's counts."""
    reg = default()
    specs = {k: reg.get(k) for k in keys}
    if isinstance(size, (int, str)):  # 512, "768x512"
        size = parse_size(size)
    width, height = size if size else (None, None)
    return {
        "steps": {k: steps or s.defaults.steps for k, s in specs.items()},
        "guidance": {k: s.defaults.guidance_scale for k, s in specs.items()},
        "height": {k: height or s.resolution for k, s in specs.items()},
        "width": {k: width or s.resolution for k, s in specs.items()},
        "family": {k: s.family for k, s in specs.items()},
        "batch_size": 1,
        "scheduler": "the repo's own (default)",
        "prompt": PROMPT,
        "seed": 0,
        "repeats": repeats,
        "warmup": warmup,
        "device": device,
    }


def _spawn(args: list[str], env: dict | None, log) -> dict:
    root = str(Path(__file__).resolve().parents[2])  # `helpers` importable from any working directory
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-m", "helpers.bench.harness", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {}), "PYTHONPATH": path})  # fmt: skip
    log(proc.stderr[-4000:] if proc.returncode else "")
    if proc.returncode:
        return {"error": (proc.stderr.strip().splitlines() or ["worker failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(keys, variants=DEFAULT_VARIANTS, switch=None, steps=None, size=None, repeats=3, warmup=1, device="auto",
        hub_cache: str | None = None, out_dir="benchmarks/results", log=print) -> dict:  # fmt: skip
    """Measure every model in every variant and the switch time; write JSON and markdown; return the results."""
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise ZooError(f"Unknown variant(s) {bad}; use some of {', '.join(VARIANTS)}")
    settings = settings_for(keys, steps, size, repeats, warmup, device)
    env = {"HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1"} if hub_cache else None
    results = []
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(device),
        "settings": settings,
        "random_weights": bool(hub_cache),
        "results": results,
        "switch": None,
    }
    paths = None

    def save():  # after every measurement: a run cut short keeps what it measured
        nonlocal paths
        report["summary"], report["targets"] = summarise(report)
        paths = write(report, out_dir, paths)
        report["files"] = [str(p) for p in paths]

    with tempfile.TemporaryDirectory() as tmp:
        for key in keys:
            for variant in variants:
                log(f"bench: {key} / {variant}")
                image = str(Path(tmp) / f"{key}-{variant}.png")
                job = {"key": key, "variant": variant, "settings": settings, "image": image}
                r = _spawn(["measure", json.dumps(job)], env, log)
                results.append({"model": key, "variant": variant, **r})
                save()
            compare_images(results, key, tmp)
    if switch:
        log(f"bench: switching {' <-> '.join(switch)}")
        report["switch"] = _spawn(["switch", json.dumps({"keys": list(switch), "settings": settings})], env, log)
    save()
    return report


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
