"""Paired statistics for comparing two runs item by item: bootstrap CIs of differences and ratios, McNemar.

Why paired: both runs answer the same items, so item difficulty cancels in B_i - A_i and a small real change is
visible where two independent CIs would overlap. Why a bootstrap over *sufficient statistics*: a corpus metric
(BLEU-4) is not a mean of per-item scores, so each resample must recompute the corpus statistic from the resampled
items. Every statistic here is f(sum over items of a per-item vector): a mean is f(s) = s / n; corpus BLEU is
sacrebleu's score of the summed n-gram counts (lengths, matches, totals: soaes_bench.metrics.corpus_bleu), so a
resample costs one small sum instead of re-tokenising every sentence. bits-per-byte from (nll_nats, bytes) pairs
is sum(nll) / sum(bytes) / ln 2.

Units: the bootstrap resamples *units*, which are the items themselves or, given cluster keys (an item's source
document: its law or news article), whole clusters of items, the paired clustered bootstrap (Davison & Hinkley 1997,
sec. 3.8; Field & Welsh 2007). A unit's row is the sum of its items' rows and a resample's statistic is computed from
the summed rows and the summed item counts, so a mean is sum / items and a ratio (bits per byte) is recomputed over
the resampled documents. With one item per unit the draws are exactly the item-level ones. Which interval a result
gets (percentile, BCa, BCa at a level expanded for few clusters, Clopper-Pearson, or none) is `interval_method`;
docs/statistics.md gives the rules and their coverage.

All functions are pure: arrays in, numbers out; the random draw is a seeded numpy Generator, one
`integers(0, n, (resamples, n))` stream (drawn in row chunks, which yields the same numbers), so results are
reproducible and match a plain numpy implementation with the same seed.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import numpy as np
from scipy.stats import binom

from soaes_bench.defaults import BOOTSTRAP_SEED, CONFIDENCE, RESAMPLES

_CHUNK = 2_000_000  # items gathered per chunk of resamples (bounds memory for large n)
_NORMAL = statistics.NormalDist()  # standard normal cdf / quantile without scipy's per-call overhead


def _phi(z: float) -> float:
    return 0.0 if z == -math.inf else 1.0 if z == math.inf else _NORMAL.cdf(z)


def _phi_inv(p: float) -> float:
    return -math.inf if p <= 0 else math.inf if p >= 1 else _NORMAL.inv_cdf(p)


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
    p_value: float  # two-sided p for "B - A = 0", consistent with the interval's method
    n_clusters: int | None = None  # resampling units when clusters were given (None: items)
    method: str = "percentile"  # interval method (interval_method): percentile, bca, bca-expanded, none
    se: float = math.nan  # jackknife standard error of B - A over the units (for the MDE)
    level: float = math.nan  # nominal level the percentiles were read at (expanded above `confidence` for few units)
    widened: bool = False  # a clustered bound was widened to the item-level one (never narrower than items)


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


# Units: items or clusters ------------------------------------------------------------------------------------------
SMALL_UNITS = 20   # fewer resampling units (clusters, or items): BCa at a level expanded for them (docs/statistics.md)
SMALL_ITEMS = 100  # fewer items: BCa (Clopper-Pearson for one proportion) instead of the percentile interval


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


def paired_bootstrap(a, b, statistic: Statistic = mean_statistic, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED,
                     confidence: float = CONFIDENCE, statistic_b: Statistic | None = None) -> Paired:
    """Paired bootstrap of statistic(B) - statistic(A) and statistic(B) / statistic(A) over the same items, with
    percentile intervals whatever n (what the gates and the SFT ablation use; `paired_ci` chooses the method).

    `a`, `b`: per-item values (n,) or per-item sufficient statistics (n, k), row i of both is item i.
    The same resampled item indices are used for A and B (that is what makes it paired).
    `statistic_b` (default: `statistic`) when B's statistic needs its own closure (see `corpus_bleu.bleu_items`).
    """
    return paired_ci(a, b, statistic, None, resamples, seed, confidence, statistic_b, method="percentile")


def paired_ci(a, b, statistic: Statistic = mean_statistic, clusters=None, resamples: int = RESAMPLES,
              seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE, statistic_b: Statistic | None = None,
              method: str = "auto", floor_items: bool = True) -> Paired:
    """Paired (clustered) bootstrap of statistic(B) - statistic(A) and statistic(B) / statistic(A).

    `a`, `b`: per-item rows as in `paired_bootstrap`; `clusters`: one key per item (its source document), or None
    to resample items. One draw of units serves both runs (paired: the same clusters for A and B). `method`:
    "auto" (`interval_method` from n, the units and `confidence`), or one of INTERVAL_METHODS. The p-value is read
    from the same bootstrap distribution with the same method, so p < 1 - confidence exactly when the interval
    excludes 0 (up to one draw). `se` is the delete-one-unit jackknife SE of B - A (design effect included).

    `floor_items` (clusters only): the result is never narrower than the item-level one (`widened` says a bound was
    moved; p and se are the larger of the two). An estimated design effect below 1 (a negative intra-cluster
    correlation) is within the noise of a few clusters, and planning truncates it at 1 the same way.
    """
    stat_b = statistic_b or statistic
    xa, xb, n = _paired_items(a, b)
    k = xa.shape[1]
    u = units(np.concatenate([xa, xb], axis=1), clusters)
    g = len(u.sums)
    tot = u.sums.sum(axis=0)[None, :]
    pa = float(statistic(tot[:, :k], np.array([float(n)]))[0])
    pb = float(stat_b(tot[:, k:], np.array([float(n)]))[0])
    chosen = interval_method(n, g, u.clustered, confidence) if method == "auto" else method
    if chosen not in INTERVAL_METHODS:
        raise ValueError(f"unknown interval method {chosen!r}; use auto or {', '.join(INTERVAL_METHODS)}")
    sums, sizes = unit_draws(u, resamples, seed)
    ja, jb = jackknife(Units(u.sums[:, :k], u.sizes, u.keys, u.clustered), statistic), \
        jackknife(Units(u.sums[:, k:], u.sizes, u.keys, u.clustered), stat_b)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        sa, sb = statistic(sums[:, :k], sizes), stat_b(sums[:, k:], sizes)
        diffs, ratios, jd, jr = sb - sa, sb / sa, jb - ja, jb / ja
    ratio = pb / pa if pa != 0 else math.nan
    lo, hi, p, level = _interval(diffs, pb - pa, jd, confidence, chosen, g)
    rlo, rhi, _, _ = _interval(ratios, ratio, jr, confidence, chosen, g)
    se, widened = jackknife_se(jd), False
    if floor_items and u.clustered and chosen != "none":
        it = paired_ci(a, b, statistic, None, resamples, seed, confidence, statistic_b)
        wide = [min(lo, it.diff_low), max(hi, it.diff_high), min(rlo, it.ratio_low), max(rhi, it.ratio_high)]
        widened = bool(np.any(np.array(wide) != np.array([lo, hi, rlo, rhi])))
        lo, hi, rlo, rhi = wide
        p, se = max(p, it.p_value), max(se, it.se)
    return Paired(n=n, resamples=resamples, a=pa, b=pb, diff=pb - pa, diff_low=lo, diff_high=hi, ratio=ratio,
                  ratio_low=rlo, ratio_high=rhi, p_value=p, n_clusters=g if clusters is not None else None,
                  method=chosen, se=se, level=level, widened=widened)


# Interval methods -------------------------------------------------------------------------------------------------
INTERVAL_METHODS = ("percentile", "bca", "bca-expanded", "clopper-pearson", "none")


class Interval(NamedTuple):
    """A statistic of one run with its interval: what `mean_ci`, `ratio_ci` and `statistic_ci` return.
    `n_clusters` is the number of clusters resampled (None when no cluster keys were given)."""

    value: float
    lo: float
    hi: float
    method: str
    n: int
    n_clusters: int | None


def min_units(confidence: float = CONFIDENCE) -> int:
    """Fewest resampling units with which a bootstrap interval can reach `confidence`: 6 for 95%, 8 for 99%.

    A bootstrap interval of a mean or a ratio lies inside [min, max] of the unit-level statistics, and that range
    misses a symmetric centre when all G units fall on one side of it: its coverage is at most 1 - 2^(1 - G)
    (G = 5: 93.75%, so no resampling interval of 5 clusters is a 95% interval; G = 6: 96.9%)."""
    g = 2
    while 1.0 - 2.0 ** (1 - g) < confidence:
        g += 1
    return g


def expanded_confidence(confidence: float, n_units: int) -> float:
    """The nominal level at which a bootstrap interval over G units is read so that it has about `confidence`
    coverage: its normal quantile is t_{G-1} * sqrt(G / (G - 1)) (Hesterberg 2015, the "expanded percentile"
    interval: the bootstrap's plug-in variance is (G - 1) / G of the unbiased one, and a studentized mean of G
    units has t_{G-1} tails). 95% with 14 units -> 0.9750; with 100 -> 0.9539."""
    from scipy.stats import t

    g = int(n_units)
    if g < 2:
        return math.nan
    z = float(t.ppf(0.5 + confidence / 2.0, g - 1)) * math.sqrt(g / (g - 1))
    return 2.0 * _phi(z) - 1.0


def percentile_coverage(n_units: int, confidence: float = CONFIDENCE) -> float:
    """Approximate coverage of a plain percentile bootstrap interval over G units of a normal mean: P(|T_{G-1}| <=
    z * sqrt((G - 1) / G)). 95% nominal gives 84.6% with 5 units, 90.4% with 10, 92.9% with 20, 94.6% with 100."""
    from scipy.stats import t

    g = int(n_units)
    if g < 2:
        return math.nan
    z = normal_z(confidence) * math.sqrt((g - 1) / g)
    return float(2.0 * t.cdf(z, g - 1) - 1.0)


def interval_method(n_items: int, n_units: int, clustered: bool, confidence: float = CONFIDENCE,
                    proportion: bool = False) -> str:
    """Which interval a statistic over `n_items` items in `n_units` resampling units gets (docs/statistics.md):

    - "none": fewer units than `min_units(confidence)` (5 clusters cannot give 95%);
    - "clopper-pearson": one 0/1 proportion of independent items (no clusters) with n < SMALL_ITEMS (exact);
    - "bca-expanded": clusters, or fewer than SMALL_UNITS units: BCa read at `expanded_confidence`;
    - "bca": items, n < SMALL_ITEMS (bias-corrected and accelerated, Efron 1987);
    - "percentile": items, n >= SMALL_ITEMS (what every comparison used before clusters; same numbers).
    """
    if n_units < min_units(confidence):
        return "none"
    if proportion and not clustered and n_items < SMALL_ITEMS:
        return "clopper-pearson"
    if clustered or n_units < SMALL_UNITS:
        return "bca-expanded"
    if n_items < SMALL_ITEMS:
        return "bca"
    return "percentile"


def describe_method(method: str, n_units: int | None = None, clustered: bool = False) -> str:
    """Words for an interval method, as the outputs print it: "BCa, expanded for 14 clusters"."""
    what = f"{n_units} {'clusters' if clustered else 'items'}" if n_units is not None else ""
    return {"percentile": "percentile bootstrap", "bca": "BCa bootstrap",
            "bca-expanded": f"BCa bootstrap, level expanded for {what}" if what else "BCa bootstrap, expanded level",
            "clopper-pearson": "Clopper-Pearson exact",
            "none": f"no interval: {what} cannot give this level" if what else "no interval"}.get(method, method)


def _bca_constants(draws: np.ndarray, theta: float, jack: np.ndarray) -> tuple[float, float]:
    """(z0, a) of the BCa interval: bias correction from the share of draws below the estimate (ties count half,
    which matters for the discrete draws of 0/1 items), acceleration from the jackknife values' skewness
    (Efron 1987; Efron & Tibshirani 1993, ch. 14)."""
    r = draws.size
    share = (float(np.sum(draws < theta)) + 0.5 * float(np.sum(draws == theta))) / r
    z0 = _phi_inv(min(max(share, 0.5 / r), 1.0 - 0.5 / r))
    j = np.asarray(jack, dtype=float)
    if j.size < 2 or not np.all(np.isfinite(j)):
        return z0, 0.0
    dev = j.mean() - j
    den = float(np.sum(dev ** 2))
    return z0, (float(np.sum(dev ** 3)) / (6.0 * den ** 1.5) if den > 0 else 0.0)


def _bca_nominal(w: float, z0: float, a: float) -> float:
    """Inverse of BCa's map from a nominal normal quantile z to the quantile w = z0 + (z0 + z) / (1 - a (z0 + z))
    that is read from the draws."""
    if not math.isfinite(w):
        return w
    u = w - z0
    den = 1.0 + a * u
    if den <= 0:
        return -math.inf if u < 0 else math.inf
    return u / den - z0


def _interval(draws: np.ndarray, theta: float, jack: np.ndarray, confidence: float, method: str,
              n_units: int) -> tuple[float, float, float, float]:
    """(low, high, two-sided p of "statistic = 0", the nominal level read) by `method` from bootstrap draws."""
    from scipy.stats import t

    if method == "none" or not math.isfinite(theta):
        return math.nan, math.nan, math.nan, math.nan
    if method == "percentile":
        lo, hi = _percentiles(draws, confidence)
        return lo, hi, bootstrap_p(draws), confidence
    if method not in ("bca", "bca-expanded"):
        raise ValueError(f"{method!r} is not a bootstrap interval")
    d = draws[np.isfinite(draws)]
    if d.size == 0:
        return math.nan, math.nan, math.nan, math.nan
    g = int(n_units)
    level = expanded_confidence(confidence, g) if method == "bca-expanded" else confidence
    z0, a = _bca_constants(d, theta, jack)
    zc = _phi_inv(0.5 + level / 2.0)
    qs = []
    for z in (-zc, zc):
        u = z0 + z
        den = 1.0 - a * u
        qs.append(_phi(z0 + u / den) if den > 0 else (0.0 if u < 0 else 1.0))
    lo, hi = (float(v) for v in np.percentile(d, [100.0 * qs[0], 100.0 * qs[1]]))
    # p: the nominal one-sided level at which an end of this interval sits at 0, mapped back through the expansion
    r = d.size
    below = (float(np.sum(d <= 0)) + 1.0) / (r + 1.0)
    above = (float(np.sum(d >= 0)) + 1.0) / (r + 1.0)
    sides = [_phi(_bca_nominal(_phi_inv(below), z0, a)), 1.0 - _phi(_bca_nominal(_phi_inv(1.0 - above), z0, a))]
    if method == "bca-expanded":
        shrink = math.sqrt((g - 1) / g)
        sides = [float(t.cdf(_phi_inv(x) * shrink, g - 1)) if 0 < x < 1 else x for x in sides]
    return lo, hi, min(1.0, 2.0 * min(sides)), level


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact (Clopper & Pearson 1934) interval of a binomial proportion k / n: beta quantiles, [0, .] at k = 0 and
    [., 1] at k = n. Coverage >= `confidence` for every true proportion (conservative)."""
    from scipy.stats import beta

    if not 0 <= k <= n or n < 1:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    alpha = 1.0 - confidence
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2.0, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1.0 - alpha / 2.0, k + 1, n - k))
    return lo, hi


