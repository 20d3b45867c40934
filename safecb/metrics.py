"""Metrics with honest uncertainty: every figure comes with its sample size and a 95% bootstrap
interval (docs/results.md). Pure functions over numpy arrays."""

from __future__ import annotations

from typing import Callable

import numpy as np


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Agreement of two binary raters beyond chance; 1 perfect, 0 chance level.

    Defined as 0 when both raters are constant and agree (no information either way)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("kappa needs two non-empty label arrays of the same shape")
    observed = float((a == b).mean())
    pa, pb = a.mean(), b.mean()
    expected = float(pa * pb + (1 - pa) * (1 - pb))
    if expected >= 1.0:
        return 0.0
    return (observed - expected) / (1.0 - expected)


def bootstrap_ci(
    statistic: Callable[..., float], *arrays: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(*arrays)`, resampling rows jointly."""
    n = len(arrays[0])
    if n == 0:
        raise ValueError("bootstrap needs at least one sample")
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for i in range(n_boot):
        idx = rng.integers(0, n, n)
        values[i] = statistic(*(np.asarray(a)[idx] for a in arrays))
    lo, hi = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def clustered_bootstrap_ci(
    statistic: Callable[..., float], *arrays: np.ndarray, clusters: np.ndarray, n_boot: int = 1000, seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(*arrays)` that resamples whole clusters (e.g. all
    seeds of one prompt together), so rows that are not independent are not counted as if they were."""
    clusters = np.asarray(clusters)
    if len(clusters) != len(arrays[0]) or len(clusters) == 0:
        raise ValueError("clusters must label every row of a non-empty sample")
    ids, inverse = np.unique(clusters, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(ids))]
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for i in range(n_boot):
        idx = np.concatenate([members[k] for k in rng.integers(0, len(ids), len(ids))])
        values[i] = statistic(*(np.asarray(a)[idx] for a in arrays))
    lo, hi = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def wilson(successes: int, n: int) -> dict:
    """A share from counts with its Wilson 95% interval: {"value", "ci", "n"} (NaN when n is 0)."""
    if n == 0:
        return {"value": float("nan"), "ci": [float("nan"), float("nan")], "n": 0}
    from scipy.stats import binomtest

    ci = binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return {"value": successes / n, "ci": [float(ci.low), float(ci.high)], "n": n}


def rate(flags: np.ndarray, n_boot: int = 1000, seed: int = 0, clusters: np.ndarray | None = None) -> dict:
    """A share with its interval: {"value", "ci", "n"}; with `clusters`, the interval resamples whole
    clusters (then "n_clusters" says how many)."""
    flags = np.asarray(flags, float)
    if clusters is None:
        return {"value": float(flags.mean()), "ci": bootstrap_ci(np.mean, flags, n_boot=n_boot, seed=seed), "n": len(flags)}
    ci = clustered_bootstrap_ci(np.mean, flags, clusters=clusters, n_boot=n_boot, seed=seed)
    return {"value": float(flags.mean()), "ci": ci, "n": len(flags), "n_clusters": len(np.unique(clusters))}


def kappa(a: np.ndarray, b: np.ndarray, n_boot: int = 1000, seed: int = 0, clusters: np.ndarray | None = None) -> dict:
    """Cohen's κ with a bootstrap interval; with `clusters`, one that resamples whole clusters
    (then "n_clusters" says how many)."""
    if clusters is None:
        return {"value": cohen_kappa(a, b), "ci": bootstrap_ci(cohen_kappa, a, b, n_boot=n_boot, seed=seed), "n": len(a)}
    ci = clustered_bootstrap_ci(cohen_kappa, a, b, clusters=clusters, n_boot=n_boot, seed=seed)
    return {"value": cohen_kappa(a, b), "ci": ci, "n": len(a), "n_clusters": len(np.unique(clusters))}


def psnr_db(reference: np.ndarray, reconstruction: np.ndarray) -> float:
    """PSNR over all pixels of uint8 images (peak 255)."""
    err = ((reference.astype(np.float64) - reconstruction.astype(np.float64)) / 255.0) ** 2
    return float(10 * np.log10(1.0 / max(err.mean(), 1e-12)))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [n, d] (FID's formula)."""
    from scipy import linalg

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError("frechet_distance needs two [n ≥ 2, d] feature arrays of the same width")
    mu_a, mu_b = a.mean(0), b.mean(0)
    eps = np.eye(a.shape[1]) * 1e-6  # keeps the square root finite when a covariance is singular
    cov_a, cov_b = np.cov(a, rowvar=False) + eps, np.cov(b, rowvar=False) + eps
    root = np.real(linalg.sqrtm(cov_a @ cov_b))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


def code_object_share(codes: np.ndarray, patch_labels: np.ndarray, group: np.ndarray) -> dict:
    """How much a tokenizer gives a group of objects codes of their own.

    codes, patch_labels: equal-shape int arrays (a visual token's code, and what its patch shows);
    group: a boolean mask over label values (e.g. the harmful concepts). For every patch of the group,
    the share of all uses of its code that fall on the group: 1 when the group's codes are never used
    elsewhere, near the group's base rate when its codes are shared. Returns the mean share, the
    fraction of group patches whose code is ≥ 90% the group's, and the number of group patches."""
    codes, patch_labels = np.asarray(codes).ravel(), np.asarray(patch_labels).ravel()
    if codes.shape != patch_labels.shape:
        raise ValueError(f"codes and patch_labels differ in size: {codes.shape} vs {patch_labels.shape}")
    in_group = np.asarray(group, dtype=bool)[patch_labels]
    if not in_group.any():
        return {"mean_share": float("nan"), "exclusive_fraction": float("nan"), "n": 0}
    size = int(codes.max()) + 1
    share = np.bincount(codes[in_group], minlength=size) / np.maximum(np.bincount(codes, minlength=size), 1)
    mine = share[codes[in_group]]
    return {"mean_share": float(mine.mean()), "exclusive_fraction": float((mine >= 0.9).mean()), "n": int(in_group.sum())}
