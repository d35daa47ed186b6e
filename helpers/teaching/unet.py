"""Stable Diffusion 1.x's U-Net in plain PyTorch, readable top to bottom, checked against diffusers.

The U-Net of Ronneberger et al. 2015 as DDPM (Ho et al. 2020, appendix B) made it a denoiser: a sinusoidal
timestep embedding, ResNet blocks that add it, and a down path whose outputs the up path takes back as skip
connections; latent diffusion (Rombach et al. 2022, sec. 3.3) adds transformer blocks whose cross-attention
reads the text. The layout is the original CompVis one: a flat list of down steps, a middle, a flat list of up
steps, each up step taking the skip that its mirror left. `from_diffusers` loads a diffusers
`UNet2DConditionModel`'s weights through an explicit table of names (`key_map`), and a test asserts that both
give the same output.

>>> reference = UNet2DConditionModel.from_pretrained(repo, subfolder="unet")
>>> mine = unet.from_diffusers(reference)
>>> unet.max_difference(mine, reference)   # about 1e-6 in float32
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..base.errors import ZooError

# --- the parts ----------------------------------------------------------------------------------


def timestep_embedding(t: torch.Tensor, dim: int, flip_sin_to_cos: bool = True, shift: float = 0.0) -> torch.Tensor:
    """Sines and cosines of t at dim/2 geometric frequencies from 1 to 1/10000 (Vaswani et al. 2017, sec. 3.5)."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - shift)
    angles = t[:, None].float() * exponent.exp()[None]
    pair = [angles.cos(), angles.sin()] if flip_sin_to_cos else [angles.sin(), angles.cos()]
    return F.pad(torch.cat(pair, dim=-1), (0, dim % 2))


