"""ControlNet on the offline hub: every registry ControlNet loads and steers, recipes regenerate, several at once."""

import numpy as np
import pytest
from huggingface_hub import get_cached_repo_tree
from PIL import Image, ImageDraw

import helpers
from helpers import ZooError, generate, read_record, regenerate, registry
from helpers.base.images import fingerprint, pixel_difference
from helpers.run.control import Control, load_controlnet, preprocess

from ..common import FAMILY_MODELS, px, small

pytestmark = pytest.mark.usefixtures("fresh_hub")

REG = registry.default()


def _picture() -> Image.Image:
    image = Image.new("RGB", (64, 64), (30, 30, 30))
    draw = ImageDraw.Draw(image)
    draw.rectangle((12, 12, 44, 40), fill=(220, 200, 40))
    draw.ellipse((30, 30, 60, 60), fill=(40, 90, 220))
    return image


PICTURE = _picture()
EDGES = preprocess(PICTURE, "canny")


def test_canny_preprocessor_draws_the_edges():
    edges = np.asarray(EDGES)
    assert EDGES.size == PICTURE.size and EDGES.mode == "RGB" and set(np.unique(edges)) == {0, 255}
    assert edges[11:13, 20].max() == 255 and edges[25, 25].max() == 0, "an edge on the border, none inside"


@pytest.mark.parametrize("key", sorted(REG.controlnets))
def test_every_controlnet_loads_and_steers(key, tmp_path):
    cn = REG.controlnet(key)
    model = FAMILY_MODELS[cn.family]
    kw = small(model, seed=3)
    plain = generate(model, "a house", **kw).images[0]
    result = generate(model, "a house", control={key: EDGES}, **kw)
    rec = result.records[0]
    assert result.images[0].size == (64, 64)
    assert not np.array_equal(px(result.images[0]), px(plain)), "the control image changes the picture"
    union = {"kind": "canny"} if cn.control_modes else {}  # a union ControlNet records what its image is
    assert rec.controls == [{"model": key, "scale": 1.0, "start": 0.0, "end": 1.0, "image": fingerprint(EDGES)} | union]
    assert f'ControlNet 0: "Module: none, Model: {key} [' in rec.a1111()
    path = result.save(tmp_path)[0]
    assert read_record(path) == rec
    again = regenerate(path, control_images=[EDGES])
    assert np.array_equal(px(again.images[0]), px(result.images[0])), "the PNG's recipe remakes its pixels"


def test_several_controlnets_each_with_its_scale_and_steps():
    kw = small("sd15", seed=5, num_inference_steps=4)
    both = [Control("canny-sd15", EDGES, scale=0.7, end=0.5), Control("depth-sd15", PICTURE, scale=0.4, start=0.25)]
    result = generate("sd15", "a house", control=both, **kw)
    rec = result.records[0]
    assert [(c["model"], c["scale"], c["start"], c["end"]) for c in rec.controls] == [
        ("canny-sd15", 0.7, 0.0, 0.5),
        ("depth-sd15", 0.4, 0.25, 1.0),
    ]
    one = generate("sd15", "a house", control=both[:1], **kw)
    assert not np.array_equal(px(one.images[0]), px(result.images[0]))
    weaker = generate("sd15", "a house", control=[Control("canny-sd15", EDGES, scale=0.0)], **kw)
    plain = generate("sd15", "a house", **kw)
    assert np.abs(px(weaker.images[0]) - px(plain.images[0])).max() <= 1, "scale 0 leaves the model alone"
    again = regenerate(rec, control_images={"depth-sd15": PICTURE, "canny-sd15": EDGES})
    assert np.array_equal(px(again.images[0]), px(result.images[0]))


def test_a_higher_scale_and_more_steps_steer_further():
    kw = small("sd15", seed=5, num_inference_steps=4)
    plain = generate("sd15", "a house", **kw).images[0]

    def moved(**control):
        return pixel_difference(generate("sd15", "a house", control=[Control("canny-sd15", EDGES, **control)], **kw)
                                .images[0], plain)  # fmt: skip

    by_scale = [moved(scale=s) for s in (0.3, 0.6, 1.0)]
    assert 0 < by_scale[0] < by_scale[1] < by_scale[2], by_scale
    assert 0 < moved(end=0.5) < by_scale[2], "stopping half-way steers less"
    assert pixel_difference(plain, plain) == 0


def test_controlnets_share_the_loaded_weights():
    base = helpers.get_pipeline("sd15", device="cpu")
    generate("sd15", "a house", control={"canny-sd15": EDGES}, **small("sd15", seed=1))
    derived = helpers.control.pipeline(base, [Control("canny-sd15", EDGES)])
    assert derived.unet is base.unet and derived.vae is base.vae and derived.text_encoder is base.text_encoder
    again = helpers.control.pipeline(base, [Control("canny-sd15", EDGES)])
    assert again.controlnet is derived.controlnet, "each ControlNet loads once per model"
    assert helpers.control.parameter_count("canny-sd15", base) == sum(
        p.numel() for p in derived.controlnet.parameters()
    )
    assert helpers.base.loaded.record(derived) is helpers.base.loaded.record(base)


