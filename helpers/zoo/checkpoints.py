"""Checkpoint files as registry entries: what a single `.safetensors` file is, told from its tensors.

A1111's `models/Stable-diffusion`, ComfyUI's `models/checkpoints` and civitai hold one file per model in the
original layouts (LDM, SGM, SAI, BFL). The family is told from the tensor names, as ComfyUI's model detection and
diffusers' `infer_diffusers_model_type` do, read from the file's header alone (no weights are loaded); the entry
then borrows its config from the registry's base model of that family (`config_entry`).

>>> spec = spec_for_file("~/sd/models/Stable-diffusion/juggernautXL_v9.safetensors", registry)
>>> spec.key, spec.family, spec.single_file
('juggernautxl_v9', 'sdxl', '/home/me/sd/models/Stable-diffusion/juggernautXL_v9.safetensors')
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from ..base.errors import ModelAccessError, ZooError

SAFE = ".safetensors"
PICKLED = (".ckpt", ".pt", ".pth", ".bin")  # torch.save files: unpickling can run code
SUFFIXES = (SAFE, *PICKLED)

UNET = "model.diffusion_model."
# The registry model whose config (and missing components) a file of each kind loads with.
BASES = {
    ("sd1", ""): "sd15",
    ("sd1", "inpaint"): "sd15-inpainting",
    ("sd2", "v_prediction"): "sd21",
    ("sd2", "epsilon"): "sd21-base",
    ("sdxl", ""): "sdxl-base",
    ("sdxl", "refiner"): "sdxl-refiner",
    ("sdxl", "inpaint"): "sdxl-inpainting",
    ("sd3", ""): "sd3-medium",
    ("sd3", "sd35"): "sd35-medium",
    ("sd3", "sd35-large"): "sd35-large",
    ("flux", "dev"): "flux-dev",
    ("flux", "schnell"): "flux-schnell",
}


@dataclass(frozen=True)
class Detected:
    """What a checkpoint file holds."""

    family: str
    kind: str = ""  # "inpaint", "refiner", "v_prediction"/"epsilon" (SD 2.x), "sd35", "dev"/"schnell" (FLUX)
    prediction: str | None = None  # where the file says (a `v_pred` key, SD 2.x's norm statistics), else None
    vae: bool = False  # a VAE is baked in
    text_encoders: bool = False

    def describe(self) -> str:
        parts = [self.family, self.kind, self.prediction and f"{self.prediction} prediction"]
        parts += ["baked-in VAE" if self.vae else "no VAE"]
        parts += ["text encoders" if self.text_encoders else "no text encoders"]
        return ", ".join(p for p in parts if p)


def read_header(path: str | Path) -> dict:
    """A safetensors file's header (tensor name -> dtype, shape, offsets); says what to do with a cut-short file."""
    path = Path(path)
    size = path.stat().st_size
    redo = "Delete it and download it again (an interrupted download leaves a file cut short)."
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ModelAccessError(f"{path} is not a safetensors file ({size} bytes): it is empty or cut short. {redo}")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise ModelAccessError(
                f"{path} is damaged: its header says {n} bytes of tensor names but the file has {size}. {redo}"
            )
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelAccessError(f"{path} is damaged: its header is not readable. {redo}") from None
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    end = max((v["data_offsets"][1] for v in tensors.values()), default=0)
    if 8 + n + end > size:
        raise ModelAccessError(
            f"{path} is cut short: its tensors need {8 + n + end:,} bytes but the file has {size:,}. {redo}"
        )
    return tensors


def tensor_shapes(path: str | Path, allow_pickle: bool = False) -> dict[str, tuple]:
    """Tensor name -> shape, from the header of a safetensors file (or, opted in, a pickled checkpoint)."""
    path = Path(path)
    if path.suffix.lower() != SAFE:
        refuse_pickle(path, allow_pickle)
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        while isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        return {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}
    return {k: tuple(v["shape"]) for k, v in read_header(path).items()}


def refuse_pickle(path: Path, allow_pickle: bool) -> None:
    if path.suffix.lower() in PICKLED and not allow_pickle:
        raise ModelAccessError(
            f"{path} is a pickled checkpoint ({path.suffix}), which can run code when loaded. Prefer a .safetensors "
            "copy of it; only if you trust where it came from, pass allow_pickle=True (helpers.load_single_file, "
            "helpers.local_models) or --allow-pickle on the command line."
        )