class ResBlock(nn.Module):
    """Norm, SiLU, 3x3 conv; add the timestep, projected per channel; again; plus the input (DDPM appendix B)."""

    def __init__(self, c_in: int, c_out: int, time_dim: int, groups: int, eps: float):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, c_in, eps), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time_proj = nn.Linear(time_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(groups, c_out, eps), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head attention, softmax(Q K^T / sqrt(d)) V (Vaswani et al. 2017, eq. 1): keys from `context` if given."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(context_dim or dim, dim, bias=False)
        self.v = nn.Linear(context_dim or dim, dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x, context=None):
        context = x if context is None else context
        q, k, v = (self._split(f(y)) for f, y in ((self.q, x), (self.k, context), (self.v, context)))
        weights = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(dim=-1)  # (batch, heads, n_x, n_ctx)
        return self.out((weights @ v).transpose(1, 2).flatten(2))

    def _split(self, x):
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (batch, heads, tokens, head_dim)


class GEGLU(nn.Module):
    """The feed-forward of a transformer block: a GELU-gated linear unit, 4x wide (Shazeer 2020)."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj, self.out = nn.Linear(dim, 8 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        h, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(h * F.gelu(gate))


class TransformerBlock(nn.Module):
    """Self-attention over the image, cross-attention to the text, feed-forward; each pre-normed and residual."""

    def __init__(self, dim: int, heads: int, context_dim: int):
        super().__init__()
        self.norm1, self.self_attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.cross_attn = nn.LayerNorm(dim), Attention(dim, heads, context_dim)
        self.norm3, self.ff = nn.LayerNorm(dim), GEGLU(dim)

    def forward(self, x, context):
        x = x + self.self_attn(self.norm1(x))
        x = x + self.cross_attn(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """The feature map as a sequence of H*W tokens through transformer blocks, and back (LDM, sec. 3.3)."""

    def __init__(self, dim: int, heads: int, context_dim: int, depth: int, groups: int, linear: bool):
        super().__init__()
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.linear = linear  # SD 2.x projects the tokens with linear layers, SD 1.x with 1x1 convolutions
        self.proj_in = nn.Linear(dim, dim) if linear else nn.Conv2d(dim, dim, 1)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, context_dim) for _ in range(depth))
        self.proj_out = nn.Linear(dim, dim) if linear else nn.Conv2d(dim, dim, 1)

    def forward(self, x, context):
        b, c, h, w = x.shape
        tokens = self.norm(x)
        tokens = tokens if self.linear else self.proj_in(tokens)
        tokens = tokens.permute(0, 2, 3, 1).reshape(b, h * w, c)
        tokens = self.proj_in(tokens) if self.linear else tokens
        for block in self.blocks:
            tokens = block(tokens, context)
        tokens = self.proj_out(tokens) if self.linear else tokens
        tokens = tokens.reshape(b, h, w, c).permute(0, 3, 1, 2)
        return x + (tokens if self.linear else self.proj_out(tokens))


class Downsample(nn.Module):
    """Half the resolution: a 3x3 convolution with stride 2."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour, then a 3x3 convolution."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Step(nn.Module):
    """One step of a path: a ResNet block, then transformer blocks where the level has them, then a resampler."""

    def __init__(self, res=None, attn=None, resample=None):
        super().__init__()
        self.res, self.attn, self.resample = res, attn, resample

    def forward(self, h, temb, context):
        h = h if self.res is None else self.res(h, temb)
        h = h if self.attn is None else self.attn(h, context)
        return h if self.resample is None else self.resample(h)


# --- the whole network --------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """What the network is made of; the defaults are SD 1.x's (the shapes of unet/config.json)."""

    in_channels: int = 4
    out_channels: int = 4
    channels: tuple[int, ...] = (320, 640, 1280, 1280)  # per resolution level, each half the previous side
    attention: tuple[bool, ...] = (True, True, True, False)  # which levels have transformer blocks
    heads: tuple[int, ...] = (8, 8, 8, 8)
    depth: tuple[int, ...] = (1, 1, 1, 1)  # transformer blocks per attention
    layers_per_block: int = 2  # ResNet blocks per level going down (one more going up)
    context_dim: int = 768  # the text encoder's width
    groups: int = 32
    eps: float = 1e-5
    flip_sin_to_cos: bool = True
    freq_shift: float = 0.0
    linear_projection: bool = False


class Middle(nn.Module):
    """The bottom of the U: a ResNet block, transformer blocks, a ResNet block."""

    def __init__(self, c: Config, time_dim: int):
        super().__init__()
        top = c.channels[-1]
        self.res1 = ResBlock(top, top, time_dim, c.groups, c.eps)
        self.attn = _attention(c, len(c.channels) - 1, always=True)
        self.res2 = ResBlock(top, top, time_dim, c.groups, c.eps)

    def forward(self, h, temb, context):
        return self.res2(self.attn(self.res1(h, temb), context), temb)


class UNet(nn.Module):
    """epsilon_theta(x_t, t, context): the noise in x_t, predicted from x_t, the timestep and the text's tokens."""

    def __init__(self, config: Config = Config()):
        super().__init__()
        c, time_dim = config, 4 * config.channels[0]
        self.config = c
        self.time_mlp = nn.Sequential(nn.Linear(c.channels[0], time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.conv_in = nn.Conv2d(c.in_channels, c.channels[0], 3, padding=1)
        self.down = nn.ModuleList(_down_path(c, time_dim))
        self.mid = Middle(c, time_dim)
        self.up = nn.ModuleList(_up_path(c, time_dim))
        self.norm_out = nn.GroupNorm(c.groups, c.channels[0], c.eps)
        self.conv_out = nn.Conv2d(c.channels[0], c.out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t, context: torch.Tensor) -> torch.Tensor:
        c = self.config
        factor = 2 ** (len(c.channels) - 1)
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ZooError(f"The U-Net halves its input {len(c.channels) - 1} times: sides {tuple(x.shape[-2:])} "
                           f"must be multiples of {factor}.")  # fmt: skip
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
        temb = self.time_mlp(timestep_embedding(t, c.channels[0], c.flip_sin_to_cos, c.freq_shift).to(x.dtype))
        h = self.conv_in(x)
        skips = [h]
        for step in self.down:
            h = step(h, temb, context)
            skips.append(h)
        h = self.mid(h, temb, context)
        for step in self.up:
            h = step(torch.cat([h, skips.pop()], dim=1), temb, context)
        return self.conv_out(F.silu(self.norm_out(h)))


def _attention(c: Config, level: int, always: bool = False) -> SpatialTransformer | None:
    """The transformer blocks of a resolution level, or None where the level has none."""
    if not (always or c.attention[level]):
        return None
    ch = c.channels[level]
    return SpatialTransformer(ch, c.heads[level], c.context_dim, c.depth[level], c.groups, c.linear_projection)


def _down_path(c: Config, time_dim: int) -> list[Step]:
    steps, c_in = [], c.channels[0]
    for level, c_out in enumerate(c.channels):
        for _ in range(c.layers_per_block):
            steps.append(Step(ResBlock(c_in, c_out, time_dim, c.groups, c.eps), _attention(c, level)))
            c_in = c_out
        if level < len(c.channels) - 1:
            steps.append(Step(resample=Downsample(c_out)))
    return steps


def skip_channels(c: Config) -> list[int]:
    """The channels of the skips the down path leaves, in the order it leaves them (conv_in's first)."""
    out = [c.channels[0]]
    for level, ch in enumerate(c.channels):
        out += [ch] * c.layers_per_block + ([ch] if level < len(c.channels) - 1 else [])
    return out


def _up_path(c: Config, time_dim: int) -> list[Step]:
    """Each level takes back the skips of its mirror, last left first: one more ResNet block than going down."""
    skips, steps, c_in = skip_channels(c), [], c.channels[-1]
    for level in reversed(range(len(c.channels))):
        c_out = c.channels[level]
        for j in range(c.layers_per_block + 1):
            res = ResBlock(c_in + skips.pop(), c_out, time_dim, c.groups, c.eps)
            up = Upsample(c_out) if j == c.layers_per_block and level > 0 else None
            steps.append(Step(res, _attention(c, level), up))
            c_in = c_out
    return steps


# --- from diffusers' configuration and weights ---------------------------------------------------

# Options of diffusers' UNet2DConditionModel that SD 1.x and 2.x leave at these values; this module builds only those.
_PLAIN = {
    "center_input_sample": False, "mid_block_type": "UNetMidBlock2DCrossAttn", "only_cross_attention": False,
    "encoder_hid_dim": None, "dual_cross_attention": False, "class_embed_type": None, "addition_embed_type": None,
    "num_class_embeds": None, "resnet_time_scale_shift": "default", "resnet_skip_time_act": False,
    "resnet_out_scale_factor": 1.0, "time_embedding_type": "positional", "time_embedding_dim": None,
    "time_embedding_act_fn": None, "timestep_post_act": None, "time_cond_proj_dim": None, "conv_in_kernel": 3,
    "conv_out_kernel": 3, "attention_type": "default", "mid_block_scale_factor": 1, "downsample_padding": 1,
    "act_fn": "silu", "cross_attention_norm": None, "reverse_transformer_layers_per_block": None,
}  # fmt: skip
_DOWN = {"CrossAttnDownBlock2D": True, "DownBlock2D": False}
_UP = {"CrossAttnUpBlock2D": True, "UpBlock2D": False}


def _per_level(value, levels: int) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * levels


def config_from_diffusers(cfg) -> Config:
    """The `Config` of a diffusers UNet2DConditionModel config (a dict or the model's `.config`)."""
    cfg = dict(cfg)
    odd = {k: cfg[k] for k, plain in _PLAIN.items() if k in cfg and cfg[k] != plain}
    down, up = list(cfg["down_block_types"]), list(cfg["up_block_types"])
    if odd or any(b not in _DOWN for b in down) or [_UP.get(b) for b in reversed(up)] != [_DOWN[b] for b in down]:
        raise ZooError(
            f"This U-Net is not an SD 1.x/2.x one ({odd or (down, up)}): helpers.teaching.unet rebuilds only the plain "
            "text-conditioned U-Net (cross-attention down blocks mirrored by up blocks, no extra embeddings)."
        )
    levels = len(down)
    heads = cfg.get("num_attention_heads") or cfg.get("attention_head_dim", 8)  # SD's configs call heads head_dim
    return Config(
        in_channels=cfg.get("in_channels", 4),
        out_channels=cfg.get("out_channels", 4),
        channels=tuple(cfg["block_out_channels"]),
        attention=tuple(_DOWN[b] for b in down),
        heads=_per_level(heads, levels),
        depth=_per_level(cfg.get("transformer_layers_per_block", 1), levels),
        layers_per_block=cfg.get("layers_per_block", 2),
        context_dim=cfg.get("cross_attention_dim", 1280),
        groups=cfg.get("norm_num_groups", 32),
        eps=cfg.get("norm_eps", 1e-5),
        flip_sin_to_cos=cfg.get("flip_sin_to_cos", True),
        freq_shift=cfg.get("freq_shift", 0),
        linear_projection=cfg.get("use_linear_projection", False),
    )


# Inside a block, diffusers' names for the same layers.
_INNER = [
    (".time_emb_proj.", ".time_proj."),
    (".conv_shortcut.", ".skip."),
    (".transformer_blocks.", ".blocks."),
    (".attn1.", ".self_attn."),
    (".attn2.", ".cross_attn."),
    (".to_q.", ".q."),
    (".to_k.", ".k."),
    (".to_v.", ".v."),
    (".to_out.0.", ".out."),
    (".ff.net.0.proj.", ".ff.proj."),
    (".ff.net.2.", ".ff.out."),
]


def key_map(c: Config) -> dict[str, str]:
    """diffusers' name of each block -> its name here: the blocks in the order both networks run them."""
    m = {"time_embedding.linear_1": "time_mlp.0", "time_embedding.linear_2": "time_mlp.2", "conv_in": "conv_in"}
    i = 0
    for level in range(len(c.channels)):
        for j in range(c.layers_per_block):
            m[f"down_blocks.{level}.resnets.{j}"] = f"down.{i}.res"
            if c.attention[level]:
                m[f"down_blocks.{level}.attentions.{j}"] = f"down.{i}.attn"
            i += 1
        if level < len(c.channels) - 1:
            m[f"down_blocks.{level}.downsamplers.0"] = f"down.{i}.resample"
            i += 1
    m |= {"mid_block.resnets.0": "mid.res1", "mid_block.attentions.0": "mid.attn", "mid_block.resnets.1": "mid.res2"}
    i = 0
    for block, level in enumerate(reversed(range(len(c.channels)))):
        for j in range(c.layers_per_block + 1):
            m[f"up_blocks.{block}.resnets.{j}"] = f"up.{i}.res"
            if c.attention[level]:
                m[f"up_blocks.{block}.attentions.{j}"] = f"up.{i}.attn"
            i += 1
        if level > 0:
            m[f"up_blocks.{block}.upsamplers.0"] = f"up.{i - 1}.resample"
    return m | {"conv_norm_out": "norm_out", "conv_out": "conv_out"}


def rename(key: str, blocks: dict[str, str]) -> str:
    """One diffusers weight name as it is called here, e.g. down_blocks.1.attentions.0.transformer_blocks.0.attn2
    .to_k.weight -> down.3.attn.blocks.0.cross_attn.k.weight."""
    prefix = next((p for p in blocks if key.startswith(p + ".")), None)
    if prefix is None:
        raise ZooError(f"No block here for diffusers' weight '{key}': is this an SD 1.x/2.x U-Net?")
    rest = key[len(prefix) :]
    for old, new in _INNER:
        rest = rest.replace(old, new)
    return blocks[prefix] + rest


def from_diffusers(reference) -> UNet:
    """This module's U-Net with the config and weights of a diffusers UNet2DConditionModel (sharing its tensors)."""
    config = config_from_diffusers(reference.config)
    blocks = key_map(config)
    state = {rename(k, blocks): v for k, v in reference.state_dict().items()}
    with torch.device("meta"):  # no memory and no time spent on weights about to be replaced
        model = UNet(config)
    model.load_state_dict(state, strict=True, assign=True)  # strict: every weight is mapped, none is left over
    return model.eval()


def diffusers_unet(repo: str, revision: str | None = None, pretrained: bool = True, seed: int = 0, variant=None):
    """diffusers' U-Net of a repo: its weights; or, with pretrained=False, its config alone with random weights."""
    from diffusers import UNet2DConditionModel

    if pretrained:
        return UNet2DConditionModel.from_pretrained(repo, subfolder="unet", revision=revision, variant=variant).eval()
    config = UNet2DConditionModel.load_config(repo, subfolder="unet", revision=revision)
    return random_diffusers_unet(config, seed)


def random_diffusers_unet(config: dict, seed: int = 0):
    """A diffusers UNet2DConditionModel of this config with its own random initialisation, from a fixed seed."""
    from diffusers import UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):  # leave the caller's global random state as it was
        torch.manual_seed(seed)
        return UNet2DConditionModel.from_config(config).eval()


@torch.no_grad()
def max_difference(mine: UNet, reference, latent_size: int = 16, timestep: int = 500, seed: int = 0) -> float:
    """The largest difference between the two U-Nets' outputs on the same random latents and text (77 tokens)."""
    g = torch.Generator().manual_seed(seed)
    c = mine.config
    x = torch.randn(1, c.in_channels, latent_size, latent_size, generator=g)
    text = torch.randn(1, 77, c.context_dim, generator=g)
    expected = reference(x, timestep, encoder_hidden_states=text).sample
    return (mine(x, timestep, text) - expected).abs().max().item()


# --- a guided tour --------------------------------------------------------------------------------


def _describe(step: Step, side: int, skip: int = 0) -> str:
    parts = []
    if step.res is not None:
        c_in, c_out = step.res.conv1.in_channels, step.res.conv1.out_channels
        parts.append(f"ResNet {c_in - skip} + skip {skip} -> {c_out}" if skip else f"ResNet {c_in} -> {c_out}")
    if step.attn is not None:
        a = step.attn.blocks[0].self_attn
        parts.append(f"transformer x{len(step.attn.blocks)} ({a.heads} heads of {a.q.out_features // a.heads})")
    if isinstance(step.resample, Downsample):
        parts.append(f"downsample to {side // 2}x{side // 2}")
    if isinstance(step.resample, Upsample):
        parts.append(f"upsample to {side * 2}x{side * 2}")
    return " + ".join(parts)


def tour(model: UNet, latent_size: int = 64, vae_factor: int = 8, text_tokens: int = 77):
    """A table of the U-Net's blocks in the order they run: what each is, the resolution it works at, how many
    pixels of the image one position there stands for, what it attends to, and its parameters.

    >>> unet.tour(unet.from_diffusers(reference)).groupby("path").parameters.sum()
    """
    import pandas as pd

    rows, level, skips = [], 0, skip_channels(model.config)
    count = lambda m: sum(p.numel() for p in m.parameters())

    def add(name, path, what, module, attn=False):
        side = latent_size >> level
        rows.append({
            "block": name, "path": path, "what": what, "resolution": f"{side}x{side}",
            "pixels per position": f"{vae_factor << level}x{vae_factor << level}",
            "self-attention tokens": side * side if attn else 0, "text tokens": text_tokens if attn else 0,
            "parameters": count(module),
        })  # fmt: skip

    c = model.config
    add("time_mlp", "", "timestep: sinusoids, then an MLP", model.time_mlp)
    add("conv_in", "down", f"conv {c.in_channels} -> {c.channels[0]}", model.conv_in)
    for i, step in enumerate(model.down):
        add(f"down.{i}", "down", _describe(step, latent_size >> level), step, step.attn is not None)
        level += isinstance(step.resample, Downsample)
    add("mid", "middle", "ResNet + transformer + ResNet", model.mid, True)
    for i, step in enumerate(model.up):
        what = _describe(step, latent_size >> level, skips.pop())
        add(f"up.{i}", "up", what, step, step.attn is not None)
        level -= isinstance(step.resample, Upsample)
    add("out", "up", f"norm, conv {c.channels[0]} -> {c.out_channels}", nn.ModuleList([model.norm_out, model.conv_out]))
    table = pd.DataFrame(rows)
    table["share"] = (table.parameters / table.parameters.sum()).map("{:.1%}".format)
    return table
