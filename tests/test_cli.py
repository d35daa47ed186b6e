"""The command line against the offline hub: end to end in a fresh interpreter, and its errors."""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from helpers import read_record
from helpers.__main__ import main

from .environment import ROOT

pytestmark = pytest.mark.usefixtures("hub")


def run(*args, **env):
    proc = subprocess.run(
        [sys.executable, "-m", "helpers", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_generate_writes_pngs_and_prints_paths(tmp_path):
    code, out, err = run(
        "generate", "sd15", "a red fox", "--steps", "2", "--size", "64", "--seed", "7", "--num-images", "2",
        "--out", str(tmp_path), "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    paths = out.split()
    assert [os.path.basename(p) for p in paths] == ["sd15-7-0001.png", "sd15-8-0001.png"]
    rec = read_record(paths[1])
    assert (rec.seed, rec.num_inference_steps, rec.width, rec.prompt) == (8, 2, 64, "a red fox")


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "sd15", "x", "--size", "65"], "height 65 is not a multiple of 8"),
        (["generate", "sd15", "x", "--size", "64", "--scheduler", "Euler z"], "'Euler z' is not valid"),
        (["generate", "sdxl-trubo", "x"], "Did you mean 'sdxl-turbo'"),
        (["show", "flux-devv"], "Did you mean 'flux-dev'"),
        (["generate", "sd15", "x", "--hires", "0"], "hires scale must be above 1 and at most 4 (got 0)"),
        (["generate", "sd15", "x", "--hires", "1"], "hires scale must be above 1 and at most 4 (got 1)"),
        (["generate", "sd15", "x", "--hires-strength", "0.3"], "--hires-strength only works with --hires SCALE"),
        (["generate", "sd15", "x", "--lora", "lcm-lora-sdv1-5:abc"], "the scale after ':' must be a number"),
        (["generate", "sd15", "x", "--hires-steps", "5", "--hires-upscaler", "Nearest"],
         "--hires-steps and --hires-upscaler only work with --hires SCALE"),
    ],
)
def test_bad_input_fails_clearly(args, message, capsys):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_list_and_show(capsys):
    assert main(["list", "--family", "flux"]) == 0
    out = capsys.readouterr().out
    assert "flux-schnell" in out and "sd15" not in out
    assert main(["show", "sdxl-lightning-4step"]) == 0
    out = capsys.readouterr().out
    assert "timestep_spacing: trailing" in out and "schedulers: default, Euler" in out


