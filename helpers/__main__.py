"""The command line: `python -m helpers COMMAND`.

python -m helpers list --family sdxl --fits 16
python -m helpers show sd15
python -m helpers upscale photo.png --upscaler sd-x4-upscaler --prompt "a castle" --seed 1 --out outputs
python -m helpers offline-hub ~/.cache/sdzoo-offline-hub
python -m helpers readme --check
python -m helpers evaluate outputs/compare --metrics clip,pickscore --out scores.csv
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import warnings
from pathlib import Path

import yaml

from .base.adapters import ENV as ADAPTERS_ENV

# Only what `--help`, `list` and `show` need is imported here: a command that runs a model imports torch,
# diffusers and transformers itself, so the rest of the command line answers at once.
from .base.errors import ZooError
from .base.families import FAMILIES
from .base.images import parse_size
from .base.records import check_folder
from .zoo.checkpoints import SUFFIXES
from .zoo.registry import REGISTRY_ENV, SECTIONS, default
from .zoo.registry import load as load_registry

# What `list` shows: the registry's sections by their command-line names, then the trained adapters.
LISTS = [*(section.replace("_", "-") for section in SECTIONS), "trained", "all"]


def _list(args) -> int:
    what = args.what
    for name in LISTS[:-1] if what == "all" else [what]:
        if what == "all":
            print(f"## {name}")
        if name == "models":
            _list_models(args)
        elif name == "trained":
            _list_trained(args)
        else:
            _list_section(args, name.replace("-", "_"))
        if what == "all":
            print()
    return 0


def _list_models(args) -> None:
    gated = {"yes": True, "no": False}.get(args.gated)
    found = default().list(
        family=args.family, task=args.task, tag=args.tag, gated=gated, fits_gb=args.fits, commercial=args.commercial
    )
    rows = [("key", "family", "tasks", "px", "steps/cfg", "gated", "GPU GB", "description")]
    for m in found:
        rows.append(
            (
                m.key,
                m.family,
                ",".join(m.tasks),
                str(m.resolution),
                f"{m.defaults.steps}/{m.defaults.guidance_scale:g}",
                "yes" if m.gated else "no",
                f"{m.size.vram_gb:g}" if m.size.vram_gb is not None else "?",
                m.description[:70],
            )
        )
    _table(rows)
    print(f"\n{len(found)} of {len(default().models)} models")


def _list_section(args, section: str) -> None:
    """Any other registry section: key, family, kind, repo and description, filtered by `--family`."""
    entries = getattr(default(), section)
    rows = [("key", "family", "kind", "repo", "description")]
    for e in entries.values():
        families = getattr(e, "families", None) or [getattr(e, "family", "")]
        if args.family and args.family not in families:
            continue
        network = f"{e.architecture} x{e.scale}" if getattr(e, "architecture", None) else ""  # an upscaler network
        kind = getattr(e, "kind", None) or getattr(e, "pipeline", None) or network
        rows.append((e.key, ",".join(f for f in families if f), kind, e.repo or e.url or "", e.description[:70]))
    _table(rows)
    print(f"\n{len(rows) - 1} of {len(entries)} {section.replace('_', '-')}")


def _list_trained(args) -> None:
    from .base import adapters as trainexport

    found = trainexport.available(args.family)
    rows = [("name", "family", "kind", "base model", "steps")]
    for name, meta in found.items():
        rows.append((name, meta.get("family", "?"), meta.get("kind", "?"), meta.get("base", meta.get("model", "?")),
                     str(meta.get("steps", "?"))))  # fmt: skip
    _table(rows)
    where = trainexport.adapters_dir().resolve()
    print(f"\n{len(found)} trained adapters in {where} (set {trainexport.ENV} or --adapters DIR to look elsewhere)")


def _table(rows) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + str(r[-1]))


def _plan(args) -> int:
    from .run.plan import plan

    p = plan(args.key, gpu_gb=args.gpu, ram_gb=args.ram, capability=args.capability)
    print(p.describe())
    return 0 if p.choice else 1


def _show(args) -> int:
    from .base import adapters as trainexport

    if trainexport.find(args.key) and args.key not in default().adapters:  # a trained adapter, by name
        path = trainexport.find(args.key)
        print(f"# {args.key}: a trained adapter\n# {path}\n")
        print(yaml.safe_dump(trainexport.metadata(path), sort_keys=False, allow_unicode=True, width=110).rstrip())
        return 0
    section, m = default().find(args.key)
    facts = m.model_dump(mode="json", by_alias=True, exclude={"key"})
    where = getattr(m, "url", None)
    print(f"# {m.key}: {m.name} ({SECTIONS[section]})" + (f"\n# {where}" if where else "") + "\n")
    print(yaml.safe_dump(facts, sort_keys=False, allow_unicode=True, width=110).rstrip())
    if section == "models":
        print(f"\nschedulers: {', '.join(m.schedulers)}")
    return 0


def _offline_hub(args) -> int:
    from .offline import hub as offline_hub

    path = offline_hub.build(args.dir, keys=args.keys or None)
    print(f"Built an offline hub of tiny random-weight models in {path} (images made from it are noise).")
    print(f"Use it with:\n  export HF_HUB_CACHE={path} HF_HUB_OFFLINE=1 TORCH_HOME={offline_hub.torch_home(path)}")
    return 0


def _readme(args) -> int:
    from . import readme

    fresh = readme.update(check=args.check)
    if args.check and not fresh:
        print("README.md's model tables are stale: run `python -m helpers readme`", file=sys.stderr)
        return 1
    print("README.md is up to date" if fresh else "README.md updated")
    return 0


def _size(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except ZooError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _generate(args) -> int:
    width, height = args.size if args.size else (None, None)
    check_folder(args.out)  # before generating, so no finished image is lost to a bad folder
    if args.mask and not args.image:
        raise ZooError("--mask needs --image: the image to inpaint")
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the paths, for scripts
        result = _run_generate(args, width, height)
    for path in result.save(args.out):
        print(path)
    t = result.timings
    hires = f", {t['hires']:.1f} s hires fix" if "hires" in t else ""
    print(f"# {len(result.images)} image(s) in {t['total']:.1f} s ({t['denoising']:.1f} s denoising{hires})",
          file=sys.stderr)
    return 0


def _local_files(args) -> None:
    """`--models DIR` makes a folder's checkpoints usable by name; `--allow-pickle` opens .ckpt files there too."""
    from .run.singlefile import local_models, spec_for

    if getattr(args, "models", None):
        local_models(args.models, allow_pickle=args.allow_pickle)
    key = getattr(args, "key", None)
    if key and args.allow_pickle and Path(key).suffix.lower() in (".ckpt", ".pt", ".pth", ".bin"):
        spec_for(key, allow_pickle=True)


