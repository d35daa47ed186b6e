"""Learned upscalers (the registry's `upscalers` section), run in overlapping tiles that leave no seam.

`upscale` loads a registry upscaler once (its memory placed by the same policies as every model), and runs it on
tiles of the size it was trained at; `tiled` blends any tile upscaler's overlapping outputs with feathered weights,
so a tile's edge never shows. The hires fix takes an upscaler key too (`hires={"upscaler": "sd-x4-upscaler"}`).

>>> big = upscale("photo.png", "sd-x4-upscaler", prompt="a castle on a hill", seed=1)   # 4x, in 128 px tiles
>>> big = upscale(image, "sd-x2-latent-upscaler", prompt="a castle", seed=1)            # 2x, in SD's latent space
>>> big = upscale(image, "4x-UltraSharp")       # an ESRGAN-class network in one file (spandrel): no prompt, no steps
"""

from __future__ import annotations

import math

import numpy as np
import torch
from huggingface_hub import hf_hub_download
from PIL import Image
from tqdm.auto import tqdm

from ..base import online, quiet
from ..base.devices import pick_device, pick_dtype
from ..base.errors import ZooError
from ..base.images import load_image
from ..base.loaded import LoadedModel, attach
from ..zoo.registry import NetworkUpscalerSpec, Registry, UpscalerSpec
from ..zoo.registry import default as default_registry
from . import memory as memory_mod
from .loading import hub_errors_explained, hub_kwargs

# The input sizes each pipeline takes: the x4 U-Net works on the picture itself (three halvings); the latent
# upscaler's on SD latents, a VAE's 8x smaller (three more).
MULTIPLE = {"StableDiffusionUpscalePipeline": 8, "StableDiffusionLatentUpscalePipeline": 64}

_LOADED: dict = {}  # (key, device, dtype, memory) -> pipeline: the upscaler last used, kept for the next call


def load_upscaler(key: str, device: str = "auto", dtype="auto", memory="auto", registry: Registry | None = None):
    """A registry upscaler as a diffusers pipeline, placed as its memory policy says; loaded once and reused.

    Only the last upscaler used stays loaded (they are a few GB each); `free()` drops it.
    """
    spec = (registry or default_registry()).upscaler(key)
    device = pick_device(device)
    if isinstance(spec, NetworkUpscalerSpec):
        return load_network(spec, device, dtype)
    torch_dtype = pick_dtype(spec, device, dtype)
    ident = (spec.key, spec.revision, device, torch_dtype, str(memory))
    if ident not in _LOADED:
        free()
        policy = memory_mod.policy_for(spec, device, memory)  # as a model of its family
        print(f"[{spec.key}] memory: {policy.describe()}")
        with hub_errors_explained(spec):
            pipe = spec.pipeline_class.from_pretrained(spec.repo, **hub_kwargs(spec), dtype=torch_dtype)
        pipe.set_progress_bar_config(disable=True)
        attach(pipe, LoadedModel(spec, policy, default_scheduler=pipe.scheduler))
        memory_mod.apply(pipe, policy, device)
        _LOADED[ident] = pipe
    return _LOADED[ident]


def load_network(spec: NetworkUpscalerSpec, device: str, dtype="auto"):
    """An upscaler network in one file as spandrel's model (`model(tensor)`), on `device`; loaded once and reused.

    Half precision on a GPU where spandrel says the architecture supports it; float32 on the CPU. A pickled file
    is read only for an entry that opts in (`weights: pth`), and then with `torch.load(weights_only=True)`.
    """
    import spandrel  # needs torchvision: imported only when a network upscaler runs

    ident = (spec.key, spec.revision, device, str(dtype))
    if ident not in _LOADED:
        free()
        with hub_errors_explained(spec):
            online.unreachable()  # asks the Hub once; offline, the cache is read at once
            path = hf_hub_download(spec.repo, spec.file, revision=spec.revision)
        state = _read_weights(spec, path)
        try:
            with quiet.loading():
                model = spandrel.ModelLoader().load_from_state_dict(state)
        except spandrel.UnsupportedModelError as e:
            raise ZooError(f"upscaler '{spec.key}': spandrel knows no architecture in {spec.file} ({e})") from None
        if model.architecture.name != spec.architecture or model.scale != spec.scale:
            raise ZooError(
                f"upscaler '{spec.key}': {spec.file} is a {model.architecture.name} x{model.scale} network, the "
                f"registry says {spec.architecture} x{spec.scale}: correct the entry (models.yaml, upscalers)"
            )
        torch_dtype = pick_dtype("float16" if model.supports_half else "float32", device, dtype)
        _LOADED[ident] = model.to(device).to(torch_dtype).eval()
    return _LOADED[ident]


