"""This package's version, and the versions of the libraries that made an image (written into its record)."""

from __future__ import annotations

import diffusers
import torch
import transformers

__version__ = "0.1.0"


def versions() -> dict:
    """The versions of diffusers, transformers, torch and this package, as a record keeps them."""
    return {
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "helpers": __version__,
    }
