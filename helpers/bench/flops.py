"""FLOPs of one denoising step, counted from a model's config files on PyTorch's meta device.

The denoiser is built with no weights at all (`torch.device("meta")`) and run once under `FlopCounterMode`, so
the count takes seconds on any machine, needs no GPU, and is the same wherever the model later runs. Divided
into a GPU's peak FLOP/s it gives the compute floor of a step; times the measured steps per second, the model
FLOP utilisation.

>>> step_flops(default().get("sdxl-base"), "../shared/real-configs/sdxl", 1024, 1024) / 1e12   # about 13.5
"""

from __future__ import annotations

import json
from pathlib import Path

import diffusers
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..base.devices import default_dtype
from ..base.families import FAMILIES
from ..zoo.registry import ModelSpec

TEXT_TOKENS = 77  # CLIP's sequence length


def _unet_inputs(cfg: dict, n: int, h: int, w: int, dtype, folder: Path) -> dict:
    inputs = {
        "sample": torch.zeros(n, cfg["in_channels"], h // 8, w // 8, dtype=dtype),
        "timestep": torch.tensor(500),
        "encoder_hidden_states": torch.zeros(n, TEXT_TOKENS, cfg["cross_attention_dim"], dtype=dtype),
    }
    if cfg.get("addition_embed_type") == "text_time":  # SDXL: pooled text embedding + size/crop conditioning
        times = cfg["addition_time_embed_dim"]
        pooled = json.loads((folder / "text_encoder_2" / "config.json").read_text())["projection_dim"]
        count = (cfg["projection_class_embeddings_input_dim"] - pooled) // times  # 6 size/crop ids; 5 in the refiner
        inputs["added_cond_kwargs"] = {
            "text_embeds": torch.zeros(n, pooled, dtype=dtype),
            "time_ids": torch.zeros(n, count, dtype=dtype),
        }
    return inputs


def _flux_inputs(cfg: dict, n: int, h: int, w: int, dtype, text_tokens: int) -> dict:
    tokens = (h // 16) * (w // 16)  # 8x VAE, then 2x2 patches
    return {
        "hidden_states": torch.zeros(n, tokens, cfg["in_channels"], dtype=dtype),
        "encoder_hidden_states": torch.zeros(n, text_tokens, cfg["joint_attention_dim"], dtype=dtype),
        "pooled_projections": torch.zeros(n, cfg["pooled_projection_dim"], dtype=dtype),
        "timestep": torch.ones(n),
        "img_ids": torch.zeros(tokens, 3),
        "txt_ids": torch.zeros(text_tokens, 3),
        "guidance": torch.ones(n) if cfg.get("guidance_embeds") else None,
    }


def guidance_batch(spec: ModelSpec, guidance_scale: float | None = None) -> int:
    """How many denoiser passes a step makes: 2 with classifier-free guidance, else 1 (FLUX's is distilled)."""
    g = spec.defaults.guidance_scale if guidance_scale is None else guidance_scale
    return 2 if g > 1 and FAMILIES[spec.family].cfg_batch else 1


def step_flops(spec: ModelSpec, folder: str | Path, height: int, width: int, guidance_scale: float | None = None):
    """FLOPs of one denoising step of `spec` at this size, batch 1, from the configs in `folder`; None if unknown.

    `folder` holds the pipeline's configs in diffusers layout (a Hub snapshot or a config directory).
    Counted: matrix multiplications, convolutions and attention, as `FlopCounterMode` counts them.
    """
    n, dtype = guidance_batch(spec, guidance_scale), torch.float16
    if FAMILIES[spec.family].denoiser == "unet":
        cls, sub = diffusers.UNet2DConditionModel, "unet"
    elif spec.family == "flux":
        cls, sub = diffusers.FluxTransformer2DModel, "transformer"
    else:
        return None  # SD3 and PixArt inputs are not modelled here
    cfg = dict(cls.load_config(str(Path(folder) / sub)))
    with torch.device("meta"), default_dtype(dtype):  # built in half precision, as the GPU runs it
        net = cls.from_config(cfg)
        if cls is diffusers.UNet2DConditionModel:
            inputs = _unet_inputs(cfg, n, height, width, dtype, Path(folder))
        else:
            inputs = _flux_inputs(cfg, n, height, width, dtype, spec.defaults.max_sequence_length or 512)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(**inputs)
    return float(counter.get_total_flops())
