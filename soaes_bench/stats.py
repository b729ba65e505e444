"""Paired statistics for comparing two runs item by item: bootstrap CIs of differences and ratios, McNemar.

Why paired: both runs answer the same items, so item difficulty cancels in B_i - A_i and a small real change is
visible where two independent CIs would overlap. Why a bootstrap over *sufficient statistics*: a corpus metric
(BLEU-4) is not a mean of per-item scores, so each resample must recompute the corpus statistic from the resampled
items. Every statistic here is f(sum over items of a per-item vector): a mean is f(s) = s / n; corpus BLEU is
sacrebleu's score of the summed n-gram counts (lengths, matches, totals: soaes_bench.metrics.corpus_bleu), so a
resample costs one small sum instead of re-tokenising every sentence. bits-per-byte from (nll_nats, bytes) pairs
is sum(nll) / sum(bytes) / ln 2.

All functions are pure: arrays in, numbers out; the random draw is a seeded numpy Generator, one
`integers(0, n, (resamples, n))` stream (drawn in row chunks, which yields the same numbers), so results are
reproducible and match a plain numpy implementation with the same seed.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.stats import binom

from soaes_bench.defaults import BOOTSTRAP_SEED, CONFIDENCE, RESAMPLES

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


def _paired_draws(a, b, statistic: Statistic, resamples: int, seed: int, statistic_b: Statistic | None):
    """(n, statistic(A), statistic(B), bootstrap draws of statistic(A), of statistic(B)): one draw of item indices
    for both runs (that is what makes it paired)."""
    stat_b = statistic_b or statistic
    xa, xb = _as_items(a), _as_items(b)
    if xa.shape != xb.shape:
        raise ValueError(f"paired samples must have the same shape, got {xa.shape} and {xb.shape}")
    n = len(xa)
    if n == 0:
        raise ValueError("no shared items to compare")
    sums = resample_sums(np.concatenate([xa, xb], axis=1), resamples, seed)
    k = xa.shape[1]
    pa = float(statistic(xa.sum(axis=0)[None, :], n)[0])
    pb = float(stat_b(xb.sum(axis=0)[None, :], n)[0])
    return n, pa, pb, statistic(sums[:, :k], n), stat_b(sums[:, k:], n)


def paired_bootstrap(a, b, statistic: Statistic = mean_statistic, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED,
                     confidence: float = CONFIDENCE, statistic_b: Statistic | None = None) -> Paired:
    """Paired bootstrap of statistic(B) - statistic(A) and statistic(B) / statistic(A) over the same items.

    `a`, `b`: per-item values (n,) or per-item sufficient statistics (n, k), row i of both is item i.
    The same resampled item indices are used for A and B (that is what makes it paired).
    `statistic_b` (default: `statistic`) when B's statistic needs its own closure (see `corpus_bleu.bleu_items`).
    """
    n, pa, pb, sa, sb = _paired_draws(a, b, statistic, resamples, seed, statistic_b)
    diffs = sb - sa
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = sb / sa
    lo, hi = _percentiles(diffs, confidence)
    rlo, rhi = _percentiles(ratios, confidence)
    return Paired(n=n, resamples=resamples, a=pa, b=pb, diff=pb - pa, diff_low=lo, diff_high=hi,
                  ratio=pb / pa if pa != 0 else math.nan, ratio_low=rlo, ratio_high=rhi, p_value=bootstrap_p(diffs))


def bootstrap_ci(x, statistic: Statistic = mean_statistic, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED,
                 confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(value, low, high): percentile bootstrap CI of one run's statistic (for error bars)."""
    x = _as_items(x)
    if len(x) == 0:
        raise ValueError("no items")
    sums = resample_sums(x, resamples, seed)
    lo, hi = _percentiles(statistic(sums, len(x)), confidence)
    return float(statistic(x.sum(axis=0)[None, :], len(x))[0]), lo, hi


def normal_z(confidence: float = CONFIDENCE) -> float:
    """z of a two-sided normal interval at `confidence`: z_{0.975} = 1.959964 for 95%."""
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2.0))


