"""A memory policy chosen for the machine: what goes on the GPU, what waits in system RAM, what is quantized.

The number one way to crash a Colab runtime is to switch on CPU offload blindly: it needs all the weights
in system RAM, which a T4 runtime (12 GB) does not have for SDXL-class models and above. So each policy is
chosen from the model's size facts, the GPU's free memory and the free system RAM, and said in one line.

>>> from helpers.run.memory import Machine, choose_policy
>>> choose_policy(registry.get("flux-dev"), Machine("cuda", gpu_gb=15, ram_gb=12.7)).describe()
'nf4: ...'
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..base.devices import pick_device
from ..base.errors import ZooError
from ..base.families import FAMILIES
from ..zoo.registry import ModelSpec
from ..zoo.registry import default as default_registry

CUDA_OVERHEAD_GB = 1.0  # CUDA context, allocator slack, fragmentation
RAM_HEADROOM_GB = 2.5  # Python, libraries and the notebook itself
NF4_RATIO = 0.29  # 4-bit weights plus scales, as a share of fp16
POLICIES = ("gpu", "model-offload", "group-offload", "sequential-offload", "cpu")


@dataclass(frozen=True)
class Machine:
    """What a policy is chosen for: the device kind, free GPU memory and free system RAM (GB)."""

    device: str
    gpu_gb: float = 0.0
    ram_gb: float = 16.0
    name: str = ""
    capability: float = 0.0  # CUDA compute capability (8.9 and up: fp8 kernels); 0 elsewhere

    @classmethod
    def detect(cls, device: str = "auto") -> Machine:
        """This machine, now."""
        import psutil

        device = pick_device(device)
        ram = psutil.virtual_memory().available / 2**30
        if device.startswith("cuda"):
            free, _ = torch.cuda.mem_get_info(torch.device(device))
            major, minor = torch.cuda.get_device_capability(torch.device(device))
            return cls("cuda", free / 2**30, ram, torch.cuda.get_device_name(torch.device(device)), major + minor / 10)
        if device == "mps":  # unified memory: the GPU and the CPU share the RAM
            return cls("mps", ram, ram, "Apple MPS")
        return cls("cpu", 0.0, ram, "CPU")


@dataclass(frozen=True)
class Footprint:
    denoiser_gb: float
    text_gb: float
    vae_gb: float
    activations_gb: float
    extra_gb: float = 0.0  # modules that join the model for a generation: ControlNets, IP-Adapters (not quantized)

    @property
    def weights_gb(self) -> float:
        return self.denoiser_gb + self.text_gb + self.vae_gb + self.extra_gb

    @property
    def working_gb(self) -> float:
        """What must sit on the GPU together at each step under model offload: the denoiser and its ControlNets."""
        return self.denoiser_gb + self.extra_gb


@dataclass(frozen=True)
class Policy:
    """Where the weights live while generating, and why."""

    name: str
    reason: str
    vae_tiling: bool = False
    # How the weights are stored (helpers.run.plan): "nf4"/"int8" (bitsandbytes: the denoiser and a T5 encoder),
    # "torchao-int8"/"torchao-fp8" (weight-only), "layerwise-fp8" (fp8 storage, bf16 compute), "gguf:KEY" (a file
    # of the registry's gguf: section replaces the denoiser); None: as the repo stores them.
    quantize: str | None = None
    gpu_gb: float = 0.0  # expected peak on the GPU
    ram_gb: float = 0.0  # expected system RAM for the weights
    label: str = ""  # the plan in words, for recipes and tables: "Q4_K_S GGUF transformer, model offload"
    plan: str = ""  # the plan's option key (helpers.run.plan), when the policy came from a plan

    def describe(self) -> str:
        extras = [x for x in ("vae tiling" if self.vae_tiling else "", self.quantize or "") if x]
        return f"{self.name}{' + ' + ', '.join(extras) if extras else ''}: {self.reason}"


def footprint(spec: ModelSpec, height: int | None = None, width: int | None = None, scale: float = 1.0,
              extra_gb: float = 0.0) -> Footprint:  # fmt: skip
    """The model's memory in half precision; `scale` shrinks it to what is really on disk (see `cached_scale`).

    `extra_gb`: the modules that join it for a generation (see `extras_gb`), already scaled.
    """
    denoiser, text, vae, act = FAMILIES[spec.family].parts_gb
    if spec.size.denoiser_gb is not None:
        denoiser = spec.size.denoiser_gb
    if "text_encoder" in spec.layout.missing and spec.family == "sdxl":  # the refiner has only OpenCLIP-bigG
        text = 1.39
    pixels = (height or spec.resolution) * (width or spec.resolution) / spec.resolution**2
    return Footprint(denoiser * scale, text * scale, vae * scale, act * max(pixels, 0.25) * scale, extra_gb)


def extras_gb(specs) -> float:
    """Half-precision GB of registry modules that join a model (ControlNets, IP-Adapters), as they are on disk."""
    return sum((s.size.vram_gb or s.size.download_gb / 2) * cached_scale(s) for s in specs)


def with_extras(spec: ModelSpec, device: str, memory, extras) -> object:
    """The memory policy to load `spec` with when registry modules `extras` will join it; `memory` unless "auto"."""
    if memory != "auto" or not extras:
        return memory
    policy = choose_policy(spec, Machine.detect(device), scale=cached_scale(spec), extra_gb=extras_gb(extras))
    reason = f"{policy.reason} (counting {', '.join(e.key for e in extras)})"
    return Policy(policy.name, reason, policy.vae_tiling, policy.quantize, policy.gpu_gb, policy.ram_gb)


def cached_scale(spec: ModelSpec) -> float:
    """How the weight files in the local cache compare with the entry's download size (1 when not cached).

    A real download measures about 1; the offline hub's tiny stand-ins measure far less, so they are planned
    as the small models they are.
    """
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    expected = spec.size.download_gb * 2**30
    # a local checkpoint: the file against its family's size
    if getattr(spec, "single_file", None) and Path(spec.single_file).is_file():
        return min(1.0, Path(spec.single_file).stat().st_size / expected) if expected else 1.0
    try:
        files = get_cached_repo_tree(spec.repo, revision=spec.revision)
    except (CachedRepoTreeNotFoundError, OSError, ValueError):
        return 1.0
    on_disk = sum(f.size for f in files if f.path.endswith((".safetensors", ".bin")))
    return min(1.0, on_disk / expected) if on_disk and expected else 1.0


def _quantization_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def choose_policy(
    spec: ModelSpec,
    machine: Machine,
    height: int | None = None,
    width: int | None = None,
    quantize: bool = True,
    scale: float = 1.0,
    extra_gb: float = 0.0,
) -> Policy:
    """The fastest policy that fits the machine; a `ZooError` with the numbers when none does.

    `extra_gb` counts modules that join the model for a generation (ControlNets, IP-Adapters: `extras_gb`).
    """
    fp = footprint(spec, height, width, scale, extra_gb)
    big_image = (height or spec.resolution) * (width or spec.resolution) > 1.5 * spec.resolution**2
    w, a, d = fp.weights_gb, fp.activations_gb, fp.working_gb
    if machine.device == "cpu":
        need = 2 * w + a + RAM_HEADROOM_GB  # float32 on the CPU
        if machine.ram_gb >= need:
            return Policy("cpu", f"no GPU; {need:.1f} GB of RAM for float32 weights, {machine.ram_gb:.0f} GB free",
                          vae_tiling=big_image, ram_gb=2 * w)  # fmt: skip
        raise _too_big(spec, f"{need:.0f} GB of RAM on the CPU", f"{machine.ram_gb:.0f} GB free")
    if machine.device == "mps":  # unified memory: no offload to gain; macOS keeps about a third for itself
        usable = 0.66 * machine.ram_gb
        if w + a <= usable:
            return Policy("gpu", f"{w + a:.1f} GB in {usable:.0f} GB of usable unified memory", big_image, gpu_gb=w + a)
        raise _too_big(spec, f"{w + a:.1f} GB of unified memory", f"about {usable:.0f} GB usable")
    gpu, ram = machine.gpu_gb, machine.ram_gb
    if w + a + CUDA_OVERHEAD_GB <= gpu:
        return Policy("gpu", f"{w + a:.1f} GB fits in {gpu:.1f} GB free on the GPU", big_image, gpu_gb=w + a)
    ram_ok = w + RAM_HEADROOM_GB <= ram
    working = "denoiser and its ControlNets/adapters do" if fp.extra_gb else "denoiser does"
    if ram_ok and d + a + CUDA_OVERHEAD_GB <= gpu:
        return Policy(
            "model-offload",
            f"{w + a:.1f} GB does not fit in {gpu:.1f} GB; the {d:.1f} GB {working}, and {ram:.0f} GB of RAM "
            "holds the rest between steps",
            big_image,
            gpu_gb=d + a,
            ram_gb=w,
        )
    if quantize and machine.device == "cuda":
        q = _quantized(spec, fp)
        qw = q.weights_gb
        if qw + a + CUDA_OVERHEAD_GB <= gpu:
            why = "" if _quantization_available() else " (pip install bitsandbytes)"
            return Policy(
                "gpu",
                f"{w:.0f} GB of bf16/fp16 weights do not fit; in 4-bit they take {qw:.1f} GB of {gpu:.1f} GB{why}",
                big_image,
                quantize="nf4",
                gpu_gb=qw + a,
            )
        if qw + RAM_HEADROOM_GB <= ram and q.working_gb + a + CUDA_OVERHEAD_GB <= gpu:
            return Policy(
                "model-offload",
                f"in 4-bit the {q.working_gb:.1f} GB denoiser fits in {gpu:.1f} GB and {ram:.0f} GB of RAM holds "
                "the rest",
                big_image,
                quantize="nf4",
                gpu_gb=q.working_gb + a,
                ram_gb=qw,
            )
    if ram_ok and a + CUDA_OVERHEAD_GB + 0.5 <= gpu:
        return Policy(
            "group-offload",
            f"not even the {d:.1f} GB denoiser fits in {gpu:.1f} GB; its blocks stream from {ram:.0f} GB of RAM (slow)",
            True,
            gpu_gb=a + 0.5,
            ram_gb=w,
        )
    need = f"{w + a + CUDA_OVERHEAD_GB:.0f} GB of GPU memory (or {d + a + CUDA_OVERHEAD_GB:.0f} GB with "
    need += f"{w + RAM_HEADROOM_GB:.0f} GB of RAM for offloading)"
    raise _too_big(spec, need, f"{gpu:.1f} GB free on the GPU and {ram:.0f} GB of RAM")


def _quantized(spec: ModelSpec, fp: Footprint) -> Footprint:
    """nf4 shrinks the denoiser and a T5 encoder (SD3, FLUX, PixArt); the CLIP encoders and the VAE stay."""
    t5 = FAMILIES[spec.family].t5_gb
    text = fp.text_gb - t5 + t5 * NF4_RATIO
    return Footprint(fp.denoiser_gb * NF4_RATIO, text, fp.vae_gb, fp.activations_gb, fp.extra_gb)


def _too_big(spec: ModelSpec, need: str, have: str) -> ZooError:
    smaller = "a smaller model of the family (`python -m helpers list --fits N`)"
    return ZooError(
        f"'{spec.key}' does not fit this machine: it needs {need}, and there is {have}. Options: {smaller}; "
        "4-bit loading on a CUDA GPU (`pip install bitsandbytes`); a smaller image; or a machine with more memory."
    )


def quantization_config(spec: ModelSpec, dtype: torch.dtype, method: str = "nf4"):
    """The diffusers config that quantizes while loading: bitsandbytes NF4 or int8 (the denoiser and a T5 encoder),
    torchao int8 or fp8 weight-only (the denoiser); None for methods applied otherwise (layerwise, GGUF)."""
    from diffusers import PipelineQuantizationConfig

    family = FAMILIES[spec.family]
    if method.startswith("torchao-"):
        if importlib.util.find_spec("torchao") is None:
            raise ZooError(f"the {method} plan of '{spec.key}' needs torchao: pip install torchao")
        from diffusers import TorchAoConfig
        from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig

        config = Int8WeightOnlyConfig() if method == "torchao-int8" else Float8WeightOnlyConfig()
        return PipelineQuantizationConfig(quant_mapping={family.denoiser: TorchAoConfig(config)})
    if method not in ("nf4", "int8"):
        return None
    if not _quantization_available():
        raise ZooError(f"{method} loading of '{spec.key}' needs bitsandbytes and a CUDA GPU: pip install bitsandbytes")
    components = [family.denoiser] + ([family.t5] if family.t5 else [])
    if method == "int8":
        return PipelineQuantizationConfig(quant_backend="bitsandbytes_8bit", quant_kwargs={"load_in_8bit": True},
                                          components_to_quantize=components)  # fmt: skip
    return PipelineQuantizationConfig(
        quant_backend="bitsandbytes_4bit",
        quant_kwargs={"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": dtype},
        components_to_quantize=components,
    )


def gguf_denoiser(spec: ModelSpec, gguf_key: str, dtype: torch.dtype, registry=None):
    """The model's denoiser from a pre-quantized GGUF file of the registry's `gguf:` section (weights stay quantized,
    dequantized layer by layer to `dtype`); its config is the model repo's own."""
    import diffusers
    import huggingface_hub

    if importlib.util.find_spec("gguf") is None:
        raise ZooError(f"GGUF plans of '{spec.key}' need the gguf package: pip install gguf")
    g = (registry or default_registry()).entry("gguf", gguf_key)
    family = FAMILIES[spec.family]
    if g.model != spec.key:
        raise ZooError(f"GGUF file '{g.key}' replaces the denoiser of '{g.model}', not of '{spec.key}'")
    path = huggingface_hub.hf_hub_download(g.repo, g.file, revision=g.revision)
    index = huggingface_hub.hf_hub_download(spec.repo, "model_index.json", revision=spec.revision)
    _, name = json.loads(Path(index).read_text())[family.denoiser]
    return getattr(diffusers, name).from_single_file(
        path, quantization_config=diffusers.GGUFQuantizationConfig(compute_dtype=dtype), config=spec.repo,
        subfolder=family.denoiser, revision=spec.revision, torch_dtype=dtype,
        local_files_only=huggingface_hub.constants.HF_HUB_OFFLINE,
    )  # fmt: skip


