"""What the generation panel's inputs mean, without widgets: sizes, the progress line, PNG info."""

import io

import pytest
from PIL import Image, PngImagePlugin

import helpers
from helpers.base.errors import ZooError
from helpers.panels.settings import (
    StepClock,
    controlnet_choices,
    model_for,
    negative_off,
    progress_text,
    record_from_png,
    record_from_text,
    size_problem,
)

A1111 = "a fox\nNegative prompt: fog\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x768, Model: sd15"


def test_the_progress_line_counts_steps_speed_and_time_left():
    assert progress_text(12, 30, 2.1) == "step 12/30 · 2.1 it/s · 9 s left"
    assert progress_text(1, 30, None) == "step 1/30"
    now = iter([100.0, 100.5, 101.0, 110.0])
    clock = StepClock(lambda: next(now))
    assert [clock(1, 5), clock(2, 5), clock(3, 5)] == ["step 1/5", "step 2/5 · 2.0 it/s · 2 s left",
                                                        "step 3/5 · 2.0 it/s · 1 s left"]  # fmt: skip
    clock.reset()
    assert clock(1, 5) == "step 1/5", "a new run measures from its own first step (loading does not count)"


def test_sizes_are_checked_against_the_family_multiple():
    sd15, sd3 = helpers.get("sd15"), helpers.get("sd3-medium")
    assert size_problem(sd15, 512, 768) is None
    assert size_problem(sd15, 512, 4) == "height 4 is not a multiple of 8, which sd1 models need: use 8"
    assert size_problem(sd3, 1000, 1024) == "width 1000 is not a multiple of 16, which sd3 models need: use 992 or 1008"


def test_why_the_negative_prompt_is_off_and_which_controlnets_fit():
    assert "distilled" in negative_off(helpers.get("sdxl-turbo"), 0.0)
    assert negative_off(helpers.get("sd15"), 7.5) is None and "guidance 1" in negative_off(helpers.get("sd15"), 1)
    assert ("none", "") == controlnet_choices(helpers.get("sdxl-base"), helpers.registry.default())[0]
    assert {v for _, v in controlnet_choices(helpers.get("sdxl-base"), helpers.registry.default())[1:]} == {
        k for k, c in helpers.registry.default().controlnets.items() if c.family == "sdxl"
    }


def test_png_info_from_an_a1111_png_or_text_and_its_model():
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG", pnginfo=info)
    rec = record_from_png("web-ui.png", buf.getvalue())
    assert (rec.prompt, rec.negative_prompt, rec.seed, rec.width, rec.height) == ("a fox", "fog", 5, 512, 768)
    assert record_from_text(A1111) == rec
    reg = helpers.registry.default()
    assert model_for(rec, reg, "sdxl-base") == ("sd15", "")
    other = record_from_text(A1111.replace("Model: sd15", "Model: v1-5-pruned-emaonly"))
    assert model_for(other, reg, "sdxl-base")[0] == "sd15"
    with pytest.raises(ZooError, match="'notes.png': the PNG holds no generation record"):
        record_from_png("notes.png", _plain_png())
    with pytest.raises(ZooError, match="the pasted PNG info: .*lacks a field"):
        record_from_text("only a prompt")


def _plain_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    return buf.getvalue()
