"""Generation on the offline hub: defaults, seed rules, recipes that regenerate, schedulers, bad input."""

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

import helpers
from helpers import ZooError, generate, read_record, regenerate, registry, set_scheduler
from helpers.base.schedulers import SCHEDULERS, scheduler_names
from helpers.run import cache

from ..common import FAMILY_MODELS, SMALL, px, small

pytestmark = pytest.mark.usefixtures("fresh_hub")

REG = registry.default()


@pytest.mark.parametrize("family", list(FAMILY_MODELS))
def test_seed_rules_and_png_recipe(family, tmp_path):
    key = FAMILY_MODELS[family]
    kw = small(key)
    batch = generate(key, "a lighthouse at dusk", seed=11, num_images=2, **kw)
    assert [r.seed for r in batch.records] == [11, 12]
    single = generate(key, "a lighthouse at dusk", seed=12, **kw)
    assert np.array_equal(px(batch.images[1]), px(single.images[0])), "image i of a batch == a run with seed+i"
    assert not np.array_equal(px(batch.images[0]), px(batch.images[1]))
    batched = generate(key, "a lighthouse at dusk", seed=11, num_images=2, batch_size=2, **kw)
    assert np.abs(px(batched.images[1]) - px(single.images[0])).max() <= 1, "batched arithmetic rounds alike"
    path = batch.save(tmp_path)[1]
    record = read_record(path)
    assert record == batch.records[1] and record.model == key and record.repo == REG.get(key).repo
    again = regenerate(path)
    assert np.array_equal(px(again.images[0]), px(batch.images[1])), "the PNG's recipe regenerates its pixels"


def test_registry_defaults_fill_what_the_caller_leaves_out():
    turbo = REG.get("sdxl-turbo")
    rec = generate("sdxl-turbo", "a cat", seed=1, height=64, width=64, device="cpu").records[0]
    assert (rec.num_inference_steps, rec.guidance_scale) == (turbo.defaults.steps, turbo.defaults.guidance_scale)
    assert rec.scheduler == turbo.defaults.scheduler
    rec = generate("sd15", "a cat", seed=1, **SMALL, guidance_scale=3).records[0]
    assert rec.guidance_scale == 3 and rec.scheduler == REG.get("sd15").defaults.scheduler
    assert rec.versions["diffusers"] and rec.dtype == "float32" and rec.device == "cpu"


def test_random_seed_is_drawn_and_recorded():
    a = generate("sd15", "a cat", **SMALL)
    again = generate("sd15", "a cat", seed=a.records[0].seed, **SMALL)
    assert np.array_equal(px(a.images[0]), px(again.images[0]))


def test_result_reports_timings():
    result = generate("sd15", "a cat", seed=1, **SMALL)
    t = result.timings
    assert t["total"] > 0 and t["text_encoding"] > 0 and t["denoising"] > 0 and t["decoding"] > 0
    assert t["text_encoding"] + t["denoising"] + t["decoding"] <= t["total"] * 1.01
    assert result.peak_memory_gb is None  # reported on CUDA and MPS; CPU has no allocator statistics


def test_negative_prompt_warns_where_ignored():
    with pytest.warns(UserWarning, match="'flux-schnell' ignores the negative prompt"):
        rec = generate("flux-schnell", "a cat", negative_prompt="dogs", seed=1, **SMALL).records[0]
    assert rec.negative_prompt is None
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*negative prompt.*")
        rec = generate("sd15", "a cat", negative_prompt="dogs", seed=1, **SMALL).records[0]
    assert rec.negative_prompt == "dogs"


def test_negative_prompt_changes_the_image():
    plain = generate("sd15", "a cat", seed=1, **SMALL).images[0]
    neg = generate("sd15", "a cat", negative_prompt="blurry dogs", seed=1, **SMALL).images[0]
    assert not np.array_equal(px(plain), px(neg))


def test_long_prompt_names_dropped_words_only_where_it_is_still_cut():
    prompt = "a castle on a hill " * 20 + "with golden dragons"
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*Dropped.*")
        generate("sd15", prompt, seed=1, **SMALL)  # CLIP families read long prompts in chunks (run/prompt_weights.py)
    limit = REG.get("flux-schnell").defaults.max_sequence_length
    with pytest.warns(UserWarning) as caught:
        generate("flux-schnell", "a castle on a hill " * limit + "with golden dragons " * 100, seed=1, **SMALL)
    (message,) = [str(w.message) for w in caught if "Dropped" in str(w.message)]
    assert re.search(rf'reads {limit - 1}\. Dropped: "(\S+ ){{7}}\S+ \.\.\. \(\d+ more words\)"', message), message
    assert len(message) < 250, message