def _local(args) -> int:
    from .run.singlefile import local_models

    with contextlib.redirect_stdout(sys.stderr):
        table = local_models(args.folder, allow_pickle=args.allow_pickle)
    if table.empty:
        print(f"no checkpoint files ({', '.join(SUFFIXES)}) in {args.folder}")
        return 1
    print(table.to_string(index=False))
    return 0


def _run_generate(args, width, height):
    from .run.generate import generate

    _local_files(args)
    return generate(
        args.key,
        args.prompt,
        negative_prompt=args.negative,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        height=height,
        width=width,
        seed=args.seed,
        scheduler=args.scheduler,
        clip_skip=args.clip_skip,
        prompt_prefix=args.prompt_prefix,
        num_images=args.num_images,
        device=args.device,
        image=args.image,
        mask_image=args.mask,
        task=args.task,
        **({"strength": args.strength} if args.strength is not None else {}),
        control=_controls(args.control),
        ip_adapter=_image_prompt(args),
        loras=_loras(args.lora),
        embeddings=_embeddings(args.embedding),
        hires=_hires(args),
    )


def _hires(args):
    """`--hires SCALE` with its strength, steps and upscaler as generate's `hires`; None without `--hires`."""
    extras = {"--hires-strength": args.hires_strength, "--hires-steps": args.hires_steps,
              "--hires-upscaler": args.hires_upscaler}  # fmt: skip
    if args.hires is None:
        given = [flag for flag, value in extras.items() if value is not None]
        if given:
            verb = "works" if len(given) == 1 else "work"
            raise ZooError(f"{' and '.join(given)} only {verb} with --hires SCALE (e.g. --hires 2): the hires fix is "
                           "off without it")  # fmt: skip
        return None
    hires = {"scale": args.hires, "strength": 0.5 if args.hires_strength is None else args.hires_strength,
             "upscaler": args.hires_upscaler or "Lanczos"}  # fmt: skip
    return hires | ({"steps": args.hires_steps} if args.hires_steps is not None else {})


