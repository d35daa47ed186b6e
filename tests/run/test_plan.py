"""The plan: every way a model fits a machine, checked against the memory arithmetic; GGUF, torchao and layerwise
plans that really load and run on the CPU."""

import numpy as np
import pytest
import torch

from helpers import ZooError, generate, registry
from helpers.base.families import FAMILIES
from helpers.run import plan as plan_mod
from helpers.run.memory import CUDA_OVERHEAD_GB, NF4_RATIO, RAM_HEADROOM_GB, Machine
from helpers.run.plan import PLACEMENTS, PROFILES, SHARD_GB, plan

REG = registry.default()
T4 = PROFILES["T4 16 GB, 12.7 GB RAM (Colab)"]


def _arithmetic(spec, machine):
    """The plan, worked out again here from the parts: (key, gpu, ram, speed) of every option, and the choice."""
    d0, t0, v, a = FAMILIES[spec.family].parts_gb
    d0 = spec.size.denoiser_gb if spec.size.denoiser_gb is not None else d0
    if "text_encoder" in spec.layout.missing and spec.family == "sdxl":
        t0 = 1.39
    t5 = FAMILIES[spec.family].t5_gb
    stores = [  # key, denoiser GB, text GB, speed, bf16 denoiser passes through RAM, CUDA only, capability, rank
        ("full", d0, t0, 1.0, False, False, 0, 0),
        ("torchao-fp8", d0 / 2, t0, 1.0, True, True, 8.9, 1),
        ("layerwise-fp8", d0 / 2, t0, 0.9, True, False, 0, 1),
        ("torchao-int8", d0 / 2, t0, 0.9, True, False, 0, 2),
        ("int8", d0 * 0.53, t0 - t5 + t5 * 0.53, 0.5, False, True, 0, 2),
        ("nf4", d0 * NF4_RATIO, t0 - t5 + t5 * NF4_RATIO, 1.0, False, True, 0, 3),
    ]
    for g in REG.gguf_for(spec.key):
        rank = 1 if g.quant.startswith("Q8") else 3
        stores.append((f"gguf-{g.quant.lower()}", g.size_gb, t0, 0.6, False, False, 0, rank))
    rows = []
    for key, d, t, speed, whole, cuda, cap, rank in stores:
        is_gguf = key.startswith("gguf")
        for place, (pspeed, _) in PLACEMENTS.items():
            weights = d + t + v
            gpu = CUDA_OVERHEAD_GB + a + {"gpu": weights, "model-offload": max(d, t, v)}.get(place, 0.5)
            resident = 0 if place == "gpu" else weights
            passing = d0 if whole else d if is_gguf else min(SHARD_GB, max(d0, t0, v))
            ram = RAM_HEADROOM_GB + max(resident, passing)
            usable = machine.capability >= cap and (machine.device == "cuda" or not cuda)
            fits = gpu <= machine.gpu_gb and ram <= machine.ram_gb and usable
            name = key if place == "gpu" else f"{key}+{place}"
            rows.append((name, gpu, ram, round(speed * pspeed, 3), rank, fits))
    fitting = sorted((r for r in rows if r[5]), key=lambda r: (-r[3], r[4], r[1]))
    return rows, (fitting[0][0] if fitting else None)


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("key", list(REG.models))
def test_the_choice_for_every_model_and_profile_is_the_memory_arithmetic(key, profile):
    spec, machine = REG.get(key), PROFILES[profile]
    rows, expected = _arithmetic(spec, machine)
    p = plan(key, machine=machine)
    got = {o.key: (o.gpu_gb, o.ram_gb, o.speed, o.fits) for o in p.options}
    assert set(got) == {r[0] for r in rows}
    for name, gpu, ram, speed, _, fits in rows:
        assert got[name] == pytest.approx((gpu, ram, speed, fits)), name
    assert (p.choice.key if p.choice else None) == expected