def cast_layerwise(pipe, policy: Policy, dtype: torch.dtype) -> None:
    """fp8 storage of the denoiser's weights, upcast to `dtype` layer by layer (diffusers' layerwise casting)."""
    if policy.quantize == "layerwise-fp8":
        denoiser = getattr(pipe, "transformer", None) or pipe.unet
        denoiser.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)


def apply(pipe, policy: Policy, device: str) -> None:
    """Place a freshly loaded pipeline as the policy says."""
    if policy.name in ("gpu", "cpu"):
        pipe.to(device)
    elif policy.name == "model-offload":
        pipe.enable_model_cpu_offload(device=device)
    elif policy.name == "group-offload":
        pipe.enable_group_offload(
            onload_device=torch.device(device), offload_type="leaf_level", use_stream=device.startswith("cuda")
        )
    elif policy.name == "sequential-offload":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        raise ZooError(f"Unknown memory policy '{policy.name}'; use 'auto' or one of {', '.join(POLICIES)}")
    if policy.vae_tiling and hasattr(pipe.vae, "enable_tiling"):
        pipe.vae.enable_tiling()


# Machines people run this on, for the README's table and the tests: free GPU memory and free system RAM.
MACHINES = {
    "T4 16 GB, 12 GB RAM (Colab)": Machine("cuda", 14.7, 11.0, "T4 (Colab free)"),
    "16 GB, 32 GB RAM": Machine("cuda", 14.7, 30.0, "16 GB GPU"),
    "24 GB, 12 GB RAM": Machine("cuda", 22.5, 11.0, "A10 24 GB"),
    "24 GB, 32 GB RAM": Machine("cuda", 22.5, 30.0, "A10 / RTX 4090"),
    "80 GB, 32 GB RAM": Machine("cuda", 78.0, 30.0, "A100 / H100 80 GB"),
}