@pytest.mark.parametrize("family", list(FAMILY_MODELS))
def test_every_scheduler_name_runs_for_its_family(family):
    key = FAMILY_MODELS[family]
    spec = REG.get(key)
    pipe = helpers.get_pipeline(key, device="cpu")
    denoiser = getattr(pipe, "unet", None) or pipe.transformer
    names = scheduler_names(spec.family, spec.prediction)
    assert len(names) >= 2  # the repo's own and at least one more (Z-Image's own sigmas rule out UniPC)
    for name in names:
        # 3 steps: at 2, "DPM2 a" on linspace timesteps (PixArt) ends on NaN, which `problems` reports
        out = generate(pipe, "a cat", scheduler=name, seed=3, **small(key, num_inference_steps=3))
        assert not out.problems and px(out.images[0]).std() > 0 and out.records[0].scheduler == name
        if name != "default":
            assert type(pipe.scheduler).__name__ == SCHEDULERS[name].class_name
    assert (getattr(pipe, "unet", None) or pipe.transformer) is denoiser, "changing the scheduler never reloads"
    assert helpers.get_pipeline(key, device="cpu") is pipe


def test_scheduler_options_are_applied():
    pipe = helpers.get_pipeline("sd15", device="cpu")
    set_scheduler(pipe, "DPM++ 2M SDE Karras")
    assert pipe.scheduler.config.use_karras_sigmas and pipe.scheduler.config.algorithm_type == "sde-dpmsolver++"
    set_scheduler(pipe, "Euler", {"timestep_spacing": "trailing"})
    assert pipe.scheduler.config.timestep_spacing == "trailing"
    set_scheduler(pipe, "default")
    assert type(pipe.scheduler).__name__ == "PNDMScheduler"
    assert REG.get("sdxl-lightning-4step").defaults.scheduler_options == {"timestep_spacing": "trailing"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"height": 500}, r"height 500 is not a multiple of 8.*use 496 or 504"),
        ({"width": 60, "model": "flux-schnell"}, r"width 60 is not a multiple of 16.*use 48 or 64"),
        ({"num_inference_steps": 0}, r"at least 1"),
        ({"guidance_scale": -2}, r"cannot be negative"),
        ({"scheduler": "Flow Euler"}, r"'Flow Euler' is not valid for 'sd15'.*DPM\+\+ 2M Karras"),
        ({"scheduler": "DPM++ 2M", "model": "flux-dev"}, r"not valid for 'flux-dev'.*Flow Euler"),
        ({"num_images": 0}, r"num_images must be at least 1"),
        ({"model": "sd1.6"}, r"Unknown model 'sd1.6'. Did you mean"),
    ],
)
def test_bad_input(kwargs, message):
    kw = {**SMALL, "model": "sd15", **kwargs}
    with pytest.raises((ZooError, KeyError), match=message):
        generate(kw.pop("model"), "a cat", **kw)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"height": 500}, "height 500 is not a multiple of 8"),
        ({"num_inference_steps": 0}, "at least 1"),
        ({"scheduler": "Flow Euler"}, "not valid for 'sdxl-base'"),
    ],
)
def test_arguments_are_checked_before_anything_loads(kwargs, message):
    helpers.free()
    with pytest.raises(ZooError, match=message):
        generate("sdxl-base", "a cat", **{**SMALL, **kwargs})
    assert cache.CACHE.keys() == [], "nothing was loaded (online, nothing downloaded) before the error"


def test_registry_argument_is_the_one_used(tmp_path):
    text = registry.REGISTRY_PATH.read_text()
    path = tmp_path / "mine.yaml"
    sd15 = REG.get("sd15")
    path.write_text(text.replace(f"steps: {sd15.defaults.steps}\n", "steps: 3\n", 1))
    mine = registry.load(path)
    assert mine.get("sd15").defaults.steps == 3 != sd15.defaults.steps
    rec = generate("sd15", "a cat", seed=1, height=64, width=64, device="cpu", registry=mine).records[0]
    assert rec.num_inference_steps == 3


def test_images_are_kept_when_saving_fails(tmp_path):
    result = generate("sd15", "a cat", seed=4, num_images=2, **SMALL)
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with pytest.raises(ZooError, match=r"the 2 unsaved image\(s\) were saved in .*sdzoo-unsaved-") as e:
        result.save(blocked / "out")
    kept = sorted(Path(str(e.value).split(" were saved in ")[1].split(" instead")[0]).glob("*.png"))
    assert [read_record(p).seed for p in kept] == [4, 5]
    assert np.array_equal(px(Image.open(kept[1])), px(result.images[1]))


def _png_with(tmp_path, key, text):
    info = PngImagePlugin.PngInfo()
    info.add_text(key, text)
    path = tmp_path / f"{key}.png"
    Image.new("RGB", (64, 64)).save(path, pnginfo=info)
    return path


def test_regenerate_explains_and_overrides_the_model(tmp_path):
    a1111 = "a fox\nSteps: 2, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x64, Model: v1-5-pruned-emaonly"
    path = _png_with(tmp_path, "parameters", a1111)
    with pytest.raises(ZooError, match=r"recipe names model 'v1-5-pruned-emaonly'.*Did you mean 'sd15'\?"):
        regenerate(path)
    result = regenerate(path, model="sd15", device="cpu")
    assert result.records[0].model == "sd15" and result.records[0].seed == 5
    partial = _png_with(tmp_path, "sdzoo", '{"prompt": "a fox", "seed": 1')
    with pytest.raises(ZooError, match=r"sdzoo.png: its 'sdzoo' recipe is damaged or incomplete"):
        regenerate(partial)