def _read_weights(spec: NetworkUpscalerSpec, path: str) -> dict:
    """The state dict of a network upscaler's file: safetensors, or a pickle the entry opted into."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    if spec.weights != "pth":
        raise ZooError(
            f"upscaler '{spec.key}': {spec.file} is a pickle, and the entry does not opt into reading one "
            "(`weights: pth` in models.yaml); a pickle can run code when read, so the zoo reads it only when asked"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses anything but tensors and plain containers
        raise ZooError(f"upscaler '{spec.key}': {spec.file} holds more than weights, so it is not read ({e})") from None


def free() -> None:
    """Drop the loaded upscaler."""
    _LOADED.clear()


def upscale(image, upscaler: str = "sd-x4-upscaler", prompt: str = "", negative_prompt: str | None = None,
            seed: int = 0, num_inference_steps: int | None = None, guidance_scale: float | None = None,
            noise_level: int | None = None, tile: int | None = None, overlap: int | None = None,
            device: str = "auto", memory="auto", registry: Registry | None = None,
            on_step=None) -> Image.Image:  # fmt: skip
    """The picture `scale` times larger by a registry upscaler, guided by `prompt`, in tiles where it is large.

    What is left out comes from the entry's defaults; `tile` (input pixels; the entry's by default) and `overlap`
    (a quarter of a tile by default) set the tiling. Every tile uses `seed`, so a seed gives the same picture.
    A bar counts the steps of all tiles; `on_step(done, total)` is called after each.
    """
    spec = (registry or default_registry()).upscaler(upscaler)
    image = load_image(image)
    if isinstance(spec, NetworkUpscalerSpec):
        asked = {"prompt": prompt, "negative_prompt": negative_prompt, "num_inference_steps": num_inference_steps,
                 "guidance_scale": guidance_scale, "noise_level": noise_level}  # fmt: skip
        given = [k for k, v in asked.items() if v not in (None, "")]
        if given:
            raise ZooError(f"upscaler '{spec.key}' is a network that takes no {', '.join(given)}: leave them out")
        return upscale_network(image, spec, tile, overlap, device, on_step)
    d = spec.defaults
    tile = tile or d.tile
    overlap = tile // 4 if overlap is None else overlap
    if not 0 <= overlap < tile:
        raise ZooError(f"upscale: overlap must be at least 0 and less than the tile ({tile} px); got {overlap}")
    call = {"prompt": prompt, "negative_prompt": negative_prompt,
            "num_inference_steps": num_inference_steps or d.steps,
            "guidance_scale": d.guidance_scale if guidance_scale is None else guidance_scale}  # fmt: skip
    if spec.pipeline == "StableDiffusionUpscalePipeline":
        call["noise_level"] = d.noise_level if noise_level is None else noise_level
    elif noise_level is not None:
        raise ZooError(f"upscaler '{spec.key}' takes no noise_level (only the x4 upscaler does)")
    pipe = load_upscaler(spec.key, device=device, memory=memory, registry=registry)
    n = tiles(image.size, tile, overlap)
    steps = call["num_inference_steps"]
    bar = tqdm(total=n * steps, unit="step", desc=f"[{spec.key}] {n} tile{'s' if n > 1 else ''} x {steps} steps")

    def step(*_):  # the upscale pipelines' step callback (they predate `callback_on_step_end`)
        bar.update(1)
        if on_step is not None:
            on_step(bar.n, bar.total)

    def one(part: Image.Image) -> Image.Image:
        return _run(pipe, spec, part, {**call, "callback": step, "callback_steps": 1}, seed)

    try:
        return tiled(image, one, spec.scale, tile, overlap)
    finally:
        bar.close()


def upscale_network(image: Image.Image, spec: NetworkUpscalerSpec, tile: int | None = None,
                    overlap: int | None = None, device: str = "auto", on_step=None) -> Image.Image:  # fmt: skip
    """The picture `spec.scale` times larger by a network upscaler, in feathered tiles of `tile` px (the entry's)."""
    tile = tile or spec.tile
    overlap = tile // 8 if overlap is None else overlap
    if not 0 <= overlap < tile:
        raise ZooError(f"upscale: overlap must be at least 0 and less than the tile ({tile} px); got {overlap}")
    model = load_upscaler(spec.key, device=pick_device(device), registry=_Only(spec))
    n = tiles(image.size, tile, overlap)
    bar = tqdm(total=n, unit="tile", desc=f"[{spec.key}] {n} tile{'s' if n > 1 else ''}")

    def one(part: Image.Image) -> Image.Image:
        out = _run_network(model, part)
        bar.update(1)
        if on_step is not None:
            on_step(bar.n, bar.total)
        return out

    try:
        return tiled(image, one, spec.scale, tile, overlap)
    finally:
        bar.close()


class _Only:
    """A registry of one upscaler: the spec already looked up (by key or A1111 name) is the one loaded."""

    def __init__(self, spec):
        self.spec = spec

    def upscaler(self, key):
        return self.spec


@torch.no_grad()
def _run_network(model, image: Image.Image) -> Image.Image:
    """One tile through a spandrel model: RGB in [0, 1] (spandrel pads it to the sizes the network takes)."""
    x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    y = model(x.to(model.device, model.dtype)).float().clamp(0, 1)
    return Image.fromarray((y[0].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8))


def tiles(size: tuple[int, int], tile: int, overlap: int) -> int:
    """How many tiles `tiled` cuts a picture of `size` into."""
    w, h = size
    return 1 if w <= tile and h <= tile else len(_starts(w, tile, overlap)) * len(_starts(h, tile, overlap))


def _run(pipe, spec: UpscalerSpec, image: Image.Image, call: dict, seed: int) -> Image.Image:
    """One pipeline call on a picture padded to the sizes the pipeline takes (edge pixels repeated), cropped back."""
    m = MULTIPLE[spec.pipeline]
    w, h = image.size
    padded = np.pad(np.asarray(image), ((0, -h % m), (0, -w % m), (0, 0)), mode="edge")
    out_pixels = padded.shape[0] * padded.shape[1] * spec.scale**2
    if out_pixels > 1.5 * spec.resolution**2:  # the memory plan's rule for big images: decode in tiles
        pipe.vae.enable_tiling()
    else:
        pipe.vae.disable_tiling()
    generator = torch.Generator("cpu").manual_seed(seed)
    out = pipe(image=Image.fromarray(padded), generator=generator, **call).images[0]
    return out.crop((0, 0, w * spec.scale, h * spec.scale))


def tiled(image: Image.Image, upscale_tile, scale: int, tile: int, overlap: int) -> Image.Image:
    """Upscale `image` tile by tile with `upscale_tile` and blend the overlaps with feathered weights.

    Tiles are `tile` px squares (smaller at an image smaller than that) overlapping by at least `overlap` px; in each
    overlap a tile's weight falls linearly to almost 0 at its edge while its neighbour's rises, so a tile that comes
    out brighter or shifted fades into the next one instead of ending in a seam.
    """
    w, h = image.size
    if w <= tile and h <= tile:
        return upscale_tile(image)
    acc = np.zeros((h * scale, w * scale, 3))
    weight = np.zeros((h * scale, w * scale, 1))
    xs, ys = _starts(w, tile, overlap), _starts(h, tile, overlap)
    for y in ys:
        for x in xs:
            box = (x, y, min(x + tile, w), min(y + tile, h))
            out = upscale_tile(image.crop(box)).convert("RGB")
            size = ((box[2] - x) * scale, (box[3] - y) * scale)
            if out.size != size:
                raise ZooError(f"a tile of {box[2] - x}x{box[3] - y} px came back {out.size}, not {size}")
            sides = (x > 0, y > 0, box[2] < w, box[3] < h)  # left, top, right, bottom: a neighbour there
            wt = feather(size, sides, overlap * scale)
            acc[y * scale : box[3] * scale, x * scale : box[2] * scale] += np.asarray(out, float) * wt
            weight[y * scale : box[3] * scale, x * scale : box[2] * scale] += wt
    return Image.fromarray(np.clip(acc / weight, 0, 255).round().astype(np.uint8))


def tile_edges(length: int, tile: int, overlap: int, scale: int) -> list[int]:
    """Where `tiled`'s tile edges fall along one side of the upscaled picture, in its pixels (none for one tile)."""
    starts = _starts(length, tile, overlap)
    return sorted({scale * s for s in starts[1:]} | {scale * min(s + tile, length) for s in starts[:-1]})


def seam_jump(image: Image.Image, source_size: tuple[int, int], tile: int, overlap: int, scale: int):
    """(largest, typical): the mean jump between neighbouring pixel columns or rows where `tiled`'s tile edges fall
    in `image`, the largest of them, and the median jump between all neighbouring columns and rows.

    A seam is an edge jump well above the typical one; a blended tiling keeps it within the picture's own texture.
    """
    a = np.asarray(image.convert("RGB"), float)
    cols = np.abs(np.diff(a, axis=1)).mean(axis=(0, 2))  # cols[i]: between column i and i + 1
    rows = np.abs(np.diff(a, axis=0)).mean(axis=(1, 2))
    (w, h), edges = source_size, []
    edges += [cols[e - 1] for e in tile_edges(w, tile, overlap, scale)]
    edges += [rows[e - 1] for e in tile_edges(h, tile, overlap, scale)]
    return max(edges, default=0.0), float(np.median(np.concatenate([cols, rows])))


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles start along one side: evenly spread, the first at 0 and the last at the far edge."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def feather(size: tuple[int, int], sides: tuple[bool, bool, bool, bool], ramp: int) -> np.ndarray:
    """A tile's blending weight (height, width, 1): 1 inside, falling linearly over `ramp` px toward each side
    that has a neighbour (left, top, right, bottom), never quite to 0."""
    w, h = size

    def profile(n: int, start: bool, end: bool) -> np.ndarray:
        p = np.ones(n)
        r = min(ramp, n)
        if r:
            up = (np.arange(r) + 0.5) / r
            if start:
                p[:r] = np.minimum(p[:r], up)
            if end:
                p[n - r :] = np.minimum(p[n - r :], up[::-1])
        return p

    left, top, right, bottom = sides
    return (profile(h, top, bottom)[:, None] * profile(w, left, right)[None, :])[:, :, None]