def policy_table(models) -> str:
    """Markdown: for each model, the policy it gets on each of `MACHINES`."""
    names = list(MACHINES)
    lines = ["| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for spec in models:
        cells = []
        for n in names:
            try:
                p = choose_policy(spec, MACHINES[n], quantize=True)
                cells.append(p.name + (f" ({p.quantize})" if p.quantize else ""))
            except ZooError:
                cells.append("does not fit")
        lines.append(f"| `{spec.key}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plan_for(models, machine: Machine | None = None):
    """A pandas DataFrame: the policy each model gets on `machine` (default: this one), or why it does not fit."""
    import pandas as pd

    machine = machine or Machine.detect()
    rows = []
    for spec in models:
        try:
            p = choose_policy(spec, machine)
            rows.append({"model": spec.key, "runs": True, "policy": p.name, "quantize": p.quantize, "why": p.reason})
        except ZooError as e:
            rows.append({"model": spec.key, "runs": False, "policy": None, "quantize": None, "why": str(e)})
    return pd.DataFrame(rows).set_index("model")


def policy_for(spec, device: str, memory) -> Policy:
    """The memory policy for a model or upscaler: chosen for this machine (`"auto"`), named, or given."""
    if isinstance(memory, Policy):
        return memory
    if memory == "auto":
        return choose_policy(spec, Machine.detect(device), scale=cached_scale(spec))
    if memory not in POLICIES:
        raise ZooError(f"Unknown memory policy '{memory}'; use 'auto' or one of {', '.join(POLICIES)}")
    return Policy(memory, "chosen by you")
