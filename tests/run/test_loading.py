"""The loader against the offline hub: every entry loads and generates; every failure says what to do."""

import copy
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

import helpers
from helpers import load_pipeline, pick_device, pick_dtype, registry
from helpers.base.errors import ModelAccessError, ModelNotCachedError, ZooError
from helpers.base.loaded import record
from helpers.offline import hub as offline_hub
from helpers.zoo.registry import REGISTRY_PATH

from ..environment import ROOT

REG = registry.default()
RAW = yaml.safe_load(REGISTRY_PATH.read_text())


def _inputs(task, pipeline=""):
    kw = {"prompt": "a watercolor fox", "num_inference_steps": 2, "height": 64, "width": 64, "output_type": "np"}
    if task == "instruct":  # an instruction and the picture to edit; no strength
        kw["image"] = Image.new("RGB", (64, 64), (200, 120, 40))
        if pipeline == "FluxKontextPipeline":
            kw.update(_auto_resize=False, max_area=64 * 64)  # else the picture and the output are about a megapixel
    elif task != "text2img":
        kw.update(image=Image.new("RGB", (64, 64), (200, 120, 40)), strength=1.0)
    if task == "inpaint":
        kw["mask_image"] = Image.new("L", (64, 64), 255)
    return kw


@pytest.mark.parametrize("key", [k for k, m in REG.models.items() if offline_hub.buildable(m)])
def test_every_entry_loads_and_generates(offline_hub_dir, key):
    spec = REG.get(key)
    task = spec.tasks[0]
    pipe = load_pipeline(key, task=task, device="cpu")
    assert type(pipe).__name__ == spec.pipeline
    assert pipe.device.type == "cpu" and pipe.dtype == torch.float32
    assert record(pipe).spec is spec
    image = pipe(**_inputs(task, spec.pipeline), generator=torch.Generator().manual_seed(0)).images[0]
    assert image.shape == (64, 64, 3) and np.isfinite(image).all() and image.std() > 0
    if not spec.single_file:  # a checkpoint file's weights against the diffusers layout: tests/run/test_single_file.py
        _assert_weights_from_entry_files(offline_hub_dir, spec, pipe)


def _assert_weights_from_entry_files(hub, spec, pipe):
    """The denoiser's weights are exactly those of the files the entry names: variant or not, safetensors or bin."""
    name = "unet" if hasattr(pipe, "unet") else "transformer"
    folder = _file(hub, spec, name)
    uses_variant = spec.variant and (spec.layout.variant_components is None or name in spec.layout.variant_components)
    files = [
        f
        for f in folder.iterdir()
        if f.suffix in (".safetensors", ".bin") and (f".{spec.variant}" in f.name) == bool(uses_variant)
    ]
    assert files, f"no weight files for {name} in {folder}"
    stored = {}
    for f in files:
        stored.update(load_file(f) if f.suffix == ".safetensors" else torch.load(f, weights_only=True))
    loaded = getattr(pipe, name).state_dict()
    compared = [k for k in stored if not (spec.adapters and "attn" in k)]  # fused LoRAs change attention weights
    assert compared
    for k in compared:
        assert torch.equal(loaded[k], stored[k].float()), f"{name}.{k} differs from {files[0].name}"


def _file(offline_hub_dir, spec, rel):
    storage = offline_hub_dir / ("models--" + spec.repo.replace("/", "--"))
    return storage / "snapshots" / (storage / "refs" / "main").read_text() / rel


def test_variant_files_are_the_ones_loaded(offline_hub_dir):
    spec = REG.get("sd15")
    assert spec.variant == "fp16"
    pipe = load_pipeline("sd15", device="cpu")
    half = load_file(_file(offline_hub_dir, spec, "unet/diffusion_pytorch_model.fp16.safetensors"))
    full = load_file(_file(offline_hub_dir, spec, "unet/diffusion_pytorch_model.safetensors"))
    name = "conv_in.weight"
    assert torch.equal(pipe.unet.state_dict()[name], half[name].float())
    assert not torch.equal(pipe.unet.state_dict()[name], full[name])


def test_no_variant_loads_full_precision_files(offline_hub_dir):
    spec = next(
        m for m in REG.models.values() if m.variant is None and m.family == "sd1" and m.weights == "safetensors"
    )
    pipe = load_pipeline(spec.key, device="cpu")
    full = load_file(_file(offline_hub_dir, spec, "unet/diffusion_pytorch_model.safetensors"))
    assert torch.equal(pipe.unet.state_dict()["conv_in.weight"], full["conv_in.weight"])


