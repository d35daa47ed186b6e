"""Hires fix on the offline hub: native pass, upscale, img2img; A1111's fields; the PNG regenerates its pixels."""

import numpy as np
import pytest

import helpers
from helpers import ZooError, generate, read_record, regenerate
from helpers.edit import img2img
from helpers.hires import upscale

from .common import small


@pytest.fixture(autouse=True)
def _hub(offline_hub_dir):
    yield
    helpers.free()


def _px(image):
    return np.asarray(image).astype(int)


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
                      num_inference_steps=4, seed=7, device="cpu").images[0]  # fmt: skip
    assert np.array_equal(_px(result.images[0]), _px(by_hand)), "exactly A1111's three steps"
    path = result.save(tmp_path)[0]
    assert read_record(path) == rec
    assert np.array_equal(_px(regenerate(path).images[0]), _px(result.images[0]))


def test_hires_mistakes_are_explained():
    with pytest.raises(ZooError, match="hires scale must be above 1"):
        generate("sd15", "x", hires={"scale": 1}, **small("sd15"))
    with pytest.raises(ZooError, match="Unknown hires upscaler 'ESRGAN'; use one of Lanczos"):
        generate("sd15", "x", hires={"scale": 2, "upscaler": "ESRGAN"}, **small("sd15"))
    with pytest.raises(ZooError, match="runs no step"):
        generate("sd15", "x", hires={"scale": 2, "strength": 0.2}, **small("sd15"))