def statistic_ci(x, statistic: Statistic = mean_statistic, clusters=None, confidence: float = CONFIDENCE,
                 resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED, method: str = "auto",
                 proportion: bool = False, floor_items: bool = True) -> Interval:
    """One run's statistic of per-item rows `x` with its interval, resampling clusters when keys are given.
    `proportion`: x are 0/1 items (Clopper-Pearson applies when they are few and independent). `floor_items`: a
    clustered interval is never narrower than the item-level one (as `paired_ci`)."""
    xs = _as_items(x)
    if len(xs) == 0:
        raise ValueError("no items")
    u = units(xs, clusters)
    n, g = len(xs), len(u.sums)
    value = float(statistic(u.sums.sum(axis=0)[None, :], np.array([float(n)]))[0])
    chosen = interval_method(n, g, u.clustered, confidence, proportion) if method == "auto" else method
    n_clusters = g if clusters is not None else None
    if chosen == "clopper-pearson":
        lo, hi = clopper_pearson(int(round(float(xs[:, 0].sum()))), n, confidence)
        return Interval(value, lo, hi, chosen, n, n_clusters)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        draws = statistic(*unit_draws(u, resamples, seed)) if chosen != "none" else np.zeros(0)
    jack = jackknife(u, statistic) if chosen.startswith("bca") else np.zeros(0)
    lo, hi, _, _ = _interval(np.asarray(draws, dtype=float), value, jack, confidence, chosen, g)
    if floor_items and u.clustered and chosen != "none":
        it = statistic_ci(xs, statistic, None, confidence, resamples, seed, "auto", proportion)
        lo, hi = min(lo, it.lo), max(hi, it.hi)
    return Interval(value, lo, hi, chosen, n, n_clusters)


