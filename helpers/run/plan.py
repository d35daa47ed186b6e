"""A plan per model and machine: every way diffusers can hold the model, what each costs, and the fastest that fits.

Each option is a way to store the weights (bf16, layerwise fp8, bitsandbytes NF4/int8, torchao int8/fp8, a
pre-quantized GGUF file from the registry's `gguf:` section) times a place to keep them (all on the GPU, model,
group or sequential offload). For each: GPU memory, peak system RAM while loading, download size and speed
relative to full precision on the GPU, all from the model's parts (`helpers.base.families` `parts_gb`, the entry's
`size`). Nothing that fits: a `ZooError` with the numbers and the nearest option, before anything is downloaded.

>>> from helpers import plan
>>> p = plan("flux-dev", gpu_gb=16, ram_gb=12.7)
>>> p.choice.label
'NF4 (bitsandbytes) transformer + T5, all on the GPU'
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..base.errors import ZooError
from ..base.families import FAMILIES
from ..zoo.registry import GgufSpec, ModelSpec, Registry
from ..zoo.registry import default as default_registry
from . import memory as memory_mod
from .memory import CUDA_OVERHEAD_GB, NF4_RATIO, RAM_HEADROOM_GB, Machine, Policy

# The largest file a load holds in RAM at once when weights go shard by shard to the GPU: diffusers and transformers
# save in shards of up to 10 GB (FLUX.1's transformer shards are 9.98 + 9.95 + 3.87 GB, see models.yaml).
SHARD_GB = 10.0
GROUP_GB = 0.5  # group/sequential offload: the blocks on the GPU at once (two leaf groups in flight with streams)

BLOG = "https://huggingface.co/blog/diffusers-quantization"


@dataclass(frozen=True)
class Method:
    """A way to store the weights: what it shrinks, how fast it runs, and what it needs."""

    key: str
    label: str
    denoiser_ratio: float  # stored size as a share of bf16 (a GGUF file: its size over the bf16 denoiser's)
    t5_ratio: float = 1.0  # the T5 encoder too, where the method quantizes it
    speed: float = 1.0  # seconds per image of bf16 on the GPU divided by this method's
    speed_source: str = "estimate"
    whole_in_ram: bool = False  # the bf16 denoiser passes through system RAM whole while loading
    cuda_only: bool = False
    min_capability: float = 0.0  # CUDA compute capability the method needs (fp8 kernels: 8.9)
    quality_rank: int = 0  # 0 = bf16; higher = fewer bits (breaks ties in speed)
    gguf: GgufSpec | None = None


METHODS = (
    Method("full", "full precision (the repo's bf16/fp16)", 1.0, speed_source="baseline"),
    Method("torchao-fp8", "fp8 weight-only (torchao) transformer", 0.5, speed=1.0,
           speed_source="estimate: fp8 weights upcast per matmul", whole_in_ram=True, cuda_only=True,
           min_capability=8.9, quality_rank=1),
    Method("layerwise-fp8", "fp8 storage, bf16 compute (layerwise casting) transformer", 0.5, speed=0.9,
           speed_source="estimate: each layer's weights are cast to bf16 as it runs",
           whole_in_ram=True, quality_rank=1),
    Method("torchao-int8", "int8 weight-only (torchao) transformer", 0.5, speed=0.9,
           speed_source="estimate: without torch.compile int8 weight-only dequantizes per matmul", whole_in_ram=True,
           quality_rank=2),
    Method("int8", "int8 (bitsandbytes) transformer + T5", 0.53, 0.53, speed=0.5,
           speed_source=f"estimate: {BLOG} measured 8-bit slower than bf16", cuda_only=True, quality_rank=2),
    Method("nf4", "NF4 (bitsandbytes) transformer + T5", NF4_RATIO, NF4_RATIO, speed=1.0,
           speed_source=f"{BLOG}: FLUX.1-dev on H100, 4-bit about as fast as bf16", cuda_only=True, quality_rank=3),
)  # fmt: skip
GGUF_SPEED = 0.6  # "about 65% longer than the full model (45 s v 27 s)" on an A40
GGUF_SPEED_SOURCE = "https://huggingface.co/ChrisGoringe/MixedQuantFlux: GGUF 45 s against 27 s for the full model"

# Where the weights live while generating: speed relative to all on the GPU, and where that figure comes from.
PLACEMENTS = {
    "gpu": (1.0, "baseline"),
    "model-offload": (0.9, "estimate: one component moves to the GPU at a time, once per generation"),
    "group-offload": (0.2, f"{BLOG}: fp8 + group offloading 58 s against 12 s for bf16 (FLUX.1-dev, H100)"),
    "sequential-offload": (0.1, "estimate: every layer moves to the GPU at every step"),
}

# Machines the README and the tests plan for: GPU memory and system RAM in GB, and the CUDA compute capability.
PROFILES = {
    "T4 16 GB, 12.7 GB RAM (Colab)": Machine("cuda", 16.0, 12.7, "T4 (Colab free)", capability=7.5),
    "24 GB, 32 GB RAM": Machine("cuda", 24.0, 32.0, "RTX 4090 / L4", capability=8.9),
    "80 GB, 64 GB RAM": Machine("cuda", 80.0, 64.0, "H100 80 GB", capability=9.0),
}


@dataclass(frozen=True)
class Option:
    """One way to run the model on the machine, with its costs."""

    method: Method
    placement: str
    gpu_gb: float  # peak GPU memory while generating, CUDA overhead included
    ram_gb: float  # peak system RAM while loading, the notebook's own RAM included
    download_gb: float
    speed: float  # relative to bf16 on the GPU
    fits: bool
    why: str  # what does not fit, or "" when it fits

    @property
    def key(self) -> str:
        """The name to ask for it by: `load_pipeline(..., plan=KEY)`."""
        return self.method.key if self.placement in ("gpu", "cpu") else f"{self.method.key}+{self.placement}"

    @property
    def label(self) -> str:
        where = {"gpu": "all on the GPU", "cpu": "on the CPU", "model-offload": "model offload",
                 "group-offload": "group offload (streams)", "sequential-offload": "sequential offload"}  # fmt: skip
        where = where[self.placement]
        return f"{self.method.label}, {where}"

    def policy(self, reason: str = "", vae_tiling: bool = False) -> Policy:
        """The memory policy that loads this option (`helpers.run.memory.apply`)."""
        quantize = None if self.method.key == "full" else self.method.key
        if self.method.gguf is not None:
            quantize = f"gguf:{self.method.gguf.key}"
        return Policy(self.placement, reason or self.label, vae_tiling, quantize, self.gpu_gb, self.ram_gb,
                      label=self.label, plan=self.key)  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """Every option for one model on one machine, and the one chosen."""

    model: str
    machine: Machine
    options: tuple[Option, ...]
    choice: Option | None
    reason: str

    def fitting(self) -> list[Option]:
        """The options that fit, fastest first: what the panels offer."""
        return sorted((o for o in self.options if o.fits), key=_rank)

    def option(self, key: str) -> Option:
        """The option named `key` ("nf4", "gguf-q4_k_s+model-offload", ...), fitting or not."""
        found = {o.key: o for o in self.options}
        if key not in found:
            raise ZooError(f"'{self.model}' has no plan '{key}'; its plans: {', '.join(found)}")
        return found[key]

    def table(self):
        """A pandas DataFrame: one row per option, the chosen one first, then the others that fit, fastest first."""
        import pandas as pd

        order = sorted(self.options, key=lambda o: (not o.fits, _rank(o)))
        rows = [{"plan": o.key, "how": o.label, "GPU GB": round(o.gpu_gb, 1), "RAM at load GB": round(o.ram_gb, 1),
                 "download GB": round(o.download_gb, 1), "speed vs bf16": o.speed, "fits": o.fits,
                 "chosen": o is self.choice, "why not": o.why, "speed from": _speed_source(o)}
                for o in order]  # fmt: skip
        return pd.DataFrame(rows).set_index("plan")

    def describe(self) -> str:
        """Lines for the terminal: the machine, the choice and why, then every option."""
        m = self.machine
        head = f"{self.model} on {m.name or m.device}: {m.gpu_gb:.1f} GB GPU, {m.ram_gb:.1f} GB RAM"
        lines = [head, f"plan: {self.choice.key if self.choice else 'none fits'}: {self.reason}", ""]
        rows = [("plan", "GPU GB", "RAM GB", "download GB", "speed", "fits")]
        for o in sorted(self.options, key=lambda o: (not o.fits, _rank(o))):
            mark = "*" if o is self.choice else ""
            rows.append((mark + o.key, f"{o.gpu_gb:.1f}", f"{o.ram_gb:.1f}", f"{o.download_gb:.1f}", f"{o.speed:.2f}",
                         "yes" if o.fits else "no: " + o.why))  # fmt: skip
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        sources = {o.method.key: o.method.speed_source for o in self.options}
        sources |= {p: src for p, (_, src) in PLACEMENTS.items() if any(o.placement == p for o in self.options)}
        lines += ["", "speed factors:"] + [f"  {k}: {v}" for k, v in sources.items() if v != "baseline"]
        return "\n".join(lines)


def _rank(o: Option):
    return (-o.speed, o.method.quality_rank, o.gpu_gb)


def _speed_source(o: Option) -> str:
    placement = PLACEMENTS.get(o.placement, ("", "baseline"))[1]
    return o.method.speed_source if o.placement == "gpu" else f"{o.method.speed_source}; {placement}"


def methods(spec: ModelSpec, registry: Registry | None = None) -> list[Method]:
    """The storage methods for a model: the generic ones and one per GGUF file of the registry's `gguf:` section."""
    reg = registry or default_registry()
    denoiser = memory_mod.footprint(spec).denoiser_gb
    out = list(METHODS)
    for g in reg.gguf_for(spec.key):
        quality = 1 if g.quant.upper().startswith("Q8") else 2 if g.quant.upper()[:2] in ("Q5", "Q6") else 3
        out.append(Method(f"gguf-{g.quant.lower()}", f"{g.quant} GGUF transformer", g.size_gb / denoiser,
                          speed=GGUF_SPEED, speed_source=GGUF_SPEED_SOURCE, quality_rank=quality, gguf=g))  # fmt: skip
    return out


