"""The report's statistics: every interval is recomputed from result rows, here.

Rows of one prompt (its seeds) are not independent, so shares of generations, cuts, differences and
κ resample whole prompts (clusters): each cluster is reduced to a few sums, SciPy's bootstrap
resamples cluster indices, and the statistic is computed from the resampled totals. Counts of
independent things (renders, each its own scene; attack instances) get Wilson intervals. Every
resampling is seeded, so the same rows always give the same figures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.stats import bootstrap

from .. import metrics

N_RESAMPLES = 2000  # bootstrap resamples per interval
SEED = 0  # the bootstrap's random state: fixed, so figures are reproducible to the digit


@dataclass(frozen=True)
class Figure:
    """A measured value with its 95% interval and sample sizes."""

    value: float  # the point estimate
    lo: float  # interval's lower end (NaN when there is none)
    hi: float  # interval's upper end
    n: int  # rows (images, renders, instances) behind it
    n_clusters: int | None = None  # prompts resampled, when the interval is clustered


def cluster_sums(clusters: np.ndarray, *columns: np.ndarray) -> np.ndarray:
    """Per cluster, the sum of each column: [n_clusters, n_columns], clusters in sorted order."""
    clusters = np.asarray(clusters)
    if len(clusters) == 0:
        raise ValueError("no rows to sum")
    _, inverse = np.unique(clusters, return_inverse=True)
    out = np.zeros((inverse.max() + 1, len(columns)))
    for j, column in enumerate(columns):
        column = np.asarray(column, float)
        if column.shape != clusters.shape:
            raise ValueError("every column must label the same rows as the clusters")
        np.add.at(out[:, j], inverse, column)
    return out


def clustered(statistic: Callable[[np.ndarray], np.ndarray], sums: np.ndarray, n: int,
              n_resamples: int = N_RESAMPLES, seed: int = SEED) -> Figure:
    """`statistic(totals)` (totals: [..., n_columns] column sums over clusters) with a percentile
    interval from resampling whole clusters."""
    sums = np.asarray(sums, float)
    with np.errstate(invalid="ignore", divide="ignore"):  # a cut of nothing is NaN, said as such
        value = float(statistic(sums.sum(0)))
    if len(sums) < 2:
        return Figure(value, float("nan"), float("nan"), n, len(sums))

    def resampled(idx, axis=-1):
        idx = np.asarray(idx, int)
        return statistic(sums[idx].sum(axis=-2))

    with np.errstate(invalid="ignore", divide="ignore"):
        res = bootstrap((np.arange(len(sums)),), resampled, vectorized=True, n_resamples=n_resamples,
                        method="percentile", random_state=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    return Figure(value, float(lo), float(hi), n, len(sums))


def share(flags, clusters) -> Figure:
    """Share of rows flagged, resampling clusters. When every row agrees (a share of 0 or 1) the
    bootstrap has nothing to resample, so the interval is Wilson's over the clusters instead, as if
    each prompt were one observation (the cautious reading)."""
    flags = np.asarray(flags, float)
    sums = cluster_sums(clusters, flags, np.ones_like(flags))
    if len(flags) and flags.min() == flags.max():
        bounds = wilson(int(round(flags[0])) * len(sums), len(sums))
        return Figure(float(flags[0]), bounds.lo, bounds.hi, len(flags), len(sums))
    return clustered(lambda t: t[..., 0] / t[..., 1], sums, len(flags))


def cut(before, after, clusters) -> Figure:
    """1 − Σafter / Σbefore over the same prompts and seeds, resampling prompts (paired)."""
    before, after = np.asarray(before, float), np.asarray(after, float)
    sums = cluster_sums(clusters, before, after)
    return clustered(lambda t: 1.0 - t[..., 1] / t[..., 0], sums, len(before))


def mean_difference(before, before_clusters, after, after_clusters) -> Figure:
    """mean(before) − mean(after), two sets of rows whose clusters (prompts) are shared: a prompt
    is resampled with all its rows on both sides."""
    before, after = np.asarray(before, float), np.asarray(after, float)
    clusters = np.concatenate([np.asarray(before_clusters), np.asarray(after_clusters)])
    side = np.concatenate([np.ones(len(before)), np.zeros(len(after))])
    values = np.concatenate([before, after])
    sums = cluster_sums(clusters, values * side, side, values * (1 - side), 1 - side)
    return clustered(lambda t: t[..., 0] / t[..., 1] - t[..., 2] / t[..., 3], sums, len(before))


def kappa(a, b, clusters) -> Figure:
    """Cohen's κ of two binary raters over the same rows, resampling clusters (0 when both raters
    are constant and agree)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    sums = cluster_sums(clusters, a & b, a & ~b, ~a & b, ~a & ~b)

    def statistic(t):
        total = t[..., 0] + t[..., 1] + t[..., 2] + t[..., 3]
        observed = (t[..., 0] + t[..., 3]) / total
        pa, pb = (t[..., 0] + t[..., 1]) / total, (t[..., 0] + t[..., 2]) / total
        expected = pa * pb + (1 - pa) * (1 - pb)
        return np.where(expected >= 1.0, 0.0, (observed - expected) / np.maximum(1.0 - expected, 1e-12))

    return clustered(statistic, sums, len(a))


def wilson(successes: int, n: int) -> Figure:
    """A share of independent counts with its Wilson interval (`safecb.metrics.wilson`)."""
    figure = metrics.wilson(int(successes), int(n))
    return Figure(figure["value"], *figure["ci"], int(n))


def fmt(figure: Figure, digits: int = 3, interval: bool = True) -> str:
    """"0.909 [0.854, 0.958]" (or the value alone)."""
    value = f"{figure.value:.{digits}f}"
    if not interval or np.isnan(figure.lo):
        return value
    return f"{value} [{figure.lo:.{digits}f}, {figure.hi:.{digits}f}]"


def pct(figure: Figure, interval: bool = True) -> str:
    """"78% [74%, 81%]" (or the value alone)."""
    value = f"{figure.value * 100:.0f}%"
    if not interval or np.isnan(figure.lo):
        return value
    return f"{value} [{figure.lo * 100:.0f}%, {figure.hi * 100:.0f}%]"


def n_text(figure: Figure) -> str:
    """"384 (48 prompts)" or "200"."""
    return f"{figure.n} ({figure.n_clusters} prompts)" if figure.n_clusters is not None else f"{figure.n}"
