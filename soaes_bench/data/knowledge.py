"""Domain knowledge sets: items about the eval part of the SOAE-core articles (corpus.core_split), whose text is in the
CPT corpus (domain.jsonl, the knowledge source) but in no SFT set. Generation items (KNOWLEDGE_KINDS) and cloze
multiple choice; every item passes a guard against the SFT rows. Own seeded streams ("knowledge-*"), so the other
eval sets (evalsets.py) never change when these do.
"""

from __future__ import annotations

import re
from collections import Counter

from soaes_bench.data import overlap, sft
from soaes_bench.data.corpus import CoreSplit, Corpus, Law, rng
from soaes_bench.data.evalsets import MODALS, QA_MAX_CHARS, article_cluster, article_id
from soaes_bench.data.schemas import knowledge_view
from soaes_bench.data.sft import article_question
from soaes_bench.data.text import LawArticle, sentences, short_law_name

KNOWLEDGE_KINDS = ("recall", "which", "definition", "requirement", "paraphrase")
KNOWLEDGE_MAX_SFT_COVERAGE = 0.5  # the builder's bar; data check fails an item at 0.8 (check.MIN_COVERAGE)
CLOZE_LEN_TOLERANCE = 0.3         # distractor continuations within +-30% of the correct one's characters
_PARAPHRASE = {  # subject + modal -> a question that uses neither the article's wording nor an SFT template
    "应当": "依照《{short}》{no}，{subject}负有什么义务？",
    "必须": "依照《{short}》{no}，{subject}负有什么义务？",
    "不得": "依照《{short}》{no}，{subject}被禁止做什么？",
    "可以": "依照《{short}》{no}，{subject}被允许做什么？",
}
_MODAL_DUTY = re.compile(r"^([^，。；：]{2,24}?)(应当|不得|可以|必须)([^。]{4,})。$")  # sft._DUTY, 、 allowed
_DEFINITIONS = (  # sft._DEFINITION plus 本章/前款所称 and the bare "X，是指Y" of glossary articles
    re.compile(r"(?:本法|本章|本节|本条|前款|前两款|前三款)所称(?:的)?([^，。；：\n]{2,30}?)，?(?:是指|包括)([^。\n]+)。"),
    re.compile(r"(?:^|[。\n：])([^，。；：\n]{2,20}?)，?是指([^。\n]+)。"),
)
_CLAUSE = "，；："
# paraphrase questions ask what a party must / must not / may do: the subject must name one (公司, 管理人, ...)
_AGENT = re.compile(r"(公司|企业|会|人|员|机构|机关|部门|单位|所|院|厂长|董事|监事|政府|银行|国库)$")
_NOT_AGENT = re.compile(r"^(按照|依照|根据|依据|设立|法律|在|经|由)")


def _clean(text: str) -> str:
    """An article's paragraphs joined (each ends with a sentence mark), as sft.stage2 reads them."""
    return text.replace("\n", "")


class _Guard:
    """Keeps a knowledge item out of the SFT sets: data check's leak rule (overlap.TextIndex.leak) with the
    stricter bar KNOWLEDGE_MAX_SFT_COVERAGE: the question and the answer are no SFT turn, the answer's content
    occurs in no SFT turn, and less than half of the content (law titles and article numbers stripped) of the
    answer text and of the question lies in SFT 13-grams."""

    def __init__(self, sft_rows: list[dict]):
        self.index = overlap.TextIndex(m["content"] for r in sft_rows for m in r["messages"])

    def ok(self, row: dict) -> bool:
        return self.index.leak(*knowledge_view(row), min_coverage=KNOWLEDGE_MAX_SFT_COVERAGE) is None


class _Laws:
    """Every article text of every law (training and held-out), to test that a quoted lead or a cloze prefix
    names one article only."""

    def __init__(self, c: Corpus):
        self.text = "\x00".join(a.text for law in c.laws_train + c.laws_held for a in law.articles)

    def unique(self, fragment: str) -> bool:
        return self.text.count(fragment) == 1


def _knowledge_row(kind: str, a: LawArticle, question: str, answer: str) -> dict:
    return {"id": f"kn-{kind}-{article_id(a)}", "question": question, "answer": answer, "source": "laws/soae_core",
            "kind": kind, "cite": f"{a.law_name} {a.article_no}", "cluster": article_cluster(a)}


def _duties(a: LawArticle, modals: tuple[str, ...] = ("应当", "不得")):
    """(sentence, subject, modal) of the `<subject>应当/不得…。` sentences of an article (sft.stage2's rule)."""
    for sent in sentences(_clean(a.text)):
        m = _MODAL_DUTY.match(sent)
        if m and m.group(2) in modals and not sft._BAD_SUBJECT.search(m.group(1)) and not m.group(3).startswith("知道"):
            yield sent, m.group(1), m.group(2)


