"""This package's version, and the versions of the libraries that made an image (written into its record)."""

from __future__ import annotations

__version__ = "0.1.0"


def versions() -> dict:
    """The versions of diffusers, transformers, torch and this package, as a record keeps them."""
    import diffusers
    import torch
    import transformers

    return {
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "helpers": __version__,
    }
