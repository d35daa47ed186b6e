"""What several test modules share: one tiny model per family, a small generation, the real configs' folder."""

from pathlib import Path

import numpy as np

from helpers.base.families import FAMILIES

# One registry model per family, run on the offline hub's tiny stand-ins.
FAMILY_MODELS = {
    "sd1": "sd15",
    "sd2": "sd21",
    "sdxl": "sdxl-base",
    "sd3": "sd3-medium",
    "flux": "flux-schnell",
    "pixart": "pixart-sigma",
    "zimage": "z-image-turbo",
    "flux2": "flux2-klein-4b",
    "chroma": "chroma1-hd",
    "qwenimage": "qwen-image",
}
assert set(FAMILY_MODELS) == set(FAMILIES), "a new family needs a model here"

# Two steps at 64 px on the CPU: seconds per image with the tiny models.
SMALL = {"num_inference_steps": 2, "height": 64, "width": 64, "device": "cpu"}
# PixArt snaps sizes to its trained aspect-ratio bins (64 px would run at 1024 px): keep the tests small.
EXTRA = {"pixart-sigma": {"use_resolution_binning": False}}

# The real SD 1.5, SDXL and FLUX.1-schnell layouts (configs only), when the shared folder is beside the checkout.
REAL_CONFIGS = Path(__file__).resolve().parents[2] / "shared" / "real-configs"


def small(key: str, **kwargs) -> dict:
    """The small generation arguments for a model, with what its family needs to stay small."""
    return {**SMALL, **EXTRA.get(key, {}), **kwargs}


def px(image) -> np.ndarray:
    """An image's pixels as ints, so that differences between two images do not wrap around."""
    return np.asarray(image).astype(int)
