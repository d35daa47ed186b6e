"""Speed work on the CPU: the benchmark's like-with-like baseline, the compile cache, caching and attention fast
modes, the sweep-throughput benchmark, the DiT random-weight builds and the prepared GPU script's dry run."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from helpers import ZooError, fast
from helpers.bench import harness, randomweights
from helpers.run import stepcache
from helpers.zoo.registry import default

from .common import REAL_CONFIGS
from .environment import HUB_DIR

pytestmark = pytest.mark.usefixtures("hub")


def _configs_of(key: str, folder: Path) -> Path:
    """A checkpoint's configs with the weights left out, like ../shared/real-configs, from the offline hub."""
    spec = default().get(key)
    snapshot = next((HUB_DIR / ("models--" + spec.repo.replace("/", "--")) / "snapshots").iterdir())
    shutil.copytree(snapshot, folder / key, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"), symlinks=False)
    return folder / key


def test_the_fp16_fix_vae_is_built_from_its_own_config(tmp_path):
    configs = _configs_of("sdxl-base", tmp_path)
    assert json.loads((configs / "vae" / "config.json").read_text())["force_upcast"] is True  # SDXL's own VAE
    fix = default().vae("sdxl-vae-fp16-fix")
    randomweights.write_random_vae(fix, configs, tmp_path / "fix")
    written = json.loads((tmp_path / "fix" / (fix.subfolder or "") / "config.json").read_text())
    assert written["force_upcast"] is False, "the fp16-fix VAE decodes in float16; upcasting would time another VAE"
    family = json.loads((configs / "vae" / "config.json").read_text())
    assert written["block_out_channels"] == family["block_out_channels"], "the same architecture as SDXL's VAE"


def test_the_sdxl_baseline_decodes_with_the_same_fp16_safe_vae_as_ours():
    spec = default().get("sdxl-base")
    half = harness._plain_pipeline(spec, "cpu", "cpu", dtype=torch.float16)
    assert "sdxl-vae-fp16-fix" in half.vae.config._name_or_path and half.vae.config.force_upcast is False
    full = harness._plain_pipeline(spec, "cpu", "cpu", dtype=torch.float32)  # no swap in float32, as in ours
    assert "stable-diffusion-xl-base" in full.vae.config._name_or_path


def test_sweep_throughput_batches_the_grid_keeping_one_seed_per_image():
    from helpers import load_pipeline
    from helpers.bench import throughput

    pipe = load_pipeline("sdxl-base", device="cpu", fast="off")
    out = throughput.measure(pipe, batch_sizes=(1, 4), warmup=False, num_inference_steps=2, height=64, width=64)
    assert out["grid"] == "4 prompts x 4 seeds" and [r["batch_size"] for r in out["by_batch"]] == [1, 4]
    for r in out["by_batch"]:
        assert r["images"] == 16 and r["images_per_minute"] == pytest.approx(60 * 16 / r["seconds"])
        assert r["same_images"], r  # batched, each image is still its seed's image
        assert r["distinct_images"] == 16, "sixteen prompt and seed pairs, sixteen different images"
    assert out["best"]["images_per_minute"] == max(r["images_per_minute"] for r in out["by_batch"])


@pytest.mark.skipif(not (REAL_CONFIGS / "2026").is_dir(), reason="needs ../shared/real-configs/2026 beside the project")
@pytest.mark.parametrize(
    ("name", "billions"), [("z-image-turbo", 6.15), ("flux2-klein-4b", 3.88), ("qwen-image", 20.43)]
)
def test_the_2026_dits_build_at_full_size_from_the_real_configs(name, billions):
    from helpers.bench import dit

    net = dit.build(name, REAL_CONFIGS, device="meta")  # shapes only: no memory, no time
    assert dit.parameters(net) / 1e9 == pytest.approx(billions, abs=0.01)  # Z-Image 6B, klein 4B, Qwen-Image 20B
    assert fast.is_transformer(net), "compiled by regions (diffusers' _repeated_blocks)"


@pytest.mark.skipif(not (REAL_CONFIGS / "2026").is_dir(), reason="needs ../shared/real-configs/2026 beside the project")
def test_a_dit_step_is_timed_eager_and_compiled_by_regions():
    from helpers.bench import dit

    small = {"num_layers": 1, "num_single_layers": 1, "num_attention_heads": 2, "joint_attention_dim": 32}
    job = {"config_dir": REAL_CONFIGS, "device": "cpu", "steps": 1, "height": 64, "width": 64, "overrides": small}
    eager = dit.measure("flux2-klein-4b", variant="eager", **job)
    assert eager["steps_per_s"] > 0 and eager["compile_s"] is None and eager["parameters"] < 1e9
    regional = dit.measure("flux2-klein-4b", variant="regional", **job)
    assert regional["compile_s"] > 0 and regional["artifacts_loaded"] == 0
    torch._dynamo.reset()
    with pytest.raises(ZooError, match="Unknown DiT benchmark 'sd9'"):
        dit.config("sd9", REAL_CONFIGS)
    with pytest.raises(ZooError, match="No transformer config for 'qwen-image'.*point --config-dir"):
        dit.config("qwen-image", REAL_CONFIGS / "sd15")


@pytest.mark.skipif(not (REAL_CONFIGS / "2026").is_dir(), reason="needs ../shared/real-configs/2026 beside the project")
def test_the_prepared_gpu_script_runs_end_to_end_in_its_dry_mode(tmp_path):
    import os
    import subprocess

    from .environment import ROOT

    env = {**os.environ, "DRY": "1", "CONFIGS": str(REAL_CONFIGS), "OUT": str(tmp_path), "PYTHONPATH": str(ROOT)}
    env["STAGES"] = "build,recompile,dit,throughput,caching,profile"  # `bench` is the harness run test_bench.py tests
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = next(tmp_path.glob("*-speed-tiny-cpu.jsonl"))
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    by = {}
    for line in lines:
        by.setdefault(line["stage"], []).append(line["result"])
    assert not [r for rs in by.values() for r in rs if isinstance(r, dict) and ("error" in r or "skipped" in r)], by
    assert [line["stage"] for line in lines][-1] == "time" and "Where the time went: build" in proc.stdout
    assert [line["t_s"] for line in lines] == sorted(line["t_s"] for line in lines), "appended as measured"
    dits = {(r["model"], r["variant"], r["attention_asked"], r["attention"]) for r in by["dit"]}
    assert dits == {(m, "eager", "default", "default") for m in ("z-image-turbo", "qwen-image", "flux2-klein-4b")} | {
        ("flux2-klein-4b", "regional", "default", "default"),
        ("flux2-klein-4b", "regional", "best", "default"),  # no CUDA: the fastest backend here is the default
    }
    assert all(r["steps_per_s"] > 0 for r in by["dit"]) and len(by["dit"]) == 5
    assert by["throughput"][0]["best"]["same_images"] and by["throughput"][0]["batch_1"]["batch_size"] == 1
    caching = by["caching"][0]
    assert {"first-block", "taylorseer", "magcache", "fastercache"} <= set(caching)
    assert all("dino_similarity" in caching[m] and "acceptable" in caching[m] for m in stepcache.CHOICES[1:])
    assert "Self CPU" in Path(by["profile"][0]["file"]).read_text(), "the profile's table of operators"
    recompile = json.loads(Path(by["recompile"][0]["files"][0]).read_text())
    assert {r["variant"] for r in recompile["results"]} == {"eager", "max"}