def mean_ci(values, clusters=None, confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
            seed: int = BOOTSTRAP_SEED, method: str = "auto", floor_items: bool = True) -> Interval:
    """(value, lo, hi, method, n, n_clusters): the mean of per-item values with its interval (clustered bootstrap
    when `clusters` are given; Clopper-Pearson for fewer than 100 independent 0/1 items; none with too few units)."""
    v = np.asarray(values, dtype=float)
    proportion = bool(v.size) and bool(np.all((v == 0) | (v == 1)))
    return statistic_ci(v, mean_statistic, clusters, confidence, resamples, seed, method, proportion,
                        floor_items)


def ratio_ci(num, den, clusters=None, confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
             seed: int = BOOTSTRAP_SEED, method: str = "auto", scale: float = 1.0,
             floor_items: bool = True) -> Interval:
    """(value, lo, hi, method, n, n_clusters): scale * sum(num) / sum(den) over items (bits per byte: num = |log-
    likelihood| in nats, den = bytes, scale = 1 / ln 2), each resample recomputing the ratio over the resampled
    documents or clusters."""
    x = np.column_stack([np.asarray(num, dtype=float), np.asarray(den, dtype=float)])

    def ratio(sums: np.ndarray, n) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return scale * sums[:, 0] / sums[:, 1]

    return statistic_ci(x, ratio, clusters, confidence, resamples, seed, method, floor_items=floor_items)


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


