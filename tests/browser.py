"""What the browser tests share: Debian's chromium driven by playwright, a notebook served by Voilà or JupyterLab.

A page collects its JavaScript errors; `check_page` fails on those and on "Error displaying widget". Screenshots go
to `outputs/browser/` in the checkout (or `$SDZOO_SCREENSHOTS`), where a person can open them after a run.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from .environment import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Not ours, and not an error of the page under test: resources from the internet (the sandbox has none), and
# Notebook 7's own UI extension, which Voilà loads with the other lab extensions but does not use.
IGNORED = ("Failed to load resource", "@jupyter-notebook/lab-extension")
SCREENSHOTS = Path(os.environ.get("SDZOO_SCREENSHOTS", ROOT / "outputs" / "browser"))


def _ready(server: str) -> bool:
    try:
        import playwright  # noqa: F401

        __import__(server)
    except ImportError:
        return False
    return CHROMIUM is not None


def needs(server: str):
    """Skip without chromium, playwright and `server` (voila or jupyterlab), except in CI, where it must run."""
    return pytest.mark.skipif(
        not _ready(server) and not os.environ.get("CI"),
        reason=f"needs chromium, {server} and playwright (.ci/run installs them)",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def notebook(path: Path, source: str) -> Path:
    """A one-cell notebook that imports this checkout's helpers and runs `source`."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n{source}")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@contextlib.contextmanager
def _server(args: list[str]):
    server = subprocess.Popen(args, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        server.terminate()
        server.wait(timeout=30)


@contextlib.contextmanager
def voila(path: Path):
    """Voilà serving the notebook at `path`; yields its URL."""
    port = free_port()
    with _server([sys.executable, "-m", "voila", str(path), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1"]):
        yield f"http://127.0.0.1:{port}/"


@contextlib.contextmanager
def jupyterlab(path: Path):
    """JupyterLab (no token; settings and workspaces in a scratch folder) serving `path`; yields its URL."""
    port, scratch = free_port(), path.parent / "lab-state"
    args = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
            "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={path.parent}",
            f"--LabApp.workspaces_dir={scratch / 'workspaces'}", f"--LabApp.user_settings_dir={scratch / 'settings'}",
            "--allow-root", "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]  # fmt: skip
    with _server(args):
        yield f"http://127.0.0.1:{port}/lab/tree/{path.name}?reset"


@contextlib.contextmanager
def page(viewport=(1100, 1000)):
    """A headless chromium page; `page.errors` collects its console errors and uncaught exceptions."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        tab = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        tab.errors = []
        tab.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: tab.errors.append(str(e)))
        try:
            yield tab
        finally:
            browser.close()


def open_url(tab, url: str) -> None:
    """Go to `url`, retrying while the server is still starting."""
    for _ in range(120):
        try:
            tab.goto(url, timeout=180_000)
            return
        except Exception:  # noqa: BLE001 - connection refused until the server listens
            time.sleep(1)
    raise AssertionError(f"{url} never answered")


def run_all_cells(tab) -> None:
    """JupyterLab: Run > Run All Cells, once the notebook's kernel is idle; checks that the first cell started."""
    tab.locator(".jp-Notebook").first.wait_for(timeout=180_000)
    wait_for_text(tab, "| Idle", context=" (the kernel never became idle)")
    news = tab.get_by_role("button", name="No", exact=True)  # JupyterLab's "notified about news?" toast
    if news.count():
        news.first.click()  # so that it does not cover the panel in the screenshots
    for _ in range(3):
        tab.locator(".lm-MenuBar-item", has_text="Run").first.click()
        tab.locator(".lm-Menu-item", has_text="Run All Cells").first.click()
        prompt = tab.locator(".jp-InputArea-prompt").first
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if any(mark in prompt.inner_text() for mark in ("*", "1")):
                return
            time.sleep(0.25)
    raise AssertionError(f"Run All Cells did not start the notebook; the page showed {tab.inner_text('body')[-800:]!r}")


def wait_for_text(tab, text: str, timeout_s: float = 180, context: str = "") -> None:
    """Wait until the page shows `text`; if it never does, say what it showed instead."""
    deadline = time.monotonic() + timeout_s
    while text not in (body := tab.inner_text("body")) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert text in body, f"{text!r} never shown{context}; the page showed {body[-800:]!r}"


def screenshot(tab, name: str) -> Path:
    """Save a full-page screenshot as outputs/browser/NAME.png and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    tab.screenshot(path=str(path), full_page=True)
    return path


def check_page(tab) -> None:
    """No widget failed to display and no JavaScript error of ours was logged."""
    assert "Error displaying widget" not in tab.content()
    ours = [e for e in tab.errors if not any(i in e for i in IGNORED)]
    assert not ours, ours


def image_data(image) -> list[int]:
    """The RGBA bytes of an <img> (a playwright locator) at its natural size, as the browser decoded it."""
    return image.evaluate(
        "i => { const c = document.createElement('canvas'); c.width = i.naturalWidth; c.height = i.naturalHeight;"
        " const x = c.getContext('2d'); x.drawImage(i, 0, 0);"
        " return Array.from(x.getImageData(0, 0, c.width, c.height).data); }"
    )


def set_slider(tab, label: str, value: int) -> None:
    """Type a value into an ipywidgets slider's readout (the one whose description is `label`)."""
    slider = tab.locator(".widget-slider", has=tab.locator(".widget-label", has_text=label)).first
    readout = slider.locator(".widget-readout")
    readout.click()
    tab.keyboard.press("Control+A")
    tab.keyboard.type(str(value))
    tab.keyboard.press("Enter")
