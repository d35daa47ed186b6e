"""What training writes, and where the zoo finds it again by name.

A trained adapter lives in the adapters folder (`SDZOO_ADAPTERS`, default `adapters/`), one folder each:

    adapters/my-style/my-style.safetensors          LoRA, diffusers/peft layout (`pipe.load_lora_weights`)
    adapters/my-style/my-style-kohya.safetensors    the same LoRA in the kohya layout (AUTOMATIC1111, ComfyUI)
    adapters/my-toy/my-toy.safetensors              textual inversion, diffusers ({token: vectors})
    adapters/my-toy/my-toy.pt                       textual inversion, AUTOMATIC1111 (`string_to_param`)
    adapters/NAME/NAME.json                         base model, revision, data hash, hyper-parameters, seeds

>>> styles.load_lora(pipe, "my-style")      # by name, as a registry adapter would be
>>> helpers.generate(pipe, "a fox", loras={"my-style": 0.8})
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import ZooError

# torch and safetensors are imported where weights are read or written: finding and listing adapters needs neither.

ENV = "SDZOO_ADAPTERS"


def adapters_dir() -> Path:
    """The folder of trained adapters the zoo looks in by name."""
    return Path(os.environ.get(ENV, "adapters"))


def find(name: str) -> Path | None:
    """The weights file of a trained adapter called `name` (diffusers layout), or None."""
    if not name or "/" in name or name.endswith((".safetensors", ".pt")):
        return None
    path = adapters_dir() / name / f"{name}.safetensors"
    return path if path.is_file() else None


def metadata(name_or_path: str | Path) -> dict:
    """The metadata JSON of a trained adapter, by name or by the path of its weights."""
    path = Path(name_or_path)
    if not path.suffix:
        found = find(str(name_or_path))
        if found is None:
            raise ZooError(f"no trained adapter '{name_or_path}' in {adapters_dir()} (set {ENV} to look elsewhere)")
        path = found
    meta = path.with_suffix(".json")
    return json.loads(meta.read_text()) if meta.is_file() else {}


def available(family: str | None = None) -> dict[str, dict]:
    """Trained adapters in the adapters folder, by name, with their metadata (optionally of one family)."""
    root, out = adapters_dir(), {}
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if find(folder.name):
            meta = metadata(folder.name)
            if family is None or meta.get("family") == family:
                out[folder.name] = meta
    return out


def save_lora(pipe, unet_layers: dict, out_dir: Path, name: str, rank: int, alpha: float) -> tuple[Path, Path]:
    """Write the U-Net LoRA in the diffusers/peft layout and a kohya-layout copy; returns both paths."""
    import torch
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_kohya
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    layers = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in unet_layers.items()}
    # peft's config (rank, alpha, targets) goes into the file's metadata, where `load_lora_weights` reads it back:
    # without it diffusers assumes alpha = rank, and a LoRA trained with another alpha gives other pixels.
    config = pipe.unet.peft_config["default"].to_dict()
    type(pipe).save_lora_weights(out_dir, unet_lora_layers=convert_state_dict_to_diffusers(layers),
                                 weight_name=f"{name}.safetensors", unet_lora_adapter_metadata=config)  # fmt: skip
    diffusers_path = out_dir / f"{name}.safetensors"
    peft_keys = {f"unet.{k}": v for k, v in layers.items()}
    kohya = convert_state_dict_to_kohya(peft_keys)
    for key in [k for k in kohya if k.endswith(".alpha")]:  # diffusers writes alpha = rank; ours may differ
        kohya[key] = torch.tensor(float(alpha))
    kohya_path = out_dir / f"{name}-kohya.safetensors"
    base = "sdxl_base_v1-0" if "XL" in type(pipe).__name__ else "sd_v1"
    info = {"ss_network_module": "networks.lora", "ss_network_dim": str(rank), "ss_network_alpha": str(alpha),
            "ss_base_model_version": base, "ss_output_name": name}  # fmt: skip
    save_file({k: v.contiguous() for k, v in kohya.items()}, str(kohya_path), metadata=info)
    return diffusers_path, kohya_path


def save_embedding(vectors: list, token: str, out_dir: Path, name: str, step: int, base: str):
    """Write textual-inversion vectors: for one text encoder diffusers' {token: vectors} and A1111's
    `string_to_param` .pt; for SDXL's two, one {"clip_l", "clip_g"} file, the layout A1111 and ComfyUI read."""
    import torch
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    vectors = [v.detach().to("cpu", torch.float32).contiguous() for v in vectors]
    path = out_dir / f"{name}.safetensors"
    if len(vectors) == 2:
        save_file({"clip_l": vectors[0], "clip_g": vectors[1]}, str(path))
        return path, path
    a1111_path = out_dir / f"{name}.pt"
    save_file({token: vectors[0]}, str(path))
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": vectors[0]}, "name": name, "step": step,
                "sd_checkpoint": None, "sd_checkpoint_name": base}, a1111_path)  # fmt: skip
    return path, a1111_path


def load_embedding_file(pipe, path: str | Path, token: str) -> None:
    """Load an embedding file into a pipeline: one text encoder's, or SDXL's {"clip_l", "clip_g"} pair."""
    from safetensors.torch import load_file

    data = load_file(str(path)) if str(path).endswith(".safetensors") else {}
    if "clip_l" in data and "clip_g" in data:  # diffusers loads each half into its own encoder
        pipe.load_textual_inversion(
            data["clip_l"], token=token, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer
        )
        pipe.load_textual_inversion(data["clip_g"], token=token, text_encoder=pipe.text_encoder_2,
                                    tokenizer=pipe.tokenizer_2)  # fmt: skip
    else:
        pipe.load_textual_inversion(str(path), token=token)


def write_metadata(out_dir: Path, name: str, facts: dict) -> Path:
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(facts, indent=2, sort_keys=True, default=str))
    return path


def load_lora_file(path: str | Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))
