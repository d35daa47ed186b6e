"""The generation panel in a real browser: Voilà serves a notebook, headless Chromium presses Generate.

Fails on "Error displaying widget", on a JavaScript error, or when no image appears. Needs Debian's
chromium and the voila and playwright packages (`.ci/run` installs them); elsewhere it is skipped,
except in CI, where a missing piece is a failure. tests/test_jupyterlab.py drives the same panels in JupyterLab.
"""

from .browser import check_page, needs, notebook, open_url, page, screenshot, voila, wait_for_text

pytestmark = needs("voila")


def test_generate_in_a_real_browser(offline_hub_dir, tmp_path):
    source = (
        "from helpers.panels.widgets import GenerationPanel\n"
        f"panel = GenerationPanel('sd15', out_dir={str(tmp_path / 'out')!r}, device='cpu')\n"
        "panel.size.options = ['64x64']\npanel.steps.value = 2\npanel.prompt.value = 'a red fox'\npanel"
    )
    with voila(notebook(tmp_path / "panel.ipynb", source)) as url, page((1000, 900)) as tab:
        open_url(tab, url)
        tab.get_by_role("button", name="Generate").click(timeout=180_000)
        wait_for_text(tab, "done in", context=" after Generate")
        images = tab.locator("img")
        assert images.count() >= 1 and images.first.evaluate("i => i.naturalWidth") > 0, "the image rendered"
        body = tab.inner_text("body")
        assert "Seed:" in body, "the recipe is shown"
        assert "step 2/2" in body and "it/s" in body, "the progress line counts steps"
        tab.locator("img[width='128']").first.click(timeout=60_000)  # the gallery's thumbnail
        tab.get_by_role("button", name="Reuse settings").wait_for(timeout=60_000)
        large = tab.locator("img[width='64']")
        tab.wait_for_function("[...document.querySelectorAll(\"img[width='64']\")].some(i => i.naturalWidth == 64)",
                               timeout=60_000)  # fmt: skip
        assert large.count() >= 1, "the enlarged image is shown at its full size"
        assert "download sd15-" in tab.inner_text("body"), "the download link is offered"
        tab.get_by_text("done in").hover()  # keys reach the panel with the mouse over its results
        tab.keyboard.press("Control+Enter")
        tab.get_by_role("button", name="#2 · seed").wait_for(timeout=180_000)  # a second image, from the keys
        screenshot(tab, "voila-generation-panel")
        check_page(tab)