def option(spec: ModelSpec, method: Method, placement: str, machine: Machine, extra_gb: float = 0.0,
           height: int | None = None, width: int | None = None) -> Option:  # fmt: skip
    """One option's costs: the memory arithmetic, in one place."""
    fp = memory_mod.footprint(spec, height, width, extra_gb=extra_gb)
    t5 = FAMILIES[spec.family].t5_gb
    d = fp.denoiser_gb * method.denoiser_ratio
    t = fp.text_gb - t5 + t5 * method.t5_ratio
    v, a = fp.vae_gb, fp.activations_gb
    weights = d + t + v + extra_gb
    gpu = CUDA_OVERHEAD_GB + a + {
        "gpu": weights,
        "model-offload": max(d + extra_gb, t, v),
        "group-offload": GROUP_GB,
        "sequential-offload": GROUP_GB,
    }[placement]
    resident = 0.0 if placement == "gpu" else weights  # offloaded weights wait in system RAM
    biggest = max(fp.denoiser_gb, fp.text_gb, v)
    passing = fp.denoiser_gb if method.whole_in_ram else d if method.gguf else min(SHARD_GB, biggest)
    ram = RAM_HEADROOM_GB + max(resident, passing)
    download = spec.size.download_gb
    if method.gguf is not None:  # the GGUF file replaces the repo's denoiser folder
        download = max(download - fp.denoiser_gb, 0.0) + method.gguf.size_gb
    speed = round(method.speed * PLACEMENTS[placement][0], 3)
    why = []
    if method.cuda_only and machine.device != "cuda":
        why.append("needs a CUDA GPU")
    if machine.capability < method.min_capability:
        why.append(f"needs compute capability {method.min_capability:g} (this GPU: {machine.capability:g})")
    if gpu > machine.gpu_gb:
        why.append(f"{gpu:.1f} GB GPU > {machine.gpu_gb:g}")
    if ram > machine.ram_gb:
        if method.whole_in_ram and passing >= resident:
            hold = "the whole half-precision denoiser passes through RAM"
        else:
            hold = "offloaded weights wait in RAM" if resident >= passing else f"a {passing:.1f} GB file at a time"
        why.append(f"{ram:.1f} GB RAM at load > {machine.ram_gb:g} ({hold})")
    return Option(method, placement, gpu, ram, download, speed, not why, "; ".join(why))


