"""Qwen-Image and the instruction editors (FLUX.1 Kontext, Qwen-Image-Edit) on the offline hub."""

import types
import warnings

import numpy as np
import pytest
from PIL import Image

from helpers import ZooError, compare, generate, load_pipeline, read_record, regenerate
from helpers.__main__ import main
from helpers.base.images import fingerprint
from helpers.offline.hub import write_adapter_folder
from helpers.run import styles
from helpers.run.cache import get_pipeline
from helpers.run.edit import img2img, instruct
from helpers.zoo.registry import default

pytestmark = pytest.mark.usefixtures("fresh_hub")

NEW = ["qwen-image", "qwen-image-edit", "flux-kontext-dev"]
IMG = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
OTHER = Image.fromarray(np.full((64, 64, 3), (200, 40, 40), dtype=np.uint8))
FAST = {"num_inference_steps": 2, "device": "cpu", "seed": 1}
# Kontext resizes its input to about 1 MP as the real model wants; on tiny models the test keeps it small.
SMALL = {"flux-kontext-dev": {"_auto_resize": False}, "qwen-image-edit": {}}


def _px(image) -> np.ndarray:
    return np.asarray(image).astype(int)


def test_qwen_image_generates_with_true_cfg_and_its_own_sampler():
    pipe = get_pipeline("qwen-image", device="cpu")
    calls = []
    hook = pipe.transformer.register_forward_hook(lambda *_: calls.append(1))
    try:
        result = generate("qwen-image", "a lighthouse", height=64, width=48, **FAST)
        guided = len(calls)
        unguided = generate("qwen-image", "a lighthouse", height=64, width=48, guidance_scale=1.0, **FAST)
    finally:
        hook.remove()
    rec, px = result.records[0], _px(result.images[0])
    assert result.images[0].size == (48, 64) and px.std() > 5 and rec.guidance_scale == 4.0
    assert (guided, len(calls) - guided) == (4, 2), "guidance 4 runs real CFG (true_cfg_scale, empty negative prompt)"
    assert np.abs(_px(unguided.images[0]) - px).max() > 0
    config = pipe.scheduler.config  # the repo's scheduler is the default sampler: resolution-dependent shift
    assert config.use_dynamic_shifting and config.time_shift_type == "exponential" and config.shift_terminal == 0.02
    negative = generate("qwen-image", "a lighthouse", negative_prompt="blurry", height=64, width=48, **FAST)
    assert np.abs(_px(negative.images[0]) - px).max() > 0 and negative.records[0].negative_prompt == "blurry"
    unipc = generate("qwen-image", "a lighthouse", height=64, width=48, scheduler="Flow UniPC", **FAST)
    assert unipc.records[0].scheduler == "Flow UniPC" and np.abs(_px(unipc.images[0]) - px).max() > 0


def test_qwen_image_img2img_and_regenerate(tmp_path):
    result = img2img("qwen-image", IMG, "a watercolor", strength=0.75, **FAST)
    assert result.records[0].inputs == {"image": fingerprint(IMG)} and result.images[0].size == IMG.size
    path = result.save(tmp_path)[0]
    again = regenerate(path, image=IMG)
    assert np.array_equal(_px(again.images[0]), _px(result.images[0]))


@pytest.mark.parametrize("key", ["qwen-image-edit", "flux-kontext-dev"])
def test_an_editing_model_edits_by_instruction_and_regenerates(key, tmp_path):
    result = instruct(key, IMG, "make it night", **FAST, **SMALL[key])
    rec, out = result.records[0], _px(result.images[0])
    assert result.images[0].size == IMG.size and rec.task == "instruct" and rec.model == key
    assert rec.inputs == {"image": fingerprint(IMG)}
    assert np.abs(out - _px(IMG)).mean() > 10, "the edit changes the picture"
    text = rec.a1111()
    assert "Task: instruct" in text and f"Input image: {fingerprint(IMG)[7:15]}" in text and "make it night" in text
    path = result.save(tmp_path)[0]
    assert read_record(path).inputs["image"] == fingerprint(IMG)
    again = regenerate(path, image=IMG)
    assert np.array_equal(_px(again.images[0]), out), "regenerate makes the same pixels"
    with pytest.raises(ZooError, match="not the one this image was made from"):
        regenerate(path, image=OTHER)
    other = instruct(key, OTHER, "make it night", **FAST, **SMALL[key])
    # the same seed and instruction on another picture: only the input differs, so any change is the input's doing
    # (random tiny transformers attend to the input's tokens weakly: Qwen ~0.3, Kontext ~0.02 levels on average)
    assert np.abs(_px(other.images[0]) - out).mean() > 0.01, "the edit depends on the input image"