def power_factor(alpha: float = 0.05, power: float = 0.8, df: float | None = None) -> float:
    """z_{1-alpha/2} + z_{power}: 1.959964 + 0.841621 = 2.801585 for alpha 0.05 and power 0.8. With `df` (clustered:
    G - 1) the t quantiles t_{df,1-alpha/2} + t_{df,power}: 2.160 + 0.870 = 3.030 for 14 clusters."""
    from scipy.stats import norm, t

    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"need 0 < alpha, power < 1, got alpha={alpha}, power={power}")
    if df is not None:
        if not df >= 1:
            raise ValueError(f"need df >= 1, got {df}")
        return float(t.ppf(1 - alpha / 2, df) + t.ppf(power, df))
    return float(norm.ppf(1 - alpha / 2) + norm.ppf(power))


def mde(sd: float | None = None, n: int | None = None, *, se: float | None = None, alpha: float = 0.05,
        power: float = 0.8, df: float | None = None) -> float:
    """Minimum detectable effect: the smallest true difference a two-sided test at level `alpha` finds with
    probability `power` (normal approximation):

        MDE = (z_{1-alpha/2} + z_{power}) * SD(d_i) / sqrt(n)   mean metrics; d_i = B_i - A_i, the paired per-item
                                                                differences (one run: its per-item values)
        MDE = (z_{1-alpha/2} + z_{power}) * se                  corpus metrics (BLEU, bits per byte): se = the SD of
                                                                the bootstrap distribution of the difference

    With alpha 0.05 and power 0.8 the factor is 2.8016: 240 accuracy items whose paired differences have SD 0.5 give
    MDE = 2.8016 * 0.5 / sqrt(240) = 0.090. Give either (sd, n) or se. NaN in, NaN out. `df` (G - 1 for G
    clusters): t quantiles instead of z (`power_factor`); se is then the clustered one (design effect included).
    """
    if se is None:
        if sd is None or n is None:
            raise ValueError("mde: give sd and n, or se")
        if n < 1:
            raise ValueError(f"mde: n must be >= 1, got {n}")
        se = sd / math.sqrt(n)
    elif sd is not None:
        raise ValueError("mde: give sd and n, or se, not both")
    return power_factor(alpha, power, df) * float(se)


