"""The 2026 DiT families at full size with random weights: Z-Image, FLUX.2 [klein] and Qwen-Image transformers.

They are not registry entries yet, and only their transformers' configs are known well enough (read
`real-configs/2026/SOURCES.md`), so they are benchmarked as denoisers: one transformer call per step, at a given
image size, text length and batch, with the inputs the pipelines give them. That is where nearly all of their time
goes; text encoding happens once per prompt and the VAE once per image.

    net = build("flux2-klein-4b", "../shared/real-configs", device="cuda")
    net(**inputs(net, 1024, 1024))
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import diffusers
import torch

from ..base.devices import default_dtype, peak_gb, reset_peak, synchronize
from ..base.errors import ZooError
from ..run import attention as attention_mod
from ..run import compilecache, fast

# Benchmark name -> the transformer config under the 2026 folder; all three run in bfloat16.
CONFIGS = {
    "z-image-turbo": "Tongyi-MAI__Z-Image-Turbo/transformer/config.json.RECONSTRUCTED",
    "flux2-klein-4b": "black-forest-labs__FLUX.2-klein-4B/transformer/config.json",
    "qwen-image": "Qwen__Qwen-Image/transformer/config.json",
}
TEXT_TOKENS = (
    256  # prompt tokens after padding, as the pipelines' default max_sequence_length (Qwen-Image: ~the prompt)
)


def config(name: str, config_dir: str | Path, **overrides) -> dict:
    """The transformer config of `name` from `config_dir` (the real-configs folder or its `2026/`), with overrides."""
    if name not in CONFIGS:
        raise ZooError(f"Unknown DiT benchmark {name!r}; use one of {', '.join(CONFIGS)}")
    root = Path(config_dir).expanduser()
    tried = [root / CONFIGS[name], root / "2026" / CONFIGS[name]]
    path = next((p for p in tried if p.is_file()), None)
    if path is None:
        raise ZooError(f"No transformer config for {name!r} at {' or '.join(map(str, tried))}: point --config-dir at "
                       "the real-configs folder (with its 2026/ folder)")  # fmt: skip
    return json.loads(path.read_text()) | overrides


def build(name: str, config_dir: str | Path, device: str = "cpu", dtype=torch.bfloat16, **overrides):
    """The transformer of `name` with random weights (on "meta": shapes only, no memory)."""
    cfg = config(name, config_dir, **overrides)
    cls = getattr(diffusers, cfg["_class_name"])
    with torch.device(device), default_dtype(dtype):
        net = cls.from_config(cfg)
    return net.eval().requires_grad_(False)


def inputs(net, height: int = 1024, width: int = 1024, batch: int = 1, text: int = TEXT_TOKENS, seed: int = 0) -> dict:
    """One denoising step's inputs for `net` at an image size, as its pipeline makes them (random values)."""
    p = next(net.parameters())
    g = torch.Generator("cpu").manual_seed(seed)
    cfg = net.config

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(p.device, p.dtype)

    h, w = height // 16, width // 16  # latents: VAE / 8, then 2x2 patches (FLUX.2: VAE / 16, 1x1)
    t = torch.full((batch,), 0.5, device=p.device, dtype=p.dtype)
    name = type(net).__name__
    if name == "Flux2Transformer2DModel":  # 4-axis positions (t, h, w, l), as Flux2Pipeline makes them
        img_ids = torch.cartesian_prod(torch.arange(1), torch.arange(h), torch.arange(w), torch.arange(1))
        txt_ids = torch.cartesian_prod(torch.arange(1), torch.arange(1), torch.arange(1), torch.arange(text))
        return dict(hidden_states=randn(batch, h * w, cfg.in_channels),
                    encoder_hidden_states=randn(batch, text, cfg.joint_attention_dim), timestep=t,
                    img_ids=img_ids.expand(batch, -1, -1).to(p.device),
                    txt_ids=txt_ids.expand(batch, -1, -1).to(p.device), return_dict=False)  # fmt: skip
    if name == "QwenImageTransformer2DModel":
        return dict(hidden_states=randn(batch, h * w, cfg.in_channels),
                    encoder_hidden_states=randn(batch, text, cfg.joint_attention_dim),
                    encoder_hidden_states_mask=torch.ones(batch, text, dtype=torch.long, device=p.device),
                    timestep=t, img_shapes=[[(1, h, w)]] * batch, return_dict=False)  # fmt: skip
    if name == "ZImageTransformer2DModel":
        return dict(x=[randn(cfg.in_channels, 1, height // 8, width // 8) for _ in range(batch)], t=t,
                    cap_feats=[randn(text, cfg.cap_feat_dim) for _ in range(batch)], return_dict=False)  # fmt: skip
    raise ZooError(f"No benchmark inputs are known for {name}")


def parameters(net) -> int:
    return sum(p.numel() for p in net.parameters())


def measure(name: str, config_dir, variant: str = "eager", device: str = "cuda", steps: int = 10, height: int = 1024,
            width: int = 1024, batch: int = 1, overrides: dict | None = None,
            attention: str = "default") -> dict:  # fmt: skip
    """Build `name` on `device`, compile it as `variant` ("eager", "regional", "full"); time a first and more steps."""
    dev = torch.device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    reset_peak(dev)
    start = time.perf_counter()
    net = build(name, config_dir, device, dtype, **(overrides or {}))
    out = {"model": name, "variant": variant, "parameters": parameters(net), "build_s": time.perf_counter() - start}
    # Before compiling: the backend is part of the graph.
    out["attention_asked"], out["attention"] = attention, attention_mod.use(net, attention, name)
    if variant == "regional":
        fast.compile_regions(net)
    elif variant == "full":
        fast._raise_recompile_limit()
        net.compile(fullgraph=True, dynamic=False)
    if variant != "eager":
        out["artifacts_loaded"] = compilecache.attach(net, f"dit-{name}-{variant}-{dtype}".replace("torch.", ""))
    x = inputs(net, height, width, batch)
    with torch.no_grad():
        begin = time.perf_counter()
        net(**x)
        synchronize(dev)
        out["first_step_s"] = time.perf_counter() - begin
        begin = time.perf_counter()
        for _ in range(steps):
            net(**x)
        synchronize(dev)
    seconds = time.perf_counter() - begin
    out |= {"steps_per_s": steps / seconds, "step_s": seconds / steps, "peak_memory_gb": peak_gb(dev),
            "size": f"{width}x{height}", "batch": batch, "text_tokens": TEXT_TOKENS}  # fmt: skip
    out["compile_s"] = max(0.0, out["first_step_s"] - out["step_s"]) if variant != "eager" else None
    return out


if __name__ == "__main__":  # `python -m helpers.bench.dit JSON`: one measurement in this process, JSON last line
    import sys

    job = json.loads(sys.argv[1])
    print("\n" + json.dumps(measure(**job)))
