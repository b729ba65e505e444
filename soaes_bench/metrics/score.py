"""`soaes-bench score`: ROUGE-1/2/L and BLEU-4 of a prediction file against a reference file.

    soaes-bench score --pred preds.txt --ref refs.txt            # table
    soaes-bench score --pred preds.jsonl --ref refs.jsonl --json # one JSON object
    soaes-bench score --pred p.txt --ref r.txt --char            # character-level ROUGE

Each file holds one item per line (plain text; a blank line is an empty item), or JSONL objects with a `text` field.
JSONL is assumed for a `.jsonl` suffix, or when every non-blank line parses as a JSON object with `text` (so
multi-line predictions are written as JSONL). Items are paired by position.
"""

from __future__ import annotations

import json
from pathlib import Path

from soaes_bench.config import read_text
from soaes_bench.errors import UserError
from soaes_bench.io import parse_jsonl
from soaes_bench.metrics.chinese import score

KEYS = ("rouge1", "rouge2", "rougeL", "bleu4", "n", "level")



def _as_jsonl(text: str) -> list[dict] | None:
    """The objects of `text` if every non-blank line is a JSON object with `text`, else None."""
    rows = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            return None
        if not isinstance(obj, dict) or "text" not in obj:
            return None
        rows.append(obj)
    return rows or None


def _jsonl_items(path: Path, text: str) -> list[str]:
    items = []
    for lineno, obj in parse_jsonl(text.split("\n"), path):
        if "text" not in obj:
            raise UserError(f"{path}:{lineno}: missing `text` field")
        value = obj["text"]
        if value is None:
            value = ""  # a model that produced nothing; scores 0
        if not isinstance(value, str):
            raise UserError(f"{path}:{lineno}: `text` must be a string, got {type(value).__name__}")
        items.append(value)
    return items


def read_items(path: str | Path) -> list[str]:
    """The items of a prediction/reference file (plain lines or JSONL `text`); UserError if unreadable or empty."""
    path = Path(path)
    text = read_text(path)
    if text == "":
        raise UserError(f"{path}: file is empty")
    if path.suffix.lower() == ".jsonl" or _as_jsonl(text) is not None:
        items = _jsonl_items(path, text)
    else:
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()  # the final newline ends the last item, it does not start a new one
        items = [line.removesuffix("\r") for line in lines]
    if not items:
        raise UserError(f"{path}: no items")
    return items


def score_files(pred_path: str | Path, ref_path: str | Path, level: str = "word") -> dict:
    """{"rouge1", "rouge2", "rougeL", "bleu4", "n", "level"} for two files paired line by line."""
    if level not in ("word", "char"):
        raise UserError(f"level: must be 'word' or 'char', got {level!r}")
    preds, refs = read_items(pred_path), read_items(ref_path)
    if len(preds) != len(refs):
        raise UserError(f"{pred_path}: {len(preds)} predictions but {ref_path} has {len(refs)} references")
    out = score(preds, refs, level)
    out["level"] = level
    return {k: out[k] for k in KEYS}


def format_table(result: dict) -> str:
    rows = [(k, f"{result[k]:.2f}") for k in ("rouge1", "rouge2", "rougeL", "bleu4")]
    rows += [("n", str(result["n"])), ("level", result["level"])]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v:>8}" for k, v in rows)


def cli_score(args) -> int:
    result = score_files(args.pred, args.ref, "char" if args.char else "word")
    print(json.dumps(result, ensure_ascii=False) if args.json else format_table(result))
    return 0