def detectable_drop(se: float, tolerance: float = 0.0, alpha: float = 0.05, power: float = 0.8,
                    df: float | None = None) -> float:
    """The true change in the bad direction that `check` flags with probability `power`: a regression needs the
    estimate beyond the tolerance AND its two-sided (1 - alpha) interval clear of 0 (estimate > q se), so with an
    estimate ~ N(delta, se^2) the detectable delta is max(tolerance, q_{1-alpha/2} se) + q_power se. It equals the
    MDE when the tolerance is below the significance threshold. `df`: t quantiles (clusters - 1)."""
    from scipy.stats import norm, t

    if not (math.isfinite(se) and se >= 0):
        return math.nan
    q = float(t.ppf(1 - alpha / 2, df)) if df is not None else float(norm.ppf(1 - alpha / 2))
    qp = float(t.ppf(power, df)) if df is not None else float(norm.ppf(power))
    return max(float(tolerance), q * se) + qp * se


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


def holm(pvalues: Sequence[float | None], alpha: float = 0.05) -> tuple[list[float], list[bool]]:
    """Holm's step-down correction of m p-values: (adjusted p-values, rejected) in the input order.

    Sort ascending, p_(1) <= ... <= p_(m); adjusted p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)); a hypothesis is
    rejected when p~ <= alpha, i.e. when p_(j) <= alpha / (m - j + 1) for it and every smaller p. Controls the
    family-wise error rate at alpha for any dependence. None/NaN p-values (nothing measured) count as 1.
    Example: [0.01, 0.04, 0.03] -> adjusted [0.03, 0.06, 0.06]; at alpha 0.05 only the first is rejected.
    """
    adjusted = adjust_p(pvalues, "holm")
    return adjusted, [a <= alpha for a in adjusted]


