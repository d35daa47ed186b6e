"""Fast-mode options beyond the presets: attention backends, step caching, regional compilation of transformers,
and compiled artifacts that a new process loads instead of compiling."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from helpers import fast, generate, load_pipeline
from helpers.base.loaded import record
from helpers.run import attention, stepcache

from .common import px
from .environment import ROOT

pytestmark = pytest.mark.usefixtures("fresh_hub")

SMALL = {"seed": 3, "num_inference_steps": 8, "height": 64, "width": 64}


def test_an_unavailable_attention_backend_falls_back_with_one_line_saying_why(capsys):
    pipe = load_pipeline("flux-schnell", device="cpu", fast="off")
    capsys.readouterr()
    mode = fast.apply(pipe, fast.FastMode(attention="flash"))
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["[flux-schnell] attention: default (flash: _flash_3 needs a CUDA GPU, this model is on cpu; "
                   "flash needs a CUDA GPU, this model is on cpu)"]  # fmt: skip
    assert mode.attention == "flash" and record(pipe).fast.describe() == "flash attention"
    backends = {getattr(m.processor, "_attention_backend", None) for m in pipe.transformer.modules()
                if hasattr(m, "processor")}  # fmt: skip
    assert backends == {None}, "nothing was set: diffusers' default stays"
    sd = load_pipeline("sd15", device="cpu", fast="off")
    assert attention.choose(sd.unet, "best") == ("default", "UNet2DConditionModel calls PyTorch's attention itself, "
                                                 "not diffusers' backends")  # fmt: skip


def test_a_usable_backend_is_set_on_every_attention_layer():
    pipe = load_pipeline("flux-schnell", device="cpu", fast="off")
    assert attention.why_not("native", torch.device("cpu")) is None
    attention.CANDIDATES["test-native"] = ("native",)
    try:
        assert attention.use(pipe.transformer, "test-native") == "native"
    finally:
        del attention.CANDIDATES["test-native"]
    backends = {getattr(m.processor, "_attention_backend", None) for m in pipe.transformer.modules()
                if hasattr(m, "processor")}  # fmt: skip
    assert {b.value for b in backends} == {"native"}


@pytest.mark.parametrize("mode", ["first-block", "taylorseer", "magcache", "fastercache"])
def test_each_cache_mode_hooks_the_transformer_and_changes_little(mode):
    pipe = load_pipeline("flux-schnell", device="cpu", fast="off")
    plain = px(generate(pipe, "a red fox", **SMALL).images[0])
    used = fast.apply(pipe, fast.FastMode(cache=mode))
    assert used.cache == mode and pipe.transformer.is_cache_enabled
    cached = px(generate(pipe, "a red fox", **SMALL).images[0])
    assert np.abs(cached - plain).mean() < 8, "a cache reuses work: the picture stays the picture"
    fast.apply(pipe, fast.FastMode())  # no cache asked: none left behind
    assert not pipe.transformer.is_cache_enabled
    assert np.abs(px(generate(pipe, "a red fox", **SMALL).images[0]) - plain).max() == 0, "the uncached image again"


def test_a_cache_mode_falls_back_where_the_model_has_no_hooks(capsys):
    pipe = load_pipeline("sd15", device="cpu", fast="off")
    capsys.readouterr()
    assert fast.apply(pipe, fast.FastMode(cache="first-block")).cache == "off"
    assert capsys.readouterr().out.strip() == (
        "[sd15] cache: off (first-block: UNet2DConditionModel has no diffusers cache hooks "
        "(transformer models with CacheMixin do))"
    )


def test_auto_never_chooses_a_cache_mode_beyond_the_quality_bound():
    good = {"speedup": 1.4, "dino_similarity": 0.97, "clip_drop": 0.002, "pick_drop": 0.004}
    fastest_but_worse = {"speedup": 2.1, "dino_similarity": 0.90, "clip_drop": 0.002, "pick_drop": 0.004}
    assert stepcache.auto({"first-block": good, "taylorseer": fastest_but_worse}) == "first-block"
    assert stepcache.auto({"taylorseer": fastest_but_worse}) == "off"
    assert stepcache.auto({"first-block": {"speedup": 1.4, "dino_similarity": 0.99}}) == "off", "half measured"
    assert stepcache.auto({"first-block": {**good, "pick_drop": 0.05}}) == "off"
    assert stepcache.auto({}) == "off" and stepcache.auto() == "off", "nothing measured on a GPU yet: no cache"
    flux = load_pipeline("flux-schnell", device="cpu", fast="off").transformer
    assert fast.choose("auto", "cuda", "gpu", flux).cache == "off"


def test_presets_compile_transformers_by_regions():
    flux = load_pipeline("flux-schnell", device="cpu", fast="off").transformer
    unet = load_pipeline("sd15", device="cpu", fast="off").unet
    assert fast.choose("graphs", "cuda", "gpu", flux).compile == "regional"
    assert fast.choose("graphs", "cuda", "gpu", unet).compile == "full"
    assert fast.choose(fast.FastMode(compile="full"), "cuda", "gpu", flux).compile == "full", "asked for: as asked"
    assert fast.is_transformer(flux) and not fast.is_transformer(unet)


def test_regional_compilation_of_a_transformer_uses_diffusers_repeated_blocks():
    pipe = load_pipeline("flux-schnell", device="cpu", fast="off")
    eager = px(generate(pipe, "a red fox", **{**SMALL, "num_inference_steps": 2}).images[0])
    fast.apply(pipe, fast.FastMode(compile="regional", compile_cache=False))
    blocks = [m for m in pipe.transformer.modules() if type(m).__name__ in pipe.transformer._repeated_blocks]
    assert blocks and all(m._compiled_call_impl is not None for m in blocks)
    assert np.abs(px(generate(pipe, "a red fox", **{**SMALL, "num_inference_steps": 2}).images[0]) - eager).max() <= 1
    torch._dynamo.reset()


WORKER = textwrap.dedent("""
    import json, sys
    import torch
    from torch._dynamo.utils import counters
    from helpers.run import compilecache
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(8, 4, 1))
    net.compile(fullgraph=True, dynamic=False)
    loaded = compilecache.attach(net, "tiny-net") if sys.argv[1] == "cache" else 0
    with torch.no_grad():
        net(torch.randn(2, 4, 8, 8))
    print(json.dumps({"loaded": loaded, **counters["inductor"]}))