def normal_diff_ci(a: float, se_a: float, b: float, se_b: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """CI of B - A from two independent standard errors (the fallback when no per-item samples exist)."""
    half = normal_z(confidence) * math.sqrt(se_a**2 + se_b**2)
    return (b - a) - half, (b - a) + half


# Repeated timings ------------------------------------------------------------------------------------------------
def median_ci(values: Sequence[float], level: float = CONFIDENCE) -> dict:
    """Median of repeated timings or speed ratios (profiles, benchmarks) with a distribution-free CI of the median.

    The interval is a pair of order statistics (x_(k), x_(n-k+1)) of the n sorted values: whatever the distribution
    of a repeat, P(x_(k) < median < x_(n-k+1)) = 1 - 2 P(Bin(n, 1/2) <= k - 1). The narrowest such pair whose
    coverage is >= `level` is returned, with its *actual* coverage as "level" (a discrete pair rarely hits the
    requested level exactly). With too few repeats for `level`, the widest pair [min, max] is returned with its real,
    lower coverage 1 - 2 / 2^n: n = 3 gives [min, max] at 75%, n = 5 at 93.75%, n = 6 at 96.9%; n = 8 reaches 95%
    only with [min, max] (99.2%), its next pair (x_(2), x_(7)) covers 93.0%. One value: no interval (ci and level
    None). Returns {median, ci: [low, high] | None, level, n, values}; None/NaN values are dropped first.
    """
    vals = [float(v) for v in values if v is not None and not math.isnan(v)]
    n = len(vals)
    if not n:
        return {"median": None, "ci": None, "level": None, "n": 0, "values": []}
    med = statistics.median(vals)
    if n < 2:
        return {"median": med, "ci": None, "level": None, "n": 1, "values": vals}
    xs = sorted(vals)
    k = 1  # [min, max]: the most a sample of n can give
    for j in range(2, n // 2 + 1):  # narrower pairs while they still cover `level`
        if median_ci_level(n, j) < level:
            break
        k = j
    return {"median": med, "ci": [xs[k - 1], xs[n - k]], "level": median_ci_level(n, k), "n": n, "values": vals}


def median_ci_level(n: int, k: int) -> float:
    """Coverage of (x_(k), x_(n-k+1)) as a CI of the median of n i.i.d. values: 1 - 2 P(Bin(n, 1/2) <= k - 1)."""
    if not 1 <= k <= (n + 1) // 2:
        raise ValueError(f"need 1 <= k <= (n + 1) / 2, got n={n}, k={k}")
    return 1.0 - 2.0 * sum(math.comb(n, i) for i in range(k)) / 2 ** n


def level_label(level: float | None) -> str:
    """A coverage as printed next to an interval: 0.75 -> "75%", 0.96875 -> "96.9%", 238/256 -> "93.0%"."""
    if level is None:
        return "–"
    pct = 100 * level
    return f"{round(pct)}%" if abs(pct - round(pct)) < 1e-9 else f"{pct:.1f}%"


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


# Gate decisions: power, multiplicity, superiority, non-inferiority ------------------------------------------------
# Used by soaes_bench/reporting/gates.py (its docstring states the rules); every function is pure.
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


def power_factor(alpha: float = 0.05, power: float = 0.8) -> float:
    """z_{1-alpha/2} + z_{power}: 1.959964 + 0.841621 = 2.801585 for alpha 0.05 and power 0.8."""
    from scipy.stats import norm

    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"need 0 < alpha, power < 1, got alpha={alpha}, power={power}")
    return float(norm.ppf(1 - alpha / 2) + norm.ppf(power))


def mde(sd: float | None = None, n: int | None = None, *, se: float | None = None, alpha: float = 0.05,
        power: float = 0.8) -> float:
    """Minimum detectable effect: the smallest true difference a two-sided test at level `alpha` finds with
    probability `power` (normal approximation):

        MDE = (z_{1-alpha/2} + z_{power}) * SD(d_i) / sqrt(n)   mean metrics; d_i = B_i - A_i, the paired per-item
                                                                differences (one run: its per-item values)
        MDE = (z_{1-alpha/2} + z_{power}) * se                  corpus metrics (BLEU, bits per byte): se = the SD of
                                                                the bootstrap distribution of the difference

    With alpha 0.05 and power 0.8 the factor is 2.8016: 240 accuracy items whose paired differences have SD 0.5 give
    MDE = 2.8016 * 0.5 / sqrt(240) = 0.090. Give either (sd, n) or se. NaN in, NaN out.
    """
    if se is None:
        if sd is None or n is None:
            raise ValueError("mde: give sd and n, or se")
        if n < 1:
            raise ValueError(f"mde: n must be >= 1, got {n}")
        se = sd / math.sqrt(n)
    elif sd is not None:
        raise ValueError("mde: give sd and n, or se, not both")
    return power_factor(alpha, power) * float(se)


def holm(pvalues: Sequence[float | None], alpha: float = 0.05) -> tuple[list[float], list[bool]]:
    """Holm's step-down correction of m p-values: (adjusted p-values, rejected) in the input order.

    Sort ascending, p_(1) <= ... <= p_(m); adjusted p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)); a hypothesis is
    rejected when p~ <= alpha, i.e. when p_(j) <= alpha / (m - j + 1) for it and every smaller p. Controls the
    family-wise error rate at alpha for any dependence. None/NaN p-values (nothing measured) count as 1.
    Example: [0.01, 0.04, 0.03] -> adjusted [0.03, 0.06, 0.06]; at alpha 0.05 only the first is rejected.
    """
    ps = [1.0 if p is None or not math.isfinite(p) else float(p) for p in pvalues]
    m = len(ps)
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: ps[j])):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        adjusted[i] = running
    return adjusted, [a <= alpha for a in adjusted]


