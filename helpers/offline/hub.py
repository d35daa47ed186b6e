"""An offline Hugging Face hub of tiny random-weight models, one for every registry entry.

`build(DIR)` writes, in the Hugging Face cache layout (`models--OWNER--NAME/{blobs,snapshots,refs,trees}`),
a tiny pipeline at each entry's real repo id and revision, with the real pipeline and component classes,
subfolders and file names (variant files only where the entry says the real repo has them). With
`HF_HUB_CACHE=DIR HF_HUB_OFFLINE=1` the ordinary loading code then works with no network: the images are noise.

    python -m helpers offline-hub ~/.cache/sdzoo-offline-hub
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import diffusers
import torch

from ..base.families import FAMILIES
from ..zoo.checkpoints import config_entry
from ..zoo.registry import (
    SHA_RE,
    AdapterSpec,
    ControlNetSpec,
    EvaluatorSpec,
    IpAdapterSpec,
    ModelSpec,
    NetworkUpscalerSpec,
    PreprocessorSpec,
    Registry,
    T2IAdapterSpec,
    UpscalerSpec,
    VaeSpec,
)
from ..zoo.registry import default as default_registry
from . import checkpoints, tiny

_LFS_SUFFIXES = (".safetensors", ".bin", ".model", ".pt", ".pth", ".ckpt")
_TRANSFORMERS = {
    "CLIPTextModel", "CLIPTextModelWithProjection", "T5EncoderModel", "CLIPImageProcessor", "Qwen3Model",
    "Qwen3ForCausalLM", "Qwen2_5_VLForConditionalGeneration", "Qwen2VLProcessor",
}  # fmt: skip
# Qwen-Image's scheduler: flow matching with a resolution-dependent ("dynamic") exponential shift that ends at 0.02,
# as the Qwen-Image trainers copy the repo's scheduler_config.json (models.yaml's qwen-image sources).
QWEN_SCHEDULER = {
    "base_image_seq_len": 256, "base_shift": 0.5, "invert_sigmas": False, "max_image_seq_len": 8192, "max_shift": 0.9,
    "num_train_timesteps": 1000, "shift": 1.0, "shift_terminal": 0.02, "stochastic_sampling": False,
    "time_shift_type": "exponential", "use_beta_sigmas": False, "use_dynamic_shifting": True,
    "use_exponential_sigmas": False, "use_karras_sigmas": False,
}  # fmt: skip
_TOKENIZERS = {"CLIPTokenizer", "T5Tokenizer", "T5TokenizerFast"}
# Written last, at the cache root: a finished build. CACHEDIR.TAG is the cache-directory tag that backup tools and
# huggingface_hub's cache scanner both skip (https://bford.info/cachedir/).
BUILD_MARK = "CACHEDIR.TAG"


# --- what each family's components are ------------------------------------------------------------


def _scheduler(spec: ModelSpec):
    """The scheduler class and config the real repo ships, by family and prediction type."""
    common = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}
    fam, pred = spec.family, spec.prediction
    if fam == "qwenimage":
        return diffusers.FlowMatchEulerDiscreteScheduler(**QWEN_SCHEDULER)
    if pred == "flow":
        if fam == "zimage":  # Tongyi-MAI/Z-Image-Turbo scheduler/scheduler_config.json: a fixed shift of 3
            return diffusers.FlowMatchEulerDiscreteScheduler(
                num_train_timesteps=1000, use_dynamic_shifting=False, shift=3.0
            )
        if fam in ("flux2", "chroma"):  # both pipelines pass a resolution-dependent mu; Chroma's config as SD.Next's
            return diffusers.FlowMatchEulerDiscreteScheduler(
                shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, time_shift_type="exponential"
            )
        if fam == "flux" and spec.defaults.guidance_scale > 0:  # FLUX.1-dev: resolution-dependent shift
            return diffusers.FlowMatchEulerDiscreteScheduler(
                shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15
            )
        return diffusers.FlowMatchEulerDiscreteScheduler(shift=1.0 if fam == "flux" else 3.0)
    if pred == "edm":
        return diffusers.EDMDPMSolverMultistepScheduler(sigma_data=0.5, sigma_max=80.0, sigma_min=0.002)
    if spec.pipeline == "LatentConsistencyModelPipeline":
        return diffusers.LCMScheduler(**common, set_alpha_to_one=True, timestep_spacing="leading")
    if fam == "pixart":
        return diffusers.DPMSolverMultistepScheduler(prediction_type="epsilon")
    if spec.defaults.guidance_scale == 0:  # turbo models ship an ancestral Euler with trailing spacing
        return diffusers.EulerAncestralDiscreteScheduler(**common, timestep_spacing="trailing", prediction_type=pred)
    if fam == "sdxl":
        return diffusers.EulerDiscreteScheduler(**common, steps_offset=1, timestep_spacing="leading")
    if pred == "v_prediction":
        return diffusers.DDIMScheduler(**common, prediction_type=pred, steps_offset=1, clip_sample=False)
    return diffusers.PNDMScheduler(**common, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)


def _vae_for(family: str, spec: ModelSpec | None = None):
    if family == "flux2":
        return tiny.seeded(tiny.flux2_vae, seed=1)
    if family == "qwenimage":
        return tiny.seeded(tiny.qwen_vae, seed=1)
    if family in ("sd3", "flux", "zimage", "chroma"):  # Z-Image and Chroma ship FLUX.1's VAE config
        scale, shift = (1.5305, 0.0609) if family == "sd3" else (0.3611, 0.1159)
        return tiny.seeded(tiny.vae, 16, scale, shift, quant_conv=False, seed=1)
    if family == "sdxl":
        extra = {}
        if spec is not None and spec.prediction == "edm":  # Playground v2.5 normalises latents per channel
            extra = {"latents_mean": [-1.6574, 1.886, -1.383, 2.5155], "latents_std": [8.4927, 5.9022, 6.5498, 5.2299]}
        return tiny.seeded(tiny.vae, 4, 0.13025, force_upcast=True, seed=1, **extra)
    return tiny.seeded(tiny.vae, 4, 0.18215, seed=1)


def _denoiser(spec: ModelSpec):
    """The family's denoiser, seeded by the repo id so that every model draws a different picture."""
    fam, inpaint = spec.family, spec.pipeline.endswith("InpaintPipeline")
    in_ch, seed = (9 if inpaint else 4), zlib.crc32(spec.repo.encode())
    if fam in ("sd1", "sd2"):
        lcm = spec.pipeline == "LatentConsistencyModelPipeline"  # guidance is an input of LCM U-Nets
        unet = tiny.seeded(tiny.unet_sd, in_ch, spec.resolution // 8, 32 if lcm else None, seed=seed)
        if fam == "sd2" and spec.prediction == "v_prediction":
            tiny.trained_norm_biases(unet, seed=seed)
        return "unet", unet
    if fam == "sdxl":
        refiner = "text_encoder" in spec.layout.missing
        return "unet", tiny.seeded(tiny.unet_sdxl, in_ch, refiner, spec.resolution // 8, seed=seed)
    if fam == "sd3":
        return "transformer", tiny.seeded(tiny.sd3_transformer, seed=seed)
    if fam == "flux":
        return "transformer", tiny.seeded(tiny.flux_transformer, spec.defaults.guidance_scale > 0, seed=seed)
    if fam == "zimage":
        return "transformer", tiny.seeded(tiny.zimage_transformer, seed=seed)
    if fam == "flux2":
        return "transformer", tiny.seeded(tiny.flux2_transformer, seed=seed)
    if fam == "chroma":
        return "transformer", tiny.seeded(tiny.chroma_transformer, seed=seed)
    if fam == "qwenimage":
        return "transformer", tiny.seeded(tiny.qwen_transformer, seed=seed)
    return "transformer", tiny.seeded(tiny.pixart_transformer, spec.pipeline == "PixArtSigmaPipeline", seed=seed)


def _components(spec: ModelSpec) -> dict:
    """Component name -> object (model, scheduler, or ('tokenizer', kind)) for the entry's pipeline."""
    fam = spec.family
    name, denoiser = _denoiser(spec)
    comps = {name: denoiser, "vae": _vae_for(fam, spec), "scheduler": _scheduler(spec)}
    if fam in ("sd1", "sd2"):
        act = "gelu" if fam == "sd2" else "quick_gelu"
        comps["text_encoder"] = tiny.seeded(tiny.clip_text, act=act, seed=3)
        comps["tokenizer"] = ("clip", "!" if fam == "sd2" else "<|endoftext|>")
        if spec.layout.safety_checker:
            comps["safety_checker"] = tiny.seeded(tiny.safety_checker, seed=4)
            comps["feature_extractor"] = tiny.feature_extractor()
    elif fam == "sdxl":
        comps["text_encoder"] = tiny.seeded(tiny.clip_text, seed=3)
        comps["tokenizer"] = ("clip", "<|endoftext|>")
        comps["text_encoder_2"] = tiny.seeded(tiny.clip_text, act="gelu", projection=True, seed=5)
        comps["tokenizer_2"] = ("clip", "!")
    elif fam == "sd3":
        comps["text_encoder"] = tiny.seeded(tiny.clip_text, projection=True, seed=3)
        comps["tokenizer"] = ("clip", "<|endoftext|>")
        comps["text_encoder_2"] = tiny.seeded(tiny.clip_text, act="gelu", projection=True, seed=5)
        comps["tokenizer_2"] = ("clip", "!")
        comps["text_encoder_3"] = tiny.seeded(tiny.t5_encoder, seed=6)
        comps["tokenizer_3"] = ("t5", 256)
    elif fam == "flux":
        comps["text_encoder"] = tiny.seeded(tiny.clip_text, seed=3)
        comps["tokenizer"] = ("clip", "<|endoftext|>")
        comps["text_encoder_2"] = tiny.seeded(tiny.t5_encoder, seed=6)
        comps["tokenizer_2"] = ("t5", 512)
    elif fam == "zimage":  # Qwen3Model (the pipeline reads its second-to-last hidden state); 4 layers: 3 shards
        comps["text_encoder"] = tiny.seeded(tiny.qwen3_text, layers=4, seed=6)
        comps["tokenizer"] = ("qwen", "Qwen2Tokenizer")
    elif fam == "flux2":  # Qwen3ForCausalLM; the pipeline stacks hidden states 9, 18 and 27, so 28 layers
        comps["text_encoder"] = tiny.seeded(tiny.qwen3_text, layers=28, causal_lm=True, seed=6)
        comps["tokenizer"] = ("qwen", "Qwen2TokenizerFast")
    elif fam == "qwenimage":
        comps["text_encoder"] = tiny.seeded(tiny.qwen_vl, seed=6)
        comps["tokenizer"] = ("qwen-vl", None)
        comps["processor"] = tiny.qwen_processor()  # the editing pipelines show the input image to the encoder
    else:  # pixart and chroma: one T5 encoder
        comps["text_encoder"] = tiny.seeded(tiny.t5_encoder, seed=6)
        comps["tokenizer"] = ("t5", 512)
    for missing in spec.layout.missing:
        comps.pop(missing, None)
    return comps


# --- writing a repo's files --------------------------------------------------------------------


def _library(obj) -> list:
    cls = type(obj).__name__
    if cls == "StableDiffusionSafetyChecker":
        return ["stable_diffusion", cls]
    if cls.startswith("CLIPImageProcessor"):
        return ["transformers", "CLIPImageProcessor"]
    return ["transformers" if cls in _TRANSFORMERS else "diffusers", cls]


def _save_model(model, folder: Path, spec_variant, safetensors: bool, shards: int, with_variant: bool):
    """Save full-precision weights, and the variant copy where the real repo has one."""
    is_diffusers = isinstance(model, diffusers.ModelMixin)
    kw = {"safe_serialization": safetensors}
    if shards > 1:
        size = _shard_size_for(model, shards)
        kw["max_shard_size"] = size if is_diffusers else f"{size / 1e6:.6f}MB"
    model.save_pretrained(str(folder), **kw)
    if with_variant and spec_variant:
        half = torch.bfloat16 if spec_variant == "bf16" else torch.float16
        model.to(half).save_pretrained(str(folder), variant=spec_variant, **kw)
        model.to(torch.float32)
    if not safetensors and not is_diffusers:
        _pickle_transformers_weights(folder)


def _pickle_transformers_weights(folder: Path) -> None:
    """transformers 5 saves only safetensors; old repos hold `pytorch_model[.variant].bin`, so convert."""
    from safetensors.torch import load_file

    for path in folder.glob("model*.safetensors"):
        name = path.name.replace("model", "pytorch_model", 1).replace(".safetensors", ".bin")
        torch.save(load_file(str(path)), folder / name)
        path.unlink()


def _shard_size_for(model, shards: int) -> int:
    """The smallest shard size that splits the weights into exactly `shards` files, packed in order."""
    sizes = [t.numel() * t.element_size() for t in model.state_dict().values()]
    limit = max(max(sizes), sum(sizes) // shards)
    while True:
        count, current = 1, 0
        for s in sizes:
            if current + s > limit and current > 0:
                count, current = count + 1, 0
            current += s
        if count <= shards:
            return limit
        limit += max(1, sum(sizes) // 200)


def write_pipeline_folder(spec: ModelSpec, folder: Path) -> None:
    """Write a tiny pipeline in the entry's real repo layout into `folder`."""
    comps = _components(spec)
    pipe_cls = spec.pipeline_class
    expected, _ = diffusers.DiffusionPipeline._get_signature_keys(pipe_cls)
    index = {"_class_name": spec.pipeline, "_diffusers_version": diffusers.__version__}
    variant_components = spec.layout.variant_components
    for name in sorted(expected):
        obj = comps.get(name)
        if obj is None:
            index[name] = [None, None]
            continue
        sub = folder / name
        if isinstance(obj, tuple):  # tokenizer recipe
            kind, arg = obj
            if kind == "clip":
                tiny.write_clip_tokenizer(sub, pad_token=arg)
                index[name] = ["transformers", "CLIPTokenizer"]
            elif kind == "qwen":
                tiny.write_qwen_tokenizer(sub)
                index[name] = ["transformers", arg]
            elif kind == "qwen-vl":
                tiny.write_qwen_vl_tokenizer(sub)
                index[name] = ["transformers", "Qwen2Tokenizer"]
            else:
                tiny.write_t5_tokenizer(sub, model_max_length=arg)
                index[name] = ["transformers", "T5TokenizerFast" if spec.family == "flux" else "T5Tokenizer"]
            continue
        index[name] = _library(obj)
        if isinstance(obj, (torch.nn.Module,)):
            with_variant = variant_components is None or name in variant_components
            safe = spec.weights == "safetensors"
            _save_model(obj, sub, spec.variant, safe, spec.layout.sharded.get(name, 1), with_variant)
        else:  # scheduler or image processor
            obj.save_pretrained(str(sub))
    if spec.pipeline == "Flux2KleinPipeline":  # the [klein] model_index.json: step- and guidance-distilled
        index["is_distilled"] = True
    if "safety_checker" in expected:
        index["requires_safety_checker"] = spec.layout.safety_checker
    if spec.family == "sdxl" and "text_encoder" in spec.layout.missing:
        index["requires_aesthetics_score"] = True
        index["force_zeros_for_empty_prompt"] = False
    (folder / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True))


def write_single_file_folder(spec: ModelSpec, base: ModelSpec, folder: Path) -> None:
    """A single-file entry's repo: its one checkpoint, in the original key layout, made of the tiny stand-in of the
    registry model it takes its config from (`base`) with a denoiser of its own (seeded by its repo)."""
    from safetensors.torch import save_file

    comps = _components(base)
    name, comps[name] = _denoiser(spec)
    path = folder / spec.single_file
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(checkpoints.original_state_dict(comps, base), str(path))


def write_vae_folder(spec: VaeSpec, folder: Path) -> None:
    fam = spec.families[0]
    if spec.cls_name == "AutoencoderTiny":
        ch = 16 if fam in ("sd3", "flux") else 4
        model = tiny.seeded(tiny.tiny_autoencoder, ch, seed=7)
    else:
        model = _vae_for(fam)
        if spec.fp16_fix_for:  # as madebyollin/sdxl-vae-fp16-fix's config: safe in float16, so no upcasting
            model.register_to_config(force_upcast=False)
        torch.manual_seed(8)  # a different VAE from the pipeline's own, so swapping it shows
        for p in model.parameters():
            p.data.add_(0.01 * torch.randn_like(p))
    target = folder / spec.subfolder if spec.subfolder else folder
    _save_model(model, target, spec.variant, spec.weights == "safetensors", 1, True)


def write_adapter_folder(spec: AdapterSpec, base: ModelSpec, folder: Path) -> None:
    """A LoRA for the family's tiny denoiser (non-zero, so loading it changes the image), or an embedding."""
    folder.mkdir(parents=True, exist_ok=True)
    if spec.kind == "textual_inversion":
        from safetensors.torch import save_file

        torch.manual_seed(9)
        token = spec.token or f"<{spec.key}>"
        save_file({token: torch.randn(1, tiny.CLIP_HIDDEN)}, str(folder / spec.weight_name))
        return
    from peft import LoraConfig, get_peft_model_state_dict

    _, denoiser = _denoiser(base)
    targets = ["to_q", "to_k", "to_v", "to_out.0"]
    denoiser.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False))
    torch.manual_seed(10)
    for n, p in denoiser.named_parameters():
        if "lora_" in n:
            p.data = 0.1 * torch.randn_like(p)
    layers = get_peft_model_state_dict(denoiser)
    key = "unet_lora_layers" if FAMILIES[base.family].denoiser == "unet" else "transformer_lora_layers"
    base.pipeline_class.save_lora_weights(str(folder), weight_name=spec.weight_name, **{key: layers})


_CLIP_PIXELS = {"image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}
_IMAGENET_PIXELS = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}


def _write_processor(folder: Path, kind: str, pad_token: str = "<|endoftext|>") -> None:
    """The tokenizer and `preprocessor_config.json` of a CLIP repo, or the image processor of DINOv2's."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "dinov2":
        config = {"image_processor_type": "BitImageProcessor", "size": {"shortest_edge": 32}, **_IMAGENET_PIXELS}
        config |= {"crop_size": {"height": 32, "width": 32}, "do_center_crop": True, "do_convert_rgb": True}
    else:
        tiny.write_clip_tokenizer(folder, pad_token=pad_token)
        config = {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 32}, **_CLIP_PIXELS}
        config |= {"crop_size": {"height": 32, "width": 32}, "do_center_crop": True, "do_convert_rgb": True}
    config |= {"do_normalize": True, "do_rescale": True, "do_resize": True, "resample": 3}
    (folder / "preprocessor_config.json").write_text(json.dumps(config, indent=2))


def write_evaluator_folder(spec: EvaluatorSpec, folder: Path) -> None:
    """A tiny judge at the evaluator's repo: CLIP or DINOv2 with its processor; PickScore's model alone."""
    seed = zlib.crc32(spec.repo.encode())
    if spec.kind == "dinov2":
        model = tiny.seeded(tiny.dinov2, seed=seed)
    else:  # PickScore is a CLIP-H, whose activation is gelu (OpenAI's CLIPs use quick_gelu)
        model = tiny.seeded(tiny.clip_model, "gelu" if spec.kind == "preference" else "quick_gelu", seed=seed)
    model.save_pretrained(str(folder))
    if spec.kind in ("clip", "dinov2"):
        _write_processor(folder, spec.kind)


def torch_home(cache: Path) -> Path:
    """Beside the hub cache (whose scanner takes every folder in it for a repo): the TORCH_HOME of the stand-ins."""
    return cache.parent / f"{cache.name}-torch"


def write_inception_file(spec: EvaluatorSpec, cache: Path) -> Path:
    """The FID Inception stand-in (random, real shapes, float16) where torch.hub looks with TORCH_HOME=torch_home."""
    path = torch_home(cache) / "hub" / "checkpoints" / spec.file
    path.parent.mkdir(parents=True, exist_ok=True)
    model = tiny.seeded(tiny.fid_inception, seed=11)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, path)
    return path


def _build_evaluators(reg: Registry, cache: Path, tmp: str, done: set) -> None:
    for spec in reg.evaluators.values():
        if spec.kind == "inception":
            write_inception_file(spec, cache)
            continue
        _once(done, spec, cache, tmp, write_evaluator_folder)
        if spec.processor and (spec.processor, spec.processor_revision) not in done:
            done.add((spec.processor, spec.processor_revision))
            folder = Path(tmp) / spec.processor.replace("/", "--")
            _write_processor(folder, "clip", pad_token="!")  # open_clip pads with token 0, "!"
            tiny.clip_model(act="gelu").config.save_pretrained(str(folder))  # its tokenizer loader reads config.json
            kind = "commit" if SHA_RE.match(spec.processor_revision) else "branch"
            commit_to_cache(cache, spec.processor, spec.processor_revision, kind, folder)


def write_controlnet_folder(spec: ControlNetSpec, base: ModelSpec, folder: Path) -> None:
    """A ControlNet made from the family's tiny denoiser, as diffusers' `from_unet` makes one to train."""
    _, denoiser = _denoiser(base)
    torch.manual_seed(zlib.crc32(spec.repo.encode()))
    if spec.cls_name == "FluxControlNetModel":
        model = diffusers.FluxControlNetModel.from_transformer(
            denoiser, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2
        )
    else:
        cls = getattr(diffusers, spec.cls_name)
        model = cls.from_unet(denoiser, conditioning_embedding_out_channels=(8, 8, 16, 16))
        if spec.cls_name == "ControlNetUnionModel":  # its control-type transformer works at the first block's width
            width = denoiser.config.block_out_channels[0]
            config = {k: v for k, v in model.config.items() if k != "_use_default_values"}  # else defaults win
            model = cls.from_config(
                config | {"num_trans_channel": width, "num_trans_head": 2, "num_proj_channel": width}
            )
    for name, p in model.named_parameters():  # the zero convolutions start at zero: make the control show
        if "zero" in name or "controlnet_" in name or "spatial_ch_projs" in name:
            p.data = 0.05 * torch.randn_like(p)
    target = folder / spec.subfolder if spec.subfolder else folder
    _save_model(model.eval(), target, spec.variant, spec.weights == "safetensors", 1, True)


def write_t2i_adapter_folder(spec: T2IAdapterSpec, base: ModelSpec, folder: Path) -> None:
    """A T2I-Adapter whose four feature maps fit the family's tiny U-Net (SD 1.5: 8x down, SDXL: 16x)."""
    _, unet = _denoiser(base)
    channels = list(unet.config.block_out_channels)
    channels += [channels[-1]] * (4 - len(channels))
    xl = spec.family == "sdxl"
    torch.manual_seed(zlib.crc32(spec.repo.encode()))
    model = diffusers.T2IAdapter(in_channels=spec.in_channels, channels=channels, num_res_blocks=1,
                                 downscale_factor=16 if xl else 8,
                                 adapter_type="full_adapter_xl" if xl else "full_adapter")  # fmt: skip
    _save_model(model.eval(), folder, spec.variant, spec.weights == "safetensors", 1, True)


def write_preprocessor_folder(spec: PreprocessorSpec, folder: Path) -> None:
    """A tiny depth estimator with its image processor, in the transformers layout (config, weights, processor)."""
    tiny.seeded(tiny.depth_anything, seed=11).save_pretrained(str(folder))
    tiny.depth_processor().save_pretrained(str(folder))


def write_upscaler_folder(spec: UpscalerSpec, folder: Path) -> None:
    """A tiny upscaler pipeline in the real repo's layout: the x4 one (two schedulers) or the x2 latent one."""
    common = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}
    seed = zlib.crc32(spec.repo.encode())
    if spec.pipeline == "StableDiffusionUpscalePipeline":
        comps = {
            "unet": tiny.seeded(tiny.unet_x4_upscaler, seed=seed),
            "vae": tiny.seeded(tiny.vae_x4, seed=1),
            "text_encoder": tiny.seeded(tiny.clip_text, act="gelu", seed=3),  # OpenCLIP-ViT/H, as SD 2
            "scheduler": diffusers.DDIMScheduler(**common, prediction_type="v_prediction", clip_sample=False,
                                                 set_alpha_to_one=False, steps_offset=1),
            "low_res_scheduler": diffusers.DDPMScheduler(beta_schedule="linear", num_train_timesteps=1000),
        }  # fmt: skip
        pad = "!"
    else:
        comps = {
            "unet": tiny.seeded(tiny.unet_latent_upscaler, seed=seed),
            "vae": _vae_for("sd1"),
            "text_encoder": tiny.seeded(tiny.clip_text, seed=3),  # CLIP ViT-L/14, as SD 1.x
            "scheduler": diffusers.EulerDiscreteScheduler(**common, prediction_type="sample", steps_offset=1),
        }
        pad = "<|endoftext|>"
    expected, _ = diffusers.DiffusionPipeline._get_signature_keys(spec.pipeline_class)
    index = {"_class_name": spec.pipeline, "_diffusers_version": diffusers.__version__}
    for name in sorted(expected):
        obj = comps.get(name)
        if name == "tokenizer":
            tiny.write_clip_tokenizer(folder / name, pad_token=pad)
            index[name] = ["transformers", "CLIPTokenizer"]
        elif obj is None:
            index[name] = [None, None]
        elif isinstance(obj, torch.nn.Module):
            index[name] = _library(obj)
            _save_model(obj, folder / name, spec.variant, spec.weights == "safetensors", 1, True)
        else:
            index[name] = _library(obj)
            obj.save_pretrained(str(folder / name))
    if spec.pipeline == "StableDiffusionUpscalePipeline":
        index["max_noise_level"] = 350
    (folder / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True))


