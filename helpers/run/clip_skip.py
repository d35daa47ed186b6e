"""Clip skip, numbered as AUTOMATIC1111 numbers it ("Clip skip: 2"), turned into diffusers' `clip_skip`.

A1111's clip skip N (its setting `CLIP_stop_at_last_layers`) makes an SD 1.x prompt read the CLIP text encoder's
N-th hidden state from the end, then the encoder's final layer norm; N = 1, the default, is the last layer
(modules/sd_hijack_clip.py, `FrozenCLIPEmbedderWithCustomWords.encode_with_transformers`). diffusers' `clip_skip=k`
reads `hidden_states[-(k + 1)]`, then the same final layer norm (`StableDiffusionPipeline.encode_prompt`). So A1111's
N is diffusers' N - 1, and A1111's 1 is diffusers' None: the off-by-one this module exists for.

A1111 reads SD 2.x's OpenCLIP encoder and SDXL's two encoders at the layer each model was trained with, whatever
the setting (modules/sd_hijack_open_clip.py; `FrozenCLIPEmbedderForSDXLWithCustomWords` reads SDXL's CLIP-L at its
`layer_idx` unless the non-default option `sdxl_clip_l_skip` is on). diffusers' SDXL pipeline reads the penultimate
layer when `clip_skip` is None (`hidden_states[-2]`, "SDXL always indexes from the penultimate layer"), which is that
layer. So on SD 2.x and SDXL, clip skip 1 and 2 make the same image, in A1111 and here (Pony Diffusion's "clip skip
2" is what SDXL does anyway); a higher value is refused, as diffusers would skip layers of both SDXL encoders where
A1111 skips none. Other families have no CLIP clip skip: only 1 is accepted.

A1111 writes the field only when N > 1 (modules/processing.py, `create_infotext`: "Clip skip": None if clip_skip
<= 1 else clip_skip), and so does `helpers.base.records`.

Sources: https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/master/modules/sd_hijack_clip.py,
https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/master/modules/sd_hijack_open_clip.py,
https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/master/modules/processing.py,
diffusers 0.42 pipelines/stable_diffusion/pipeline_stable_diffusion.py and
pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py (`encode_prompt`).

>>> to_diffusers("sd1", 2), to_diffusers("sd1", 1), to_diffusers("sdxl", 2)
(1, None, None)
"""

from __future__ import annotations

from ..base.errors import ZooError

SKIPPING = ("sd1",)  # families whose prompt reads a chosen CLIP layer, as A1111 does
TRAINED_LAYER = ("sd2", "sdxl")  # families A1111 reads at their trained layer whatever the clip skip (1 and 2)


def check(family: str, key: str, clip_skip) -> int:
    """The clip skip as an A1111 number, checked against the model's family; raises a `ZooError` saying what to use."""
    if isinstance(clip_skip, bool) or not isinstance(clip_skip, int) or clip_skip < 1:
        raise ZooError(f"clip_skip is counted as A1111 counts it, from 1 (no skip); got {clip_skip!r}. Use 1 or 2")
    if family in SKIPPING or clip_skip == 1:
        return clip_skip
    if family in TRAINED_LAYER and clip_skip == 2:
        return clip_skip
    if family in TRAINED_LAYER:
        raise ZooError(
            f"'{key}' ({family}) reads its text encoders at the penultimate layer, as A1111 does whatever its clip "
            f"skip: clip skip 1 and 2 are the same image there, and {clip_skip} is not offered. Use 1 or 2"
        )
    raise ZooError(f"'{key}' ({family}) has no CLIP clip skip (A1111's setting is for SD 1.x): leave clip_skip at 1")


def to_diffusers(family: str, clip_skip: int) -> int | None:
    """diffusers' `clip_skip` for an A1111 clip skip: N - 1 on SD 1.x, else the pipeline's own layer (None)."""
    return clip_skip - 1 if family in SKIPPING and clip_skip > 1 else None


def expose_text_model(pipe) -> None:
    """Let diffusers' `clip_skip` (and compel's penultimate layer) find the CLIP text encoder's final layer norm.

    Both read `text_encoder.text_model.final_layer_norm`; since transformers 5.6 a `CLIPTextModel` holds its layers
    itself and has no `text_model`, so any clip skip raised AttributeError
    (https://github.com/huggingface/diffusers/issues/14124). The encoder gets that name for itself, as a plain
    attribute outside the module tree: its weights, state dict and hooks are unchanged.
    """
    enc = getattr(pipe, "text_encoder", None)
    if enc is not None and not hasattr(enc, "text_model") and hasattr(enc, "final_layer_norm"):
        object.__setattr__(enc, "text_model", enc)


def choices(family: str) -> list[int]:
    """The clip skips offered for a family (A1111's slider goes to 12; past 4 SD 1.x images fall apart)."""
    return [1, 2, 3, 4] if family in SKIPPING else [1, 2] if family in TRAINED_LAYER else [1]