def test_vae_override_from_registry(offline_hub_dir):
    spec = REG.get("realistic-vision-5.1")
    vae_spec = REG.vae(spec.components["vae"])
    pipe = load_pipeline(spec.key, device="cpu")
    expected = load_file(_file(offline_hub_dir, vae_spec, "diffusion_pytorch_model.safetensors"))
    assert torch.equal(pipe.vae.state_dict()["decoder.conv_out.weight"], expected["decoder.conv_out.weight"])


def test_every_task_pipeline_of_a_model_shares_its_record(offline_hub_dir):
    helpers.free()
    text2img = helpers.get_pipeline("realistic-vision-5.1", device="cpu")
    img2img = helpers.get_pipeline("realistic-vision-5.1", task="img2img", device="cpu")
    assert record(img2img) is record(text2img) and record(img2img).vae == "sd-vae-ft-mse"
    image = Image.new("RGB", (64, 64), (120, 80, 40))
    rec = helpers.edit.img2img("realistic-vision-5.1", image, "a cat", num_inference_steps=2, device="cpu", seed=1)
    assert rec.records[0].vae == "sd-vae-ft-mse", "an img2img record names the VAE the model really uses"
    helpers.free()


def test_adapters_are_fused_and_unloaded(offline_hub_dir):
    base = load_pipeline("sd15", device="cpu")
    lcm = load_pipeline("sd15-lcm-lora", device="cpu")
    assert not any("lora" in n for n in lcm.unet.state_dict())
    changed = [n for n, p in base.unet.state_dict().items() if not torch.equal(p, lcm.unet.state_dict()[n])]
    assert changed and all("attn" in n for n in changed)


def test_other_task_shares_weights(offline_hub_dir):
    pipe = load_pipeline("sd15", task="img2img", device="cpu")
    assert type(pipe).__name__ == "StableDiffusionImg2ImgPipeline"
    with pytest.raises(ZooError, match=r"'sdxl-refiner' does not support task 'text2img'.*img2img"):
        load_pipeline("sdxl-refiner", task="text2img", device="cpu")
    with pytest.raises(ZooError, match="Unknown task 'upscale'"):
        load_pipeline("sd15", task="upscale", device="cpu")


def test_dtype_follows_entry_on_gpus():
    flux, sd15 = REG.get("flux-dev"), REG.get("sd15")
    assert pick_dtype(sd15, "cuda") == torch.float16 and pick_dtype(flux, "cuda") == torch.bfloat16
    assert pick_dtype(flux, "cpu") == torch.float32 and pick_dtype(flux, "mps") == torch.float16
    assert pick_dtype(flux, "cpu", "bfloat16") == torch.bfloat16
    assert pick_device("cpu") == "cpu"


def test_dtype_and_device_choices(offline_hub_dir):
    pipe = load_pipeline("sd15", device="cpu", dtype="bfloat16")
    assert pipe.dtype == torch.bfloat16
    with pytest.raises(ZooError, match="dtype 'fp17'"):
        load_pipeline("sd15", device="cpu", dtype="fp17")
    if not torch.cuda.is_available():
        with pytest.raises(ZooError, match="no CUDA GPU"):
            load_pipeline("sd15", device="cuda")


def _registry_with(mutate):
    data = copy.deepcopy(RAW)
    mutate(data)
    return registry.parse(data)


def test_a_variant_that_no_component_has_is_said_and_left_out(offline_hub_dir, capsys):
    reg = _registry_with(lambda d: d["models"]["sd15"].update(variant="bf16", dtype="bfloat16"))
    pipe = load_pipeline("sd15", registry=reg, device="cpu")
    assert "(the repo has no bf16 files for any component)" in capsys.readouterr().out
    full = load_file(_file(offline_hub_dir, REG.get("sd15"), "unet/diffusion_pytorch_model.safetensors"))
    assert torch.equal(pipe.unet.state_dict()["conv_in.weight"], full["conv_in.weight"]), "the full-precision files"


