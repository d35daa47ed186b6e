"""The families of 2026 on the offline hub: Z-Image-Turbo, FLUX.2 [klein], Chroma1-HD and FLUX.1 Krea [dev].

Each entry loads from its real repo layout and generates; its recipe regenerates the same pixels; the CLI, a sweep,
a comparison with SDXL and the judges take it; LoRAs load where diffusers loads them for the family.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model_state_dict
from PIL import Image

from helpers import generate, read_record, regenerate, registry
from helpers.base.families import FAMILIES
from helpers.base.schedulers import scheduler_names
from helpers.judge import evaluate
from helpers.offline import hub as offline_hub
from helpers.sweeps.compare import compare
from helpers.sweeps.sweep import sweep

from ..common import REAL_CONFIGS, px, small
from ..environment import HUB_DIR, ROOT

pytestmark = pytest.mark.usefixtures("fresh_hub")

REG = registry.default()
NEW = ["z-image-turbo", "flux2-klein-4b", "flux2-klein-9b", "chroma1-hd", "flux-krea-dev"]
PIPELINES = {
    "z-image-turbo": "ZImagePipeline",
    "flux2-klein-4b": "Flux2KleinPipeline",
    "flux2-klein-9b": "Flux2KleinPipeline",
    "chroma1-hd": "ChromaPipeline",
    "flux-krea-dev": "FluxPipeline",
}


def test_every_new_entry_has_sources_and_says_what_is_unverified():
    for key in NEW:
        spec = REG.get(key)
        assert len(spec.sources) >= 3 and all(s.startswith(("https://", "http://")) for s in spec.sources), key
        assert "unverified" in spec.notes, f"{key}: what no source confirms is said in notes"
        assert "as remembered" not in spec.notes, key
        assert spec.dtype == "bfloat16" and spec.prediction == "flow" and spec.pipeline == PIPELINES[key]
    after_dev = list(REG.models)[list(REG.models).index("flux-dev") + 1 :][: len(NEW)]
    assert after_dev == NEW, "inserted directly after flux-dev"


def test_licences_gates_and_defaults_follow_the_sources():
    zit, k4, k9, chroma = (REG.get(k) for k in ("z-image-turbo", "flux2-klein-4b", "flux2-klein-9b", "chroma1-hd"))
    assert (zit.license, zit.gated, zit.commercial_use) == ("apache-2.0", False, True)
    assert (zit.defaults.steps, zit.defaults.guidance_scale, zit.defaults.negative_prompt) == (9, 0.0, False)
    assert (k4.license, k4.commercial_use, k9.commercial_use) == ("apache-2.0", True, False)
    assert (k4.defaults.steps, k4.defaults.guidance_scale) == (4, 1.0)
    assert k9.size.denoiser_gb > FAMILIES["flux2"].parts_gb[0], "the 9B's transformer is larger than the family's 4B"
    assert chroma.defaults.negative_prompt and chroma.defaults.guidance_scale > 1, "Chroma runs real CFG"
    assert zit.layout.sharded == {"transformer": 3, "text_encoder": 3}


def test_the_stand_ins_have_the_real_layout_and_classes():
    for key, te, tok in [("z-image-turbo", "Qwen3Model", "Qwen2Tokenizer"),
                         ("flux2-klein-4b", "Qwen3ForCausalLM", "Qwen2TokenizerFast")]:  # fmt: skip
        spec = REG.get(key)
        snap = next((HUB_DIR / f"models--{spec.repo.replace('/', '--')}" / "snapshots").iterdir())
        index = json.loads((snap / "model_index.json").read_text())
        assert index["text_encoder"] == ["transformers", te] and index["tokenizer"] == ["transformers", tok]
        shards = sorted(p.name for p in (snap / "text_encoder").glob("model-*.safetensors"))
        assert len(shards) == spec.layout.sharded["text_encoder"], (key, shards)
        assert (snap / "tokenizer" / "tokenizer_config.json").exists()
    klein = json.loads(next((HUB_DIR / "models--black-forest-labs--FLUX.2-klein-4B" / "snapshots").iterdir())
                       .joinpath("model_index.json").read_text())  # fmt: skip
    assert klein["is_distilled"] is True and klein["vae"] == ["diffusers", "AutoencoderKLFlux2"]
    zit_sched = json.loads(next((HUB_DIR / "models--Tongyi-MAI--Z-Image-Turbo" / "snapshots").iterdir())
                           .joinpath("scheduler", "scheduler_config.json").read_text())  # fmt: skip
    assert (zit_sched["shift"], zit_sched["use_dynamic_shifting"]) == (3.0, False), "Z-Image-Turbo's own scheduler"


@pytest.mark.parametrize("key", NEW)
def test_each_entry_loads_and_generates_seeded_pixels(key, tmp_path):
    kw = small(key)
    a = generate(key, "a lighthouse at dusk", seed=1, **kw)
    b = generate(key, "a lighthouse at dusk", seed=2, **kw)
    again = generate(key, "a lighthouse at dusk", seed=1, **kw)
    assert a.images[0].size == (64, 64) and px(a.images[0]).std() > 0
    assert not np.array_equal(px(a.images[0]), px(b.images[0])), "another seed, another picture"
    assert np.array_equal(px(a.images[0]), px(again.images[0])), "the same seed, the same pixels"
    path = a.save(tmp_path)[0]
    record = read_record(path)
    assert record.model == key and record.repo == REG.get(key).repo and record.scheduler == "default"
    assert np.array_equal(px(regenerate(path).images[0]), px(a.images[0])), "the PNG's recipe regenerates its pixels"


def test_defaults_come_from_the_registry_and_cfg_follows_the_card():
    rec = generate("z-image-turbo", "a cat", seed=1, height=64, width=64, device="cpu").records[0]
    assert (rec.num_inference_steps, rec.guidance_scale) == (9, 0.0)
    with pytest.warns(UserWarning, match="'flux2-klein-4b' ignores the negative prompt"):
        rec = generate("flux2-klein-4b", "a cat", negative_prompt="dogs", seed=1, **small("flux2-klein-4b")).records[0]
    assert rec.negative_prompt is None
    plain = generate("chroma1-hd", "a cat", seed=1, **small("chroma1-hd")).images[0]
    neg = generate("chroma1-hd", "a cat", negative_prompt="blurry dogs", seed=1, **small("chroma1-hd")).images[0]
    assert not np.array_equal(px(plain), px(neg)), "Chroma's negative prompt steers the image"


def test_z_image_img2img_and_inpaint_run_on_the_same_weights():
    base = generate("z-image-turbo", "a red fox", seed=1, **small("z-image-turbo")).images[0]
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 16:48] = 255
    changed = generate("z-image-turbo", "a blue fox", seed=2, task="img2img", image=base, strength=0.6,
                       **small("z-image-turbo", num_inference_steps=4)).images[0]  # fmt: skip
    filled = generate("z-image-turbo", "a blue fox", seed=2, task="inpaint", image=base,
                      mask_image=Image.fromarray(mask), strength=1.0,
                      **small("z-image-turbo", num_inference_steps=4)).images[0]  # fmt: skip
    assert changed.size == filled.size == (64, 64)
    outside = np.ones((64, 64), bool)
    outside[8:56, 8:56] = False
    assert not np.array_equal(px(changed), px(base))
    assert np.abs(px(filled) - px(base))[outside].mean() < np.abs(px(filled) - px(base))[~outside].mean()


def test_samplers_are_the_familys():
    assert scheduler_names("zimage") == ["default", "Flow Euler"], "UniPC cannot take Z-Image's own sigmas"
    assert "Flow UniPC" in scheduler_names("flux2") and "Flow UniPC" in scheduler_names("chroma")
    assert "DPM++ 2M Karras" not in scheduler_names("flux2")


def _lora_file(key: str, folder) -> str:
    """A LoRA on the family's tiny transformer (non-zero, so it shows), saved as the family's pipeline saves one."""
    spec = REG.get(key)
    _, net = offline_hub._denoiser(spec)
    net.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                               init_lora_weights=False))  # fmt: skip
    torch.manual_seed(10)
    for name, p in net.named_parameters():
        if "lora_" in name:
            p.data = 0.5 * torch.randn_like(p)
    spec.pipeline_class.save_lora_weights(str(folder), weight_name="style.safetensors",
                                          transformer_lora_layers=get_peft_model_state_dict(net))  # fmt: skip
    return str(folder / "style.safetensors")


@pytest.mark.parametrize("key", ["z-image-turbo", "flux2-klein-4b", "chroma1-hd"])
def test_loras_load_for_the_family(key, tmp_path):
    lora = _lora_file(key, tmp_path)
    plain = generate(key, "a red fox", seed=1, **small(key))
    styled = generate(key, "a red fox", seed=1, loras={lora: 1.0}, **small(key))
    assert np.abs(px(styled.images[0]) - px(plain.images[0])).mean() > 0.5, "the LoRA changes the image"
    assert styled.records[0].loras and not plain.records[0].loras


def test_the_cli_generates_a_new_family(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "helpers", "generate", "z-image-turbo", "a red fox", "--steps", "2", "--size", "64",
         "--seed", "7", "--out", str(tmp_path), "--device", "cpu"],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rec = read_record(proc.stdout.split()[0])
    assert (rec.model, rec.seed, rec.num_inference_steps, rec.guidance_scale) == ("z-image-turbo", 7, 2, 0.0)


def test_a_sweep_over_a_new_familys_samplers(tmp_path):
    params = {"model": "chroma1-hd", "prompt": "a fox", "height": 64, "width": 64, "num_inference_steps": 2}
    result = sweep(params, {"x": ("scheduler", ["default", "Flow UniPC"])}, out_dir=tmp_path, device="cpu")
    rows = result.rows
    assert [r["status"] for r in rows] == ["ok", "ok"]
    a, b = (px(Image.open(tmp_path / r["path"])) for r in rows)
    assert not np.array_equal(a, b), "the sampler changes the image"
    assert [read_record(tmp_path / r["path"]).scheduler for r in rows] == ["default", "Flow UniPC"]


def test_compare_a_2026_model_with_sdxl_and_judge_it(tmp_path):
    models = ["z-image-turbo", "sdxl-turbo"]
    result = compare(models, ["a fox"], seeds=[1], out_dir=tmp_path, height=64, width=64, device="cpu",
                     metrics=["clip"], num_inference_steps=2)  # fmt: skip
    table = result.table
    assert list(table.index) == models and (table["images"] == 1).all()
    assert table.loc["z-image-turbo", "steps"] == 2 and table["clip"].notna().all()
    scores = evaluate.evaluate_folder(tmp_path, metrics=["clip"], progress=False)
    assert set(scores["model"]) == set(models) and scores["clip"].notna().all()


REAL_2026 = REAL_CONFIGS / "2026"


@pytest.mark.skipif(not REAL_2026.is_dir(), reason="the shared real configs are not beside this checkout")
@pytest.mark.parametrize(
    "family, cls, config",
    [
        ("zimage", "ZImageTransformer2DModel", "Tongyi-MAI__Z-Image-Turbo/transformer/config.json.RECONSTRUCTED"),
        ("flux2", "Flux2Transformer2DModel", "black-forest-labs__FLUX.2-klein-4B/transformer/config.json"),
        ("chroma", "ChromaTransformer2DModel", "vladmandic__sdnext/configs/chroma/transformer/config.json"),
    ],
)
def test_the_familys_denoiser_size_is_its_real_configs_parameters(family, cls, config):
    import diffusers
    from accelerate import init_empty_weights

    values = {k: v for k, v in json.loads((REAL_2026 / config).read_text()).items() if not k.startswith("_")}
    with init_empty_weights():  # full size on the meta device: no memory
        net = getattr(diffusers, cls).from_config(values)
    half_gb = 2 * sum(p.numel() for p in net.parameters()) / 1e9
    assert abs(half_gb - FAMILIES[family].parts_gb[0]) < 0.1, (family, half_gb)


def test_hires_fix_on_z_image_regenerates(tmp_path):
    result = generate("z-image-turbo", "a castle", hires={"scale": 2, "strength": 0.5}, seed=7,
                      **small("z-image-turbo", num_inference_steps=4))  # fmt: skip
    rec = result.records[0]
    assert result.images[0].size == (128, 128) and (rec.width, rec.height) == (64, 64)
    assert "Hires upscale: 2, Hires steps: 4" in rec.a1111() and "Model: z-image-turbo" in rec.a1111()
    path = result.save(tmp_path)[0]
    assert np.array_equal(px(regenerate(path).images[0]), px(result.images[0]))
