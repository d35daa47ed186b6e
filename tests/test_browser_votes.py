"""The blind A/B panel in a real browser: Voilà serves it, headless Chromium clicks Left and presses →.

Each vote must be in the JSONL file on disk, and the next pair on screen, with no widget or JavaScript error.
Same set-up and skip rules as tests/test_browser.py (Debian's chromium, voila, playwright).
"""

import os
import subprocess
import sys
import time

import nbformat
import pytest
from PIL import Image

from helpers.votes import pairs_from_folder, read_votes

from .environment import ROOT
from .test_browser import CHROMIUM, IGNORED, _free_port, pytestmark  # noqa: F401 - the same skip rule
from .test_votes import folder_of_images


@pytest.fixture
def voila_votes(tmp_path):
    images = folder_of_images(tmp_path / "images")
    log = tmp_path / "votes.jsonl"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n"
            "from helpers.ab_panel import ABPanel\nfrom helpers.votes import pairs_from_folder\n"
            f"ABPanel(pairs_from_folder({str(images)!r}), {str(log)!r}, min_look_s=0, n_boot=50)"
        )
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "votes.ipynb")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "voila", str(tmp_path / "votes.ipynb"), "--no-browser", f"--port={port}",
         "--Voila.ip=127.0.0.1"],
        env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    yield f"http://127.0.0.1:{port}/", tmp_path, pairs_from_folder(images), log
    server.terminate()
    server.wait(timeout=30)


def _wait_for_votes(log, n: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(votes := read_votes(log)) >= n:
            return votes
        time.sleep(0.1)
    raise AssertionError(f"{log}: {len(read_votes(log))} votes after {timeout} s, expected {n}")


def _pixel(page, index: int) -> list[int]:
    """The top-left pixel of the index-th image on the page, as the browser decoded it."""
    return (
        page.locator("img")
        .nth(index)
        .evaluate(
            "i => { const c = document.createElement('canvas'); c.width = c.height = 1; const x = c.getContext('2d');"
            " x.drawImage(i, 0, 0); return Array.from(x.getImageData(0, 0, 1, 1).data.slice(0, 3)); }"
        )
    )


def _shows(page, index: int, want: list[int], timeout_s: float = 60) -> list[int]:
    """The index-th image's top-left pixel once it shows `want`, or the last one seen (the text can update first)."""
    deadline = time.monotonic() + timeout_s
    page.locator("img").nth(index).scroll_into_view_if_needed()  # Chromium may not decode an image out of view
    while (seen := _pixel(page, index)) != want and time.monotonic() < deadline:
        time.sleep(0.2)
    return seen


def _wait_for_text(page, text: str, log, timeout_s: float = 120) -> None:
    """Wait until the page shows `text`; if it never does, say what the page and the vote file showed instead."""
    deadline = time.monotonic() + timeout_s
    while text not in (body := page.inner_text("body")) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert text in body, f"{text!r} never shown; the page showed {body[:600]!r}; votes on disk: {read_votes(log)}"


def _pixel_of(path) -> list[int]:
    with Image.open(path) as image:
        return list(image.convert("RGB").getpixel((0, 0)))


def test_vote_by_click_and_key_in_a_real_browser(voila_votes):
    from playwright.sync_api import sync_playwright

    url, tmp_path, pairs, log = voila_votes
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        for _ in range(60):  # the server needs a moment to start
            try:
                page.goto(url, timeout=180_000)
                break
            except Exception:  # noqa: BLE001 - connection refused until Voilà listens
                time.sleep(1)
        _wait_for_text(page, "0 of 6 pairs", log, timeout_s=240)
        assert pairs[0].prompt in page.inner_text("body")
        assert not any(name in page.inner_text("body") for pair in pairs for name in (pair.left, pair.right))
        images = page.locator("img")
        assert images.count() == 2 and images.first.evaluate("i => i.naturalWidth") == 64, "both images rendered"
        assert _pixel(page, 0) == _pixel_of(pairs[0].left_image) and _pixel(page, 1) == _pixel_of(pairs[0].right_image)

        page.get_by_role("button", name="Left").click()
        votes = _wait_for_votes(log, 1)
        assert (votes[0]["pair"], votes[0]["vote"]) == (pairs[0].id, "left")
        _wait_for_text(page, "1 of 6 pairs", log, timeout_s=120)
        assert "saved: you voted left" in page.inner_text("body")

        page.locator("img").first.hover()  # ipyevents hears the keys while the pointer is over the panel
        page.keyboard.press("ArrowRight")
        votes = _wait_for_votes(log, 2)
        assert (votes[1]["pair"], votes[1]["vote"]) == (pairs[1].id, "right")
        _wait_for_text(page, "2 of 6 pairs", log, timeout_s=120)
        assert pairs[2].prompt in page.inner_text("body") and "keep voting" in page.inner_text("body")
        for side, path in enumerate((pairs[2].left_image, pairs[2].right_image)):
            want = _pixel_of(path)
            seen = _shows(page, side, want)
            images = {p.name: _pixel_of(p) for pair in pairs for p in (pair.left_image, pair.right_image)}
            assert seen == want, f"image {side} shows {seen}, not {path.name} {want}; colours: {images}; votes: {read_votes(log)}"
        page.screenshot(path=str(tmp_path / "votes.png"), full_page=True)
        content = page.content()
        browser.close()
    assert "Error displaying widget" not in content
    ours = [e for e in errors if not any(i in e for i in IGNORED)]
    assert not ours, ours
    assert len(read_votes(log)) == 2, "one line a vote, nothing more"