def _has(shapes: dict, suffix: str) -> bool:
    return suffix in shapes or UNET + suffix in shapes


def detect(shapes: dict, path: str | Path = "the file", v_pred_norm_std: float | None = None) -> Detected:
    """The family and kind of a checkpoint from its tensor names and shapes; refuses what it cannot tell.

    `v_pred_norm_std`: for SD 2.x, the spread of the last output block's first norm bias, which ComfyUI reads to tell
    v-prediction (above 0.09) from epsilon U-Nets (supported_models.py, SD20.model_type).
    """
    vae = any(k.startswith(("first_stage_model.", "vae.")) for k in shapes)
    vpred = "v_pred" in shapes  # ComfyUI's and NoobAI's marker of v-prediction SDXL files
    if _has(shapes, "double_blocks.0.img_attn.norm.key_norm.scale"):
        kind = "dev" if any("guidance_in." in k for k in shapes) else "schnell"
        return Detected("flux", kind, "flow", vae, any(k.startswith("text_encoders.") for k in shapes))
    if _has(shapes, "joint_blocks.0.context_block.adaLN_modulation.1.bias"):
        dual = any(".x_block.attn2." in k for k in shapes)  # SD 3.5 Medium's MMDiT-X
        large = _has(shapes, "joint_blocks.0.x_block.attn.ln_q.weight") and not dual
        kind = "sd35-large" if large else "sd35" if dual else ""
        return Detected("sd3", kind, "flow", vae, any(k.startswith("text_encoders.") for k in shapes))
    first = shapes.get(UNET + "input_blocks.0.0.weight")
    if first is None:
        seen = sorted({".".join(k.split(".")[:2]) for k in shapes})[:12]
        raise ZooError(
            f"{path}: cannot tell which model family this file is: it has no Stable Diffusion U-Net, SD3 MMDiT or "
            f"FLUX transformer that the zoo knows ({len(shapes)} tensors; their names begin {', '.join(seen)}). "
            "A LoRA, VAE or embedding file loads with helpers.styles, not as a model; other architectures are not "
            "supported yet."
        )
    inpaint = len(first) > 1 and first[1] == 9
    if any(k.startswith("conditioner.embedders.") for k in shapes) or UNET + "label_emb.0.0.weight" in shapes:
        refiner = "conditioner.embedders.0.model.text_projection" in shapes and not any(
            k.startswith("conditioner.embedders.1.") for k in shapes
        )
        kind = "inpaint" if inpaint else "refiner" if refiner else ""
        text = any(k.startswith("conditioner.embedders.") for k in shapes)
        return Detected("sdxl", kind, "v_prediction" if vpred else None, vae, text)
    text = any(k.startswith("cond_stage_model.") for k in shapes)
    open_clip = "cond_stage_model.model.token_embedding.weight" in shapes
    context = next((s[-1] for k, s in shapes.items() if k.endswith("attn2.to_k.weight")), None)
    if open_clip or (not text and context == 1024):
        if inpaint:
            return Detected("sd2", "inpaint", "epsilon", vae, text)  # SD 2 inpainting U-Nets are epsilon (ComfyUI)
        v = vpred or (v_pred_norm_std is not None and v_pred_norm_std > 0.09)
        pred = "v_prediction" if v else "epsilon"
        return Detected("sd2", pred, pred, vae, text)
    if text or context == 768:
        return Detected("sd1", "inpaint" if inpaint else "", "v_prediction" if vpred else None, vae, text)
    raise ZooError(
        f"{path}: a Stable Diffusion U-Net, but neither its text encoder nor its cross-attention width "
        f"({context}) tells SD 1.x from SD 2.x. Load it with a registry model's text encoder instead."
    )


def v_pred_norm_key(shapes: dict) -> str | None:
    """The tensor ComfyUI reads to tell SD 2.x v-prediction: the last output block's first transformer norm bias."""
    pattern = re.escape(UNET) + r"output_blocks\.\d+\.1\.transformer_blocks\.0\.norm1\.bias"
    found = [k for k in shapes if re.fullmatch(pattern, k)]
    return max(found, key=lambda k: int(k.split(".")[3])) if found else None


def detect_file(path: str | Path, allow_pickle: bool = False) -> Detected:
    """What the checkpoint file at `path` is (reads its header, and for SD 2.x one small tensor)."""
    path = Path(path)
    shapes = tensor_shapes(path, allow_pickle)
    std = None
    key = v_pred_norm_key(shapes) if "cond_stage_model.model.token_embedding.weight" in shapes else None
    if key and path.suffix.lower() == SAFE:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            std = float(f.get_tensor(key).astype("float32").std())
    return detect(shapes, path, std)


