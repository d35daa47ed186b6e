"""Single checkpoint files in the original key layouts, written from the tiny stand-ins (test infrastructure).

A1111, ComfyUI and civitai files keep the layouts of the code that trained them: LDM for SD 1.x/2.x
(`model.diffusion_model.`, `first_stage_model.`, `cond_stage_model.`), SGM for SDXL (`conditioner.embedders.N.`),
SAI's MMDiT for SD3. diffusers reads them (`from_single_file`) but has no writer, so the map here is the inverse of
diffusers' own conversion (`diffusers.loaders.single_file_utils`): its fixed key tables are used as they are, the
block numbering is the one its converters undo, and `original_state_dict` checks every file it makes by running
diffusers' converters on it and comparing every tensor with the stand-in's.

>>> save_file(original_state_dict(pipe.components, registry.get("sd15")), "tiny-sd15.safetensors")
"""

from __future__ import annotations

import re

import torch
from diffusers.loaders import single_file_utils as sfu

UNET, VAE = "model.diffusion_model.", "first_stage_model."
# family -> {component: where its tensors go in the file}
_CLIP_PREFIXES = {
    "sd1": {"text_encoder": ("clip", "cond_stage_model.transformer.")},
    "sd2": {"text_encoder": ("open_clip", "cond_stage_model.model.")},
    "sdxl": {
        "text_encoder": ("clip", "conditioner.embedders.0.transformer."),
        "text_encoder_2": ("open_clip", "conditioner.embedders.1.model."),
    },
    "sdxl-refiner": {"text_encoder_2": ("open_clip", "conditioner.embedders.0.model.")},
}
_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
           ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]  # fmt: skip
_VAE_ATTN = [("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out.")]


def _resnet(rest: str) -> str:
    for new, old in _RESNET:
        rest = rest.replace(new, old)
    return rest


