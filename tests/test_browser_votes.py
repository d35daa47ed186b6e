"""The blind A/B panel in a real browser: Voilà serves it, headless Chromium clicks Left and presses →.

Each vote must be in the JSONL file on disk, and the next pair on screen, with no widget or JavaScript error.
Same set-up and skip rules as tests/test_browser.py (Debian's chromium, voila, playwright).
"""

import time

from PIL import Image

from helpers.judge.votes import pairs_from_folder, read_votes

from .browser import check_page, needs, notebook, open_url, page, screenshot, voila, wait_for_text
from .judge.test_votes import folder_of_images

pytestmark = needs("voila")


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


def _pixel_of(path) -> list[int]:
    with Image.open(path) as image:
        return list(image.convert("RGB").getpixel((0, 0)))


def test_vote_by_click_and_key_in_a_real_browser(tmp_path):
    images = folder_of_images(tmp_path / "images")
    log = tmp_path / "votes.jsonl"
    pairs = pairs_from_folder(images)
    source = (
        "from helpers.panels.ab import ABPanel\nfrom helpers.judge.votes import pairs_from_folder\n"
        f"ABPanel(pairs_from_folder({str(images)!r}), {str(log)!r}, min_look_s=0, n_boot=50)"
    )
    with voila(notebook(tmp_path / "votes.ipynb", source)) as url, page((1000, 900)) as tab:
        open_url(tab, url)
        wait_for_text(tab, "0 of 6 pairs", timeout_s=240)
        assert pairs[0].prompt in tab.inner_text("body")
        assert not any(name in tab.inner_text("body") for pair in pairs for name in (pair.left, pair.right))
        shown = tab.locator("img")
        assert shown.count() == 2 and shown.first.evaluate("i => i.naturalWidth") == 64, "both images rendered"
        assert _pixel(tab, 0) == _pixel_of(pairs[0].left_image) and _pixel(tab, 1) == _pixel_of(pairs[0].right_image)

        tab.get_by_role("button", name="Left").click()
        votes = _wait_for_votes(log, 1)
        assert (votes[0]["pair"], votes[0]["vote"]) == (pairs[0].id, "left")
        wait_for_text(tab, "1 of 6 pairs", context=f"; votes on disk: {read_votes(log)}")
        assert "saved: you voted left" in tab.inner_text("body")

        tab.locator("img").first.hover()  # ipyevents hears the keys while the pointer is over the panel
        tab.keyboard.press("ArrowRight")
        votes = _wait_for_votes(log, 2)
        assert (votes[1]["pair"], votes[1]["vote"]) == (pairs[1].id, "right")
        wait_for_text(tab, "2 of 6 pairs", context=f"; votes on disk: {read_votes(log)}")
        assert pairs[2].prompt in tab.inner_text("body") and "keep voting" in tab.inner_text("body")
        for side, path in enumerate((pairs[2].left_image, pairs[2].right_image)):
            want = _pixel_of(path)
            seen = _shows(tab, side, want)
            assert seen == want, f"image {side} shows {seen}, not {path.name} {want}; votes: {read_votes(log)}"
        screenshot(tab, "voila-ab-panel")
        check_page(tab)
    assert len(read_votes(log)) == 2, "one line a vote, nothing more"
