"""Sweeps and comparisons on the offline hub: cells, grids, manifests, resume, failures, many processes."""

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import ZooError, compare, read_record, sweep
from helpers.sweeps.file import load as load_sweep_file
from helpers.sweeps.file import write as write_sweep_file
from helpers.sweeps.sweep import plan, read_manifest

from ..environment import ROOT

pytestmark = pytest.mark.usefixtures("fresh_hub")

BASE = {"model": "sd15", "prompt": "a red dog on a hill", "seed": 5, "height": 64, "width": 64}
AXES = {
    "x": ("num_inference_steps", [1, 2]),
    "y": ("scheduler", ["Euler", "LCM", "Flow Euler"]),  # Flow Euler is not valid for SD 1.5: error cells
    "z": ("prompt_sr", ["dog", "cat"]),
}


def _manifest(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_three_axis_sweep(tmp_path):
    result = sweep(BASE, AXES, out_dir=tmp_path, device="cpu")
    rows = _manifest(tmp_path)
    assert len(rows) == 12 == len(result.rows)
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 8 and len(list((tmp_path / "images").glob("*.png"))) == 8
    errors = [r for r in rows if r["status"] == "error"]
    assert len(errors) == 4 and all("'Flow Euler' is not valid for 'sd15'" in r["error"] for r in errors)
    assert [p.name for p in result.grid_paths] == ["grid-z0.png", "grid-z1.png"]
    grid = Image.open(result.grid_paths[1])
    assert grid.width > 2 * 256 and grid.height > 3 * 256  # 2 columns, 3 rows of at least 256 px, plus labels
    cat = next(r for r in ok if r["z"] == 1)
    rec = read_record(tmp_path / cat["path"])
    assert rec.prompt == "a red cat on a hill" and rec.num_inference_steps == cat["params"]["num_inference_steps"]
    assert {"timings", "peak_memory_gb", "used", "seed"} <= set(cat)
    assert list(result.table.columns[:2]) == ["key", "x"]


def test_cells_are_ordered_so_each_model_loads_once():
    _, cells = plan({"prompt": "p", "seed": 1}, {"x": ("seed", [1, 2]), "y": ("model", ["sd15", "sdxl-turbo"])})
    models = [c.params["model"] for c in cells]
    assert models == ["sd15", "sd15", "sdxl-turbo", "sdxl-turbo"]


def test_interrupted_sweep_resumes_without_redoing_cells(tmp_path, monkeypatch):
    sweep_mod = importlib.import_module("helpers.sweeps.sweep")

    calls, real = [], sweep_mod.generate

    def crash_after_three(model, **kw):
        if len(calls) == 4:  # the warm-up call and three cells
            raise KeyboardInterrupt  # a Colab disconnect, as far as the sweep can tell
        calls.append(kw["seed"])
        return real(model, **kw)

    axes = {"x": ("seed", [1, 2, 3]), "y": ("guidance_scale", [2.0, 5.0])}
    monkeypatch.setattr(sweep_mod, "generate", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        sweep(BASE, axes, out_dir=tmp_path, device="cpu")
    assert len(list((tmp_path / "images").glob("*.png"))) == 3
    first = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "images").glob("*.png")}
    calls.clear()
    monkeypatch.setattr(sweep_mod, "generate", lambda model, **kw: (calls.append(kw["seed"]), real(model, **kw))[1])
    result = sweep(BASE, axes, out_dir=tmp_path, device="cpu")
    assert calls == [1, 1, 2, 3], "a warm-up, then only the three unfinished cells run again"
    assert all(r["status"] == "ok" for r in result.rows) and len(result.rows) == 6
    assert all((tmp_path / "images" / n).stat().st_mtime_ns == t for n, t in first.items()), "done cells untouched"
    calls.clear()
    sweep(BASE, axes, out_dir=tmp_path, device="cpu")
    assert calls == [], "nothing left to do: no cell and no warm-up runs"


def test_bad_axes_fail_clearly():
    with pytest.raises(ZooError, match="'guidence' cannot be a sweep axis"):
        plan(BASE, {"x": ("guidence", [1])})
    with pytest.raises(ZooError, match="at most three axes"):
        plan(BASE, [("seed", [1])] * 4)
    with pytest.raises(ZooError, match="Prompt S/R: the first value 'horse'"):
        plan(BASE, {"x": ("prompt_sr", ["horse", "cow"])})


