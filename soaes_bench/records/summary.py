"""summary.json of a pipeline phase (<run>/<phase>/summary.json): what the phase trained and measured itself.

Written by the pipeline from what run_cpt / run_sft / run_distill return: {"phase", "init" (or "teacher"), "config"
(the phase settings), "stopped_by", training counts (steps, tokens, ...), and phase-internal measurements: CPT
"val_before" / "val_after" ({loss name: nats}), distillation "distilled" / "baseline" ({steps, tokens, ...,
"results": {"tasks": {task: {n, metrics, higher_is_better}}}}), SFT "stages" and "single_stage"}.

Summaries written before this schema have no schema field: they are read as they are (version 0; no field is
required, the types are checked), so committed runs still load. Version 1 requires `phase`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

from soaes_bench.io import read_json, write_json
from soaes_bench.records import fields

SCHEMA, VERSION, KIND = "soaes-bench/summary", 1, "summary"
FILE_NAME = "summary.json"
VALIDATION = ("val_before", "val_after")      # CPT: validation losses before and after the phase
ARMS = ("distilled", "baseline")              # distillation: the draft and its undistilled (CE-only) twin
TRAINING = ("steps", "tokens", "last_train_loss")  # what each trained part reports


class Summary(TypedDict, total=False):
    schema: str
    schema_version: int
    phase: str                                # "cpt" | "sft" | "distill"
    config: dict
    stopped_by: str                           # "done", or the limit that stopped training
    steps: int
    tokens: int
    last_train_loss: float
    val_before: dict[str, float]
    val_after: dict[str, float]
    distilled: dict
    baseline: dict


def stamp(summary: dict) -> Summary:
    """The summary with schema and version first (a phase function's return value, unchanged otherwise)."""
    return fields.stamped(summary, SCHEMA, VERSION)


def training_parts(obj: Summary) -> list[tuple[str | None, str, dict]]:
    """(name, field path, block) of each thing the phase trained: the phase itself (None, ""), SFT "stage1",
    "stage2", ... and "single_stage", the draft's "distilled" and "baseline"."""
    parts = [(None, "", obj)] + [(f"stage{i + 1}", f"stages[{i}]", s) for i, s in enumerate(obj.get("stages") or [])]
    return parts + [(k, k, obj[k]) for k in ("single_stage", *ARMS) if obj.get(k) is not None]


def validate(obj, source) -> Summary:
    if isinstance(obj, dict) and "schema" not in obj:  # version 0, written before the schema: read as it is
        fields.optional(obj, "phase", str, source)
    else:
        fields.header(obj, source, SCHEMA, VERSION, KIND)
        fields.need(obj, "phase", str, source)
    fields.optional(obj, "config", dict, source)
    fields.optional(obj, "stopped_by", str, source)
    fields.optional(obj, "stages", list, source)
    for _, where, part in training_parts(obj):
        fields.check(part, dict, source, where or "(top level)")
        for key in ("steps", "tokens"):
            fields.optional(part, key, int, source, where)
        fields.optional(part, "last_train_loss", fields.NUMBER, source, where)
    for key in VALIDATION:
        if obj.get(key) is not None:
            fields.numbers(obj[key], source, key)
    for arm in ARMS:
        block = fields.optional(obj, arm, dict, source)
        tasks = ((block or {}).get("results") or {}).get("tasks") or {}
        for task, t in fields.check(tasks, dict, source, f"{arm}.results.tasks").items():
            for m, mv in (t.get("metrics") or {}).items():
                fields.need(mv, "value", fields.NUMBER, source, f"{arm}.results.tasks.{task}.metrics.{m}", nullable=True)
    fields.finite(obj, source)
    return obj


def read(path: str | Path) -> Summary:
    return validate(read_json(path), path)


def write(path: str | Path, summary: dict) -> Path:
    return write_json(path, validate(stamp(summary), path))
