"""Quiet, useful output: no library noise, the Hub's offline notices said once, one labelled bar per call."""

import logging
import os
import re
import subprocess
import sys
import warnings

import pytest
import torch
from PIL import Image

import helpers
from helpers import generate, load_pipeline, quiet, registry

from ..common import SMALL
from ..environment import ROOT

pytestmark = pytest.mark.usefixtures("hub")

REG = registry.default()
# What libraries printed before: bitsandbytes, transformers, diffusers' deprecations, the Hub, loading bars.
NOISE = ("gemm_4bit", "bitsandbytes", "torchvision", "FutureWarning", "deprecated", "Could not reach the Hub",
         "Couldn't connect to the Hub", "Loading pipeline components", "Loading weights", "was truncated",
         "Token indices sequence length", "No LoRA keys", "publisher trust check", "torch.jit.script",
         "should be kept in float32", "local_dir_use_symlinks", "indexing errors", "multivariate normal")  # fmt: skip


@pytest.fixture
def logged():
    """The messages the libraries log (their own handlers write to a stream pytest's capfd may not see)."""
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    loggers = [logging.getLogger(n) for n in ("diffusers", "transformers", "huggingface_hub")]
    for lg in loggers:
        lg.addHandler(handler)
    yield seen
    for lg in loggers:
        lg.removeHandler(handler)


def _noise(*texts) -> list[str]:
    return [n for n in NOISE for t in texts if n in t]


def _bars(err: str) -> list[str]:
    """The tqdm bar states in captured stderr (each redraw is one, separated by carriage returns)."""
    return [s.strip() for s in re.split(r"[\r\n]+", err) if re.search(r"\d+/\d+ \[", s)]


def test_the_cli_list_prints_no_library_noise():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "helpers", "list"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.startswith("key"), out.stderr
    assert not [n for n in NOISE if n in out.stderr] and out.stderr.strip() == "", out.stderr


