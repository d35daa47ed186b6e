"""Each section of the generation panel on its own: what it shows for an entry, what it asks for, what it puts back.

Nothing is generated here; tests/panels/test_widgets.py drives the assembled panel on the offline hub.
"""

import datetime
import io

import pytest
from PIL import Image

from helpers.base.errors import ZooError
from helpers.base.records import Record
from helpers.panels import sections as s
from helpers.run.control import Control
from helpers.run.ip_adapter import ImagePrompt
from helpers.zoo.registry import default

REG = default()
SD15, TURBO = REG.get("sd15"), REG.get("sdxl-turbo")


def _upload(widget, image: Image.Image, name: str = "in.png") -> None:
    """What the browser sends when a person picks an image in a FileUpload."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    data = buf.getvalue()
    when = datetime.datetime.now(datetime.UTC)
    widget.value = ({"name": name, "type": "image/png", "size": len(data), "content": memoryview(data),
                     "last_modified": when},)  # fmt: skip


def _record(**fields) -> Record:
    base = dict(model="sd15", prompt="a fox", negative_prompt="", seed=5, num_inference_steps=12,
                guidance_scale=4.0, scheduler="Euler a", width=512, height=768)  # fmt: skip
    return Record(**{**base, **fields})


def test_the_model_section_filters_and_describes_the_entry():
    models = s.ModelSection(REG)
    models.refresh(select="sd15")
    assert models.model.value == "sd15" and len(models.model.options) == len(REG.models)
    models.filter.value = "pixart"
    assert [v for _, v in models.model.options] == ["pixart-alpha", "pixart-sigma"]
    models.apply(REG.get("flux-dev"))
    assert "<b>gated</b>" in models.info.value and "text to image" in models.info.value


def test_the_prompt_section_turns_the_negative_off_where_it_is_ignored_and_asks_for_a_prompt():
    prompts = s.PromptSection()
    prompts.prompt.value, prompts.negative.value = "a fox", "fog"
    prompts.show_negative(SD15, 7.5)
    assert prompts.inputs() == {"prompt": "a fox", "negative_prompt": "fog"}
    prompts.show_negative(TURBO, 0.0)
    assert prompts.negative.disabled and "does not use a negative prompt" in prompts.negative_note.value
    assert prompts.inputs()["negative_prompt"] is None
    prompts.prompt.value = "  "
    with pytest.raises(ZooError, match="Write a prompt first"):
        prompts.inputs()


def test_the_sampling_section_takes_the_defaults_and_says_what_it_could_not_put_back():
    sampling = s.SamplingSection()
    sampling.apply(SD15)
    assert sampling.inputs() == {"num_inference_steps": 30, "guidance_scale": 7.5, "scheduler": "DPM++ 2M Karras",
                                 "clip_skip": 1}  # fmt: skip
    assert sampling.clip_skip.options == (1, 2, 3, 4), "A1111's clip skip, for SD 1.x"
    assert sampling.reuse(_record(scheduler="Euler a", clip_skip=2), "sd15") == []
    assert sampling.inputs()["clip_skip"] == 2, "a PNG's clip skip is put back"
    notes = sampling.reuse(_record(scheduler="Flow Euler"), "sd15")
    assert sampling.steps.value == 12 and sampling.scheduler.value == "Euler a"
    assert notes == ["sampler 'Flow Euler' is not one of sd15's; kept Euler a"]


def test_the_size_section_says_what_is_wrong_with_a_size_and_refuses_it():
    sizes = s.SizeSection()
    sizes.apply(SD15)
    assert sizes.size.options[0] == "512x512" and (sizes.width.value, sizes.height.value) == (512, 512)
    sizes.size.value = "512x768"
    assert sizes.inputs() == {"width": 512, "height": 768} and sizes.size_note.value == ""
    sizes.width.value = 500
    assert "use 496 or 504" in sizes.size_note.value
    with pytest.raises(ZooError, match="width 500 is not a multiple of 8"):
        sizes.inputs()
    sizes.reuse(_record(width=512, height=768))
    assert (sizes.size.value, sizes.width.value) == ("512x768", 512)


def test_the_seed_section_rolls_locks_and_brings_back_the_last_seed():
    seeds = s.SeedSection()
    assert seeds.inputs() == {"seed": None, "num_images": 1} and seeds.lock.description == "unlocked"
    rolled = seeds.roll()
    assert seeds.chosen() == rolled and 0 <= rolled < 2**32
    seeds.reuse_last_seed()
    assert seeds.chosen() == rolled, "no image yet: nothing to bring back"
    seeds.last_seed = 42
    seeds.reuse_last_seed()
    assert seeds.chosen() == 42 and seeds.lock.value and seeds.lock.description == "locked"
    seeds.random_seed()
    assert seeds.chosen() is None


def test_the_task_section_asks_for_the_images_an_edit_needs():
    tasks = s.TaskSection()
    assert tasks.inputs(SD15) == {"task": "text2img"}
    tasks.selected_index = 1
    with pytest.raises(ZooError, match="Image to image needs an input image"):
        tasks.inputs(SD15)
    _upload(tasks.edit_image, Image.new("RGB", (64, 64), "red"))
    got = tasks.inputs(SD15)
    assert got["task"] == "img2img" and got["image"].size == (64, 64) and got["strength"] == 0.6
    tasks.selected_index = 2
    with pytest.raises(ZooError, match="Inpaint needs a mask"):
        tasks.inputs(SD15)
    with pytest.raises(ZooError, match="sdxl-turbo cannot do inpaint: choose another model"):
        tasks.inputs(TURBO)


def test_an_editing_model_opens_on_its_instruction_tab():
    tasks, edit = s.TaskSection(), REG.get("qwen-image-edit")
    tasks.apply(edit)
    assert tasks.task == "instruct"
    with pytest.raises(ZooError, match="Edit by instruction needs an input image"):
        tasks.inputs(edit, REG)
    _upload(tasks.edit_image, Image.new("RGB", (64, 64), "red"))
    got = tasks.inputs(edit, REG)
    assert got["task"] == "instruct" and got["image"].size == (64, 64) and "strength" not in got
    with pytest.raises(ZooError, match=r"sd15 cannot do edit by instruction.*qwen-image-edit, flux-kontext-dev can"):
        tasks.inputs(SD15, REG)
    tasks.apply(SD15)
    assert tasks.task == "text2img", "a model without the open tab's task opens on its first"


def test_the_lora_section_offers_the_familys_loras_and_notes_one_it_cannot_put_back():
    loras = s.LoraSection()
    loras.apply(SD15, REG)
    assert loras.lora.options[0] == ("none", "") and loras.inputs() == {"loras": {}}
    assert loras.reuse(_record(loras={"not-a-lora": 0.5}), "sd15") == ["LoRA 'not-a-lora' is not offered for sd15"]
    offered = loras.lora.options[1][1]
    assert loras.reuse(_record(loras={offered: 0.5}), "sd15") == []
    assert loras.inputs() == {"loras": {offered: 0.5}}


def test_the_control_section_asks_for_its_image_and_makes_a_control():
    controls = s.ControlSection(REG)
    controls.apply(SD15)
    assert controls.inputs() == {} and any("ControlNet" in label for label, _ in controls.controlnet.options)
    controls.controlnet.value, controls.preprocess.value = "canny-sd15", False
    with pytest.raises(ZooError, match="canny-sd15 needs a control image"):
        controls.inputs()
    _upload(controls.control_image, Image.new("RGB", (64, 64), "white"))
    (control,) = controls.inputs()["control"]
    assert isinstance(control, Control) and control.model == "canny-sd15" and control.scale == 1.0


def test_the_image_prompt_section_asks_for_its_picture():
    ip = s.ImagePromptSection()
    assert ip.inputs() == {}
    ip.ip_use.value = True
    with pytest.raises(ZooError, match="needs an image prompt"):
        ip.inputs()
    _upload(ip.ip_image, Image.new("RGB", (32, 32), "blue"))
    prompt = ip.inputs()["ip_adapter"]
    assert isinstance(prompt, ImagePrompt) and prompt.scale == 0.6


def test_the_hires_section_gives_its_settings_only_when_ticked():
    hires = s.HiresSection(REG)
    assert hires.inputs() == {}
    hires.reuse(_record(hires={"scale": 1.5, "strength": 0.3, "upscaler": "Lanczos"}))
    assert hires.inputs() == {"hires": {"scale": 1.5, "strength": 0.3, "upscaler": "Lanczos"}}


def test_the_png_info_section_reads_a_pasted_recipe_and_says_when_it_cannot():
    png = s.PngInfoSection()
    assert png.read() is None, "nothing uploaded, nothing read"
    text = "a castle\nNegative prompt: fog\nSteps: 25, Sampler: Euler a, CFG scale: 6, Seed: 1234, Size: 512x768"
    record = png.read(text)
    assert (record.prompt, record.negative_prompt, record.seed, record.height) == ("a castle", "fog", 1234, 768)
    with pytest.raises(ZooError, match="the pasted PNG info"):
        png.read("just a prompt")


def test_the_model_section_offers_the_plans_that_fit_and_passes_the_chosen_one():
    from helpers.run.plan import PROFILES

    section = s.ModelSection(REG, machine=PROFILES["T4 16 GB, 12.7 GB RAM (Colab)"])
    section.refresh(select="flux-dev")
    section.apply(REG.get("flux-dev"))
    labels = dict((v, k) for k, v in section.plan.options)
    assert labels[""].startswith("auto: NF4 (bitsandbytes)")
    assert list(labels)[1:] == ["nf4", "nf4+model-offload", "nf4+group-offload", "nf4+sequential-offload"]
    assert "full" not in labels and "gguf-q4_k_s" not in labels  # they do not fit a T4
    assert section.inputs() == {}
    section.plan.value = "nf4+model-offload"
    assert section.inputs() == {"plan": "nf4+model-offload"}
    record = Record("p", 1, 2, 3.5, "default", 64, 64, "flux-dev", plan={"key": "gguf-q4_k_s", "label": ""})
    assert "does not fit this machine" in section.reuse(record)[0]