def plan(key: str | ModelSpec, gpu_gb: float | None = None, ram_gb: float | None = None,
         capability: float | None = None, machine: Machine | None = None, registry: Registry | None = None,
         extra_gb: float = 0.0, height: int | None = None, width: int | None = None,
         refuse: bool = False) -> Plan:  # fmt: skip
    """The plan for a model on a machine (this one, or `gpu_gb`/`ram_gb` of a CUDA GPU): every option and the choice.

    `refuse=True` raises a `ZooError` with the numbers and the nearest option when nothing fits.

    >>> plan("flux-dev", gpu_gb=16, ram_gb=12.7).choice.key
    'nf4'
    """
    reg = registry or default_registry()
    spec = key if isinstance(key, ModelSpec) else reg.get(key)
    if machine is None:
        if gpu_gb is not None:
            machine = Machine("cuda", gpu_gb, ram_gb if ram_gb is not None else 12.7, "a CUDA GPU",
                              capability=capability if capability is not None else 8.0)  # fmt: skip
        else:
            machine = Machine.detect()
            if ram_gb is not None:
                machine = replace(machine, ram_gb=ram_gb)
    if machine.device != "cuda":
        return _non_cuda(spec, machine, refuse, extra_gb, height, width)
    options = tuple(
        option(spec, m, p, machine, extra_gb, height, width) for m in methods(spec, reg) for p in PLACEMENTS
    )
    fitting = sorted((o for o in options if o.fits), key=_rank)
    if fitting:
        best = fitting[0]
        return Plan(spec.key, machine, options, best, _why(best, options, machine))
    nearest = min(options, key=lambda o: _shortfall(o, machine))
    reason = (
        f"nothing fits {machine.gpu_gb:g} GB of GPU memory and {machine.ram_gb:g} GB of RAM; nearest: "
        f"{nearest.label} ({nearest.key}) needs {nearest.gpu_gb:.1f} GB GPU and {nearest.ram_gb:.1f} GB RAM at load"
    )
    if refuse:
        raise ZooError(
            f"'{spec.key}' does not fit this machine: {reason}. Options: a machine with more memory or RAM, a smaller "
            "model of the family, or a GGUF file of it in models.yaml's gguf: section."
        )
    return Plan(spec.key, machine, options, None, reason)


