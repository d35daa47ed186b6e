"""Tiny random-weight components with the real architectures of each family.

Widths are shrunk to a few channels; the structure is kept: the same block types and counts, two text
encoders for SDXL, three for SD3, a T5 encoder for SD3, FLUX and PixArt, 16-channel VAEs where the
real ones have them. Tokenizers are trained here on a small corpus, in the real file formats.
Used by `helpers.offline.hub`; nothing here is used when loading real models.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import torch

from ..judge.inception import FIDInceptionV3

# Words the tokenizers are trained on: enough for merges, small enough to train in milliseconds.
_CORPUS_WORDS = (
    "a photo of an astronaut riding a horse on the moon portrait painting oil watercolor anime city night "
    "sunset mountain lake forest cinematic lighting highly detailed castle dragon robot cyberpunk woman man "
    "cat dog flower tree beach ocean red blue green golden hour studio sharp focus style art by trending"
).split()
CLIP_HIDDEN = 32
T5_HIDDEN = 64


def _corpus() -> list[str]:
    n = len(_CORPUS_WORDS)
    return [" ".join(_CORPUS_WORDS[i:] + _CORPUS_WORDS[:i]) for i in range(n)]


@cache
def clip_vocab_and_merges() -> tuple[dict, list[str]]:
    """A CLIP BPE vocabulary laid out as OpenAI's: bytes, bytes+</w>, merges, then the two specials."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=400, end_of_word_suffix="</w>", show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    merges = [" ".join(m) if isinstance(m, list) else m for m in json.loads(tok.to_str())["model"]["merges"]]
    byte_chars = list(bytes_to_unicode().values())
    vocab_list = byte_chars + [c + "</w>" for c in byte_chars]
    for m in merges:
        merged = m.replace(" ", "")
        if merged not in vocab_list:
            vocab_list.append(merged)
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(vocab_list)}, merges


def write_clip_tokenizer(folder: Path, pad_token: str = "<|endoftext|>") -> None:
    """vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json, as in the real repos."""
    vocab, merges = clip_vocab_and_merges()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    token = {"lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
    special = {
        "bos_token": {"content": "<|startoftext|>", **token},
        "eos_token": {"content": "<|endoftext|>", **token},
        "pad_token": pad_token,
        "unk_token": {"content": "<|endoftext|>", **token},
    }
    config = {
        "add_prefix_space": False,
        "do_lower_case": True,
        "errors": "replace",
        "model_max_length": 77,
        "tokenizer_class": "CLIPTokenizer",
        **{k: v["content"] if isinstance(v, dict) else v for k, v in special.items()},
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


@cache
def _t5_vocab() -> list[tuple[str, float]]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    tok.train_from_iterator(_corpus(), trainer)
    return [tuple(p) for p in json.loads(tok.to_str())["model"]["vocab"]]


def write_t5_tokenizer(folder: Path, model_max_length: int = 512) -> None:
    """A T5 (Unigram) tokenizer saved the way transformers saves it: tokenizer.json and its config."""
    from transformers import T5Tokenizer

    tok = T5Tokenizer(vocab=list(_t5_vocab()), extra_ids=100, model_max_length=model_max_length)
    tok.save_pretrained(str(folder))
    special = {
        "additional_special_tokens": [f"<extra_id_{i}>" for i in range(100)],
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))


def t5_vocab_size() -> int:
    return len(_t5_vocab()) + 100


def clip_text(pad_token_id: int = 1, act: str = "quick_gelu", projection: bool = False):
    """A 2-layer CLIP text encoder; `projection` gives the `...WithProjection` class SDXL and SD3 use."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    vocab, _ = clip_vocab_and_merges()
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=CLIP_HIDDEN,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        projection_dim=CLIP_HIDDEN,
        max_position_embeddings=77,
        hidden_act=act,
        bos_token_id=0,
        eos_token_id=2,  # the legacy value the real checkpoints carry: pooled output at argmax(input_ids)
        pad_token_id=pad_token_id,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def t5_encoder():
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=t5_vocab_size(),
        d_model=T5_HIDDEN,
        d_ff=37,
        d_kv=16,
        num_heads=4,
        num_layers=2,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
    )
    return T5EncoderModel(config).eval()


def safety_checker():
    """A tiny `StableDiffusionSafetyChecker` whose concept thresholds never fire on random weights."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig

    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 37, "num_attention_heads": 2, "num_hidden_layers": 1},
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 37,
            "num_attention_heads": 2,
            "num_hidden_layers": 1,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    return StableDiffusionSafetyChecker(config).eval()


