"""SFT sets in the chat-messages format (DESIGN.md): stage 1 weakly related, stage 2 expert SOAE.

Stage 1 (finance, law, business, politics): article recall on non-core training laws, headline writing and
lead-sentence summaries of training news. Stage 2: template questions grounded in the SFT part of the SOAE-core
articles (corpus.core_split; the eval part is kept for the domain knowledge sets), each with a `cite`, plus the
hand-written expert items. Only training documents are used (corpus.Corpus.*_train).
"""

from __future__ import annotations

import re
from pathlib import Path

from soaes_bench.data.corpus import Corpus, CoreSplit, Law, core_split, rng
from soaes_bench.data.text import LawArticle, sentences, short_law_name
from soaes_bench.errors import UserError
from soaes_bench.io import iter_jsonl

MAX_ANSWER_CHARS = 600  # longer articles make poor chat turns for a 2k-context model


def chat_row(id_: str, question: str, answer: str, source: str, kind: str = "generated", cite: str | None = None) -> dict:
    return {"id": id_, "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            "source": source, "kind": kind, "cite": cite}


def article_question(full_name: str, article_no: str) -> str:
    """The one article-recall phrasing shared by SFT and the domain QA eval."""
    return f"《{full_name}》{article_no}规定了什么？"


def _usable(a: LawArticle) -> bool:
    return 10 <= len(a.text) <= MAX_ANSWER_CHARS


def stage1(c: Corpus, seed: int, n_law: int = 3000, n_title: int = 1500, n_summary: int = 1000) -> list[dict]:
    items: list[tuple[str, str, str]] = []  # (question, answer, source)
    arts = [a for law in c.laws_train if not c.is_core(law) for a in law.articles if _usable(a)]
    for a in rng(seed, "sft1-law").sample(arts, min(n_law, len(arts))):
        items.append((article_question(a.law_name, a.article_no), a.text, f"laws/{a.department}"))
    news = [a for a in c.news_train if a.body and len(a.title) >= 4]
    for a in rng(seed, "sft1-title").sample(news, min(n_title, len(news))):
        body = _clip("\n".join(a.body), 400)
        items.append((f"请为下面这段新闻拟一个标题：\n{body}", a.title, "pd199801/title"))
    leads = [a for a in c.news_train if len(sentences(a.body[0])) >= 3 and len(a.body[0]) <= 500]
    for a in rng(seed, "sft1-summary").sample(leads, min(n_summary, len(leads))):
        items.append((f"请概括下面这段话：\n{a.body[0]}", sentences(a.body[0])[0], "pd199801/lead"))
    rng(seed, "sft1-order").shuffle(items)
    return [chat_row(f"sft1-{i:05d}", q, a, s) for i, (q, a, s) in enumerate(items)]


_DEFINITION = re.compile(r"本法所称(?:的)?([^，。；：]{2,30})，(?:是指|包括)([^。]+)。")
_DUTY = re.compile(r"^([^，。；：、]{2,24}?)(应当|不得)([^。]{4,})。$")
_BAD_SUBJECT = re.compile(r"本法|或者|自|除|对|如果|经")  # clauses, not a subject: "股东自知道或者应当知道..."


def stage2_generated(core_laws: list[Law], split: CoreSplit | None = None) -> list[tuple[str, str, str]]:
    """(question, answer, cite) from the SFT part of the SOAE-core articles (every article when split is None);
    several templates per article where the text allows. Eval-part articles are never used here."""
    out = []
    for law in core_laws:
        short = short_law_name(law.name)
        for a in law.articles:
            if not _usable(a) or (split is not None and split.is_eval(a)):
                continue
            cite = f"{law.name} {a.article_no}"
            out.append((article_question(law.name, a.article_no), a.text, cite))
            if a.chapter:
                chapter = re.sub(r"^第[一二三四五六七八九十百]+章\s*", "", a.chapter)
                out.append((f"在《{short}》“{chapter}”一章中，{a.article_no}是怎样规定的？",
                            f"《{law.name}》{a.article_no}规定：{a.text}", cite))
            first = sentences(a.text.split("\n")[0])[0] if a.text else ""
            if 15 <= len(first) <= 120:
                lead = first[:24].rstrip("，、；：")
                # the answer is the citation alone, the form the knowledge task's references have (DATA_CARD.md);
                # with the quoted sentence appended the SFT model padded every such answer to 2.8x its reference
                out.append((f"“{lead}……”出自哪部法律的哪一条？", f"出自《{law.name}》{a.article_no}。", cite))
            for m in _DEFINITION.finditer(a.text):
                term, meaning = m.group(1), m.group(2)
                out.append((f"根据《{short}》，{term}是指什么？",
                            f"根据《{law.name}》{a.article_no}，{term}是指{meaning}。", cite))
            for sent in sentences(a.text.replace("\n", "")):
                m = _DUTY.match(sent)
                if m and not _BAD_SUBJECT.search(m.group(1)) and not m.group(3).startswith("知道"):
                    subject, modal = m.group(1), m.group(2)
                    what = "有什么要求" if modal == "应当" else "有哪些禁止性规定"
                    out.append((f"根据《{short}》，对{subject}{what}？", f"根据《{law.name}》{a.article_no}，{sent}", cite))
    return out


def read_handwritten(path: Path | None, held_out_laws: frozenset[str] = frozenset()) -> tuple[list[dict], list[str]]:
    """expert_handwritten.jsonl rows -> (stage-2 chat rows of kind "handwritten", ids dropped).

    Items citing a held-out law are dropped: they paraphrase a law the domain eval asks about. A missing file
    gives no rows (it is written by hand, concurrently with the builders).
    """
    if path is None or not Path(path).is_file():
        return [], []
    rows, dropped = [], []
    for lineno, r in iter_jsonl(path):
        missing = [k for k in ("id", "question", "answer") if not isinstance(r.get(k), str) or not r[k].strip()]
        if missing:
            raise UserError(f"{path}:{lineno}: missing or empty field(s): {', '.join(missing)}")
        cite = r.get("cite")
        if isinstance(cite, dict) and cite.get("law") in held_out_laws:
            dropped.append(r["id"])
            continue
        cite_str = f"{cite.get('law', '')} {cite.get('article', '')}".strip() if isinstance(cite, dict) else None
        rows.append(chat_row(f"sft2-hw-{r['id'].removeprefix('hw-')}", r["question"].strip(), r["answer"].strip(),
                             "expert_handwritten", kind="handwritten", cite=cite_str or None))
    return rows, dropped


def handwritten_cites(path: Path | None) -> frozenset[tuple[str, str]]:
    """(law, article) cited by the hand-written items: these articles are forced into the SFT part."""
    if path is None or not Path(path).is_file():
        return frozenset()
    out = set()
    for _, r in iter_jsonl(path):
        cite = r.get("cite")
        if isinstance(cite, dict) and isinstance(cite.get("law"), str) and isinstance(cite.get("article"), str):
            out.add((cite["law"].strip(), cite["article"].strip()))
    return frozenset(out)


def knowledge_split(c: Corpus, seed: int, handwritten: Path | None) -> CoreSplit:
    """The SFT/eval split of the SOAE-core articles, with the hand-written items' articles forced into SFT."""
    return core_split(c, seed, handwritten_cites(handwritten))


def stage2(c: Corpus, seed: int, handwritten: Path, log=print, split: CoreSplit | None = None) -> list[dict]:
    """Generated items from the SFT part of the core articles (see corpus.core_split) + the hand-written items."""
    core = [law for law in c.laws_train if c.is_core(law)]
    split = split or knowledge_split(c, seed, handwritten)
    gen = stage2_generated(core, split)
    seen: set[str] = set()
    gen = [g for g in gen if not (g[0] in seen or seen.add(g[0]))]  # one answer per question (the first article)
    rng(seed, "sft2-order").shuffle(gen)
    rows = [chat_row(f"sft2-{i:05d}", q, a, "laws/soae_core", cite=cite) for i, (q, a, cite) in enumerate(gen)]
    hw, dropped = read_handwritten(handwritten, frozenset(law.name for law in c.laws_held))
    if dropped:
        log(f"{handwritten.name}: left out {len(dropped)} items citing held-out laws ({', '.join(dropped[:5])}"
            f"{', ...' if len(dropped) > 5 else ''})")
    return rows + hw


def _clip(text: str, n: int) -> str:
    """At most n characters, cut after the last full sentence that fits (or hard-cut when none does)."""
    if len(text) <= n:
        return text
    cut = text[:n]
    k = max(cut.rfind(p) for p in "。！？")
    return cut[: k + 1] if k >= n // 3 else cut
