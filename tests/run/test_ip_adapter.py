"""IP-Adapter on the offline hub: an image prompt steers, regenerates from its PNG, leaves the cached model clean."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

import helpers
from helpers import ZooError, generate, read_record, regenerate, registry
from helpers.base.images import fingerprint
from helpers.run.ip_adapter import ImagePrompt

from ..common import FAMILY_MODELS, px, small

pytestmark = pytest.mark.usefixtures("fresh_hub")

REG = registry.default()


def _picture(colour) -> Image.Image:
    image = Image.new("RGB", (48, 48), (240, 240, 230))
    ImageDraw.Draw(image).ellipse((8, 8, 40, 40), fill=colour)
    return image


RED, BLUE = _picture((220, 30, 30)), _picture((30, 60, 220))


@pytest.mark.parametrize("key", sorted(REG.ip_adapters))
def test_every_ip_adapter_loads_steers_and_regenerates(key, tmp_path):
    model = FAMILY_MODELS[REG.ip_adapter(key).family]
    kw = small(model, seed=4)
    plain = generate(model, "a cat", **kw).images[0]
    result = generate(model, "a cat", ip_adapter=ImagePrompt(RED, 0.8, key), **kw)
    rec = result.records[0]
    assert not np.array_equal(px(result.images[0]), px(plain)), "the image prompt changes the picture"
    assert rec.image_prompt == {"model": key, "scale": 0.8, "image": fingerprint(RED)}
    assert f'ControlNet 0: "Module: ip-adapter_clip, Model: {key} [' in rec.a1111()
    other = generate(model, "a cat", ip_adapter=(BLUE, 0.8), **kw).images[0]
    assert not np.array_equal(px(other), px(result.images[0])), "another picture steers elsewhere"
    path = result.save(tmp_path)[0]
    assert read_record(path) == rec
    again = regenerate(path, ip_adapter_image=RED)
    assert np.array_equal(px(again.images[0]), px(result.images[0])), "the PNG's recipe remakes its pixels"
    after = generate(model, "a cat", **kw).images[0]
    assert np.array_equal(px(after), px(plain)), "the adapter is unloaded: the cached model draws as before"


def test_the_adapter_is_unloaded_even_when_the_call_fails():
    pipe = helpers.get_pipeline("sd15", device="cpu")
    processors = {k: type(v) for k, v in pipe.unet.attn_processors.items()}

    def cancel(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate("sd15", "a cat", ip_adapter=RED, on_step=cancel, **small("sd15", seed=1))
    assert {k: type(v) for k, v in pipe.unet.attn_processors.items()} == processors
    assert pipe.unet.encoder_hid_proj is None and pipe.image_encoder is None


def test_scale_zero_leaves_the_model_alone_and_the_encoder_loads_once():
    kw = small("sd15", seed=2)
    plain = generate("sd15", "a cat", **kw).images[0]
    off = generate("sd15", "a cat", ip_adapter=(RED, 0.0), **kw).images[0]
    assert np.abs(px(off) - px(plain)).max() <= 1
    base = helpers.get_pipeline("sd15", device="cpu")
    encoders = helpers.run.ip_adapter.extra_modules(base)
    generate("sd15", "a cat", ip_adapter=BLUE, **kw)
    assert len(encoders) == 1 and helpers.run.ip_adapter.extra_modules(base)[0] is encoders[0]


def test_ip_adapter_with_a_controlnet():
    edges = helpers.control.preprocess(RED, "canny").resize((64, 64))
    kw = small("sd15", seed=6)
    both = generate("sd15", "a cat", control={"canny-sd15": edges}, ip_adapter=(RED, 0.7), **kw)
    rec = both.records[0]
    assert rec.controls[0]["model"] == "canny-sd15" and rec.image_prompt["model"] == "ip-adapter-sd15"
    assert 'ControlNet 1: "Module: ip-adapter_clip' in rec.a1111()
    again = regenerate(rec, control_images=[edges], ip_adapter_image=RED)
    assert np.array_equal(px(again.images[0]), px(both.images[0]))


def test_ip_adapter_mistakes_are_explained(tmp_path):
    with pytest.raises(ZooError, match=r"IP-Adapter 'ip-adapter-sdxl' is for sdxl models; 'sd15' is sd1"):
        generate("sd15", "x", ip_adapter=ImagePrompt(RED, model="ip-adapter-sdxl"), **small("sd15"))
    with pytest.raises(ZooError, match="No IP-Adapter for flux models yet"):
        generate("flux-schnell", "x", ip_adapter=RED, **small("flux-schnell"))
    with pytest.raises(ZooError, match="Unknown IP-Adapter 'ip-adapter-sd16'. Did you mean 'ip-adapter-sd15'"):
        generate("sd15", "x", ip_adapter=ImagePrompt(RED, model="ip-adapter-sd16"), **small("sd15"))
    path = generate("sd15", "x", ip_adapter=RED, **small("sd15", seed=1)).save(tmp_path)[0]
    with pytest.raises(ZooError, match=r"regenerate\(path, ip_adapter_image=IMAGE\)"):
        regenerate(path)
    with pytest.raises(ZooError, match="not the one this image was made with"):
        regenerate(path, ip_adapter_image=BLUE)


def test_a_pipeline_without_image_prompts_says_so():
    edges = helpers.control.preprocess(RED, "canny").resize((64, 64))
    with pytest.raises(ZooError, match="StableDiffusionAdapterPipeline takes no image prompt in diffusers"):
        generate("sd15", "x", control={"t2i-canny-sd15": edges}, ip_adapter=RED, **small("sd15"))