def write_network_file(spec: NetworkUpscalerSpec, folder: Path) -> None:
    """A random ESRGAN of two blocks at the entry's file name and format: a safetensors file, or a pickle (.pth)
    holding the old ESRGAN keys, or Real-ESRGAN's keys for a file named RealESRGAN*."""
    if spec.architecture != "ESRGAN":
        raise NotImplementedError(f"no offline stand-in for a {spec.architecture} upscaler ({spec.key}) yet")
    torch.manual_seed(zlib.crc32(spec.file.encode()))
    weights = tiny.esrgan_weights(scale=spec.scale, real_esrgan=spec.file.startswith("RealESRGAN"))
    path = folder / spec.file
    path.parent.mkdir(parents=True, exist_ok=True)
    if spec.weights == "safetensors":
        from safetensors.torch import save_file

        save_file(weights, str(path))
    else:
        torch.save(weights, path)


def write_annotator_files(spec: PreprocessorSpec, folder: Path) -> None:
    """A controlnet_aux detector's files as random networks of the real architectures, pickled as the real ones
    are; the detectors too large to stand in (openpose, lineart_anime, NormalBae) get none."""
    for name in spec.files:
        torch.manual_seed(zlib.crc32(name.encode()))
        weights = tiny.annotator_weights(name)
        if weights is not None:
            torch.save(weights, folder / name)


