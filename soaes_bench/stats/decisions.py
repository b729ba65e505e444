"""Test decisions: McNemar, multiplicity corrections, win/tie/loss, and the superiority / non-inferiority rules the
gates apply (soaes_bench/reporting/gates.py states them). Every function is pure."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.stats import binom

CORRECTIONS = ("holm", "bh", "none")


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


def _finite_p(pvalues: Sequence[float | None]) -> list[float]:
    return [1.0 if p is None or not math.isfinite(p) else float(p) for p in pvalues]


def holm(pvalues: Sequence[float | None], alpha: float = 0.05) -> tuple[list[float], list[bool]]:
    """Holm's step-down correction of m p-values: (adjusted p-values, rejected) in the input order.

    Sort ascending, p_(1) <= ... <= p_(m); adjusted p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)); a hypothesis is
    rejected when p~ <= alpha, i.e. when p_(j) <= alpha / (m - j + 1) for it and every smaller p. Controls the
    family-wise error rate at alpha for any dependence. None/NaN p-values (nothing measured) count as 1.
    Example: [0.01, 0.04, 0.03] -> adjusted [0.03, 0.06, 0.06]; at alpha 0.05 only the first is rejected.
    """
    adjusted = adjust_p(pvalues, "holm")
    return adjusted, [a <= alpha for a in adjusted]


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
