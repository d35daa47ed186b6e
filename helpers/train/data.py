"""Training data: a folder of images with optional same-name `.txt` captions, centre-cropped or bucketed.

>>> items = load_folder("my-photos", resolution=512, buckets=True)
>>> items[0].prompt, items[0].image.size, items[0].crop      # caption (or the default), bucket size, crop offset
>>> data_hash(items)                                         # changes when any image or caption does
"""

from __future__ import annotations

import hashlib
import math
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from ..base.errors import ZooError
from ..base.records import read_record

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class Example:
    """One training image, cropped to its size, with its prompt and the SDXL size conditioning."""

    image: Image.Image
    prompt: str
    original_size: tuple[int, int]  # (height, width) before resizing, as SDXL's time ids want it
    crop: tuple[int, int]  # (top, left) of the crop in the resized image
    source: str
    digest: str  # sha256 of the file's bytes and the caption


def buckets(resolution: int, multiple: int = 64, ratios=(1.0, 4 / 3, 3 / 2, 16 / 9)) -> list[tuple[int, int]]:
    """(width, height) sizes of about `resolution`² pixels for landscape, square and portrait images."""
    multiple = min(multiple, max(8, resolution // 8))
    out = []
    for r in ratios:
        w = round(resolution * math.sqrt(r) / multiple) * multiple
        h = round(resolution / math.sqrt(r) / multiple) * multiple
        out += [(w, h), (h, w)]
    return sorted(set(out))


def nearest_bucket(size: tuple[int, int], sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest to the image's (in log space, so 2:1 and 1:2 are as far)."""
    ratio = math.log(size[0] / size[1])
    return min(sizes, key=lambda s: abs(math.log(s[0] / s[1]) - ratio))


def fit(image: Image.Image, width: int, height: int) -> tuple[Image.Image, tuple[int, int]]:
    """Resize to cover (width, height) and crop the centre; returns the crop and its (top, left)."""
    scale = max(width / image.width, height / image.height)
    resized = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))),
                           Image.Resampling.LANCZOS)  # fmt: skip
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height)), (top, left)


def _near_misses(path: Path, names: list[str], taken: set[str]) -> list[str]:
    """Files that look meant as `path`'s caption but are not its `NAME.txt` (NAME.caption.txt, NAME.png.txt, NAME.TXT).

    `taken`: the exact caption names of every image, which belong to their own image.
    """
    stem = path.stem.lower()
    return [n for n in names if n not in taken and n.lower().endswith((".txt", ".caption"))
            and (n.lower().startswith(stem + "."))]  # fmt: skip


def _recipe_prompt(path: Path) -> str:
    """The prompt in a PNG's generation recipe (the zoo's own, or the A1111 web UI's), or ""."""
    if path.suffix.lower() != ".png":
        return ""
    try:
        return read_record(path).prompt.strip()
    except ZooError:
        return ""


def _names(paths) -> str:
    names = [p if isinstance(p, str) else p.name for p in paths]
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def captions(paths: list[Path], default_prompt: str = "", recipes: bool = True) -> list[tuple[str, str]]:
    """(prompt, caption text) of each image: its `NAME.txt`, else its PNG recipe's prompt, else `default_prompt`.

    Says in a warning which images took their recipe's prompt, and which caption-like files were not read (and
    why); an image left with no prompt at all is an error that names every such image and what to do.
    """
    folder_names = sorted(p.name for p in paths[0].parent.iterdir()) if paths else []
    taken = {p.with_suffix(".txt").name for p in paths}
    out, from_recipe, missing, misses = [], [], [], {}
    for path in paths:
        caption = path.with_suffix(".txt")
        text = caption.read_text(encoding="utf-8").strip() if caption.is_file() else ""
        if not text:
            near = _near_misses(path, folder_names, taken)
            if near:
                misses[path.name] = near
            text = _recipe_prompt(path) if recipes else ""
            if text:
                from_recipe.append(path)
        if not (text or default_prompt):
            missing.append(path)
        out.append((text or default_prompt, text))
    if missing:
        why = "; ".join(
            f"{p.name}: " + (f"{', '.join(misses[p.name])} is not NAME.txt" if p.name in misses else "no " +
                             p.with_suffix(".txt").name) for p in missing[:5])  # fmt: skip
        raise ZooError(
            f"{len(missing)} image(s) have no caption and no default prompt was given ({why}"
            f"{' and more' if len(missing) > 5 else ''}): add NAME.txt beside each, or give --instance-prompt"
        )
    if misses:
        detail = "; ".join(f"{img}: {', '.join(n)}" for img, n in list(misses.items())[:5])
        warnings.warn(
            f"caption-like files of {len(misses)} image(s) are not read, because a caption is NAME.txt beside "
            f"NAME.png, in the same case ({detail}): rename them to read them", stacklevel=3,
        )  # fmt: skip
    if from_recipe:
        warnings.warn(f"{len(from_recipe)} image(s) have no NAME.txt caption and are captioned with the prompt in "
                      f"their PNG's recipe: {_names(from_recipe)}", stacklevel=3)  # fmt: skip
    return out


