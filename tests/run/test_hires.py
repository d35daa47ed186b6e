"""Hires fix on the offline hub: native pass, upscale, img2img; A1111's fields; the PNG regenerates its pixels."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

import helpers
from helpers import ZooError, generate, read_record, regenerate, sweep
from helpers.run.control import preprocess
from helpers.run.edit import img2img
from helpers.run.hires import upscale
from helpers.run.upscale import upscale as learned_upscale

from ..common import px, small

pytestmark = pytest.mark.usefixtures("fresh_hub")


@pytest.mark.parametrize("key", ["sd15", "sdxl-base"])
def test_hires_fix_is_a_native_pass_an_upscale_and_an_img2img(key, tmp_path):
    kw = small(key, seed=7, num_inference_steps=4)
    hires = {"scale": 2, "strength": 0.5}
    result = generate(key, "a castle", hires=hires, **kw)
    rec = result.records[0]
    assert result.images[0].size == (128, 128) and (rec.width, rec.height) == (64, 64), "Size is the first pass's"
    assert rec.hires == {"scale": 2.0, "strength": 0.5, "steps": 4, "upscaler": "Lanczos"}
    text = rec.a1111()
    assert "Size: 64x64" in text and "Hires upscale: 2, Hires steps: 4, Hires upscaler: Lanczos" in text
    assert "Denoising strength: 0.5" in text
    first = generate(key, "a castle", **kw).images[0]
    by_hand = img2img(key, upscale(first, rec.hires, helpers.get(key).family), "a castle", strength=0.5,
                      num_inference_steps=8, seed=7, device="cpu").images[0]  # fmt: skip
    assert np.array_equal(px(result.images[0]), px(by_hand)), "A1111's three steps; the second runs its 4 steps"
    path = result.save(tmp_path)[0]
    assert read_record(path) == rec
    assert np.array_equal(px(regenerate(path).images[0]), px(result.images[0]))


def test_hires_fix_with_a_registry_upscaler(tmp_path):
    kw = small("sd15", seed=5, num_inference_steps=4, height=32, width=32)
    hires = {"scale": 2, "strength": 0.5, "upscaler": "sd-x4-upscaler", "upscaler_steps": 2}
    result = generate("sd15", "a castle", hires=hires, **kw)
    rec = result.records[0]
    assert result.images[0].size == (64, 64) and "Hires upscaler: sd-x4-upscaler" in rec.a1111()
    first = generate("sd15", "a castle", **kw).images[0]
    learned = upscale_with("sd-x4-upscaler", first)
    assert learned.size == (128, 128), "the x4 upscaler's own factor, then resized to the hires scale"
    by_hand = img2img("sd15", learned.resize((64, 64), Image.Resampling.LANCZOS), "a castle", strength=0.5,
                      num_inference_steps=8, seed=5, device="cpu").images[0]  # fmt: skip
    assert np.array_equal(px(result.images[0]), px(by_hand)), "the learned upscaler's pixels, repainted"
    lanczos = generate("sd15", "a castle", hires={"scale": 2, "strength": 0.5}, **kw).images[0]
    assert not np.array_equal(px(lanczos), px(result.images[0]))
    path = result.save(tmp_path)[0]
    assert np.array_equal(px(regenerate(path).images[0]), px(result.images[0]))


@pytest.mark.parametrize("steps, strength", [(10, 0.45), (4, 0.3), (3, 1.0)])
def test_the_second_pass_runs_the_hires_steps_as_a1111_does(steps, strength):
    # A1111 runs "Hires steps" denoising steps whatever the strength (setup_img2img_steps); count the U-Net's calls.
    pipe = helpers.get_pipeline("sd15", device="cpu")
    calls = []
    hook = pipe.unet.register_forward_hook(lambda *args: calls.append(1))
    try:
        result = generate("sd15", "a castle", hires={"scale": 2, "strength": strength, "steps": steps},
                          **small("sd15", seed=1, num_inference_steps=2, height=32, width=32))  # fmt: skip
    finally:
        hook.remove()
    rec, t = result.records[0], result.timings
    assert len(calls) == 2 + steps and rec.hires["steps"] == steps and f"Hires steps: {steps}," in rec.a1111()
    assert 0 < t["hires"] < t["total"] and t["total"] >= t["denoising"] + t["hires"], "the call's time includes it"


def test_the_second_pass_keeps_the_calls_loras():
    kw = small("sd15", seed=3, num_inference_steps=2, height=32, width=32)
    lora = {"lcm-lora-sdv1-5": 1.0}
    result = generate("sd15", "a castle", loras=lora, hires={"scale": 2, "strength": 0.5, "steps": 2}, **kw)
    first = generate("sd15", "a castle", loras=lora, **kw).images[0]
    big = upscale(first, result.records[0].hires, "sd1")
    again = dict(strength=0.5, num_inference_steps=4, seed=3, device="cpu")
    with_lora = img2img("sd15", big, "a castle", loras=lora, **again).images[0]
    assert np.array_equal(px(result.images[0]), px(with_lora)), "the LoRA repaints the second pass too"
    assert not np.array_equal(px(result.images[0]), px(img2img("sd15", big, "a castle", **again).images[0]))


def upscale_with(key, image):
    """The learned upscaler as the hires fix runs it: the image's prompt and seed, the entry's defaults."""
    return learned_upscale(image, key, prompt="a castle", seed=5, num_inference_steps=2, device="cpu")


def test_hires_fix_keeps_the_control_in_its_second_pass(tmp_path):
    edges = preprocess(_shapes(), "canny")
    kw = small("sd15", seed=2, num_inference_steps=4)
    hires = {"scale": 2, "strength": 0.5}
    result = generate("sd15", "a house", control={"canny-sd15": edges}, hires=hires, **kw)
    first = generate("sd15", "a house", control={"canny-sd15": edges}, **kw).images[0]
    big = upscale(first, result.records[0].hires, "sd1")
    again = dict(strength=0.5, num_inference_steps=8, seed=2, device="cpu")  # runs the 4 hires steps, as A1111
    upscaled_edges = edges.resize(big.size, Image.Resampling.LANCZOS)
    controlled = img2img("sd15", big, "a house", control={"canny-sd15": upscaled_edges}, **again)
    assert np.array_equal(px(result.images[0]), px(controlled.images[0])), "the control image, upscaled, again"
    plain = img2img("sd15", big, "a house", **again).images[0]
    assert not np.array_equal(px(result.images[0]), px(plain)), "the second pass is steered too"
    path = result.save(tmp_path)[0]
    assert np.array_equal(px(regenerate(path, control_images=[edges]).images[0]), px(result.images[0]))


def _shapes() -> Image.Image:
    image = Image.new("RGB", (64, 64), (30, 30, 30))
    ImageDraw.Draw(image).rectangle((12, 12, 44, 40), fill=(220, 200, 40))
    return image


def test_hires_mistakes_are_explained():
    with pytest.raises(ZooError, match="hires scale must be above 1"):
        generate("sd15", "x", hires={"scale": 1}, **small("sd15"))
    with pytest.raises(ZooError, match="Unknown hires upscaler 'ESRGAN'; use one of Lanczos.*sd-x4-upscaler"):
        generate("sd15", "x", hires={"scale": 2, "upscaler": "ESRGAN"}, **small("sd15"))
    with pytest.raises(ZooError, match=r"hires steps must be at least 1 \(got 0\)"):
        generate("sd15", "x", hires={"scale": 2, "steps": 0}, **small("sd15"))
    with pytest.raises(ZooError, match=r"hires scale must be above 1 and at most 4 \(got 0\)"):
        generate("sd15", "x", hires=0, **small("sd15"))  # 0 is a scale, refused; not "off"
    with pytest.raises(ZooError, match="hires fix with ControlNet .* flux models lack"):
        generate("flux-schnell", "x", control={"canny-flux-dev": _shapes()}, hires=2, **small("flux-schnell"))
    with pytest.raises(ZooError, match="upscaler_steps is for diffusion upscalers"):
        generate("sd15", "x", hires={"scale": 2, "upscaler_steps": 2}, **small("sd15"))


def test_hires_upscaler_is_a_sweep_axis(tmp_path):
    base = {"model": "sd15", "prompt": "a castle", "seed": 4, "height": 32, "width": 32, "num_inference_steps": 4}
    result = sweep(base, {"x": ("hires_upscaler", ["Nearest", "Lanczos"])}, out_dir=tmp_path, device="cpu")
    assert [r["status"] for r in result.rows] == ["ok", "ok"]
    paths = sorted((tmp_path / "images").glob("*.png"))
    records = [read_record(p) for p in paths]
    assert sorted(r.hires["upscaler"] for r in records) == ["Lanczos", "Nearest"]
    a, b = (Image.open(p) for p in paths)
    assert a.size == (64, 64) and not np.array_equal(px(a), px(b))
