"""LoRAs and textual-inversion embeddings as people download them: single files, by path or by name from a folder.

AUTOMATIC1111 and ComfyUI keep them as files (`models/Lora`, `embeddings`): a kohya LoRA (`lora_unet_..._lora_down
.weight`, `..._lora_up.weight`, `.alpha`), which diffusers' `load_lora_weights` converts itself; an A1111 embedding,
`.pt` (`{'string_to_param': {'*': vectors}}`) or `.safetensors` (`{'emb_params': vectors}`); an SDXL embedding
(`clip_l`, `clip_g`). A name without a folder is looked for in the trained adapters folder (`SDZOO_ADAPTERS`) and in
the folders of `SDZOO_ADAPTER_DIRS` (separated by the system's path separator), e.g. A1111's `models/Lora`. As in
A1111, an embedding's token is its file name unless one is given.

A pickled file (`.pt`, `.ckpt`, `.bin`) can run code when read: it is refused unless the caller opts in
(`allow_pickle=True`), and even then it is read with `torch.load(weights_only=True)`, which unpickles tensors and
plain containers only.

>>> find("add_detail", (".safetensors",))          # SDZOO_ADAPTER_DIRS=~/webui/models/Lora
PosixPath('/home/me/webui/models/Lora/add_detail.safetensors')
>>> read_embedding("embeddings/easynegative.safetensors")["*"].shape
torch.Size([8, 768])
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from ..base import adapters as trained
from ..base.errors import ZooError
from ..zoo.registry import default as default_registry
from .loading import hub_errors_explained

DIRS_ENV = "SDZOO_ADAPTER_DIRS"
PICKLED = (".pt", ".ckpt", ".bin", ".pth")
WEIGHTS = (".safetensors", *PICKLED)


def folders() -> list[Path]:
    """The folders a LoRA or embedding named without a path is looked for in, in order."""
    extra = [Path(p).expanduser() for p in os.environ.get(DIRS_ENV, "").split(os.pathsep) if p]
    return [trained.adapters_dir(), *extra]


def find(source: str, suffixes=WEIGHTS) -> Path | None:
    """The file `source` names: a path, or a file name (with or without its suffix) in one of `folders()`."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if "/" in source or os.sep in source:
        return None
    names = [source] if source.endswith(WEIGHTS) else [source + s for s in suffixes]
    for folder in folders():
        for name in names:
            hits = sorted(folder.rglob(name)) if folder.is_dir() else []
            if hits:
                return hits[0]
    return None


def check_pickle(path: Path, allow_pickle: bool, what: str) -> None:
    """Refuse a pickled file unless the caller opted in, saying how to."""
    if path.suffix.lower() in PICKLED and not allow_pickle:
        raise ZooError(
            f"{path} is a pickled {what} file ({path.suffix}), which can run code when it is read. Prefer a "
            f".safetensors copy; only if you trust its source, pass allow_pickle=True (it is then read with "
            "torch.load(weights_only=True))"
        )


def _read(path: Path, allow_pickle: bool, what: str) -> dict:
    """The tensors and plain values of a weights file; a truncated, damaged or code-carrying file is named."""
    check_pickle(path, allow_pickle, what)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ZooError(
            f"{path}: holds Python objects other than tensors, which weights-only loading refuses "
            f"({str(e).splitlines()[0][:160]}); it is not loaded"
        ) from None
    except (OSError, RuntimeError, EOFError, ValueError, KeyError) as e:  # safetensors raises its own errors too
        raise ZooError(f"{path}: not a readable {what} file, truncated or damaged ({str(e).splitlines()[0][:160]}); "
                       "download it again") from None  # fmt: skip
    except Exception as e:  # safetensors' SafetensorError derives from Exception only
        if type(e).__name__ != "SafetensorError":
            raise
        raise ZooError(f"{path}: not a readable {what} file, truncated or damaged ({e}); download it again") from None


