"""LoRAs and embeddings as A1111 and kohya write them, loaded from a path or by name from a folder."""

import re

import numpy as np
import pytest
import torch
from diffusers.utils import convert_state_dict_to_kohya
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file

from helpers import ZooError, generate, load_pipeline, styles
from helpers.run import adapter_files

from ..common import SMALL, px

pytestmark = pytest.mark.usefixtures("fresh_hub")

PROMPT = "a lighthouse at dusk"


class Payload:
    """Stands for whatever else a pickle may carry: weights-only loading must refuse it."""


@pytest.fixture
def pipe():
    pipe = load_pipeline("sd15", device="cpu")
    yield pipe
    styles.unload(pipe)


def _kohya_lora(pipe, path, alpha: float, rank: int = 4, seed: int = 0):
    """A kohya-layout LoRA file of the tiny U-Net: `lora_unet_..._lora_down.weight`, `lora_up`, `alpha`."""
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                        init_lora_weights=False)  # fmt: skip
    pipe.unet.add_adapter(config, adapter_name="writer")
    layers = get_peft_model_state_dict(pipe.unet, adapter_name="writer")
    pipe.unet.delete_adapters("writer")
    kohya = convert_state_dict_to_kohya({f"unet.{k}": v * 4 for k, v in layers.items()})
    for key in [k for k in kohya if k.endswith(".alpha")]:
        kohya[key] = torch.tensor(float(alpha))
    assert any(k.startswith("lora_unet_") and k.endswith(".lora_down.weight") for k in kohya)
    save_file({k: v.contiguous() for k, v in kohya.items()}, str(path), metadata={"ss_network_dim": str(rank)})
    return path


def test_a_kohya_lora_file_changes_the_image_by_its_alpha(pipe, tmp_path):
    base = px(generate(pipe, PROMPT, seed=1, **SMALL).images[0])
    full = _kohya_lora(pipe, tmp_path / "detail.safetensors", alpha=4)
    half = _kohya_lora(pipe, tmp_path / "detail-half.safetensors", alpha=2)
    assert styles.load_lora(pipe, str(full)) == "detail"
    styles.load_lora(pipe, str(half))
    off = px(generate(pipe, PROMPT, seed=1, loras={"detail": 0.0}, **SMALL).images[0])
    on = px(generate(pipe, PROMPT, seed=1, loras={"detail": 1.0}, **SMALL).images[0])
    halved = px(generate(pipe, PROMPT, seed=1, loras={"detail-half": 1.0}, **SMALL).images[0])
    same = px(generate(pipe, PROMPT, seed=1, loras={"detail": 0.5}, **SMALL).images[0])
    assert np.array_equal(off, base) and not np.array_equal(on, base)
    assert np.abs(halved - same).max() <= 1, "alpha/rank scales the LoRA, as kohya's alpha does"
    assert not np.array_equal(halved, on)


def test_a_lora_by_name_from_an_a1111_folder(pipe, tmp_path, monkeypatch):
    lora_dir = tmp_path / "models" / "Lora" / "styles"
    lora_dir.mkdir(parents=True)
    _kohya_lora(pipe, lora_dir / "inkwash.safetensors", alpha=4)
    monkeypatch.setenv(adapter_files.DIRS_ENV, str(tmp_path / "models" / "Lora"))
    result = generate(pipe, PROMPT, seed=1, loras={"inkwash": 1.0}, **SMALL)
    assert result.records[0].loras == {"inkwash": 1.0}
    assert not np.array_equal(px(result.images[0]), px(generate(pipe, PROMPT, seed=1, loras={}, **SMALL).images[0]))
    torch.save({"x": torch.zeros(1)}, lora_dir / "old.pt")
    with pytest.raises(ZooError, match="pickled LoRA.*allow_pickle=True"):
        styles.load_lora(pipe, "old")


def _a1111_pt(path, vectors, payload=None):
    data = {"string_to_token": {"*": 265}, "string_to_param": {"*": vectors}, "name": path.stem, "step": 500,
            "sd_checkpoint": None, "sd_checkpoint_name": "v1-5-pruned-emaonly"}  # fmt: skip
    if payload is not None:
        data["extra"] = payload
    torch.save(data, path)
    return path


def test_an_a1111_pt_embedding_needs_the_opt_in_and_binds_its_file_name(pipe, tmp_path):
    width = pipe.text_encoder.get_input_embeddings().weight.shape[1]
    vectors = torch.randn(2, width, generator=torch.Generator().manual_seed(3))
    path = _a1111_pt(tmp_path / "fox-style.pt", vectors)
    with pytest.raises(ZooError, match="pickled embedding.*allow_pickle=True"):
        styles.load_embedding(pipe, str(path))
    assert styles.load_embedding(pipe, str(path), allow_pickle=True) == "fox-style"
    table = pipe.text_encoder.get_input_embeddings().weight
    ids = pipe.tokenizer.convert_tokens_to_ids(["fox-style", "fox-style_1"])
    assert torch.equal(table[ids[0]], vectors[0]) and torch.equal(table[ids[1]], vectors[1])
    with_token = generate(pipe, "a fox-style lighthouse", seed=1, embeddings={str(path): None}, **SMALL)
    assert with_token.records[0].embeddings == {str(path): "fox-style"}
    assert not np.array_equal(px(with_token.images[0]), px(generate(pipe, "a lighthouse", seed=1, **SMALL).images[0]))


