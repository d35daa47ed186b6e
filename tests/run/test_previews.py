"""Live previews: every step's latents decoded by the family's tiny VAE, for every family that has one."""

import warnings

import numpy as np
import pytest

from helpers import ZooError, generate, load_pipeline, previews

from ..common import FAMILY_MODELS

pytestmark = pytest.mark.usefixtures("fresh_hub")


@pytest.mark.parametrize("key", [k for f, k in FAMILY_MODELS.items() if f not in ("pixart", "qwenimage")])
def test_each_step_gives_a_preview_of_the_image_size(key):
    shown = []

    def keep(image, done, total):
        shown.append((image.size, done, total, np.asarray(image)))

    r = generate(key, "a red fox", seed=1, num_inference_steps=3, height=64, width=96, device="cpu", on_preview=keep)
    assert [(s[0], s[1], s[2]) for s in shown] == [((96, 64), i, 3) for i in (1, 2, 3)]
    assert not np.array_equal(shown[0][3], shown[-1][3]), "previews follow the denoising"
    assert r.images[0].size == (96, 64)


def test_previews_do_not_change_the_image():
    plain = generate("sd15", "a red fox", seed=1, num_inference_steps=2, height=64, width=64, device="cpu")
    seen = generate("sd15", "a red fox", seed=1, num_inference_steps=2, height=64, width=64, device="cpu",
                    on_preview=lambda *a: None)  # fmt: skip
    assert np.array_equal(np.asarray(plain.images[0]), np.asarray(seen.images[0]))


def test_a_family_without_a_tiny_vae_warns_and_still_generates():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = generate("pixart-sigma", "a red fox", seed=1, num_inference_steps=2, height=64, width=64, device="cpu",
                     use_resolution_binning=False, on_preview=lambda *a: None)  # fmt: skip
    assert any("no tiny preview VAE for pixart" in str(w.message) for w in caught)
    assert r.images
    with pytest.raises(ZooError, match="no tiny preview VAE in the registry for pixart"):
        previews.Previewer(load_pipeline("pixart-sigma", device="cpu"))
