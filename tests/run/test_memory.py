"""Memory: policies for real machines, a cache that really frees, no black images."""

import gc
import warnings
import weakref

import numpy as np
import pytest
import torch
from PIL import Image

import helpers
from helpers import ZooError, generate, registry
from helpers.base.loaded import record
from helpers.run.cache import PipelineCache, module_bytes
from helpers.run.memory import (
    CUDA_OVERHEAD_GB,
    MACHINES,
    RAM_HEADROOM_GB,
    Machine,
    choose_policy,
    footprint,
    quantization_config,
)

from ..common import SMALL

REG = registry.default()
T4 = MACHINES["T4 16 GB, 12 GB RAM (Colab)"]
A10 = MACHINES["24 GB, 32 GB RAM"]
A100 = MACHINES["80 GB, 32 GB RAM"]
CPU16 = Machine("cpu", 0, 14.0, "laptop CPU")
MPS16 = Machine("mps", 16.0, 16.0, "M2 16 GB")


def _policy(key, machine, **kw):
    p = choose_policy(REG.get(key), machine, **kw)
    return p.name + (f"+{p.quantize}" if p.quantize else "")


@pytest.mark.parametrize(
    "key, machine, expected",
    [
        ("sd15", T4, "gpu"),
        ("sdxl-base", T4, "gpu"),
        ("sd3-medium", T4, "gpu+nf4"),  # 15.5 GB of weights; 12 GB of RAM cannot hold them for offloading
        ("sd3-medium", MACHINES["16 GB, 32 GB RAM"], "model-offload"),
        ("sd3-medium", A10, "gpu"),
        ("flux-dev", T4, "gpu+nf4"),
        ("flux-dev", A10, "gpu+nf4"),  # 34 GB of bf16 weights: more than 30 GB of RAM for offloading
        ("flux-dev", A100, "gpu"),
        ("sd35-large", T4, "gpu+nf4"),
        ("sd35-large", A100, "gpu"),
        ("sd15", CPU16, "cpu"),
        ("sdxl-base", MPS16, "gpu"),
    ],
)
def test_policy_for_simulated_machines(key, machine, expected):
    assert _policy(key, machine) == expected


def test_without_quantization_the_big_ones_offload_or_stream():
    assert _policy("flux-dev", Machine("cuda", 22.5, 60.0), quantize=False) == "group-offload"
    assert _policy("flux-dev", Machine("cuda", 30.0, 60.0), quantize=False) == "model-offload"
    with pytest.raises(ZooError, match=r"'flux-dev' does not fit.*needs .*GB.*11 GB of RAM.*bitsandbytes"):
        choose_policy(REG.get("flux-dev"), T4, quantize=False)


def test_too_big_names_the_numbers_and_the_options():
    with pytest.raises(ZooError, match=r"'sdxl-base' does not fit this machine: it needs 19 GB of RAM.*14 GB free"):
        choose_policy(REG.get("sdxl-base"), CPU16)
    with pytest.raises(ZooError, match=r"'flux-dev'.*unified memory.*smaller model"):
        choose_policy(REG.get("flux-dev"), MPS16)


@pytest.mark.parametrize("machine", [*MACHINES.values(), CPU16, MPS16], ids=lambda m: m.name)
def test_no_policy_needs_more_memory_than_the_machine_has(machine):
    for spec in REG.models.values():
        try:
            p = choose_policy(spec, machine)
        except ZooError:
            continue
        assert p.ram_gb + RAM_HEADROOM_GB <= machine.ram_gb or p.ram_gb == 0, (spec.key, p)
        if machine.device == "cuda":
            assert p.gpu_gb + CUDA_OVERHEAD_GB <= machine.gpu_gb, (spec.key, p)


def test_big_images_tile_the_vae():
    assert not choose_policy(REG.get("sdxl-base"), A100).vae_tiling
    assert choose_policy(REG.get("sdxl-base"), A100, height=2048, width=2048).vae_tiling


