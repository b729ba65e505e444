"""Generation health: is a model answering at all, or repeating itself? Pure functions, no model, no I/O.

Why: ROUGE and BLEU average over items and hide degenerate output. A model that answers 200 different law questions
with 3 distinct strings, each one clause repeated until the 64-token limit ("行政法规的规定、行政法规的规定、…"),
still gets a few ROUGE points from the shared law vocabulary. These three numbers make that visible:

* ``distinct_share`` (↑): distinct answers / answers. Collapsed models give the same answer to every question.
* ``is_looping`` / ``repetition_share`` (per item 0/1, task mean ↓): the answer is mostly one repeated clause.
* ``length_ratio`` (no better direction): corpus sum(prediction chars) / sum(reference chars). A looping model
  runs to the token limit (ratio up), a collapsed one may stop at once (ratio down); a ratio near 1 is not
  "better" in itself -- a concise correct answer is fine -- so comparison code treats it as direction-neutral.

All functions take predictions after the scorer's cleaning (``task_hooks.clean_prediction``: cut at the stop
strings, strip) and strip again themselves, so they also accept raw text.

Looping rule (``repetition_share(text) >= LOOP_THRESHOLD``; documented on `repetition_share`): the share of the
characters of the answer covered by (a) every occurrence of its most covering repeated clause -- the substring of
2-64 characters occurring at least 3 times (non-overlapping) whose occurrences cover the most characters -- and
(b) back-to-back runs of a unit of 1-64 characters repeated at least 3 times ("纷纷纷", ".5.5.5", "自治区、自治区、自治区、").
Character n-grams, not jieba words, because loops cut words in half ("…行政法规的规定、行政") and segmentation of
degenerate text is unstable. Real law text legitimately repeats terms ("国务院", "个人信息", whole phrases twice
in one article); measured on the shipped references (domain_qa 200 + general_gen 200), all 250+250 documents
of domain_text/zh_text, the 2716 sentences of those documents and references, and the 1920 multiple-choice options,
the largest share is 0.465 (an option repeating "数据开发利用和数据安全" three times) and no text is flagged, except
one zh_text review that *is* a loop ("物流速度太慢了," 21 times). The committed looping answers quoted in
tests/test_health.py score 0.507-1.0.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Iterable, Sequence

LOOP_THRESHOLD = 0.5  # repetition_share at or above this: looping
MIN_REPEATS = 3  # a clause must occur this often (twice is common in law text: "…的，应当…；…的，应当…")
MIN_UNIT, MAX_UNIT = 2, 64  # clause lengths (characters) for rule (a); runs of rule (b) use units of 1..MAX_UNIT
_RUN = re.compile(r"(.{1,%d}?)\1{%d,}" % (MAX_UNIT, MIN_REPEATS - 1), re.S)


def _clean(text) -> str:
    return "" if text is None else str(text).strip()


def distinct_share(predictions: Iterable[str]) -> float:
    """Share of distinct answers among all answers: len(set(stripped predictions)) / len(predictions), in (0, 1].

    Why: a collapsed model gives one answer to every question; ROUGE does not show it. How: predictions are compared
    as exact strings after stripping (the scorer's cleaning), over *all* items; every empty answer is the same answer
    "", so 200 empty predictions give 1/200 and 199 distinct answers plus one empty give 200/200. 1.0 when every
    answer differs. A corpus statistic: it is not a mean of per-item values, and a bootstrap resample (which repeats
    items) lowers it by construction, so no paired bootstrap CI is given for it.
    """
    preds = [_clean(p) for p in predictions]
    if not preds:
        raise ValueError("distinct_share: no predictions")
    return len(set(preds)) / len(preds)


def _best_clause(text: str) -> str | None:
    """The substring of MIN_UNIT..MAX_UNIT characters with >= MIN_REPEATS non-overlapping occurrences that covers the
    most characters (count x length; ties: the shorter, then the first found), or None.

    Substrings made only of digits are skipped ("00" in "100,000,000" is not a clause; a digit loop such as
    "757575…" is a back-to-back run, rule (b)). Lengths are tried upwards and the search stops at the first length
    with no candidate, since every longer repeated substring contains a repeated shorter one: work is
    O(n x longest repeat x MAX_UNIT) character copies, a few ms for a 64-token answer.
    """
    n = len(text)
    best, best_cover = None, 0
    m = MIN_UNIT
    while m <= MAX_UNIT and m * MIN_REPEATS <= n:
        grams = Counter(text[i:i + m] for i in range(n - m + 1))
        found = False
        for gram, overlapping in grams.items():
            if overlapping < MIN_REPEATS:
                continue
            found = True
            if gram.isdigit():
                continue
            count = text.count(gram)  # str.count: non-overlapping, left to right
            if count >= MIN_REPEATS and count * m > best_cover:
                best, best_cover = gram, count * m
        if not found:
            break
        m += 1
    return best


def repetition_share(text: str) -> float:
    """Share (0-1) of the characters of `text` (stripped) that belong to a repetition; 0.0 for empty text.

    A character is covered when it lies in
      (a) an occurrence of the answer's most covering repeated clause (`_best_clause`: 2-64 characters, occurring at
          least 3 times, not all digits), e.g. "《中华人民共和国公司法》" three times in "《…》，由《…》是《…》。"; or
      (b) a back-to-back run of one unit of 1-64 characters repeated at least 3 times ("行政法规的规定、" x 25,
          "1月6日，1月6日，1月6日，", "----", ".5.5.5"), except a run of one repeated digit (the zeros of 1000000).
    (b) catches answers that loop on several different units in turn; (a) catches a clause repeated with different
    words in between. Only one clause counts for (a): counting every substring that occurs 3 times would cover much
    of a long law article made of common terms.
    Examples: "自治区、" x 10 -> 1.0; "个人信息处理者应当对其个人信息处理活动负责，并采取必要措施保障所处理的个人信息的安全。" -> 12/43.
    """
    t = _clean(text)
    if not t:
        return 0.0
    covered = bytearray(len(t))
    clause = _best_clause(t)
    if clause:
        i = t.find(clause)
        while i >= 0:
            covered[i:i + len(clause)] = b"\x01" * len(clause)
            i = t.find(clause, i + len(clause))
    for run in _RUN.finditer(t):
        unit = run.group(1)
        if len(set(unit)) == 1 and unit.isdigit():
            continue
        covered[run.start():run.end()] = b"\x01" * (run.end() - run.start())
    return sum(covered) / len(t)


def is_looping(text: str, threshold: float = LOOP_THRESHOLD) -> bool:
    """True when at least `threshold` (0.5) of the answer is repetition (`repetition_share`): a repeated clause.

    Why: a looping answer is a generation failure whatever its ROUGE. How: see `repetition_share`; the threshold 0.5
    means the repetition is most of the answer. Empty text is not looping (it is caught by distinct_share/length).
    """
    return repetition_share(text) >= threshold


def text_length(text: str) -> int:
    """Length in characters (Unicode code points) after stripping: what `length_ratio` compares.

    Characters, not tokens, so the number does not depend on a model's tokenizer; punctuation and inner newlines
    count (a loop of "、"-separated clauses is long because of them too).
    """
    return len(_clean(text))


def length_ratio(pairs: Iterable[Sequence[float]]) -> float:
    """Corpus length ratio sum(prediction lengths) / sum(reference lengths) of (pred_len, ref_len) pairs.

    = mean prediction length / mean reference length over the task (a ratio of means, like corpus bits per byte,
    not a mean of per-item ratios, which single short references would dominate). 1.0: as long as the references
    on average; > 1 longer (looping to the token limit), < 1 shorter. No better direction. NaN when every
    reference is empty.
    """
    pairs = [(float(p), float(r)) for p, r in pairs]
    if not pairs:
        raise ValueError("length_ratio: no (prediction, reference) lengths")
    ref = math.fsum(r for _, r in pairs)
    return math.fsum(p for p, _ in pairs) / ref if ref else math.nan


def health(predictions: Sequence[str], references: Sequence[str]) -> dict:
    """{"distinct", "looping", "length_ratio", "pred_chars", "ref_chars", "n"} of paired predictions/references:
    the three task metrics as the lm-eval tasks compute them, plus the mean lengths, for offline use on samples."""
    preds, refs = list(predictions), list(references)
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions but {len(refs)} references")
    lengths = [(text_length(p), text_length(r)) for p, r in zip(preds, refs)]
    return {"distinct": distinct_share(preds),
            "looping": sum(is_looping(p) for p in preds) / len(preds),
            "length_ratio": length_ratio(lengths),
            "pred_chars": sum(p for p, _ in lengths) / len(preds),
            "ref_chars": sum(r for _, r in lengths) / len(preds),
            "n": len(preds)}