def test_flux_on_a_t4_is_4_bit_and_the_reason_names_what_does_not_fit():
    p = plan("flux-dev", gpu_gb=16, ram_gb=12.7, capability=7.5)
    assert p.choice.key == "nf4"
    assert "14.1 GB of 16 GB GPU" in p.reason and "full would not (37.7 GB GPU > 16)" in p.reason
    gguf = p.option("gguf-q4_k_s+model-offload")  # fits the GPU, not the RAM: the T5 waits there in bf16
    assert not gguf.fits and "19.2 GB RAM at load > 12.7" in gguf.why
    assert gguf.download_gb == pytest.approx(33.7 - 23.8 + 6.81)


def test_a_plan_that_holds_the_whole_bf16_transformer_in_ram_is_refused_when_ram_is_short():
    p = plan("flux-dev", gpu_gb=80, ram_gb=12.7, capability=9.0)
    fp8 = p.option("torchao-fp8")
    assert fp8.ram_gb == pytest.approx(RAM_HEADROOM_GB + 23.8)  # loaded whole in bf16, then quantized
    assert not fp8.fits
    assert "26.3 GB RAM at load > 12.7 (the whole half-precision denoiser passes through RAM)" in fp8.why
    full = p.option("full")  # shard by shard to the GPU: one 10 GB shard in RAM at a time
    assert full.fits and full.ram_gb == pytest.approx(RAM_HEADROOM_GB + SHARD_GB)
    assert p.choice is full


def test_nothing_fits_is_refused_up_front_with_the_numbers_and_the_nearest_option(fresh_hub, monkeypatch):
    with pytest.raises(ZooError) as e:
        plan("flux-dev", gpu_gb=6, ram_gb=8, refuse=True)
    msg = str(e.value)
    assert "'flux-dev' does not fit" in msg and "6 GB of GPU memory and 8 GB of RAM" in msg
    assert "nearest: NF4 (bitsandbytes) transformer + T5, group offload (streams) (nf4+group-offload)" in msg
    assert "needs 4.5 GB GPU and 12.6 GB RAM at load" in msg
    # load_pipeline refuses from the plan, before any file is read
    import diffusers

    from helpers.run import loading

    monkeypatch.setattr(Machine, "detect", classmethod(lambda cls, device="auto": Machine("cuda", 6, 8, "small")))
    monkeypatch.setattr(plan_mod.memory_mod, "cached_scale", lambda spec: 1.0)  # planned as the real model
    monkeypatch.setattr(diffusers.FluxPipeline, "from_pretrained", lambda *a, **k: pytest.fail("it downloaded"))
    with pytest.raises(ZooError, match="nearest: NF4"):
        loading.load_pipeline("flux-dev", device="cpu")


def test_fp8_needs_a_gpu_that_has_it():
    assert not plan("flux-dev", gpu_gb=80, ram_gb=64, capability=8.0).option("torchao-fp8").fits
    assert plan("sd35-large", gpu_gb=24, ram_gb=32, capability=8.9).choice.key == "torchao-fp8"


def test_the_cli_prints_the_table(capsys):
    from helpers.__main__ import main

    assert main(["plan", "flux-dev", "--gpu", "16", "--ram", "12.7", "--capability", "7.5"]) == 0
    out = capsys.readouterr().out
    assert "plan: nf4:" in out and "*nf4 " in out
    row = next(line for line in out.splitlines() if line.startswith("gguf-q4_k_s+model-offload"))
    assert row.split()[1:5] == ["13.8", "19.2", "16.7", "0.54"]
    assert main(["plan", "flux-dev", "--gpu", "6", "--ram", "8"]) == 1
    assert "none fits" in capsys.readouterr().out


def _pixels(result):
    return np.asarray(result.images[0], dtype=np.float32)


