"""This session's images in the generation panel: thumbnails, one opened at full size, reused, saved, downloaded.

>>> gallery = Gallery(on_reuse=lambda record, seed_only: ...)
>>> gallery.add(result.images, result.records)
>>> gallery.show(0)          # full size, with its recipe; then Reuse settings, Reuse seed, Save, Download
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import ipywidgets as w
from ipyevents import Event

from ..base.records import Record, png_info, save_image

# The recipe wraps between words (Jupyter's own <pre> style breaks anywhere), and long tokens only when alone.
RECIPE_STYLE = "white-space:pre-wrap;word-break:normal;overflow-wrap:break-word;font-size:12px"


def recipe_html(record: Record) -> str:
    """A record's A1111 text as HTML that wraps at word boundaries."""
    return f"<pre style='{RECIPE_STYLE}'>{html.escape(record.a1111())}</pre>"


def png_bytes(image, record: Record | None = None) -> bytes:
    """The image as PNG bytes, with its recipe inside when a record is given."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=png_info(record) if record is not None else None)
    return buf.getvalue()


def download_link(image, record: Record) -> str:
    """An HTML link that downloads the image as a PNG carrying its recipe (no server or file needed)."""
    data = base64.b64encode(png_bytes(image, record)).decode()
    name = f"{record.model}-{record.seed}.png"
    return f"<a download='{html.escape(name)}' href='data:image/png;base64,{data}'>⬇ download {html.escape(name)}</a>"


class Gallery(w.VBox):
    """The images made in this session, newest first; a click on one shows it at full size with its recipe.

    `on_reuse(record, seed_only)` is called by "Reuse settings" (seed_only False) and "Reuse seed" (True).
    """

    def __init__(self, on_reuse, out_dir: str | Path = "outputs/panel", thumb: int = 128):
        self.on_reuse, self.out_dir, self.thumb = on_reuse, Path(out_dir), thumb
        self.entries: list[tuple] = []  # (PIL image, Record), in the order made
        self.selected: int | None = None
        self.clicks: list[Event] = []  # a click on a thumbnail opens it (ipyevents: images have no on_click)
        self.title = w.HTML("<b>Gallery</b> (this session): click an image to open it")
        self.thumbs = w.Box(layout=w.Layout(flex_flow="row wrap", grid_gap="4px"))
        self.large = w.Image(format="png", layout=w.Layout(max_width="none"))  # full size: no width is set
        self.recipe = w.HTML()
        self.reuse_button = w.Button(description="Reuse settings", icon="sliders", tooltip="put every setting back")
        self.reuse_seed_button = w.Button(description="Reuse seed", icon="recycle", tooltip="only its seed")
        self.save_button = w.Button(description="Save", icon="floppy-o", tooltip="write the PNG with its recipe")
        self.close_button = w.Button(description="Close", icon="times")
        self.download = w.HTML()
        self.status = w.HTML()
        self.reuse_button.on_click(lambda _: self.reuse(seed_only=False))
        self.reuse_seed_button.on_click(lambda _: self.reuse(seed_only=True))
        self.save_button.on_click(lambda _: self.save())
        self.close_button.on_click(lambda _: self.close_view())
        actions = w.HBox([self.reuse_button, self.reuse_seed_button, self.save_button, self.close_button])
        self.view = w.VBox([actions, self.download, self.status, self.large, self.recipe])
        self.view.layout.display = "none"
        super().__init__([self.title, self.thumbs, self.view])

    def add(self, images, records) -> None:
        """Add a run's images (their thumbnails go first)."""
        start = len(self.entries)
        self.entries += list(zip(images, records, strict=True))
        new = [self._thumb(start + i) for i in range(len(images))]
        self.thumbs.children = [*reversed(new), *self.thumbs.children]

    def _thumb(self, index: int) -> w.Widget:
        image, record = self.entries[index]
        small = image.copy()
        small.thumbnail((self.thumb, self.thumb))
        button = w.Button(description=f"#{index + 1} · seed {record.seed}", icon="search-plus",
                          tooltip="open at full size", layout=w.Layout(width=f"{max(self.thumb, 170)}px"))  # fmt: skip
        button.on_click(lambda _: self.show(index))
        picture = w.Image(value=png_bytes(small), format="png", width=self.thumb)
        click = Event(source=picture, watched_events=["click"])
        click.on_dom_event(lambda _: self.show(index))
        self.clicks.append(click)
        return w.VBox([picture, button])

    def show(self, index: int) -> None:
        """Show image `index` (in the order made) at full size, with its recipe and download link."""
        image, record = self.entries[index]
        self.selected = index
        self.large.value = png_bytes(image)
        self.large.width, self.large.height = str(image.width), str(image.height)
        self.recipe.value = recipe_html(record)
        self.download.value = download_link(image, record)
        self.status.value = f"#{index + 1}: {image.width}x{image.height}"
        self.view.layout.display = ""

    def close_view(self) -> None:
        self.selected = None
        self.view.layout.display = "none"

    def reuse(self, seed_only: bool = False) -> None:
        """Put the open image's settings (or only its seed) back into the panel."""
        if self.selected is not None:
            self.on_reuse(self.entries[self.selected][1], seed_only)

    def save(self) -> Path | None:
        """Write the open image as a PNG with its recipe into the panel's folder; returns the path."""
        if self.selected is None:
            return None
        image, record = self.entries[self.selected]
        path = save_image(image, record, self.out_dir)
        self.status.value = f"saved {html.escape(str(path))}"
        return path