def test_pickled_weights_refused_unless_entry_says_so(offline_hub_dir):
    key = next(k for k, m in REG.models.items() if m.weights == "bin")
    reg = _registry_with(lambda d: d["models"][key].update(weights="safetensors"))
    with pytest.raises(ModelAccessError, match=r"only pickled \.bin files.*weights: bin"):
        load_pipeline(key, registry=reg, device="cpu")


def test_not_cached_offline_is_explained(offline_hub_dir):
    reg = _registry_with(lambda d: d["models"]["sd15"].update(repo="someone/never-downloaded"))
    with pytest.raises(ModelNotCachedError, match=r"not in the local cache.*HF_HUB_OFFLINE=1.*offline-hub"):
        load_pipeline("sd15", registry=reg, device="cpu")
    gated = _registry_with(lambda d: d["models"]["sd15"].update(repo="someone/never-downloaded", gated=True))
    with pytest.raises(ModelNotCachedError, match=r"not in the local cache.*It is gated: once online, accept"):
        load_pipeline("sd15", registry=gated, device="cpu")


# The Hub's own refusals, served by a fake Hub on localhost (tests/fake_hub.py) to a fresh interpreter.
_SCENARIO = textwrap.dedent(
    """
    import json, os, sys
    from tests.fake_hub import HubState, serve

    server, url = serve(HubState(gated={"black-forest-labs/FLUX.1-dev"},
                                 deleted={"stable-diffusion-v1-5/stable-diffusion-v1-5"},
                                 revisions={"segmind/SSD-1B": {"main"}}))
    os.environ["HF_ENDPOINT"] = url  # read when huggingface_hub is imported, as in a user's shell
    from helpers import load_pipeline

    out = {}
    for key in sys.argv[1:]:
        try:
            load_pipeline(key, device="cpu", memory="cpu")  # the access error, not the fit, is under test
            out[key] = ["loaded", ""]
        except Exception as e:
            out[key] = [type(e).__name__, str(e)]
    print("RESULT" + json.dumps(out))
    """
)


def _run_against_fake_hub(tmp_path, keys, token=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_OFFLINE="0", HF_HUB_CACHE=str(tmp_path / "empty-cache"), HF_HUB_DISABLE_TELEMETRY="1")
    env["HF_TOKEN_PATH"] = str(tmp_path / "no-token")
    if token:
        env["HF_TOKEN"] = token
    proc = subprocess.run(
        [sys.executable, "-c", _SCENARIO, *keys], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line, proc.stderr[-3000:]
    return json.loads(line[len("RESULT") :])


@pytest.fixture(scope="module")
def hub_refusals(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fakehub")
    no_token = _run_against_fake_hub(tmp, ["flux-dev", "sd15", "sd15-lcm-lora", "ssd-1b"])
    with_token = _run_against_fake_hub(tmp, ["flux-dev"], token="hf_" + "x" * 34)
    return no_token, with_token


def test_gated_without_token(hub_refusals):
    cls, msg = hub_refusals[0]["flux-dev"]
    assert cls == "ModelAccessError"
    assert "gated and no Hugging Face token" in msg and "https://huggingface.co/black-forest-labs/FLUX.1-dev" in msg
    assert "hf auth login" in msg


def test_gated_with_token_but_no_access(hub_refusals):
    cls, msg = hub_refusals[1]["flux-dev"]
    assert cls == "ModelAccessError" and "your token has no access" in msg and "hf auth whoami" in msg


def test_deleted_repo(hub_refusals):
    for key in ("sd15", "sd15-lcm-lora"):
        cls, msg = hub_refusals[0][key]
        assert cls == "ModelAccessError"
        assert "does not exist on the Hub" in msg and "runwayml/stable-diffusion-v1-5" in msg
        assert "python -m helpers doctor" in msg


def test_missing_revision(hub_refusals):
    cls, msg = hub_refusals[0]["ssd-1b"]
    assert REG.get("ssd-1b").revision_kind == "commit"
    assert cls == "ModelAccessError" and "does not exist in the repo any more" in msg and "--pin" in msg


def _mixed(offline_hub_dir, name, variant_components, pickled=()):
    def mutate(d):
        d["models"]["sd15"].update(repo=f"sdzoo-test/{name}", variant="fp16")
        d["models"]["sd15"]["layout"] = {
            **d["models"]["sd15"].get("layout", {}),
            "variant_components": variant_components,
        }

    reg = _registry_with(mutate)
    offline_hub.add_repo(offline_hub_dir, reg.get("sd15"), pickled=pickled)
    return reg


def test_each_component_falls_back_to_full_precision_on_its_own(offline_hub_dir, capsys):
    reg = _mixed(offline_hub_dir, "mixed-layout", ["text_encoder"])
    pipe = load_pipeline("sd15", registry=reg, device="cpu")
    out = capsys.readouterr().out
    line = "[sd15] weights: fp16 for text_encoder; full precision for safety_checker, unet, vae (the repo has no fp16"
    assert line in out
    hub = offline_hub_dir / "models--sdzoo-test--mixed-layout" / "snapshots"
    folder = next(hub.iterdir())
    full = load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(full[k], v) for k, v in pipe.unet.state_dict().items() if k in full)
    half = load_file(str(folder / "text_encoder" / "model.fp16.safetensors"))
    te = pipe.text_encoder.state_dict()
    assert all(torch.equal(half[k].float(), te[k]) for k in half if k in te)
    image = pipe(**_inputs("text2img"), generator=torch.Generator().manual_seed(0)).images[0]
    assert image.std() > 0


def test_a_repo_without_any_variant_files_loads_without_the_variant(offline_hub_dir, capsys):
    reg = _mixed(offline_hub_dir, "no-variant-files", [])  # an fp16 entry, a snapshot with no fp16 file at all
    folder = next((offline_hub_dir / "models--sdzoo-test--no-variant-files" / "snapshots").iterdir())
    assert not [f for f in folder.rglob("*.safetensors") if ".fp16." in f.name]
    pipe = load_pipeline("sd15", registry=reg, device="cpu")
    out = capsys.readouterr().out
    line = "[sd15] weights: full precision for safety_checker, text_encoder, unet, vae (the repo has no fp16 files for"
    assert line in out, out
    full = load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(full[k], v) for k, v in pipe.unet.state_dict().items() if k in full)
    image = pipe(**_inputs("text2img"), generator=torch.Generator().manual_seed(0)).images[0]
    assert np.asarray(image).std() > 0