def test_control_mistakes_are_explained(tmp_path):
    with pytest.raises(ZooError, match=r"'canny-sdxl' is for sdxl models; 'sd15' is sd1: use one of \['canny-sd15'"):
        generate("sd15", "x", control={"canny-sdxl": EDGES}, **small("sd15"))
    with pytest.raises(ZooError, match="Unknown ControlNet 'cany-sd15'. Did you mean 'canny-sd15'"):
        generate("sd15", "x", control={"cany-sd15": EDGES}, **small("sd15"))
    with pytest.raises(ZooError, match="start < end"):
        generate("sd15", "x", control=[Control("canny-sd15", EDGES, start=0.8, end=0.2)], **small("sd15"))
    path = generate("sd15", "x", control={"canny-sd15": EDGES}, **small("sd15", seed=1)).save(tmp_path)[0]
    with pytest.raises(ZooError, match=r"made with ControlNet \['canny-sd15'\]: regenerate\(path, control_images"):
        regenerate(path)
    with pytest.raises(ZooError, match="not the one this image was made with"):
        regenerate(path, control_images=[PICTURE])


def test_depth_preprocessor_maps_the_picture_with_the_registry_estimator():
    depth = preprocess(PICTURE, "depth")
    a = np.asarray(depth)
    assert depth.size == PICTURE.size and depth.mode == "RGB" and (a[..., 0] == a[..., 2]).all()
    assert a.min() == 0 and a.max() == 255, "normalised: nearest white, farthest black"
    assert np.array_equal(np.asarray(preprocess(PICTURE, "depth")), a)
    rec = generate("sd15", "a room", control={"depth-sd15": depth}, **small("sd15", seed=2)).records[0]
    assert rec.controls[0]["image"] == fingerprint(depth)
    with pytest.raises(ZooError, match="Unknown preprocessor 'midas'"):
        preprocess(PICTURE, "depth", estimator="midas")
    with pytest.raises(ZooError, match="No preprocessor for 'segment'; kinds: canny, depth, openpose"):
        preprocess(PICTURE, "segment")


def test_control_scale_and_hires_strength_are_sweep_axes(tmp_path):
    from helpers.sweeps.sweep import plan, sweep

    params = {"model": "sd15", "prompt": "a house", "control": {"canny-sd15": EDGES}, **small("sd15", seed=1)}
    params.pop("device")
    axes = {"x": ("control_scale", [0.0, 1.0]), "y": ("hires_strength", [0.5, 1.0])}
    _, cells = plan(params, axes)
    assert [(c.params["control"][0].scale, c.params["hires"]["strength"]) for c in cells] == [
        (0.0, 0.5),
        (1.0, 0.5),
        (0.0, 1.0),
        (1.0, 1.0),
    ]
    result = sweep(params, {"x": ("control_scale", [0.0, 1.0])}, tmp_path, device="cpu")
    assert not result.failed and len(result.rows) == 2, result.failed
    images = [Image.open(tmp_path / r["path"]) for r in result.rows]
    assert not np.array_equal(px(images[0]), px(images[1])), "the control scale changes the picture"
    with pytest.raises(ZooError, match="control_scale axis needs control"):
        plan({"model": "sd15", "prompt": "x"}, {"x": ("control_scale", [1.0])})


