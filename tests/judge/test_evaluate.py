"""Scores where the numbers appear: compare, sweeps and `python -m helpers evaluate`, end to end on the tiny judges."""

import csv
import importlib.util
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from helpers import generate
from helpers.__main__ import main
from helpers.base.errors import ZooError
from helpers.judge import evaluate
from helpers.sweeps.compare import compare
from helpers.sweeps.sweep import sweep

from ..environment import ROOT

pytestmark = pytest.mark.usefixtures("hub")

SMALL = {"height": 64, "width": 64, "num_inference_steps": 2, "device": "cpu"}


def test_compare_adds_metric_columns_a_chart_and_the_quality_cost_plot(tmp_path):
    result = compare(["sd15", "sdxl-turbo"], ["a red fox", "a castle"], seeds=[1], out_dir=tmp_path,
                     metrics=["clip", "pickscore"], **SMALL)  # fmt: skip
    table = result.table
    assert list(table.index) == ["sd15", "sdxl-turbo"]
    assert table[["clip", "pickscore", "clip_std", "s_per_image"]].notna().all().all()
    assert "openai/clip-vit-large-patch14" in table.attrs["how"]["clip"]
    assert len(result.chart().axes) == 3  # time, then one panel per metric (no memory panel: not measured on a CPU)
    assert len(result.cost_plot("pickscore").axes[0].collections[0].get_offsets()) == 2  # a point per model


def test_tables_are_written_as_json_with_how_each_number_was_made(tmp_path):
    table = pd.DataFrame([{"model": "sd15", "images": 2, "fid": 12.5, "fid_std": None}])
    table.attrs = {"how": {"fid": "fid: FID Inception-v3"}, "warnings": ["FID from 2 images is biased upwards"]}
    json_path, md_path = evaluate.write(table, tmp_path / "scores.json")
    data = json.loads(json_path.read_text())
    assert data["rows"] == [{"model": "sd15", "images": 2, "fid": 12.5, "fid_std": None}]
    assert data["how"]["fid"].startswith("fid: FID") and data["warnings"]
    assert "| sd15 | 2 | 12.5 |  |" in md_path.read_text() and "- warning: FID from 2" in md_path.read_text()


def test_the_frontier_keeps_what_nothing_beats_on_both_score_and_cost():
    table = pd.DataFrame(
        {"s_per_image": [1.0, 2.0, 3.0, 4.0], "clip": [20, 25, 24, 30], "fid": [30, 20, 10, 15]}, index=list("abcd")
    )
    assert evaluate.pareto_front(table, "clip") == ["a", "b", "d"]  # c costs more than b and scores less
    assert evaluate.pareto_front(table, "fid") == ["a", "b", "c"]  # lower is better for FID


def test_a_sweep_scores_every_cell_and_keeps_the_scores_in_its_manifest(tmp_path):
    params = {"model": "sd15", "prompt": "a red fox", "seed": 1, "height": 64, "width": 64}
    result = sweep(params, {"x": ("num_inference_steps", [1, 2])}, out_dir=tmp_path, device="cpu", metrics=["clip"])
    assert all(isinstance(r["scores"]["clip"], float) for r in result.rows)
    saved = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert [r["scores"] for r in saved] == [r["scores"] for r in result.rows]
    assert evaluate.sweep_plot(result, "clip", x="num_inference_steps").axes[0].lines
    again = sweep(params, {"x": ("num_inference_steps", [1, 2])}, out_dir=tmp_path, device="cpu", metrics=["clip"])
    assert [r["scores"] for r in again.rows] == [r["scores"] for r in result.rows]  # resumed: kept, not redone
    with pytest.raises(ZooError, match="a sweep cell is one image"):
        evaluate.score_cells(result, ["fid"])


def _cli(*args):
    proc = subprocess.run([sys.executable, "-m", "helpers", "evaluate", *args], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


def test_the_command_line_scores_a_folder_by_model_and_settings(tmp_path):
    for model in ("sd15", "sdxl-turbo"):
        generate(model, "a red fox", seed=1, num_images=2, **SMALL).save(tmp_path / "images")
    generate("sd15", "a castle", seed=9, **SMALL).save(tmp_path / "reference")
    generate("sd15", "a dog", seed=3, **SMALL).save(tmp_path / "reference")
    out = tmp_path / "scores.csv"
    code, stdout, stderr = _cli(str(tmp_path / "images"), "--reference", str(tmp_path / "reference"),
                                "--metrics", "clip,fid", "--out", str(out), "--device", "cpu")  # fmt: skip
    assert code == 0, stderr
    assert stdout.strip() == out.with_suffix(".md").read_text().strip()  # the table goes to stdout
    assert f"written: {out} and {out.with_suffix('.md')}" in stderr
    assert "Loading weights" not in stderr and "Traceback" not in stderr
    rows = list(csv.DictReader(out.open()))
    assert [(r["model"], r["images"], r["steps"], r["size"]) for r in rows] == [
        ("sd15", "2", "2", "64x64"),
        ("sdxl-turbo", "2", "2", "64x64"),
    ]
    assert all(float(r["clip"]) >= 0 and float(r["fid"]) >= 0 for r in rows)
    md = out.with_suffix(".md").read_text()
    assert md.startswith("| model | steps | guidance | scheduler | size | images | clip |")
    assert "clean-fid: PIL bicubic" in md and "pt_inception-2015-12-05" in md and "scoring" in stderr
    first = out.read_text()
    code, _, stderr = _cli(str(tmp_path / "images"), "--metrics", "clip", "--out", str(out), "--device", "cpu")
    assert code == 0, stderr
    again = tmp_path / "scores-2.csv"
    assert out.read_text() == first and "fid" not in again.read_text().splitlines()[0]  # both kept, each whole
    assert f"{out} exists and is kept: these results go to {again}" in stderr


def test_the_command_line_says_what_is_wrong(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path), "--metrics", "clip"]) == 2
    assert "no PNG with a generation recipe" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--metrics", "clipp"]) == 2
    assert "unknown metric(s) ['clipp']" in capsys.readouterr().err


