"""Masks for inpainting and outpainting: white is repainted, black is kept.

>>> mask = box(image.size, (128, 96, 384, 320))          # a rectangle
>>> mask = ellipse(image.size, (100, 100, 300, 260), blur=8)
>>> mask = from_image("my_mask.png", size=image.size)     # any black-and-white image
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from .errors import ZooError
from .images import load_image


def _finish(mask: Image.Image, blur: float, grow: int) -> Image.Image:
    if grow:  # widen (or, negative, shrink) the white area so the repaint reaches past an object's edge
        size = 2 * abs(grow) + 1
        mask = mask.filter(ImageFilter.MaxFilter(size) if grow > 0 else ImageFilter.MinFilter(size))
    return mask.filter(ImageFilter.GaussianBlur(blur)) if blur else mask


def box(size: tuple[int, int], box: tuple[int, int, int, int], blur: float = 0, grow: int = 0) -> Image.Image:
    """White inside the box (left, top, right, bottom)."""
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return _finish(mask, blur, grow)


def ellipse(size: tuple[int, int], box: tuple[int, int, int, int], blur: float = 0, grow: int = 0) -> Image.Image:
    """White inside the ellipse inscribed in the box."""
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).ellipse(box, fill=255)
    return _finish(mask, blur, grow)


def polygon(size: tuple[int, int], points: list[tuple[int, int]], blur: float = 0, grow: int = 0) -> Image.Image:
    """White inside the polygon."""
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).polygon(points, fill=255)
    return _finish(mask, blur, grow)


def from_image(source, size: tuple[int, int] | None = None, threshold: int | None = None) -> Image.Image:
    """A mask from an image (path, URL or PIL): its brightness, or its alpha where it has transparency."""
    image = load_image(source, mode=None)
    if image.mode in ("RGBA", "LA") and np.asarray(image.getchannel("A")).min() < 255:
        mask = Image.fromarray(255 - np.asarray(image.getchannel("A")))  # transparent = to be painted
    else:
        mask = image.convert("L")
    if threshold is not None:
        mask = mask.point(lambda v: 255 if v >= threshold else 0)
    if size is not None and mask.size != tuple(size):
        mask = mask.resize(size, Image.Resampling.NEAREST)
    return mask


def check(mask, image: Image.Image, what: str = "mask") -> Image.Image:
    """The mask as mode L, or an error that says how it does not fit the image."""
    if not isinstance(mask, Image.Image):
        raise ZooError(f"the {what} must be a PIL image (see helpers.masks.box, ellipse, polygon, from_image)")
    if mask.size != image.size:
        raise ZooError(
            f"the {what} is {mask.size[0]}x{mask.size[1]} but the image is {image.size[0]}x{image.size[1]}: "
            f"make it with helpers.masks.box(image.size, ...) or from_image(..., size=image.size)"
        )
    if mask.mode in ("L", "1"):
        return mask.convert("L")
    if mask.mode == "RGB":
        rgb = np.asarray(mask)
        if (rgb == rgb[..., :1]).all():  # grey stored as RGB
            return mask.convert("L")
    raise ZooError(
        f"the {what} has mode {mask.mode}; it must be black and white (mode L: white is repainted). "
        "Use helpers.masks.from_image(...) to convert it"
    )


def blend(canvas: Image.Image, painted: Image.Image, mask: Image.Image, feather: int = 8) -> Image.Image:
    """The painted image where the mask is white, the canvas where it is black, with a soft edge between.

    The soft edge lies inside the white area, so every pixel the mask keeps stays exactly the original.
    """
    soft = mask
    if feather:
        soft = mask.filter(ImageFilter.MinFilter(2 * feather + 1)).filter(ImageFilter.GaussianBlur(feather / 2))
        soft = ImageChops.darker(soft, mask)
    return Image.composite(painted.convert("RGB").resize(canvas.size), canvas.convert("RGB"), soft)