CORRECTIONS = ("holm", "bh", "none")


def _finite_p(pvalues: Sequence[float | None]) -> list[float]:
    return [1.0 if p is None or not math.isfinite(p) else float(p) for p in pvalues]


def benjamini_hochberg(pvalues: Sequence[float | None]) -> list[float]:
    """Benjamini & Hochberg (1995) step-up adjusted p-values, in the input order: with p_(1) <= ... <= p_(m),
    p~_(i) = min over j >= i of min(1, m p_(j) / j). Rejecting p~ <= q controls the false discovery rate at q for
    independent or positively dependent tests (Benjamini & Yekutieli 2001). None/NaN count as 1.
    Example: [0.01, 0.04, 0.03] -> [0.03, 0.04, 0.04]."""
    ps = _finite_p(pvalues)
    m = len(ps)
    adjusted = [1.0] * m
    running = 1.0
    order = sorted(range(m), key=lambda j: ps[j])
    for rank in range(m - 1, -1, -1):
        i = order[rank]
        running = min(running, min(1.0, m * ps[i] / (rank + 1)))
        adjusted[i] = running
    return adjusted


def adjust_p(pvalues: Sequence[float | None], method: str = "holm") -> list[float]:
    """Adjusted p-values of one family: "holm" (family-wise error, any dependence; `holm`), "bh" (false discovery
    rate; `benjamini_hochberg`) or "none" (the p-values themselves; None/NaN -> 1)."""
    if method == "none":
        return _finite_p(pvalues)
    if method == "bh":
        return benjamini_hochberg(pvalues)
    if method != "holm":
        raise ValueError(f"unknown correction {method!r}; use {', '.join(CORRECTIONS)}")
    ps = _finite_p(pvalues)
    m = len(ps)
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: ps[j])):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


