"""Styles on the offline hub: LoRAs change the image and unloading restores it; embeddings; trigger words."""

import json
import re

import numpy as np
import pytest
import torch
from huggingface_hub import hf_hub_download
from PIL import Image
from safetensors.torch import save_file

import helpers
from helpers import ZooError, registry, styles, sweep

from ..common import px

pytestmark = pytest.mark.usefixtures("fresh_hub")

K = {"num_inference_steps": 2, "height": 64, "width": 64, "seed": 1, "device": "cpu"}
REG = registry.default()


def test_lora_changes_the_image_and_unloading_restores_it_exactly():
    pipe = helpers.get_pipeline("sd15", device="cpu")
    base = px(helpers.generate(pipe, "a fox", **K).images[0])
    assert styles.load_lora(pipe, "lcm-lora-sdv1-5") == "lcm-lora-sdv1-5"
    full = helpers.generate(pipe, "a fox", **K)
    half = helpers.generate(pipe, "a fox", lora_scale=0.5, **K)
    assert not np.array_equal(px(full.images[0]), base) and not np.array_equal(px(half.images[0]), px(full.images[0]))
    assert full.records[0].loras == {"lcm-lora-sdv1-5": 1.0} and half.records[0].loras == {"lcm-lora-sdv1-5": 0.5}
    assert 'Lora: "lcm-lora-sdv1-5:0.5"' in half.records[0].a1111()  # quoted, as A1111 quotes a value with a colon
    styles.unload(pipe)
    again = helpers.generate(pipe, "a fox", **K)
    assert np.array_equal(px(again.images[0]), base) and again.records[0].loras == {}


def test_combine_fuse_and_unfuse():
    pipe = helpers.get_pipeline("sdxl-base", device="cpu")
    base = px(helpers.generate(pipe, "a fox", **K).images[0])
    styles.load_lora(pipe, "lcm-lora-sdxl")
    styles.load_lora(pipe, "sdxl-lightning-4step-lora", scale=0.7)
    assert styles.loras(pipe) == {"lcm-lora-sdxl": 1.0, "sdxl-lightning-4step-lora": 0.7}
    combined = px(helpers.generate(pipe, "a fox", **K).images[0])
    styles.fuse(pipe)
    assert np.abs(px(helpers.generate(pipe, "a fox", **K).images[0]) - combined).max() <= 1, "fused == unfused"
    styles.unfuse(pipe)
    styles.unload(pipe)
    assert np.abs(px(helpers.generate(pipe, "a fox", **K).images[0]) - base).max() <= 1


def test_loras_from_files_and_wrong_families():
    ad = REG.adapter("lcm-lora-sdv1-5")
    path = hf_hub_download(ad.repo, ad.weight_name, revision=ad.revision)  # a file on disk, as a user has one
    sd = helpers.get_pipeline("sd15", device="cpu")
    assert styles.load_lora(sd, path) == "pytorch_lora_weights"
    with pytest.raises(ZooError, match="is loaded already"):
        styles.load_lora(sd, path)
    xl = helpers.get_pipeline("sdxl-base", device="cpu")
    with pytest.raises(ZooError, match="'lcm-lora-sdv1-5' is a LoRA for sd1 models; this pipeline is sdxl"):
        styles.load_lora(xl, "lcm-lora-sdv1-5")
    with pytest.raises(ZooError, match="does not fit this sdxl model.*another family"):
        styles.load_lora(xl, path)
    assert styles.loras(xl) == {} and helpers.generate(xl, "a fox", **K).images[0].size == (64, 64)
    for typo in ("loras/my_style.safetensors", "./my-style.safetensors", "my_style"):
        with pytest.raises(ZooError, match=rf"no LoRA file '{re.escape(typo)}'.*no registry adapter.*lcm-lora-sdv1-5"):
            styles.load_lora(sd, typo)


def test_textual_inversion_embedding(tmp_path):
    pipe = helpers.get_pipeline("sd15", device="cpu")
    width = pipe.text_encoder.config.hidden_size
    path = tmp_path / "fox-style.safetensors"
    save_file({"<fox-style>": torch.randn(1, width, generator=torch.Generator().manual_seed(0))}, str(path))
    assert styles.load_embedding(pipe, str(path), token="<fox-style>") == "<fox-style>"
    plain = px(helpers.generate(pipe, "a fox", **K).images[0])
    styled = px(helpers.generate(pipe, "a fox <fox-style>", **K).images[0])
    assert not np.array_equal(plain, styled)


def test_trigger_words_are_asked_for():
    with pytest.warns(UserWarning, match=r"'openjourney'.*trigger word\(s\) \['mdjrny-v4 style'\]"):
        helpers.generate("openjourney", "a fox", **K)
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*trigger word.*")
        helpers.generate("openjourney", "a fox, mdjrny-v4 style", **K)


def test_prompt_only_styles():
    prompt, negative = styles.style("a fox", "watercolor")
    assert prompt.startswith("a watercolor painting of a fox") and negative
    with pytest.raises(ZooError, match="Unknown style 'vaporwave'; use one of: photograph"):
        styles.style("a fox", "vaporwave")


def test_lora_scale_is_a_sweep_axis(tmp_path):
    params = {"model": "sd15", "prompt": "a fox", "seed": 1, "height": 64, "width": 64, "num_inference_steps": 2}
    result = sweep(
        {**params, "loras": {"lcm-lora-sdv1-5": 1.0}}, {"x": ("lora_scale", [0.0, 0.5, 1.0])}, tmp_path, device="cpu"
    )
    assert [r["status"] for r in result.rows] == ["ok"] * 3
    scales = [json.loads(json.dumps(r["params"]))["lora_scale"] for r in result.rows]
    assert scales == [0.0, 0.5, 1.0]
    images = [np.asarray(Image.open(tmp_path / r["path"])) for r in result.rows]
    assert not np.array_equal(images[0], images[2])


def test_a_calls_loras_are_that_calls_only():
    plain = px(helpers.generate("sd15", "a fox", **K).images[0])
    styled = helpers.generate("sd15", "a fox", loras={"lcm-lora-sdv1-5": 1.0}, **K)
    assert not np.array_equal(px(styled.images[0]), plain) and styled.records[0].loras == {"lcm-lora-sdv1-5": 1.0}
    again = helpers.generate("sd15", "a fox", **K)
    assert np.array_equal(px(again.images[0]), plain) and again.records[0].loras == {}


def test_a_mistyped_embedding_path_is_named_not_looked_up_on_the_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("SDZOO_ADAPTERS", str(tmp_path / "my-adapters"))
    with pytest.raises(ZooError, match=r"no embedding file '/nowhere/toy\.pt'.*SDZOO_ADAPTERS.*list adapters"):
        styles.load_embedding(helpers.get_pipeline("sd15", device="cpu"), "/nowhere/toy.pt", token="<toy>")


def test_an_unknown_lora_names_the_adapters_folder_and_its_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("SDZOO_ADAPTERS", str(tmp_path / "my-adapters"))
    folder = re.escape(str(tmp_path / "my-adapters"))
    with pytest.raises(ZooError, match=rf"no trained adapter of that name in {folder}.*SDZOO_ADAPTERS"):
        styles.load_lora(helpers.get_pipeline("sd15", device="cpu"), "my-style")