def _build_file_repos(reg: Registry, cache: Path, tmp: str, done: set) -> None:
    """Repos of single files that several entries share (lllyasviel/Annotators): every entry's file in one snapshot."""
    repos: dict = {}
    for spec in reg.upscalers.values():
        if isinstance(spec, NetworkUpscalerSpec):
            repos.setdefault((spec.repo, spec.revision, spec.revision_kind), []).append((spec, write_network_file))
    for spec in reg.preprocessors.values():
        if spec.files:
            repos.setdefault((spec.repo, spec.revision, spec.revision_kind), []).append((spec, write_annotator_files))
    for (repo, revision, kind), entries in repos.items():
        if (repo, revision) in done:
            continue
        done.add((repo, revision))
        folder = Path(tmp) / repo.replace("/", "--") / revision
        folder.mkdir(parents=True, exist_ok=True)
        for spec, writer in entries:
            writer(spec, folder)
        commit_to_cache(cache, repo, revision, kind, folder)


def write_ip_adapter_folder(specs: list[IpAdapterSpec], bases: dict, folder: Path) -> None:
    """One repo's IP-Adapters (h94/IP-Adapter holds SD 1.5's and SDXL's): each adapter file and its image encoder."""
    from safetensors.torch import save_file

    for spec in specs:
        encoder = folder / spec.image_encoder
        if not (encoder / "config.json").exists():
            tiny.seeded(tiny.image_encoder, seed=zlib.crc32(spec.image_encoder.encode())).save_pretrained(str(encoder))
        _, unet = _denoiser(bases[spec.family])
        torch.manual_seed(zlib.crc32(spec.weight_name.encode()))
        (folder / spec.subfolder).mkdir(parents=True, exist_ok=True)
        save_file(tiny.ip_adapter_weights(unet, tiny.CLIP_HIDDEN), str(folder / spec.subfolder / spec.weight_name))


