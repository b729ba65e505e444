"""Bootstrap draws over items or clusters, from per-item sufficient statistics.

Why a bootstrap over *sufficient statistics*: a corpus metric (BLEU-4) is not a mean of per-item scores, so each
resample must recompute the corpus statistic from the resampled items. Every statistic here is f(sum over items of a
per-item vector): a mean is f(s) = s / n; corpus BLEU is sacrebleu's score of the summed n-gram counts (lengths,
matches, totals: soaes_bench.metrics.corpus_bleu), so a resample costs one small sum instead of re-tokenising every
sentence. bits-per-byte from (nll_nats, bytes) pairs is sum(nll) / sum(bytes) / ln 2.

Units: the bootstrap resamples *units*, which are the items themselves or, given cluster keys (an item's source
document: its law or news article), whole clusters of items, the paired clustered bootstrap (Davison & Hinkley 1997,
sec. 3.8; Field & Welsh 2007). A unit's row is the sum of its items' rows and a resample's statistic is computed from
the summed rows and the summed item counts, so a mean is sum / items and a ratio (bits per byte) is recomputed over
the resampled documents. With one item per unit the draws are exactly the item-level ones.

The random draw is a seeded numpy Generator, one `integers(0, n, (resamples, n))` stream (drawn in row chunks, which
yields the same numbers), so results are reproducible and match a plain numpy implementation with the same seed.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np

from soaes_bench.defaults import BOOTSTRAP_SEED, CONFIDENCE, RESAMPLES

_CHUNK = 2_000_000  # items gathered per chunk of resamples (bounds memory for large n)
Statistic = Callable[[np.ndarray, int], np.ndarray]  # (R, k) sums, n -> (R,) values


def mean_statistic(sums: np.ndarray, n: int) -> np.ndarray:
    return sums[:, 0] / n


def bits_per_byte_statistic(sums: np.ndarray, n: int) -> np.ndarray:
    """Per-item columns (log-likelihood in nats, bytes) -> corpus bits per byte, as lm-eval aggregates it.

    abs() because lm-eval stores the (negative) log-likelihood and other writers the (positive) NLL.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(sums[:, 0]) / sums[:, 1] / math.log(2)


def perplexity_statistic(sums: np.ndarray, n: int) -> np.ndarray:
    """Per-item columns (log-likelihood in nats, bytes or words) -> corpus perplexity exp(-sum ll / sum count)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.exp(np.abs(sums[:, 0]) / sums[:, 1])


def _as_items(x) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x[:, None] if x.ndim == 1 else x


class Units(NamedTuple):
    """The resampling units of n items: per-unit sums of the item rows (G, k), items per unit (G,), the unit keys in
    first-seen order, and whether some unit holds more than one item (`clustered`)."""

    sums: np.ndarray
    sizes: np.ndarray
    keys: list
    clustered: bool


def units(x, clusters=None) -> Units:
    """Group per-item rows (n,) or (n, k) into resampling units: one per item (clusters None) or one per distinct
    cluster key. A None/NaN key makes its item a unit of its own. With one item per key the units are the items, in
    their order, so the bootstrap draws are exactly the item-level ones."""
    x = _as_items(x)
    if clusters is None:
        return Units(x, np.ones(len(x)), list(range(len(x))), False)
    keys = list(clusters)
    if len(keys) != len(x):
        raise ValueError(f"got {len(keys)} cluster keys for {len(x)} items")
    index: dict = {}
    codes = np.array([index.setdefault(("item", i) if k is None or (isinstance(k, float) and math.isnan(k)) else k,
                                       len(index)) for i, k in enumerate(keys)], dtype=np.intp)
    g = len(index)
    if g == len(x):  # every key once: the items themselves (same order, same draws)
        return Units(x, np.ones(len(x)), list(index), False)
    sums = np.zeros((g, x.shape[1]))
    np.add.at(sums, codes, x)
    return Units(sums, np.bincount(codes, minlength=g).astype(float), list(index), True)


def unit_draws(u: Units, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """((R, k) sums, (R,) item counts) of `resamples` bootstrap draws of the G units, G per draw (seeded; the same
    `integers(0, G, (R, G))` stream as the item-level bootstrap, drawn in row chunks)."""
    s, m = u.sums, u.sizes
    g = len(s)
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK // max(1, g * s.shape[1]))
    sums, sizes = [], []
    for start in range(0, resamples, rows):
        idx = rng.integers(0, g, size=(min(rows, resamples - start), g))
        sums.append(s[idx].sum(axis=1))
        sizes.append(m[idx].sum(axis=1) if u.clustered else np.full(len(idx), float(g)))
    if not sums:
        return np.zeros((0, s.shape[1])), np.zeros(0)
    return np.concatenate(sums), np.concatenate(sizes)


def resample_sums(x, resamples: int, seed: int) -> np.ndarray:
    """(R, k) sums of per-item rows over `resamples` bootstrap draws of the n items (seeded)."""
    return unit_draws(units(x), resamples, seed)[0]


def jackknife(u: Units, statistic: Statistic) -> np.ndarray:
    """(G,) delete-one-unit jackknife values of `statistic` (the statistic without unit g, for every g)."""
    tot, n = u.sums.sum(axis=0), u.sizes.sum()
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.asarray(statistic(tot[None, :] - u.sums, n - u.sizes), dtype=float)


def jackknife_se(values) -> float:
    """Jackknife standard error sqrt((G - 1) / G * sum (v_g - mean)^2) of delete-one values; NaN with < 2 units or a
    non-finite value. For a mean over items it equals SD(ddof=1) / sqrt(n); over clusters it is the cluster-robust
    standard error (with the G / (G - 1) correction) that the design effect inflates."""
    v = np.asarray(values, dtype=float)
    if v.size < 2 or not np.all(np.isfinite(v)):
        return math.nan
    g = v.size
    return float(math.sqrt((g - 1) / g * float(np.sum((v - v.mean()) ** 2))))


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    tail = 100.0 * (1.0 - confidence) / 2.0
    lo, hi = np.percentile(values, [tail, 100.0 - tail])
    return float(lo), float(hi)


def bootstrap_p(diffs: np.ndarray) -> float:
    """Two-sided p for "difference = 0": twice the smaller tail of the bootstrap distribution at 0, add-one smoothed."""
    r = len(diffs)
    if r == 0:
        return math.nan
    below = (int(np.sum(diffs <= 0)) + 1) / (r + 1)
    above = (int(np.sum(diffs >= 0)) + 1) / (r + 1)
    return min(1.0, 2.0 * min(below, above))


def _paired_items(a, b) -> tuple[np.ndarray, np.ndarray, int]:
    """Both runs' per-item rows as (n, k) arrays, refusing different shapes or no items."""
    xa, xb = _as_items(a), _as_items(b)
    if xa.shape != xb.shape:
        raise ValueError(f"paired samples must have the same shape, got {xa.shape} and {xb.shape}")
    if len(xa) == 0:
        raise ValueError("no shared items to compare")
    return xa, xb, len(xa)


