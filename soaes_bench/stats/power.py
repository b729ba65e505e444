"""Power and planning: the minimum detectable effect, what `check` can flag, intra-cluster correlation, the design
effect and the items a comparison needs."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from soaes_bench.stats.bootstrap import units


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


def _fewest_units(var: float, effect: float, alpha: float, power: float, per_unit: float = 1.0) -> tuple[int, float]:
    """(G, n): the fewest units G >= 2 of a t test on G - 1 degrees of freedom whose needed sample size
    n = (t_{G-1,1-alpha/2} + t_{G-1,power})^2 * var / effect^2 fits in them (n <= G * per_unit). Searched upward from
    the z-quantile value, a lower bound since t quantiles are larger; a fixed-point iteration oscillated for a few
    units and could stop at 2 where 4 are needed."""
    g = max(2, math.ceil(power_factor(alpha, power) ** 2 * var / effect ** 2 / per_unit))
    while (n := power_factor(alpha, power, df=g - 1) ** 2 * var / effect ** 2) > g * per_unit:
        g += 1
    return g, n


def items_needed(sd: float, effect: float, alpha: float = 0.05, power: float = 0.8, deff: float = 1.0,
                 cluster_size: float = 1.0) -> tuple[int, int]:
    """(items, clusters) a two-sided paired test at `alpha` needs to detect a true difference `effect` with
    probability `power`, when the per-item paired differences have SD `sd` and clusters of mean size
    `cluster_size` inflate the variance by `deff`:

        n = deff * ((q_{1-alpha/2} + q_power) * sd / effect)^2,   clusters = n / cluster_size

    with t quantiles on clusters - 1 degrees of freedom (z for independent items): the fewest clusters whose n fits
    in them (`_fewest_units`). Example: sd 0.5, effect 0.05, independent items: 785 items."""
    if not (effect > 0 and sd >= 0 and deff >= 1 - 1e-12 and cluster_size >= 1):
        raise ValueError(f"need effect > 0, sd >= 0, deff >= 1, cluster size >= 1; got {effect}, {sd}, {deff}, "
                         f"{cluster_size}")
    if sd == 0:
        return 1, 1
    if cluster_size <= 1:
        n_items = max(1, math.ceil(deff * (power_factor(alpha, power) * sd / effect) ** 2))
        return n_items, n_items
    g, n = _fewest_units(deff * sd ** 2, effect, alpha, power, cluster_size)
    return max(1, math.ceil(n)), g


def trainings_needed(se_items: float, training_sd: float, effect: float, alpha: float = 0.05,
                     power: float = 0.8) -> int:
    """Paired trainings (seeds) per arm a two-sided test at `alpha` needs to detect a true difference `effect` with
    probability `power`, when one comparison's difference has item noise `se_items` (its standard error over the
    test items) and moves between independent trainings with SD `training_sd` (same items, other seeds):

        k = (q_{1-alpha/2} + q_power)^2 * (training_sd^2 + se_items^2) / effect^2

    with t quantiles on k - 1 degrees of freedom (the k per-seed differences are the test's units): the smallest
    k >= 2 that satisfies it (`_fewest_units`). More test items only shrink se_items: with training_sd > 0, k stays
    above (z-factor * training_sd / effect)^2 however many items there are.
    Example: se_items 0.95, training_sd 1.0, effect 0.48 (2% of ROUGE-1 24): 65 with z quantiles, 67 with t."""
    if not (effect > 0 and se_items >= 0 and training_sd >= 0 and math.isfinite(se_items + training_sd)):
        raise ValueError(f"need effect > 0 and finite se_items, training_sd >= 0; got {effect}, {se_items}, "
                         f"{training_sd}")
    return _fewest_units(training_sd ** 2 + se_items ** 2, effect, alpha, power)[0]