def config_entry(spec, registry):
    """The registry model whose config a single-file entry loads with (its family's base of the same kind)."""
    family = spec.family
    if family == "sd2":
        kind = "inpaint" if spec.pipeline.endswith("InpaintPipeline") else spec.prediction
    elif family == "sdxl":
        refiner = "text_encoder" in spec.layout.missing
        kind = "inpaint" if spec.pipeline.endswith("InpaintPipeline") else "refiner" if refiner else ""
    elif family == "flux":
        kind = "dev" if spec.defaults.guidance_scale > 0 else "schnell"
    else:
        kind = "inpaint" if spec.pipeline.endswith("InpaintPipeline") else ""
    key = BASES.get((family, kind)) or BASES.get((family, ""))
    if key is None or key not in registry.models:
        raise ZooError(f"'{spec.key}': no registry model to take a {family} {kind} config from (expected '{key}')")
    return registry.models[key]


def base_for(found: Detected, registry):
    """The registry model a detected file borrows its config and defaults from."""
    key = BASES.get((found.family, found.kind)) or BASES[(found.family, "")]
    return registry.models[key]


def local_key(path: Path) -> str:
    """A registry-style key for a file: its stem in lower case (A1111's model name), spaces and the like as '-'."""
    return re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-.") or "checkpoint"


def spec_for_file(path: str | Path, registry, allow_pickle: bool = False, key: str | None = None):
    """A registry entry for a checkpoint file: its own key, name, file and size; its base's config and defaults."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ZooError(f"{path}: no such checkpoint file")
    if path.suffix.lower() not in SUFFIXES:
        raise ZooError(f"{path}: not a checkpoint file (expected one of {', '.join(SUFFIXES)})")
    found = detect_file(path, allow_pickle)
    base = base_for(found, registry)
    prediction = found.prediction if found.prediction in ("epsilon", "v_prediction") else base.prediction
    return base.model_copy(
        update={
            "key": key or local_key(path),
            "name": path.name,
            "aliases": [],
            "previous_repos": [],
            "single_file": str(path),
            "weights": "bin" if path.suffix.lower() in PICKLED else "safetensors",
            "prediction": prediction,
            "gated": False,
            "license": "unknown (a local file: check where it came from)",
            "commercial_use": "unclear",
            "description": f"A local {found.describe()} checkpoint: {path}",
            "notes": f"Config and defaults from the registry's '{base.key}'.",
            "sources": [],
            "components": {},
            "adapters": [],
            "tags": ["local"],
            "trigger_words": [],
            "size": base.size,  # what a real file of its kind weighs: the memory plan scales it by this file's size
        }
    )


def looks_like_path(key) -> bool:
    text = str(key)
    return text.lower().endswith(SUFFIXES) or os.sep in text or text.startswith("~")


# --- A1111's model hash ---------------------------------------------------------------------------


def cache_root() -> Path:
    """The user's cache folder for this project (`$SDZOO_CACHE`, else `$XDG_CACHE_HOME/sdzoo`, else ~/.cache/sdzoo)."""
    if os.environ.get("SDZOO_CACHE"):
        return Path(os.environ["SDZOO_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "sdzoo"


def file_sha256(path: str | Path) -> str:
    """The sha256 of the whole file, read in 1 MiB blocks, as A1111's `modules/hashes.calculate_sha256`."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_hash(path: str | Path) -> str:
    """A1111's "Model hash": the first 10 hex digits of the file's sha256 (`sd_models.CheckpointInfo.shorthash`).

    Hashing a 7 GB file takes a while, so the full digest is kept in `<cache>/hashes.json`, keyed by the resolved
    path and valid while the size and modification time are the same.
    """
    path = Path(path).expanduser().resolve()
    stat = path.stat()
    store = cache_root() / "hashes.json"
    try:
        known = json.loads(store.read_text())
    except (OSError, json.JSONDecodeError):
        known = {}
    entry = known.get(str(path), {})
    if entry.get("size") != stat.st_size or entry.get("mtime") != stat.st_mtime:
        entry = {"size": stat.st_size, "mtime": stat.st_mtime, "sha256": file_sha256(path)}
        known[str(path)] = entry
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1))
        tmp.replace(store)  # whole or not at all: another process may be reading it
    return entry["sha256"][:10]
