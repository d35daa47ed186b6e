"""The panels, driven as a person would: set values, press buttons, read what they show and save."""

import base64
import datetime
import io
import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw

import helpers
from helpers import read_record
from helpers.base.records import from_a1111
from helpers.panels.widgets import ComparePanel, GenerationPanel

pytestmark = pytest.mark.usefixtures("fresh_hub")


def _small(panel, steps=2):
    panel.size.options = ["64x64"]
    panel.steps.value = steps


def _upload(widget, image, name="in.png"):
    """What the browser sends when a person picks a file (an image, or a file's bytes) in a FileUpload."""
    data = image
    if isinstance(image, Image.Image):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data = buf.getvalue()
    when = datetime.datetime.now(datetime.UTC)
    item = {"name": name, "type": "image/png", "size": len(data), "content": memoryview(data), "last_modified": when}
    widget.value = (item,)


def _pixels(image):
    return np.asarray(image).astype(int)


def test_defaults_follow_the_model_and_the_filter():
    panel = GenerationPanel("sd15", device="cpu")
    assert (panel.steps.value, panel.guidance.value, panel.scheduler.value) == (30, 7.5, "DPM++ 2M Karras")
    assert panel.size.options[0] == "512x512" and "Flow Euler" not in panel.scheduler.options
    assert panel.model.description == "Model" and not panel.filter.description, "one model picker, one label"
    assert (panel.width.value, panel.height.value) == (512, 512) and not panel.negative.disabled
    panel.model.value = "sdxl-turbo"
    assert (panel.steps.value, panel.guidance.value) == (1, 0.0) and panel.negative.disabled
    assert "sdxl-turbo does not use a negative prompt" in panel.negative_note.value
    assert panel.negative.placeholder.startswith("off: ") and "sdzoo-off" in panel.negative._dom_classes
    assert panel.size.options[0] == "512x512" and "1024x1024" in panel.size.options
    panel.model.value = "flux-dev"
    assert "gated" in panel.info.value and "Flow Euler" in panel.scheduler.options
    panel.filter.value = "pixart"
    assert [v for _, v in panel.model.options] == ["pixart-alpha", "pixart-sigma"]
    panel.filter.value = ""
    panel.model.value = "sd15"
    panel.guidance.value = 1.0
    assert panel.negative.disabled and "guidance 1 turns classifier-free guidance off" in panel.negative_note.value
    panel.guidance.value = 5.0
    assert not panel.negative.disabled and not panel.negative_note.value
    panel.width.value = 500
    assert "width 500 is not a multiple of 8, which sd1 models need: use 496 or 504" in panel.size_note.value


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
    assert re.fullmatch(r"step 4/4 · [\d.]+ it/s · 0 s left", panel.progress_line.value), panel.progress_line.value
    assert "word-break:normal" in panel.recipe.value, "the recipe wraps between words"
    assert [r.seed for _, r in panel.gallery.entries] == [7, 8] and len(panel.gallery.thumbs.children) == 2
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


def test_empty_prompt_cancel_and_errors():
    panel = GenerationPanel("sd15", device="cpu")
    _small(panel)
    panel.generate(wait=True)
    assert "Write a prompt first" in panel.status.value and panel.result is None and panel.previews_shown == 0
    panel.prompt.value = "a red fox"
    panel.generate(wait=True)
    assert len(panel.images.children) == 1
    panel.steps.value = 50
    panel.generate()
    panel.stop.click()
    panel.wait()
    assert panel.status.value.startswith("cancelled") and not panel.go.disabled and panel.stop.disabled
    assert panel.images.children == () and panel.recipe.value == "", "no old image stays under 'cancelled'"
    panel.size.options = ["65x65"]
    panel.generate(wait=True)
    assert "width 65 is not a multiple of 8" in panel.status.value and "use 64 or 72" in panel.size_note.value
    panel.tasks.selected_index = 1
    panel.generate(wait=True)
    assert "Image to image needs an input image" in panel.status.value


def test_seed_minus_one_records_a_concrete_seed_and_the_buttons_bring_it_back():
    panel = GenerationPanel("sd15", device="cpu")
    _small(panel)
    panel.prompt.value = "a red fox"
    panel.seed.value = 5
    panel.dice.click()
    assert panel.seed.value == -1 and panel.lock.description == "unlocked" and panel.lock.icon == "unlock"
    panel.press({"key": "Enter"})
    assert panel.result is None, "Enter alone does not generate"
    panel.press({"key": "Enter", "ctrlKey": True, "timeStamp": 7.0})
    panel.wait()
    shown = panel.result
    panel.press({"key": "Enter", "ctrlKey": True, "timeStamp": 7.0})  # the same key event, delivered twice
    panel.wait()
    assert panel.result is shown, "one Ctrl+Enter generates once"
    first = panel.result.records[0].seed
    assert 0 <= first < 2**32 and panel.seed.value == -1 and f"seed {first}" in panel.status.value
    panel.go.click()
    panel.wait()
    assert panel.result.records[0].seed != first, "-1 draws a new seed each time"
    panel.recycle.click()
    assert panel.seed.value == panel.result.records[0].seed and panel.lock.value
    assert panel.lock.description == "locked" and panel.lock.icon == "lock" and panel.lock.button_style == "warning"


