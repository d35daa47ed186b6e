"""Images shared by every module: reading one from a path, URL or PIL image; fingerprints; "WxH" sizes.

>>> load_image("photo.png").size
>>> parse_size("768x512")              # (768, 512): width first, as the A1111 web UI writes it
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from .errors import ZooError


def load_image(source, mode: str | None = "RGB") -> Image.Image:
    """A PIL image from a path, a URL or a PIL image, in `mode` (None keeps it)."""
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, str) and source.startswith(("http://", "https://")):
        from diffusers.utils import load_image as fetch  # only for URLs

        image = fetch(source, convert_method=lambda im: im)
    else:
        try:
            image = Image.open(source)
            image.load()
        except (OSError, TypeError) as e:
            raise ZooError(f"cannot read an image from {source!r}: {e}") from None
    return image.convert(mode) if mode and image.mode != mode else image


def fingerprint(image: Image.Image) -> str:
    """A short hash of an image's pixels and size, recorded so that a recipe names its inputs."""
    h = hashlib.sha256(f"{image.mode}{image.size}".encode())
    h.update(np.asarray(image).tobytes())
    return "sha256:" + h.hexdigest()[:16]


def pixel_difference(a: Image.Image, b: Image.Image) -> float:
    """The mean absolute difference of two pictures of one size, in 0-255 steps per channel: 0 for the same pixels."""
    if a.size != b.size:
        raise ZooError(
            f"pictures of {format_size(*a.size)} and {format_size(*b.size)} px: compare pictures of one size"
        )
    return float(np.abs(np.asarray(a.convert("RGB"), float) - np.asarray(b.convert("RGB"), float)).mean())


def parse_size(text) -> tuple[int, int]:
    """(width, height) from "WxH", "W" (square), an int or a (width, height) pair; an error shows the form."""
    if isinstance(text, int):
        return text, text
    if isinstance(text, (list, tuple)) and len(text) == 2:
        return int(text[0]), int(text[1])
    w, _, h = str(text).strip().lower().partition("x")
    try:
        width, height = int(w), int(h or w)
    except ValueError:
        raise ZooError(f"size '{text}' is not WIDTHxHEIGHT (e.g. 768x512) or one number (512)") from None
    if width < 1 or height < 1:
        raise ZooError(f"size '{text}' must be positive")
    return width, height


def format_size(width: int, height: int) -> str:
    return f"{width}x{height}"