def feature_extractor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(crop_size=32, size={"shortest_edge": 32})


def vae(latent_channels: int = 4, scaling_factor: float = 0.18215, shift_factor=None, quant_conv=True, **extra):
    """An `AutoencoderKL` with the real four encoder and decoder blocks (8x down-sampling)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=latent_channels,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=32,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        use_quant_conv=quant_conv,
        use_post_quant_conv=quant_conv,
        **extra,
    ).eval()


def tiny_autoencoder(latent_channels: int = 4, scaling_factor: float = 1.0, shift_factor: float = 0.0):
    """An `AutoencoderTiny` (TAESD) with the real block counts and narrow channels."""
    from diffusers import AutoencoderTiny

    return AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        latent_channels=latent_channels,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
    ).eval()


def unet_sd(in_channels: int = 4, sample_size: int = 64, time_cond_proj_dim: int | None = None):
    """SD 1.x/2.x U-Net: three cross-attention down blocks and a plain one, as in the real config."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        layers_per_block=1,
        cross_attention_dim=CLIP_HIDDEN,
        attention_head_dim=2,
        norm_num_groups=4,
        time_cond_proj_dim=time_cond_proj_dim,
    ).eval()


def trained_norm_biases(unet, seed: int = 0) -> None:
    """Give the transformer blocks' first norm biases the spread of trained SD 2.x v-prediction U-Nets (std above
    0.09; a fresh LayerNorm's are zero), which is how ComfyUI tells such a file from an epsilon one
    (https://github.com/comfyanonymous/ComfyUI/blob/master/comfy/supported_models.py, SD20.model_type)."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in unet.named_parameters():
        if name.endswith("transformer_blocks.0.norm1.bias"):
            p.data = 0.2 * torch.randn(p.shape, generator=gen)


def unet_sdxl(in_channels: int = 4, refiner: bool = False, sample_size: int = 128):
    """SDXL U-Net: text_time conditioning from the pooled second encoder and the size/crop ids."""
    from diffusers import UNet2DConditionModel

    if refiner:  # the refiner: four blocks, one text encoder, aesthetic score in the time ids
        blocks = ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
        up = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
        channels, cross, n_ids = (8, 16, 16, 16), CLIP_HIDDEN, 5
    else:
        blocks = ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
        up = ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
        channels, cross, n_ids = (8, 16, 16), 2 * CLIP_HIDDEN, 6
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=channels,
        down_block_types=blocks,
        up_block_types=up,
        layers_per_block=1,
        transformer_layers_per_block=(1,) * len(blocks),
        cross_attention_dim=cross,
        attention_head_dim=2,
        norm_num_groups=4,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=n_ids * 8 + CLIP_HIDDEN,
    ).eval()


def vae_x4():
    """The x4 upscaler's `AutoencoderKL`: three blocks (4x down-sampling), scaling factor 0.08333."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(8, 8, 16),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=32,
        scaling_factor=0.08333,
    ).eval()