def _build_ip_adapters(reg: Registry, cache: Path, tmp: str, done: set) -> None:
    repos: dict = {}
    for spec in reg.ip_adapters.values():
        repos.setdefault((spec.repo, spec.revision), []).append(spec)
    for specs in repos.values():
        bases = {s.family: _control_base(reg, s.family) for s in specs}
        if all(bases.values()):
            _once(
                done,
                specs[0],
                cache,
                tmp,
                lambda s, f, specs=specs, bases=bases: write_ip_adapter_folder(specs, bases, f),
            )


def _control_base(reg: Registry, family: str) -> ModelSpec | None:
    """The plain text-to-image model of a family whose tiny denoiser its ControlNets are made from."""
    plain = [m for m in reg.models.values() if m.family == family and not m.adapters and not m.layout.missing]
    plain = [m for m in plain if m.pipeline in FAMILY_TEXT2IMG]
    return plain[0] if plain else None


FAMILY_TEXT2IMG = {"StableDiffusionPipeline", "StableDiffusionXLPipeline", "FluxPipeline"}


# --- the cache layout ---------------------------------------------------------------------------


def _fake_commit(repo: str, revision: str) -> str:
    return hashlib.sha1(f"offline-hub:{repo}@{revision}".encode()).hexdigest()


def _hashes(path: Path) -> tuple[str, str]:
    """The file's git blob sha1 and sha256, read in chunks (weight files can be larger than memory allows)."""
    size = path.stat().st_size
    git, sha = hashlib.sha1(b"blob %d\0" % size), hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            git.update(chunk)
            sha.update(chunk)
    return git.hexdigest(), sha.hexdigest()