def load_folder(
    folder: str | Path,
    resolution: int,
    buckets_on: bool = False,
    default_prompt: str = "",
    multiple: int = 64,
    recipes: bool = True,
) -> list[Example]:
    """The images of a folder, each with its caption (see `captions`) or `default_prompt`, cropped for training."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ZooError(f"--images {folder}: no such folder; give a folder of .png/.jpg images")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ZooError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    sizes = buckets(resolution, multiple) if buckets_on else [(resolution, resolution)]
    items = []
    for path, (prompt, text) in zip(paths, captions(paths, default_prompt, recipes), strict=True):
        raw = path.read_bytes()
        try:
            with Image.open(path) as im:
                image = ImageOps.exif_transpose(im).convert("RGB")
        except OSError as e:
            raise ZooError(f"{path}: cannot read it as an image ({e})") from None
        w, h = nearest_bucket(image.size, sizes)
        cropped, crop = fit(image, w, h)
        digest = hashlib.sha256(raw + b"\0" + text.encode()).hexdigest()
        items.append(Example(cropped, prompt, (image.height, image.width), crop, path.name, digest))
    return items


def data_hash(items: list[Example]) -> str:
    """One sha256 over every image's bytes and caption, in file-name order."""
    h = hashlib.sha256()
    for item in sorted(items, key=lambda i: i.source):
        h.update(item.source.encode() + b"\0" + item.digest.encode())
    return h.hexdigest()


def batches(items: list, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Index batches for one epoch: shuffled by (seed, epoch) only, each batch from one size bucket.

    Depending on nothing else is what lets a resumed run see exactly the batches of an unbroken one.
    """
    rng = random.Random(seed * 100_003 + epoch)
    by_size: dict[tuple, list[int]] = {}
    for i, item in enumerate(items):
        by_size.setdefault(item.image.size, []).append(i)
    out = []
    for size in sorted(by_size):
        idx = by_size[size]
        rng.shuffle(idx)
        out += [idx[j : j + batch_size] for j in range(0, len(idx), batch_size)]
    rng.shuffle(out)
    return out


def draw_examples(
    folder: str | Path, subject: str = "star", count: int = 6, size: int = 256, seed: int = 0, caption: str = ""
) -> Path:
    """Write `count` simple drawn images of a subject (and `caption` beside each, if given): data, no download.

    `subject` is "star" (a yellow star on varied backgrounds: a DreamBooth subject or an embedding's concept)
    or "stripes" (diagonal stripes in a fixed palette: a style).
    """
    if subject not in ("star", "stripes"):
        raise ZooError(f"draw_examples draws 'star' or 'stripes', not '{subject}'")
    rng = random.Random(seed)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    backgrounds = [(40, 90, 160), (30, 120, 60), (150, 60, 60), (90, 90, 90), (20, 20, 40), (170, 140, 90)]
    for i in range(count):
        bg = backgrounds[i % len(backgrounds)]
        image = Image.new("RGB", (size, size), bg)
        draw = ImageDraw.Draw(image)
        if subject == "star":
            cx, cy, r = rng.uniform(0.35, 0.65) * size, rng.uniform(0.35, 0.65) * size, rng.uniform(0.2, 0.3) * size
            turn = rng.uniform(0, math.pi)
            radii = [r if k % 2 == 0 else r / 2.5 for k in range(10)]
            angles = [turn + k * math.pi / 5 for k in range(10)]
            points = [(cx + q * math.cos(a), cy + q * math.sin(a)) for q, a in zip(radii, angles, strict=True)]
            draw.polygon(points, fill=(250, 210, 40), outline=(120, 80, 0))
        else:
            width = size // 8
            for k, x in enumerate(range(-size, 2 * size, width)):
                colour = [(230, 80, 40), (250, 200, 60), (40, 40, 40)][k % 3]
                draw.polygon([(x, 0), (x + width, 0), (x + width + size, size), (x + size, size)], fill=colour)
        image.save(out / f"{subject}-{i:02d}.png")
        if caption:
            (out / f"{subject}-{i:02d}.txt").write_text(caption)
    return out
