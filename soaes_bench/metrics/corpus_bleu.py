"""Corpus BLEU-4 as a bootstrap statistic of per-item vectors (soaes_bench.stats: a resample sums item rows).

Each item's row is sacrebleu's sufficient statistics [hyp_len, ref_len, correct_1..4, total_1..4] of its
(prediction, reference) pair, and corpus BLEU-4 of any resample is sacrebleu's score of the summed rows: a resample
costs one small sum instead of re-tokenising every sentence. `bleu_items` checks that shortcut against the
project's metric (soaes_bench.metrics.chinese.bleu4) on all items and falls back to recomputing it per resample.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np

from soaes_bench.metrics.chinese import bleu4
from soaes_bench.stats import Statistic


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
    """Corpus BLEU-4 by the project's metric (soaes_bench.metrics.chinese.bleu4)."""
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
