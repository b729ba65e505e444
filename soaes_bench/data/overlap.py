"""Pure text-overlap functions for `soaes-bench data check`: units, n-gram hashes, MinHash/LSH, contamination.

Text is compared as a sequence of *units*: each CJK ideograph is one unit and each run of other letters/digits
(an English word, a number) is one unit; whitespace and punctuation are dropped and text is NFKC-normalised
and lower-cased first. So a "13-gram" is 13 Chinese characters or 13 English words (the GPT-3 contamination
n-gram), and full-width/half-width or spacing differences do not hide a copy.

Every hash here is stable across runs and machines (blake2b for words, fixed 64-bit mixing, seeded MinHash
permutations): the same files always give the same report. All functions are pure; numpy does the heavy lifting
so a few MB of training text is indexed in seconds.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Iterable, Sequence

import numpy as np

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_UNIT_RE = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_P32 = np.uint64(4294967291)  # largest prime below 2**32: MinHash permutations live in Z_p
_ROLL = np.uint64(0x100000001B3)  # odd multiplier of the rolling n-gram hash


def units(text: str) -> list[str]:
    """Normalised comparison units of `text` (see module docstring)."""
    return _UNIT_RE.findall(unicodedata.normalize("NFKC", text).lower())


def fingerprint(text: str | Sequence[np.ndarray]) -> str:
    """Hash of the normalised text (or of its segments' unit_hashes): two items with equal fingerprints are exact
    duplicates up to spacing, punctuation, width and case."""
    u = unit_hashes(text) if isinstance(text, str) else np.concatenate([np.zeros(0, np.uint64), *text])
    return hashlib.blake2b(u.astype("<u8").tobytes(), digest_size=16).hexdigest()


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads integer ids into well-mixed 64-bit values (vectorised, wraps mod 2**64)."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _word_id(u: str) -> int:
    return int.from_bytes(hashlib.blake2b(u.encode("utf-8"), digest_size=8).digest(), "little") | (1 << 63)


def unit_hashes(text: str) -> np.ndarray:
    """One mixed uint64 per unit: a single character's id is its code point, a word's id a blake2b hash.
    Vectorised (code points straight from UTF-32); only multi-character units take the Python path."""
    us = units(text)
    if not us:
        return np.zeros(0, np.uint64)
    cps = np.frombuffer("".join(us).encode("utf-32-le"), dtype=np.uint32)
    lens = np.fromiter(map(len, us), dtype=np.int64, count=len(us))
    ids = cps[np.cumsum(lens) - lens].astype(np.uint64)
    for i in np.flatnonzero(lens > 1):
        ids[i] = _word_id(us[i])
    return _mix64(ids)


def ngrams_from_units(u: np.ndarray, n: int) -> np.ndarray:
    """uint64 hashes of every window of n unit hashes (a rolling polynomial, then mixed); empty if len(u) < n."""
    m = len(u) - n + 1
    if m <= 0:
        return np.zeros(0, np.uint64)
    h = np.zeros(m, np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * _ROLL + u[k:k + m]
    return _mix64(h)


def segment_ngrams(text: str, n: int) -> tuple[np.ndarray, int]:
    """(n-gram hashes, number of units) of one text field; coverage needs the unit count too."""
    u = unit_hashes(text)
    return ngrams_from_units(u, n), len(u)


def ngram_hashes(text: str | Sequence[str], n: int) -> np.ndarray:
    """uint64 hashes of every n-unit window (empty if fewer than n units).

    A list of segments (question, each choice, ...) is hashed segment by segment, so no n-gram spans two fields
    that never appear next to each other in the real text.
    """
    if isinstance(text, str):
        return segment_ngrams(text, n)[0]
    parts = [segment_ngrams(t, n)[0] for t in text]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint64)


def sorted_unique(x: np.ndarray) -> np.ndarray:
    """np.unique by sorting: numpy 2's hash-based unique is ~10x slower on the many small arrays used here."""
    x = np.sort(np.asarray(x, np.uint64))
    return x[np.concatenate(([True], x[1:] != x[:-1]))] if len(x) else x


# ---------------------------------------------------------------------------------------------- MinHash + LSH
def jaccard(a: Iterable, b: Iterable) -> float:
    """Exact Jaccard similarity |A & B| / |A | B| of two sets (1.0 for two empty sets)."""
    a, b = set(a), set(b)
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def shingles(text: str | Sequence[str], k: int = 5) -> np.ndarray:
    """Sorted unique 32-bit shingle hashes: k-unit windows (k Chinese characters / k words)."""
    segments = [text] if isinstance(text, str) else text
    return shingles_from_units([unit_hashes(t) for t in segments], k)


def shingles_from_units(segments: Sequence[np.ndarray], k: int = 5) -> np.ndarray:
    """shingles() from precomputed unit_hashes of each segment."""
    parts = [ngrams_from_units(u, k) for u in segments]
    return sorted_unique(np.concatenate(parts) >> np.uint64(32)) if parts else np.zeros(0, np.uint64)


def minhash_params(num_perm: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded coefficients of h_i(x) = (a_i * x + b_i) mod p, p = 2**32 - 5, a_i in [1, p), b_i in [0, p).

    a and b must be uniform over the whole field: with a small a (say a < 2**32 but p = 2**61 - 1) the small
    shingle values never wrap and win every minimum, so unrelated texts get near-identical signatures.
    Everything stays below 2**64, so uint64 arithmetic is exact."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, int(_P32), size=num_perm, dtype=np.uint64)
    b = rng.integers(0, int(_P32), size=num_perm, dtype=np.uint64)
    return a, b


def minhash(shingle_set: np.ndarray, params: tuple[np.ndarray, np.ndarray], chunk: int = 4096) -> np.ndarray:
    """MinHash signature (num_perm uint64 minima). Empty input gives all-max values (matches nothing real)."""
    a, b = params
    sig = np.full(len(a), _P32, dtype=np.uint64)
    x = np.asarray(shingle_set, dtype=np.uint64) % _P32
    for i in range(0, len(x), chunk):
        block = (x[i:i + chunk, None] * a[None, :] + b[None, :]) % _P32
        sig = np.minimum(sig, block.min(axis=0))
    return sig


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Fraction of agreeing MinHash slots: an unbiased estimate of the Jaccard similarity."""
    return float(np.mean(sig_a == sig_b))


def near_duplicate_groups(signatures: np.ndarray, fingerprints: Sequence[str], bands: int = 16,
                          threshold: float = 0.8, max_compare: int = 50) -> list[int]:
    """Cluster label per item: exact duplicates (same fingerprint) plus LSH candidates whose estimated Jaccard
    is >= threshold. `signatures` is (n_items, num_perm); with 16 bands of 8 rows the LSH catches pairs above
    about (1/16)**(1/8) ~ 0.71. Within one bucket each item is compared with at most `max_compare` earlier
    members, which keeps boilerplate-heavy buckets linear.
    """
    n = len(fingerprints)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    first: dict[str, int] = {}
    for i, fp in enumerate(fingerprints):
        union(i, first.setdefault(fp, i))
    if n and signatures.shape[1] % bands:
        raise ValueError(f"num_perm {signatures.shape[1]} is not divisible by bands {bands}")
    rows = signatures.shape[1] // bands if n else 0
    empty = (signatures == _P32).all(axis=1) if n else np.zeros(0, bool)
    for band in range(bands):
        buckets: dict[bytes, list[int]] = {}
        block = np.ascontiguousarray(signatures[:, band * rows:(band + 1) * rows])
        for i in range(n):
            if empty[i]:
                continue
            members = buckets.setdefault(block[i].tobytes(), [])
            for j in members[-max_compare:]:
                if find(i) != find(j) and estimate_jaccard(signatures[i], signatures[j]) >= threshold:
                    union(i, j)
            members.append(i)
    return [find(i) for i in range(n)]


# ---------------------------------------------------------------------------------------------- contamination
def build_index(items: Iterable[np.ndarray]) -> np.ndarray:
    """Sorted unique n-gram hashes of a whole training set."""
    parts = [np.asarray(x, np.uint64) for x in items]
    return sorted_unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)


def contains(index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Boolean mask: which `values` are in the sorted array `index`."""
    if len(index) == 0 or len(values) == 0:
        return np.zeros(len(values), bool)
    pos = np.searchsorted(index, values).clip(max=len(index) - 1)
    return index[pos] == values


def covered_units(starts: np.ndarray, n: int, n_units: int) -> np.ndarray:
    """Boolean per unit: inside at least one n-gram whose start position is flagged in `starts`."""
    delta = np.zeros(n_units + 1, np.int64)
    idx = np.flatnonzero(starts)
    np.add.at(delta, idx, 1)
    np.add.at(delta, idx + n, -1)
    return np.cumsum(delta[:n_units]) > 0


def template_ngrams(items: Sequence[np.ndarray], max_items: int) -> np.ndarray:
    """Sorted n-grams that occur in more than `max_items` different eval items: prompt templates and boilerplate
    ("请为下面这段新闻拟一个标题", a law's full title) that say nothing about whether the item itself was seen."""
    uniq = [sorted_unique(x) for x in items if len(x)]
    if not uniq:
        return np.zeros(0, np.uint64)
    vals = np.sort(np.concatenate(uniq))
    starts = np.flatnonzero(np.concatenate(([True], vals[1:] != vals[:-1])))
    counts = np.diff(np.append(starts, len(vals)))
    return vals[starts][counts > max_items]


def contamination(index: np.ndarray, items: Sequence[Sequence[tuple[np.ndarray, int]]], n: int,
                  ignore: np.ndarray | None = None, min_coverage: float = 0.8) -> dict:
    """Overlap of eval items (each a list of segment_ngrams results) with a sorted training index.

    Per item: `shares` (at least one n-gram also in training) and `coverage` (fraction of the item's units inside
    shared n-grams; units covered only by ignored template n-grams leave the denominator). An item is `leaked`
    when coverage >= min_coverage. Rates: share_rate, leak_rate, partial_rate (coverage >= 0.5) and ngram_rate
    (fraction of all non-template eval n-gram occurrences found in training).
    """
    shares = np.zeros(len(items), bool)
    coverage = np.zeros(len(items))
    hits = total = 0
    for i, segments in enumerate(items):
        covered = units_left = 0
        for grams, n_units in segments:
            tmpl = contains(ignore, grams) if ignore is not None else np.zeros(len(grams), bool)
            found = contains(index, grams) & ~tmpl
            cov = covered_units(found, n, n_units)
            covered += int(cov.sum())
            units_left += n_units - int((covered_units(tmpl, n, n_units) & ~cov).sum())
            shares[i] |= bool(found.any())
            hits += int(found.sum())
            total += int((~tmpl).sum())
        coverage[i] = covered / units_left if units_left else 0.0
    leaked = coverage >= min_coverage
    k = max(len(items), 1)
    return {"shares": shares, "coverage": coverage, "leaked": leaked, "share_rate": shares.sum() / k,
            "leak_rate": leaked.sum() / k, "partial_rate": (coverage >= 0.5).sum() / k,
            "ngram_hits": hits, "ngram_total": total, "ngram_rate": hits / total if total else 0.0}


# ---------------------------------------------------------------------------------------------- knowledge sets
_CITATION = re.compile(r"《[^《》\n]{1,60}》|第[零〇一二三四五六七八九十百千\d]+[条款项章节](?:之[一二三四五六七八九十]+)?")


_QUOTE = re.compile(r"“([^”]+?)(?:……)?”")
_LEAD = re.compile(r"^[\s，：。]*(?:根据|依照|按照|出自)?[\s，：。]*")


def content(text: str) -> str:
    """strip_citations(text) without a leading 根据/依照/按照/出自: "根据《X法》第N条，<sentence>" -> "<sentence>"."""
    return _LEAD.sub("", strip_citations(text), count=1)


def strip_citations(text: str) -> str:
    """`text` without law titles (《...》) and article/paragraph numbers (第十一条, 第二款): the parts every answer
    about a law shares. A knowledge item's leak is judged on the rest, its content, so that "出自《中华人民共和国
    公司法》第十一条" is not "covered" by SFT answers about 第十条 and 第十二条 of the same law."""
    return _CITATION.sub("，", text)


class TextIndex:
    """Exact fingerprints, and n-grams and unit strings of the content (see content()) of a set of texts (the SFT
    turns): is a knowledge item's question or answer in them?"""

    MIN_CONTAINED_UNITS = 6  # a shorter answer ("应当") is in every legal text: not a leak by itself

    def __init__(self, texts: Iterable[str], n: int = 13):
        texts = list(texts)
        self.n = n
        self.fingerprints = {fingerprint(t) for t in texts}
        self.index = build_index(ngram_hashes(content(t), n) for t in texts)
        self._joined = "\x00".join(self._unit_string(t) for t in texts)

    @staticmethod
    def _unit_string(text: str) -> str:
        return "\x01" + "\x01".join(units(content(text))) + "\x01"

    def has_exact(self, text: str) -> bool:
        """The same text (up to spacing, punctuation, width and case) is one of the indexed texts."""
        return fingerprint(text) in self.fingerprints

    def contains(self, text: str) -> bool:
        """The content of `text` (overlap.content, at least MIN_CONTAINED_UNITS units) occurs inside one of the
        indexed texts."""
        return len(units(content(text))) >= self.MIN_CONTAINED_UNITS and self._unit_string(text) in self._joined

    def coverage(self, text: str) -> float:
        """Fraction of the units of content(text) inside n-grams found in the index; 0 below n units."""
        u = unit_hashes(content(text))
        if len(u) < self.n:
            return 0.0
        found = contains(self.index, ngrams_from_units(u, self.n))
        return float(covered_units(found, self.n, len(u)).mean())

    def leak(self, question: str, answer: str, evidence: str, min_coverage: float = 0.8) -> tuple[str, float] | None:
        """Why a knowledge item is in these texts, or None. `evidence` is the article text the item shows as its
        answer (schemas.knowledge_view). Leaked: the question or the answer is one of the texts (exact), the
        answer's content occurs inside one of them, or at least min_coverage of the evidence's content, or of the
        question's content (its quoted text when it quotes one), lies in their n-grams. Returns (reason, evidence
        coverage)."""
        cov = self.coverage(evidence)
        if self.has_exact(question):
            return "question", cov
        if self.has_exact(answer):
            return "answer", cov
        if self.contains(answer):
            return "answer text", cov
        if cov >= min_coverage:
            return f"answer text ({cov:.0%} of it)", cov
        quoted = _QUOTE.search(question)  # a quoted lead ("“…”出自哪一条？") is the article text in the question
        q_cov = self.coverage(quoted.group(1) if quoted else question)  # e.g. cited as "本法第六十条关于…的规定"
        if q_cov >= min_coverage:
            return f"question text ({q_cov:.0%} of it)", cov
        return None