def unet_x4_upscaler():
    """The x4 upscaler's U-Net: 7 input channels (latents + the noised picture), the noise level as a class label."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=32,
        in_channels=7,
        out_channels=4,
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * 3,
        up_block_types=("CrossAttnUpBlock2D",) * 3 + ("UpBlock2D",),
        only_cross_attention=(True, True, True, False),
        layers_per_block=1,
        cross_attention_dim=CLIP_HIDDEN,
        attention_head_dim=2,
        norm_num_groups=4,
        use_linear_projection=True,
        num_class_embeds=1000,
    ).eval()


def unet_latent_upscaler():
    """The x2 latent upscaler's U-Net: k-diffusion blocks, 8 channels in (noisy + image latents), 5 out."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        act_fn="gelu",
        attention_head_dim=8,
        norm_num_groups=None,
        block_out_channels=(32, 32, 64, 64),  # k-diffusion blocks norm in groups of 32 channels
        time_cond_proj_dim=128 + CLIP_HIDDEN,  # the noise-level embedding, then the pooled prompt
        conv_in_kernel=1,
        conv_out_kernel=1,
        cross_attention_dim=CLIP_HIDDEN,
        down_block_types=("KDownBlock2D",) + ("KCrossAttnDownBlock2D",) * 3,
        up_block_types=("KCrossAttnUpBlock2D",) * 3 + ("KUpBlock2D",),
        in_channels=8,
        out_channels=5,
        mid_block_type=None,
        only_cross_attention=False,
        resnet_time_scale_shift="scale_shift",
        time_embedding_type="fourier",
        timestep_post_act="gelu",
    ).eval()


def sd3_transformer(qk_norm: str | None = None, dual_attention_layers: tuple = ()):
    from diffusers import SD3Transformer2DModel

    return SD3Transformer2DModel(
        sample_size=128,
        patch_size=2,
        in_channels=16,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=T5_HIDDEN,
        caption_projection_dim=32,
        pooled_projection_dim=2 * CLIP_HIDDEN,
        out_channels=16,
        pos_embed_max_size=96,
        qk_norm=qk_norm,
        dual_attention_layers=dual_attention_layers,
    ).eval()


def flux_transformer(guidance_embeds: bool):
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=T5_HIDDEN,
        pooled_projection_dim=CLIP_HIDDEN,
        guidance_embeds=guidance_embeds,
        axes_dims_rope=(4, 6, 6),
    ).eval()


def pixart_transformer(sigma: bool):
    from diffusers import PixArtTransformer2DModel

    return PixArtTransformer2DModel(
        num_attention_heads=3,  # the size embeddings split the width in three, as 1152 = 16 x 72 does
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        cross_attention_dim=24,
        sample_size=128,
        patch_size=2,
        caption_channels=T5_HIDDEN,
        use_additional_conditions=not sigma,
        interpolation_scale=2 if sigma else None,
    ).eval()


def clip_model(act: str = "quick_gelu", image_size: int = 32):
    """A tiny dual-encoder `CLIPModel` (CLIP score, CLIP-I, PickScore) with the real 77-token text limit."""
    from transformers import CLIPConfig, CLIPModel

    vocab, _ = clip_vocab_and_merges()
    layers = {"intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2, "hidden_act": act}
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": CLIP_HIDDEN,
            "max_position_embeddings": 77,
            "bos_token_id": 0,
            "eos_token_id": 2,  # as the real configs: pooled at argmax(input_ids), the end-of-text token
            "pad_token_id": 1,
            **layers,
        },
        vision_config={"hidden_size": CLIP_HIDDEN, "image_size": image_size, "patch_size": 8, **layers},
        projection_dim=CLIP_HIDDEN,
    )
    return CLIPModel(config).eval()


def dinov2():
    """A tiny `Dinov2Model` (ViT with a CLS token and register-free patches, as facebook/dinov2-base)."""
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(
        hidden_size=CLIP_HIDDEN, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
    )
    return Dinov2Model(config).eval()


def fid_inception():
    """The FID Inception-v3 at full size (its loader takes only the real shapes), variance-preserving random init."""
    model = FIDInceptionV3()
    for m in model.modules():  # He init keeps activations O(1) through the 94 layers (the default fades to ~1e-8)
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return model.eval()