def commit_to_cache(cache: Path, repo: str, revision: str, revision_kind: str, source: Path, move=False) -> Path:
    """Place `source`'s files as a snapshot of `repo` at `revision`, as `snapshot_download` would.

    `move` moves the files instead of copying them (one copy on disk: full-size models are tens of GB).
    """
    storage = cache / ("models--" + repo.replace("/", "--"))
    commit = revision if revision_kind == "commit" else _fake_commit(repo, revision)
    snapshot = storage / "snapshots" / commit
    if snapshot.exists():
        shutil.rmtree(snapshot)
    tree = {}
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = path.relative_to(source).as_posix()
        size = path.stat().st_size
        git, sha = _hashes(path)
        entry = {"size": size, "blob_id": git}
        if rel.endswith(_LFS_SUFFIXES):
            entry.update(lfs_sha256=sha, lfs_size=size)
        blob = storage / "blobs" / entry.get("lfs_sha256", entry["blob_id"])
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            (shutil.move if move else shutil.copyfile)(path, blob)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            link.symlink_to(os.path.relpath(blob, link.parent))
        except OSError:  # no symlinks (Windows without developer mode): the hub copies too
            shutil.copyfile(blob, link)
        tree[rel] = entry
    refs = storage / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    for ref in {"main", revision} if revision_kind == "branch" else {"main"}:
        (refs / ref).write_text(commit)
    trees = storage / "trees"
    trees.mkdir(exist_ok=True)
    (trees / f"{commit}.json").write_text(json.dumps({"format_version": 1, "files": tree}, indent=1))
    return snapshot