def test_the_gallery_enlarges_reuses_settings_for_the_same_pixels_saves_and_downloads(tmp_path):
    panel = GenerationPanel("sd15", out_dir=str(tmp_path), device="cpu")
    _small(panel)
    panel.width.value, panel.height.value = 72, 56  # a free size beside the presets
    panel.prompt.value, panel.negative.value = "a red fox", "blurry"
    panel.guidance.value, panel.scheduler.value, panel.seed.value = 6.5, "Euler a", -1
    panel.go.click()
    panel.wait()
    made, rec = panel.result.images[0], panel.result.records[0]
    assert made.size == (72, 56) and rec.negative_prompt == "blurry"
    panel.gallery.thumbs.children[0].children[1].click()  # the thumbnail's button
    assert panel.gallery.view.layout.display == "" and panel.gallery.large.width == "72"
    assert Image.open(io.BytesIO(panel.gallery.large.value)).size == (72, 56), "shown at full size"
    panel.model.value = "sdxl-turbo"  # change everything
    panel.gallery.reuse_button.click()
    values = (panel.model.value, panel.prompt.value, panel.negative.value, panel.guidance.value, panel.scheduler.value,
              panel.width.value, panel.height.value, panel.steps.value, panel.seed.value, panel.lock.value)  # fmt: skip
    assert values == ("sd15", "a red fox", "blurry", 6.5, "Euler a", 72, 56, 2, rec.seed, True)
    panel.go.click()
    panel.wait()
    assert np.array_equal(_pixels(panel.result.images[0]), _pixels(made)), "reused settings give the same pixels"
    panel.seed.value = 1
    panel.gallery.show(0)
    panel.gallery.reuse_seed_button.click()
    assert panel.seed.value == rec.seed and "seed of seed" in panel.status.value
    path = panel.gallery.save()
    assert read_record(path) == rec and np.array_equal(_pixels(Image.open(path).convert("RGB")), _pixels(made))
    data = base64.b64decode(re.search(r"base64,([^']+)'", panel.gallery.download.value).group(1))
    assert from_a1111(Image.open(io.BytesIO(data)).text["parameters"]).seed == rec.seed, "the download keeps its recipe"


def test_png_info_fills_the_controls_from_a_project_png_and_an_a1111_text(tmp_path):
    made = helpers.generate("sdxl-turbo", "a lighthouse", seed=11, num_inference_steps=2, height=64, width=64,
                            device="cpu")  # fmt: skip
    path = made.save(tmp_path)[0]
    panel = GenerationPanel("sd15", device="cpu")
    _upload(panel.png_info, path.read_bytes(), "lighthouse.png")
    got = (panel.model.value, panel.prompt.value, panel.seed.value, panel.steps.value)
    assert got == ("sdxl-turbo", "a lighthouse", 11, 2)
    assert (panel.width.value, panel.height.value, panel.guidance.value) == (64, 64, 0.0)
    text = ("a castle on a hill\nNegative prompt: fog\nSteps: 25, Sampler: Euler a, CFG scale: 6, Seed: 1234, "
            "Size: 512x768, Model: v1-5-pruned-emaonly")  # fmt: skip
    panel.info_text.value = text
    panel.info_apply.click()
    got = (panel.model.value, panel.prompt.value, panel.negative.value, panel.steps.value, panel.scheduler.value,
           panel.guidance.value, panel.seed.value, panel.width.value, panel.height.value)  # fmt: skip
    assert got == ("sd15", "a castle on a hill", "fog", 25, "Euler a", 6.0, 1234, 512, 768)
    assert "chose 'sd15'" in panel.status.value and panel.size.value == "512x768"
    panel.info_text.value = "just a prompt"
    panel.info_apply.click()
    assert "lacks a field" in panel.status.value and panel.prompt.value == "a castle on a hill"