def test_sweep_file_errors_name_line_and_field(tmp_path):
    bad = tmp_path / "typo.yaml"
    bad.write_text("out: x\nparams:\n  model: sd15\naxes:\n  x:\n    name: steps\n    valuez: [1, 2]\n")
    with pytest.raises(ZooError, match=r"typo.yaml, line 5: axes.x.values: Field required"):
        load_sweep_file(bad)
    bad.write_text("out: x\nparams:\n  model: sd15\n  promt: a cat\naxes:\n  x: {name: seed, values: [1]}\n")
    with pytest.raises(ZooError, match=r"line 4: params.promt: not a generate\(\) argument"):
        load_sweep_file(bad)
    bad.write_text(
        "out: x\nparams: {model: sd15}\naxes:\n  x: {name: seed, values: [1]}\n  w: {name: seed, values: [1]}\n"
    )
    with pytest.raises(ZooError, match=r"line 5: axes.w"):
        load_sweep_file(bad)
    bad.write_text("out: x\naxes:\n  x: {name: cfgg, values: [1]}\n")
    with pytest.raises(ZooError, match=r"line 3: axes.x: 'cfgg' cannot be a sweep axis"):
        load_sweep_file(bad)


def test_a_sweep_written_as_a_file_reads_back_the_same_and_never_replaces_another(tmp_path):
    axes = {"x": ("num_inference_steps", [2, 3]), "y": ("guidance_scale", [1.5, 7.5])}
    path = write_sweep_file(tmp_path / "s.yaml", BASE, axes, out="outputs/s", title="steps by cfg")
    spec = load_sweep_file(path)
    assert spec.params == BASE and spec.out == "outputs/s" and spec.title == "steps by cfg"
    assert {k: (a.name, a.values) for k, a in spec.axes.items()} == {k: (n, list(v)) for k, (n, v) in axes.items()}
    assert write_sweep_file(path, BASE, axes, out="outputs/s", title="steps by cfg") == path, "the same: no error"
    with pytest.raises(ZooError, match="exists with other contents; it was left as it is"):
        write_sweep_file(path, BASE, {"x": ("seed", [1])}, out="outputs/s")
    assert load_sweep_file(path).axes["x"].name == "num_inference_steps"


