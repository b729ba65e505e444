"""Intervals from bootstrap draws: which method a statistic gets (percentile, BCa, BCa at a level expanded for few
clusters, Clopper-Pearson, or none) and the paired / one-run CIs built on it. docs/statistics.md gives the rules and
their coverage.

Why paired: both runs answer the same items, so item difficulty cancels in B_i - A_i and a small real change is
visible where two independent CIs would overlap.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from soaes_bench.defaults import BOOTSTRAP_SEED, CONFIDENCE, RESAMPLES
from soaes_bench.stats.bootstrap import (Statistic, Units, _as_items, _paired_items, _percentiles, bootstrap_p,
                                         jackknife, jackknife_se, mean_statistic, resample_sums, unit_draws, units)

_NORMAL = statistics.NormalDist()  # standard normal cdf / quantile without scipy's per-call overhead
INTERVAL_METHODS = ("percentile", "bca", "bca-expanded", "clopper-pearson", "none")
SMALL_UNITS = 20   # fewer resampling units (clusters, or items): BCa at a level expanded for them (docs/statistics.md)
SMALL_ITEMS = 100  # fewer items: BCa (Clopper-Pearson for one proportion) instead of the percentile interval


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