def null_difference(test: str, margin: float = 0.0, higher_is_better: bool = True) -> float:
    """The boundary of the null hypothesis of a gate test, as a difference B - A in metric units:
    superior: 0; non_inferior: -margin (higher is better) or +margin (lower is better)."""
    if test == "superior":
        return 0.0
    if test == "non_inferior":
        if not (math.isfinite(margin) and margin > 0):
            raise ValueError(f"non_inferior needs a finite margin > 0, got {margin}")
        return -margin if higher_is_better else margin
    raise ValueError(f"unknown test {test!r}")


def superior(diff_low: float, diff_high: float, higher_is_better: bool = True) -> bool:
    """The CI [diff_low, diff_high] of B - A excludes 0 on the good side: diff_low > 0 (higher is better) or
    diff_high < 0 (lower is better). NaN bounds: False."""
    bound = diff_low if higher_is_better else diff_high
    return bool(math.isfinite(bound) and (bound > 0 if higher_is_better else bound < 0))


def non_inferior(diff_low: float, diff_high: float, margin: float, higher_is_better: bool = True) -> bool:
    """The CI's bad end stays within the margin: diff_low > -margin (higher is better) or diff_high < +margin
    (lower is better). `margin` must be finite and > 0. NaN bounds: False."""
    null = null_difference("non_inferior", margin, higher_is_better)
    bound = diff_low if higher_is_better else diff_high
    return bool(math.isfinite(bound) and (bound > null if higher_is_better else bound < null))


def one_sided_p(diffs: np.ndarray, null: float = 0.0, higher_is_better: bool = True) -> float:
    """Bootstrap p of the null "B - A <= null" (higher is better; ">= null" when lower is better): the share of
    draws on the null side, add-one smoothed as `bootstrap_p`. Consistent with the percentile CI: p <= 0.025
    when the 95% CI's bad end clears `null` (up to one draw)."""
    d = np.asarray(diffs, dtype=float)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return math.nan
    hits = int(np.sum(d <= null)) if higher_is_better else int(np.sum(d >= null))
    return (hits + 1) / (d.size + 1)
