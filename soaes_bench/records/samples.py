"""samples/<task>.jsonl: one row per evaluated item, beside the results.json that names it.

Rows carry no schema field: a samples file belongs to its results.json (the task's `samples` path, relative to that
file's folder and inside it) and has that file's version. Row fields: docs/DESIGN.md ("Results schema") and the
docstring of evaluation/writer.py. Items are matched across runs by `id`, so ids are unique within a file.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import TypedDict

from soaes_bench.errors import UserError
from soaes_bench.io import iter_jsonl, write_jsonl
from soaes_bench.records import fields

KIND = "samples"
DIR = "samples"
COUNTS = ("loglikelihood", "n_bytes", "n_words", "pred_len", "ref_len")  # per-item sufficient statistics


class Row(TypedDict, total=False):
    id: str | int
    doc_id: int
    metrics: dict[str, float | None]   # per-item scores (0/1 accuracies, ROUGE 0-100, bits per byte)
    target: str | None
    prediction: str | None
    bleu_pair: list[str]                # [prediction, reference]: corpus BLEU is recomputed from pairs
    loglikelihood: float                # bits-per-byte rows: nats, with n_bytes / n_words
    n_bytes: int
    n_words: int
    pred_len: int                       # generation rows: characters, for the corpus length_ratio
    ref_len: int
    item: str                           # circular multiple choice: the original item of this rotation
    cluster: str                        # source document (law, article, news article): the resampling cluster
    pred_index: int                     # multiple choice: argmax option (0 = A), and the gold one
    target_index: int | None
    pred_index_norm: int
    prompt: str                         # multiple choice, generation: the context the model read (chat template
                                        # applied when env.chat_template); bits-per-byte rows have none


def validate_row(row: dict, source) -> Row:
    """One row (source: "file:line"): the fields readers use, with their types; numbers finite."""
    fields.need(row, "id", (str, int), source)
    for m, v in (fields.optional(row, "metrics", dict, source) or {}).items():
        fields.check(v, fields.NUMBER, source, f"metrics.{m}", nullable=True)
    pair = row.get("bleu_pair")
    if pair is not None and not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
        fields.fail(source, "bleu_pair", "expected [prediction, reference] strings")
    for key in COUNTS:
        fields.optional(row, key, fields.NUMBER, source)
    fields.optional(row, "item", str, source)
    fields.optional(row, "prompt", str, source)
    fields.optional(row, "cluster", str, source)
    fields.finite(row, source)
    return row


def read(path: str | Path) -> list[Row]:
    """Validated rows of one samples file; a duplicate id is an error (items are matched by id)."""
    rows, seen = [], set()
    for lineno, row in iter_jsonl(path):
        validate_row(row, f"{path}:{lineno}")
        key = str(row["id"])
        if key in seen:
            raise UserError(f"{path}:{lineno}: id: duplicate id {key!r}; items are matched across runs by id")
        seen.add(key)
        rows.append(row)
    return rows


def write(path: str | Path, rows: list[Row]) -> Path:
    for i, row in enumerate(rows, 1):
        validate_row(row, f"{path}:{i}")
    return write_jsonl(path, rows)


def check_relative(rel: str, source, field: str) -> None:
    """A samples path as results.json stores it: relative, and not climbing out of the run folder."""
    p = PurePosixPath(rel.replace("\\", "/"))
    if not p.parts or p.is_absolute() or ":" in p.parts[0]:  # "", "/x", "C:/x"
        fields.fail(source, field, f"{rel!r} must be a path relative to the folder of results.json")
    if ".." in p.parts:
        fields.fail(source, field, f"{rel!r} leaves the run folder; samples must lie inside it")


def path_of(results_path: str | Path, task: str, entry: dict) -> Path | None:
    """The samples file of one task entry of a results.json: its `samples` path (else samples/<task>.jsonl), or None
    when no such file exists. The file must resolve inside the run folder (a symlink out of it is refused too)."""
    results_path = Path(results_path)
    root = results_path.parent.resolve()
    rel = entry.get("samples") if isinstance(entry, dict) else None
    where = f"tasks.{task}.samples"
    if isinstance(rel, str):
        check_relative(rel, results_path, where)
    for cand in ([rel] if isinstance(rel, str) else []) + [f"{DIR}/{task}.jsonl"]:
        f = results_path.parent / cand
        if f.is_file():
            if not f.resolve().is_relative_to(root):
                fields.fail(results_path, where, f"{cand!r} resolves outside the run folder ({os.path.realpath(f)})")
            return f
    return None
