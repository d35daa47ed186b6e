"""A variational autoencoder of the 8x8 digits, trained from scratch in seconds: the ELBO, a latent space, samples.

Kingma and Welling 2014: an encoder maps an image to a Gaussian q(z | x) over a small latent z, a decoder maps z
back to a distribution over images, and training maximises the evidence lower bound
ELBO = E_q[log p(x | z)] - KL(q(z | x) || N(0, I)) <= log p(x). Stable Diffusion's autoencoder ("KL-f8",
Rombach et al. 2022, sec. 3 and appendix G) is the same construction, convolutional (512x512x3 pixels to
64x64x4 latents) and with the KL term weighted by only 1e-6: it is kept to compress, not to sample from, so
its latents are far from N(0, I) and are multiplied by a scaling factor (0.18215) to unit variance.
`kl_weight` reproduces that trade-off here.

>>> run = tinyvae.train(digits.load(), steps=3000)
>>> tinyvae.sample(run.model, 20)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from . import digits as D
from .tinydiffusion import one_thread


class VAE(nn.Module):
    """Encoder and decoder, each a two-layer MLP; the decoder's variance is one learned value per pixel."""

    def __init__(self, latent_dim: int = 2, hidden: int = 256):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                     nn.SiLU(), nn.Linear(hidden, 2 * latent_dim))  # fmt: skip
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                     nn.Linear(hidden, 64), nn.Unflatten(1, (1, 8, 8)))  # fmt: skip
        self.log_var = nn.Parameter(torch.full((1, 1, 8, 8), -3.0))

    def encode(self, x):
        """The mean and log variance of q(z | x)."""
        return self.encoder(x).chunk(2, dim=-1)

    def decode(self, z):
        """The mean image of p(x | z)."""
        return self.decoder(z)


def elbo_terms(model: VAE, x: torch.Tensor, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """-log p(x | z) on the grey levels, with z drawn by the reparameterisation trick (Kingma and Welling sec. 2.4),
    and KL(q(z | x) || N(0, I)) in closed form (their appendix B); both in nats per image."""
    mean, log_var = model.encode(x)
    z = mean + torch.exp(0.5 * log_var) * torch.randn(mean.shape, generator=generator)
    reconstruction = D.discretized_gaussian_nll(x, model.decode(z), model.log_var).flatten(1).sum(1)
    kl = 0.5 * (mean**2 + log_var.exp() - 1 - log_var).sum(1)
    return reconstruction, kl


@dataclass
class Run:
    """A trained VAE and its loss (the negative ELBO, in bits per pixel, when kl_weight is 1) at every step."""

    model: VAE
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


@one_thread()
def train(data: D.Digits, latent_dim: int = 2, kl_weight: float = 1.0, steps: int = 3000, batch_size: int = 128,
          lr: float = 2e-3, seed: int = 0) -> Run:  # fmt: skip
    """Train a VAE from scratch with Adam, minimising reconstruction + kl_weight * KL (1: the ELBO itself)."""
    with torch.random.fork_rng(devices=[]):  # the initial weights from `seed`, the caller's random state untouched
        torch.manual_seed(seed)
        run = Run(VAE(latent_dim))
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(run.model.parameters(), lr=lr)
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
    start = time.perf_counter()
    for _ in range(steps):
        x = data.train_x[torch.randint(0, len(data.train_x), (batch_size,), generator=g)]
        reconstruction, kl = elbo_terms(run.model, x, g)
        value = (reconstruction + kl_weight * kl).mean() / (64 * math.log(2))
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        decay.step()
        run.losses.append(value.item())
    run.seconds = time.perf_counter() - start
    return run


@torch.no_grad()
def nll_bound(model: VAE, x: torch.Tensor, seed: int = 0) -> float:
    """-ELBO on held-out images in bits per pixel: an upper bound on their negative log-likelihood."""
    reconstruction, kl = elbo_terms(model, x, torch.Generator().manual_seed(seed))
    return D.bits_per_dim(reconstruction + kl)


@torch.no_grad()
def reconstruct(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """Each image through the encoder's mean and the decoder: what the latent keeps of it."""
    return model.decode(model.encode(x)[0]).clamp(-1, 1)


@torch.no_grad()
def latents(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """The encoder's mean for each image, (N, latent_dim)."""
    return model.encode(x)[0]


@torch.no_grad()
def sample(model: VAE, n: int, seed: int = 0) -> torch.Tensor:
    """New digits: z from the prior N(0, I), decoded to the mean image."""
    z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed))
    return model.decode(z).clamp(-1, 1)


@torch.no_grad()
def latent_walk(model: VAE, side: int = 10, span: float = 2.0) -> torch.Tensor:
    """The decoded images of a side x side grid of points of a 2-D latent space, from -span to span."""
    a = torch.linspace(-span, span, side)
    z = torch.stack(torch.meshgrid(a.flip(0), a, indexing="ij")[::-1], dim=-1).reshape(-1, 2)
    return model.decode(z).clamp(-1, 1)


def plot_latents(model: VAE, data: D.Digits):
    """The test digits' 2-D latents, coloured by label (a matplotlib figure)."""
    import matplotlib.pyplot as plt

    z = latents(model, data.test_x).numpy()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    points = ax.scatter(z[:, 0], z[:, 1], c=data.test_y.numpy(), cmap="tab10", s=10)
    fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set(title="Where the encoder puts each test digit", xlabel="z[0]", ylabel="z[1]")
    return fig