def build(cache_dir: str | Path, registry: Registry | None = None, keys: list[str] | None = None) -> Path:
    """Build the offline hub under `cache_dir` for every entry (or only `keys`); returns the folder."""
    reg = registry or default_registry()
    cache = Path(cache_dir).expanduser().resolve()
    cache.mkdir(parents=True, exist_ok=True)
    done = set()
    with _quiet():
        _build(reg, cache, keys, done)
    mark_built(
        cache,
        f"An offline hub of tiny random-weight models built by `python -m helpers offline-hub` from {reg.path}. "
        f"{len(done)} repos. Images generated from these models are noise.",
    )
    return cache


def add_repo(cache_dir: str | Path, spec: ModelSpec, pickled: tuple[str, ...] = ()) -> None:
    """Write one entry's tiny pipeline into an offline hub; the `pickled` components get only `.bin` weights.

    Real repos mix layouts (the variant for some components only: `layout.variant_components`; pickled weights
    for others), and tests load such mixtures from here.
    """
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        folder = Path(tmp) / "repo"
        write_pipeline_folder(spec, folder)
        for name in pickled:
            _pickle_weights(folder / name)
        commit_to_cache(Path(cache_dir), spec.repo, spec.revision, spec.revision_kind, folder)


def add_single_file_repo(cache_dir: str | Path, spec: ModelSpec, registry: Registry) -> Path:
    """Write one single-file entry's repo (its checkpoint, from the tiny stand-ins) into an offline hub."""
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        folder = Path(tmp) / "repo"
        write_single_file_folder(spec, config_entry(spec, registry), folder)
        return commit_to_cache(Path(cache_dir), spec.repo, spec.revision, spec.revision_kind, folder)