def test_an_emb_params_safetensors_embedding_by_name_from_a_folder(pipe, tmp_path, monkeypatch):
    width = pipe.text_encoder.get_input_embeddings().weight.shape[1]
    vectors = torch.randn(3, width, generator=torch.Generator().manual_seed(4))
    (tmp_path / "embeddings").mkdir()
    save_file({"emb_params": vectors}, str(tmp_path / "embeddings" / "bad-hands.safetensors"))
    monkeypatch.setenv(adapter_files.DIRS_ENV, str(tmp_path / "embeddings"))
    assert styles.ensure_embedding(pipe, "bad-hands") == "bad-hands"
    table = pipe.text_encoder.get_input_embeddings().weight
    assert torch.equal(table[pipe.tokenizer.convert_tokens_to_ids("bad-hands_2")], vectors[2])
    save_file({"emb_params": torch.zeros(1, width * 2)}, str(tmp_path / "embeddings" / "sd2-only.safetensors"))
    with pytest.raises(ZooError, match=f"{width * 2} wide.*reads {width}"):
        styles.load_embedding(pipe, "sd2-only")


def test_damaged_and_code_carrying_files_are_refused_with_what_is_wrong(pipe, tmp_path):
    width = pipe.text_encoder.get_input_embeddings().weight.shape[1]
    evil = _a1111_pt(tmp_path / "evil.pt", torch.zeros(1, width), payload=Payload())
    with pytest.raises(ZooError, match="Python objects other than tensors"):
        styles.load_embedding(pipe, str(evil), allow_pickle=True)
    good = tmp_path / "cut.safetensors"
    save_file({"emb_params": torch.zeros(4, width)}, str(good))
    good.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(ZooError, match="truncated or damaged"):
        styles.load_embedding(pipe, str(good))
    save_file({"a": torch.zeros(1, width), "b": torch.zeros(1, width)}, str(tmp_path / "two.safetensors"))
    with pytest.raises(ZooError, match="not a textual-inversion embedding.*'a', 'b'"):
        styles.load_embedding(pipe, str(tmp_path / "two.safetensors"))


LDM_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _ldm_vae(vae) -> dict:
    """The VAE's weights in the original LDM layout of A1111's VAE files (the inverse of diffusers' conversion)."""
    n, out = len(vae.config.up_block_types), {}
    for key, t in vae.state_dict().items():
        k = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)", r"encoder.down.\1.block.\2", key)
        k = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0", r"encoder.down.\1.downsample", k)
        k = re.sub(r"up_blocks\.(\d+)\.resnets\.(\d+)", lambda m: f"up.{n - 1 - int(m[1])}.block.{m[2]}", k)
        k = re.sub(r"up_blocks\.(\d+)\.upsamplers\.0", lambda m: f"up.{n - 1 - int(m[1])}.upsample", k)
        k = re.sub(r"mid_block\.resnets\.(\d+)", lambda m: f"mid.block_{int(m[1]) + 1}", k)
        k = k.replace("mid_block.attentions.0", "mid.attn_1").replace("conv_shortcut", "nin_shortcut")
        k = k.replace("conv_norm_out", "norm_out")
        if ".attn_1." in k:  # LDM's attention is 1x1 convolutions
            for old, new in LDM_ATTENTION.items():
                k = k.replace(f".{old}.", f".{new}.")
            t = t[:, :, None, None] if t.ndim == 2 else t
        out[k] = t.contiguous()
    return out


def test_a_single_file_vae_in_the_ldm_layout_loads_as_the_same_vae(pipe, tmp_path):
    path = tmp_path / "vae-ft-mse-840000-ema-pruned.safetensors"
    ldm = _ldm_vae(pipe.vae)
    assert "decoder.up.3.block.0.conv1.weight" in ldm and "encoder.mid.attn_1.q.weight" in ldm
    save_file(ldm, str(path))
    vae = adapter_files.load_vae(path, "sd15")
    theirs, ours = vae.state_dict(), pipe.vae.state_dict()
    assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in ours)
    swapped = load_pipeline("sd15", device="cpu", vae=vae)
    a, b = (px(generate(p, PROMPT, seed=1, **SMALL).images[0]) for p in (swapped, pipe))
    assert np.array_equal(a, b)
    path.write_bytes(path.read_bytes()[:-64])
    with pytest.raises(ZooError, match="damaged"):
        adapter_files.load_vae(path, "sd15")
