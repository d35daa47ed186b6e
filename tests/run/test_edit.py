"""Editing on the offline hub, with images made in code: img2img, inpainting, outpainting, refiner."""

import numpy as np
import pytest
from PIL import Image

from helpers import ZooError, masks, read_record, regenerate
from helpers.base.images import fingerprint
from helpers.run.edit import blend, extend, img2img, inpaint, outpaint, refine

pytestmark = pytest.mark.usefixtures("fresh_hub")

IMG = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
FAST = {"num_inference_steps": 4, "device": "cpu", "seed": 1}
IMG2IMG = ["sd15", "sd21", "sdxl-base", "sdxl-refiner", "sd3-medium", "flux-schnell"]
INPAINT = ["sd15", "sd15-inpainting", "sd21", "sdxl-base", "sdxl-inpainting", "sd3-medium", "flux-schnell"]


@pytest.mark.parametrize("key", IMG2IMG)
def test_img2img_for_every_family(key, tmp_path):
    result = img2img(key, IMG, "a watercolor", strength=0.75, **FAST)
    rec = result.records[0]
    assert result.images[0].size == IMG.size and rec.task == "img2img" and rec.extra["strength"] == 0.75
    assert rec.inputs == {"image": fingerprint(IMG)}
    path = result.save(tmp_path)[0]
    again = regenerate(path, image=IMG)
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(result.images[0]))


@pytest.mark.parametrize("key", INPAINT)
def test_inpaint_for_every_family(key):
    mask = masks.ellipse(IMG.size, (8, 8, 40, 56), blur=2)
    result = inpaint(key, IMG, mask, "a red apple", **FAST)
    rec = result.records[0]
    assert result.images[0].size == IMG.size and rec.task == "inpaint"
    assert rec.inputs == {"image": fingerprint(IMG), "mask_image": fingerprint(mask)}
    assert "Task: inpaint" in rec.a1111()


def test_regenerating_an_edit_needs_the_same_inputs(tmp_path):
    path = img2img("sd15", IMG, "a fox", **FAST).save(tmp_path)[0]
    with pytest.raises(ZooError, match="needs its image again"):
        regenerate(path)
    with pytest.raises(ZooError, match="not the one this image was made from"):
        regenerate(path, image=Image.new("RGB", (64, 64)))
    assert read_record(path).inputs["image"].startswith("sha256:")


def test_bad_inputs_are_explained():
    with pytest.raises(ZooError, match=r"the mask is 32x32 but the image is 64x64.*masks.box\(image.size"):
        inpaint("sd15", IMG, Image.new("L", (32, 32)), "x", **FAST)
    with pytest.raises(ZooError, match=r"mode RGBA.*black and white"):
        inpaint("sd15", IMG, Image.new("RGBA", (64, 64)), "x", **FAST)
    grey_rgb = Image.new("RGB", (64, 64), (255, 255, 255))
    assert masks.check(grey_rgb, IMG).mode == "L"
    with pytest.raises(ZooError, match=r"input image height 60 is not a multiple of 8.*use 56 or 64.*resize"):
        img2img("sd15", IMG.resize((64, 60)), "x", **FAST)
    with pytest.raises(ZooError, match=r"strength must be in \(0, 1\]"):
        img2img("sd15", IMG, "x", strength=0, **FAST)
    with pytest.raises(ZooError, match=r"strength 0.3 of 2 steps runs no step at all: use at least 4 steps"):
        img2img("sd15", IMG, "x", strength=0.3, num_inference_steps=2, device="cpu")
    with pytest.raises(ZooError, match="cannot read an image"):
        img2img("sd15", "no-such-file.png", "x", **FAST)
    with pytest.raises(ZooError, match=r"mask_image is all black, so nothing would be repainted"):
        inpaint("sd15", IMG, Image.new("L", (64, 64)), "x", **FAST)
    with pytest.raises(ZooError, match="does not support task 'inpaint'"):
        inpaint("sdxl-refiner", IMG, masks.box(IMG.size, (0, 0, 8, 8)), "x", **FAST)


def test_masks_from_shapes_and_images(tmp_path):
    m = masks.box((64, 32), (10, 5, 20, 15))
    a = np.asarray(m)
    assert a.shape == (32, 64) and a[10, 15] == 255 and a[0, 0] == 0 and a.sum() == 255 * 11 * 11
    assert np.asarray(masks.box((64, 64), (20, 20, 30, 30), grow=4)).astype(bool).sum() == 19 * 19
    assert np.asarray(masks.polygon((64, 64), [(0, 0), (63, 0), (0, 63)]))[5, 5] == 255
    rgba = Image.new("RGBA", (16, 16), (0, 0, 0, 255))
    rgba.putpixel((3, 3), (0, 0, 0, 0))  # transparent pixels are the ones to paint
    rgba.save(tmp_path / "alpha.png")
    m = masks.from_image(tmp_path / "alpha.png", size=(32, 32))
    assert m.size == (32, 32) and np.asarray(m).max() == 255 and np.asarray(m)[0, 0] == 0