def test_the_benchmark_runs_in_a_tiny_smoke_form(tmp_path):
    spec = importlib.util.spec_from_file_location("evaluation_bench", ROOT / "benchmarks" / "evaluation.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = ["--images", "2", "--batch", "2", "--repeats", "1", "--models", "2", "--prompts", "2", "--size", "64"]
    json_path, md_path = bench.main([*args, "--metrics", "clip", "--out", str(tmp_path), "--device", "cpu"])
    report = json.loads(json_path.read_text())
    assert report["clip_score"]["images_per_s"] > 0 and report["fid_features"]["network_images_per_s"] > 0
    assert report["comparison"]["images"] == 4 and report["comparison"]["seconds"] > 0
    assert report["machine"]["torch"] and report["settings"]["batch"] == 2
    assert "| fid_features |" in md_path.read_text()


def _recipe_png(folder, size=(64, 64), **fields):
    """A PNG with a recipe and no generation: what grouping reads is the recipe and the real size."""
    from PIL import Image

    from helpers.base.records import Record, save_image

    base = {"prompt": "a red fox", "seed": 1, "num_inference_steps": 2, "guidance_scale": 7.5,
            "scheduler": "Euler", "width": 64, "height": 64, "model": "sd15"}  # fmt: skip
    return save_image(Image.new("RGB", size, "red"), Record(**{**base, **fields}), folder)


def test_images_are_grouped_by_everything_in_the_recipe_that_changes_the_picture(tmp_path):
    _recipe_png(tmp_path)
    _recipe_png(tmp_path, seed=2)  # another seed: the same group
    _recipe_png(tmp_path, loras={"stars": 0.8})
    _recipe_png(tmp_path, controls=[{"model": "canny", "scale": 1.0, "start": 0.0, "end": 1.0, "image": "sha256:ab"}])
    _recipe_png(tmp_path, image_prompt={"model": "ip-adapter-sd15", "scale": 0.5, "image": "sha256:cd"})
    _recipe_png(tmp_path, size=(128, 128),
                hires={"scale": 2.0, "strength": 0.45, "steps": 10, "upscaler": "Lanczos"})  # fmt: skip
    groups = {dict(label)["lora"] + dict(label)["controlnet"] + dict(label)["ip_adapter"] + dict(label)["hires"]:
              (dict(label), len(items)) for label, items in evaluate.group_folder(tmp_path).items()}  # fmt: skip
    assert len(groups) == 5 and groups[""][1] == 2
    assert groups["stars:0.8"][0]["size"] == "64x64"
    assert "canny:1 (0-1)" in groups and "ip-adapter-sd15:0.5" in groups
    (hires,) = [fields for key, (fields, _) in groups.items() if key.startswith("x2")]
    assert hires["size"] == "128x128" and "first pass 64x64" in hires["hires"]  # the real output size
    assert "task" not in groups[""][0] and "vae" not in groups[""][0]  # fields no image has stay out of the table


def test_the_out_path_is_checked_before_anything_is_scored(tmp_path, capsys):
    from helpers.judge import metrics

    _recipe_png(tmp_path / "images")
    (tmp_path / "a-file").write_text("")
    metrics.free()
    for bad, says in [(tmp_path / "a-file" / "scores.csv", "cannot be written there"),
                      (tmp_path / "scores.txt", "ending in .csv or .json"),
                      (tmp_path, "is a folder")]:  # fmt: skip
        assert main(["evaluate", str(tmp_path / "images"), "--out", str(bad), "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err
    assert metrics._load.cache_info().currsize == 0  # no judge was loaded, nothing was scored


@pytest.mark.parametrize(
    "args, says",
    [
        (["--metrics", "fid", "--reference", "one"], "fid needs at least 2 images in each set; the reference has 1"),
        (["--metrics", "kid", "--reference", "many"], "kid needs at least 4 images in each set; the group model sd15"),
        (["--metrics", "clip", "--batch-size", "0"], "batch size 0: give a whole number of 1 or more"),
    ],
)
def test_set_metrics_on_too_few_images_and_a_zero_batch_say_so_in_one_line(tmp_path, capsys, args, says):
    for seed in (1, 2):
        _recipe_png(tmp_path / "images", seed=seed)
    _recipe_png(tmp_path / "one")
    for seed in range(4):
        _recipe_png(tmp_path / "many", seed=seed)
    args = [str(tmp_path / a) if a in ("one", "many") else a for a in args]
    assert main(["evaluate", str(tmp_path / "images"), *args, "--out", str(tmp_path / "s.csv")]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and not (tmp_path / "s.csv").exists()
