"""Clip skip, counted as A1111 counts it: the embeddings it gives, the record, regenerate, the sweep axis, refusals."""

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from PIL import Image

from helpers import ZooError, generate, load_pipeline, read_record, regenerate, sweep
from helpers.base.records import Record, from_a1111, parse_a1111
from helpers.run import clip_skip

from ..common import SMALL, px

pytestmark = pytest.mark.usefixtures("fresh_hub")

PROMPT = "a watercolor fox in the snow"


def _text_states(pipe, prompt, kwargs):
    """The prompt's embeddings as the U-Net receives them (the positive half of the guided batch)."""
    seen = []
    hook = pipe.unet.register_forward_pre_hook(
        lambda m, args, kw: seen.append(kw["encoder_hidden_states"].detach().clone()), with_kwargs=True
    )
    try:
        result = generate(pipe, prompt, seed=3, **SMALL, **kwargs)
    finally:
        hook.remove()
    return seen[0].chunk(2)[1], result


def _by_hand(pipe, prompt, layer_from_end):
    """A1111's SD 1.x encoding: the N-th hidden state from the end, then the final layer norm (last: as is)."""
    ids = pipe.tokenizer(prompt, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids  # fmt: skip
    with torch.no_grad():
        out = pipe.text_encoder(ids, output_hidden_states=True)
        if layer_from_end == 1:
            return out.last_hidden_state
        return pipe.text_encoder.text_model.final_layer_norm(out.hidden_states[-layer_from_end])


def test_clip_skip_2_is_diffusers_clip_skip_1_and_differs_from_1():
    pipe = load_pipeline("sd15", device="cpu")
    one, plain = _text_states(pipe, PROMPT, {"clip_skip": 1})
    two, skipped = _text_states(pipe, PROMPT, {"clip_skip": 2})
    three, _ = _text_states(pipe, PROMPT, {"clip_skip": 3})
    diffusers_one = pipe.encode_prompt(PROMPT, "cpu", 1, False, clip_skip=1)[0]
    assert torch.equal(two, diffusers_one), "A1111's clip skip 2 is diffusers' clip_skip=1"
    assert torch.equal(one, pipe.encode_prompt(PROMPT, "cpu", 1, False)[0]), "1 is no skip"
    assert torch.allclose(two, _by_hand(pipe, PROMPT, 2), atol=1e-6) and torch.allclose(one, _by_hand(pipe, PROMPT, 1))
    assert torch.allclose(three, _by_hand(pipe, PROMPT, 3), atol=1e-6)
    assert not torch.allclose(one, two) and not torch.allclose(two, three)
    assert not np.array_equal(px(plain.images[0]), px(skipped.images[0])), "the image changes with it"
    assert [plain.records[0].clip_skip, skipped.records[0].clip_skip] == [1, 2]


def test_weighted_prompts_read_the_same_layer():
    pipe = load_pipeline("sd15", device="cpu")
    weighted = "a (watercolor:1.3) fox in the snow"
    one, _ = _text_states(pipe, weighted, {"clip_skip": 1})
    two, _ = _text_states(pipe, weighted, {"clip_skip": 2})
    neutral, _ = _text_states(pipe, "a (watercolor:1.0) fox in the snow", {"clip_skip": 2})
    assert not torch.allclose(one, two)
    assert torch.allclose(neutral, _by_hand(pipe, PROMPT, 2), atol=1e-5), "weight 1 is the plain prompt, skipped"
    with pytest.raises(ZooError, match="clip skip 1 or 2"):
        generate(pipe, weighted, clip_skip=3, seed=1, **SMALL)


def test_the_png_says_clip_skip_as_a1111_writes_it_and_regenerates(tmp_path):
    result = generate("sd15", PROMPT, seed=4, clip_skip=2, **SMALL)
    path = result.save(tmp_path)[0]
    text = read_record(path).a1111()
    assert ", Clip skip: 2," in text and parse_a1111(text)["Clip skip"] == "2"
    assert read_record(path).clip_skip == 2
    assert "Clip skip" not in generate("sd15", PROMPT, seed=4, **SMALL).records[0].a1111(), "1 is not written"
    again = regenerate(path)
    assert again.records[0].clip_skip == 2 and np.array_equal(px(again.images[0]), px(result.images[0]))
    a1111 = "a fox\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model: x, Clip skip: 2"
    assert from_a1111(a1111).clip_skip == 2 and from_a1111(a1111.replace(", Clip skip: 2", "")).clip_skip == 1
    older = Record.from_dict({**result.records[0].__dict__, "clip_skip": None})  # made before clip skip was recorded
    assert "clip_skip" not in older.generate_kwargs(), "the model's default then"


def test_sweep_axis(tmp_path):
    base = {"model": "sd15", "prompt": PROMPT, "seed": 5, "num_inference_steps": 2, "height": 64, "width": 64}
    result = sweep(base, {"x": ("clip_skip", [1, 2])}, out_dir=tmp_path, device="cpu")
    rows = [r for r in result.rows if r["status"] == "ok"]
    assert len(rows) == 2, result.rows
    records = [read_record(tmp_path / r["path"]) for r in rows]
    assert sorted(r.clip_skip for r in records) == [1, 2]
    a, b = (px(Image.open(tmp_path / r["path"])) for r in rows)
    assert not np.array_equal(a, b)


def test_sdxl_reads_its_trained_layer_whatever_1_or_2_and_other_families_refuse():
    one = generate("sdxl-base", PROMPT, seed=2, clip_skip=1, **SMALL)
    two = generate("sdxl-base", PROMPT, seed=2, clip_skip=2, **SMALL)
    assert np.array_equal(px(one.images[0]), px(two.images[0])), "as A1111: SDXL ignores clip skip 1 vs 2"
    assert two.records[0].clip_skip == 2
    with pytest.raises(ZooError, match="penultimate"):
        generate("sdxl-base", PROMPT, clip_skip=3, **SMALL)
    with pytest.raises(ZooError, match="no CLIP clip skip"):
        generate("flux-schnell", PROMPT, clip_skip=2, **SMALL)
    with pytest.raises(ZooError, match="from 1"):
        generate("sd15", PROMPT, clip_skip=0, **SMALL)
    assert clip_skip.to_diffusers("sd1", 2) == 1 and clip_skip.to_diffusers("sd1", 1) is None


def test_cli_takes_clip_skip(tmp_path):
    from helpers.__main__ import main

    assert main(["generate", "sd15", PROMPT, "--steps", "2", "--size", "64", "--seed", "1", "--device", "cpu",
                 "--clip-skip", "2", "--out", str(tmp_path)]) == 0  # fmt: skip
    (path,) = tmp_path.glob("*.png")
    assert read_record(path).clip_skip == 2


def test_the_hires_pass_keeps_the_clip_skip(monkeypatch):
    seen, forward = [], UNet2DConditionModel.forward

    def spy(self, sample, timestep, encoder_hidden_states, *args, **kwargs):  # records, then runs diffusers' own
        seen.append(encoder_hidden_states.detach().clone())
        return forward(self, sample, timestep, encoder_hidden_states, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", spy)
    generate("sd15", PROMPT, seed=1, clip_skip=2, hires={"scale": 2, "strength": 0.5, "steps": 2}, **SMALL)
    pipe = load_pipeline("sd15", device="cpu")
    clip_skip.expose_text_model(pipe)
    expected = pipe.encode_prompt(PROMPT, "cpu", 1, False, clip_skip=1)[0]
    assert len(seen) == 4 and all(torch.equal(s.chunk(2)[1], expected) for s in seen), "both passes skip"
