"""Checkpoint files (A1111, ComfyUI, civitai): each family's file loads, is told apart, and draws the same pixels
as the diffusers-layout stand-in it was written from; hashes, local folders, pickles and damaged files."""

import copy
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file

import helpers
from helpers import load_pipeline, registry
from helpers.__main__ import main
from helpers.base.errors import ModelAccessError, ZooError
from helpers.base.records import read_record
from helpers.offline import hub as offline_hub
from helpers.offline.checkpoints import original_state_dict
from helpers.run.singlefile import load_single_file, local_models
from helpers.zoo import checkpoints
from helpers.zoo.registry import REGISTRY_PATH, parse

from ..environment import ROOT

REG = registry.default()
SEED = 0


def _inputs(task):
    kw = {"prompt": "a watercolor fox", "num_inference_steps": 2, "height": 64, "width": 64, "output_type": "np"}
    if task != "text2img":
        kw.update(image=Image.new("RGB", (64, 64), (200, 120, 40)), strength=1.0)
    if task == "inpaint":
        kw["mask_image"] = Image.new("L", (64, 64), 255)
    return kw


def _draw(pipe, task):
    return pipe(**_inputs(task), generator=torch.Generator().manual_seed(SEED)).images[0]


def _write(key, path, **parts):
    """The stand-in of a registry model, and a checkpoint file of it in the original layout."""
    spec = REG.get(key)
    pipe = load_pipeline(key, task=spec.tasks[0], device="cpu", fast="off")
    save_file(original_state_dict(pipe.components, spec, **parts), str(path))
    return pipe


@pytest.mark.parametrize(
    "key, family, kind",
    [
        ("sd15", "sd1", ""),
        ("sd21", "sd2", "v_prediction"),
        ("sd21-base", "sd2", "epsilon"),
        ("sdxl-base", "sdxl", ""),
        ("sdxl-refiner", "sdxl", "refiner"),
        ("sd15-inpainting", "sd1", "inpaint"),
        ("sd3-medium", "sd3", ""),
    ],
)
def test_a_checkpoint_file_loads_as_its_family_with_the_stand_ins_pixels(fresh_hub, tmp_path, key, family, kind):
    path = tmp_path / f"my-{key}.safetensors"
    reference = _write(key, path)
    found = checkpoints.detect_file(path)
    assert (found.family, found.kind, found.vae, found.text_encoders) == (family, kind, True, family != "sd3")
    task = REG.get(key).tasks[0]
    pipe = load_single_file(path, task=task, device="cpu", fast="off")
    assert type(pipe) is type(reference)
    assert pipe.scheduler.config.get("prediction_type") == reference.scheduler.config.get("prediction_type")
    np.testing.assert_array_equal(_draw(pipe, task), _draw(reference, task))


def test_sd2_v_prediction_is_told_from_the_weights(fresh_hub, tmp_path):
    """SD 2.x 768-v and 512 epsilon files have the same tensors; ComfyUI tells them by the last norm's spread."""
    _write("sd21", tmp_path / "v.safetensors")
    _write("sd21-base", tmp_path / "eps.safetensors")
    assert helpers.get(str(tmp_path / "v.safetensors")).prediction == "v_prediction"
    assert helpers.get(str(tmp_path / "eps.safetensors")).prediction == "epsilon"
    state = load_file(str(tmp_path / "eps.safetensors"))
    state["v_pred"] = torch.tensor([])  # the marker ComfyUI and v-prediction SDXL/SD1 fine-tunes carry
    save_file(state, str(tmp_path / "marked.safetensors"))
    assert checkpoints.detect_file(tmp_path / "marked.safetensors").prediction == "v_prediction"