def _paired_draws(a, b, statistic: Statistic, resamples: int, seed: int, statistic_b: Statistic | None):
    """(n, statistic(A), statistic(B), bootstrap draws of statistic(A), of statistic(B)): one draw of item indices
    for both runs (that is what makes it paired)."""
    stat_b = statistic_b or statistic
    xa, xb, n = _paired_items(a, b)
    sums = resample_sums(np.concatenate([xa, xb], axis=1), resamples, seed)
    k = xa.shape[1]
    pa = float(statistic(xa.sum(axis=0)[None, :], n)[0])
    pb = float(stat_b(xb.sum(axis=0)[None, :], n)[0])
    return n, pa, pb, statistic(sums[:, :k], n), stat_b(sums[:, k:], n)


def paired_bootstrap_draws(a, b, statistic: Statistic = mean_statistic, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED,
                           statistic_b: Statistic | None = None) -> tuple[float, float, np.ndarray]:
    """(statistic(A), statistic(B), the (R,) bootstrap draws of statistic(B) - statistic(A)).

    The same draws as `paired_bootstrap` with the same seed, so percentiles of the returned differences are its CI.
    """
    _, pa, pb, sa, sb = _paired_draws(a, b, statistic, resamples, seed, statistic_b)
    return pa, pb, np.asarray(sb - sa, dtype=float)


def bootstrap_draws(x, statistic: Statistic = mean_statistic, resamples: int = RESAMPLES,
                    seed: int = BOOTSTRAP_SEED) -> tuple[float, np.ndarray]:
    """(statistic of one run, its (R,) bootstrap draws): the one-sample counterpart of `paired_bootstrap_draws`."""
    x = _as_items(x)
    if len(x) == 0:
        raise ValueError("no items")
    draws = statistic(resample_sums(x, resamples, seed), len(x))
    return float(statistic(x.sum(axis=0)[None, :], len(x))[0]), np.asarray(draws, dtype=float)


def percentile_ci(draws: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of bootstrap draws (non-finite draws dropped), as paired_bootstrap reports it."""
    return _percentiles(np.asarray(draws, dtype=float), confidence)


def pseudo_values(x, statistic: Statistic = mean_statistic) -> np.ndarray:
    """(n,) jackknife pseudo-values n theta - (n - 1) theta_(i) of a statistic over items: the items themselves for a
    mean, the linearised per-item contributions of a ratio (bits per byte) or of corpus BLEU. Their SD / sqrt(n) is
    the jackknife SE, so power and ICC computations treat every metric as a mean of these."""
    xs = _as_items(x)
    n = len(xs)
    if n < 2:
        raise ValueError("pseudo-values need at least 2 items")
    u = units(xs)
    theta = float(statistic(u.sums.sum(axis=0)[None, :], np.array([float(n)]))[0])
    return n * theta - (n - 1) * jackknife(u, statistic)


def paired_se(a, b, statistic: Statistic = mean_statistic, clusters=None,
              statistic_b: Statistic | None = None) -> float:
    """Jackknife standard error of statistic(B) - statistic(A) over the units (items, or clusters when keys are
    given). (clustered SE / item SE)^2 is the design effect of the comparison."""
    stat_b = statistic_b or statistic
    xa, xb = _as_items(a), _as_items(b)
    k = xa.shape[1]
    u = units(np.concatenate([xa, xb], axis=1), clusters)
    ja = jackknife(Units(u.sums[:, :k], u.sizes, u.keys, u.clustered), statistic)
    jb = jackknife(Units(u.sums[:, k:], u.sizes, u.keys, u.clustered), stat_b)
    return jackknife_se(jb - ja)
