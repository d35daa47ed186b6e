"""Scores where the numbers appear: compare, sweeps and `python -m helpers evaluate`, end to end on the tiny judges."""

import csv
import importlib.util
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from helpers import evaluate, generate
from helpers.__main__ import main
from helpers.compare import compare
from helpers.errors import ZooError
from helpers.sweep import sweep

from .environment import ROOT

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
                                "--metrics", "clip,kid", "--out", str(out), "--device", "cpu")  # fmt: skip
    assert code == 0, stderr
    assert stdout.split() == [str(out), str(out.with_suffix(".md"))]
    rows = list(csv.DictReader(out.open()))
    assert [(r["model"], r["images"], r["steps"], r["size"]) for r in rows] == [
        ("sd15", "2", "2", "64x64"),
        ("sdxl-turbo", "2", "2", "64x64"),
    ]
    assert all(float(r["clip"]) >= 0 and float(r["kid_std"]) >= 0 for r in rows)
    md = out.with_suffix(".md").read_text()
    assert md.startswith("| model | steps | guidance | scheduler | size | images | clip |")
    assert "clean-fid: PIL bicubic" in md and "pt_inception-2015-12-05" in md and "scoring" in stderr


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