def test_quantization_config_names_the_big_components():
    pytest.importorskip("bitsandbytes")
    config = quantization_config(REG.get("flux-dev"), torch.bfloat16)
    assert set(config.components_to_quantize) == {"transformer", "text_encoder_2"}


def test_policy_is_printed_and_can_be_overridden(offline_hub_dir, capsys):
    pipe = helpers.load_pipeline("sd15", device="cpu")
    assert record(pipe).policy.name == "cpu" and "[sd15] memory: cpu: no GPU" in capsys.readouterr().out
    pipe = helpers.load_pipeline("sd15", device="cpu", memory="gpu")
    assert record(pipe).policy.reason == "chosen by you"
    with pytest.raises(ZooError, match="Unknown memory policy 'max'"):
        helpers.load_pipeline("sd15", device="cpu", memory="max")


# --- the cache -------------------------------------------------------------------------------------


@pytest.fixture
def cache(offline_hub_dir):
    helpers.free()
    c = PipelineCache()
    yield c
    c.evict()


def test_load_once_and_share_weights_across_tasks(cache):
    a = cache.get("sd15", device="cpu")
    assert cache.get("sd15", device="cpu") is a
    i2i = cache.get("sd15", "img2img", device="cpu")
    assert type(i2i).__name__ == "StableDiffusionImg2ImgPipeline" and i2i.unet is a.unet and i2i.vae is a.vae
    assert cache.keys() == ["sd15"]


def test_lru_eviction_within_budget_and_objects_die(cache):
    size = module_bytes(cache.get("sd15", device="cpu"))
    cache.device_budget_gb = 2.5 * size / 2**30  # room for two models of this size
    unet = weakref.ref(cache.get("sd15", device="cpu").unet)
    cache.get("sd14", device="cpu")
    cache.get("sd15", device="cpu")  # sd15 is now the most recently used
    cache.get("dreamshaper-8", device="cpu")
    assert cache.keys() == ["sd15", "dreamshaper-8"]
    assert unet() is not None
    cache.get("openjourney", device="cpu")
    gc.collect()
    assert "sd15" not in cache.keys() and unet() is None, "an evicted model is garbage-collected"


def test_free_releases_everything_including_derived_pipelines(offline_hub_dir):
    helpers.free()
    pipe = helpers.get_pipeline("sd15", device="cpu")
    derived = helpers.get_pipeline("sd15", "inpaint", device="cpu")
    refs = [weakref.ref(pipe), weakref.ref(derived), weakref.ref(pipe.unet), weakref.ref(pipe.text_encoder)]
    result = generate("sd15", "a cat", seed=1, **SMALL)
    del pipe, derived
    helpers.free()
    assert all(r() is None for r in refs), "no reference survives in the cache, derived pipelines or results"
    assert result.images[0].size == (64, 64)


def _live_tensor_bytes() -> int:
    """Bytes of the CPU storages that live tensors hold, each storage once: torch's side of tracemalloc."""
    seen, total = set(), 0
    for obj in gc.get_objects():
        try:
            tensor = isinstance(obj, torch.Tensor) and obj.device.type == "cpu"
        except ReferenceError:  # a weak proxy whose object is gone (the libraries keep some): no storage
            continue
        if tensor:
            storage = obj.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
    return total


@pytest.mark.parametrize("kept", [False, True], ids=["released", "kept-referenced"])
def test_the_weights_memory_returns_after_free(offline_hub_dir, kept):
    """Real (tiny) pipeline weights, loaded and freed through the cache: their bytes come back, unless something
    still holds the pipeline, which this measure sees (the second case: proof that it would catch a leak)."""
    helpers.free()
    gc.collect()
    before = _live_tensor_bytes()
    pipe = helpers.get_pipeline("sd15", device="cpu")
    weights = module_bytes(pipe)
    assert _live_tensor_bytes() - before >= weights > 2**19
    held = [pipe] if kept else []
    del pipe
    helpers.free()
    left = _live_tensor_bytes() - before
    if kept:
        assert left >= weights, "a pipeline still referenced keeps its weights, and the measure shows them"
    else:
        assert left < 0.02 * weights, f"{left} of {weights} bytes of weights are still held after free()"
    del held