def _knowledge_candidates(core: list[Law], split: CoreSplit, laws: _Laws) -> dict[str, list[dict]]:
    """kind -> candidate rows from the eval-part articles (at most one per kind and article)."""
    cands: dict[str, list[dict]] = {k: [] for k in KNOWLEDGE_KINDS}
    for law in core:
        short = short_law_name(law.name)
        for a in law.articles:
            if not split.is_eval(a):
                continue
            if len(a.text) <= QA_MAX_CHARS:
                cands["recall"].append(_knowledge_row("recall", a, article_question(law.name, a.article_no), a.text))
            first = sentences(a.text.split("\n")[0])[0]
            lead = first[:24].rstrip("，、；：")
            if 15 <= len(first) <= 120 and len(overlap.units(lead)) >= 13 and laws.unique(lead):
                cands["which"].append(_knowledge_row("which", a, f"“{lead}……”出自哪部法律的哪一条？",
                                                     f"出自《{law.name}》{a.article_no}。"))
            defs = [m for rx in _DEFINITIONS for m in rx.finditer(a.text)]
            for m in sorted(defs, key=lambda m: m.start()):
                term, meaning = m.group(1).strip(), m.group(2)
                if "所称" in term:  # "前款所称X": the first pattern gives X itself
                    continue
                answer = f"根据《{law.name}》{a.article_no}，{term}是指{meaning}。"
                if len(answer) <= QA_MAX_CHARS and len(overlap.units(term + meaning)) >= 13:
                    cands["definition"].append(_knowledge_row("definition", a, f"根据《{short}》，{term}是指什么？",
                                                              answer))
                    break
            required = None
            for sent, subject, modal in _duties(a):
                answer = f"根据《{law.name}》{a.article_no}，{sent}"
                if len(answer) <= QA_MAX_CHARS and len(overlap.units(sent)) >= 13:
                    what = "有什么要求" if modal == "应当" else "有哪些禁止性规定"
                    cands["requirement"].append(_knowledge_row(
                        "requirement", a, f"根据《{short}》{a.article_no}，对{subject}{what}？", answer))
                    required = sent
                    break
            para = []
            for sent, subject, modal in _duties(a, tuple(_PARAPHRASE)):
                answer = f"根据《{law.name}》{a.article_no}，{sent}"
                if len(answer) <= QA_MAX_CHARS and len(overlap.units(sent)) >= 13 and _AGENT.search(subject) \
                        and not _NOT_AGENT.search(subject):
                    q = _PARAPHRASE[modal].format(short=short, no=a.article_no, subject=subject)
                    para.append((sent != required, _knowledge_row("paraphrase", a, q, answer)))
            if para:  # a sentence that the requirement item does not use, when the article has one
                cands["paraphrase"].append(max(para, key=lambda x: x[0])[1])
    return cands


def _pick_balanced(cands: dict[str, list[dict]], n: int, r) -> list[dict]:
    """Up to n rows, as evenly over the kinds as the candidates allow. One item per article where possible; when a
    kind runs short, an article may serve a second kind with another answer (never the same answer twice)."""
    pools = {k: r.sample(v, len(v)) for k, v in cands.items()}
    out: list[dict] = []
    articles, answers = set(), set()
    counts: Counter = Counter()

    def take(kind: str, reuse: bool) -> bool:
        for i, row in enumerate(pools[kind]):
            if row["answer"] in answers or (row["cite"] in articles and not reuse):
                continue
            pools[kind].pop(i)
            articles.add(row["cite"])
            answers.add(row["answer"])
            out.append(row)
            counts[kind] += 1
            return True
        return False

    order = sorted(pools, key=lambda k: (len(pools[k]), KNOWLEDGE_KINDS.index(k)))
    level, progressed = 0, True
    while len(out) < n and progressed:  # water-filling: every kind one more item per level while it has some
        level += 1
        progressed = False
        for reuse in (False, True):
            for kind in order:
                while counts[kind] < level and len(out) < n and take(kind, reuse):
                    progressed = True
    return out


def _split_clause(sent: str) -> tuple[str, str] | None:
    """(prefix ending in a clause mark, continuation): the clause mark nearest the middle, both parts >= 8 chars."""
    cuts = [i + 1 for i, ch in enumerate(sent) if ch in _CLAUSE and 8 <= i + 1 <= len(sent) - 8]
    if not cuts:
        return None
    k = min(cuts, key=lambda i: (abs(i - len(sent) / 2), i))
    return sent[:k], sent[k:]


def _balanced_positions(n: int, r) -> list[int]:
    """n answer positions, each of 0-3 used n // 4 or n // 4 + 1 times, in a seeded order."""
    pos = [i % 4 for i in range(n)]
    r.shuffle(pos)
    return pos


def _cloze_row(variant: str, a: LawArticle, prefix: str, choices: list[str], answer: int) -> dict:
    return {"id": f"kmc-{variant}-{article_id(a)}", "question": f"根据《{short_law_name(a.law_name)}》：{prefix}",
            "choices": choices, "answer": answer, "source": "laws/soae_core", "cite": f"{a.law_name} {a.article_no}",
            "cluster": article_cluster(a)}