def test_the_cli_says_no_library_notices_while_it_imports_or_steers(tmp_path):
    # Importing the libraries (kernels' offline trust check, torchvision's torch.jit.script), a ControlNet and an
    # IP-Adapter (float32: [], local_dir_use_symlinks), a long prompt read in chunks by compel ("(482 > 77)").
    from ..run.test_control import EDGES

    EDGES.save(tmp_path / "edges.png")
    Image.new("RGB", (48, 48), (220, 30, 30)).save(tmp_path / "red.png")
    long = "a castle on a hill " * 40
    args = ["generate", "sd15", long, "--seed", "1", "--steps", "2", "--size", "64", "--out", str(tmp_path / "out"),
            "--control", f"canny-sd15={tmp_path / 'edges.png'}", "--ip-adapter", str(tmp_path / "red.png")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": ""}
    out = subprocess.run([sys.executable, "-m", "helpers", *args], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0 and list((tmp_path / "out").glob("*.png")), out.stderr
    assert not [n for n in NOISE if n in out.stderr], out.stderr


def test_loading_an_embedding_says_nothing_about_resizing_the_token_table(tmp_path, logged, capfd):
    from safetensors.torch import save_file
    from transformers.utils.logging import warning_once

    from helpers import styles

    pipe = helpers.get_pipeline("sd15", device="cpu")
    path = tmp_path / "fox.safetensors"
    save_file({"<fox-quiet>": torch.randn(1, pipe.text_encoder.config.hidden_size)}, str(path))
    warning_once.cache_clear()  # transformers says it once per process: an earlier test may have had it said
    rows = pipe.text_encoder.get_input_embeddings().weight.shape[0]
    styles.load_embedding(pipe, str(path), token="<fox-quiet>")
    assert pipe.text_encoder.get_input_embeddings().weight.shape[0] == rows + 1, "the table grew"
    assert not _noise(capfd.readouterr().err, *logged), logged


def test_loading_shows_no_bars_and_says_offline_once(capfd, monkeypatch, logged):
    monkeypatch.setattr(quiet, "_SAID", set())
    load_pipeline("sd15", device="cpu")
    load_pipeline("sd15-lcm-lora", device="cpu")  # a fused LoRA without text-encoder weights
    out, err = capfd.readouterr()
    assert not _noise(err, *logged), (err, logged)
    assert out.count(quiet.offline_notice()) == 1, out
    assert "HF_HUB_OFFLINE=1" in quiet.offline_notice()


def test_loading_leaves_download_and_library_bars_as_they_were():
    import diffusers
    import huggingface_hub
    import transformers

    with quiet.loading():
        assert not diffusers.utils.logging.is_progress_bar_enabled()
        assert not transformers.utils.logging.is_progress_bar_enabled()
        assert not huggingface_hub.utils.are_progress_bars_disabled(), "downloads keep their bars"
    assert diffusers.utils.logging.is_progress_bar_enabled() and transformers.utils.logging.is_progress_bar_enabled()


def test_a_generate_call_shows_one_labelled_bar_over_all_its_images(capfd):
    pipe = helpers.get_pipeline("sd15", device="cpu")
    capfd.readouterr()
    generate("sd15", "a cat", seed=1, num_images=2, **{**SMALL, "num_inference_steps": 3})
    _, err = capfd.readouterr()
    bars = _bars(err)
    assert bars and all(b.startswith("[sd15] 2 images: ") for b in bars), err
    assert "6/6 [" in bars[-1], bars[-1]
    assert not _noise(err), err
    pipe(prompt="a cat", num_inference_steps=2, height=64, width=64)  # the pipeline's own bar is back outside
    assert _bars(capfd.readouterr().err), "the pipeline's own bar is restored after the call"


def test_the_bar_counts_the_steps_img2img_really_runs(capfd):
    image = Image.new("RGB", (64, 64), (200, 120, 40))
    generate("sd15", "a cat", seed=1, image=image, strength=0.5, **{**SMALL, "num_inference_steps": 4})
    bars = _bars(capfd.readouterr().err)
    assert bars and bars[-1].startswith("[sd15] 1 image: ") and "2/2 [" in bars[-1], bars


def test_a_long_prompt_is_said_once_in_our_words(capfd, logged):
    limit = REG.get("flux-schnell").defaults.max_sequence_length
    helpers.get_pipeline("flux-schnell", device="cpu")
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        generate("flux-schnell", "a castle on a hill " * limit + "with golden dragons " * 100, seed=1, **SMALL)
    _, err = capfd.readouterr()
    assert len([w for w in caught if "Dropped" in str(w.message)]) == 1
    assert not _noise(err, *logged), "the pipeline's own truncation notices repeat ours"


def test_in_a_notebook_the_bar_also_leaves_a_line_of_text(capsys, monkeypatch):
    from tqdm.notebook import tqdm as notebook_tqdm

    class AutoInJupyter(notebook_tqdm):  # what tqdm.auto's class is in a Jupyter kernel: a subclass, elsewhere
        pass

    monkeypatch.setattr(quiet, "tqdm", AutoInJupyter)
    generate("sd15", "a cat", seed=1, **SMALL)
    out = capsys.readouterr().out
    assert re.search(r"^\[sd15\] 1 image: 2 steps in \d+\.\d s$", out, re.M), out


def test_a_sweep_shows_one_bar_over_its_cells(capfd, tmp_path):
    params = {"model": "sd15", "prompt": "a cat", "seed": 1, "num_inference_steps": 2, "height": 64, "width": 64}
    helpers.sweep(params, {"x": ("seed", [1, 2])}, out_dir=tmp_path, device="cpu", warmup=False)
    _, err = capfd.readouterr()
    bars = _bars(err)
    assert bars and all(b.startswith("sweep: ") for b in bars), bars
    assert "2/2 [" in bars[-1], bars[-1]
    generate("sd15", "a cat", seed=1, **SMALL)
    assert _bars(capfd.readouterr().err)[-1].startswith("[sd15] 1 image: "), "after the sweep, calls have bars again"
