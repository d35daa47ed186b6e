"""What a training run needs and whether it fits: the preset for this machine and a memory estimate.

The most reported failure of the diffusers training scripts is running out of memory at step 300, during
validation, or while saving. So a run is planned before anything is loaded: the frozen weights, the trained
parameters, their gradients and optimizer state, and the activations of one batch are added up from the
published parameter counts, and a run that cannot fit is refused with the numbers.

>>> from helpers.train.plan import pick_preset, estimate
>>> from helpers.run.memory import MACHINES
>>> t4 = MACHINES["T4 16 GB, 12 GB RAM (Colab)"]
>>> print(pick_preset(t4).describe())
preset T4-class GPU: fp16 mixed precision (trained parameters in fp32), gradient checkpointing, 8-bit AdamW, ...
>>> estimate("sdxl-base", "lora", t4, resolution=1024).gpu_gb
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from ..base.errors import ZooError
from ..base.families import FAMILIES
from ..run.memory import CUDA_OVERHEAD_GB, RAM_HEADROOM_GB, Machine
from ..zoo.registry import ModelSpec
from ..zoo.registry import default as default_registry

KINDS = ("lora", "dreambooth", "textual-inversion")
GB = 2**30

# Parameters (millions) of each family's parts, from the real configs (counted on the meta device):
# U-Net, text encoder(s), VAE, and the LoRA parameters per unit of rank on the U-Net's attention
# projections (to_q, to_k, to_v, to_out.0): sum of in + out features over those layers.
PARAMS_M = {
    "sd1": {"unet": 859.5, "text": 123.1, "vae": 83.7, "lora_per_rank": 0.1993, "token_dim": 768},
    "sd2": {"unet": 865.9, "text": 340.4, "vae": 83.7, "lora_per_rank": 0.2075, "token_dim": 1024},
    "sdxl": {"unet": 2567.5, "text": 817.8, "vae": 83.7, "lora_per_rank": 1.4515, "token_dim": 2048},
}
# Activations kept for the backward pass of one image at the family's native size, in GB at half precision:
# with gradient checkpointing (only block inputs kept) and without. Orders of magnitude from the diffusers
# training scripts' reports; `benchmarks/train_t4.py` measures the real peak.
ACTIVATIONS_GB = {"sd1": (1.3, 6.0), "sd2": (1.5, 7.0), "sdxl": (3.5, 24.0)}
OPTIMIZER_BYTES = {"adamw": 8, "adamw8bit": 2}  # optimizer state per trained parameter (two moments)


@dataclass(frozen=True)
class Preset:
    """How to train on a machine: precision, memory savers, optimizer; said in one line."""

    name: str
    device: str
    mixed_precision: str = "no"  # "fp16", "bf16" or "no"; the trained parameters always stay in fp32
    gradient_checkpointing: bool = False
    optimizer: str = "adamw"  # or "adamw8bit" (bitsandbytes, CUDA only)
    cache: bool = True  # latents and (for LoRA) text embeddings computed once

    def describe(self) -> str:
        precision = {
            "fp16": "fp16 mixed precision (trained parameters in fp32)",
            "bf16": "bf16 mixed precision (trained parameters in fp32)",
            "no": "float32",
        }[self.mixed_precision]
        parts = [precision, "gradient checkpointing" if self.gradient_checkpointing else "",
                 "8-bit AdamW" if self.optimizer == "adamw8bit" else "AdamW",
                 "latents and text embeddings cached" if self.cache else "",
                 "fp16-fix VAE for SDXL" if self.mixed_precision == "fp16" else ""]  # fmt: skip
        return f"preset {self.name}: " + ", ".join(p for p in parts if p)


def _bitsandbytes() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def pick_preset(machine: Machine, bf16: bool = False) -> Preset:
    """The preset for a machine: a T4-class GPU (no bf16) gets fp16, checkpointing and 8-bit Adam."""
    if machine.device == "cuda":
        optimizer = "adamw8bit" if _bitsandbytes() else "adamw"
        small = machine.gpu_gb < 30
        name = ("T4-class GPU" if not bf16 else "bf16 GPU") if small else "large GPU"
        return Preset(name, "cuda", "bf16" if bf16 else "fp16", gradient_checkpointing=small, optimizer=optimizer)
    if machine.device == "mps":
        return Preset("Apple MPS", "mps", "no", gradient_checkpointing=True)
    return Preset("CPU", "cpu", "no")


@dataclass(frozen=True)
class Estimate:
    """The memory a run needs, in GB, part by part, and where."""

    parts: dict  # name -> GB on the device while training
    validation_gb: float  # peak while making validation images
    ram_gb: float  # system RAM for what waits there (text encoders and VAE after caching) and loading
    device: str

    @property
    def gpu_gb(self) -> float:
        return max(sum(self.parts.values()), self.validation_gb)

    def describe(self) -> str:
        parts = " + ".join(f"{k} {v:.2f}" for k, v in self.parts.items())
        where = "GPU" if self.device != "cpu" else "RAM"
        return (
            f"training {sum(self.parts.values()):.1f} GB of {where} ({parts}); "
            f"validation {self.validation_gb:.1f} GB; system RAM {self.ram_gb:.1f} GB"
        )


def estimate(
    model: str | ModelSpec,
    kind: str,
    preset: Preset,
    resolution: int | None = None,
    batch_size: int = 1,
    rank: int = 4,
    prior_preservation: bool = False,
    num_vectors: int = 1,
    scale: float = 1.0,
) -> Estimate:
    """The memory of a training run, from parameter counts, resolution, batch and optimizer state.

    `scale` shrinks the model's parts to what is on disk (`helpers.memory.cached_scale`: tiny test models).
    """
    spec = default_registry().get(model) if isinstance(model, str) else model
    if spec.family not in PARAMS_M:
        raise ZooError(f"'{spec.key}' is a {spec.family} model; training covers sd1, sd2 and sdxl models")
    if kind not in KINDS:
        raise ZooError(f"unknown training kind '{kind}'; use one of {', '.join(KINDS)}")
    p = PARAMS_M[spec.family]
    half = preset.mixed_precision in ("fp16", "bf16")
    wbytes = 2 if half else 4
    unet = p["unet"] * 1e6 * wbytes / GB
    text = p["text"] * 1e6 * wbytes / GB
    vae = p["vae"] * 1e6 * wbytes / GB
    opt = OPTIMIZER_BYTES[preset.optimizer]
    if kind == "textual-inversion":  # the text encoder stays on the device (gradients flow through it)
        trained = num_vectors * p["token_dim"]  # the new tokens' vectors only
        parts = {"frozen U-Net": unet, "frozen text encoder": text, "token vectors + optimizer": trained * 16 / GB}
    else:
        trained = p["lora_per_rank"] * 1e6 * rank
        parts = {"frozen U-Net": unet, "LoRA weights + grads + optimizer": trained * (4 + 4 + opt) / GB}
    side = resolution or spec.resolution
    pixels = side * side / spec.resolution**2
    images = batch_size * (2 if prior_preservation else 1)
    act = ACTIVATIONS_GB[spec.family][0 if preset.gradient_checkpointing else 1] * pixels * images
    parts["activations"] = act * (1 if half else 2)
    if preset.device != "cpu":
        parts["CUDA context and slack"] = CUDA_OVERHEAD_GB
    inference = FAMILIES[spec.family].parts_gb[3] * pixels * (1 if half else 2)
    validation = unet + text + vae + inference + (CUDA_OVERHEAD_GB if preset.device != "cpu" else 0)
    parts = {k: v if k.startswith("CUDA") else v * scale for k, v in parts.items()}
    validation = (validation - (CUDA_OVERHEAD_GB if preset.device != "cpu" else 0)) * scale + (
        CUDA_OVERHEAD_GB if preset.device != "cpu" else 0
    )
    ram = (text + vae) * scale + RAM_HEADROOM_GB  # what waits in RAM after caching, plus the process itself
    return Estimate(parts, validation, ram, preset.device)


def check_fits(est: Estimate, machine: Machine, what: str) -> None:
    """A `ZooError` with the numbers and the options when the run cannot fit the machine."""
    if machine.device == "cpu":
        need = sum(est.parts.values()) + est.ram_gb
        if need > machine.ram_gb:
            raise ZooError(
                f"{what} does not fit this machine: it needs about {need:.1f} GB of RAM ({est.describe()}), and "
                f"{machine.ram_gb:.1f} GB is free. Options: a smaller --resolution, --batch-size 1, a GPU."
            )
        return
    if est.gpu_gb > machine.gpu_gb or est.ram_gb > machine.ram_gb:
        raise ZooError(
            f"{what} does not fit this machine: it needs about {est.gpu_gb:.1f} GB of GPU memory and "
            f"{est.ram_gb:.1f} GB of RAM ({est.describe()}); there is {machine.gpu_gb:.1f} GB free on the GPU and "
            f"{machine.ram_gb:.1f} GB of RAM. Options: a smaller --resolution, --batch-size 1, a lower --rank, "
            "gradient checkpointing and 8-bit Adam (the T4 preset: pip install bitsandbytes), or a larger GPU."
        )