def _shortfall(o: Option, machine: Machine) -> float:
    unusable = (o.method.cuda_only and machine.device != "cuda") or machine.capability < o.method.min_capability
    return 1e6 * unusable + max(o.gpu_gb - machine.gpu_gb, 0) + max(o.ram_gb - machine.ram_gb, 0)


def _why(best: Option, options, machine: Machine) -> str:
    """One line: why this option, naming the faster ones that do not fit."""
    faster = [o for o in options if _rank(o) < _rank(best) and not o.fits and o.placement == "gpu"]
    costs = f"{best.gpu_gb:.1f} GB of {machine.gpu_gb:g} GB GPU, {best.ram_gb:.1f} GB of {machine.ram_gb:g} GB RAM"
    costs += " at load"
    if not faster:
        return f"{best.label}: the fastest way, and it fits ({costs})"
    miss = faster[0]
    return f"{best.label}: the fastest that fits ({costs}); {miss.key} would not ({miss.why})"


def _non_cuda(spec, machine, refuse, extra_gb, height, width) -> Plan:
    """CPU and Apple MPS: one option, the memory policy (`helpers.run.memory.choose_policy`)."""
    try:
        p = memory_mod.choose_policy(spec, machine, height, width, quantize=False, extra_gb=extra_gb,
                                     scale=memory_mod.cached_scale(spec))  # fmt: skip
    except ZooError as e:
        if refuse:
            raise
        return Plan(spec.key, machine, (), None, str(e))
    method = Method("full", "float32 on the CPU" if machine.device == "cpu" else "half precision", 1.0)
    o = Option(method, p.name, p.gpu_gb, p.ram_gb + RAM_HEADROOM_GB, spec.size.download_gb, 1.0, True, "")
    return Plan(spec.key, machine, (o,), o, p.reason)