def test_an_editing_model_with_an_image_edits_by_default():
    result = generate("flux-kontext-dev", "make it night", image=IMG, **FAST, **SMALL["flux-kontext-dev"])
    assert result.records[0].task == "instruct"


def test_a_missing_input_image_is_refused_clearly():
    with pytest.raises(ZooError, match=r"needs the image to edit: instruct\(model, PATH_URL_OR_PIL, instruction\)"):
        instruct("flux-kontext-dev", None, "make it night", **FAST)
    with pytest.raises(ZooError, match=r"task 'instruct' needs an input image.*helpers.edit.instruct"):
        generate("qwen-image-edit", "make it night", **FAST)
    with pytest.raises(ZooError, match="takes no mask_image"):
        generate("flux-kontext-dev", "x", image=IMG, mask_image=IMG.convert("L"), task="instruct", **FAST)


def test_a_model_that_cannot_edit_by_instruction_names_those_that_can():
    with pytest.raises(ZooError, match=r"'sd15' cannot edit an image by instruction") as e:
        instruct("sd15", IMG, "make it night", **FAST)
    assert "flux-kontext-dev" in str(e.value) and "qwen-image-edit" in str(e.value) and "img2img" in str(e.value)


def test_an_editing_model_loads_for_its_own_task():
    assert type(load_pipeline("flux-kontext-dev", device="cpu")).__name__ == "FluxKontextPipeline"
    assert type(load_pipeline("qwen-image-edit", device="cpu")).__name__ == "QwenImageEditPlusPipeline"
    with pytest.raises(ZooError, match="'qwen-image' cannot edit an image by instruction.*qwen-image-edit"):
        load_pipeline("qwen-image", task="instruct", device="cpu")


def test_cli_edits_with_an_image(tmp_path, capsys):
    src = tmp_path / "in.png"
    IMG.save(src)
    args = ["generate", "flux-kontext-dev", "make it night", "--image", str(src), "--steps", "2", "--seed", "3",
            "--device", "cpu", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 0
    path = capsys.readouterr().out.strip().splitlines()[-1]
    rec = read_record(path)
    assert rec.task == "instruct" and rec.inputs == {"image": fingerprint(IMG)} and Image.open(path).size == (64, 64)
    assert main(["generate", "flux-kontext-dev", "make it night", "--out", str(tmp_path / "out")]) == 2
    assert "needs an input image" in capsys.readouterr().err


def test_compare_puts_qwen_image_beside_sd15(tmp_path):
    result = compare(["qwen-image", "sd15"], "a fox", seeds=1, out_dir=tmp_path, height=64, width=64, device="cpu",
                     num_inference_steps=2)  # fmt: skip
    assert all(r["status"] == "ok" for r in result.sweep.rows) and list(result.table.index) == ["qwen-image", "sd15"]


def test_a_qwen_image_lora_loads_and_changes_the_picture(tmp_path):
    spec = default().get("qwen-image")
    write_adapter_folder(types.SimpleNamespace(kind="lora", weight_name="tiny-qwen-lora.safetensors"), spec, tmp_path)
    pipe = get_pipeline("qwen-image", device="cpu")
    plain = _px(generate(pipe, "a fox", height=64, width=64, **FAST).images[0])
    name = styles.load_lora(pipe, str(tmp_path / "tiny-qwen-lora.safetensors"))
    try:
        styled = generate(pipe, "a fox", height=64, width=64, loras={name: 1.0}, **FAST)
    finally:
        pipe.unload_lora_weights()
    assert styled.records[0].loras == {name: 1.0} and np.abs(_px(styled.images[0]) - plain).mean() > 0.05


@pytest.mark.parametrize("key", NEW)
def test_every_new_entry_says_where_its_facts_come_from(key):
    spec = default().get(key)
    assert len(spec.sources) >= 3 and all(s.startswith("https://") for s in spec.sources)
    assert "unverified" in spec.notes or spec.revision_kind == "commit", "what no source confirms is said"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert spec.pipeline_class.__name__ == spec.pipeline
