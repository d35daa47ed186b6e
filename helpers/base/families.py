"""The model families and what the code needs to know of each, in one table.

A family is an architecture: models of one family share pipelines, samplers, size rules and memory shape.
Adding a family means a row here, its entries in `models.yaml`, and its tiny stand-in in `helpers/offline/tiny.py`.
Facts that diffusers already knows about a loaded pipeline (`vae_scale_factor`, `tokenizer_max_length`, the
T5 `max_sequence_length` default of its `__call__`) are asked of diffusers, not repeated here.

>>> FAMILIES["sdxl"].size_multiple
8
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    key: str
    pipelines: frozenset[str]  # diffusers pipeline classes of the family; another class is a registry error
    denoiser: str  # the pipeline component that denoises: "unet" or "transformer"
    samplers: str  # "discrete" (the classic A1111 samplers) or "flow" (flow matching)
    size_multiple: int  # the VAE's 8x, times a transformer's 2x2 patches where it has them
    sizes: tuple[str, ...]  # width x height presets offered in the panels, native first
    # Half-precision GB of the denoiser, the text encoders, the VAE, and the activations of one native image at
    # batch 1 with CFG (published parameter counts x 2 bytes; activations measured orders of magnitude).
    parts_gb: tuple[float, float, float, float]
    # The large text encoder (T5, or the Qwen3 language model of Z-Image and FLUX.2), which reads the prompt up to the
    # call's max_sequence_length and which 4-bit loading shrinks.
    t5: str | None = None
    t5_gb: float = 0.0
    prompt_tokenizer: str = "tokenizer"  # the one whose limit cuts the prompt: T5's where the family has it
    cfg_batch: bool = True  # classifier-free guidance doubles the denoiser's batch (FLUX's guidance is distilled)
    # The pipeline argument the zoo's `guidance_scale` goes to: Qwen-Image's real CFG is `true_cfg_scale` (its
    # `guidance_scale` is for guidance-distilled checkpoints), and runs only with a negative prompt, so an empty
    # one (" ", as the model card does) is passed when the user gives none.
    guidance_arg: str = "guidance_scale"
    empty_negative: bool = False


_SD_SIZES = ("1024x1024", "896x1152", "1152x896", "768x1344", "1344x768")
# The aspect ratios of the Qwen-Image model card (github.com/QwenLM/Qwen-Image README), width x height.
_QWEN_SIZES = ("1328x1328", "1664x928", "928x1664", "1472x1104", "1104x1472", "1584x1056", "1056x1584")

FAMILIES = {
    f.key: f
    for f in [
        Family(
            "sd1",
            frozenset({"StableDiffusionPipeline", "StableDiffusionInpaintPipeline", "LatentConsistencyModelPipeline"}),
            "unet", "discrete", 8, ("512x512", "512x768", "768x512", "640x640"),
            (1.72, 0.25, 0.17, 0.9),  # U-Net 860M, CLIP-L 123M, VAE 84M
        ),
        Family(
            "sd2",
            frozenset({"StableDiffusionPipeline", "StableDiffusionInpaintPipeline"}),
            "unet", "discrete", 8, ("768x768", "512x512", "768x512", "512x768"),
            (1.73, 0.68, 0.17, 1.4),  # OpenCLIP-H text 340M
        ),
        Family(
            "sdxl",
            frozenset({"StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline",
                       "StableDiffusionXLInpaintPipeline"}),
            "unet", "discrete", 8, (*_SD_SIZES, "512x512"),
            (5.14, 1.64, 0.17, 2.5),  # U-Net 2.6B, CLIP-L + OpenCLIP-bigG
        ),
        Family(
            "sd3", frozenset({"StableDiffusion3Pipeline"}), "transformer", "flow", 16, _SD_SIZES,
            (4.17, 11.2, 0.17, 2.0),  # MMDiT 2B; CLIP-L, CLIP-G and T5-XXL (4.7B)
            t5="text_encoder_3", t5_gb=9.52, prompt_tokenizer="tokenizer_3",
        ),
        Family(
            "flux", frozenset({"FluxPipeline", "FluxKontextPipeline"}), "transformer", "flow", 16,
            (*_SD_SIZES, "512x512"),
            (23.8, 9.77, 0.17, 3.0),  # 12B transformer, CLIP-L + T5-XXL
            t5="text_encoder_2", t5_gb=9.52, prompt_tokenizer="tokenizer_2", cfg_batch=False,
        ),
        # Z-Image: 6.16B single-stream DiT (12.3 GB in bf16: its config's parameters counted, and unsloth/Z-Image-GGUF's
        # z-image-BF16.gguf), Qwen3-4B text encoder (8.05 GB: the repo's text_encoder tree; 4.02B counted from its
        # config), FLUX.1's 16-channel VAE (168 MB).
        Family(
            "zimage", frozenset({"ZImagePipeline", "ZImageImg2ImgPipeline", "ZImageInpaintPipeline"}),
            "transformer", "flow", 16, ("1024x1024", "1248x832", "832x1248", "1280x720", "720x1280", "768x768"),
            (12.3, 8.05, 0.17, 2.0), t5="text_encoder", t5_gb=8.05,
        ),
        # FLUX.2 [klein]: rectified-flow transformer (4B: 3.88B counted from its config, 7.75 GB as the repo's
        # flux-2-klein-4b.safetensors; the 9B entry says its own), Qwen3 text encoder (4B: 8.05 GB), the 32-channel
        # FLUX.2 VAE (unverified: about FLUX.1's 0.17 GB).
        # The [klein] checkpoints are step- and guidance-distilled: the pipeline runs no CFG (is_distilled).
        Family(
            "flux2", frozenset({"Flux2KleinPipeline"}), "transformer", "flow", 16,
            ("1024x1024", "1248x832", "832x1248", "1392x752", "752x1392", "512x512"),
            (7.75, 8.05, 0.17, 2.0), t5="text_encoder", t5_gb=8.05, cfg_batch=False,
        ),
        # Chroma1-HD: 8.9B FLUX.1-schnell derivative (17.8 GB bf16: SD.Next's Chroma config counted, and its index's
        # total_size), T5-XXL only (no CLIP), FLUX.1's VAE. Real CFG,
        # run as a second transformer call (not a doubled batch).
        Family(
            "chroma", frozenset({"ChromaPipeline", "ChromaImg2ImgPipeline", "ChromaInpaintPipeline"}),
            "transformer", "flow", 16, (*_SD_SIZES, "512x512"), (17.8, 9.52, 0.17, 3.0),
            t5="text_encoder", t5_gb=9.52, cfg_batch=False,
        ),
        Family(
            "pixart", frozenset({"PixArtAlphaPipeline", "PixArtSigmaPipeline"}), "transformer", "discrete", 16,
            _SD_SIZES, (1.22, 9.52, 0.17, 2.0),  # 611M DiT + T5-XXL
            t5="text_encoder", t5_gb=9.52,
        ),
        Family(
            "qwenimage",
            frozenset({"QwenImagePipeline", "QwenImageImg2ImgPipeline", "QwenImageInpaintPipeline",
                       "QwenImageEditPlusPipeline"}),
            "transformer", "flow", 16, _QWEN_SIZES,
            # 20B MMDiT (transformer folder 40.9 GB), Qwen2.5-VL 7B text encoder (16.6 GB: SD.Next's 53.74 GiB
            # total less the transformer and VAE), VAE 254 MB; activations unmeasured, put at FLUX's order.
            (40.9, 16.6, 0.25, 4.0),
            # The 7B language model is the big text encoder that 4-bit loading shrinks, as T5 elsewhere (diffusers'
            # own diffusers/qwen-image-nf4 ships it in 4-bit), and reads max_sequence_length tokens as T5 does.
            t5="text_encoder", t5_gb=16.6,
            guidance_arg="true_cfg_scale", empty_negative=True,
        ),
    ]
}  # fmt: skip