def _launch_two(spec, out, env):
    # accelerate 1.x refuses --cpu with --multi_gpu; --multi_gpu starts two processes (torchrun), and the sweep
    # asks for the CPU (gloo) backend itself when there is no CUDA.
    return subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "-m", "helpers", "sweep", str(spec), "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_two_processes_really_split_and_a_killed_one_resumes(tmp_path):
    spec = tmp_path / "sweep.yaml"
    spec.write_text(
        "out: unused\n"
        "params: {prompt: a lighthouse, seed: 3, height: 64, width: 64, num_inference_steps: 2}\n"
        "device: cpu\n"
        "axes:\n"
        "  x: {name: seed, values: [3, 4, 5]}\n"
        "  y: {name: model, values: [sd15, sdxl-turbo]}\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, "-m", "helpers", "sweep", str(spec), "--out", str(tmp_path / "one")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    two = _launch_two(spec, tmp_path / "two", env)
    assert two.returncode == 0, two.stderr[-3000:]
    assert not list((tmp_path / "two").glob("manifest-*.jsonl")), "per-process manifests are merged"

    def comparable(out):
        return [{k: r[k] for k in ("key", "x", "y", "z", "params", "status", "path", "used")} for r in _manifest(out)]

    assert comparable(tmp_path / "one") == comparable(tmp_path / "two")
    rows = _manifest(tmp_path / "two")
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)) == 6, "each cell once in the merged manifest"
    by_process = [[r["key"] for r in rows if r["process"] == p] for p in (0, 1)]
    assert by_process == [keys[:3], keys[3:]], "process 0 ran the first half, process 1 the second: disjoint, complete"
    for row in _manifest(tmp_path / "one"):
        a = np.asarray(Image.open(tmp_path / "one" / row["path"]))
        b = np.asarray(Image.open(tmp_path / "two" / row["path"]))
        assert np.array_equal(a, b)
    assert (tmp_path / "two" / "grid.png").is_file()

    # What a kill of process 1 after its first cell leaves: both logs, one cut short, and no merged manifest.
    out = tmp_path / "two"
    (out / "manifest.jsonl").unlink()
    (out / "manifest-0-of-2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    (out / "manifest-1-of-2.jsonl").write_text(json.dumps(rows[3]) + "\n" + json.dumps(rows[4])[:40])
    for row in rows[4:]:
        (out / row["path"]).unlink()
    kept = {r["key"]: (out / r["path"]).stat().st_mtime_ns for r in rows[:4]}
    again = _launch_two(spec, out, env)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = _manifest(out)
    assert [r["key"] for r in resumed] == keys
    assert [r["status"] for r in resumed] == ["ok"] * 6, (resumed, again.stderr[-3000:])
    assert {r["key"]: (out / r["path"]).stat().st_mtime_ns for r in resumed[:4]} == kept, "done cells not redone"
    assert [r["process"] for r in resumed[4:]] == [0, 1], "the two missing cells split between the processes"
    for row in resumed[4:]:
        a = np.asarray(Image.open(tmp_path / "one" / row["path"]))
        assert np.array_equal(a, np.asarray(Image.open(out / row["path"])))


def test_compare_four_models_across_two_families(tmp_path):
    models = ["sd15", "dreamshaper-8", "sdxl-turbo", "ssd-1b"]
    result = compare(models, ["a fox", "a castle"], seeds=[1, 2], out_dir=tmp_path, height=64, width=64, device="cpu")
    assert len(result.sweep.rows) == 16 and all(r["status"] == "ok" for r in result.sweep.rows)
    assert [p.name for p in result.grid_paths] == ["compare-grid.png"]
    table = result.table
    assert list(table.index) == models and (table["images"] == 4).all()
    assert table.loc["sdxl-turbo", "steps"] == 1 and table.loc["sd15", "steps"] == 30, "each model's own defaults"
    assert (table["s_per_image"] > 0).all() and table["load_s"].notna().all() and table["warmup_s"].notna().all()
    assert "default" not in set(table["scheduler"]), "the sampler the repo ships, by name"
    assert "peak_memory_gb" not in table and not table.isna().any().any(), "nothing unmeasured shown"
    fig = result.chart()
    fig.savefig(tmp_path / "chart.png")
    assert (tmp_path / "chart.png").stat().st_size > 1000


@pytest.mark.parametrize("path", sorted((ROOT / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_example_sweep_files_are_valid(path):
    spec = load_sweep_file(path)
    _, cells = plan(spec.params, {k: (a.name, a.values) for k, a in spec.axes.items()})
    assert cells


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"key": "a", "status": "ok"}\n["a list"]\n', r"manifest\.jsonl, line 2: not a sweep manifest row"),
        (b'{"status": "ok"}\n', r"manifest\.jsonl, line 1: not a sweep manifest row"),
        (b'{"key": "a", "status": "ok", "x": "\xff\xfe"}\n', r"manifest\.jsonl: not a sweep manifest \(not UTF-8"),
    ],
)
def test_bad_manifest_lines_give_one_clean_message(tmp_path, content, message):
    (tmp_path / "manifest.jsonl").write_bytes(content)
    with pytest.raises(ZooError, match=message):
        read_manifest(tmp_path)


def test_a_line_cut_short_warns_once_and_its_cell_is_redone(tmp_path):
    params = {"model": "sd15", "prompt": "a fox", "height": 64, "width": 64, "num_inference_steps": 1}
    first = sweep(params, {"x": ("seed", [1, 2])}, out_dir=tmp_path, device="cpu")
    rows = first.rows
    (tmp_path / "manifest.jsonl").write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[1])[:30])
    with pytest.warns(UserWarning, match=r"1 manifest line\(s\) cut short \(manifest\.jsonl:2\)") as caught:
        again = sweep(params, {"x": ("seed", [1, 2])}, out_dir=tmp_path, device="cpu")
    assert len([w for w in caught if "cut short" in str(w.message)]) == 1
    assert [r["status"] for r in again.rows] == ["ok", "ok"]
    assert again.rows[0]["timings"] == rows[0]["timings"], "the whole line is kept, not redone"