def depth_anything():
    """A Depth Anything estimator: a 4-layer DINOv2 backbone, its reassemble neck and the depth head."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=56,
        patch_size=14,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=16,
        neck_hidden_sizes=[8, 8, 16, 16],
        fusion_hidden_size=16,
        head_hidden_size=8,
        patch_size=14,
    )
    return DepthAnythingForDepthEstimation(config).eval()


def depth_processor():
    """The DPT image processor Depth Anything ships, at 56 px instead of 518 (multiples of the 14 px patch)."""
    from transformers import DPTImageProcessor

    return DPTImageProcessor(
        size={"height": 56, "width": 56},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=3,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        do_pad=False,
    )


def image_encoder(projection_dim: int = CLIP_HIDDEN):
    """The CLIP image encoder of an IP-Adapter (`CLIPVisionModelWithProjection`), at the feature extractor's 32 px."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(
        hidden_size=CLIP_HIDDEN,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        image_size=32,
        patch_size=8,
        projection_dim=projection_dim,
        hidden_act="gelu",
    )
    return CLIPVisionModelWithProjection(config).eval()


def ip_adapter_weights(unet, image_embed_dim: int, tokens: int = 4) -> dict:
    """An IP-Adapter file's tensors for `unet`, in the original repo's key layout (what `load_ip_adapter` reads).

    `image_proj.*`: the image embedding to `tokens` extra context tokens; `ip_adapter.{i}.to_k_ip/to_v_ip`: the key
    and value projections of those tokens for each cross-attention layer, numbered as the original code counts
    attention layers (self-attention even, cross-attention odd).
    """
    cross = unet.config.cross_attention_dim
    out = {
        "image_proj.proj.weight": 0.2 * torch.randn(cross * tokens, image_embed_dim),
        "image_proj.proj.bias": 0.1 * torch.randn(cross * tokens),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    channels, key_id = unet.config.block_out_channels, 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(channels))[int(name[len("up_blocks.")])]
        else:
            hidden = channels[int(name[len("down_blocks.")])]
        for proj in ("to_k_ip", "to_v_ip"):
            out[f"ip_adapter.{key_id}.{proj}.weight"] = 0.5 * torch.randn(hidden, cross)
        key_id += 2
    return out


def seeded(fn, *args, seed: int = 0, **kwargs):
    """Build a component with a fixed seed, so the offline hub is the same on every machine."""
    torch.manual_seed(seed)
    return fn(*args, **kwargs)


def esrgan_weights(scale: int = 4, blocks: int = 2, filters: int = 16, real_esrgan: bool = False) -> dict:
    """An ESRGAN RRDBNet's state dict with `blocks` blocks (real models have 23 or 6): the old ESRGAN keys that
    4x-UltraSharp and NMKD's files use (`model.0`, `model.1.sub.N.RDBm.convk.0`), or with `real_esrgan` the keys
    of xinntao's Real-ESRGAN files (`conv_first`, `body.N.rdbm.convk`, under `params_ema`)."""
    from spandrel.architectures.ESRGAN import ESRGAN  # the RRDBNet that spandrel loads

    net = ESRGAN(in_nc=3, out_nc=3, num_filters=filters, num_blocks=blocks, scale=scale)
    old = {k: v.detach().clone() for k, v in net.state_dict().items()}
    if not real_esrgan:
        return old
    ups = [int(k.split(".")[1]) for k in old if k.endswith(".weight") and k.split(".")[1].isdigit()]
    last = max(ups)
    new = {}
    for k, v in old.items():
        parts = k.split(".")
        i = int(parts[1])
        if i == 0:
            new[f"conv_first.{parts[-1]}"] = v
        elif i == 1 and parts[3] == str(blocks):
            new[f"conv_body.{parts[-1]}"] = v
        elif i == 1:  # model.1.sub.N.RDBm.convk.0.weight
            new[f"body.{parts[3]}.rdb{parts[4][3:]}.{parts[5]}.{parts[-1]}"] = v
        elif i == last:
            new[f"conv_last.{parts[-1]}"] = v
        elif i == last - 2:
            new[f"conv_hr.{parts[-1]}"] = v
        else:  # the upsampling convolutions, model.3, model.6, ...
            new[f"conv_up{i // 3}.{parts[-1]}"] = v
    return {"params_ema": new}


