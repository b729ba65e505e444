"""Row schemas of the data files (DESIGN.md): one validator per schema, returning the text fields that the
contamination check compares. A bad row raises ValueError("field X: problem"); data/check.py adds FILE:LINE."""

from __future__ import annotations

import re
from typing import Any, Callable


def _req(row: dict, key: str) -> Any:
    if key not in row:
        raise ValueError(f"field {key}: missing")
    return row[key]


def _str(row: dict, key: str) -> str:
    v = _req(row, key)
    if not isinstance(v, str):
        raise ValueError(f"field {key}: expected a string, got {type(v).__name__}")
    if not v.strip():
        raise ValueError(f"field {key}: empty string")
    return v


def row_id(row: dict) -> str | int:
    v = _req(row, "id")
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise ValueError(f"field id: expected a string or integer, got {type(v).__name__}")
    if isinstance(v, str) and not v.strip():
        raise ValueError("field id: empty string")
    return v


def _choice(row: dict, key: str, allowed: tuple) -> str:
    v = _str(row, key)
    if v not in allowed:
        raise ValueError(f"field {key}: {v!r} is not one of {', '.join(allowed)}")
    return v


def _doc(row: dict) -> list[str]:
    _str(row, "source")
    _choice(row, "lang", ("zh", "en"))
    return [_str(row, "text")]


def _text(row: dict) -> list[str]:
    _str(row, "source")
    return [_str(row, "text")]


def _sft(row: dict) -> list[str]:
    msgs = _req(row, "messages")
    if not isinstance(msgs, list) or not msgs:
        raise ValueError("field messages: expected a non-empty list")
    roles = []
    for k, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise ValueError(f"field messages[{k}]: expected an object")
        role, content = m.get("role"), m.get("content")
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"field messages[{k}].role: {role!r} is not system, user or assistant")
        if not isinstance(content, str) or not content.strip():
            raise ValueError(f"field messages[{k}].content: expected a non-empty string")
        roles.append(role)
    turns = roles[1:] if roles[0] == "system" else roles
    expected = ["user", "assistant"] * (len(turns) // 2 + 1)
    if not turns or turns != expected[:len(turns)] or turns[-1] != "assistant":
        raise ValueError(f"field messages: roles must alternate user/assistant and end with assistant, got {roles}")
    _str(row, "source")
    _choice(row, "kind", ("generated", "handwritten"))
    cite = _req(row, "cite")
    if cite is not None and not (isinstance(cite, str) and cite.strip()):
        raise ValueError("field cite: expected a non-empty string or null")
    return [m["content"] for m in msgs]


def _handwritten(row: dict) -> list[str]:
    _str(row, "topic")
    cite = _req(row, "cite")
    if not isinstance(cite, dict):
        raise ValueError("field cite: expected an object with law and article")
    for key in ("law", "article"):
        if not isinstance(cite.get(key), str) or not cite[key].strip():
            raise ValueError(f"field cite.{key}: expected a non-empty string")
    return [_str(row, "question"), _str(row, "answer")]


def _mc(row: dict) -> list[str]:
    q = _str(row, "question")
    choices = _req(row, "choices")
    if not isinstance(choices, list) or len(choices) != 4:
        raise ValueError(f"field choices: expected a list of 4 strings, got {len(choices) if isinstance(choices, list) else type(choices).__name__}")
    if not all(isinstance(c, str) and c.strip() for c in choices):
        raise ValueError("field choices: every choice must be a non-empty string")
    if len({c.strip() for c in choices}) != 4:
        raise ValueError("field choices: the 4 choices must be distinct")
    ans = _req(row, "answer")
    if isinstance(ans, bool) or not isinstance(ans, int) or not 0 <= ans <= 3:
        raise ValueError(f"field answer: expected an integer 0-3, got {ans!r}")
    _str(row, "source")
    return [q, *choices]


def _gen(row: dict) -> list[str]:
    _str(row, "source")
    _str(row, "kind")
    return [_str(row, "question"), _str(row, "answer")]


_CITE = re.compile(r"^\S+ 第[零〇一二三四五六七八九十百千]+条(?:之[一二三四五六七八九十]+)?$")


def _cite(row: dict) -> None:
    v = _str(row, "cite")
    if not _CITE.match(v):
        raise ValueError(f"field cite: expected '<law name> 第N条', got {v!r}")


def _kgen(row: dict) -> list[str]:
    """Knowledge generation item: gen + `cite` (the article it asks about)."""
    _cite(row)
    return _gen(row)


def _kmc(row: dict) -> list[str]:
    """Knowledge multiple-choice item (cloze form): mc + `cite`."""
    _cite(row)
    return _mc(row)


SCHEMAS: dict[str, Callable[[dict], list[str]]] = {
    "doc": _doc, "text": _text, "sft": _sft, "handwritten": _handwritten, "mc": _mc, "gen": _gen,
    "kgen": _kgen, "kmc": _kmc}
# Eval schemas whose items ask about one cited article of the CPT corpus (data check: knowledge source vs leak).
KNOWLEDGE_SCHEMAS = ("kgen", "kmc")
BLANK = "____"


def knowledge_view(row: dict) -> tuple[str, str, str]:
    """(question, answer, evidence) of a validated knowledge item. The answer is the reference (kgen) or the
    correct choice (kmc); the evidence is the article text the item shows as its answer: the reference, or for
    a cloze item the question with the correct choice filled in (appended, or in place of a ____ blank)."""
    q = row["question"]
    if "choices" in row:
        a = row["choices"][row["answer"]]
        return q, a, q.replace(BLANK, a) if BLANK in q else q + a
    return q, row["answer"], row["answer"]


def infer_schema(row: dict) -> str:
    """Schema of a data file not named in DESIGN.md, from its first row's fields."""
    if "messages" in row:
        return "sft"
    if "choices" in row:
        return "kmc" if "cite" in row else "mc"
    if "question" in row:
        if "topic" in row:
            return "handwritten"
        return "kgen" if "cite" in row else "gen"
    return "doc" if "lang" in row else "text"
