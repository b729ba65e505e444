"""`soaes-bench data check`: schema errors, duplicates, MinHash accuracy, contamination, manifest, exit codes.

Everything runs on small files under tmp_path; the real built data is never needed.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

from soaes_bench import cli
from soaes_bench.data import check, overlap
from soaes_bench.errors import UserError
from soaes_bench.io import sha256_file, write_json, write_jsonl

CJK = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]


def rand_zh(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(CJK) for _ in range(n))


def doc(i, text, lang="zh"):
    return {"id": f"d{i}", "text": text, "source": "test", "lang": lang}


def gen(i, q, a):
    return {"id": f"g{i}", "question": q, "answer": a, "source": "test", "kind": "qa"}


# ---------------------------------------------------------------------------------------------- schemas
GOOD = {
    "doc": doc(1, "国有资产受法律保护。"),
    "text": {"id": "t1", "text": "一段文本", "source": "s"},
    "sft": {"id": "s1", "messages": [{"role": "user", "content": "问"}, {"role": "assistant", "content": "答"}],
            "source": "s", "kind": "generated", "cite": None},
    "handwritten": {"id": "hw-1", "question": "问", "answer": "答", "topic": "valuation",
                    "cite": {"law": "中华人民共和国企业国有资产法", "article": "第四十七条"}},
    "mc": {"id": "m1", "question": "问", "choices": ["甲", "乙", "丙", "丁"], "answer": 2, "source": "s"},
    "gen": gen(1, "问", "答"),
    "kgen": {**gen(2, "问", "答"), "cite": "中华人民共和国公司法 第二条"},
    "kmc": {"id": "km1", "question": "根据《公司法》：公司", "choices": ["甲。", "乙。", "丙。", "丁。"], "answer": 1,
            "source": "s", "cite": "中华人民共和国公司法 第一百零二条"},
}

BAD = [  # (schema, field changes, field named in the message)
    ("mc", {"choices": ["甲", "乙", "丙"]}, "choices"),
    ("mc", {"choices": ["甲", "乙", "丙", "甲"]}, "choices"),
    ("mc", {"choices": ["甲", "乙", "丙", "  "]}, "choices"),
    ("mc", {"answer": 4}, "answer"),
    ("mc", {"answer": True}, "answer"),
    ("mc", {"answer": "1"}, "answer"),
    ("sft", {"messages": [{"role": "assistant", "content": "答"}, {"role": "user", "content": "问"}]}, "messages"),
    ("sft", {"messages": [{"role": "user", "content": "问"}, {"role": "user", "content": "又问"}]}, "messages"),
    ("sft", {"messages": [{"role": "user", "content": "问"}]}, "messages"),
    ("sft", {"messages": [{"role": "user", "content": "问"}, {"role": "assistant", "content": ""}]}, "messages[1].content"),
    ("sft", {"kind": "other"}, "kind"),
    ("sft", {"cite": 3}, "cite"),
    ("doc", {"lang": "fr"}, "lang"),
    ("doc", {"text": "   "}, "text"),
    ("gen", {"answer": None}, "answer"),
    ("text", {"source": 5}, "source"),
    ("handwritten", {"cite": {"law": "某法"}}, "cite.article"),
    ("doc", {"id": True}, "id"),
    ("kgen", {"cite": "中华人民共和国公司法"}, "cite"),
    ("kgen", {"cite": None}, "cite"),
    ("kmc", {"answer": 7}, "answer"),
]


@pytest.mark.parametrize("schema, change, field", BAD)
def test_schema_error_names_file_line_and_field(tmp_path, schema, change, field):
    bad = {**GOOD[schema], **change, "id": change.get("id", "x2")}
    path = tmp_path / "data.jsonl"
    write_jsonl(path, [GOOD[schema], bad])
    with pytest.raises(UserError) as e:
        check.load_file(path, schema)
    assert str(e.value).startswith(f"{path}:2: field {field}:"), str(e.value)
    assert e.value.code == 2


def test_missing_field_and_duplicate_id(tmp_path):
    path = tmp_path / "mc.jsonl"
    row = dict(GOOD["mc"])
    del row["source"]
    write_jsonl(path, [GOOD["mc"], {**GOOD["mc"], "id": "m2"}, row])
    with pytest.raises(UserError, match=r"mc.jsonl:3: field source: missing"):
        check.load_file(path, "mc")
    write_jsonl(path, [GOOD["mc"], {**GOOD["mc"], "question": "另一个"}])
    with pytest.raises(UserError, match=r"mc.jsonl:2: field id: duplicate id 'm1' \(first on line 1\)"):
        check.load_file(path, "mc")


def test_good_rows_of_every_schema_pass_and_system_turn_is_allowed(tmp_path):
    for schema, row in GOOD.items():
        write_jsonl(tmp_path / f"{schema}.jsonl", [row])
        assert check.load_file(tmp_path / f"{schema}.jsonl", schema).ids == [row["id"]]
    sft = {**GOOD["sft"], "messages": [{"role": "system", "content": "你是专家"}, *GOOD["sft"]["messages"]]}
    write_jsonl(tmp_path / "sys.jsonl", [sft])
    assert check.load_file(tmp_path / "sys.jsonl", "sft").segments == [["你是专家", "问", "答"]]
    assert {check.infer_schema(r) for r in GOOD.values()} == set(GOOD)


def test_empty_file_is_refused(tmp_path):
    for text in ("", "\n  \n"):
        (tmp_path / "e.jsonl").write_text(text, encoding="utf-8")
        with pytest.raises(UserError, match=r"e.jsonl: empty file"):
            check.load_file(tmp_path / "e.jsonl", "doc")


# ---------------------------------------------------------------------------------------------- units and hashes
def test_units_ignore_spacing_punctuation_width_and_case():
    assert overlap.units("国有 资产，ＡＢＣ word-2009年!") == ["国", "有", "资", "产", "abc", "word", "2009", "年"]
    assert overlap.fingerprint("国有资产，受法律保护。") == overlap.fingerprint("国有资产 受法律保护")
    assert overlap.fingerprint("国有资产受法律保护") != overlap.fingerprint("国有资产受法律保障")


def test_ngram_hashes_and_coverage_match_a_brute_force_computation():
    rng = random.Random(0)
    train = [rand_zh(rng, 300) + " the quick brown fox " + rand_zh(rng, 50) for _ in range(5)]
    evals = [train[0][100:160], train[1][10:20], rand_zh(rng, 80), "，".join([train[2][:30], rand_zh(rng, 30)])]
    n = 13

    def tuples(t):
        u = overlap.units(t)
        return [tuple(u[i:i + n]) for i in range(len(u) - n + 1)]

    ref_index = {g for t in train for g in tuples(t)}
    index = overlap.build_index(overlap.ngram_hashes(t, n) for t in train)
    assert len(index) == len(ref_index)
    res = overlap.contamination(index, [[overlap.segment_ngrams(t, n)] for t in evals], n)
    found = [[g in ref_index for g in tuples(t)] for t in evals]
    covered = [{j for k, f in enumerate(fs) if f for j in range(k, k + n)} for fs in found]
    ref_cov = [len(c) / len(overlap.units(t)) for c, t in zip(covered, evals)]
    assert res["shares"].tolist() == [any(f) for f in found] == [True, False, False, True]
    assert res["coverage"].tolist() == pytest.approx(ref_cov)
    assert ref_cov[0] == 1.0 and ref_cov[3] == pytest.approx(30 / 60)
    assert res["leaked"].tolist() == [True, False, False, False]
    assert res["ngram_hits"] == sum(sum(f) for f in found)
    assert res["ngram_rate"] == pytest.approx(sum(sum(f) for f in found) / sum(len(f) for f in found))
    # segments are hashed separately: no n-gram across the boundary of two fields
    assert len(overlap.ngram_hashes(["一二三四五六", "七八九十甲乙丙"], n)) == 0


def test_covered_units():
    starts = np.array([False, True, False, False, False, False, True])
    assert overlap.covered_units(starts, 3, 9).tolist() == [False, True, True, True, False, False, True, True, True]
    assert not overlap.covered_units(np.zeros(0, bool), 13, 5).any()


def test_hashes_are_stable_across_processes():
    code = ("from soaes_bench.data import overlap; import numpy as np;"
            "print(int(overlap.ngram_hashes('国家出资企业应当依法建立和完善法人治理结构', 13).sum(dtype=np.uint64)),"
            "overlap.fingerprint('abc 国有'), overlap.minhash(overlap.shingles('国家出资企业依法享有经营自主权'),"
            "overlap.minhash_params(8, 3)).tolist())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(outs) == 1


# ---------------------------------------------------------------------------------------------- MinHash
@pytest.mark.parametrize("shared", [0, 40, 100, 200, 300])
def test_minhash_estimate_is_close_to_exact_jaccard(shared):
    rng = random.Random(shared)
    common = list(range(shared))
    a = np.array(common + [10_000 + rng.randrange(10**9) for _ in range(300 - shared)], dtype=np.uint64)
    b = np.array(common + [2 * 10**9 + rng.randrange(10**9) for _ in range(300 - shared)], dtype=np.uint64)
    exact = overlap.jaccard(a.tolist(), b.tolist())
    assert exact == pytest.approx(shared / (600 - shared))
    params = overlap.minhash_params(256, seed=7)
    est = overlap.estimate_jaccard(overlap.minhash(a, params), overlap.minhash(b, params))
    assert abs(est - exact) < 0.08, (est, exact)  # std of the estimate is <= 0.5 / sqrt(256) = 0.031


def test_minhash_on_texts_with_small_shingle_values():
    """Regression: texts whose shingle sets overlap little must not look alike (small hash values must not win)."""
    rng = random.Random(3)
    base = rand_zh(rng, 200)
    params = overlap.minhash_params(128, seed=1)
    for other in (rand_zh(rng, 200), base[:40] + rand_zh(rng, 160), base[:150] + rand_zh(rng, 50)):
        sa, sb = overlap.shingles(base), overlap.shingles(other)
        exact = overlap.jaccard(sa.tolist(), sb.tolist())
        est = overlap.estimate_jaccard(overlap.minhash(sa, params), overlap.minhash(sb, params))
        assert abs(est - exact) < 0.12, (est, exact)


# ---------------------------------------------------------------------------------------------- duplicates
def test_planted_exact_and_near_duplicates_are_detected(tmp_path):
    rng = random.Random(1)
    texts = [rand_zh(rng, 120) for _ in range(30)]
    clean = tmp_path / "clean.jsonl"
    write_jsonl(clean, [doc(i, t) for i, t in enumerate(texts)])
    stats = check.duplicate_stats(check.load_file(clean, "doc"))
    assert stats["exact_dups"] == stats["near_dups"] == 0

    near = texts[5][:60] + rng.choice(CJK) + texts[5][61:118]  # 1 char changed, 2 dropped: Jaccard ~0.9
    exact = "，".join(texts[9][i:i + 10] for i in range(0, 120, 10)) + "。"  # same text, new punctuation
    planted = tmp_path / "planted.jsonl"
    write_jsonl(planted, [doc(i, t) for i, t in enumerate(texts + [near, exact])])
    stats = check.duplicate_stats(check.load_file(planted, "doc"))
    assert stats["exact_dups"] == 1 and stats["exact_dup_rate"] == pytest.approx(1 / 32)
    assert stats["near_dups"] == 2 and stats["near_dup_rate"] == pytest.approx(2 / 32)
    assert sorted(stats["near_dup_examples"]) == [["d30", "d5"], ["d31", "d9"]]


# ---------------------------------------------------------------------------------------------- contamination
def _setup(tmp_path, leaks: list[str]):
    rng = random.Random(2)
    train_docs = [rand_zh(rng, 400) for _ in range(20)]
    write_jsonl(tmp_path / "domain.jsonl", [doc(i, t) for i, t in enumerate(train_docs)])
    items = [gen(i, rand_zh(rng, 25) + "？", rand_zh(rng, 60)) for i in range(30)]
    for k, text in enumerate(leaks):
        items[k] = gen(k, "下列说法对吗？", text)
    write_jsonl(tmp_path / "domain_qa.jsonl", items)
    return train_docs, {tmp_path / "domain.jsonl": "doc"}, {tmp_path / "domain_qa.jsonl": "gen"}


def test_clean_eval_set_passes(tmp_path):
    _, train, evals = _setup(tmp_path, [])
    report = check.check_data(train, evals)
    assert report["passed"] and report["failures"] == []
    b = report["by_eval"][str(tmp_path / "domain_qa.jsonl")]
    assert b["leak_rate"] == b["share_rate"] == b["ngram_rate"] == 0.0


def test_planted_leaks_are_caught_and_fail_the_check(tmp_path):
    rng = random.Random(5)
    docs = _setup(tmp_path, [])[0]
    copied = docs[3][50:170]
    edited = list(docs[7][200:320])
    for pos in (20, 50, 90):  # a few characters changed: the 13-character stretches between them survive
        edited[pos] = rng.choice(CJK)
    partial = rand_zh(rng, 60) + docs[9][0:20]  # shares a 20-character phrase only
    _, train, evals = _setup(tmp_path, [copied, "".join(edited), partial])
    report = check.check_data(train, evals, max_leak=0.05)
    b = report["by_eval"][str(tmp_path / "domain_qa.jsonl")]
    assert [x["id"] for x in b["leaked"]] == ["g0", "g1"] and b["leaked"][0]["coverage"] > b["leaked"][1]["coverage"]
    assert b["items_leaked"] == 2 and b["leak_rate"] == pytest.approx(2 / 30)
    assert b["items_sharing"] == 3 and b["share_rate"] == pytest.approx(3 / 30)
    pair = report["contamination"][0]
    assert pair["train"].endswith("domain.jsonl") and pair["leak_rate"] == b["leak_rate"]
    assert not report["passed"] and "domain_qa.jsonl" in report["failures"][0]
    assert check.check_data(train, evals, max_leak=0.10)["passed"]
    assert "FAILED" in check.format_table(report) and "g0 (" in check.format_table(report)


def test_short_shared_phrases_are_not_leaks_but_english_sentences_are(tmp_path):
    sentence = "The state council exercises ownership of state assets on behalf of the state in all enterprises."
    write_jsonl(tmp_path / "train.jsonl", [
        doc(0, "履行出资人职责的机构代表本级人民政府对国家出资企业依法享有资产收益。"), doc(1, sentence, "en")])
    write_jsonl(tmp_path / "eval.jsonl", [
        gen(0, "履行出资人职责的机构是什么？", "国资委等机构。"),  # 10-character stock phrase only
        gen(1, "Who?", sentence.upper()),
        gen(2, "Who?", "ownership of state assets on behalf of the state")])  # 9 words only
    report = check.check_data({tmp_path / "train.jsonl": "doc"}, {tmp_path / "eval.jsonl": "gen"}, max_leak=1.0)
    b = report["by_eval"][str(tmp_path / "eval.jsonl")]
    assert b["items_sharing"] == 1 and [x["id"] for x in b["leaked"]] == ["g1"]


def test_templates_shared_by_many_eval_items_are_ignored(tmp_path):
    template = "根据中华人民共和国企业国有资产法的规定下列说法正确的是"
    rng = random.Random(4)
    write_jsonl(tmp_path / "train.jsonl", [doc(0, "新闻：" + template + rand_zh(rng, 50))])
    write_jsonl(tmp_path / "eval.jsonl", [gen(i, template + rand_zh(rng, 10), rand_zh(rng, 20)) for i in range(10)])
    args = ({tmp_path / "train.jsonl": "doc"}, {tmp_path / "eval.jsonl": "gen"})
    on = check.check_data(*args)["by_eval"][str(tmp_path / "eval.jsonl")]
    off = check.check_data(*args, templates=False)["by_eval"][str(tmp_path / "eval.jsonl")]
    assert on["share_rate"] == 0.0 and on["templates_ignored"] == len(overlap.units(template)) - 13 + 1
    assert off["share_rate"] == 1.0 and off["leak_rate"] == 0.0  # the template is under half of each item

    # a template-only question with a copied answer: coverage counts the non-template units only
    copied = rand_zh(rng, 30)
    write_jsonl(tmp_path / "train.jsonl", [doc(1, copied)])  # the template itself is not in training now
    write_jsonl(tmp_path / "eval.jsonl", [gen(0, template, copied)]
                + [gen(i, template + rand_zh(rng, 10), rand_zh(rng, 20)) for i in range(1, 10)])
    on = check.check_data(*args)["by_eval"][str(tmp_path / "eval.jsonl")]
    assert on["leaked"] == [{"id": "g0", "coverage": 1.0}]
    assert check.check_data(*args, templates=False)["by_eval"][str(tmp_path / "eval.jsonl")]["leaked"] == []


# ---------------------------------------------------------------------------------------------- knowledge sets
LAW = "中华人民共和国公司法"
ARTICLES = {  # a law document as text.law_document writes it
    "第一条": "为了规范公司的组织和行为，保护公司、股东、职工和债权人的合法权益，制定本法。",
    "第二条": "本法所称公司，是指依照本法在中华人民共和国境内设立的有限责任公司和股份有限公司。",
    "第三条": "公司是企业法人，有独立的法人财产，享有法人财产权。\n公司以其全部财产对公司的债务承担责任。",
}


def _knowledge_setup(tmp_path, sft_rows=(), hw_rows=()):
    law_doc = LAW + "\n" + "\n".join(f"{no} {t}" for no, t in ARTICLES.items())
    write_jsonl(tmp_path / "domain.jsonl", [doc(0, law_doc), doc(1, "一篇与法律无关的经济新闻，讲述市场的变化和企业的经营。")])
    chat = lambda i, q, a: {"id": f"s{i}", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],  # noqa: E731
                            "source": "t", "kind": "generated", "cite": None}
    write_jsonl(tmp_path / "sft_stage2.jsonl", [chat(0, "《中华人民共和国公司法》第一条规定了什么？", ARTICLES["第一条"])]
                + [chat(i + 1, q, a) for i, (q, a) in enumerate(sft_rows)])
    write_jsonl(tmp_path / "expert_handwritten.jsonl", [
        {"id": "hw-1", "question": "国有独资公司的章程由谁制定？", "answer": "由履行出资人职责的机构制定。", "topic": "t",
         "cite": {"law": LAW, "article": "第一条"}}, *hw_rows])
    items = [
        {"id": "kn-recall-2", "question": f"《{LAW}》第二条规定了什么？", "answer": ARTICLES["第二条"],
         "source": "laws/soae_core", "kind": "recall", "cite": f"{LAW} 第二条"},
        {"id": "kn-which-3", "question": "“公司是企业法人，有独立的法人财产……”出自哪部法律的哪一条？",
         "answer": f"出自《{LAW}》第三条。", "source": "laws/soae_core", "kind": "which", "cite": f"{LAW} 第三条"},
    ]
    mc = [{"id": "kmc-cont-3", "question": "根据《公司法》：公司是企业法人，", "choices": [
        "有独立的法人财产，享有法人财产权。", "是指依照本法设立的有限责任公司。", "保护职工和债权人的合法权益。", "对公司的债务承担有限责任。"],
        "answer": 0, "source": "laws/soae_core", "cite": f"{LAW} 第三条"}]
    write_jsonl(tmp_path / "domain_knowledge.jsonl", items)
    write_jsonl(tmp_path / "domain_knowledge_mc.jsonl", mc)
    train = {tmp_path / "domain.jsonl": "doc", tmp_path / "sft_stage2.jsonl": "sft",
             tmp_path / "expert_handwritten.jsonl": "handwritten"}
    evals = {tmp_path / "domain_knowledge.jsonl": "kgen", tmp_path / "domain_knowledge_mc.jsonl": "kmc"}
    return train, evals


def test_knowledge_source_in_cpt_is_counted_and_not_a_leak(tmp_path):
    train, evals = _knowledge_setup(tmp_path)
    report = check.check_data(train, evals)
    assert report["passed"], report["failures"]
    gen = report["knowledge"][str(tmp_path / "domain_knowledge.jsonl")]
    assert gen["source_items"] == gen["items"] == 2 and gen["source_files"] == {str(tmp_path / "domain.jsonl"): 2}
    assert gen["items_leaked"] == 0 and report["knowledge"][str(tmp_path / "domain_knowledge_mc.jsonl")]["source_items"] == 1
    cell = {(c["train"], c["eval"]): c for c in report["contamination"]}
    assert cell[str(tmp_path / "domain.jsonl"), str(tmp_path / "domain_knowledge.jsonl")]["share_rate"] == 1.0
    assert "knowledge source: 2/2 items' articles are in domain.jsonl" in check.format_table(report)
    # the recall item is 68% covered by domain.jsonl: with a 60% cut a plain generation set fails (existing
    # behaviour, all training data together), the knowledge set passes (its CPT overlap is the source)
    plain = check.check_data(train, {tmp_path / "domain_knowledge.jsonl": "gen"}, min_coverage=0.6)
    assert not plain["passed"] and "kn-recall-2" in plain["failures"][0]
    assert check.check_data(train, evals, min_coverage=0.6)["passed"]
    # an article that is not in the CPT corpus is not a knowledge source
    write_jsonl(tmp_path / "domain_knowledge.jsonl", [{**GOOD["kgen"], "cite": f"{LAW} 第九条"}])
    k = check.check_data(train, evals)["knowledge"][str(tmp_path / "domain_knowledge.jsonl")]
    assert k["source_items"] == 0 and k["unsourced"] == ["g2"]


@pytest.mark.parametrize("sft_rows, hw_rows, item, reason, where", [
    ([(f"《{LAW}》第二条规定了什么？", "另一个回答。")], [], "kn-recall-2", "question", "sft_stage2.jsonl"),
    ([("公司的定义是什么？", "按照公司法，" + ARTICLES["第二条"])], [], "kn-recall-2", "answer text", "sft_stage2.jsonl"),
    ([], [{"id": "hw-2", "question": "这句话出自哪里：公司是企业法人？", "answer": f"出自《{LAW}》第三条。", "topic": "t",
           "cite": {"law": LAW, "article": "第三条"}}], "kn-which-3", "answer", "expert_handwritten.jsonl"),
    ([("公司有哪些财产？", "公司有独立的法人财产，享有法人财产权。")], [], "kmc-cont-3", "answer text", "sft_stage2.jsonl"),
])
def test_knowledge_item_in_an_sft_set_is_a_leak(tmp_path, sft_rows, hw_rows, item, reason, where):
    train, evals = _knowledge_setup(tmp_path, sft_rows, hw_rows)
    report = check.check_data(train, evals)
    assert not report["passed"]
    leaked = [x for k in report["knowledge"].values() for x in k["leaked"]]
    assert [x["id"] for x in leaked] == [item] and leaked[0]["reason"].startswith(reason)
    assert leaked[0]["files"] == [str(tmp_path / where)]
    assert any(item in f and "domain_knowledge" in f and where in f for f in report["failures"])


def test_cli_fails_on_a_leaked_knowledge_item(tmp_path, monkeypatch, capsys):
    train, evals = _knowledge_setup(tmp_path, [(f"《{LAW}》第二条规定了什么？", "另一个回答。")])
    monkeypatch.setattr(check, "default_files", lambda: (train, evals))
    monkeypatch.setattr(check.paths, "training_dir", lambda: tmp_path / "no-training")
    assert cli.main(["data", "check"]) == 1
    out, err = capsys.readouterr()
    assert "item kn-recall-2 leaked: its question is in" in out and "domain_knowledge.jsonl" in err


def test_text_index_leak_rule_ignores_citations():
    idx = overlap.TextIndex([f"出自《{LAW}》第十条。原文是：公司应当依法经营。", f"出自《{LAW}》第十二条。",
                             "根据《公司法》，对董事有什么要求？", "董事应当遵守法律、行政法规和公司章程，对公司负有忠实义务。"])
    assert idx.leak("“公司的经营……”出自哪部法律的哪一条？", f"出自《{LAW}》第十一条。", f"出自《{LAW}》第十一条。") is None
    assert idx.leak("根据《公司法》第一百八十条，对董事有什么要求？", "x", "x") is None  # not the SFT question
    assert idx.leak("根据《公司法》，对董事有什么要求？", "x", "x")[0] == "question"
    sent = f"根据《{LAW}》第一百八十条，董事应当遵守法律、行政法规和公司章程，对公司负有忠实义务。"
    assert idx.leak("问？", sent, sent)[0] == "answer text"  # its content occurs in an SFT turn
    assert idx.leak("问？", "x", sent[:-6] + "甲乙丙。")[0].startswith("answer text (")  # >= 80% of it in SFT 13-grams
    # a quoted lead that an SFT article restates with the article number ("本法第六十条关于…的规定")
    idx = overlap.TextIndex(["本法第六十条关于只有一个股东的有限责任公司不设股东会的规定，适用于只有一个股东的股份有限公司。"])
    which = f"出自《{LAW}》第六十条。"
    assert idx.leak("“只有一个股东的有限责任公司不设股东会。……”出自哪部法律的哪一条？", which, which)[0].startswith("question text")
    assert overlap.strip_citations(f"《{LAW}》第一百零二条之一第二款") == "，，，"


# ---------------------------------------------------------------------------------------------- manifest
def test_manifest_entries_are_found_in_any_shape():
    sha = "ab" * 32
    m = {"version": 1, "files": {"training/data/a.jsonl": sha, "b.jsonl": {"sha256": sha.upper(), "rows": 3}},
         "outputs": [{"path": "tasks/x/data/c.jsonl", "sha256": sha}], "note": "not/a/hash"}
    assert check.manifest_entries(m) == {"training/data/a.jsonl": sha, "b.jsonl": sha, "tasks/x/data/c.jsonl": sha}


def test_manifest_mismatch_fails_the_check(tmp_path):
    _, train, evals = _setup(tmp_path, [])
    manifest = tmp_path / "MANIFEST.json"
    write_json(manifest, {"files": {"domain.jsonl": sha256_file(tmp_path / "domain.jsonl"),
                                    "domain_qa.jsonl": sha256_file(tmp_path / "domain_qa.jsonl")}})
    assert check.check_data(train, evals, manifest=manifest)["manifest"]["ok"] == 2
    with open(tmp_path / "domain.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(doc(99, "后来追加的一行")) + "\n")
    report = check.check_data(train, evals, manifest=manifest)
    assert report["manifest"]["mismatched"] == ["domain.jsonl"] and not report["passed"]


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_exit_codes_and_json(tmp_path, monkeypatch, capsys):
    train_docs, train, evals = _setup(tmp_path, [])
    monkeypatch.setattr(check, "default_files", lambda: (train, evals))
    monkeypatch.setattr(check.paths, "training_dir", lambda: tmp_path / "no-training")
    assert cli.main(["data", "check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and {f["rows"] for f in report["files"]} == {20, 30}

    _setup(tmp_path, [train_docs[0][:40], train_docs[1][:40]])  # rewrites the eval file with two copies
    assert cli.main(["data", "check"]) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and "error:" in captured.err and "domain_qa.jsonl" in captured.err

    (tmp_path / "domain_qa.jsonl").write_text('{"id": 1}\n', encoding="utf-8")
    assert cli.main(["data", "check"]) == 2
    assert "domain_qa.jsonl:1: field" in capsys.readouterr().err
    assert cli.main(["data", "check", "--max-leak", "1.5"]) == 2