def _pickle_weights(folder: Path) -> None:
    from safetensors.torch import load_file

    for path in folder.glob("*.safetensors"):
        name = path.name.replace("model.", "pytorch_model.", 1) if path.name.startswith("model.") else path.name
        torch.save(load_file(str(path)), folder / name.replace(".safetensors", ".bin"))
        path.unlink()


def mark_built(cache: Path, comment: str) -> None:
    """Write the cache-directory tag that marks a finished build (and that backup tools skip)."""
    (cache / BUILD_MARK).write_text(f"Signature: 8a477f597d28d172789f06886806bc55\n# {comment}\n")


@contextlib.contextmanager
def _quiet():
    """Silence the libraries' save-time warnings and progress bars: they are about tiny weights, not the user's."""
    import transformers

    levels = (diffusers.utils.logging.get_verbosity(), transformers.logging.get_verbosity())
    diffusers.utils.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers.utils.logging.set_verbosity(levels[0])
        transformers.logging.set_verbosity(levels[1])
        transformers.logging.enable_progress_bar()


def buildable(spec: ModelSpec) -> bool:
    """Whether this hub writes the entry's repo. A single-file checkpoint (`single_file`) is written in its original
    key layout (`helpers/offline/checkpoints.py`), except FLUX's: diffusers' converter assumes FLUX.1's full width,
    so a tiny FLUX file could not be read back; such entries are left out, and loading one offline says that the
    model is not in the cache."""
    return spec.single_file is None or spec.family != "flux"


