"""Comparison grids and charts from given manifest rows (the images and seconds are given; nothing is generated).

The end-to-end comparison on the offline hub is test_compare_four_models_across_two_families in
tests/sweeps/test_sweep.py.
"""

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from helpers.base.grids import BACKGROUND
from helpers.sweeps.compare import CompareResult, column_labels, comparison_grid, settings_labels
from helpers.sweeps.sweep import Axis, SweepResult, _axis_labels

MODELS = ["sd15", "sdxl-turbo"]
PROMPTS = ["a red fox", "a castle"]
SEEDS = [1, 2]
USED = {
    "sd15": {"steps": 30, "guidance_scale": 7.5, "scheduler": "DPM++ 2M Karras", "size": "64x64"},
    "sdxl-turbo": {"steps": 1, "guidance_scale": 0.0, "scheduler": "Euler a", "size": "64x64"},
}


def _rows(tmp_path, seconds=(0.2, 0.21, 0.19, 0.2)):
    (tmp_path / "images").mkdir(exist_ok=True)
    rows = []
    for i, model in enumerate(MODELS):
        for k, seed in enumerate(SEEDS):
            for j, prompt in enumerate(PROMPTS):
                path = f"images/{i}{j}{k}.png"
                Image.new("RGB", (64, 64), (40 + 60 * i, 40 + 40 * j, 40 + 80 * k)).save(tmp_path / path)
                row = {"x": j, "y": i, "z": k, "params": {"model": model, "prompt": prompt, "seed": seed}}
                total = seconds[2 * k + j] * (i + 1)
                row |= {"status": "ok", "path": path, "used": USED[model], "timings": {"total": total}}
                rows.append(row | ({"load_s": 1.5, "warmup_s": 3.0} if j == k == 0 else {}))
    return rows


def test_labels_name_prompt_and_seed_and_only_the_settings_that_differ():
    assert column_labels(PROMPTS, SEEDS) == ["a red fox\nseed 1", "a castle\nseed 1", "a red fox\nseed 2",
                                              "a castle\nseed 2"]  # fmt: skip
    labels, shared = settings_labels(USED)
    assert labels == {
        "sd15": "sd15\nDPM++ 2M Karras · 30 steps · CFG 7.5",
        "sdxl-turbo": "sdxl-turbo\nEuler a · 1 step · CFG 0",
    }
    assert shared == "64x64", "what every model shares goes to the title, once"


def test_the_grid_has_a_header_band_with_the_labels_drawn(tmp_path):
    rows = _rows(tmp_path)
    grid = comparison_grid(rows, tmp_path, MODELS, PROMPTS, SEEDS)
    cell = 256  # 64 px images are shown at 256 px
    left, top = grid.width - 4 * cell, grid.height - 2 * cell
    assert left > 0 and top > 0, "room for row headers and column headers"
    pixels = np.asarray(grid)
    header, side = pixels[:top, left:], pixels[top:, :left]
    white = np.array(Image.new("RGB", (1, 1), BACKGROUND))[0, 0]
    assert (header != white).any(axis=-1).mean() > 0.01, "text in the column header band"
    assert (side != white).any(axis=-1).mean() > 0.01, "text in the row header band"
    for k in range(2):  # the columns go prompt by prompt under each seed: colours from the given images
        for j in range(2):
            x, y = left + (2 * k + j) * cell + cell // 2, top + cell // 2
            assert tuple(pixels[y, x]) == (40, 40 + 40 * j, 40 + 80 * k)
    other = comparison_grid(rows, tmp_path, MODELS, ["a blue fox", "a castle"], SEEDS)
    assert (np.asarray(other)[:top, left : left + cell] != header[:, :cell]).any(), "the header says the prompt"


def test_table_and_chart_one_figure_no_memory_panel_when_not_measured(tmp_path):
    rows = _rows(tmp_path)
    result = CompareResult(MODELS, PROMPTS, SEEDS, SweepResult(tmp_path, rows), [])
    table = result.table
    assert table.loc["sd15", "warmup_s"] == 3.0 and table.loc["sd15", "s_per_image"] == 0.2
    assert table.loc["sdxl-turbo", "s_per_image"] == 0.4 and table.loc["sdxl-turbo", "scheduler"] == "Euler a"
    assert "peak_memory_gb" not in table and not table.isna().any().any()
    before = plt.get_fignums()
    fig = result.chart()
    assert plt.get_fignums() == before, "closed in pyplot: a notebook shows it once, as the cell's value"
    assert len(fig.axes) == 1, "no empty memory panel"
    assert "median of 4" in fig.axes[0].get_title()


def test_a_sweep_over_models_labels_them_with_the_settings_not_swept():
    rows = [{"params": {"model": m}, "status": "ok", "used": USED[m]} for m in MODELS]
    models, steps = Axis.make("model", MODELS), Axis.make("steps", [1, 2])
    assert _axis_labels(models, [steps, models], rows) == [
        "sd15\nDPM++ 2M Karras · CFG 7.5",
        "sdxl-turbo\nEuler a · CFG 0",
    ]
    assert _axis_labels(steps, [steps, models], rows) == ["1", "2"]
