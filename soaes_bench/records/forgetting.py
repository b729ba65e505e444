"""forgetting.json, written after CPT and SFT by soaes_bench/reporting/ablations.py: which items a phase forgot.

{"schema", "schema_version", "metric" ("accuracy": each task's own multiple-choice form), "base", "new" (the two
results.json compared), "rows": [...]}, one row per accuracy task both runs scored, items matched by id.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

from soaes_bench.io import read_json, write_json
from soaes_bench.records import fields

SCHEMA, VERSION, KIND = "soaes-bench/forgetting", 1, "forgetting"
FILE_NAME = "forgetting.json"
COUNTS = ("n_shared", "base_correct", "new_correct", "both_right", "both_wrong", "forgotten", "learned", "net")
RATES = ("base_acc", "new_acc")
OPTIONAL = ("forgotten_rate", "retention", "p_mcnemar")


class Row(TypedDict):
    suite: str                      # "general" | "domain": retention and domain gain are read apart
    task: str
    metric: str                     # acc, cloze_acc or circular_acc
    n_shared: int
    base_correct: int
    new_correct: int
    base_acc: float
    new_acc: float
    both_right: int
    both_wrong: int
    forgotten: int                  # right before, wrong now (McNemar's b)
    learned: int                    # wrong before, right now (c)
    net: int
    forgotten_rate: float | None    # forgotten / base_correct
    retention: float | None         # new_acc / base_acc
    p_mcnemar: float
    forgotten_ids: list[str]
    learned_ids: list[str]


class Forgetting(TypedDict):
    schema: str
    schema_version: int
    metric: str
    base: str
    new: str
    rows: list[Row]


def new(*, metric: str, base: str, new: str, rows: list[Row]) -> Forgetting:
    return {"schema": SCHEMA, "schema_version": VERSION, "metric": metric, "base": base, "new": new, "rows": rows}


def validate(obj, source) -> Forgetting:
    fields.header(obj, source, SCHEMA, VERSION, KIND)
    for i, r in enumerate(fields.need(obj, "rows", list, source)):
        where = f"rows[{i}]"
        fields.check(r, dict, source, where)
        fields.need(r, "task", str, source, where)
        fields.need(r, "metric", str, source, where)
        for key in COUNTS:
            fields.need(r, key, int, source, where)
        for key in RATES:
            fields.need(r, key, fields.NUMBER, source, where)
        for key in OPTIONAL:
            fields.optional(r, key, fields.NUMBER, source, where)
    fields.finite(obj, source)
    return obj


def read(path: str | Path) -> Forgetting:
    return validate(read_json(path), path)


def write(path: str | Path, obj: Forgetting) -> Path:
    return write_json(path, validate(obj, path))
