"""Paired statistics for comparing two runs item by item: bootstrap CIs of differences and ratios, McNemar.

Why paired: both runs answer the same items, so item difficulty cancels in B_i - A_i and a small real change is
visible where two independent CIs would overlap. Why a bootstrap over *sufficient statistics*: a corpus metric
(BLEU-4) is not a mean of per-item scores, so each resample must recompute the corpus statistic from the resampled
items. Every statistic here is f(sum over items of a per-item vector): a mean is f(s) = s / n; corpus BLEU is
sacrebleu's score of the summed n-gram counts (lengths, matches, totals), so a resample costs one small sum instead
of re-tokenising every sentence. bits-per-byte from (nll_nats, bytes) pairs is sum(nll) / sum(bytes) / ln 2.

All functions are pure: arrays in, numbers out; the random draw is a seeded numpy Generator, one
`integers(0, n, (resamples, n))` stream (drawn in row chunks, which yields the same numbers), so results are
reproducible and match a plain numpy implementation with the same seed.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
from scipy.stats import binom

_CHUNK = 2_000_000  # items gathered per chunk of resamples (bounds memory for large n)


@dataclass(frozen=True)
class Paired:
    """Statistic of run A and run B on the shared items, B - A and B / A with percentile CIs."""

    n: int
    resamples: int
    a: float
    b: float
    diff: float
    diff_low: float
    diff_high: float
    ratio: float
    ratio_low: float
    ratio_high: float
    p_value: float  # two-sided bootstrap p for "B - A = 0"


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


def resample_sums(x, resamples: int, seed: int) -> np.ndarray:
    """(R, k) sums of per-item rows over `resamples` bootstrap draws of the n items (seeded)."""
    x = _as_items(x)
    n = len(x)
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK // max(1, n * x.shape[1]))
    out = []
    for start in range(0, resamples, rows):
        idx = rng.integers(0, n, size=(min(rows, resamples - start), n))
        out.append(x[idx].sum(axis=1))
    return np.concatenate(out) if out else np.zeros((0, x.shape[1]))


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


def paired_bootstrap(a, b, statistic: Statistic = mean_statistic, resamples: int = 2000, seed: int = 0,
                     confidence: float = 0.95, statistic_b: Statistic | None = None) -> Paired:
    """Paired bootstrap of statistic(B) - statistic(A) and statistic(B) / statistic(A) over the same items.

    `a`, `b`: per-item values (n,) or per-item sufficient statistics (n, k), row i of both is item i.
    The same resampled item indices are used for A and B (that is what makes it paired).
    `statistic_b` (default: `statistic`) when B's statistic needs its own closure (see `bleu_items`).
    """
    stat_b = statistic_b or statistic
    xa, xb = _as_items(a), _as_items(b)
    if xa.shape != xb.shape:
        raise ValueError(f"paired samples must have the same shape, got {xa.shape} and {xb.shape}")
    n = len(xa)
    if n == 0:
        raise ValueError("no shared items to compare")
    both = np.concatenate([xa, xb], axis=1)  # one draw for both runs
    sums = resample_sums(both, resamples, seed)
    k = xa.shape[1]
    sa, sb = statistic(sums[:, :k], n), stat_b(sums[:, k:], n)
    pa = float(statistic(xa.sum(axis=0)[None, :], n)[0])
    pb = float(stat_b(xb.sum(axis=0)[None, :], n)[0])
    diffs = sb - sa
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = sb / sa
    lo, hi = _percentiles(diffs, confidence)
    rlo, rhi = _percentiles(ratios, confidence)
    return Paired(n=n, resamples=resamples, a=pa, b=pb, diff=pb - pa, diff_low=lo, diff_high=hi,
                  ratio=pb / pa if pa != 0 else math.nan, ratio_low=rlo, ratio_high=rhi, p_value=bootstrap_p(diffs))


def bootstrap_ci(x, statistic: Statistic = mean_statistic, resamples: int = 2000, seed: int = 0,
                 confidence: float = 0.95) -> tuple[float, float, float]:
    """(value, low, high): percentile bootstrap CI of one run's statistic (for error bars)."""
    x = _as_items(x)
    if len(x) == 0:
        raise ValueError("no items")
    sums = resample_sums(x, resamples, seed)
    lo, hi = _percentiles(statistic(sums, len(x)), confidence)
    return float(statistic(x.sum(axis=0)[None, :], len(x))[0]), lo, hi


def normal_diff_ci(a: float, se_a: float, b: float, se_b: float, confidence: float = 0.95) -> tuple[float, float]:
    """CI of B - A from two independent standard errors (the fallback when no per-item samples exist)."""
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2.0))
    half = z * math.sqrt(se_a**2 + se_b**2)
    return (b - a) - half, (b - a) + half