def test_outpaint_canvas_and_mask_geometry():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    canvas, mask = extend(image, left=30, top=10, right=5, bottom=0, overlap=4, multiple=8)
    assert canvas.size == (88, 56)  # 50+30+5 = 85 -> 88, 40+10 = 50 -> 56 (the extra goes right and bottom)
    c, m = np.asarray(canvas), np.asarray(mask)
    assert np.array_equal(c[10:50, 30:80], np.asarray(image)), "the image sits at (left, top), untouched"
    assert (m[:10] == 255).all() and (m[:, :30] == 255).all() and (m[:, 80:] == 255).all() and (m[50:] == 255).all()
    assert (m[14:46, 34:76] == 0).all(), "inside the overlap band the image is kept"
    assert (m[10:14, 40] == 255).all() and (m[20, 30:34] == 255).all(), "the band repaints the seam"
    assert np.array_equal(c[10:50, 0], c[10:50, 30]), "edge fill repeats the nearest edge colour"
    noisy, _ = extend(image, right=16, fill="noise", multiple=8)
    assert noisy.size == (72, 40) and np.asarray(noisy)[:, 60:].std() > 10
    with pytest.raises(ZooError, match="positive number of pixels"):
        extend(image)


def test_blend_keeps_every_unmasked_pixel_exactly():
    canvas = Image.new("RGB", (64, 64), (10, 20, 30))
    painted = Image.new("RGB", (64, 64), (200, 100, 0))
    mask = masks.box((64, 64), (32, 0, 64, 64))
    out = np.asarray(blend(canvas, painted, mask, feather=6))
    assert (out[:, :32] == (10, 20, 30)).all() and (out[:, 48:] == (200, 100, 0)).all()
    ramp = out[10, 32:48, 0]
    assert (np.diff(ramp.astype(int)) >= 0).all() and ramp[0] < ramp[-1], "a soft edge inside the mask, no seam"


def test_outpaint_end_to_end_keeps_the_original():
    result = outpaint("sd15-inpainting", IMG, "more meadow", left=32, bottom=16, overlap=8, **FAST)
    out = np.asarray(result.images[0])
    assert result.images[0].size == (96, 80)
    assert np.array_equal(out[8:56, 40:96], np.asarray(IMG)[8:56, 8:64]), "the original outside the band is intact"


def test_regenerating_an_outpainting_gives_the_same_pixels(tmp_path):
    result = outpaint("sd15-inpainting", IMG, "more meadow", left=32, bottom=16, overlap=8, **FAST)
    path = result.save(tmp_path)[0]
    assert read_record(path).blend == 4
    canvas, mask = extend(IMG, left=32, bottom=16, overlap=8, multiple=8)
    again = regenerate(path, image=canvas, mask_image=mask)
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(Image.open(path).convert("RGB")))
    assert again.records[0].blend == 4


def test_sdxl_base_plus_refiner():
    kw = {"num_inference_steps": 4, "height": 64, "width": 64, "device": "cpu"}
    image = refine("a lighthouse", seed=2, **kw)
    px = np.asarray(image).astype(int)
    assert image.size == (64, 64) and px.std() > 0
    assert np.array_equal(px, np.asarray(refine("a lighthouse", seed=2, **kw))), "a seed makes the same pixels"
    other = np.asarray(refine("a lighthouse", seed=2, high_noise_frac=0.5, **kw)).astype(int)
    assert np.abs(other - px).max() > 0, "the refiner's share of the steps changes the picture"
    with pytest.raises(ZooError, match="between 0 and 1"):
        refine("x", high_noise_frac=1.5)


@pytest.mark.parametrize("key", ["sd15", "sd15-inpainting", "sdxl-inpainting"])
def test_inpainting_a_crop_keeps_every_pixel_outside_the_mask_and_repaints_inside(key):
    mask = masks.box(IMG.size, (16, 16, 48, 40))
    result = inpaint(key, IMG, mask, "a red apple", padding=8, **FAST)  # the crop is pasted back over the original
    out, src = np.asarray(result.images[0]).astype(int), np.asarray(IMG).astype(int)
    inside = np.asarray(mask) > 127
    assert result.images[0].size == IMG.size and 0 < inside.sum() < inside.size
    assert np.array_equal(out[~inside], src[~inside]), "every pixel outside the mask is the original's"
    assert np.abs(out[inside] - src[inside]).mean() > 20, "the masked area is repainted"


def test_inpainting_with_a_plain_checkpoint_repaints_only_the_mask():
    """A plain U-Net's inpainting puts the original's latents back outside the mask at every step (diffusers'
    semantics), so another seed changes the masked half and leaves the far side of the other half as it was."""
    mask = masks.box(IMG.size, (0, 0, 32, 64))
    a, b = (np.asarray(inpaint("sd15", IMG, mask, "a red apple", **{**FAST, "seed": s}).images[0]) for s in (1, 2))
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff[:, :32].mean() > 20, "the masked half follows the seed"
    assert diff[:, 48:].mean() < 0.3 * diff[:, :32].mean(), "away from the mask, the original's latents are kept"
