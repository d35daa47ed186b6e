"""The digits VAE: training raises the ELBO, its latents follow the prior, a small KL weight lets them spread."""

import math

import pytest
import torch

from helpers.teaching import digits, tinyvae

STEPS = 800


@pytest.fixture(scope="module")
def data():
    return digits.load()


@pytest.fixture(scope="module")
def vae(data):
    return tinyvae.train(data, steps=STEPS, seed=0)


def test_training_raises_the_elbo(data, vae):
    untrained = tinyvae.VAE()
    before, after = tinyvae.nll_bound(untrained, data.test_x), tinyvae.nll_bound(vae.model, data.test_x)
    assert after < 3.2 < math.log2(digits.LEVELS) < before  # better than guessing the 17 grey levels
    assert len(vae.losses) == STEPS and sum(vae.losses[-50:]) < 0.6 * sum(vae.losses[:50])


def test_the_elbo_is_reconstruction_plus_kl(data, vae):
    reconstruction, kl = tinyvae.elbo_terms(vae.model, data.test_x, torch.Generator().manual_seed(0))
    assert (kl >= 0).all() and (reconstruction >= 0).all()
    bound = digits.bits_per_dim(reconstruction + kl)
    assert bound == pytest.approx(tinyvae.nll_bound(vae.model, data.test_x, seed=0))


def test_latents_samples_and_walk(data, vae):
    z = tinyvae.latents(vae.model, data.test_x)
    assert z.shape == (360, 2) and 0.5 < z.std() < 2.5  # near the N(0, I) prior the KL term pulls them to
    assert tinyvae.sample(vae.model, 12).shape == (12, 1, 8, 8)
    walk = tinyvae.latent_walk(vae.model, side=5)
    assert walk.shape == (25, 1, 8, 8) and walk.min() >= -1 and walk.max() <= 1
    assert not torch.allclose(walk[0], walk[-1]), "opposite corners of the latent space decode differently"


def test_a_small_kl_weight_spreads_the_latents_as_sd_s_autoencoder_does(data, vae):
    autoencoder = tinyvae.train(data, kl_weight=0.01, steps=STEPS, seed=0)
    spread = tinyvae.latents(autoencoder.model, data.test_x).std()
    assert spread > 2 * tinyvae.latents(vae.model, data.test_x).std()