def test_command_line_control_and_hires(tmp_path):
    from ..test_cli import run

    EDGES.save(tmp_path / "edges.png")
    code, out, err = run(
        "generate", "sd15", "a house", "--steps", "4", "--size", "64", "--seed", "3", "--device", "cpu",
        "--control", f"canny-sd15={tmp_path / 'edges.png'}", "--hires", "2", "--hires-upscaler", "Nearest",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0, err
    rec = read_record(out.split()[0])
    assert rec.controls[0]["model"] == "canny-sd15" and rec.hires["scale"] == 2.0 and rec.hires["upscaler"] == "Nearest"
    assert Image.open(out.split()[0]).size == (128, 128)
    code, _, err = run("generate", "sd15", "x", "--control", "canny-sd15")
    assert code == 2 and "--control takes CONTROLNET=IMAGE" in err
    code, _, err = run("generate", "sd15", "x", "--hires", "2", "--hires-upscaler", "esrgan")
    assert code == 2 and "Unknown hires upscaler 'esrgan'" in err and "sd-x4-upscaler" in err


def test_union_controlnet_reads_the_kind_of_its_image(tmp_path):
    kw = small("sdxl-base", seed=7)
    canny = generate("sdxl-base", "a house", control=[Control("union-sdxl", EDGES, scale=0.8)], **kw)
    depth = generate("sdxl-base", "a house", control=[Control("union-sdxl", EDGES, scale=0.8, kind="depth")], **kw)
    assert not np.array_equal(px(canny.images[0]), px(depth.images[0])), "the control type steers differently"
    rec = depth.records[0]
    assert rec.controls[0]["kind"] == "depth" and rec.controls[0]["scale"] == 0.8
    path = depth.save(tmp_path)[0]
    again = regenerate(path, control_images=[EDGES])
    assert np.array_equal(px(again.images[0]), px(depth.images[0]))
    with pytest.raises(ZooError, match=r"knows no control type 'pose': use one of \['openpose', 'depth'"):
        generate("sdxl-base", "x", control=[Control("union-sdxl", EDGES, kind="pose")], **kw)
    with pytest.raises(ZooError, match=r"union-sdxl \(a union ControlNet or T2I-Adapter\) runs alone here"):
        generate("sdxl-base", "x", control=[Control("union-sdxl", EDGES), Control("canny-sdxl", EDGES)], **kw)
    with pytest.raises(ZooError, match="'canny-sdxl' is a canny ControlNet; kind= is for union ControlNets only"):
        generate("sdxl-base", "x", control=[Control("canny-sdxl", EDGES, kind="depth")], **kw)


@pytest.mark.parametrize("key", sorted(REG.t2i_adapters))
def test_every_t2i_adapter_loads_steers_and_regenerates(key, tmp_path):
    ad = REG.t2i_adapters[key]
    model = FAMILY_MODELS[ad.family]
    kw = small(model, seed=3)
    plain = generate(model, "a house", **kw).images[0]
    result = generate(model, "a house", control=[Control(key, EDGES, scale=0.8)], **kw)
    rec = result.records[0]
    assert not np.array_equal(px(result.images[0]), px(plain)), "the adapter changes the picture"
    assert rec.controls == [{"model": key, "scale": 0.8, "start": 0.0, "end": 1.0, "image": fingerprint(EDGES)}]
    path = result.save(tmp_path)[0]
    steps = []
    again = regenerate(path, control_images=[EDGES], on_step=lambda done, total: steps.append((done, total)))
    assert np.array_equal(px(again.images[0]), px(result.images[0])), "the PNG's recipe remakes its pixels"
    assert steps == [(1, 2), (2, 2)], "progress through the pipeline's older step callback"
    with pytest.raises(ZooError, match="acts from the first step: start must be 0"):
        generate(model, "x", control=[Control(key, EDGES, start=0.5)], **kw)
    with pytest.raises(ZooError, match="runs alone here"):
        generate(model, "x", control=[Control(key, EDGES), Control(f"canny-{model[:4]}", EDGES)], **kw)


def test_t2i_adapter_steps_on_sdxl_only():
    kw = small("sdxl-base", seed=3, num_inference_steps=4)
    full = generate("sdxl-base", "a house", control=[Control("t2i-canny-sdxl", EDGES)], **kw).images[0]
    early = generate("sdxl-base", "a house", control=[Control("t2i-canny-sdxl", EDGES, end=0.5)], **kw).images[0]
    assert not np.array_equal(px(full), px(early)), "stopping after half the steps changes the picture"
    with pytest.raises(ZooError, match="acts in every step on sd1 models .* end must be 1"):
        generate("sd15", "x", control=[Control("t2i-canny-sd15", EDGES, end=0.5)], **small("sd15"))


@pytest.mark.parametrize("section, key", [("controlnets", "tile-sd15"), ("t2i_adapters", "t2i-canny-sd15")])
def test_repos_with_only_pickled_weights_load_as_registered(section, key):
    spec = REG.entry(section, key)
    files = {f.path for f in get_cached_repo_tree(spec.repo, revision=spec.revision)}
    assert files == {"config.json", "diffusion_pytorch_model.bin"}, "the real repo's layout: one pickled file"
    base = helpers.get_pipeline("sd15", device="cpu")
    net = load_controlnet(spec, base)
    assert sum(p.numel() for p in net.parameters()) > 0 and next(net.parameters()).dtype == base.dtype
    as_before = spec.model_copy(update={"key": f"{key}-safetensors", "weights": "safetensors"})
    with pytest.raises(ZooError, match="no safetensors weights, only pickled .bin files.*set `weights: bin`"):
        load_controlnet(as_before, base)


def test_grayscale_t2i_adapter_gets_a_one_channel_map():
    base = helpers.get_pipeline("sd15", device="cpu")
    assert load_controlnet(REG.t2i_adapters["t2i-canny-sd15"], base).config.in_channels == 1
    kw = small("sd15", seed=3)
    rgb = generate("sd15", "a house", control=[Control("t2i-canny-sd15", EDGES)], **kw).images[0]
    grey = generate("sd15", "a house", control=[Control("t2i-canny-sd15", EDGES.convert("L"))], **kw).images[0]
    assert np.array_equal(px(rgb), px(grey)), "an RGB edge map is read as the grayscale map it is"