def _loras(items):
    """`--lora NAME[:SCALE]` items as generate's {source: scale}; a registry LoRA's scale is its entry's."""
    if not items:
        return None
    out = {}
    for item in items:
        name, _, tail = item.rpartition(":")
        try:
            scale = float(tail) if name else None
        except ValueError:
            if name and not any(c in tail for c in "/\\."):  # not a path's tail (C:\\x.safetensors): a bad scale
                raise ZooError(f"--lora {item}: the scale after ':' must be a number, e.g. --lora {name}:0.8") from None
            name, scale = item, None
        name = name or item
        if scale is None:
            entry = default().adapters.get(name)
            scale = entry.scale if entry else 1.0
        out[name] = scale
    return out


def _embeddings(items):
    """`--embedding SOURCE[=TOKEN]` items as generate's {source: token or None}."""
    if not items:
        return None
    return {source: token or None for source, _, token in (item.partition("=") for item in items)}


def _controls(pairs):
    """`--control KEY=IMAGE` pairs as generate's {controlnet key: image}; None when none are given."""
    if not pairs:
        return None
    bad = [p for p in pairs if "=" not in p]
    if bad:
        raise ZooError(f"--control takes CONTROLNET=IMAGE, e.g. canny-sd15=edges.png (got {bad[0]!r})")
    return dict(p.split("=", 1) for p in pairs)


def _image_prompt(args):
    """`--ip-adapter IMAGE` with its scale and adapter as generate's `ip_adapter`; None when none is given."""
    from .run.ip_adapter import ImagePrompt

    if not args.ip_adapter:
        if args.ip_adapter_scale is not None or args.ip_adapter_model:
            raise ZooError("--ip-adapter-scale and --ip-adapter-model need --ip-adapter IMAGE: the image prompt")
        return None
    scale = 1.0 if args.ip_adapter_scale is None else args.ip_adapter_scale
    return ImagePrompt(args.ip_adapter, scale, args.ip_adapter_model)


def _upscale(args) -> int:
    start = time.perf_counter()  # the libraries' import is part of the wait too
    from .base.records import save_png
    from .run import upscale

    check_folder(args.out)  # before the upscaler runs, so its work is not lost to a bad folder
    settings = {"upscaler": args.upscaler, "prompt": args.prompt, "negative_prompt": args.negative, "seed": args.seed,
                "num_inference_steps": args.steps, "guidance_scale": args.guidance, "noise_level": args.noise_level,
                "tile": args.tile, "overlap": args.overlap}  # fmt: skip
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the path, for scripts
        big = upscale.upscale(args.image, device=args.device, **settings)
    seconds = time.perf_counter() - start  # importing, loading, every tile and the blending: what the user waited
    stem = f"{os.path.splitext(os.path.basename(str(args.image)))[0]}-{args.upscaler}"
    print(save_png(big, args.out, stem, _upscaled_info(args.image, big, settings)))
    print(f"# {big.width}x{big.height} with {args.upscaler} in {seconds:.1f} s", file=sys.stderr)
    return 0


