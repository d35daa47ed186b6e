"""Handwritten digits for models trained from scratch: data, pictures, a likelihood and a judge.

The data is scikit-learn's copy of the UCI optical digits (1,797 images of 8x8 pixels with 17 grey levels,
0 to 16), which ships inside the `scikit-learn` wheel, so nothing is downloaded. Models see the pixels scaled
to [-1, 1], as Stable Diffusion's VAE and U-Net see theirs. A digit classifier trained on the real training
images judges generated ones: if it reads the digit a model was asked for, the model drew that digit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

LEVELS = 17  # grey levels 0..16
BIN = 2 / (LEVELS - 1)  # the width of one grey level in [-1, 1]


@dataclass(frozen=True)
class Digits:
    """A train/test split of the digits: images (N, 1, 8, 8) in [-1, 1] and their labels (N,)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def load(test_fraction: float = 0.2, seed: int = 0) -> Digits:
    """The 1,797 digits, shuffled with `seed` and split, stratified by label."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    split = train_test_split(images, labels, test_size=test_fraction, random_state=seed, stratify=labels)
    xtr, xte, ytr, yte = split
    return Digits(to_model(xtr), torch.as_tensor(ytr), to_model(xte), torch.as_tensor(yte))


def to_model(pixels) -> torch.Tensor:
    """Grey levels 0..16, any shape with 64 per image, as (N, 1, 8, 8) floats in [-1, 1]."""
    x = torch.as_tensor(np.asarray(pixels), dtype=torch.float32).reshape(-1, 1, 8, 8)
    return x / (LEVELS - 1) * 2 - 1


def to_pixels(x: torch.Tensor) -> np.ndarray:
    """(N, 1, 8, 8) in [-1, 1] as (N, 64) grey levels 0..16, rounded, the classifier's input."""
    levels = ((x.detach().float().clamp(-1, 1) + 1) / 2 * (LEVELS - 1)).round()
    return levels.reshape(len(x), 64).cpu().numpy()


def grid(x: torch.Tensor, columns: int = 10, scale: int = 4) -> Image.Image:
    """Digits side by side, `columns` a row, black on white, each pixel `scale` pixels wide."""
    rows = math.ceil(len(x) / columns)
    tiles = np.full((rows * 9 + 1, columns * 9 + 1), 255, np.uint8)
    for i, image in enumerate(to_pixels(x).reshape(-1, 8, 8)):
        r, c = divmod(i, columns)
        tiles[1 + r * 9 : 9 + r * 9, 1 + c * 9 : 9 + c * 9] = 255 - image * 255 / (LEVELS - 1)
    size = (tiles.shape[1] * scale, tiles.shape[0] * scale)
    return Image.fromarray(tiles).resize(size, Image.Resampling.NEAREST)


def discretized_gaussian_nll(x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """-log P(x) in nats per pixel, P the mass a Gaussian puts on x's grey level (DDPM sec. 3.3, eq. 13).

    The darkest and lightest levels take the tails, so the masses of the 17 levels add up to one.
    """
    inv_std = torch.exp(-0.5 * log_var)
    normal = torch.distributions.Normal(0.0, 1.0)
    cdf_plus = normal.cdf(inv_std * (x - mean + BIN / 2))
    cdf_minus = normal.cdf(inv_std * (x - mean - BIN / 2))
    mass = torch.where(x < -1 + BIN / 2, cdf_plus, torch.where(x > 1 - BIN / 2, 1 - cdf_minus, cdf_plus - cdf_minus))
    return -mass.clamp(min=1e-12).log()


def bits_per_dim(nats_per_image: torch.Tensor) -> float:
    """A negative log-likelihood in nats per image as bits per pixel (uniform guessing costs log2(17) = 4.09)."""
    return (nats_per_image.mean() / (64 * math.log(2))).item()


def classifier(data: Digits):
    """A scikit-learn logistic regression of the real training digits' pixels: the judge of generated ones."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=3.0, max_iter=2000).fit(_features(data.train_x), data.train_y.numpy())


def _features(x: torch.Tensor) -> np.ndarray:
    return to_pixels(x) / (LEVELS - 1)


def accuracy(judge, x: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of images `judge` reads as their label (chance is 10%)."""
    return float((judge.predict(_features(x)) == labels.numpy()).mean())


def confidence(judge, x: torch.Tensor, labels: torch.Tensor) -> float:
    """The probability `judge` gives each image's label, averaged: how recognisable the asked digits are."""
    p = judge.predict_proba(_features(x))
    return float(p[np.arange(len(x)), labels.numpy()].mean())


def spread(x: torch.Tensor, labels: torch.Tensor) -> float:
    """How different the images of one label are from each other: their mean pairwise distance, averaged over
    the labels with two images or more (nan if none has). Falls as samples of a digit start to look alike."""
    per_label = [torch.pdist(x[labels == y].flatten(1)).mean() for y in labels.unique() if (labels == y).sum() > 1]
    return torch.stack(per_label).mean().item() if per_label else float("nan")


def digit_score(judge, x: torch.Tensor) -> float:
    """exp E_x KL(p(y | x) || p(y)): the Inception Score (Salimans et al. 2016) with the digit judge in place of
    Inception. 10 for samples that are each clearly one digit and spread evenly over the ten; 1 for none."""
    p = judge.predict_proba(_features(x))
    kl = (p * (np.log(p + 1e-12) - np.log(p.mean(0) + 1e-12))).sum(1)
    return float(np.exp(kl.mean()))
