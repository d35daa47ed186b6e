"""PNG recipes: the A1111 `parameters` text, the JSON record, names that never overwrite."""

import dataclasses
import json
import re

import pytest
from PIL import Image, PngImagePlugin

from helpers import ZooError, read_record
from helpers.base.records import Record, parse_a1111, save_image

REC = Record(
    prompt="a fox, watercolor\nsecond line",
    negative_prompt="blurry, low quality",
    seed=1234,
    num_inference_steps=30,
    guidance_scale=7.5,
    scheduler="DPM++ 2M Karras",
    width=768,
    height=512,
    model="sd15",
    versions={"diffusers": "0.42.1"},
)


def test_a1111_text_is_what_png_info_readers_expect():
    text = REC.a1111()
    assert text.splitlines()[-1] == (
        "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 1234, Size: 768x512, Model: sd15, "
        "Version: diffusers 0.42.1"
    )
    parsed = parse_a1111(text)
    assert parsed["prompt"] == REC.prompt and parsed["negative_prompt"] == REC.negative_prompt
    assert parsed["Seed"] == "1234" and parsed["Size"] == "768x512" and parsed["Sampler"] == "DPM++ 2M Karras"


def test_saving_never_overwrites(tmp_path):
    red, blue = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    first = save_image(red, REC, tmp_path)
    second = save_image(blue, REC, tmp_path)
    assert (first.name, second.name) == ("sd15-1234-0001.png", "sd15-1234-0002.png")
    assert Image.open(first).getpixel((0, 0)) == (255, 0, 0)
    with Image.open(second) as im:
        assert im.text["parameters"] == REC.a1111()
    assert read_record(second) == REC


