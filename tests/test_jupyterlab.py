"""Both panels in JupyterLab, as a user sees them: headless chromium opens the notebook, runs it and clicks.

Each test fails on a widget that cannot display, on a JavaScript error, or when what it clicked did not happen
(an image on screen, a file on disk); its screenshots are left in outputs/browser/.
"""

from .browser import (
    check_page,
    image_data,
    jupyterlab,
    needs,
    notebook,
    open_url,
    page,
    run_all_cells,
    screenshot,
    set_slider,
    wait_for_text,
)

pytestmark = needs("jupyterlab")


def test_generation_panel_in_jupyterlab(offline_hub_dir, tmp_path):
    """Generate, enlarge from the gallery, reuse the settings for the same pixels, save, cancel."""
    out = tmp_path / "out"
    source = (
        "from helpers.panels.widgets import GenerationPanel\n"
        f"panel = GenerationPanel('sd15', out_dir={str(out)!r}, device='cpu')\n"
        "panel.size.options = ['64x64']\npanel.steps.value = 2\npanel.prompt.value = 'a red fox'\npanel"
    )
    with jupyterlab(notebook(tmp_path / "panel.ipynb", source)) as url, page() as tab:
        open_url(tab, url)
        run_all_cells(tab)
        panel = tab.locator(".jp-OutputArea")
        panel.get_by_role("button", name="Generate").click(timeout=240_000)
        wait_for_text(tab, "done in", context=" after Generate")
        assert "step 2/2" in panel.inner_text(), "the progress line counts steps"
        thumbnails = panel.locator("img[width='128']")
        thumbnails.first.click()  # enlarge
        tab.wait_for_function("[...document.querySelectorAll(\"img[width='64']\")].some(i => i.naturalWidth == 64)",
                              timeout=60_000)  # fmt: skip
        panel.get_by_title("write the PNG with its recipe").click()
        wait_for_text(tab, "saved", context=" after Save in the gallery")
        panel.get_by_role("button", name="Reuse settings").click()
        panel.get_by_role("button", name="Generate").click()
        panel.get_by_role("button", name="#2 · seed").wait_for(timeout=180_000)
        assert thumbnails.count() == 2
        assert image_data(thumbnails.nth(0)) == image_data(thumbnails.nth(1)), "reused settings, the same pixels"
        screenshot(tab, "jupyterlab-generation-panel")

        set_slider(tab, "Steps", 150)
        panel.get_by_role("button", name="Generate").click()
        wait_for_text(tab, "step ", context=" after a long Generate")
        panel.get_by_role("button", name="Cancel").click()
        wait_for_text(tab, "cancelled", timeout_s=240, context=" after Cancel")
        assert thumbnails.count() == 2, "a cancelled run adds nothing to the gallery"
        screenshot(tab, "jupyterlab-generation-panel-cancelled")
        check_page(tab)
    saved = sorted(out.rglob("*.png"))
    assert saved, f"Save wrote no PNG under {out}"


def test_compare_panel_in_jupyterlab(offline_hub_dir, tmp_path):
    out = tmp_path / "compare"
    source = (
        "from helpers.panels.widgets import ComparePanel\n"
        f"panel = ComparePanel(models=('sd15', 'dreamshaper-8'), out_dir={str(out)!r}, device='cpu',\n"
        "                     width=64, height=64, num_inference_steps=2)\n"
        "panel.prompts.value = 'a red fox'\npanel"
    )
    with jupyterlab(notebook(tmp_path / "compare.ipynb", source)) as url, page() as tab:
        open_url(tab, url)
        run_all_cells(tab)
        panel = tab.locator(".jp-OutputArea")
        panel.get_by_role("button", name="Run", exact=True).click(timeout=240_000)
        wait_for_text(tab, "done", timeout_s=300, context=" after Run")
        cells = tab.locator(".jp-OutputArea .widget-gridbox img")
        assert cells.count() == 2 and cells.first.evaluate("i => i.naturalWidth") == 64, "both cells rendered"
        tab.locator(".jp-OutputArea .widget-gridbox button").first.click()
        wait_for_text(tab, "Steps: 2", context=" after clicking a cell")
        panel.get_by_role("button", name="Export").click()
        wait_for_text(tab, "exported", context=" after Export")
        screenshot(tab, "jupyterlab-compare-panel")
        check_page(tab)
    assert (out / "table.csv").is_file(), "Export wrote the table"
    assert list(out.rglob("*grid*.png")), "Export wrote the grid image"