def test_registry_option_and_missing_file(tmp_path, capsys):
    assert main(["doctor", "--registry", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.yaml: no such registry file" in err and "Traceback" not in err
    assert "SDZOO_REGISTRY" not in os.environ, "an in-process command leaves the environment as it found it"
    small = tmp_path / "small.yaml"
    small.write_text(
        (ROOT / "helpers" / "models.yaml").read_text().replace("name: Stable Diffusion 1.5", "name: Mine", 1)
    )
    code, out, err = run("show", "sd15", "--registry", str(small))
    assert code == 0 and "# sd15: Mine" in out, err
    code, out, err = run("show", "sd15", SDZOO_REGISTRY=str(small))
    assert code == 0 and "# sd15: Mine" in out, err


def _unwritable(tmp_path):
    if os.geteuid() == 0:  # root writes through permission bits; sysfs refuses even root
        return "/sys/sdzoo-out"
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    return str(folder)


def test_out_folder_is_checked_before_generating(tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    args = ["generate", "sd15", "x", "--steps", "1", "--size", "64", "--device", "cpu", "--out"]
    assert main([*args, str(a_file)]) == 2
    err = capsys.readouterr().err
    assert f"error: {a_file} is a file, not a folder" in err and err.count("\n") == 1
    assert main([*args, _unwritable(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "images cannot be written there" in err and "choose another folder" in err and err.count("\n") == 1


def test_generate_inpaints_with_image_and_mask(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    mask = Image.new("L", (64, 64))
    mask.paste(255, (16, 16, 48, 48))
    mask.save(tmp_path / "mask.png")
    code, out, err = run(
        "generate", "sd15-inpainting", "a red apple", "--steps", "2", "--seed", "3", "--device", "cpu",
        "--image", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 0, err
    rec = read_record(out.split()[0])
    assert rec.task == "inpaint" and rec.model == "sd15-inpainting" and (rec.width, rec.height) == (64, 64)
    assert set(rec.inputs) == {"image", "mask_image"}
    assert main(["generate", "sd15", "x", "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path)]) == 2


def test_no_library_noise_before_the_output():
    code, out, err = run("show", "sd15")
    assert code == 0 and out.startswith("# sd15:")
    assert "gemm_4bit_forward" not in err and "requires torchvision" not in err, err


def test_a_long_prompt_warns_in_one_short_line(tmp_path):
    prompt = "a castle on a hill " * 60 + "with golden dragons " * 100  # past FLUX's T5 limit: still cut
    code, out, err = run(
        "generate", "flux-schnell", prompt, "--steps", "1", "--size", "64", "--out", str(tmp_path), "--device", "cpu"
    )
    assert code == 0, err
    lines = [line for line in err.splitlines() if "Dropped" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: The prompt is") and len(lines[0]) < 260, err
    assert "UserWarning" not in err


def test_generate_with_an_image_prompt_records_adapter_and_scale(tmp_path):
    Image.new("RGB", (48, 48), (220, 30, 30)).save(tmp_path / "style.png")
    args = ["generate", "sd15", "a cat", "--steps", "2", "--size", "64", "--seed", "5", "--device", "cpu"]
    code, out, err = run(*args, "--ip-adapter", str(tmp_path / "style.png"), "--ip-adapter-scale", "0.6",
                         "--out", str(tmp_path / "out"))  # fmt: skip
    assert code == 0, err
    rec = read_record(out.split()[0])
    assert (rec.image_prompt["model"], rec.image_prompt["scale"]) == ("ip-adapter-sd15", 0.6)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--ip-adapter", "IMAGE", "--ip-adapter-scale", "-1"], "IP-Adapter scale cannot be negative (got -1)"),
        (["--ip-adapter-scale", "0.5"], "--ip-adapter-scale and --ip-adapter-model need --ip-adapter IMAGE"),
        (["--ip-adapter", "IMAGE", "--ip-adapter-model", "ip-adapter-sdxl"], "is for sdxl models"),
    ],
)
def test_a_bad_image_prompt_fails_clearly(extra, message, tmp_path, capsys):
    Image.new("RGB", (48, 48)).save(tmp_path / "style.png")
    extra = [str(tmp_path / "style.png") if a == "IMAGE" else a for a in extra]
    assert main(["generate", "sd15", "x", "--size", "64", "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error:"), err


def test_upscale_writes_a_new_png_each_time_with_its_settings(tmp_path, capsys):
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (24, 40, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    args = ["upscale", str(tmp_path / "in.png"), "--upscaler", "sd-x2-latent-upscaler", "--prompt", "a castle",
            "--seed", "3", "--steps", "2", "--device", "cpu", "--out", str(tmp_path / "big")]  # fmt: skip
    assert main(args) == 0
    first = capsys.readouterr().out.strip()
    assert main(args) == 0
    second = capsys.readouterr().out.strip()
    assert [os.path.basename(p) for p in (first, second)] == [
        "in-sd-x2-latent-upscaler-0001.png",
        "in-sd-x2-latent-upscaler-0002.png",
    ], "an existing file is never replaced"
    with Image.open(first) as a, Image.open(second) as b:
        assert a.size == (80, 48)
        assert np.array_equal(np.asarray(a), np.asarray(b)), "the same seed gives the same picture"
        settings = json.loads(a.text["upscale"])
    assert (settings["upscaler"], settings["prompt"], settings["seed"]) == ("sd-x2-latent-upscaler", "a castle", 3)
    assert main([*args[:2], "--upscaler", "sd-x3-upscalr", "--out", str(tmp_path)]) == 2
    assert "sd-x3-upscalr" in capsys.readouterr().err


def test_upscale_shows_progress_reports_its_time_and_keeps_the_source_recipe(tmp_path, capsys):
    from helpers.base.records import Record, save_image

    source = Record(prompt="a castle", seed=9, num_inference_steps=20, guidance_scale=7, scheduler="Euler",
                    width=40, height=24, model="sd15")  # fmt: skip
    picture = Image.fromarray(np.random.default_rng(2).integers(0, 255, (24, 40, 3), dtype=np.uint8))
    path = save_image(picture, source, tmp_path)
    start = time.perf_counter()
    assert main(["upscale", str(path), "--upscaler", "sd-x2-latent-upscaler", "--steps", "2", "--tile", "16",
                 "--overlap", "4", "--device", "cpu", "--out", str(tmp_path / "big")]) == 0  # fmt: skip
    waited = time.perf_counter() - start
    captured = capsys.readouterr()
    big = captured.out.strip()
    assert read_record(big) == source, "the source's recipe is kept"
    with Image.open(big) as im:
        assert im.size == (80, 48)
        assert im.text["postprocessing"].startswith("Postprocess upscaler: sd-x2-latent-upscaler, Postprocess upscale "
                                                    "to: 80x48"), im.text  # fmt: skip
        assert "parameters" in im.text and im.text["parameters"].startswith("a castle")
    assert "[sd-x2-latent-upscaler] 6 tiles x 2 steps" in captured.err and "12/12" in captured.err, captured.err
    reported = float(captured.err.rsplit(" in ", 1)[1].split(" s")[0])
    assert 0.5 * waited <= reported <= waited + 0.05, (reported, waited)  # the CLI says it to 0.1 s


_LOADED = """
import json, runpy, sys, time
sys.argv = ["helpers", *json.loads(sys.argv[1])]
start = time.perf_counter()
try:
    runpy.run_module("helpers", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)
print(json.dumps({"heavy": heavy, "seconds": time.perf_counter() - start}), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["list"], ["show", "sd15"], ["list", "controlnets"]])
def test_help_list_and_show_load_no_model_libraries(args):
    proc = subprocess.run([sys.executable, "-c", _LOADED, json.dumps(args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stderr.strip().splitlines()[-1])
    assert facts["heavy"] == [], f"`{' '.join(args)}` imported {facts['heavy']}"
    assert facts["seconds"] < 15, facts  # loose: the point is the imports; on an idle CPU it answers in well under 1 s
    assert proc.stdout.strip()


def _refused_port() -> int:
    with socket.socket() as s:  # bound, then closed: nothing listens there, so a connection is refused at once
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_without_a_network_the_first_command_fails_fast_with_our_message(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env |= {"HF_ENDPOINT": f"http://127.0.0.1:{_refused_port()}", "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "helpers", "generate", "sd15-lcm-lora", "a fox", "--seed", "42",
                           "--out", str(tmp_path), "--device", "cpu"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    seconds = time.perf_counter() - start
    assert proc.returncode == 2, proc.stderr
    assert "Retry" not in proc.stderr and proc.stderr.count("Connection refused") <= 2, proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("error: Model 'sd15-lcm-lora'") and "is not in the local cache" in error, proc.stderr
    assert "the Hub cannot be reached" in error and "HF_HUB_OFFLINE" not in error, error
    print(f"failed in {seconds:.1f} s")  # loose: five retries with backoff took over 20 s more


def test_generate_takes_loras_and_embeddings_and_records_them(tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    emb = tmp_path / "fox-look.safetensors"
    save_file({"<fox-look>": torch.randn(1, 32, generator=torch.Generator().manual_seed(0))}, str(emb))
    common = ["--steps", "2", "--size", "64", "--seed", "3", "--out", str(tmp_path), "--device", "cpu"]
    assert main(["generate", "sd15", "a <fox-look> fox", "--lora", "lcm-lora-sdv1-5:0.5",
                 "--embedding", f"{emb}=<fox-look>", *common]) == 0, capsys.readouterr().err  # fmt: skip
    styled = capsys.readouterr().out.split()[0]
    rec = read_record(styled)
    assert rec.loras == {"lcm-lora-sdv1-5": 0.5} and rec.embeddings == {str(emb): "<fox-look>"}
    assert main(["generate", "sd15", "a <fox-look> fox", "--embedding", f"{emb}=<fox-look>", *common]) == 0
    plain = capsys.readouterr().out.split()[0]
    assert read_record(plain).loras == {}
    assert not np.array_equal(np.asarray(Image.open(styled)), np.asarray(Image.open(plain)))
    assert main(["generate", "sd15", "a fox", "--lora", "my-style", *common, "--adapters", str(tmp_path / "ad")]) == 2
    err = capsys.readouterr().err
    assert f"no trained adapter of that name in {tmp_path / 'ad'}" in err and "--adapters" in err, err


def test_list_and_show_know_every_section(capsys):
    for section, key in [("controlnets", "canny-sd15"), ("t2i-adapters", "t2i-canny-sd15"), ("vaes", "taesd"),
                         ("ip-adapters", "ip-adapter-sd15"), ("upscalers", "sd-x4-upscaler"),
                         ("evaluators", "clip-vit-l-14"), ("preprocessors", "depth-anything-v2-small"),
                         ("adapters", "lcm-lora-sdv1-5")]:  # fmt: skip
        assert main(["list", section]) == 0
        assert key in capsys.readouterr().out.split(), section
        assert main(["show", key]) == 0
        assert capsys.readouterr().out.startswith(f"# {key}:")
    assert main(["show", "cany-sd15"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean 'canny-sd15' (`python -m helpers list controlnets`)" in err, err
    assert main(["list", "controlnets"]) == 0 and "canny-sd15" in capsys.readouterr().out
    assert main(["list", "trained", "--adapters", "/nowhere/adapters"]) == 0
    assert "0 trained adapters in /nowhere/adapters (set SDZOO_ADAPTERS or --adapters DIR" in capsys.readouterr().out


def test_a_reader_that_stops_early_gets_no_traceback():
    """`python -m helpers list all | head -1`: the pipe closes before the command has written; that is no error."""
    proc = subprocess.Popen([sys.executable, "-m", "helpers", "list", "all"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait() == 0 and "Traceback" not in err and "BrokenPipeError" not in err, err
