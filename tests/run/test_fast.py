"""Fast mode on the offline hub: each speed-up gives the eager image back, LoRAs still apply, presets resolve."""

import numpy as np
import pytest
import torch

import helpers
from helpers import ZooError, fast, generate, load_pipeline, styles
from helpers.base.loaded import record

from ..common import EXTRA, FAMILY_MODELS, px

pytestmark = pytest.mark.usefixtures("fresh_hub")

SMALL = {"seed": 3, "num_inference_steps": 2, "height": 64, "width": 64}


@pytest.mark.parametrize("key", FAMILY_MODELS.values())
def test_layout_and_fused_projections_give_the_eager_image(key):
    pipe = load_pipeline(key, device="cpu", fast="off")
    kw = {**SMALL, **EXTRA.get(key, {})}
    eager = px(generate(pipe, "a red fox", **kw).images[0])
    fast.apply(pipe, fast.FastMode(channels_last=True, fuse_qkv=True))
    fused = any(getattr(m, "fused_projections", False) for m in fast.denoiser(pipe).modules())
    # diffusers 0.42 fuses neither Z-Image's transformer (no fusing at all) nor Qwen-Image's attention
    unfused = ("ZImageTransformer2DModel", "QwenImageTransformer2DModel")
    assert fused == (type(fast.denoiser(pipe)).__name__ not in unfused)
    assert np.abs(px(generate(pipe, "a red fox", **kw).images[0]) - eager).max() <= 1  # the tolerance: one 8-bit level
    assert record(pipe).fast.describe() == ("channels-last, fused QKV" if fused else "channels-last")


def test_regional_compilation_gives_the_eager_image():
    pipe = load_pipeline("sd15", device="cpu", fast="off")
    eager = px(generate(pipe, "a red fox", **SMALL).images[0])
    mode = fast.apply(pipe, fast.PRESETS["max"])
    blocks = [m for m in pipe.unet.modules() if type(m).__name__ in fast.regions(pipe.unet)]
    assert blocks and all(m._compiled_call_impl is not None for m in blocks), "every repeated block is compiled"
    assert mode.compile == "regional"
    assert np.abs(px(generate(pipe, "a red fox", **SMALL).images[0]) - eager).max() <= 1
    torch._dynamo.reset()


def test_whole_denoiser_compilation_gives_the_eager_image():
    pipe = load_pipeline("flux-schnell", device="cpu", fast="off")
    eager = px(generate(pipe, "a red fox", **SMALL).images[0])
    fast.apply(pipe, fast.PRESETS["graphs"])  # CUDA graphs on a GPU; the same full-graph compile on a CPU
    assert pipe.transformer._compiled_call_impl is not None
    assert np.abs(px(generate(pipe, "a red fox", **SMALL).images[0]) - eager).max() <= 1
    torch._dynamo.reset()


def test_a_lora_loaded_after_fusing_still_changes_every_projection():
    plain = load_pipeline("sd15", device="cpu", fast="off")
    styles.load_lora(plain, "lcm-lora-sdv1-5")
    want = px(generate(plain, "a red fox", **SMALL).images[0])
    helpers.free()
    pipe = load_pipeline("sd15", device="cpu", fast=fast.FastMode(fuse_qkv=True))
    styles.load_lora(pipe, "lcm-lora-sdv1-5")  # unfuses first: fused layers would skip the LoRA's q/k/v
    assert not any(hasattr(m, "to_qkv") for m in pipe.unet.modules())
    assert np.abs(px(generate(pipe, "a red fox", **SMALL).images[0]) - want).max() <= 1


@pytest.mark.parametrize("key", FAMILY_MODELS.values())
def test_every_family_has_regions_to_compile(key):
    net = fast.denoiser(load_pipeline(key, device="cpu", fast="off"))
    assert any(type(m).__name__ in fast.regions(net) for m in net.modules())


def test_presets_resolve_per_device_and_memory_policy():
    assert fast.choose("auto", "cpu") == fast.PRESETS["off"]  # channels-last does not pay on a CPU
    assert fast.choose("auto", "cuda", "gpu") == fast.FastMode(channels_last=True)
    assert fast.choose("auto", "cuda", "model-offload") == fast.PRESETS["off"]
    assert fast.choose("max", "cuda", "model-offload").compile == "off"  # offload hooks and compiled graphs clash
    assert fast.choose(True, "cpu") == fast.PRESETS["max"] and fast.choose(False, "cuda") == fast.PRESETS["off"]
    with pytest.raises(ZooError, match="Unknown fast mode 'turbo'"):
        fast.choose("turbo", "cuda")
    with pytest.raises(ZooError, match="compile"):
        fast.choose(fast.FastMode(compile="everything"), "cuda")


def test_load_pipeline_records_the_mode_it_applied():
    pipe = load_pipeline("sd15", device="cpu")
    assert record(pipe).fast == fast.PRESETS["off"]  # "auto" on a CPU
    pipe = load_pipeline("sdxl-base", device="cpu", fast=fast.FastMode(channels_last=True))
    assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
