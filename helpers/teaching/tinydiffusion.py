"""A diffusion model trained from scratch on a laptop CPU in minutes: 8x8 handwritten digits.

DDPM (Ho et al. 2020): a U-Net learns to predict the noise added to an image, with a plain mean squared error,
and samples by undoing the noise step by step. Improved DDPM (Nichol and Dhariwal 2021): a cosine schedule,
and a variance the model learns, trained with the hybrid loss L_simple + lambda L_vlb. DDIM (Song et al. 2021):
deterministic sampling in few steps. Classifier-free guidance (Ho and Salimans 2022): one model, trained with its
label dropped at random, predicts the noise with and without the label, and sampling extrapolates between them.

The network is `helpers.teaching.unet.UNet`, the same code as Stable Diffusion's U-Net at a toy size, and the label
takes the place of the text: one token that cross-attention reads (the token of label 10 means "no label",
as the empty prompt does for SD). Timesteps run from 0 to T - 1 as in diffusers; alpha-bar[t] is the signal
left after step t.

>>> data = digits.load()
>>> run = tinydiffusion.train(data, schedule="cosine", learned_variance=True, steps=2000)
>>> x0 = tinydiffusion.sample(run.model, labels=torch.arange(10), steps=50)
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..base.errors import ZooError
from . import digits as D
from .unet import Config, UNet

T = 1000
NO_LABEL = 10  # the label token that stands for "no label"


@contextlib.contextmanager
def one_thread():
    """Run torch on one CPU thread inside (as a decorator too): tensors this small gain little from more threads,
    and lose much where threads wait on each other, on a busy machine (CI runs notebooks side by side)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --- noise schedules -----------------------------------------------------------------------------