# --- no black images ---------------------------------------------------------------------------------


def test_sdxl_in_float16_gets_the_fp16_safe_vae(offline_hub_dir):
    fix = REG.vae("sdxl-vae-fp16-fix")
    assert fix.fp16_fix_for == ["sdxl"]
    pipe = helpers.load_pipeline("sdxl-base", device="cpu", dtype="float16")
    assert record(pipe).vae == "sdxl-vae-fp16-fix" and pipe.vae.dtype == torch.float16
    assert record(helpers.load_pipeline("sdxl-base", device="cpu")).vae == "", "float32 keeps the repo's own VAE"
    assert record(helpers.load_pipeline("playground-v2.5", device="cpu", dtype="float16")).vae == ""
    assert record(helpers.load_pipeline("sd15", device="cpu", dtype="float16")).vae == ""


def test_vae_overflow_is_caught_and_decoded_again_in_float32(offline_hub_dir):
    helpers.free()
    pipe = helpers.get_pipeline("sd15", device="cpu", dtype="float16")
    reference = generate(pipe, "a cat", seed=4, num_inference_steps=2, height=64, width=64).images[0]
    with torch.no_grad():
        pipe.vae.decoder.conv_in.weight.mul_(3e4)  # activations past float16's 65504: inf, then NaN
    calls = []
    pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    with pytest.warns(UserWarning, match=r"VAE overflowed in float16.*decoding again in float32\.$"):
        result = generate(pipe, "a cat", seed=4, num_inference_steps=2, height=64, width=64)
    assert not result.problems and len(calls) == 2, "only the decode is redone: one U-Net call per step"
    image = np.asarray(result.images[0]).astype(int)
    assert image.std() > 0 and not np.array_equal(image, np.asarray(reference))
    assert pipe.vae.dtype == torch.float16, "an SD 1.x pipeline cannot decode half latents in a float32 VAE"
    with pytest.warns(UserWarning, match=r"VAE overflowed"):  # so it decodes again each time, saying so
        again = generate(pipe, "a cat", seed=4, num_inference_steps=2, height=64, width=64)
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(result.images[0]))
    helpers.free()


def test_sdxl_overflow_with_the_real_fp16_fix_config_is_decoded_again(offline_hub_dir):
    helpers.free()
    pipe = helpers.get_pipeline("sdxl-base", device="cpu", dtype="float16")
    assert record(pipe).vae == "sdxl-vae-fp16-fix" and pipe.vae.config.force_upcast is False, "the real repo's config"
    kw = {"seed": 4, "num_inference_steps": 2, "height": 64, "width": 64}
    with torch.no_grad():
        pipe.vae.decoder.conv_in.weight.mul_(3e4)  # activations past float16's 65504: inf, then NaN
    calls = []
    pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    with pytest.warns(
        UserWarning, match=r"'sdxl-base': the VAE overflowed in float16.*float32, as it will from now on"
    ):
        result = generate(pipe, "a cat", **kw)
    assert not result.problems and len(calls) == 2, "only the decode is redone: one U-Net call per step"
    image = np.asarray(result.images[0]).astype(int)
    assert image.std() > 0 and image.max() > 0
    assert pipe.vae.config.force_upcast, "the pipeline upcasts by itself from now on"
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "error", message=".*VAE overflowed"
        )  # no second warning: the pipeline's own upcast now decodes in float32
        again = generate(pipe, "a cat", **kw)
    assert not again.problems and np.abs(np.asarray(again.images[0]).astype(int) - image).max() <= 1
    helpers.free()


