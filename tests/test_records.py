"""PNG recipes: the A1111 `parameters` text, the JSON record, names that never overwrite."""

import pytest
from PIL import Image, PngImagePlugin

from helpers import ZooError, read_record
from helpers.records import Record, parse_a1111, save_image

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