def test_the_baked_in_vae_is_used_and_a_file_without_one_gets_the_base_models(fresh_hub, tmp_path):
    reference = _write("sd15", tmp_path / "plain.safetensors")
    state = load_file(str(tmp_path / "plain.safetensors"))
    for k in state:
        if k.startswith("first_stage_model.decoder."):
            state[k] = state[k] + 0.05 * torch.randn_like(state[k])
    save_file(state, str(tmp_path / "baked.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith("first_stage_model.")},
              str(tmp_path / "novae.safetensors"))  # fmt: skip
    baked = load_single_file(tmp_path / "baked.safetensors", device="cpu", fast="off")
    decoder = "decoder.conv_out.weight"
    assert torch.equal(baked.vae.state_dict()[decoder], state[f"first_stage_model.{decoder}"])
    assert not np.array_equal(_draw(baked, "text2img"), _draw(reference, "text2img"))
    bare = load_single_file(tmp_path / "novae.safetensors", device="cpu", fast="off")
    assert not checkpoints.detect_file(tmp_path / "novae.safetensors").vae
    assert torch.equal(bare.vae.state_dict()[decoder], reference.vae.state_dict()[decoder])


def test_generate_takes_a_path_and_writes_a1111s_model_hash(fresh_hub, tmp_path):
    path = tmp_path / "dreamy_v2.safetensors"
    _write("sd15", path)
    result = helpers.generate(str(path), "a lighthouse", num_inference_steps=2, width=64, height=64, seed=3,
                              device="cpu")  # fmt: skip
    by_hand = hashlib.sha256(path.read_bytes()).hexdigest()[:10]  # A1111: sha256 of the whole file, 10 hex digits
    assert helpers.model_hash(path) == by_hand
    (png,) = result.save(tmp_path / "out")
    text = Image.open(png).info["parameters"]
    assert f"Model hash: {by_hand}, Model: dreamy_v2" in text
    assert read_record(png).model_hash == by_hand


def test_the_hash_is_cached_and_recomputed_when_the_file_changes(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"a": torch.zeros(4)}, str(path))
    first = checkpoints.model_hash(path)
    store = json.loads((checkpoints.cache_root() / "hashes.json").read_text())
    assert store[str(path.resolve())]["sha256"].startswith(first)
    save_file({"a": torch.ones(8)}, str(path))
    assert checkpoints.model_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()[:10] != first


def test_a_scanned_folder_lists_each_file_and_its_files_work_by_name_in_compare(fresh_hub, tmp_path):
    folder = tmp_path / "stable-diffusion-webui" / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    _write("sd15", folder / "alpha_v1.safetensors")
    _write("sd21-base", folder / "beta.safetensors")
    save_file({"lora_unet_down.alpha": torch.ones(1)}, str(folder / "notamodel.safetensors"))
    table = local_models(tmp_path / "stable-diffusion-webui")
    rows = table.set_index("file").to_dict("index")
    assert rows["alpha_v1.safetensors"]["family"] == "sd1" and rows["beta.safetensors"]["family"] == "sd2"
    by_hand = hashlib.sha256((folder / "alpha_v1.safetensors").read_bytes()).hexdigest()[:10]
    assert rows["alpha_v1.safetensors"]["hash"] == by_hand and rows["alpha_v1.safetensors"]["key"] == "alpha_v1"
    assert "cannot tell which model family" in rows["notamodel.safetensors"]["note"]
    result = helpers.compare(["alpha_v1", "beta"], "a red fox", seeds=[1], device="cpu", num_inference_steps=2,
                             width=64, height=64)  # fmt: skip
    rows = result.sweep.rows
    assert [r["status"] for r in rows] == ["ok", "ok"], [r.get("error") for r in rows]
    made = {read_record(result.sweep.out_dir / r["path"]).model for r in rows}
    assert made == {"alpha_v1", "beta"}


def test_a_pickled_file_is_refused_unless_opted_in(fresh_hub, tmp_path):
    reference = _write("sd15", tmp_path / "safe.safetensors")
    torch.save({"state_dict": load_file(str(tmp_path / "safe.safetensors"))}, tmp_path / "old.ckpt")
    with pytest.raises(ModelAccessError, match=r"old\.ckpt is a pickled checkpoint.*allow_pickle=True"):
        load_single_file(tmp_path / "old.ckpt", device="cpu")
    assert "pickled" in local_models(tmp_path).set_index("file").loc["old.ckpt", "note"]
    pipe = load_single_file(tmp_path / "old.ckpt", allow_pickle=True, device="cpu", fast="off")
    np.testing.assert_array_equal(_draw(pipe, "text2img"), _draw(reference, "text2img"))