def test_broken_output_is_reported_and_never_saved(offline_hub_dir, tmp_path):
    helpers.free()
    pipe = helpers.get_pipeline("sd15", device="cpu")
    with torch.no_grad():
        pipe.vae.decoder.conv_out.bias.fill_(float("nan"))
    with pytest.warns(UserWarning, match=r"image 0 \(seed 4\): NaN or all-black output.*not be saved"):
        result = generate(pipe, "a cat", seed=4, num_inference_steps=2, height=64, width=64)
    assert 0 in result.problems
    assert result.save(tmp_path) == [] and not list(tmp_path.iterdir())
    helpers.free()


def test_parking_again_reuses_the_host_copy_unless_a_tensor_changed(cache):
    from helpers.run.cache import _park, _tensors, _unpark

    cache.get("sd15", device="cpu")
    entry = next(iter(cache._entries.values()))
    pipe = next(iter(entry.pipes.values()))
    before = {id(t): t.detach().clone() for t in _tensors(pipe)}
    _park(entry)  # the first parking copies every tensor to the host
    first = {k: v[0] for k, v in entry.host.items()}
    _unpark(entry, "cpu")  # on a GPU machine: back to "cuda"; here the same moves between two CPU tensors
    w = pipe.unet.conv_in.weight
    w.data.add_(1.0)  # changed in place, as a fused LoRA does (no version bump through .data)
    pipe.vae.post_quant_conv.bias.data = pipe.vae.post_quant_conv.bias.data * 2  # replaced, as an upcast does
    _park(entry)
    reused = [k for k, v in entry.host.items() if v[0] is first[k]]
    assert len(reused) == len(first) - 2, "only the two changed tensors were copied again"
    assert entry.host[id(w)][0] is not first[id(w)] and torch.equal(w, before[id(w)] + 1)
    _unpark(entry, "cpu")
    for t in _tensors(pipe):
        if t is not w and t is not pipe.vae.post_quant_conv.bias:
            assert torch.equal(t, before[id(t)]), "every other tensor comes back bit for bit"


def test_controlnets_and_image_prompts_count_in_the_policy(offline_hub_dir, capsys):
    sdxl, gpu16 = REG.get("sdxl-base"), MACHINES["16 GB, 32 GB RAM"]
    extra = REG.ip_adapter("ip-adapter-sdxl").size.vram_gb  # its ViT-bigG encoder is 3.7 GB in float16
    assert choose_policy(sdxl, gpu16).name == "gpu"
    with_extras = choose_policy(sdxl, gpu16, extra_gb=extra)
    assert with_extras.name == "model-offload", "7 GB of SDXL and 4.4 GB of IP-Adapter do not fit in 14.7 GB"
    fp = footprint(sdxl)
    assert with_extras.gpu_gb == pytest.approx(fp.denoiser_gb + extra + fp.activations_gb), "they work beside the U-Net"
    assert with_extras.ram_gb == pytest.approx(fp.weights_gb + extra), "and wait in RAM with the rest"
    assert "the 9.5 GB denoiser and its ControlNets/adapters do" in with_extras.reason
    both = extra + REG.controlnet("canny-sdxl").size.vram_gb
    assert choose_policy(sdxl, gpu16, extra_gb=both).quantize == "nf4", "with a ControlNet too, only 4-bit fits"
    with pytest.raises(ZooError, match="does not fit"):
        choose_policy(sdxl, CPU16, extra_gb=extra)  # float32 on a 14 GB laptop: 2 x 11.4 GB
    helpers.free()
    kw = {**SMALL, "seed": 1}
    edges = helpers.control.preprocess(Image.new("RGB", (64, 64), (200, 200, 200)), "canny")
    generate("sd15", "a house", control={"canny-sd15": edges}, ip_adapter=edges, **kw)
    out = capsys.readouterr().out
    assert "[sd15] memory: cpu: " in out and "(counting canny-sd15, ip-adapter-sd15)" in out
    helpers.free()