def linear_schedule(steps: int = T, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """alpha-bar of DDPM's schedule, betas linear from 1e-4 to 0.02 (Ho et al. 2020, sec. 4)."""
    return torch.cumprod(1 - torch.linspace(beta_start, beta_end, steps, dtype=torch.float64), dim=0)


def cosine_alpha_bar(t: torch.Tensor, steps: int = T, s: float = 0.008) -> torch.Tensor:
    """The cosine schedule's formula: f(t) / f(0), f(t) = cos((t/T + s) / (1 + s) * pi/2)^2 (improved DDPM eq. 17)."""
    f = lambda u: torch.cos((u / steps + s) / (1 + s) * math.pi / 2) ** 2
    return f(torch.as_tensor(t, dtype=torch.float64)) / f(torch.zeros((), dtype=torch.float64))


def cosine_schedule(steps: int = T, max_beta: float = 0.999) -> torch.Tensor:
    """alpha-bar of improved DDPM's cosine schedule, with each beta capped at 0.999 (eq. 17 and below it).

    Entry t is the paper's alpha-bar_{t+1}: the paper counts steps from 1, diffusers from 0.
    """
    ab = cosine_alpha_bar(torch.arange(steps + 1), steps)
    betas = (1 - ab[1:] / ab[:-1]).clamp(max=max_beta)
    return torch.cumprod(1 - betas, dim=0)


SCHEDULES = {"linear": linear_schedule, "cosine": cosine_schedule}


def respace(alpha_bar: torch.Tensor, steps: int) -> torch.Tensor:
    """`steps` timesteps evenly spaced from T - 1 down to 0, for sampling in fewer steps (improved DDPM sec. 4)."""
    return torch.linspace(len(alpha_bar) - 1, 0, steps).round().long()


# --- the forward process and the true posterior --------------------------------------------------


def _at(values: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return values[t].float().reshape(-1, 1, 1, 1)


def q_sample(x0: torch.Tensor, t: torch.Tensor, alpha_bar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha-bar_t) x0 + sqrt(1 - alpha-bar_t) noise (DDPM eq. 4)."""
    ab = _at(alpha_bar, t)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def posterior(x0, x_t, ab_t, ab_prev):
    """Mean and variance of q(x_{t-1} | x_t, x0) (DDPM eq. 6-7); ab_prev is alpha-bar one (respaced) step earlier."""
    beta = 1 - ab_t / ab_prev
    mean = (ab_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - ab_prev) * x_t) / (1 - ab_t)
    return mean, beta * (1 - ab_prev) / (1 - ab_t)


def predict_x0(eps, x_t, ab_t):
    """The clean image the predicted noise implies: (x_t - sqrt(1 - alpha-bar) eps) / sqrt(alpha-bar)."""
    return (x_t - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()


def log_variance(v, beta, beta_tilde):
    """The reverse step's log variance: log beta-tilde, or learned, exp(f log beta + (1 - f) log beta-tilde) with
    f = (v + 1) / 2 from the model's second output (improved DDPM eq. 15)."""
    if v is None:
        return beta_tilde.log()
    f = (v + 1) / 2
    return f * beta.log() + (1 - f) * beta_tilde.log()


# --- the model -----------------------------------------------------------------------------------


class Denoiser(nn.Module):
    """A toy Stable Diffusion U-Net for 8x8 digits, the label read by cross-attention as SD reads its text."""

    def __init__(self, schedule: str = "linear", learned_variance: bool = False, width: int = 16):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ZooError(f"Unknown schedule '{schedule}': choose one of {', '.join(SCHEDULES)}.")
        self.schedule, self.learned_variance = schedule, learned_variance
        self.register_buffer("alpha_bar", SCHEDULES[schedule](), persistent=False)
        self.labels = nn.Embedding(11, width)  # 0-9, and NO_LABEL
        self.unet = UNet(Config(in_channels=1, out_channels=2 if learned_variance else 1, channels=(width, 2 * width),
                                attention=(False, True), heads=(4, 4), depth=(1, 1), layers_per_block=1,
                                context_dim=width, groups=8))  # fmt: skip

    def forward(self, x, t, labels):
        """The predicted noise, and the variance output v (None unless the variance is learned)."""
        out = self.unet(x, t, self.labels(labels)[:, None])
        return (out[:, :1], out[:, 1:]) if self.learned_variance else (out, None)


# --- training ------------------------------------------------------------------------------------


def vlb_term(model, x0, t, x_t, eps, v, clip: bool = False) -> torch.Tensor:
    """L_t in nats per image: KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)), or at t = 0 -log p(x0 | x1) on the
    grey levels (DDPM eq. 5; improved DDPM sec. 2). clip: the model's x0 estimate is clipped to [-1, 1] first."""
    ab = model.alpha_bar  # float64: 1 - alpha-bar at small t needs the digits
    ab_prev = torch.cat([ab.new_ones(1), ab[:-1]])
    beta_tilde = (1 - ab / ab_prev) * (1 - ab_prev) / (1 - ab)
    clipped = torch.cat([beta_tilde[1:2], beta_tilde[1:]])  # beta-tilde_0 = 0, and its log is needed at t = 0
    ab_t, ab_prev, beta = _at(ab, t), _at(ab_prev, t), _at(1 - ab / ab_prev, t)
    x0_hat = predict_x0(eps, x_t, ab_t)
    model_mean, _ = posterior(x0_hat.clamp(-1, 1) if clip else x0_hat, x_t, ab_t, ab_prev)
    true_mean, true_var = posterior(x0, x_t, ab_t, ab_prev)[0], _at(clipped, t)
    model_log_var = log_variance(v, beta, true_var)
    kl = 0.5 * (model_log_var - true_var.log() - 1 + (true_var + (true_mean - model_mean) ** 2)
                * torch.exp(-model_log_var))  # fmt: skip
    decoder = D.discretized_gaussian_nll(x0, model_mean, model_log_var)
    per_pixel = torch.where((t == 0).reshape(-1, 1, 1, 1), decoder, kl)
    return per_pixel.flatten(1).sum(1)


def loss(model, x0, labels, generator=None, vlb_weight: float = 0.001) -> torch.Tensor:
    """DDPM's L_simple, ||eps - eps_theta(x_t, t)||^2 at a uniform t (eq. 14); with a learned variance plus
    lambda L_vlb, L_vlb = T * E_t[L_t], through the variance only (improved DDPM sec. 3.1, lambda = 0.001)."""
    t = torch.randint(0, T, (len(x0),), generator=generator)
    noise = torch.randn(x0.shape, generator=generator)
    x_t = q_sample(x0, t, model.alpha_bar, noise)
    eps, v = model(x_t, t, labels)
    simple = F.mse_loss(eps, noise)
    if v is None:
        return simple
    vlb = vlb_term(model, x0, t, x_t, eps.detach(), v) / (64 * math.log(2))  # bits per pixel, as in their code
    return simple + vlb_weight * T * vlb.mean()


@dataclass
class Run:
    """A trained model, its loss at every step, samples drawn along the way, and the seconds it took."""

    model: Denoiser
    losses: list[float] = field(default_factory=list)
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    seconds: float = 0.0


@one_thread()
def train(data: D.Digits, schedule: str = "linear", learned_variance: bool = False, conditional: bool = False,
          steps: int = 2000, batch_size: int = 128, lr: float = 2e-3, label_dropout: float = 0.1, width: int = 16,
          seed: int = 0, snapshot_every: int = 0, callback: Callable | None = None) -> Run:  # fmt: skip
    """Train a `Denoiser` from scratch with Adam, the learning rate decaying to zero on a cosine.

    conditional=False trains an unconditional model (every label is dropped); conditional=True drops each label
    with probability `label_dropout`, so that one model learns both (classifier-free guidance's training).
    `snapshot_every` steps, 20 DDIM samples are kept; `callback(step, loss)` sees every step.
    """
    with torch.random.fork_rng(devices=[]):  # the initial weights from `seed`, the caller's random state untouched
        torch.manual_seed(seed)
        run = Run(Denoiser(schedule, learned_variance, width))
    g = torch.Generator().manual_seed(seed)
    model, drop = run.model.train(), label_dropout if conditional else 1.0
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
    start = time.perf_counter()
    for step in range(1, steps + 1):
        i = torch.randint(0, len(data.train_x), (batch_size,), generator=g)
        labels = torch.where(torch.rand(batch_size, generator=g) < drop, NO_LABEL, data.train_y[i])
        value = loss(model, data.train_x[i], labels, generator=g)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        decay.step()
        run.losses.append(value.item())
        if callback:
            callback(step, run.losses[-1])
        if snapshot_every and (step % snapshot_every == 0 or step == steps):
            run.snapshots[step] = sample(model, labels=None if not conditional else torch.arange(20) % 10,
                                         n=20, steps=20, method="ddim")  # fmt: skip
            model.train()
    run.seconds = time.perf_counter() - start
    return run


# --- sampling ------------------------------------------------------------------------------------


def guided(model, x, t, labels, guidance_scale: float):
    """The model's noise and variance outputs; with guidance, eps_uncond + scale (eps_label - eps_uncond)."""
    tt = torch.full((len(x),), int(t))
    if guidance_scale == 1.0:
        return model(x, tt, labels)
    no_label = torch.full_like(labels, NO_LABEL)
    (eps_u, _), (eps_c, v) = model(x, tt, no_label), model(x, tt, labels)
    return eps_u + guidance_scale * (eps_c - eps_u), v


def ddpm_step(eps, v, x_t, ab_t, ab_prev, noise, clip: bool = True):
    """DDPM's ancestral step: the posterior mean given x0's estimate, plus noise of the model's variance."""
    x0 = predict_x0(eps, x_t, ab_t)
    x0 = x0.clamp(-1, 1) if clip else x0
    mean, beta_tilde = posterior(x0, x_t, ab_t, ab_prev)
    log_var = log_variance(v, 1 - ab_t / ab_prev, beta_tilde.clamp(min=1e-20))
    return mean + torch.exp(0.5 * log_var) * noise


def ddim_step(eps, x_t, ab_t, ab_prev, clip: bool = True):
    """DDIM with eta = 0 (Song et al. eq. 12): x0's estimate, noised again to the previous level, no new noise.

    With clip, x0 is clipped to [-1, 1] and the noise recomputed from it (as improved DDPM's code does).
    """
    x0 = predict_x0(eps, x_t, ab_t)
    if clip:
        x0 = x0.clamp(-1, 1)
        eps = (x_t - ab_t.sqrt() * x0) / (1 - ab_t).sqrt()
    return ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps


@torch.no_grad()
@one_thread()
def sample(model: Denoiser, labels: torch.Tensor | None = None, n: int | None = None, steps: int = 50,
           method: str = "ddpm", guidance_scale: float = 1.0, seed: int = 0) -> torch.Tensor:  # fmt: skip
    """Draw digits, (n, 1, 8, 8) in [-1, 1]: of the given labels, or unconditional (labels=None, n of them)."""
    model.eval()
    labels = torch.full((n,), NO_LABEL) if labels is None else torch.as_tensor(labels)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(labels), 1, 8, 8, generator=g)
    ab, timesteps = model.alpha_bar.float(), respace(model.alpha_bar, steps)
    for i, t in enumerate(timesteps):
        ab_t, ab_prev = ab[t], ab[timesteps[i + 1]] if i + 1 < len(timesteps) else ab.new_tensor(1.0)
        eps, v = guided(model, x, t, labels, guidance_scale)
        if method == "ddim":
            x = ddim_step(eps, x, ab_t, ab_prev)
        else:
            last = i + 1 == len(timesteps)  # the last step adds no noise
            noise = torch.zeros_like(x) if last else torch.randn(x.shape, generator=g)
            x = ddpm_step(eps, v, x, ab_t, ab_prev, noise)
    return x.clamp(-1, 1)


# --- evaluation ----------------------------------------------------------------------------------


@torch.no_grad()
@one_thread()
def nll(model: Denoiser, x0: torch.Tensor, timesteps: int = 50, seed: int = 0, learned: bool = True) -> float:
    """The variational bound on held-out images' negative log-likelihood in bits per pixel (DDPM eq. 5): L_T, plus
    the KL terms estimated from about `timesteps` random t per image, one in each of as many slices of 1..T-1
    (narrow where the terms are large, at small t), plus L_0. learned=False: fixed variance even if it is learned.
    """
    model.eval()
    g = torch.Generator().manual_seed(seed)
    ab_last = model.alpha_bar[-1].float()
    nats = 0.5 * (ab_last * x0**2 + (1 - ab_last) - 1 - (1 - ab_last).log()).flatten(1).sum(1)  # L_T: KL to N(0, I)
    nats = nats + _term(model, x0, torch.zeros(len(x0), dtype=torch.long), g, learned)  # L_0
    edges = torch.unique(torch.logspace(0, math.log10(T), timesteps + 1).round().long())
    for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        t = torch.randint(lo, hi, (len(x0),), generator=g)
        nats = nats + (hi - lo) * _term(model, x0, t, g, learned)
    return D.bits_per_dim(nats)


def _term(model, x0, t, g, learned=True):
    noise = torch.randn(x0.shape, generator=g)
    x_t = q_sample(x0, t, model.alpha_bar, noise)
    eps, v = model(x_t, t, torch.full((len(x0),), NO_LABEL))
    return vlb_term(model, x0, t, x_t, eps, v if learned else None, clip=True)


# --- pictures ------------------------------------------------------------------------------------


def plot_losses(runs: dict[str, Run], smooth: int = 50):
    """Each run's training loss against the step, as a moving average over `smooth` steps (a matplotlib figure)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, run in runs.items():
        losses = torch.tensor(run.losses)
        k = max(1, min(smooth, len(losses)))
        ax.plot(range(k, len(losses) + 1), losses.unfold(0, k, 1).mean(1).numpy(), label=name)
    ax.set(xlabel="training step", ylabel="loss", yscale="log", title="Training loss (moving average)")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_schedules(steps: int = T):
    """alpha-bar (the signal left) against t for the linear and cosine schedules (improved DDPM fig. 5)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, schedule in SCHEDULES.items():
        ax.plot(schedule(steps).numpy(), label=name)
    ax.set(xlabel="t", ylabel="alpha-bar", title="How much signal is left at step t")
    ax.legend()
    fig.tight_layout()
    return fig
