"""Medians of repeated timings with distribution-free intervals, and how their coverage is printed."""

from __future__ import annotations

import math
import statistics
from typing import Sequence

from soaes_bench.defaults import CONFIDENCE


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