def _build(reg: Registry, cache: Path, keys, done: set) -> None:
    models = [m for m in ([reg.get(k) for k in keys] if keys else reg.models.values()) if buildable(m)]
    with tempfile.TemporaryDirectory() as tmp:
        for spec in models:
            for v in spec.components.values():
                _once(done, reg.vae(v), cache, tmp, write_vae_folder)
            for a in spec.adapters:
                ad = reg.adapter(a)
                _once(done, ad, cache, tmp, lambda s, f, base=spec: write_adapter_folder(s, base, f))
            if spec.single_file:
                base = config_entry(spec, reg)
                _once(done, spec, cache, tmp, lambda s, f, base=base: write_single_file_folder(s, base, f))
            else:
                _once(done, spec, cache, tmp, write_pipeline_folder)
        built = {m.key for m in models}
        for g in reg.gguf.values():  # a repo's GGUF files are one commit: all of them written at once
            files = [x for x in reg.gguf.values() if (x.repo, x.revision) == (g.repo, g.revision) and x.model in built]
            if files:
                _once(done, g, cache, tmp, lambda s, f, files=files: [write_gguf_file(x, reg.get(x.model), f)
                                                                      for x in files])  # fmt: skip
        if not keys:
            _build_evaluators(reg, cache, tmp, done)
            for vae in reg.vaes.values():
                _once(done, vae, cache, tmp, write_vae_folder)
            for ad in reg.adapters.values():
                base = next((m for m in reg.models.values() if m.family == ad.family and not m.adapters), None)
                if base is not None:
                    _once(done, ad, cache, tmp, lambda s, f, base=base: write_adapter_folder(s, base, f))
            for cn in reg.controlnets.values():
                base = _control_base(reg, cn.family)
                if base is not None:
                    _once(done, cn, cache, tmp, lambda s, f, base=base: write_controlnet_folder(s, base, f))
            for pre in reg.preprocessors.values():
                if not pre.files:  # controlnet_aux's files: written with their repo's other files
                    _once(done, pre, cache, tmp, write_preprocessor_folder)
            for up in reg.upscalers.values():
                if not isinstance(up, NetworkUpscalerSpec):
                    _once(done, up, cache, tmp, write_upscaler_folder)
            _build_file_repos(reg, cache, tmp, done)
            _build_ip_adapters(reg, cache, tmp, done)
            for ad in reg.t2i_adapters.values():
                base = _control_base(reg, ad.family)
                if base is not None:
                    _once(done, ad, cache, tmp, lambda s, f, base=base: write_t2i_adapter_folder(s, base, f))


def write_gguf_file(g, base: ModelSpec, folder: Path) -> None:
    """A registry GGUF file (`gguf:` section) written with the gguf package from the base model's tiny denoiser, in
    diffusers' key names (which `from_single_file` loads as they are).

    The tiny layers are too narrow for K-quant blocks (256 values), so a 4-bit file holds Q4_0 blocks and an 8-bit
    one Q8_0 (32 values each); other tensors and layers narrower than a block stay float32, as converters keep them.
    """
    import gguf
    import numpy as np

    _, denoiser = _denoiser(base)
    qtype = gguf.GGMLQuantizationType.Q8_0 if g.quant.upper().startswith("Q8") else gguf.GGMLQuantizationType.Q4_0
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    folder.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(folder / g.file), arch=base.family)
    # only linear layers' weights are quantized, as converters do: diffusers dequantizes them in its GGUF linear
    # layers, while other 2-D parameters (Z-Image's pad tokens) are used as they are
    linear = {f"{n}.weight" for n, m in denoiser.named_modules() if isinstance(m, torch.nn.Linear)}
    for name, tensor in denoiser.state_dict().items():
        values = tensor.float().numpy()
        if name in linear and values.ndim == 2 and values.shape[-1] % block == 0:
            writer.add_tensor(name, gguf.quants.quantize(values, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, values.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _once(done: set, spec, cache: Path, tmp: str, writer) -> None:
    ident = (spec.repo, spec.revision)
    if ident in done:
        return
    done.add(ident)
    folder = Path(tmp) / spec.repo.replace("/", "--") / spec.revision
    writer(spec, folder)
    commit_to_cache(cache, spec.repo, spec.revision, spec.revision_kind, folder)