""")


def _compile_in_a_new_process(tmp_path, n: int, use_cache: bool) -> dict:
    # A fresh inductor cache folder per process: only the artifacts saved by compilecache can carry over.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SDZOO_CACHE": str(tmp_path / "user-cache"),
           "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / f"inductor-{n}")}  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", WORKER, "cache" if use_cache else "plain"], env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_the_compiled_artifacts_instead_of_compiling(tmp_path):
    first = _compile_in_a_new_process(tmp_path, 1, True)
    assert first["loaded"] == 0 and first.get("fxgraph_cache_miss", 0) >= 1, first
    saved = list((tmp_path / "user-cache" / "compiled").glob("*/tiny-net/2x4x8x8.bin"))
    assert len(saved) == 1 and "torch-" in saved[0].parent.parent.name and "triton-" in saved[0].parent.parent.name
    second = _compile_in_a_new_process(tmp_path, 2, True)
    assert second["loaded"] == 1 and second.get("fxgraph_cache_hit", 0) >= 1, second
    assert second.get("fxgraph_cache_miss", 0) == 0, "the graph came from the saved artifacts, not inductor"
    control = _compile_in_a_new_process(tmp_path, 3, False)
    assert control.get("fxgraph_cache_miss", 0) >= 1 and control.get("fxgraph_cache_hit", 0) == 0, control