def test_reads_a1111_webui_pngs(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text(
        "parameters",
        "masterpiece, 1girl\nNegative prompt: lowres\n"
        "Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 42, Size: 512x768, "
        'Model hash: abc123, Model: sd15, Lora hashes: "a: 1, b: 2", Version: v1.10.1',
    )
    path = tmp_path / "webui.png"
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    rec = read_record(path)
    assert (rec.prompt, rec.negative_prompt, rec.seed, rec.num_inference_steps) == (
        "masterpiece, 1girl",
        "lowres",
        42,
        20,
    )
    assert (rec.scheduler, rec.guidance_scale, rec.width, rec.height, rec.model) == ("Euler a", 7.0, 512, 768, "sd15")


def test_png_without_record_is_explained(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(path)
    with pytest.raises(ZooError, match="holds no generation record"):
        read_record(path)
    with pytest.raises(ZooError, match="cannot read it as an image"):
        read_record(tmp_path / "missing.png")


# --- the A1111 format as the web UI itself writes and reads it (modules/infotext_utils.py, processing.py) --------

# A real A1111 1.10 infotext: the field order its `create_infotext` writes, values with commas or colons quoted
# by its `quote()` (JSON), a negative-prompt line, a multi-line prompt.
A1111_TEXT = (
    "masterpiece, best quality, a fox in a misty forest\n"
    "<lora:add_detail:0.6>\n"
    "Negative prompt: (worst quality:1.4), lowres, bad hands\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, VAE hash: 735e4c3a44, "
    "VAE: vae-ft-mse-840000-ema-pruned.safetensors, Denoising strength: 0.45, Clip skip: 2, "
    'ADetailer prompt: "detailed face, (freckles:0.8)", Hires upscale: 2, Hires steps: 10, '
    'Hires upscaler: R-ESRGAN 4x+, Lora hashes: "add_detail: 7c6bad76eb54", '
    'ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1, '
    'Guidance Start: 0, Guidance End: 1, Control Mode: Balanced", Version: v1.10.1'
)
# A1111's own rules, written here apart from helpers/base/records.py so that the two cannot drift together.
RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
RE_SIZE = re.compile(r"^(\d+)x(\d+)$")
QUOTE = '"'


def a1111_quote(text):
    text = str(text)
    return text if "," not in text and "\n" not in text and ":" not in text else json.dumps(text, ensure_ascii=False)


def a1111_parse(x: str) -> dict:
    """`parse_generation_parameters`, reduced to what it does to the text."""
    res, prompt, negative, done = {}, "", "", False
    *lines, lastline = x.strip().split("\n")
    if len(RE_PARAM.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done, line = True, line[16:].strip()
        if done:
            negative += ("" if negative == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    res["Prompt"], res["Negative prompt"] = prompt, negative
    for k, v in RE_PARAM.findall(lastline):
        if v[0] == '"' and v[-1] == '"':
            v = json.loads(v)
        m = RE_SIZE.match(v)
        if m is not None:
            res[f"{k}-1"], res[f"{k}-2"] = m.group(1), m.group(2)
        else:
            res[k] = v
    return res


def test_our_a1111_text_is_written_and_read_back_by_the_web_ui_rules():
    control = {"model": "canny-sd15", "scale": 0.8, "start": 0, "end": 0.5, "image": "sha256:0123456789abcdef"}
    rec = dataclasses.replace(
        REC, loras={"lcm-lora-sdv1-5": 0.5, "detail": 1.0}, controls=[control], task="img2img",
        extra={"strength": 0.6}, hires={"scale": 2, "strength": 0.45, "steps": 10, "upscaler": "Lanczos"},
    )  # fmt: skip
    text = rec.a1111()
    fields = a1111_parse(text)
    assert fields["Prompt"] == rec.prompt and fields["Negative prompt"] == rec.negative_prompt
    assert (fields["Steps"], fields["Sampler"], fields["CFG scale"]) == ("30", rec.scheduler, "7.5")
    assert fields["Seed"] == "1234"
    assert (fields["Size-1"], fields["Size-2"], fields["Model"]) == ("768", "512", "sd15")
    assert fields["Lora"] == "lcm-lora-sdv1-5:0.5 detail:1" and fields["Task"] == "img2img"
    unit = "Module: none, Model: canny-sd15 [01234567], Weight: 0.8, Guidance Start: 0, Guidance End: 0.5"
    assert fields["ControlNet 0"] == unit
    assert (fields["Denoising strength"], fields["Hires upscale"], fields["Hires upscaler"]) == ("0.45", "2", "Lanczos")
    # ... and the settings line is exactly what A1111's writer makes of these fields: `k: quote(v)`, comma-joined.
    pairs = RE_PARAM.findall(text.splitlines()[-1])
    rebuilt = ", ".join(f"{k}: {a1111_quote(json.loads(v) if v[:1] == QUOTE else v)}" for k, v in pairs)
    assert rebuilt == text.splitlines()[-1]
    assert 'Lora: "lcm-lora-sdv1-5:0.5 detail:1"' in text, "a value with a colon is quoted, as A1111 quotes it"


def test_a_real_a1111_infotext_is_read_as_the_web_ui_reads_it(tmp_path):
    theirs, ours = a1111_parse(A1111_TEXT), parse_a1111(A1111_TEXT)
    assert ours["prompt"] == theirs["Prompt"] == A1111_TEXT.split("\nNegative")[0]
    assert ours["negative_prompt"] == theirs["Negative prompt"] == "(worst quality:1.4), lowres, bad hands"
    for key in ("Steps", "Sampler", "Schedule type", "Model hash", "VAE", "Hires upscaler", "Lora hashes", "Version"):
        assert ours[key] == theirs[key], key
    assert ours["ControlNet 0"] == theirs["ControlNet 0"] and ours["ControlNet 0"].startswith("Module: canny, Model")
    assert ours["ADetailer prompt"] == "detailed face, (freckles:0.8)"
    assert ours["Lora hashes"] == "add_detail: 7c6bad76eb54"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111_TEXT)
    path = tmp_path / "webui.png"
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    rec = read_record(path)
    assert (rec.seed, rec.num_inference_steps, rec.guidance_scale, rec.width, rec.height) == (1, 20, 7.0, 512, 768)
    assert (rec.model, rec.scheduler) == ("v1-5-pruned-emaonly", "DPM++ 2M Karras"), "Sampler + Schedule type"


@pytest.mark.usefixtures("hub")
def test_a1111_schedule_types_are_kept_and_used_again(tmp_path):
    import numpy as np

    import helpers

    text = ("a castle\nSteps: 3, Sampler: DPM++ 2M, Schedule type: Exponential, CFG scale: 7, Seed: 4, "
            "Size: 64x64, Model: sd15")  # fmt: skip
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    Image.new("RGB", (64, 64)).save(tmp_path / "a1111.png", pnginfo=info)
    rec = read_record(tmp_path / "a1111.png")
    assert (rec.scheduler, rec.schedule_type) == ("DPM++ 2M", "Exponential")
    assert rec.scheduler_options == {"timestep_spacing": "linspace", "use_exponential_sigmas": True}
    again = helpers.regenerate(tmp_path / "a1111.png", device="cpu")
    assert again.records[0].schedule_type == "Exponential" and "Schedule type: Exponential" in again.records[0].a1111()
    plain = helpers.generate("sd15", "a castle", num_inference_steps=3, guidance_scale=7, seed=4, height=64, width=64,
                             scheduler="DPM++ 2M", device="cpu")  # fmt: skip
    assert not np.array_equal(np.asarray(again.images[0]), np.asarray(plain.images[0])), "the schedule was used"
    with pytest.warns(UserWarning, match="'Align Your Steps' has no diffusers equivalent"):
        other = parse_a1111(text) and read_record_text(text.replace("Exponential", "Align Your Steps"))
    assert (other.schedule_type, other.scheduler_options) == ("Align Your Steps", {})


def read_record_text(text):
    from helpers.base.records import from_a1111

    return from_a1111(text)
