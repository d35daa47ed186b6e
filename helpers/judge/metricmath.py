"""The arithmetic of the image metrics, on features and probabilities only (no models, no images).

Kept apart from `helpers.judge.metrics` (which loads the networks) so that every formula is tested against an
independent reference: scipy's `sqrtm`, a direct unbiased MMD, hand computations.

>>> frechet_distance(features_a, features_b)      # FID when the features are Inception pool3, FD-DINOv2 on DINOv2
>>> kid(features_a, features_b)                   # (mean, std) over random subsets
>>> inception_score(probabilities)                # (mean, std) over splits
"""

from __future__ import annotations

import numpy as np
from scipy import linalg


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of an N x D feature array, in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need an N x D array with N >= 2 to fit a Gaussian; got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_gaussians(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)) (Dowson & Landau 1982; as in pytorch-fid and clean-fid)."""
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(sigma1 @ sigma2, disp=False)
    if not np.isfinite(covmean).all():  # singular product (fewer samples than dimensions): pytorch-fid's fix
        offset = np.eye(len(sigma1)) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = covmean.real
    return float(max(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean), 0.0))


def frechet_from_samples(features_a, features_b) -> float:
    """The same distance without a D x D square root: Tr sqrt(S1 S2) is the nuclear norm of Xa Xb^T / sqrt(..).

    With centred samples, S1 S2 and (Xb Xa^T)(Xa Xb^T) share their non-zero eigenvalues, so this is exact, and
    fast when the sets are smaller than the feature dimension (where sqrtm is also ill-conditioned).
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    diff = a.mean(axis=0) - b.mean(axis=0)
    xa, xb = a - a.mean(axis=0), b - b.mean(axis=0)
    na, nb = len(a) - 1, len(b) - 1
    cross = np.linalg.svd(xa @ xb.T / np.sqrt(na * nb), compute_uv=False).sum()
    return float(max(diff @ diff + (xa * xa).sum() / na + (xb * xb).sum() / nb - 2 * cross, 0.0))


def frechet_distance(features_a, features_b, method: str = "auto") -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (FID on Inception pool3 features).

    `method`: "sqrtm" (scipy, as pytorch-fid), "samples" (`frechet_from_samples`), or "auto": the cheaper one.
    """
    n, d = min(len(features_a), len(features_b)), np.shape(features_a)[1]
    if method == "samples" or (method == "auto" and n < d):
        return frechet_from_samples(features_a, features_b)
    return frechet_gaussians(*gaussian_stats(features_a), *gaussian_stats(features_b))


def polynomial_mmd(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> float:
    """Unbiased MMD^2 with the kernel (x.y / d + 1)^3 (Bińkowski et al. 2018, "Demystifying MMD GANs")."""
    d = x.shape[1]
    kxx = (x @ x.T / d + coef0) ** degree
    kyy = (y @ y.T / d + coef0) ** degree
    kxy = (x @ y.T / d + coef0) ** degree
    m, n = len(x), len(y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


def kid_subset_size(n_a: int, n_b: int, subset_size: int = 1000) -> int:
    """The size of KID's random subsets: `subset_size`, but at most half the smaller set.

    Subsets as large as the sets are all the same set, and their std is 0 whatever the sets; torch-fidelity refuses
    sets smaller than its subsets. Half the smaller set keeps the subsets different, so the std measures a spread.
    """
    return min(subset_size, min(n_a, n_b) // 2)


def kid(features_a, features_b, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception distance: mean and std of the unbiased MMD^2 over random subsets (Bińkowski et al. 2018).

    As torch-fidelity, except that the subsets hold at most half the smaller set (`kid_subset_size`).
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    size = kid_subset_size(len(a), len(b), subset_size)
    if size < 2:
        raise ValueError(
            f"KID needs at least 4 images in each set (its subsets hold half the smaller set, and at least 2); "
            f"got {len(a)} and {len(b)}"
        )
    rng = np.random.default_rng(seed)
    values = [
        polynomial_mmd(a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)])
        for _ in range(subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def inception_score(probabilities, splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))), mean and std over `splits` (Salimans et al. 2016)."""
    p = np.asarray(probabilities, np.float64)
    splits = max(1, min(splits, len(p)))
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(axis=0, keepdims=True)
        kl = (part * (np.log(part + 1e-12) - np.log(marginal + 1e-12))).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def row_cosines(a, b) -> np.ndarray:
    """cos(a_i, b_i) for each row pair."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def clip_score_from_embeddings(image_embeds, text_embeds) -> np.ndarray:
    """100 * max(cos(image, text), 0) per row pair (Hessel et al. 2021 with w = 100, as the diffusers docs)."""
    return 100 * np.maximum(row_cosines(image_embeds, text_embeds), 0)


def mean_cosine_to_references(embeds, reference_embeds) -> np.ndarray:
    """Per row of `embeds`, the mean cosine similarity to every row of `reference_embeds` (DINO / CLIP-I)."""
    a = np.asarray(embeds, np.float64)
    b = np.asarray(reference_embeds, np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a @ b.T).mean(axis=1)
