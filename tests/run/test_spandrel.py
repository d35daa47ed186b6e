"""Upscaler networks in one file (ESRGAN-class, through spandrel) on the offline hub: loaded by key or A1111's
name from the real file name and format, run in tiles without seams, a pickle read only where the entry opts in,
and the hires fix that records `Hires upscaler: 4x-UltraSharp`."""

import numpy as np
import pytest
import torch
from huggingface_hub import hf_hub_download
from PIL import Image
from safetensors.torch import load_file

import helpers
from helpers import ZooError, generate, read_record, regenerate
from helpers.base.errors import RegistryError
from helpers.run.edit import img2img
from helpers.run.upscale import load_upscaler, seam_jump, upscale
from helpers.zoo import registry as registry_mod
from helpers.zoo.registry import NetworkUpscalerSpec, default

from ..common import px, small

pytestmark = pytest.mark.usefixtures("fresh_hub")

REG = default()
NETWORKS = sorted(k for k, u in REG.upscalers.items() if isinstance(u, NetworkUpscalerSpec))


def _gradient(w: int, h: int) -> Image.Image:
    """A smooth diagonal colour gradient: a seam would be the sharpest edge in its upscaled picture."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([40 + 150 * x / w, 60 + 120 * y / h, 200 - 100 * (x + y) / (w + h)], axis=-1)
    return Image.fromarray(rgb.round().astype(np.uint8))


def test_the_registry_has_the_upscalers_people_use():
    assert {"4x-ultrasharp", "realesrgan-x4plus"} <= set(NETWORKS)
    assert REG.upscaler("4x-UltraSharp").key == "4x-ultrasharp", "A1111's name finds the entry, in any case"
    for key in NETWORKS:
        spec = REG.upscaler(key)
        assert spec.sources and spec.file.endswith((".safetensors", ".pth")), key
        assert (spec.weights == "pth") == spec.file.endswith(".pth"), f"{key}: a pickle is opted into"


@pytest.mark.parametrize("key", NETWORKS)
def test_each_network_loads_from_its_real_file_and_upscales_by_its_factor(key):
    spec = REG.upscaler(key)
    path = hf_hub_download(spec.repo, spec.file, revision=spec.revision)
    if spec.file.startswith("RealESRGAN"):  # Real-ESRGAN's own keys, under params_ema, as xinntao saves them
        assert "conv_first.weight" in torch.load(path, weights_only=True)["params_ema"]
    elif spec.weights == "safetensors":
        assert "model.0.weight" in load_file(path), "old ESRGAN keys, as 4x-UltraSharp's file has them"
    model = load_upscaler(key, device="cpu")
    assert model.architecture.name == spec.architecture and model.scale == spec.scale
    assert load_upscaler(key, device="cpu") is model, "loaded once"
    image = _gradient(20, 12)
    out = upscale(image, key, device="cpu")
    assert out.size == (20 * spec.scale, 12 * spec.scale) and np.ptp(px(out)) > 0
    assert np.array_equal(px(out), px(upscale(image, key, device="cpu"))), "a network gives the same picture"


def test_a_network_upscales_in_tiles_without_seams():
    image, tile = _gradient(56, 40), 24
    whole = px(upscale(image, "4x-nmkd-siax-200k", tile=64, device="cpu")).astype(float)  # one tile
    out = upscale(image, "4x-nmkd-siax-200k", tile=tile, overlap=8, device="cpu")  # 3 x 2 tiles
    assert out.size == (224, 160)
    edge, typical = seam_jump(out, image.size, tile, 8, 4)
    assert edge < 0.5, f"a seam: a mean jump of {edge:.2f} across a tile edge ({typical:.2f} elsewhere)"
    assert np.abs(px(out) - whole).max() <= 3, "tiles blend to the picture the whole network gives"
    # Cut without overlap, the same network shows the seams this test looks for.
    hard = upscale(image, "4x-nmkd-siax-200k", tile=tile, overlap=0, device="cpu")
    assert seam_jump(hard, image.size, tile, 0, 4)[0] > 2, "the check would see an unblended seam"


def test_a_pickle_loads_only_where_the_entry_opts_in(tmp_path):
    raw = {"name": "4x-UltraSharp", "repo": "Kim2091/UltraSharp", "file": "4x-UltraSharp.pth",
           "architecture": "ESRGAN", "scale": 4, "license": "cc-by-nc-sa-4.0", "description": "x",
           "size": {"download_gb": 0.07}}  # fmt: skip
    with pytest.raises(RegistryError, match=r"upscalers\.pickled.*weights: pth"):
        registry_mod.parse({"models": {}, "upscalers": {"pickled": raw}})
    opted = registry_mod.parse({"models": {}, "upscalers": {"pickled": raw | {"weights": "pth"}}})
    assert opted.upscaler("pickled").weights == "pth"
    # A file that holds more than tensors is refused even so: weights_only reads nothing else.
    from helpers.run.upscale import _read_weights

    bad = tmp_path / "4x-UltraSharp.pth"
    torch.save({"params": torch.zeros(1), "code": Image.new("RGB", (1, 1))}, bad)
    with pytest.raises(ZooError, match="holds more than weights"):
        _read_weights(opted.upscaler("pickled"), str(bad))
    no_opt = opted.upscaler("pickled").model_copy(update={"weights": "safetensors"})
    with pytest.raises(ZooError, match="does not opt into reading one"):
        _read_weights(no_opt, str(bad))


def test_a_network_takes_no_prompt_or_steps():
    with pytest.raises(ZooError, match="takes no prompt, num_inference_steps"):
        upscale(_gradient(8, 8), "4x-UltraSharp", prompt="a castle", num_inference_steps=2)


def test_hires_fix_with_4x_ultrasharp_records_it_as_a1111_does(tmp_path):
    kw = small("sd15", seed=5, num_inference_steps=4, height=32, width=32)
    result = generate("sd15", "a castle", hires={"scale": 2, "strength": 0.5, "upscaler": "4x-UltraSharp"}, **kw)
    rec = result.records[0]
    assert rec.hires["upscaler"] == "4x-UltraSharp" and "Hires upscaler: 4x-UltraSharp" in rec.a1111()
    first = generate("sd15", "a castle", **kw).images[0]
    big = upscale(first, "4x-ultrasharp", device="cpu")
    assert big.size == (128, 128), "the network's own factor, then resized to the hires scale"
    by_hand = img2img("sd15", big.resize((64, 64), Image.Resampling.LANCZOS), "a castle", strength=0.5,
                      num_inference_steps=8, seed=5, device="cpu").images[0]  # fmt: skip
    assert np.array_equal(px(result.images[0]), px(by_hand)), "the network's pixels, repainted"
    path = result.save(tmp_path)[0]
    assert read_record(path).hires["upscaler"] == "4x-UltraSharp"
    assert np.array_equal(px(regenerate(path).images[0]), px(result.images[0])), "A1111's name finds it again"
    with pytest.raises(ZooError, match="upscaler_steps is for diffusion upscalers"):
        generate("sd15", "a castle", hires={"scale": 2, "upscaler": "4x-UltraSharp", "upscaler_steps": 2}, **kw)
    assert "4x-UltraSharp" in helpers.run.hires.names()
