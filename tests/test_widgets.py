"""The panels, driven as a person would: set values, press buttons, read what they show and save."""

import json
import shutil

import numpy as np
import pytest

import helpers
from helpers import read_record
from helpers.widgets import ComparePanel, GenerationPanel


@pytest.fixture(autouse=True)
def _hub(offline_hub_dir):
    helpers.free()
    yield
    helpers.free()


def _small(panel, steps=2):
    panel.size.options = ["64x64"]
    panel.steps.value = steps


def test_defaults_follow_the_model_and_the_filter():
    panel = GenerationPanel("sd15", device="cpu")
    assert (panel.steps.value, panel.guidance.value, panel.scheduler.value) == (30, 7.5, "DPM++ 2M Karras")
    assert panel.size.options[0] == "512x512" and "Flow Euler" not in panel.scheduler.options
    panel.model.value = "sdxl-turbo"
    assert (panel.steps.value, panel.guidance.value) == (1, 0.0) and panel.negative.disabled
    assert panel.size.options[0] == "512x512" and "1024x1024" in panel.size.options
    panel.model.value = "flux-dev"
    assert "gated" in panel.info.value and "Flow Euler" in panel.scheduler.options
    panel.filter.value = "pixart"
    assert [v for _, v in panel.model.options] == ["pixart-alpha", "pixart-sigma"]


def test_generate_shows_images_and_recipes_then_saves(tmp_path):
    panel = GenerationPanel("sd15", out_dir=str(tmp_path), device="cpu")
    _small(panel)
    panel.prompt.value = "a red fox"
    panel.num_images.value = 2
    panel.lock.value = True
    panel.seed.value = 7
    panel.go.click()
    panel.wait()
    assert panel.status.value.startswith("done") and len(panel.images.children) == 2
    assert "Seed: 7" in panel.recipe.value and "Seed: 8" in panel.recipe.value
    assert panel.progress.value == panel.progress.max == 4
    assert panel.previews_shown == 4, "each step showed its tiny-VAE preview before the images came"
    panel.save_button.click()
    saved = sorted(tmp_path.glob("*.png"))
    assert [p.name for p in saved] == ["sd15-7-0001.png", "sd15-8-0001.png"]
    assert read_record(saved[0]).prompt == "a red fox" and "saved" in panel.status.value
    panel.go.click()
    panel.wait()
    assert panel.seed.value == 7, "a locked seed stays"
    panel.lock.value = False
    panel.go.click()
    panel.wait()
    assert panel.seed.value != 7, "an unlocked seed is rolled for each new image"


def test_dice_cancel_and_errors():
    panel = GenerationPanel("sd15", device="cpu")
    first = panel.seed.value
    panel.dice.click()
    assert panel.seed.value != first
    _small(panel, steps=50)
    panel.generate()
    panel.stop.click()
    panel.wait()
    assert panel.status.value == "cancelled" and not panel.go.disabled and panel.stop.disabled
    panel.size.options = ["65x65"]
    panel.generate(wait=True)
    assert "not a multiple of 8" in panel.status.value


def test_compare_panel_fills_the_grid_opens_cells_and_exports(tmp_path):
    panel = ComparePanel(("sd15", "sdxl-turbo"), out_dir=str(tmp_path), device="cpu", height=64, width=64)
    assert list(panel.models.options[:2]) == ["sd15", "sdxl-turbo"], "the chosen models at the top, in view"
    assert panel.large.layout.display == "none" and not panel.large.value, "no broken image before a click"
    assert panel.export_button.layout.width == "auto", "the whole label shows"
    panel.prompts.value = "a fox\na castle"
    panel.seeds.value = "3"
    panel.go.click()
    panel.wait()
    assert panel.status.value == "done" and len(panel.cells) == 4
    assert all(type(c).__name__ == "VBox" for c in panel.cells)
    headers = [c.value for c in panel.grid.children if type(c).__name__ == "HTML"]
    assert any("a castle<br>seed 3" in h for h in headers), headers
    assert any("<b>sdxl-turbo</b><br>Euler a · 1 step · CFG 0" in h for h in headers), headers
    assert any("<b>sd15</b><br>DPM++ 2M Karras · 30 steps · CFG 7.5" in h for h in headers), headers
    table = panel.table.value
    assert "sdxl-turbo" in table and "s / image (median)" in table and "first call, warm-up (s)" in table
    assert ">default<" not in table and "None" not in table and "<th></th>" not in table, "no empty index row"
    panel.cells[3].children[1].click()  # a cell's button: sdxl-turbo, "a castle"
    assert panel.large.layout.display == "" and panel.large.value[:4] == b"\x89PNG"
    assert "a castle" in panel.detail.value and "sdxl-turbo" in panel.detail.value
    panel.export_button.click()
    assert (tmp_path / "table.csv").is_file() and (tmp_path / "compare-grid.png").is_file()
    panel.seeds.value = "one"
    panel.run()
    assert "not whole numbers" in panel.status.value


def test_the_lora_picker_offers_registry_and_trained_loras_and_uses_them(tmp_path, monkeypatch):
    from huggingface_hub import hf_hub_download

    lcm = helpers.registry.default().adapter("lcm-lora-sdv1-5")
    weights = hf_hub_download(lcm.repo, lcm.weight_name, revision=lcm.revision)
    (tmp_path / "adapters" / "mine").mkdir(parents=True)
    shutil.copy(weights, tmp_path / "adapters" / "mine" / "mine.safetensors")
    (tmp_path / "adapters" / "mine" / "mine.json").write_text(json.dumps({"kind": "lora", "family": "sd1"}))
    monkeypatch.setenv("SDZOO_ADAPTERS", str(tmp_path / "adapters"))
    panel = GenerationPanel("sd15", out_dir=str(tmp_path), device="cpu")
    _small(panel)
    assert [v for _, v in panel.lora.options] == ["", "lcm-lora-sdv1-5", "mine"]
    panel.prompt.value, panel.lock.value, panel.seed.value = "a red fox", True, 7
    panel.go.click()
    panel.wait()
    plain = np.asarray(panel.result.images[0]).astype(int)
    panel.lora.value, panel.lora_scale.value = "mine", 0.8
    panel.go.click()
    panel.wait()
    assert panel.result.records[0].loras == {"mine": 0.8} and "mine" in panel.recipe.value
    assert np.abs(np.asarray(panel.result.images[0]).astype(int) - plain).max() > 0, "the trained LoRA is applied"
    panel.model.value = "sdxl-base"
    assert "mine" not in [v for _, v in panel.lora.options], "an SD 1.5 LoRA is not offered for SDXL"