# Win / tie / loss ------------------------------------------------------------------------------------------------
def outcomes(a: Sequence, b: Sequence, higher_is_better: bool = True) -> np.ndarray:
    """Per item +1 (B better than A), 0 (tie: equal per-item scores) or -1 (B worse), in the metric's direction.
    For 0/1 accuracies the +1 items are McNemar's c and the -1 items its b."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.shape != xb.shape:
        raise ValueError(f"paired samples must have the same shape, got {xa.shape} and {xb.shape}")
    sign = np.sign(xb - xa)
    return (sign if higher_is_better else -sign).astype(int)


def win_tie_loss(a: Sequence, b: Sequence, higher_is_better: bool = True) -> tuple[int, int, int]:
    """(wins, ties, losses) of B against A over paired items (`outcomes`)."""
    o = outcomes(a, b, higher_is_better)
    return int(np.sum(o > 0)), int(np.sum(o == 0)), int(np.sum(o < 0))


# Planning: intra-cluster correlation, design effect, items needed -----------------------------------------------
def icc(values: Sequence[float], clusters: Sequence) -> float:
    """Intra-cluster correlation of per-item values by the one-way ANOVA estimator (Donner 1986):
    (MSB - MSW) / (MSB + (m0 - 1) MSW), m0 = (n - sum m_g^2 / n) / (G - 1), truncated at 0. NaN when it cannot be
    estimated (fewer than 2 clusters, or no cluster with 2 items); 0 when every value is equal."""
    v = np.asarray(values, dtype=float)
    u = units(v, clusters)
    n, g = len(v), len(u.sums)
    if g < 2 or g == n:
        return math.nan
    codes = {k: i for i, k in enumerate(u.keys)}
    keyed = [("item", i) if k is None or (isinstance(k, float) and math.isnan(k)) else k
             for i, k in enumerate(clusters)]
    idx = np.array([codes[k] for k in keyed])
    means = u.sums[:, 0] / u.sizes
    grand = float(v.mean())
    msb = float(np.sum(u.sizes * (means - grand) ** 2)) / (g - 1)
    msw = float(np.sum((v - means[idx]) ** 2)) / (n - g)
    m0 = (n - float(np.sum(u.sizes ** 2)) / n) / (g - 1)
    den = msb + (m0 - 1) * msw
    if den <= 0:
        return 0.0
    return float(min(1.0, max(0.0, (msb - msw) / den)))


def design_effect(sizes: Sequence[float], rho: float) -> float:
    """Variance inflation of a mean over clusters of these sizes with intra-cluster correlation rho:
    1 + (sum m^2 / sum m - 1) rho (Kish 1965; the size-weighted mean cluster size covers unequal sizes,
    Eldridge et al. 2006). 1 for single-item clusters or rho = 0."""
    m = np.asarray(sizes, dtype=float)
    if m.size == 0 or not math.isfinite(rho):
        return math.nan
    return float(1.0 + (float(np.sum(m ** 2)) / float(np.sum(m)) - 1.0) * rho)


def items_needed(sd: float, effect: float, alpha: float = 0.05, power: float = 0.8, deff: float = 1.0,
                 cluster_size: float = 1.0) -> tuple[int, int]:
    """(items, clusters) a two-sided paired test at `alpha` needs to detect a true difference `effect` with
    probability `power`, when the per-item paired differences have SD `sd` and clusters of mean size
    `cluster_size` inflate the variance by `deff`:

        n = deff * ((q_{1-alpha/2} + q_power) * sd / effect)^2,   clusters = n / cluster_size

    with t quantiles on clusters - 1 degrees of freedom (z for independent items), iterated to a fixed point.
    Example: sd 0.5, effect 0.05, independent items: 785 items."""
    if not (effect > 0 and sd >= 0 and deff >= 1 - 1e-12 and cluster_size >= 1):
        raise ValueError(f"need effect > 0, sd >= 0, deff >= 1, cluster size >= 1; got {effect}, {sd}, {deff}, "
                         f"{cluster_size}")
    if sd == 0:
        return 1, 1
    clustered = cluster_size > 1
    n = deff * (power_factor(alpha, power) * sd / effect) ** 2
    for _ in range(50):
        g = max(2, math.ceil(n / cluster_size))
        if not clustered:
            break
        again = deff * (power_factor(alpha, power, df=g - 1) * sd / effect) ** 2
        if math.ceil(again / cluster_size) == g:
            n = again
            break
        n = again
    n_items = max(1, math.ceil(n))
    return n_items, max(1, math.ceil(n_items / cluster_size))


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