def read_embedding(path: str | Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """An embedding file's vectors: {"*": tensor} for one text encoder, {"clip_l", "clip_g"} for SDXL's two.

    Reads A1111's `.pt` (`string_to_param`) and `.safetensors` (`emb_params`), SDXL's `clip_l`/`clip_g` pair, and
    diffusers' one-key {token: vectors}.
    """
    path = Path(path)
    data = _read(path, allow_pickle, "embedding")
    if isinstance(data, dict) and "clip_l" in data and "clip_g" in data:
        return {"clip_l": _vectors(data["clip_l"]), "clip_g": _vectors(data["clip_g"])}
    if isinstance(data, dict) and isinstance(data.get("string_to_param"), dict) and "*" in data["string_to_param"]:
        return {"*": _vectors(data["string_to_param"]["*"])}
    if isinstance(data, dict) and "emb_params" in data:
        return {"*": _vectors(data["emb_params"])}
    tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)} if isinstance(data, dict) else {}
    if len(tensors) == 1:
        return {"*": _vectors(next(iter(tensors.values())))}
    keys = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
    raise ZooError(
        f"{path}: not a textual-inversion embedding this reads (A1111 'string_to_param' or 'emb_params', SDXL "
        f"'clip_l'/'clip_g', or one {{token: vectors}}); it holds {keys}"
    )


def _vectors(t) -> torch.Tensor:
    t = torch.as_tensor(t).detach().to(torch.float32)
    return t.unsqueeze(0) if t.ndim == 1 else t


def load_embedding(pipe, path: str | Path, token: str | None = None, allow_pickle: bool = False) -> str:
    """Load an embedding file into the pipeline's text encoder(s); returns its token (the file name by default)."""
    path = Path(path)
    token = token or path.stem
    vectors = read_embedding(path, allow_pickle)
    if "*" in vectors:
        width = pipe.text_encoder.get_input_embeddings().weight.shape[1]
        if vectors["*"].shape[1] != width:
            raise ZooError(
                f"{path}: its vectors are {vectors['*'].shape[1]} wide, this model's text encoder reads {width}: it "
                "was made for another family (768: SD 1.x, 1024: SD 2.x, clip_l + clip_g: SDXL)"
            )
        pipe.load_textual_inversion(vectors["*"], token=token)
    elif getattr(pipe, "text_encoder_2", None) is None:
        raise ZooError(f"{path}: an SDXL embedding (clip_l + clip_g); this model has one text encoder")
    else:
        pipe.load_textual_inversion(vectors["clip_l"], token=token, text_encoder=pipe.text_encoder,
                                    tokenizer=pipe.tokenizer)  # fmt: skip
        pipe.load_textual_inversion(vectors["clip_g"], token=token, text_encoder=pipe.text_encoder_2,
                                    tokenizer=pipe.tokenizer_2)  # fmt: skip
    return token


def load_vae(path: str | Path, like: str, dtype=torch.float32, allow_pickle: bool = False, registry=None):
    """A single-file VAE (A1111's `models/VAE`, e.g. `vae-ft-mse-840000-ema-pruned.safetensors`, in the original LDM
    key layout) as a diffusers `AutoencoderKL`, its config taken from the registry model `like` (from the cache).

    >>> pipe = helpers.load_pipeline("sd15", vae=load_vae("vae-ft-mse-840000-ema-pruned.safetensors", "sd15"))
    """
    from diffusers import AutoencoderKL

    path = Path(path).expanduser()
    found = find(str(path)) if not path.is_file() else path
    if found is None:
        raise ZooError(f"no VAE file '{path}' (from {Path.cwd()}) nor in {', '.join(map(str, folders()))}")
    check_pickle(found, allow_pickle, "VAE")
    spec = (registry or default_registry()).get(like)
    with hub_errors_explained(spec):
        try:
            return AutoencoderKL.from_single_file(str(found), config=spec.repo, subfolder="vae", revision=spec.revision,
                                                  torch_dtype=dtype)  # fmt: skip
        except Exception as e:  # safetensors' SafetensorError (a cut file) derives from Exception only
            if not isinstance(e, (KeyError, RuntimeError, ValueError)) and type(e).__name__ != "SafetensorError":
                raise
            raise ZooError(f"{found}: not a whole VAE of a {spec.family} model in the original layout, or a damaged "
                           f"file ({str(e).splitlines()[0][:160]})") from None  # fmt: skip


def lora_file(source: str, allow_pickle: bool = False) -> Path | None:
    """The LoRA file `source` names (a path or a name in `folders()`), checked; None when it names no file."""
    path = find(source)
    if path is not None:
        check_pickle(path, allow_pickle, "LoRA")
    return path