def knowledge_mc(core: list[Law], split: CoreSplit, guard: _Guard, laws: _Laws, seed: int, n_cont: int = 150,
                 n_modal: int = 50) -> list[dict]:
    """Cloze-form multiple choice on eval-part articles: `根据《X法》：<start of a sentence>` and four endings, each
    scored as the continuation of the question (no letters). `modal` items: the sentence up to its only modal
    verb, then the rest of the sentence after 应当/可以/不得/必须 (equal lengths), balanced over the true modal as
    far as the text allows. `cont` items (other articles than the modal items): the sentence cut at the clause mark
    nearest its middle; the true ending and the endings of three sentences from other eval-part articles of the
    same law within +-30% of its length. Prefixes and endings occur once in all the laws, so no other article
    completes them. Answer positions: each of A-D equally often (seeded order)."""
    r = rng(seed, "knowledge-mc")
    arts = [a for law in core for a in law.articles if split.is_eval(a)]
    modal: dict[str, list[tuple]] = {m: [] for m in MODALS}
    for a in arts:
        for s in sentences(_clean(a.text)):
            hits = [m for m in MODALS if m in s]
            if len(hits) == 1 and s.count(hits[0]) == 1 and 15 <= len(s) <= 120:
                i = s.index(hits[0])
                prefix, rest = s[:i], s[i + len(hits[0]):]
                if len(prefix) >= 4 and len(rest) >= 4 and laws.unique(prefix) and \
                        guard.ok(_cloze_row("modal", a, prefix, [s[i:], "", "", ""], 0)):
                    modal[hits[0]].append((a, prefix, rest, hits[0]))
                    break
    picked = []
    for m in MODALS:
        picked += r.sample(modal[m], min(n_modal // 4, len(modal[m])))
    left = [x for m in MODALS for x in modal[m] if x not in picked]
    picked += r.sample(left, min(n_modal - len(picked), len(left)))
    rows = []
    for (a, prefix, rest, true_modal), pos in zip(picked, _balanced_positions(len(picked), r)):
        choices = [m + rest for m in r.sample([m for m in MODALS if m != true_modal], 3)]
        choices.insert(pos, true_modal + rest)
        rows.append(_cloze_row("modal", a, prefix, choices, pos))

    used = {x[0] for x in picked}
    endings: dict[str, list[tuple[LawArticle, str]]] = {}  # law -> (article, ending) of every usable sentence
    items = []
    for a in arts:
        first = None
        for s in sentences(_clean(a.text)):
            cut = _split_clause(s) if 20 <= len(s) <= 120 else None
            if not cut or not laws.unique(cut[1]):
                continue
            endings.setdefault(a.law_name, []).append((a, cut[1]))
            if first is None and a not in used and laws.unique(cut[0]) and \
                    guard.ok(_cloze_row("cont", a, cut[0], [cut[1], "", "", ""], 0)):
                first = (a, *cut)
        if first:
            items.append(first)
    cont = []
    ranks = _balanced_positions(len(items), r)  # how many distractors are shorter than the true ending
    for (a, prefix, correct), rank in zip(r.sample(items, len(items)), ranks):
        lo, hi = len(correct) * (1 - CLOZE_LEN_TOLERANCE), len(correct) * (1 + CLOZE_LEN_TOLERANCE)
        pool = sorted({t for b, t in endings[a.law_name] if b is not a and t != correct and lo <= len(t) <= hi})
        shorter = [t for t in pool if len(t) < len(correct)]
        longer = [t for t in pool if len(t) >= len(correct)]
        if len(shorter) >= rank and len(longer) >= 3 - rank:  # the true ending's length rank is balanced too
            distract = r.sample(shorter, rank) + r.sample(longer, 3 - rank)
        elif len(pool) >= 3:
            distract = r.sample(pool, 3)
        else:
            continue
        cont.append((a, prefix, correct, r.sample(distract, 3)))
        if len(cont) == n_cont:
            break
    for (a, prefix, correct, distract), pos in zip(cont, _balanced_positions(len(cont), r)):
        rows.append(_cloze_row("cont", a, prefix, distract[:pos] + [correct] + distract[pos:], pos))
    return sorted(rows, key=lambda x: x["id"])


def knowledge_sets(c: Corpus, seed: int, split: CoreSplit, sft_rows: list[dict], n_gen: int = 200,
                   n_cont: int = 150, n_modal: int = 50) -> dict[str, list[dict]]:
    """domain_knowledge.jsonl (generation, KNOWLEDGE_KINDS) and domain_knowledge_mc.jsonl (cloze MC) about the
    eval-part SOAE-core articles. Every item passes _Guard against `sft_rows` (stage 1 + stage 2 + hand-written)."""
    core = [law for law in c.laws_train if c.is_core(law)]
    guard, laws = _Guard(sft_rows), _Laws(c)
    cands = _knowledge_candidates(core, split, laws)
    cands = {k: [row for row in v if guard.ok(row)] for k, v in cands.items()}
    gen = _pick_balanced(cands, n_gen, rng(seed, "knowledge-gen"))
    return {"domain_knowledge.jsonl": sorted(gen, key=lambda x: x["id"]),
            "domain_knowledge_mc.jsonl": knowledge_mc(core, split, guard, laws, seed, n_cont, n_modal)}
