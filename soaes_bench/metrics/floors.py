"""Content-free floors, the pure part: floor names and the arithmetic of predictors that read no question.

What each floor is, and how soaes_bench.evaluation.task_floors feeds these predictors through a task's own lm-eval
hooks: that module's docstring. The functions here take lists and return numbers; tests check the hook path
against them on simple tasks.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Sequence

NATS_PER_BYTE = math.log(256)
EMPTY, QUESTION, MOST_COMMON = "empty answer", "question copied", "most common answer"
UNIFORM_CHANCE, LONGEST, SHORTEST = "uniform chance", "longest choice (answer-only)", "shortest choice (answer-only)"
UNIFORM_BYTES, UNIGRAM = "uniform bytes", "unigram chars (fit on test)"


def position_name(k: int) -> str:
    """Floor name of "always choice index k": always A, always B, ... (always #27 past Z)."""
    return f"always {chr(ord('A') + k)}" if 0 <= k < 26 else f"always #{k + 1}"


def constant_position_accuracy(golds: Sequence[int], k: int) -> float:
    """Accuracy of always answering choice index k, from the gold indices."""
    if not golds:
        raise ValueError("no items")
    return sum(1 for g in golds if g == k) / len(golds)


def uniform_chance_accuracy(golds: Sequence[int], n_choices: int | Sequence[int]) -> float:
    """Expected accuracy of a uniformly random pick: mean over items of 1 / (number of choices) (gold in range)."""
    if not golds:
        raise ValueError("no items")
    ns = [n_choices] * len(golds) if isinstance(n_choices, int) else list(n_choices)
    return sum((1.0 / n if 0 <= g < n else 0.0) for g, n in zip(golds, ns, strict=True)) / len(golds)


def most_common_answer(answers: Iterable[str]) -> tuple[str, int]:
    """(answer, count) of the most common answer; ties go to the one that occurs first."""
    counts: Counter = Counter()
    first: dict[str, int] = {}
    for i, a in enumerate(answers):
        counts[a] += 1
        first.setdefault(a, i)
    if not counts:
        raise ValueError("no answers")
    best = min(counts, key=lambda a: (-counts[a], first[a]))
    return best, counts[best]


def uniform_byte_loglikelihood(text: str) -> float:
    """Loglikelihood (nats) of `text` under a uniform byte model: -ln 256 per UTF-8 byte."""
    return -NATS_PER_BYTE * len(text.encode("utf-8"))


def unigram_char_loglikelihoods(texts: Sequence[str]) -> list[float]:
    """Per-text loglikelihood (nats) under a unigram character model fit on `texts` themselves (count / total)."""
    counts = Counter()
    for t in texts:
        counts.update(t)
    total = sum(counts.values())
    logp = {c: math.log(n / total) for c, n in counts.items()}
    return [sum(logp[c] for c in t) for t in texts]


def bits_per_byte(loglikelihoods: Sequence[float], texts: Sequence[str]) -> float:
    """Corpus bits per byte: -sum(ll) / sum(UTF-8 bytes) / ln 2."""
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    return -sum(loglikelihoods) / n_bytes / math.log(2)


def best_of(values: dict[str, float | None], higher_is_better: bool | None) -> tuple[str, float] | None:
    """(name, value) of the best floor in the metric's good direction; None without a direction or a value.
    Ties go to the first floor listed."""
    if higher_is_better is None:
        return None
    valid = [(n, v) for n, v in values.items() if v is not None and math.isfinite(v)]
    if not valid:
        return None
    sign = 1.0 if higher_is_better else -1.0
    best = valid[0]
    for n, v in valid[1:]:
        if sign * v > sign * best[1]:
            best = (n, v)
    return best