def _upscaled_info(source, big, settings: dict):
    """The upscaled PNG's text: the source PNG's own chunks (its recipe, which still says how the picture was
    made), A1111's `postprocessing` line, and the settings as JSON."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    kept = {}
    if os.path.isfile(str(source)):
        with contextlib.suppress(OSError), Image.open(source) as im:
            kept = dict(getattr(im, "text", None) or {})
    kept = {k: v for k, v in kept.items() if k not in ("upscale", "postprocessing")}
    for key, value in kept.items():
        info.add_itxt(key, value)
    used = {k: v for k, v in settings.items() if v not in (None, "")}
    line = {"Postprocess upscaler": used.pop("upscaler"), "Postprocess upscale to": f"{big.width}x{big.height}",
            **{k.replace("_", " ").capitalize(): v for k, v in used.items()}}  # fmt: skip
    info.add_text("postprocessing", ", ".join(f"{k}: {v}" for k, v in line.items()))
    info.add_text("upscale", json.dumps({"source": str(source), **settings}))
    return info


def _doctor(args) -> int:
    from .base import online as hub
    from .zoo import doctor

    checks = doctor.run(args.keys or None, pin=args.pin, path=args.registry)
    why = hub.unreachable(say=False)
    if why:  # said once; each entry then says what the cache holds
        state = "is offline (HF_HUB_OFFLINE=1)" if hub.offline_by_setting() else f"cannot be reached ({why})"
        print(f"The Hugging Face Hub {state}: nothing was checked against it. Checked the local cache "
              f"({hub.constants.HF_HUB_CACHE}) instead: is each entry downloaded at its revision?\n")  # fmt: skip
        for c in checks:
            at = f" -> {c.commit[:12]}" if c.commit else ""
            print(f"{'cached' if c.ok else 'missing':8} {c.section}.{c.key}  {c.repo}@{c.revision[:12]}{at}")
        cached = sum(c.ok for c in checks)
        print(f"\n{cached} of {len(checks)} entries in the cache; run doctor with a network to check repos, "
              "revisions, files and gates on the Hub")
        return 1
    for c in checks:
        status = "ok" if c.ok else "PROBLEM"
        at = f" -> {c.commit[:12]}" if c.commit and c.commit != c.revision else ""
        print(f"{status:8} {c.section}.{c.key}  {c.repo}@{c.revision[:12]}{at}")
        for p in c.problems:
            print(f"         - {p}")
    bad = [c for c in checks if not c.ok]
    print(f"\n{len(checks) - len(bad)} ok, {len(bad)} with problems" + (" (revisions pinned)" if args.pin else ""))
    return 1 if bad else 0


def _sweep(args) -> int:
    from .sweeps import file as sweepfile

    with contextlib.redirect_stdout(sys.stderr):
        _local_files(args)
        result = sweepfile.run(args.file, out=args.out)
    for path in result.grid_paths:
        print(path)
    if result.grid_paths:
        print(result.out_dir / "manifest.jsonl")
        failed = result.failed
        print(f"# {len(result.rows) - len(failed)} cells done, {len(failed)} failed", file=sys.stderr)
    return 0


def _bench(args) -> int:
    from .bench import harness, randomweights  # the harness loads only for this command

    hub = None
    if args.random_weights:
        if not args.config_dir:
            raise ZooError("--random-weights needs --config-dir DIR: the checkpoints' config files in diffusers layout")
        device = "cuda" if _cuda() else "cpu"
        keys = sorted(set(args.keys) | set(args.switch or []))
        print(f"# writing random-weight models of {', '.join(keys)} into {args.hub_cache}", file=sys.stderr)
        hub = randomweights.build(keys, args.config_dir, args.hub_cache, device=device)
    report = harness.run(args.keys, variants=args.variants, switch=args.switch, steps=args.steps, size=args.size,
                       repeats=args.repeats, warmup=args.warmup, device=args.device, hub_cache=hub, out_dir=args.out,
                       log=lambda text: print(text, file=sys.stderr) if text else None)  # fmt: skip
    for path in report["files"]:
        print(path)
    return 0


def _evaluate(args) -> int:
    from .judge import evaluate

    out = args.out or os.path.join(args.folder, "scores.csv")
    table = evaluate.evaluate_folder(args.folder, args.metrics, args.reference, out, batch_size=args.batch_size,
                                     device=None if args.device == "auto" else args.device)  # fmt: skip
    print(evaluate.markdown(table))  # the table on stdout; where it was written on stderr
    print(f"# written: {' and '.join(table.attrs['files'])}", file=sys.stderr)
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _train(args) -> int:
    from .train import loop as train

    config = train.TrainConfig(
        args.kind, args.key, args.images, out=args.out, name=args.name, steps=args.steps, rank=args.rank,
        alpha=args.alpha, lr=args.lr, batch_size=args.batch_size, resolution=args.resolution, buckets=args.buckets,
        instance_prompt=args.instance_prompt, class_prompt=args.class_prompt, num_class_images=args.num_class_images,
        token=args.token, init_word=args.init_word, num_vectors=args.num_vectors, seed=args.seed,
        validation_prompts=args.validation_prompt or [], validation_every=args.validation_every,
        validation_inference_steps=args.validation_steps, checkpoint_every=args.checkpoint_every, device=args.device,
    )  # fmt: skip
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the paths of the files written
            if args.resume:
                train.require_checkpoint(config)
            result = train.train(config)
    except train.Stopped as e:  # Ctrl-C: one line, where it stopped and how to go on, no traceback
        print(e, file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("stopped outside the training steps; rerun the same command: it resumes from the last complete "
              "checkpoint, if there is one", file=sys.stderr)  # fmt: skip
        return 130
    for path in result.files.values():
        print(path)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m helpers", description="The Stable Diffusion model zoo.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="list registry models (or another section's entries), filtered")
    s.add_argument("what", nargs="?", default="models", choices=LISTS,
                   help="which entries (default: models; `trained`: adapters made with `train`; `all`)")  # fmt: skip
    s.add_argument("--family", choices=list(FAMILIES))
    s.add_argument("--task", choices=["text2img", "img2img", "inpaint", "instruct"])
    s.add_argument("--tag")
    s.add_argument("--gated", choices=["yes", "no"])
    s.add_argument("--fits", type=float, metavar="GB", help="runs entirely on a GPU of this many GB")
    s.add_argument("--commercial", action="store_true", default=None, help="licence allows commercial use")
    s.set_defaults(run=_list)

    s = sub.add_parser("show", help="every registry fact of one entry (a model, LoRA, ControlNet, ...) or trained "
                       "adapter")
    s.add_argument("key")
    s.set_defaults(run=_show)

    s = sub.add_parser("generate", help="generate images and save them as PNGs with their recipe")
    s.add_argument("key")
    s.add_argument("prompt")
    s.add_argument("--negative", help="negative prompt")
    s.add_argument("--steps", type=int, help="num_inference_steps (default: the model's)")
    s.add_argument("--guidance", type=float, help="guidance_scale (default: the model's)")
    s.add_argument("--seed", type=int, help="first seed; image i uses seed+i (default: random, recorded)")
    s.add_argument("--size", type=_size, help="N or WxH (default: the model's native size)")
    s.add_argument("--scheduler", help="a sampler name, e.g. 'DPM++ 2M Karras' (see `show KEY`)")
    s.add_argument("--clip-skip", type=int, help="A1111's clip skip: 2 reads CLIP's penultimate layer (default: the "
                   "model's)")  # fmt: skip
    s.add_argument("--prompt-prefix", help="quality tags put before the prompt (default: the model's; '' for none)")
    s.add_argument("--num-images", type=int, default=1)
    s.add_argument("--image", help="input image (path or URL): img2img, inpainting with --mask, or the picture an "
                   "editing model (flux-kontext-dev, qwen-image-edit) changes as the prompt instructs")
    s.add_argument("--task", choices=["text2img", "img2img", "inpaint", "instruct"],
                   help="what to do with --image (default: instruct for editing models, else img2img or inpaint)")
    s.add_argument("--mask", help="inpainting mask (path or URL): white is repainted, black kept; needs --image")
    s.add_argument("--strength", type=float, help="with --image: how much to change it, in (0, 1]")
    s.add_argument("--device", default="auto")
    s.add_argument("--out", default="outputs", help="folder for the PNGs (existing files are never replaced)")
    s.add_argument("--control", action="append", metavar="CONTROLNET=IMAGE",
                   help="steer with a registry ControlNet and its control image (repeat for several)")  # fmt: skip
    s.add_argument("--ip-adapter", metavar="IMAGE", help="image prompt (path or URL): steer with a registry IP-Adapter")
    s.add_argument("--ip-adapter-scale", type=float, metavar="SCALE",
                   help="with --ip-adapter: how strongly it steers (default 1; about 0.5 mixes it evenly with the "
                        "prompt; 0 turns it off)")  # fmt: skip
    s.add_argument("--ip-adapter-model", metavar="KEY", help="with --ip-adapter: the registry IP-Adapter "
                   "(default: the first for the model's family)")  # fmt: skip
    s.add_argument("--lora", action="append", metavar="NAME[:SCALE]",
                   help="a LoRA for this call: a registry adapter (`list adapters`), a trained adapter's name (`list "
                        "trained`) or a .safetensors file; scale default: the entry's, else 1 (repeat for several)")
    s.add_argument("--embedding", action="append", metavar="SOURCE[=TOKEN]",
                   help="a textual-inversion embedding: a registry key, a trained adapter's name or a file (give "
                        "=TOKEN for a file); put its token in the prompt (repeat for several)")  # fmt: skip
    s.add_argument("--hires", type=float, metavar="SCALE", help="hires fix: upscale by SCALE, then img2img")
    s.add_argument("--hires-strength", type=float, help="with --hires: denoising strength (default 0.5)")
    s.add_argument("--hires-steps", type=int, help="with --hires: second-pass denoising steps, as A1111 counts them "
                   "(default: --steps)")
    s.add_argument("--hires-upscaler",
                   help="hires fix upscaler: Lanczos (default), Nearest, Bicubic, or a registry upscaler such as "
                        "4x-UltraSharp or sd-x4-upscaler")  # fmt: skip
    s.set_defaults(run=_generate)

    s = sub.add_parser("local", help="list a models folder's checkpoint files (A1111's models/Stable-diffusion, "
                       "ComfyUI's models/checkpoints): family, size, A1111 hash")  # fmt: skip
    s.add_argument("folder")
    s.add_argument("--allow-pickle", action="store_true", help="also open .ckpt/.pt files (they can run code)")
    s.set_defaults(run=_local)

    s = sub.add_parser("upscale", help="upscale an image with a registry upscaler, in tiles; saved as a new PNG")
    s.add_argument("image", help="the image (path or URL)")
    s.add_argument("--upscaler", default="sd-x4-upscaler", help="a registry upscaler: a network such as "
                   "4x-UltraSharp (no prompt), or a diffusion one (default: sd-x4-upscaler)")
    s.add_argument("--prompt", default="", help="what the picture shows: guides the added detail")
    s.add_argument("--negative", help="negative prompt")
    s.add_argument("--seed", type=int, default=0, help="seed of every tile (default 0)")
    s.add_argument("--steps", type=int, help="num_inference_steps (default: the upscaler's)")
    s.add_argument("--guidance", type=float, help="guidance_scale (default: the upscaler's)")
    s.add_argument("--noise-level", type=int, help="sd-x4-upscaler only: noise added to the input (default: its)")
    s.add_argument("--tile", type=int, help="tile size in input pixels (default: the upscaler's)")
    s.add_argument("--overlap", type=int, help="tile overlap in input pixels (default: a quarter of a tile; "
                   "an eighth for networks)")
    s.add_argument("--device", default="auto")
    s.add_argument("--out", default="outputs", help="folder for the PNG (existing files are never replaced)")
    s.set_defaults(run=_upscale)

    s = sub.add_parser("sweep", help="run an X/Y/Z sweep file (resumable; works under `accelerate launch`)")
    s.add_argument("file")
    s.add_argument("--out", help="output folder (default: the file's `out`)")
    s.set_defaults(run=_sweep)

    s = sub.add_parser("doctor", help="check every registry section's entries against the Hub (offline: what "
                       "the cache holds)")
    s.add_argument("keys", nargs="*")
    s.add_argument("--pin", action="store_true", help="write each branch entry's current commit into the registry")
    s.set_defaults(run=_doctor)

    s = sub.add_parser("offline-hub", help="build tiny random-weight stand-ins of every model, for no-network use")
    s.add_argument("dir")
    s.add_argument("--keys", nargs="*", help="only these models (default: all)")
    s.set_defaults(run=_offline_hub)

    s = sub.add_parser("bench", help="benchmark models against plain diffusers; writes JSON and markdown results")
    s.add_argument("keys", nargs="*", default=["sd15", "sdxl-base"], help="models (default: sd15 sdxl-base)")
    s.add_argument("--variants", type=_names, default=["diffusers", "eager", "auto", "max"],
                   help="comma-separated: diffusers (the baseline), eager, auto, max, graphs")  # fmt: skip
    s.add_argument("--switch", type=_names, help="two models to time switching between, e.g. sdxl-base,ssd-1b")
    s.add_argument("--steps", type=int, help="denoising steps (default: each model's)")
    s.add_argument("--size", type=_size, help="N or WxH (default: each model's native size)")
    s.add_argument("--repeats", type=int, default=3, help="timed runs after the first image (medians reported)")
    s.add_argument("--warmup", type=int, default=1, help="untimed runs after the first image")
    s.add_argument("--device", default="auto")
    s.add_argument("--out", default="benchmarks/results", help="folder for the JSON and markdown (never replaced)")
    s.add_argument("--random-weights", action="store_true", help="full-size models with random weights (no network)")
    s.add_argument("--config-dir", help="with --random-weights: checkpoint configs, e.g. ../shared/real-configs")
    s.add_argument("--hub-cache", default=".cache/bench-hub", help="with --random-weights: where the models go")
    s.set_defaults(run=_bench)

    s = sub.add_parser("train", help="fine-tune on a folder of images: LoRA, DreamBooth-LoRA, textual inversion")
    s.add_argument("kind", choices=["lora", "dreambooth", "textual-inversion"])
    s.add_argument("key", help="the base model (sd1, sd2 or sdxl family)")
    s.add_argument("--images", required=True, help="folder of images; NAME.txt beside NAME.png is its caption "
                   "(else a zoo PNG's recipe prompt, else --instance-prompt)")  # fmt: skip
    s.add_argument("--out", help="output folder (default: adapters/NAME, where the zoo finds it by name)")
    s.add_argument("--name", help="the adapter's name, a file name: letters, digits, - and _ (default: KEY-KIND)")
    s.add_argument("--steps", type=int, default=500)
    s.add_argument("--rank", type=int, default=4, help="LoRA rank")
    s.add_argument("--alpha", type=float, help="LoRA alpha: the LoRA's scale is alpha/rank (default: the rank)")
    s.add_argument("--lr", type=float, help="learning rate (default: 1e-4 for LoRA, 5e-4 for textual inversion)")
    s.add_argument("--batch-size", type=int, default=1)
    s.add_argument("--resolution", type=int, help="training size (default: the model's native size)")
    s.add_argument("--buckets", action="store_true", help="aspect-ratio buckets instead of centre crops")
    s.add_argument("--instance-prompt", help="prompt of images without a caption; DreamBooth: 'a photo of sks dog'")
    s.add_argument("--class-prompt", help="DreamBooth prior preservation: 'a photo of a dog'")
    s.add_argument("--num-class-images", type=int, default=100)
    s.add_argument("--token", help="textual inversion: the new token (default: <NAME>)")
    s.add_argument("--init-word", default="object", help="textual inversion: the word the token starts from")
    s.add_argument("--num-vectors", type=int, default=1)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--validation-prompt", action="append", help="repeat for several (default: the instance prompt)")
    s.add_argument("--validation-every", type=int, default=100)
    s.add_argument("--validation-steps", type=int, help="inference steps of validation images (default: model's)")
    s.add_argument("--checkpoint-every", type=int, default=100)
    s.add_argument("--resume", action="store_true", help="insist on resuming (a rerun resumes by itself anyway)")
    s.add_argument("--device", default="auto")
    s.set_defaults(run=_train)

    s = sub.add_parser("evaluate", help="score PNGs with recipes, grouped by model and settings (CSV/JSON + markdown)")
    s.add_argument("folder", help="a folder of PNGs saved by helpers (or the A1111 web UI), searched recursively")
    s.add_argument("--reference", help="a folder of reference images, for fid, kid, fd-dinov2, dino and clip-i")
    s.add_argument("--metrics", type=_names, default=["clip", "pickscore"],
                   help="comma-separated: clip clip-b16 pickscore dino clip-i fid kid fd-dinov2 is")  # fmt: skip
    s.add_argument("--out", help="CSV, or JSON if it ends in .json; a .md table is written beside it "
                   "(default: FOLDER/scores.csv)")  # fmt: skip
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--device", default="auto")
    s.set_defaults(run=_evaluate)

    for name in ("list", "show", "generate", "upscale", "sweep", "doctor", "train", "evaluate"):
        sub.choices[name].add_argument(
            "--registry", metavar="FILE", help=f"registry file (default: ${REGISTRY_ENV}, else models.yaml)"
        )
    for name in ("generate", "sweep"):
        sub.choices[name].add_argument("--models", metavar="DIR", help="a local models folder (A1111's or ComfyUI's) "
                                       "whose checkpoint files are then usable by name (file stem)")  # fmt: skip
        sub.choices[name].add_argument("--allow-pickle", action="store_true",
                                       help="open .ckpt/.pt checkpoint files too (they can run code when loaded)")
    for name in ("list", "show", "generate", "sweep", "train"):
        sub.choices[name].add_argument("--adapters", metavar="DIR", help="folder of trained adapters, found there by "
                                       f"name (default: ${ADAPTERS_ENV}, else ./adapters)")  # fmt: skip

    s = sub.add_parser("plan", help="every way a model fits a machine (GPU memory, RAM at load, download, speed) "
                       "and the fastest that fits")  # fmt: skip
    s.add_argument("key")
    s.add_argument("--gpu", type=float, metavar="GB", help="GPU memory of a CUDA GPU to plan for (default: this "
                   "machine's free memory)")  # fmt: skip
    s.add_argument("--ram", type=float, metavar="GB", help="system RAM to plan for (default: this machine's free RAM)")
    s.add_argument("--capability", type=float, metavar="X.Y", help="the GPU's CUDA compute capability, with --gpu "
                   "(default 8.0; fp8 needs 8.9)")  # fmt: skip
    s.set_defaults(run=_plan)

    s = sub.add_parser("readme", help="regenerate README.md's model tables from models.yaml")
    s.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    s.set_defaults(run=_readme)
    return p


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line for people, without Python's file and line."""
    print(f"warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    before = {name: os.environ.get(name) for name in (REGISTRY_ENV, ADAPTERS_ENV)}
    shown = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        if getattr(args, "registry", None):  # every command then reads this file (see helpers.registry.default)
            os.environ[REGISTRY_ENV] = args.registry
            load_registry(args.registry)  # a missing or bad file fails here, naming it
        if getattr(args, "adapters", None):  # trained adapters are looked up there (helpers.base.adapters)
            os.environ[ADAPTERS_ENV] = args.adapters
        return args.run(args)
    except ZooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:  # called in-process (tests, notebooks), the command leaves the environment as it found it
        warnings.showwarning = shown
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _closed_pipe() -> int:
    """`python -m helpers show KEY | head`: the reader stopped reading, which is no error of ours."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # Python flushes stdout again at exit: let that go nowhere
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        code = _closed_pipe()
    sys.exit(code)
