"""The U-Net rebuilt in plain PyTorch is diffusers' U-Net: the same output from the same weights and inputs."""

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.embeddings import Timesteps, get_timestep_embedding

from helpers.base.errors import ZooError
from helpers.offline import tiny
from helpers.teaching import unet

from ..common import REAL_CONFIGS

SD15_PARAMETERS = 859_520_964  # SD 1.5's U-Net, as diffusers counts it


@pytest.mark.parametrize("dim", [320, 32, 7])
@pytest.mark.parametrize("flip, shift", [(True, 0), (False, 1)])
def test_timestep_embedding_is_diffusers(dim, flip, shift):
    t = torch.tensor([0, 1, 10, 250, 999, 12.5])
    ours = unet.timestep_embedding(t, dim, flip, shift)
    torch.testing.assert_close(ours, get_timestep_embedding(t, dim, flip, shift), rtol=0, atol=0)
    torch.testing.assert_close(ours, Timesteps(dim, flip, shift)(t), rtol=0, atol=0)


def test_timestep_embedding_is_sines_and_cosines():
    emb = unet.timestep_embedding(torch.tensor([0.0, 500.0]), 8)
    torch.testing.assert_close(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))  # cos 0, then sin 0
    frequencies = 10000 ** -(torch.arange(4) / 4)
    torch.testing.assert_close(emb[1], torch.cat([(500 * frequencies).cos(), (500 * frequencies).sin()]))


def test_rebuilt_unet_equals_the_offline_hubs_sd15(offline_hub_dir, registry):
    spec = registry.get("sd15")
    reference = unet.diffusers_unet(spec.repo, spec.revision)
    mine = unet.from_diffusers(reference)
    assert sum(p.numel() for p in mine.parameters()) == sum(p.numel() for p in reference.parameters())
    assert unet.max_difference(mine, reference, latent_size=16) < 1e-5
    assert unet.max_difference(mine, reference, latent_size=24, timestep=3, seed=1) < 1e-5


def test_the_check_notices_one_weight_off_by_one_percent(offline_hub_dir, registry):
    spec = registry.get("sd15")
    reference = unet.diffusers_unet(spec.repo, spec.revision)
    mine = unet.from_diffusers(reference)
    k = mine.down[2].attn.blocks[0].cross_attn.k  # the weights are shared with diffusers': replace, don't edit
    k.weight = torch.nn.Parameter(k.weight * 1.01)
    assert unet.max_difference(mine, reference) > 1e-4


def test_sd2_layout_linear_projections_and_heads_per_level():
    reference = UNet2DConditionModel(
        block_out_channels=(8, 16, 16, 16), layers_per_block=2, norm_num_groups=4, cross_attention_dim=24,
        attention_head_dim=(2, 4, 4, 8), use_linear_projection=True, sample_size=16,
        transformer_layers_per_block=(1, 2, 1, 1),
    ).eval()  # fmt: skip
    mine = unet.from_diffusers(reference)
    assert mine.config.heads == (2, 4, 4, 8) and mine.config.linear_projection
    x, text = torch.randn(2, 4, 16, 16), torch.randn(2, 5, 24)
    expected = reference(x, torch.tensor([10, 900]), encoder_hidden_states=text).sample
    torch.testing.assert_close(mine(x, torch.tensor([10, 900]), text), expected, rtol=0, atol=1e-5)


def test_rebuilt_unet_equals_full_size_sd15_with_random_weights():
    folder = REAL_CONFIGS / "sd15" / "unet"
    if not (folder / "config.json").is_file():
        pytest.skip(f"no SD 1.5 config at {folder} (the shared real-configs folder beside the checkout)")
    reference = unet.random_diffusers_unet(UNet2DConditionModel.load_config(folder), seed=0)
    mine = unet.from_diffusers(reference)
    assert sum(p.numel() for p in mine.parameters()) == SD15_PARAMETERS
    assert unet.max_difference(mine, reference, latent_size=16) < 1e-5


def test_every_diffusers_weight_has_an_explicit_name_here():
    reference = tiny.unet_sd()
    blocks = unet.key_map(unet.config_from_diffusers(reference.config))
    names = {unet.rename(k, blocks) for k in reference.state_dict()}
    assert names == set(unet.UNet(unet.config_from_diffusers(reference.config)).state_dict())
    key = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    assert unet.rename(key, blocks) == "down.2.attn.blocks.0.cross_attn.k.weight"
    assert unet.rename("up_blocks.0.upsamplers.0.conv.weight", blocks) == "up.1.resample.conv.weight"
    with pytest.raises(ZooError, match="No block here"):
        unet.rename("add_embedding.linear_1.weight", blocks)


def test_an_sdxl_unet_is_refused_with_the_reason():
    with pytest.raises(ZooError, match="text_time"):
        unet.config_from_diffusers(tiny.unet_sdxl().config)


def test_latent_sides_must_fit_the_downsampling():
    with pytest.raises(ZooError, match="multiples of 8"):
        unet.from_diffusers(tiny.unet_sd())(torch.randn(1, 4, 12, 12), 1, torch.randn(1, 77, 32))


def test_guided_tour_of_sd15():
    with torch.device("meta"):  # the shapes of SD 1.5 without allocating its weights
        model = unet.UNet(unet.Config())
    table = unet.tour(model, latent_size=64)
    assert table.parameters.sum() == SD15_PARAMETERS
    attention = table[table["self-attention tokens"] > 0]
    assert set(attention.resolution) == {"64x64", "32x32", "16x16", "8x8"}  # 8x8: the middle block only
    assert attention[attention.resolution == "8x8"].block.tolist() == ["mid"]
    assert table.loc[table.block == "down.0", "self-attention tokens"].item() == 64 * 64
    assert (table["text tokens"][table["self-attention tokens"] > 0] == 77).all()
    assert table.loc[table.block == "mid", "pixels per position"].item() == "64x64"
    assert table.path.value_counts()["up"] == len(model.up) + 1 and len(model.up) == 12
    assert "ResNet 1280 + skip 640 -> 1280" in table.loc[table.block == "up.5", "what"].item()