# controlnet_aux's networks by the file name they are read from (their architectures are fixed: no smaller ones).
# Openpose (510 MB), lineart_anime (218 MB) and NormalBae (291 MB) are too large to stand in here.
_ANNOTATORS = {
    "ControlNetHED.pth": ("controlnet_aux.hed", "ControlNetHED_Apache2", (), ""),
    "table5_pidinet.pth": ("controlnet_aux.pidi.model", "pidinet", (), "module."),
    "mlsd_large_512_fp32.pth": ("controlnet_aux.mlsd.models.mbv2_mlsd_large", "MobileV2_MLSD_Large", (), ""),
    "sk_model.pth": ("controlnet_aux.lineart", "Generator", (3, 1, 3), ""),
    "sk_model2.pth": ("controlnet_aux.lineart", "Generator", (3, 1, 3), ""),
}


def annotator_weights(filename: str) -> dict | None:
    """A random controlnet_aux network's state dict as its file in lllyasviel/Annotators holds it (PiDiNet's under
    `state_dict` with `module.` keys), in half precision to keep the hub small; None where none stands in."""
    import importlib
    import warnings

    if filename not in _ANNOTATORS:
        return None
    module, name, args, prefix = _ANNOTATORS[filename]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = getattr(importlib.import_module(module), name)(*args)
    state = {prefix + k: v.detach().half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    return {"state_dict": state} if prefix else state


# --- the 2026 families: Qwen3 text encoders (Z-Image, FLUX.2 [klein]) and their transformers -------------

QWEN_HIDDEN = 16
# A Qwen3-style chat template, cut to what the pipelines use: user turns, the generation prompt, and the
# `enable_thinking` switch (False writes the empty think block, as Qwen3's own template does).
_QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)
_QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]


