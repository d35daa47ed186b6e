"""Labelled image grids: axis titles and values, long labels wrapped, an error tile where a cell failed.

>>> grid = image_grid([[im1, im2], [im3, "scheduler 'LCM' is not valid"]],
...                   col_labels=["10 steps", "30 steps"], row_labels=["CFG 3", "CFG 7"],
...                   x_title="num_inference_steps", y_title="guidance_scale")
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

BACKGROUND, INK, ERROR_BG, ERROR_INK, PENDING_BG = "white", "black", (60, 20, 20), (255, 150, 150), (225, 225, 225)


def _font(size: int):
    return ImageFont.load_default(size=size)


def _wrap(draw, text: str, font, width: int) -> list[str]:
    """Lines of `text` that fit `width` pixels, broken at spaces (long words are cut)."""
    lines = []
    for paragraph in str(text).split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if draw.textlength(candidate, font=font) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while draw.textlength(word, font=font) > width and len(word) > 1:  # a word wider than the line
                cut = max(1, int(len(word) * width / draw.textlength(word, font=font)))
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


def _text_block(draw, xy, text, font, width, fill=INK, align="center", max_lines=6):
    x, y = xy
    lines = _wrap(draw, text, font, width)
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [lines[max_lines - 1][:-1] + "…"]
    line_h = font.size + 4
    for i, line in enumerate(lines):
        w = draw.textlength(line, font=font)
        dx = (width - w) / 2 if align == "center" else 0
        draw.text((x + dx, y + i * line_h), line, font=font, fill=fill)
    return len(lines) * line_h


def error_tile(size: tuple[int, int], message: str) -> Image.Image:
    """A dark tile that says why a cell has no image."""
    tile = Image.new("RGB", size, ERROR_BG)
    draw = ImageDraw.Draw(tile)
    font = _font(max(10, size[0] // 22))
    _text_block(draw, (8, 8), "error: " + message, font, size[0] - 16, fill=ERROR_INK, align="left", max_lines=12)
    return tile


def image_grid(
    cells: list[list],
    col_labels: list[str] | None = None,
    row_labels: list[str] | None = None,
    title: str | None = None,
    x_title: str | None = None,
    y_title: str | None = None,
    max_cell: int = 512,
    min_cell: int = 256,
) -> Image.Image:
    """A grid of `cells[row][col]`: a PIL image, a string (an error tile saying it) or None (a blank tile).

    Cells are scaled to at most `max_cell` pixels a side, and small images up to `min_cell` so labels fit.
    """
    images = [c for row in cells for c in row if isinstance(c, Image.Image)]
    w, h = images[0].size if images else (256, 256)
    scale = min(max_cell / max(w, h), max(1.0, min_cell / min(w, h)))  # small images are shown larger
    cw, ch = max(1, int(w * scale)), max(1, int(h * scale))
    font, small = _font(min(28, max(14, cw // 18))), _font(min(22, max(12, cw // 24)))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = int(max(200, cw * 0.7)) if row_labels else 0
    top_label_h = max((len(_wrap(probe, t, font, cw - 8)) for t in col_labels or [""]), default=1) * (font.size + 4)
    title_h = (font.size + 12) if title else 0
    x_title_h = (small.size + 8) if x_title else 0
    top = title_h + x_title_h + (top_label_h + 8 if col_labels else 0)
    rows, cols = len(cells), max(len(r) for r in cells)
    grid = Image.new("RGB", (left + cols * cw, top + rows * ch), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    if title:
        _text_block(draw, (0, 6), title, font, grid.width, max_lines=1)
    if x_title:
        _text_block(draw, (left, title_h + 2), x_title, small, cols * cw, fill=(90, 90, 90), max_lines=1)
    for j, label in enumerate(col_labels or []):
        _text_block(draw, (left + j * cw + 4, title_h + x_title_h + 4), label, font, cw - 8)
    if y_title and left:
        _text_block(draw, (4, title_h + 2), y_title, small, left - 8, fill=(90, 90, 90), max_lines=2)
    for i, row in enumerate(cells):
        if row_labels:
            block = len(_wrap(probe, row_labels[i], font, left - 12)) * (font.size + 4)
            _text_block(draw, (6, top + i * ch + max(0, (ch - block) // 2)), row_labels[i], font, left - 12)
        for j, cell in enumerate(row):
            box = (left + j * cw, top + i * ch)
            if isinstance(cell, Image.Image):
                grid.paste(cell.convert("RGB").resize((cw, ch), Image.Resampling.LANCZOS), box)
            elif isinstance(cell, str):
                grid.paste(error_tile((cw, ch), cell), box)
            else:
                grid.paste(Image.new("RGB", (cw, ch), PENDING_BG), box)
    return grid


def show(image: Image.Image, title: str | None = None, width: float = 12):
    """Display an image in a notebook with matplotlib, at a sensible size; returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, width * image.height / image.width))
    ax.imshow(image)
    ax.axis("off")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