def policy(spec: ModelSpec, device: str, plan_key: str | None = None, registry: Registry | None = None,
           extra_gb: float = 0.0) -> Policy:  # fmt: skip
    """The memory policy `load_pipeline(memory="auto")` uses: the plan's choice, or the option named `plan_key`."""
    machine = Machine.detect(device)
    if machine.device != "cuda" and plan_key is None:
        return memory_mod.choose_policy(spec, machine, scale=memory_mod.cached_scale(spec), extra_gb=extra_gb)
    if machine.device != "cuda":  # a plan asked for by name on a CPU: its storage method, the weights on the CPU
        method = {m.key: m for m in methods(spec, registry)}.get(plan_key.split("+")[0])
        if method is None:
            known = [m.key for m in methods(spec, registry)]
            raise ZooError(f"'{spec.key}' has no plan '{plan_key}'; its plans: {', '.join(known)}")
        if method.cuda_only:
            raise ZooError(f"plan '{plan_key}' of '{spec.key}' needs a CUDA GPU (bitsandbytes); on {machine.device} "
                           "use torchao-int8, layerwise-fp8 or a GGUF plan")  # fmt: skip
        where = "cpu" if machine.device == "cpu" else "gpu"
        o = Option(method, where, 0.0, 0.0, spec.size.download_gb, method.speed, True, "")
        return o.policy(f"{o.label}, chosen by you")
    scale = memory_mod.cached_scale(spec)
    if scale < 1.0:  # a tiny stand-in: plan it as the small model it is
        machine = replace(machine, gpu_gb=machine.gpu_gb / scale, ram_gb=machine.ram_gb / scale)
    p = plan(spec, machine=machine, registry=registry, extra_gb=extra_gb / scale if scale < 1.0 else extra_gb,
             refuse=plan_key is None)  # fmt: skip
    if plan_key is None:
        return p.choice.policy(p.reason)
    o = p.option(plan_key)
    return o.policy(f"{o.label}, chosen by you" + ("" if o.fits else f" (the plan says it does not fit: {o.why})"))


def policy_for(spec: ModelSpec, device: str, memory, plan_key: str | None = None, registry=None) -> Policy:
    """`load_pipeline`'s memory policy: `"auto"` is the plan's choice; `plan_key` one of its options; a policy name
    (or a `Policy`) as `helpers.run.memory.policy_for` says, with the named plan's storage where both are given."""
    if isinstance(memory, Policy) or (memory != "auto" and not plan_key):
        return memory_mod.policy_for(spec, device, memory)
    chosen = policy(spec, device, plan_key, registry)
    if memory != "auto" and memory != chosen.name:  # a plan's storage with the placement the user named
        memory_mod.policy_for(spec, device, memory)  # an unknown name fails here, with the known ones
        return replace(chosen, name=memory, reason=f"{chosen.reason}; placement {memory} chosen by you")
    return chosen


def runnable(model: str | ModelSpec, keys: list[str], device: str = "auto", registry=None) -> list[str]:
    """The plans among `keys` that this machine can run: without CUDA, a bitsandbytes plan (NF4, int8) becomes
    torchao int8 weight-only, the quantization that runs on a CPU.

    >>> runnable("flux-dev", ["gguf-q4_k_s", "nf4"], device="cpu")
    ['gguf-q4_k_s', 'torchao-int8']
    """
    reg = registry or default_registry()
    spec = model if isinstance(model, ModelSpec) else reg.get(model)
    known = {m.key: m for m in methods(spec, reg)}
    cuda = Machine.detect(device).device == "cuda"
    out = []
    for key in keys:
        method = known.get(key.split("+")[0])
        if method is None:
            raise ZooError(f"'{spec.key}' has no plan '{key}'; its plans: {', '.join(known)}")
        swap = "torchao-int8" if method.cuda_only and not cuda else key
        if swap not in out:
            out.append(swap)
    return out


def table(models, profiles: dict | None = None, registry: Registry | None = None) -> str:
    """Markdown: each model's plan on each machine profile (the README's table)."""
    profiles = profiles or PROFILES
    names = list(profiles)
    lines = ["| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for spec in models:
        cells = []
        for n in names:
            p = plan(spec, machine=profiles[n], registry=registry)
            cells.append(p.choice.key if p.choice else "does not fit")
        lines.append(f"| `{spec.key}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def here(models, machine: Machine | None = None, registry: Registry | None = None):
    """A pandas DataFrame: how each model runs on this machine (its plan, or why nothing fits) and on a Colab T4.

    >>> here([get("z-image-turbo"), get("sdxl-base")])["Colab T4"].tolist()
    ['nf4', 'full']
    """
    import pandas as pd

    machine = machine or Machine.detect()
    t4 = next(iter(PROFILES.values()))
    rows = []
    for spec in models:
        mine, colab = plan(spec, machine=machine, registry=registry), plan(spec, machine=t4, registry=registry)
        rows.append({"model": spec.key, "family": spec.family,
                     "this machine": mine.choice.label if mine.choice else "does not fit", "why": mine.reason,
                     "Colab T4": colab.choice.key if colab.choice else "does not fit"})  # fmt: skip
    return pd.DataFrame(rows).set_index("model")


__all__ = ["plan", "Plan", "Option", "Method", "PROFILES", "METHODS", "PLACEMENTS", "option", "methods", "table",
           "runnable", "here"]  # fmt: skip