def unet_to_ldm(state: dict, config) -> dict:
    """A diffusers U-Net's tensors under LDM/SGM names (without the `model.diffusion_model.` prefix)."""
    n = config["layers_per_block"] + 1  # LDM numbers input/output blocks flat: `layers_per_block` (+1 up) per level
    tables = sfu.DIFFUSERS_TO_LDM_MAPPING["unet"]
    fixed = {**tables["layers"], **tables["addition_embed_type"]}
    attn_up = {int(k.split(".")[1]) for k in state if k.startswith("up_blocks.") and ".attentions." in k}
    rules = [
        (r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", lambda i, j, r: f"input_blocks.{1 + i * n + j}.0.{_resnet(r)}"),
        (r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", lambda i, j, r: f"input_blocks.{1 + i * n + j}.1.{r}"),
        (r"down_blocks\.(\d+)\.downsamplers\.(0)\.conv\.(.*)", lambda i, _, r: f"input_blocks.{(i + 1) * n}.0.op.{r}"),
        (r"mid_block\.(resnets)\.(\d+)\.(.*)", lambda _, j, r: f"middle_block.{2 * j}.{_resnet(r)}"),
        (r"mid_block\.(attentions)\.(0)\.(.*)", lambda _, __, r: f"middle_block.1.{r}"),
        (r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", lambda i, j, r: f"output_blocks.{i * n + j}.0.{_resnet(r)}"),
        (r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", lambda i, j, r: f"output_blocks.{i * n + j}.1.{r}"),
        (r"up_blocks\.(\d+)\.upsamplers\.(0)\.conv\.(.*)",
         lambda i, _, r: f"output_blocks.{i * n + n - 1}.{2 if i in attn_up else 1}.conv.{r}"),
    ]  # fmt: skip
    out = {}
    for key, value in state.items():
        if key in fixed:
            out[fixed[key]] = value
            continue
        for pattern, name in rules:
            m = re.fullmatch(pattern, key)
            if m:
                a, b, rest = m.groups()
                out[name(int(a) if a.isdigit() else a, int(b), rest)] = value
                break
        else:
            raise KeyError(f"no LDM name for the U-Net tensor '{key}'")
    return out


def vae_to_ldm(state: dict, config) -> dict:
    """A diffusers `AutoencoderKL`'s tensors under LDM names (without the `first_stage_model.` prefix)."""
    fixed = sfu.DIFFUSERS_TO_LDM_MAPPING["vae"]
    last = len(config["up_block_types"]) - 1
    out = {}
    for key, value in state.items():
        if key in fixed:
            out[fixed[key]] = value
            continue
        k = key.replace("conv_shortcut", "nin_shortcut")
        k = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", k)
        k = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", k)
        k = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.", lambda m: f"decoder.up.{last - int(m[1])}.block.", k)
        k = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"decoder.up.{last - int(m[1])}.upsample.",
                   k)
        k = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", k)
        if ".mid_block.attentions.0." in k:
            k = k.replace("mid_block.attentions.0.", "mid.attn_1.")
            for new, old in _VAE_ATTN:
                k = k.replace(new, old)
            if value.ndim == 2:  # LDM's attention projections are 1x1 convolutions
                value = value[:, :, None, None]
        out[k] = value
    return out


def clip_to_ldm(state: dict) -> dict:
    """OpenAI CLIP text tensors as LDM keeps them: the transformers names, under `text_model.`."""
    return {(k if k.startswith(("text_model.", "text_projection")) else f"text_model.{k}"): v for k, v in state.items()}


def open_clip_to_ldm(state: dict) -> dict:
    """A transformers CLIP text encoder's tensors under OpenCLIP names (fused q/k/v, `resblocks`, `ln_final`)."""
    fixed = {k.removeprefix("text_model."): v for k, v in sfu.DIFFUSERS_TO_LDM_MAPPING["openclip"]["layers"].items()}
    out, qkv = {}, {}
    for key, value in state.items():
        key = key.removeprefix("text_model.")
        if key in fixed:
            out[fixed[key]] = value.T.contiguous() if key == "text_projection.weight" else value
            continue
        if key == "embeddings.position_ids":
            continue
        m = re.fullmatch(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", key)
        if m:
            qkv.setdefault((int(m[1]), m[3]), {})[m[2]] = value
            continue
        k = key.replace("encoder.layers.", "transformer.resblocks.").replace("layer_norm1", "ln_1")
        k = k.replace("layer_norm2", "ln_2").replace(".fc1.", ".c_fc.").replace(".fc2.", ".c_proj.")
        out[k.replace(".self_attn", ".attn")] = value
    for (layer, kind), parts in qkv.items():
        out[f"transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def _swap_halves(w):
    """SAI's final norms hold (shift, scale) where diffusers holds (scale, shift): the swap undoes itself."""
    first, second = w.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def sd3_to_sai(state: dict) -> dict:
    """An SD3 transformer's tensors under SAI's MMDiT names (fused q/k/v), as `sd3_medium.safetensors` keeps them."""
    out = {
        "pos_embed": state["pos_embed.pos_embed"],
        "final_layer.adaLN_modulation.1.weight": _swap_halves(state["norm_out.linear.weight"]),
        "final_layer.adaLN_modulation.1.bias": _swap_halves(state["norm_out.linear.bias"]),
    }
    renames = {"pos_embed.proj.": "x_embedder.proj.",
               "time_text_embed.timestep_embedder.linear_1.": "t_embedder.mlp.0.",
               "time_text_embed.timestep_embedder.linear_2.": "t_embedder.mlp.2.",
               "time_text_embed.text_embedder.linear_1.": "y_embedder.mlp.0.",
               "time_text_embed.text_embedder.linear_2.": "y_embedder.mlp.2.", "context_embedder.": "context_embedder.",
               "proj_out.": "final_layer.linear."}  # fmt: skip
    block = {"attn.norm_q.": "x_block.attn.ln_q.", "attn.norm_k.": "x_block.attn.ln_k.",
             "attn.norm_added_q.": "context_block.attn.ln_q.", "attn.norm_added_k.": "context_block.attn.ln_k.",
             "attn.to_out.0.": "x_block.attn.proj.", "attn.to_add_out.": "context_block.attn.proj.",
             "attn2.norm_q.": "x_block.attn2.ln_q.", "attn2.norm_k.": "x_block.attn2.ln_k.",
             "attn2.to_out.0.": "x_block.attn2.proj.", "norm1.linear.": "x_block.adaLN_modulation.1.",
             "norm1_context.linear.": "context_block.adaLN_modulation.1.", "ff.net.0.proj.": "x_block.mlp.fc1.",
             "ff.net.2.": "x_block.mlp.fc2.", "ff_context.net.0.proj.": "context_block.mlp.fc1.",
             "ff_context.net.2.": "context_block.mlp.fc2."}  # fmt: skip
    fused = {"attn.to_": "x_block.attn.qkv.", "attn.add_": "context_block.attn.qkv.", "attn2.to_": "x_block.attn2.qkv."}
    layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks."))
    for key, value in state.items():
        for new, old in renames.items():
            if key.startswith(new):
                out[old + key[len(new):]] = value
        m = re.fullmatch(r"transformer_blocks\.(\d+)\.(.*)", key)
        if not m:
            continue
        i, rest = int(m[1]), m[2]
        for new, old in block.items():
            if rest.startswith(new):
                last = i == layers - 1 and new == "norm1_context.linear."  # diffusers swaps the last context norm
                out[f"joint_blocks.{i}.{old}{rest[len(new):]}"] = _swap_halves(value) if last else value
        for new, old in fused.items():
            q = re.fullmatch(re.escape(new) + r"(?:q_proj|q)\.(weight|bias)", rest)
            if q:
                parts = [state[f"transformer_blocks.{i}.{new}{p}.{q[1]}"] for p in
                         (("q_proj", "k_proj", "v_proj") if new == "attn.add_" else ("q", "k", "v"))]  # fmt: skip
                out[f"joint_blocks.{i}.{old}{q[1]}"] = torch.cat(parts)
    return out


def flux_to_bfl(state: dict) -> dict:
    """A FLUX.1 transformer's tensors under Black Forest Labs' names, as `flux1-dev.safetensors` keeps them.

    Not checked against diffusers here: its FLUX converter assumes FLUX.1's full width (3072), so tiny files only
    serve to test how files are told apart.
    """
    top = {"time_text_embed.timestep_embedder.linear_1.": "time_in.in_layer.",
           "time_text_embed.timestep_embedder.linear_2.": "time_in.out_layer.",
           "time_text_embed.text_embedder.linear_1.": "vector_in.in_layer.",
           "time_text_embed.text_embedder.linear_2.": "vector_in.out_layer.",
           "time_text_embed.guidance_embedder.linear_1.": "guidance_in.in_layer.",
           "time_text_embed.guidance_embedder.linear_2.": "guidance_in.out_layer.",
           "context_embedder.": "txt_in.", "x_embedder.": "img_in.", "proj_out.": "final_layer.linear."}  # fmt: skip
    double = {"norm1.linear.": "img_mod.lin.", "norm1_context.linear.": "txt_mod.lin.",
              "attn.norm_q.weight": "img_attn.norm.query_norm.scale",
              "attn.norm_k.weight": "img_attn.norm.key_norm.scale",
              "attn.norm_added_q.weight": "txt_attn.norm.query_norm.scale",
              "attn.norm_added_k.weight": "txt_attn.norm.key_norm.scale", "ff.net.0.proj.": "img_mlp.0.",
              "ff.net.2.": "img_mlp.2.", "ff_context.net.0.proj.": "txt_mlp.0.", "ff_context.net.2.": "txt_mlp.2.",
              "attn.to_out.0.": "img_attn.proj.", "attn.to_add_out.": "txt_attn.proj."}  # fmt: skip
    single = {"norm.linear.": "modulation.lin.", "attn.norm_q.weight": "norm.query_norm.scale",
              "attn.norm_k.weight": "norm.key_norm.scale", "proj_out.": "linear2."}  # fmt: skip
    out = {f"final_layer.adaLN_modulation.1.{k}": _swap_halves(state[f"norm_out.linear.{k}"]) for k in ("weight",
                                                                                                        "bias")}
    for key, value in state.items():
        for new, old in top.items():
            if key.startswith(new):
                out[old + key[len(new):]] = value
        m = re.fullmatch(r"(single_)?transformer_blocks\.(\d+)\.(.*)", key)
        if not m:
            continue
        names, prefix = (single, f"single_blocks.{m[2]}.") if m[1] else (double, f"double_blocks.{m[2]}.")
        for new, old in names.items():
            if m[3].startswith(new):
                out[prefix + old + m[3][len(new):]] = value
    for kind in ("weight", "bias"):
        for i in {int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks.")}:
            b = f"transformer_blocks.{i}.attn."
            out[f"double_blocks.{i}.img_attn.qkv.{kind}"] = torch.cat([state[f"{b}to_{x}.{kind}"] for x in "qkv"])
            out[f"double_blocks.{i}.txt_attn.qkv.{kind}"] = torch.cat([state[f"{b}add_{x}_proj.{kind}"] for x in "qkv"])
        for i in {int(k.split(".")[1]) for k in state if k.startswith("single_transformer_blocks.")}:
            b = f"single_transformer_blocks.{i}."
            parts = [state[f"{b}attn.to_{x}.{kind}"] for x in "qkv"] + [state[f"{b}proj_mlp.{kind}"]]
            out[f"single_blocks.{i}.linear1.{kind}"] = torch.cat(parts)
    return out


def original_state_dict(components: dict, base, vae: bool = True, text_encoders: bool = True) -> dict:
    """The tensors of one file in the original layout of the registry model `base`'s family, checked against diffusers.

    `components` are a pipeline's (`pipe.components`, or the offline hub's stand-ins); `vae`/`text_encoders` False
    leave those out, as files that ship the denoiser alone do.
    """
    family, refiner = base.family, "text_encoder" in base.layout.missing
    if family == "sd3":  # SAI's layout; its text encoders are not written (files without them are common)
        out = {UNET + k: v for k, v in sd3_to_sai(components["transformer"].state_dict()).items()}
        text_encoders = False
    else:
        unet = components["unet"]
        out = {UNET + k: v for k, v in unet_to_ldm(unet.state_dict(), unet.config).items()}
    if vae:
        out |= {VAE + k: v for k, v in vae_to_ldm(components["vae"].state_dict(), components["vae"].config).items()}
    if text_encoders:
        for name, (kind, prefix) in _CLIP_PREFIXES["sdxl-refiner" if refiner else family].items():
            state = components[name].state_dict()
            out |= {prefix + k: v for k, v in (clip_to_ldm if kind == "clip" else open_clip_to_ldm)(state).items()}
    out = {k: v.detach().contiguous().clone() for k, v in out.items()}
    _check(out, components, vae)
    return out


def _check(checkpoint: dict, components: dict, vae: bool) -> None:
    """diffusers' own converters must give back every tensor of the stand-in, unchanged."""
    if "transformer" in components:
        converted = sfu.convert_sd3_transformer_checkpoint_to_diffusers(dict(checkpoint))
        pairs = [(converted, components["transformer"])]
    else:
        pairs = [(sfu.convert_ldm_unet_checkpoint(dict(checkpoint), components["unet"].config), components["unet"])]
    if vae:
        pairs.append((sfu.convert_ldm_vae_checkpoint(dict(checkpoint), components["vae"].config), components["vae"]))
    for converted, model in pairs:
        state = model.state_dict()
        if set(converted) != set(state):
            odd = set(converted) ^ set(state)
            raise AssertionError(f"{type(model).__name__}: diffusers reads back other keys: {sorted(odd)[:5]}")
        for k, v in state.items():
            if not torch.equal(converted[k].reshape(v.shape), v):
                raise AssertionError(f"{type(model).__name__}.{k} differs after diffusers' conversion")