def test_edits_control_and_hires_from_their_tabs(tmp_path):
    picture = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(picture).ellipse((16, 16, 48, 48), fill="black")
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 63), fill=255)
    panel = GenerationPanel("sd15", device="cpu")
    _small(panel, steps=4)
    panel.prompt.value, panel.seed.value = "a red apple", 3
    panel.tasks.selected_index = 2
    _upload(panel.edit_image, picture)
    panel.generate(wait=True)
    assert "Inpaint needs a mask" in panel.status.value
    _upload(panel.mask, mask, "mask.png")
    panel.strength.value = 0.5
    panel.generate(wait=True)
    rec = panel.result.records[0]
    assert rec.task == "inpaint" and set(rec.inputs) == {"image", "mask_image"} and rec.extra["strength"] == 0.5
    kept = _pixels(panel.result.images[0])[:, 40:] - _pixels(picture)[:, 40:]
    assert np.abs(kept).mean() < np.abs(_pixels(panel.result.images[0])[:, :24] - _pixels(picture)[:, :24]).mean()
    panel.tasks.selected_index = 0
    panel.controlnet.value = "canny-sd15"
    panel.generate(wait=True)
    assert "needs a control image" in panel.status.value
    _upload(panel.control_image, picture)
    panel.control_scale.value, panel.hires.value, panel.hires_scale.value = 0.7, True, 1.5
    assert "sd-x4-upscaler" in panel.hires_upscaler.options, "learned upscalers are offered beside the filters"
    assert "4x-UltraSharp" in panel.hires_upscaler.options, "upscaler networks by the name A1111 shows"
    panel.hires_upscaler.value = "Nearest"
    panel.generate(wait=True)
    rec = panel.result.records[0]
    assert [(c["model"], c["scale"]) for c in rec.controls] == [("canny-sd15", 0.7)]
    assert rec.hires["scale"] == 1.5 and panel.result.images[0].size == (96, 96), "hires fix made it 1.5x larger"
    assert rec.hires["upscaler"] == "Nearest"
    panel.controlnet.value, panel.hires.value, panel.tasks.selected_index = "", False, 1
    panel.gallery.show(len(panel.gallery.entries) - 1)
    panel.gallery.reuse_button.click()
    restored = (panel.tasks.selected_index, panel.controlnet.value, panel.control_scale.value, panel.hires.value)
    assert restored == (0, "canny-sd15", 0.7, True) and panel.hires_scale.value == 1.5
    assert panel.hires_upscaler.value == "Nearest"
    sd1 = [k for k, c in helpers.registry.default().controlnets.items() if c.family == "sd1"]
    assert sd1[:5] == ["canny-sd15", "depth-sd15", "openpose-sd15", "lineart-sd15", "tile-sd15"]
    assert [v for _, v in panel.controlnet.options] == ["", *sd1, "t2i-canny-sd15"]


def test_t2i_adapters_and_an_image_prompt_from_the_panel():
    picture = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(picture).ellipse((16, 16, 48, 48), fill="black")
    panel = GenerationPanel("sd15", device="cpu")
    _small(panel)
    labels = {v: label for label, v in panel.controlnet.options}
    assert labels["canny-sd15"] == "canny-sd15 (ControlNet, canny)"
    assert labels["t2i-canny-sd15"] == "t2i-canny-sd15 (T2I-Adapter, canny)", "the user sees which is which"
    panel.prompt.value, panel.seed.value, panel.lock.value = "a red apple", 3, True
    panel.generate(wait=True)
    plain = _pixels(panel.result.images[0])
    panel.controlnet.value, panel.control_scale.value = "t2i-canny-sd15", 0.8
    _upload(panel.control_image, picture)
    panel.generate(wait=True)
    assert [(c["model"], c["scale"]) for c in panel.result.records[0].controls] == [("t2i-canny-sd15", 0.8)]
    assert not np.array_equal(_pixels(panel.result.images[0]), plain), "the adapter steers"
    panel.controlnet.value, panel.ip_use.value, panel.ip_scale.value = "", True, 0.7
    panel.generate(wait=True)
    assert "needs an image prompt" in panel.status.value
    _upload(panel.ip_image, picture, "style.png")
    panel.generate(wait=True)
    rec = panel.result.records[0]
    assert (rec.image_prompt["model"], rec.image_prompt["scale"]) == ("ip-adapter-sd15", 0.7), panel.status.value
    assert not rec.controls and not np.array_equal(_pixels(panel.result.images[0]), plain), "the picture steers"
    panel.ip_use.value, panel.ip_scale.value = False, 1.0
    panel.gallery.show(len(panel.gallery.entries) - 1)
    panel.gallery.reuse_button.click()
    assert (panel.ip_use.value, panel.ip_scale.value) == (True, 0.7) and "upload the image" not in panel.status.value
    panel.gallery.show(0)
    panel.gallery.reuse_button.click()
    assert not panel.ip_use.value, "a recipe without an image prompt turns it off"


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
