"""Learned upscalers on the offline hub, and tiled upscaling whose tile borders leave no seam."""

import gc
import json
import weakref
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import hf_hub_download
from PIL import Image

import helpers
from helpers import ZooError
from helpers.base.loaded import record
from helpers.run.upscale import feather, load_upscaler, seam_jump, tile_edges, tiled, upscale
from helpers.zoo.registry import UpscalerSpec, default

from ..common import px

pytestmark = pytest.mark.usefixtures("fresh_hub")

REG = default()


def _picture(w: int, h: int) -> Image.Image:
    """A smooth picture: a diagonal colour gradient (so a seam would be the sharpest edge in it)."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([40 + 150 * x / w, 60 + 120 * y / h, 200 - 100 * (x + y) / (w + h)], axis=-1)
    return Image.fromarray(rgb.round().astype(np.uint8))


@pytest.mark.parametrize("key", sorted(k for k, u in REG.upscalers.items() if isinstance(u, UpscalerSpec)))
def test_each_upscaler_loads_and_upscales_by_its_factor(key):
    spec = REG.upscaler(key)
    image = _picture(40, 24)
    kw = dict(prompt="a castle", num_inference_steps=2, device="cpu")
    out = upscale(image, key, seed=3, **kw)
    assert out.size == (40 * spec.scale, 24 * spec.scale)
    assert np.array_equal(px(out), px(upscale(image, key, seed=3, **kw))), "a seed gives the same picture"
    assert not np.array_equal(px(out), px(upscale(image, key, seed=4, **kw))), "another seed, another picture"
    pipe = load_upscaler(key, device="cpu")
    assert type(pipe).__name__ == spec.pipeline and record(pipe).policy.name == "cpu"
    assert load_upscaler(key, device="cpu") is pipe, "loaded once"


def test_the_x4_upscaler_runs_in_tiles_at_any_size():
    image = _picture(56, 32)  # two tiles of 32 px, overlapping by 8
    kw = dict(num_inference_steps=2, guidance_scale=1.0, tile=32, overlap=8, device="cpu")
    out = upscale(image, "sd-x4-upscaler", "a castle", seed=1, **kw)
    assert out.size == (224, 128)
    assert np.ptp(px(out)) > 0


def _auto_levels(part: Image.Image) -> Image.Image:
    """A deterministic 2x upscaler that drifts per tile, as diffusion upscalers do: each tile to mean grey 128."""
    big = np.asarray(part.resize((part.width * 2, part.height * 2), Image.Resampling.BICUBIC)).astype(float)
    return Image.fromarray(np.clip(big - big.mean() + 128, 0, 255).round().astype(np.uint8))


def test_tiled_upscale_has_no_seam_at_tile_borders():
    image, tile, overlap = _picture(160, 112), 64, 16
    out = tiled(image, _auto_levels, 2, tile, overlap)
    assert out.size == (320, 224)
    # Tiles start at 0, 48 and 96 px across, 0 and 48 down: their edges fall at these, 2x.
    assert tile_edges(160, tile, overlap, 2) == [96, 128, 192, 224] and tile_edges(112, tile, overlap, 2) == [96, 128]
    edge, typical = seam_jump(out, image.size, tile, overlap, 2)
    assert edge <= typical + 1.0, f"a seam: a jump of {edge:.2f} across a tile edge, {typical:.2f} elsewhere"
    # The same tiles pasted without the feathered blend show the seam this check looks for.
    pasted = np.zeros((224, 320, 3))
    for y in (0, 48):
        for x in (0, 48, 96):
            part = _auto_levels(image.crop((x, y, x + tile, y + tile)))
            pasted[2 * y : 2 * (y + tile), 2 * x : 2 * (x + tile)] = px(part)
    hard, _ = seam_jump(Image.fromarray(pasted.astype(np.uint8)), image.size, tile, overlap, 2)
    assert hard > typical + 5, "the check would see an unblended seam"


def test_tiles_that_agree_blend_to_the_same_picture():
    image = _picture(100, 70)
    nearest = lambda part: part.resize((part.width * 4, part.height * 4), Image.Resampling.NEAREST)  # noqa: E731
    assert np.array_equal(px(tiled(image, nearest, 4, 32, 8)), px(nearest(image)))


def test_feather_weights_fall_only_toward_neighbours():
    w = feather((8, 4), (True, False, False, False), 4)[:, :, 0]
    assert w.shape == (4, 8) and w.min() > 0
    assert np.allclose(w[:, 4:], 1) and np.all(np.diff(w[0, :4]) > 0)


def test_upscale_mistakes_are_explained():
    with pytest.raises(helpers.UnknownModelError, match="Unknown upscaler 'sd-x8'"):
        upscale(_picture(8, 8), "sd-x8")
    with pytest.raises(ZooError, match="overlap must be"):
        upscale(_picture(8, 8), "sd-x4-upscaler", tile=32, overlap=32)
    with pytest.raises(ZooError, match="takes no noise_level"):
        upscale(_picture(8, 8), "sd-x2-latent-upscaler", noise_level=20, device="cpu")


def _snapshot_file(repo: str, name: str) -> dict:
    return json.loads(Path(hf_hub_download(repo, name)).read_text())


def test_stand_ins_have_the_real_layout():
    x4, latent = REG.upscaler("sd-x4-upscaler").repo, REG.upscaler("sd-x2-latent-upscaler").repo
    index = _snapshot_file(x4, "model_index.json")
    assert index["low_res_scheduler"] == ["diffusers", "DDPMScheduler"] and index["max_noise_level"] == 350
    assert index["scheduler"] == ["diffusers", "DDIMScheduler"]
    unet = _snapshot_file(x4, "unet/config.json")
    assert (unet["in_channels"], unet["out_channels"], unet["num_class_embeds"]) == (7, 4, 1000)
    assert _snapshot_file(x4, "vae/config.json")["scaling_factor"] == 0.08333
    assert _snapshot_file(x4, "scheduler/scheduler_config.json")["prediction_type"] == "v_prediction"
    assert _snapshot_file(latent, "model_index.json")["scheduler"] == ["diffusers", "EulerDiscreteScheduler"]
    unet = _snapshot_file(latent, "unet/config.json")
    assert (unet["in_channels"], unet["out_channels"], unet["time_embedding_type"]) == (8, 5, "fourier")


def test_helpers_free_drops_the_loaded_upscaler():
    pipe = weakref.ref(load_upscaler("sd-x2-latent-upscaler", device="cpu"))
    gc.collect()
    assert pipe() is not None, "loaded and kept for the next call"
    helpers.free()
    gc.collect()
    assert pipe() is None, "helpers.free() lets the upscaler go too: its memory is returned"