def test_a_component_with_only_pickled_weights_is_refused_offline(offline_hub_dir):
    reg = _mixed(offline_hub_dir, "pickled-vae", None, pickled=("vae",))
    with pytest.raises(ModelAccessError, match=r"component .vae. has only pickled \.bin files.*weights: bin"):
        load_pipeline("sd15", registry=reg, device="cpu")


def test_a_damaged_weight_file_is_named_with_what_to_do(offline_hub_dir):
    reg = _mixed(offline_hub_dir, "damaged-unet", None)
    snapshot = next((offline_hub_dir / "models--sdzoo-test--damaged-unet" / "snapshots").iterdir())
    weights = snapshot / "unet" / "diffusion_pytorch_model.fp16.safetensors"  # the entry loads fp16
    blob = weights.resolve()
    data = blob.read_bytes()
    blob.unlink()
    blob.write_bytes(data[: len(data) // 3])  # a download cut short
    with pytest.raises(ModelAccessError) as e:
        load_pipeline("sd15", registry=reg, device="cpu")
    msg = str(e.value)
    assert "is damaged" in msg and "diffusion_pytorch_model.fp16.safetensors" in msg, msg
    assert "hf cache delete" in msg and str(snapshot) in msg


def test_a_gated_model_that_does_not_fit_still_says_it_is_gated(offline_hub_dir, monkeypatch):
    laptop = helpers.memory.Machine("cpu", 0.0, 14.0, "laptop CPU")
    monkeypatch.setattr(helpers.memory.Machine, "detect", classmethod(lambda cls, device="auto": laptop))
    reg = _registry_with(lambda d: d["models"]["flux-dev"].update(repo="someone/never-downloaded"))
    with pytest.raises(ZooError, match=r"'flux-dev' does not fit.*It is gated: once online, accept its licence") as e:
        load_pipeline("flux-dev", registry=reg, device="cpu")
    assert "hf auth login" in str(e.value)
    plain = _registry_with(lambda d: d["models"]["flux-dev"].update(repo="someone/never-downloaded", gated=False))
    with pytest.raises(ZooError, match=r"does not fit") as e:
        load_pipeline("flux-dev", registry=plain, device="cpu")
    assert "gated" not in str(e.value)