def test_a_gguf_file_loads_through_diffusers_and_draws_what_the_unquantized_model_draws(fresh_hub):
    from diffusers.quantizers.gguf.utils import GGUFParameter

    args = dict(prompt="a red fox", num_inference_steps=2, height=64, width=64, seed=3, device="cpu")
    full = generate("flux-dev", **args)
    q8 = generate("flux-dev", plan="gguf-q8_0", **args)
    q4 = generate("flux-dev", plan="gguf-q4_k_s", **args)
    pipe = helpers_cache_pipe("flux-dev", "gguf-q4_k_s")
    assert isinstance(pipe.transformer.transformer_blocks[0].attn.to_q.weight, GGUFParameter)
    assert pipe.transformer.transformer_blocks[0].attn.to_q.weight.quant_type.name == "Q4_0"
    a, b, c = _pixels(full), _pixels(q8), _pixels(q4)
    assert np.abs(a - b).mean() < 2.0, np.abs(a - b).mean()  # 8-bit: within 2 of 255 on average
    assert np.abs(a - c).mean() < 8.0, np.abs(a - c).mean()
    assert np.abs(a - c).mean() > np.abs(a - b).mean()  # fewer bits, further away: really quantized
    assert q4.records[0].plan == {"key": "gguf-q4_k_s", "label": "Q4_K_S GGUF transformer, on the CPU"}
    assert 'Plan: "Q4_K_S GGUF transformer, on the CPU"' in q4.records[0].a1111()


def helpers_cache_pipe(key, plan_key):
    from helpers.run.cache import get_pipeline

    return get_pipeline(key, device="cpu", plan=plan_key)


@pytest.mark.parametrize("plan_key", ["torchao-int8", "layerwise-fp8"])
def test_torchao_int8_and_layerwise_fp8_plans_run_on_the_cpu(fresh_hub, plan_key):
    args = dict(prompt="a red fox", num_inference_steps=2, height=64, width=64, seed=3, device="cpu")
    full = generate("flux-schnell", **args)
    result = generate("flux-schnell", plan=plan_key, **args)
    pipe = helpers_cache_pipe("flux-schnell", plan_key)
    weight = pipe.transformer.transformer_blocks[0].attn.to_q.weight
    if plan_key == "layerwise-fp8":
        assert weight.dtype == torch.float8_e4m3fn
    else:
        assert "Int8" in type(weight).__name__ or "AffineQuantized" in type(weight).__name__, type(weight)
    diff = np.abs(_pixels(full) - _pixels(result)).mean()
    assert 0 < diff < 8.0, diff
    assert result.records[0].plan["key"] == plan_key



def test_without_cuda_a_bitsandbytes_plan_becomes_torchao_int8():
    got = plan_mod.runnable("flux-dev", ["gguf-q4_k_s", "nf4", "int8"], device="cpu")
    assert got == ["gguf-q4_k_s", "torchao-int8"]
    with pytest.raises(ZooError, match="has no plan 'q4'"):
        plan_mod.runnable("flux-dev", ["q4"], device="cpu")


def test_a_png_made_with_a_plan_regenerates_with_the_same_plan_and_pixels(fresh_hub, tmp_path):
    from helpers import regenerate
    from helpers.base.records import read_record

    made = generate("flux-schnell", prompt="a red fox", num_inference_steps=2, height=64, width=64, seed=4,
                    device="cpu", plan="gguf-q4_k_s")  # fmt: skip
    path = made.save(tmp_path)[0]
    rec = read_record(path)
    assert rec.plan["key"] == "gguf-q4_k_s" and rec.generate_kwargs()["plan"] == "gguf-q4_k_s"
    again = regenerate(path, device="cpu")
    assert again.records[0].plan == rec.plan
    assert np.array_equal(_pixels(made), _pixels(again))


def test_here_shows_each_model_on_this_machine_and_on_a_t4():
    reg = registry.default()
    keys = ["z-image-turbo", "qwen-image", "sdxl-base"]
    box = Machine("cuda", 24.0, 32.0, "a 24 GB GPU", capability=8.9)
    table = plan_mod.here([reg.get(k) for k in keys], machine=box)
    assert list(table.index) == keys
    t4 = next(iter(PROFILES.values()))
    for key in keys:  # each cell is the planner's own choice on that machine
        mine, colab = plan(key, machine=box), plan(key, machine=t4)
        assert table.loc[key, "this machine"] == (mine.choice.label if mine.choice else "does not fit")
        assert table.loc[key, "Colab T4"] == (colab.choice.key if colab.choice else "does not fit")
        assert table.loc[key, "why"] == mine.reason
    assert table.loc["qwen-image", "Colab T4"] == "does not fit"  # 20B with a 7B text encoder: refused, not crashed
    assert table.loc["sdxl-base", "Colab T4"] == "full"
