"""Fine-tuning on the offline hub: tiny models train a few steps at 32 px on drawn images, for real.

One LoRA run is shared by the tests that only read its files; the others train their own.
"""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image
from safetensors.torch import load_file

import helpers
from helpers import ZooError, styles
from helpers.base import adapters as trainexport
from helpers.base import records
from helpers.base.records import read_record
from helpers.run.loading import load_pipeline
from helpers.run.memory import MACHINES, Machine
from helpers.train import data as traindata
from helpers.train import loop as train
from helpers.train import plan as trainplan

from ..common import px
from ..environment import ROOT

T4 = MACHINES["T4 16 GB, 12 GB RAM (Colab)"]
PROMPT = "a photo of sks star"
K = {"num_inference_steps": 2, "height": 32, "width": 32, "device": "cpu"}
FAST = {"resolution": 32, "validation_inference_steps": 2, "validation_seeds": [1], "device": "cpu",
        "instance_prompt": PROMPT}  # fmt: skip


@pytest.fixture(autouse=True)
def _env(offline_hub_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(trainexport.ENV, str(tmp_path / "adapters"))
    helpers.free()
    yield
    helpers.free()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return traindata.draw_examples(tmp_path_factory.mktemp("data") / "stars", "star", count=4, size=48)


@pytest.fixture(scope="module")
def lora_run(offline_hub_dir, tmp_path_factory, images):
    out = tmp_path_factory.mktemp("run") / "stars"
    config = train.TrainConfig("lora", "sd15", str(images), out=str(out), name="stars", steps=12, rank=8, alpha=2,
                               lr=2e-2, validation_every=6, checkpoint_every=6, **FAST)  # fmt: skip
    return train.train(config)


def test_lora_run_writes_its_files_and_the_loss_on_a_fixed_batch_falls(lora_run, images):
    r = lora_run
    assert {"lora", "kohya", "metadata"} <= set(r.files) and all(p.is_file() for p in r.files.values())
    meta = json.loads(r.files["metadata"].read_text())
    assert meta["base_model"] == "sd15" and meta["steps"] == 12 and meta["hyperparameters"]["rank"] == 8
    assert len(meta["data_hash"]) == 64 and meta["revision"] == helpers.get("sd15").revision
    assert sorted(r.validation) == [6, 12] and r.grid is not None and len(r.losses) == 12
    assert Image.open(r.files["grid"]).size == r.grid.size  # the grid over steps is saved, not only returned
    assert r.validation_seconds > 0 and r.train_seconds + r.validation_seconds < r.seconds
    assert r.steps_per_s == pytest.approx(12 / r.train_seconds)  # steps/s leaves validation and checkpoints out
    rec = read_record(r.validation[12][0])
    assert rec.prompt == PROMPT and rec.seed == 1 and rec.loras == {"stars": 1.0}
    pipe = load_pipeline("sd15", device="cpu")
    batch = [im.image for im in traindata.load_folder(images, 32, default_prompt=PROMPT)]
    before = train.fixed_batch_loss(pipe, batch, PROMPT)
    styles.load_lora(pipe, str(r.files["lora"]))
    after = train.fixed_batch_loss(pipe, batch, PROMPT)
    assert after < 0.95 * before, f"over-fitting four images should lower their loss: {before:.4f} -> {after:.4f}"


def test_the_lora_changes_pixels_and_loads_by_name_with_the_same_pixels(lora_run, monkeypatch):
    """Trained with alpha 2 at rank 8 (scale 1/4): the file must say so, or it loads at scale 1 (other pixels)."""
    from safetensors import safe_open

    with safe_open(str(lora_run.files["lora"]), "pt") as f:
        saved = json.loads(f.metadata()["lora_adapter_metadata"])
    assert saved["unet.lora_alpha"] == 2 and saved["unet.r"] == 8
    monkeypatch.setenv(trainexport.ENV, str(lora_run.out_dir.parent))
    assert trainexport.find("stars") == lora_run.files["lora"] and "stars" in trainexport.available("sd1")
    pipe = helpers.get_pipeline("sd15", device="cpu")
    base = helpers.generate(pipe, PROMPT, seed=1, **K).images[0]
    tuned = helpers.generate(pipe, PROMPT, seed=1, loras={"stars": 1.0}, **K).images[0]
    validation = Image.open(next(p for p in lora_run.validation[12] if read_record(p).seed == 1))
    assert not np.array_equal(px(base), px(tuned)), "the LoRA changes the image"
    assert np.abs(px(tuned) - px(validation)).max() <= 1, "saved and loaded == the image made while training"
    styles.unload(pipe)
    assert np.array_equal(px(helpers.generate(pipe, PROMPT, seed=1, **K).images[0]), px(base))


def test_was_it_worth_it_compares_base_and_fine_tune_on_the_same_seeds(lora_run, images, monkeypatch):
    from helpers.train import report as trainreport

    monkeypatch.setenv(trainexport.ENV, str(lora_run.out_dir.parent))
    prompts = ["a sks star on a beach", "a sks star in the snow"]
    kw = {k: v for k, v in K.items() if k != "device"}
    cmp = trainreport.compare_to_base("stars", prompts, seeds=[1], instance_images=images, device="cpu", **kw)
    assert list(cmp.table["prompt"]) == prompts and len(cmp.base) == len(cmp.tuned) == 2
    assert {"clip_base", "clip_tuned", "similarity_base", "similarity_tuned"} <= set(cmp.summary)
    assert all(np.isfinite(v) for v in cmp.summary.values()) and cmp.grid.width > 2 * 32
    assert not np.array_equal(px(cmp.base[0]), px(cmp.tuned[0]))


def test_the_kohya_copy_loads_through_diffusers_own_converter(lora_run):
    kohya = load_file(str(lora_run.files["kohya"]))
    assert all(k.startswith("lora_unet_") for k in kohya) and any(k.endswith(".alpha") for k in kohya)
    args = {"prompt": PROMPT, "num_inference_steps": 2, "height": 32, "width": 32, "output_type": "np"}
    pipe = load_pipeline("sd15", device="cpu")
    pipe.load_lora_weights(str(lora_run.files["lora"].parent), weight_name=lora_run.files["lora"].name)
    ours = pipe(generator=torch.Generator().manual_seed(1), **args).images[0]
    pipe.unload_lora_weights()
    pipe.load_lora_weights(str(lora_run.files["kohya"].parent), weight_name=lora_run.files["kohya"].name)
    theirs = pipe(generator=torch.Generator().manual_seed(1), **args).images[0]
    assert np.abs(ours - theirs).max() < 1e-4


def test_a_run_stopped_and_resumed_ends_with_the_weights_of_one_run_straight_through(tmp_path, images):
    def config(out):
        return train.TrainConfig("lora", "sd15", str(images), out=str(out), steps=4, lr=1e-3,
                                 validation_every=100, checkpoint_every=2, **FAST)  # fmt: skip

    straight = train.train(config(tmp_path / "straight"))

    def crash(step, loss):
        if step == 3:
            raise KeyboardInterrupt("the Colab runtime disconnected")

    with pytest.raises(KeyboardInterrupt):
        train.train(config(tmp_path / "resumed"), on_step=crash)
    assert train.require_checkpoint(config(tmp_path / "resumed")).name == "step-000002"
    resumed = train.train(config(tmp_path / "resumed"))
    a, b = load_file(str(straight.files["lora"])), load_file(str(resumed.files["lora"]))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.losses == straight.losses


def test_textual_inversion_adds_a_token_that_changes_the_image_only_where_it_is_used(tmp_path, images):
    config = train.TrainConfig("textual-inversion", "sd15", str(images), out=str(tmp_path / "ti"), name="star-ti",
                               token="<star-toy>", init_word="star", steps=4, lr=5e-2, validation_every=100,
                               checkpoint_every=100, **{**FAST, "instance_prompt": None})  # fmt: skip
    r = train.train(config)
    assert r.files["embedding"].is_file() and r.files["a1111"].is_file()
    a1111 = torch.load(r.files["a1111"], weights_only=True)
    assert a1111["string_to_param"]["*"].shape == (1, 32)
    pipe = load_pipeline("sd15", device="cpu")
    plain = {p: px(helpers.generate(pipe, p, seed=1, **K).images[0]) for p in ("a photo of a star", "a cat")}
    assert styles.load_embedding(pipe, str(r.files["embedding"]), token="<star-toy>") == "<star-toy>"
    assert "<star-toy>" in pipe.tokenizer.get_vocab()
    for prompt, before in plain.items():  # prompts without the token: the same pixels
        assert np.array_equal(px(helpers.generate(pipe, prompt, seed=1, **K).images[0]), before)
    with_token = px(helpers.generate(pipe, "a photo of a <star-toy>", seed=1, **K).images[0])
    assert not np.array_equal(with_token, plain["a photo of a star"])
    other = StableDiffusionPipeline.from_pretrained(helpers.get("sd15").repo, revision=helpers.get("sd15").revision)
    other.load_textual_inversion(str(r.files["a1111"]), token="<star-a1111>")  # A1111's format, plain diffusers
    loaded = other.text_encoder.get_input_embeddings().weight[-1].float()
    assert torch.allclose(loaded, a1111["string_to_param"]["*"][0], atol=1e-3)  # the repo's text encoder is fp16


def test_sdxl_textual_inversion_puts_the_token_in_both_text_encoders(tmp_path, images, monkeypatch):
    config = train.TrainConfig("textual-inversion", "sdxl-base", str(images), out=str(tmp_path / "xl" / "xl-star"),
                               name="xl-star", token="<xl-star>", init_word="star", steps=2, lr=5e-2,
                               validation_every=100, checkpoint_every=100,
                               **{**FAST, "instance_prompt": None})  # fmt: skip
    r = train.train(config)
    assert set(load_file(str(r.files["embedding"]))) == {"clip_l", "clip_g"}  # the layout A1111 and ComfyUI read
    monkeypatch.setenv(trainexport.ENV, str(tmp_path / "xl"))
    pipe = load_pipeline("sdxl-base", device="cpu")
    before = px(helpers.generate(pipe, "a photo of a star", seed=1, **K).images[0])
    assert styles.load_embedding(pipe, "xl-star") == "<xl-star>"  # by name; the token from the metadata
    assert "<xl-star>" in pipe.tokenizer.get_vocab() and "<xl-star>" in pipe.tokenizer_2.get_vocab()
    assert np.array_equal(px(helpers.generate(pipe, "a photo of a star", seed=1, **K).images[0]), before)
    assert not np.array_equal(px(helpers.generate(pipe, "a photo of a <xl-star>", seed=1, **K).images[0]), before)


def test_dreambooth_makes_class_images_with_recorded_seeds_and_trains_with_prior_preservation(
    tmp_path, images, monkeypatch
):
    from helpers.train import report as trainreport

    config = train.TrainConfig("dreambooth", "sd15", str(images), out=str(tmp_path / "db"), name="db", steps=2,
                               class_prompt="a photo of a star", num_class_images=2, validation_every=100,
                               checkpoint_every=100, validation_prompts=[PROMPT, "a photo of a star"],
                               **FAST)  # fmt: skip
    r = train.train(config)
    seeds = sorted(read_record(p).seed for p in (tmp_path / "db" / "class_images").glob("*.png"))
    assert seeds == [10_000, 10_001] == r.metadata["class_image_seeds"]
    assert r.files["lora"].is_file() and np.isfinite(r.losses).all()
    monkeypatch.setenv(trainexport.ENV, str(tmp_path))
    drift = trainreport.language_drift("db")
    assert drift["class_prompt"] == "a photo of a star" and np.isfinite(drift["drift"])


def test_sdxl_lora_trains_and_loads_into_the_zoo(tmp_path, images, monkeypatch):
    config = train.TrainConfig("lora", "sdxl-base", str(images), out=str(tmp_path / "xl" / "xl-stars"),
                               name="xl-stars", steps=2, lr=1e-2, validation_every=100, checkpoint_every=100,
                               buckets=True, **FAST)  # fmt: skip
    r = train.train(config)
    monkeypatch.setenv(trainexport.ENV, str(tmp_path / "xl"))
    pipe = helpers.get_pipeline("sdxl-base", device="cpu")
    base = px(helpers.generate(pipe, PROMPT, seed=1, **K).images[0])
    tuned = px(helpers.generate(pipe, PROMPT, seed=1, loras={"xl-stars": 1.0}, **K).images[0])
    assert r.metadata["family"] == "sdxl" and not np.array_equal(base, tuned)
    sd = helpers.get_pipeline("sd15", device="cpu")
    with pytest.raises(ZooError, match="'xl-stars' was trained on a sdxl model; this pipeline is sd1"):
        styles.load_lora(sd, "xl-stars")


def test_captions_that_are_not_name_txt_are_named_and_zoo_pngs_caption_themselves(tmp_path):
    from helpers.base.records import Record, save_png

    folder = tmp_path / "d"
    folder.mkdir()
    for name in ("a", "b", "c", "e"):
        Image.new("RGB", (40, 40), "red").save(folder / f"{name}.png")
    (folder / "a.caption.txt").write_text("a red square")
    (folder / "b.png.txt").write_text("a red square")
    (folder / "C.TXT").write_text("a red square")
    recipe = Record("a zoo prompt", 1, 2, 7.5, "Euler", 40, 40, "sd15")
    zoo = save_png(Image.new("RGB", (40, 40), "blue"), folder, "d", records.png_info(recipe))
    with pytest.raises(ZooError) as e:
        traindata.load_folder(folder, 32)
    said = str(e.value)
    assert said.startswith("4 image(s) have no caption") and zoo.name not in said
    assert "a.png: a.caption.txt is not NAME.txt" in said and "b.png: b.png.txt" in said and "c.png: C.TXT" in said
    assert "e.png: no e.txt" in said and "--instance-prompt" in said
    with pytest.warns(UserWarning) as caught:
        items = traindata.load_folder(folder, 32, default_prompt="a photo")
    said = " ".join(str(w.message) for w in caught)
    assert "caption-like files of 3 image(s) are not read" in said and "a.caption.txt" in said
    assert f"captioned with the prompt in their PNG's recipe: {zoo.name}" in said
    assert {i.source: i.prompt for i in items}[zoo.name] == "a zoo prompt"
    with warnings.catch_warnings(record=True):  # DreamBooth and textual inversion: the instance prompt, always
        items = traindata.load_folder(folder, 32, default_prompt="a photo", recipes=False)
    assert {i.source: i.prompt for i in items}[zoo.name] == "a photo"


def test_captions_buckets_and_the_data_hash(tmp_path):
    folder = traindata.draw_examples(tmp_path / "d", "stripes", count=2, size=64, caption="stripes")
    Image.new("RGB", (96, 48), "red").save(folder / "wide.png")
    with pytest.raises(ZooError, match=r"1 image\(s\) have no caption .*\(wide.png: no wide.txt\)"):
        traindata.load_folder(folder, 64)
    items = traindata.load_folder(folder, 64, buckets_on=True, default_prompt="a red thing")
    wide = next(i for i in items if i.source == "wide.png")
    assert wide.prompt == "a red thing" and wide.image.width > wide.image.height and wide.original_size == (48, 96)
    assert items[0].prompt == "stripes"
    before = traindata.data_hash(items)
    (folder / "stripes-00.txt").write_text("other words")
    assert traindata.data_hash(traindata.load_folder(folder, 64, True, "a red thing")) != before


def test_the_t4_preset_and_the_memory_refusal_with_numbers():
    preset = trainplan.pick_preset(T4)
    assert preset.mixed_precision == "fp16" and preset.gradient_checkpointing and preset.optimizer == "adamw8bit"
    assert "fp16 mixed precision (trained parameters in fp32)" in preset.describe()
    sd15 = trainplan.estimate("sd15", "lora", preset, 512)
    sdxl = trainplan.estimate("sdxl-base", "lora", preset, 1024)
    assert sd15.gpu_gb < 10 and sdxl.gpu_gb < 15  # the targets, as estimated before any GPU run
    trainplan.check_fits(sdxl, T4, "sdxl")
    unsaved = trainplan.Preset("plain", "cuda", "fp16", gradient_checkpointing=False)
    big = trainplan.estimate("sdxl-base", "lora", unsaved, 1024, batch_size=2)
    with pytest.raises(ZooError, match=r"needs about \d+\.\d GB of GPU memory .*activations \d+\.\d+.*14\.7 GB free"):
        trainplan.check_fits(big, T4, "lora on 'sdxl-base' at 1024 px, batch 2")
    with pytest.raises(ZooError, match=r"it needs about \d+\.\d GB of RAM .*2\.0 GB is free"):
        train.plan(train.TrainConfig("lora", "sd15", "x"), machine=Machine("cpu", ram_gb=2.0))


def test_the_cli_trains_and_prints_the_files(tmp_path, images):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "helpers", "train", "lora", "sd15", "--images", str(images), "--out", str(out),
           "--steps", "2", "--resolution", "32", "--instance-prompt", PROMPT, "--validation-steps", "2",
           "--device", "cpu"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ})
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout.split()
    assert [p.rsplit("/", 1)[1] for p in printed] == ["sd15-lora.safetensors", "sd15-lora-kohya.safetensors",
                                                      "sd15-lora.json", "grid.png"]  # fmt: skip
    assert Image.open(printed[-1]).width > 32 and "validation" in printed[-1]  # the grid the README promises
    assert "preset CPU: float32" in done.stderr
    again = subprocess.run(cmd[:-2] + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "resumed from step-000002" in again.stderr
    elsewhere = cmd[:9] + [str(tmp_path / "none")] + cmd[10:] + ["--resume"]
    missing = subprocess.run(elsewhere, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "holds no complete checkpoint" in missing.stderr


def test_accelerate_launch_runs_two_processes(tmp_path, images):
    out = tmp_path / "ddp"
    cmd = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
           "no", "--dynamo_backend", "no", "-m", "helpers", "train", "lora", "sd15", "--images", str(images), "--out",
           str(out), "--steps", "2", "--resolution", "32", "--instance-prompt", PROMPT, "--validation-steps", "2",
           "--device", "cpu"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = sorted((out / "ranks.log").read_text().splitlines())
    assert ranks == ["rank 0 of 2 on cpu", "rank 1 of 2 on cpu"] and (out / "sd15-lora.safetensors").is_file()


def test_the_training_benchmark_runs_in_its_smoke_form(tmp_path):
    done = subprocess.run([sys.executable, "benchmarks/train_t4.py", "--smoke", "--models", "sd15", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(next(tmp_path.glob("train-*.json")).read_text())
    (row,) = report["results"]
    assert row["model"] == "sd15" and row["steps"] == 4 and row["steps_per_s"] > 0 and report["machine"]["torch"]
    assert "| sd15 | 32 |" in next(tmp_path.glob("train-*.md")).read_text()


@pytest.mark.parametrize(
    "args, says",
    [
        (["--steps", "0"], "--steps 0: give a whole number of 1 or more"),
        (["--steps", "-5"], "--steps -5: give a whole number of 1 or more"),
        (["--resolution", "50"], "--resolution 50: give a multiple of 8"),
        (["--rank", "0"], "--rank 0: give a whole number of 1 or more"),
        (["--alpha", "0"], "--alpha 0.0: give a number above 0"),
        (["--lr", "-1"], "--lr -1.0: give a number above 0"),
        (["--batch-size", "0"], "--batch-size 0: give a whole number"),
        (["--validation-steps", "0"], "--validation-steps 0: give a whole number"),
        (["--name", "../../escape"], "--name '../../escape': a name is a file name, not a path"),
        (["--name", "my.style"], "--name 'my.style': a name is a file name"),
    ],
)
def test_numbers_and_names_are_refused_before_anything_loads_or_is_written(tmp_path, images, capsys, args, says):
    from helpers.__main__ import main

    out = tmp_path / "run"
    code = main(["train", "lora", "sd15", "--images", str(images), "--out", str(out), "--instance-prompt", PROMPT,
                 "--device", "cpu", *args])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and says in err and err.count("\n") == 1, err
    assert not out.exists() and not (tmp_path / "escape").exists()  # refused before the run's folder was made


def test_a_default_name_is_a_loadable_name():
    spec = helpers.get("realistic-vision-5.1")
    assert train.TrainConfig("lora", spec.key, "x").resolved(spec).name == "realistic-vision-5-1-lora"


def test_a_textual_inversion_token_the_tokenizer_knows_is_refused(tmp_path, images):
    config = train.TrainConfig("textual-inversion", "sd15", str(images), out=str(tmp_path / "ti"), token="cat",
                               steps=2, **{**FAST, "instance_prompt": None})  # fmt: skip
    with pytest.raises(ZooError, match="--token 'cat': the tokenizer already knows it"):
        train.train(config)
    assert not list((tmp_path / "ti").glob("*.safetensors"))


def test_ctrl_c_stops_with_one_line_that_says_where_to_resume_from(tmp_path, images):
    import re
    import signal
    import time

    out = tmp_path / "stopped"
    cmd = [sys.executable, "-m", "helpers", "train", "lora", "sd15", "--images", str(images), "--out", str(out),
           "--steps", "100000", "--resolution", "32", "--instance-prompt", PROMPT, "--checkpoint-every", "2",
           "--validation-every", "100000", "--device", "cpu"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "checkpoints" / "step-000004" / "complete.json").is_file():
        assert proc.poll() is None and time.monotonic() < deadline, "training did not reach step 4"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    last = stderr.strip().splitlines()[-1]
    found = re.fullmatch(r"stopped at step (\d+); rerun the same command to resume from step (\d+)", last)
    assert proc.returncode == 130 and found, stderr[-2000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr and stdout == ""
    step, resume = map(int, found.groups())
    assert 4 <= resume <= step and (out / "checkpoints" / f"step-{resume:06d}" / "complete.json").is_file()
