"""The generation panel in a real browser: Voilà serves a notebook, headless Chromium presses Generate.

Fails on "Error displaying widget", on a JavaScript error, when no image appears, or when the gallery does not
open the image at full size. Needs Debian's
chromium and the voila and playwright packages (`.ci/run` installs them); elsewhere it is skipped,
except in CI, where a missing piece is a failure.
"""

import os
import shutil
import socket
import subprocess
import sys
import time

import nbformat
import pytest

from .environment import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Not ours, and not an error of the page under test: resources from the internet (the sandbox has none), and
# Notebook 7's own UI extension, which Voilà loads with the other lab extensions but does not use.
IGNORED = ("Failed to load resource", "@jupyter-notebook/lab-extension")


def _ready():
    try:
        import playwright  # noqa: F401
        import voila  # noqa: F401
    except ImportError:
        return False
    return CHROMIUM is not None


pytestmark = pytest.mark.skipif(
    not _ready() and not os.environ.get("CI"), reason="needs chromium, voila and playwright (.ci/run installs them)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def voila_app(offline_hub_dir, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n"
            "from helpers.widgets import GenerationPanel\n"
            f"panel = GenerationPanel('sd15', out_dir={str(tmp_path / 'out')!r}, device='cpu')\n"
            "panel.size.options = ['64x64']\npanel.steps.value = 2\npanel.prompt.value = 'a red fox'\npanel"
        )
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "panel.ipynb")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "voila", str(tmp_path / "panel.ipynb"), "--no-browser", f"--port={port}",
         "--Voila.ip=127.0.0.1"],
        env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    yield f"http://127.0.0.1:{port}/", tmp_path
    server.terminate()
    server.wait(timeout=30)


def test_generate_in_a_real_browser(voila_app):
    from playwright.sync_api import sync_playwright

    url, tmp_path = voila_app
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
        page.get_by_role("button", name="Generate").click(timeout=180_000)
        page.wait_for_function("document.body.innerText.includes('done in')", timeout=180_000)
        images = page.locator("img")
        assert images.count() >= 1 and images.first.evaluate("i => i.naturalWidth") > 0, "the image rendered"
        body = page.inner_text("body")
        assert "Seed:" in body, "the recipe is shown"
        assert "step 2/2" in body and "it/s" in body, "the progress line counts steps"
        page.locator("img[width='128']").first.click(timeout=60_000)  # the gallery's thumbnail
        page.get_by_role("button", name="Reuse settings").wait_for(timeout=60_000)
        large = page.locator("img[width='64']")
        page.wait_for_function("[...document.querySelectorAll(\"img[width='64']\")].some(i => i.naturalWidth == 64)",
                               timeout=60_000)  # fmt: skip
        assert large.count() >= 1, "the enlarged image is shown at its full size"
        assert "download sd15-" in page.inner_text("body"), "the download link is offered"
        page.get_by_text("done in").hover()  # keys reach the panel with the mouse over its results
        page.keyboard.press("Control+Enter")
        page.get_by_role("button", name="#2 · seed").wait_for(timeout=180_000)  # a second image, from the keys
        page.screenshot(path=str(tmp_path / "panel.png"), full_page=True)
        content = page.content()
        browser.close()
    assert "Error displaying widget" not in content
    ours = [e for e in errors if not any(i in e for i in IGNORED)]
    assert not ours, ours
    assert (tmp_path / "panel.png").stat().st_size > 10_000