def test_a_truncated_file_is_named_with_what_to_do(tmp_path):
    path = tmp_path / "cut.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3)}, str(path))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelAccessError, match=r"cut\.safetensors is cut short.*download it again"):
        helpers.get(str(path))


def test_a_file_of_no_known_family_is_refused_with_what_was_seen(tmp_path):
    path = tmp_path / "what.safetensors"
    save_file({"encoder.layers.0.weight": torch.zeros(2), "decoder.out.bias": torch.zeros(2)}, str(path))
    with pytest.raises(ZooError, match=r"cannot tell which model family.*2 tensors.*decoder\.out, encoder\.layers"):
        helpers.get(str(path))


def test_a_registry_entry_of_one_file_downloads_it_and_loads_it(fresh_hub):
    raw = yaml.safe_load(REGISTRY_PATH.read_text())
    entry = copy.deepcopy(raw["models"]["sdxl-base"])
    entry.update(name="A fine-tune", repo="someone/finetune-xl", single_file="finetuneXL_v1.safetensors",
                 aliases=[], previous_repos=[], variant=None)  # fmt: skip
    raw["models"] = {**raw["models"], "finetune-xl": entry}
    reg = parse(raw)
    spec = reg.get("finetune-xl")
    snapshot = offline_hub.add_single_file_repo(fresh_hub, spec, reg)
    assert [p.name for p in snapshot.iterdir()] == ["finetuneXL_v1.safetensors"]
    pipe = load_pipeline("finetune-xl", registry=reg, device="cpu", fast="off")
    _, stand_in = offline_hub._denoiser(spec)  # the file's own U-Net, seeded by its repo
    assert all(torch.equal(pipe.unet.state_dict()[k], v) for k, v in stand_in.state_dict().items())
    base = load_pipeline("sdxl-base", device="cpu", fast="off")
    assert not torch.equal(pipe.unet.conv_in.weight, base.unet.conv_in.weight)


def test_the_command_line_lists_a_folder_and_generates_from_a_file_by_name(fresh_hub, tmp_path, capsys):
    folder = tmp_path / "ComfyUI" / "models" / "checkpoints"
    folder.mkdir(parents=True)
    _write("sd15", folder / "myModel_v3.safetensors")
    torch.save({}, folder / "old.ckpt")
    assert main(["local", str(tmp_path / "ComfyUI")]) == 0
    out = capsys.readouterr().out
    by_hand = hashlib.sha256((folder / "myModel_v3.safetensors").read_bytes()).hexdigest()[:10]
    assert "mymodel_v3" in out and by_hand in out and "pickled checkpoint" in out
    proc = subprocess.run(
        [sys.executable, "-m", "helpers", "generate", "mymodel_v3", "a red fox", "--models", str(tmp_path / "ComfyUI"),
         "--steps", "2", "--size", "64", "--seed", "5", "--out", str(tmp_path / "out"), "--device", "cpu"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"Model hash: {by_hand}, Model: myModel_v3" in Image.open(proc.stdout.split()[0]).info["parameters"]


@pytest.mark.parametrize("guidance, kind, base", [(True, "dev", "flux-dev"), (False, "schnell", "flux-schnell")])
def test_a_flux_file_is_told_dev_or_schnell_by_its_guidance_embedder(tmp_path, guidance, kind, base):
    from helpers.offline import tiny
    from helpers.offline.checkpoints import flux_to_bfl

    path = tmp_path / f"flux1-{kind}.safetensors"
    save_file(flux_to_bfl(tiny.seeded(tiny.flux_transformer, guidance).state_dict()), str(path))
    assert (checkpoints.detect_file(path).family, checkpoints.detect_file(path).kind) == ("flux", kind)
    spec = helpers.get(str(path))
    assert (spec.family, spec.pipeline, spec.prediction) == ("flux", "FluxPipeline", "flow")
    assert checkpoints.config_entry(spec, REG).key == base