@cache
def _byte_level_bpe(vocab_size: int, specials: tuple[str, ...] = ()) -> str:
    """A byte-level BPE tokenizer as Qwen's, trained on the corpus, as tokenizer.json text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    return tok.to_str()


def _qwen_tokenizer_json() -> str:
    """Z-Image's and FLUX.2 [klein]'s Qwen3 tokenizer, with its chat specials."""
    return _byte_level_bpe(400, tuple(_QWEN_SPECIALS))


def qwen_vocab_size() -> int:
    return len(json.loads(_qwen_tokenizer_json())["model"]["vocab"])


def write_qwen_tokenizer(folder: Path, model_max_length: int = 131072) -> None:
    """A byte-level BPE tokenizer saved as Qwen2TokenizerFast (tokenizer.json, vocab, merges, chat template)."""
    from tokenizers import Tokenizer
    from transformers import Qwen2TokenizerFast

    tok = Qwen2TokenizerFast(
        tokenizer_object=Tokenizer.from_str(_qwen_tokenizer_json()),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        model_max_length=model_max_length,
    )
    tok.chat_template = _QWEN_CHAT_TEMPLATE
    tok.save_pretrained(str(folder))


def qwen3_text(layers: int = 2, causal_lm: bool = False):
    """A Qwen3 text encoder: `Qwen3Model` as Z-Image ships it, `Qwen3ForCausalLM` as FLUX.2 [klein] does."""
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

    config = Qwen3Config(
        vocab_size=qwen_vocab_size(),
        hidden_size=QWEN_HIDDEN,
        intermediate_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        rope_theta=1000000.0,
    )
    return (Qwen3ForCausalLM if causal_lm else Qwen3Model)(config).eval()


def zimage_transformer():
    from diffusers import ZImageTransformer2DModel

    return ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        cap_feat_dim=QWEN_HIDDEN,
        axes_dims=[4, 6, 6],
        axes_lens=[256, 64, 64],
    ).eval()


def flux2_transformer():
    from diffusers import Flux2Transformer2DModel

    return Flux2Transformer2DModel(
        patch_size=1,
        in_channels=128,
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=3 * QWEN_HIDDEN,
        timestep_guidance_channels=32,
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=False,
    ).eval()


def flux2_vae():
    from diffusers import AutoencoderKLFlux2

    return AutoencoderKLFlux2(
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=32,
        norm_num_groups=4,
        sample_size=64,
        use_quant_conv=True,
        use_post_quant_conv=True,
    ).eval()


def chroma_transformer():
    from diffusers import ChromaTransformer2DModel

    return ChromaTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=T5_HIDDEN,
        axes_dims_rope=(4, 6, 6),
        approximator_num_channels=8,
        approximator_hidden_dim=32,
        approximator_layers=1,
    ).eval()


# --- Qwen-Image: a Qwen2.5-VL text encoder (its vision tower reads the editing models' input image) ---------------

QWEN_VL_HIDDEN = 32
# The chat and vision tokens the Qwen-Image pipelines' prompt templates use, after Qwen2's <|endoftext|>.
QWEN_VL_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")  # fmt: skip


@cache
def _qwen_vl_bpe() -> tuple[dict, list[tuple[str, str]]]:
    """The Qwen2.5-VL tokenizer's vocabulary and merges (its specials are added by `qwen_vl_tokenizer`)."""
    model = json.loads(_byte_level_bpe(500))["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def qwen_vl_tokenizer():
    """A `Qwen2Tokenizer` (byte-level BPE) with the chat and vision special tokens."""
    from transformers import Qwen2Tokenizer

    vocab, merges = _qwen_vl_bpe()
    tok = Qwen2Tokenizer(vocab=dict(vocab), merges=list(merges))
    tok.add_special_tokens({"additional_special_tokens": list(QWEN_VL_SPECIALS[1:])})
    return tok


def write_qwen_vl_tokenizer(folder: Path) -> None:
    """tokenizer.json and tokenizer_config.json, plus vocab.json and merges.txt as the real repos carry them."""
    vocab, merges = _qwen_vl_bpe()
    qwen_vl_tokenizer().save_pretrained(str(folder))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")


def qwen_processor():
    """A `Qwen2VLProcessor`: the tokenizer and an image processor that caps pictures at 112x112 (4x4 merged patches)."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    images = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    videos = Qwen2VLVideoProcessor()
    return Qwen2VLProcessor(image_processor=images, tokenizer=qwen_vl_tokenizer(), video_processor=videos)


def qwen_vl():
    """A 2-layer `Qwen2_5_VLForConditionalGeneration` (text and a 2-block vision tower) with the tokenizer's ids."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tok = qwen_vl_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_VL_SPECIALS}
    special = {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
               "pad_token_id": ids["<|endoftext|>"]}  # fmt: skip
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": QWEN_VL_HIDDEN, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 2,
            "num_key_value_heads": 2, "vocab_size": len(tok), "max_position_embeddings": 2048,
            "rope_scaling": {"mrope_section": [2, 2, 4], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0, **special,
        },
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                       "out_hidden_size": QWEN_VL_HIDDEN, "fullatt_block_indexes": [1], "window_size": 56},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"], **special,
    )  # fmt: skip
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def qwen_vae():
    """An `AutoencoderKLQwenImage` with the real block pattern (3 temporal downsamplings, 16 latent channels)."""
    from diffusers import AutoencoderKLQwenImage

    return AutoencoderKLQwenImage(
        base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=[0.0] * 16, latents_std=[1.0] * 16,
    ).eval()  # fmt: skip


def qwen_transformer():
    from diffusers import QwenImageTransformer2DModel

    return QwenImageTransformer2DModel(
        patch_size=2, in_channels=64, out_channels=16, num_layers=2, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=QWEN_VL_HIDDEN, guidance_embeds=False, axes_dims_rope=(4, 6, 6),
    ).eval()  # fmt: skip