# Repeated timings ------------------------------------------------------------------------------------------------
def median_ci(values: Sequence[float], level: float = 0.95, resamples: int = 2000, seed: int = 0) -> dict:
    """Median with a bootstrap percentile CI, for repeated timings and speed ratios (profiles, benchmarks): a noisy
    machine's runs are summarised by their median; few repeats give a wide, honest interval; one value gives none.
    (A seeded random.Random over a list: the profiles committed under reports/ were made with exactly this draw.)"""
    vals = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return {"median": None, "ci": None, "n": 0, "values": []}
    med = statistics.median(vals)
    if len(vals) < 2:
        return {"median": med, "ci": None, "n": 1, "values": vals}
    rng = random.Random(seed)
    boots = sorted(statistics.median(rng.choices(vals, k=len(vals))) for _ in range(resamples))
    lo = boots[int((1 - level) / 2 * (resamples - 1))]
    hi = boots[int((1 + level) / 2 * (resamples - 1))]
    return {"median": med, "ci": [lo, hi], "n": len(vals), "values": vals}


# McNemar ---------------------------------------------------------------------------------------------------------
def mcnemar_p(b: int, c: int) -> float:
    """Exact McNemar test: two-sided binomial test of the discordant pairs b (A right, B wrong) vs c (A wrong, B right).

    p = min(1, 2 * P[X <= min(b, c)]) with X ~ Binomial(b + c, 1/2); p = 1 when there are no discordant pairs.
    """
    if b < 0 or c < 0:
        raise ValueError("counts must be >= 0")
    if b + c == 0:
        return 1.0
    return float(min(1.0, 2.0 * binom.cdf(min(b, c), b + c, 0.5)))


def mcnemar(a_correct: Sequence, b_correct: Sequence) -> tuple[int, int, float]:
    """(b, c, p) for per-item correctness (0/1 or scores thresholded at 0.5) of runs A and B on the same items."""
    a = np.asarray(a_correct, dtype=float) >= 0.5
    bb = np.asarray(b_correct, dtype=float) >= 0.5
    if a.shape != bb.shape:
        raise ValueError(f"paired samples must have the same shape, got {a.shape} and {bb.shape}")
    b = int(np.sum(a & ~bb))
    c = int(np.sum(~a & bb))
    return b, c, mcnemar_p(b, c)


# corpus BLEU-4 ---------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _bleu():
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize="zh")  # the configuration of soaes_bench.metrics.chinese.bleu4 (sacrebleu defaults + zh)


def bleu_stats(pairs: Sequence[Sequence[str]]) -> np.ndarray:
    """(n, 2 + 2*4) per-item sacrebleu statistics [hyp_len, ref_len, correct_1..4, total_1..4] of (pred, ref) pairs."""
    preds = [p for p, _ in pairs]
    refs = [r for _, r in pairs]
    return np.asarray(_bleu()._extract_corpus_statistics(preds, [refs]), dtype=float).reshape(len(pairs), -1)


def bleu_statistic(sums: np.ndarray, n: int) -> np.ndarray:
    """Corpus BLEU-4 (0-100) of each row of summed `bleu_stats`."""
    metric = _bleu()
    return np.array([metric._compute_score_from_stats([int(v) for v in row]).score for row in sums])


def reference_bleu4(preds: Sequence[str], refs: Sequence[str]) -> float:
    """Corpus BLEU-4 by the project's metric (soaes_bench.metrics.chinese.bleu4), sacrebleu zh if it is absent."""
    try:
        from soaes_bench.metrics.chinese import bleu4
    except ImportError:
        return float(_bleu().corpus_score(list(preds), [list(refs)]).score)
    return float(bleu4(preds, refs))


def bleu_items(pairs: Sequence[Sequence[str]]) -> tuple[np.ndarray, Statistic]:
    """Per-item statistics and statistic for corpus BLEU-4, checked against the project's bleu4 on all items.

    If the summed-statistics shortcut ever disagrees with `metrics.chinese.bleu4` (its configuration changed), fall
    back to recomputing bleu4 on every resample from the pairs themselves: slower, but never a different metric.
    """
    stats = bleu_stats(pairs)
    fast = float(bleu_statistic(stats.sum(axis=0)[None, :], len(pairs))[0])
    preds, refs = [p for p, _ in pairs], [r for _, r in pairs]
    if abs(fast - reference_bleu4(preds, refs)) < 1e-9:
        return stats, bleu_statistic
    # slow path: per-item one-hot rows; a resample's sums are item counts, expanded back into a list of pairs
    eye = np.eye(len(pairs))

    def slow(sums: np.ndarray, n: int) -> np.ndarray:
        out = []
        for row in sums:
            reps = np.rint(row).astype(int)
            p = [x for x, k in zip(preds, reps) for _ in range(k)]
            r = [x for x, k in zip(refs, reps) for _ in range(k)]
            out.append(reference_bleu4(p, r) if p else math.nan)
        return np.array(out)

    return eye, slow
