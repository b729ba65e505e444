"""ablation.json, written after a pipeline phase by soaes_bench/reporting/ablations.py: two arms of one claim.

    sft/ablation.json      "ablation": "sft", arms single (one-stage SFT) and progressive (domain-progressive),
                           per generation task and metric, with the paired bootstrap CI of progressive - single
    distill/ablation.json  "ablation": "distill", arms undistilled (CE-only draft) and distilled, per held-out metric,
                           with a CI from the two stderrs

Both: {"schema", "schema_version", "ablation", ..., "rows": [...]}; each row has `metric`, both arm values and
`diff` (second arm - first) with ci_low / ci_high.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

from soaes_bench.io import read_json, write_json
from soaes_bench.records import fields

SCHEMA, VERSION, KIND = "soaes-bench/ablation", 1, "ablation"
FILE_NAME = "ablation.json"
ARMS = {"sft": ("single", "progressive"), "distill": ("undistilled", "distilled")}  # (reference, treatment)


class SftRow(TypedDict):
    task: str
    metric: str
    single: float
    progressive: float
    diff: float
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    ratio_low: float | None
    ratio_high: float | None
    p_bootstrap: float | None
    n_shared: int
    ci_method: str


class DistillRow(TypedDict):
    metric: str
    higher_is_better: bool
    undistilled: float
    distilled: float
    diff: float
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    better: str                     # "distilled" | "undistilled" | "tie"


class Ablation(TypedDict, total=False):
    schema: str
    schema_version: int
    ablation: str                   # a key of ARMS
    rows: list[SftRow] | list[DistillRow]
    # sft: single, progressive (results.json paths), resamples, seed; distill: source (the phase folder)


def new(ablation: str, rows: list, **meta) -> Ablation:
    return {"schema": SCHEMA, "schema_version": VERSION, "ablation": ablation, **meta, "rows": rows}


def validate(obj, source) -> Ablation:
    fields.header(obj, source, SCHEMA, VERSION, KIND)
    name = fields.need(obj, "ablation", str, source)
    if name not in ARMS:
        fields.fail(source, "ablation", f"expected one of {', '.join(ARMS)}, got {name!r}")
    for i, r in enumerate(fields.need(obj, "rows", list, source)):
        where = f"rows[{i}]"
        fields.check(r, dict, source, where)
        fields.need(r, "metric", str, source, where)
        if name == "sft":
            fields.need(r, "task", str, source, where)
        for key in (*ARMS[name], "diff"):
            fields.need(r, key, fields.NUMBER, source, where)
        for key in ("ratio", "ci_low", "ci_high", "ratio_low", "ratio_high", "p_bootstrap"):
            fields.optional(r, key, fields.NUMBER, source, where)
    fields.finite(obj, source)
    return obj


def read(path: str | Path) -> Ablation:
    return validate(read_json(path), path)


def write(path: str | Path, obj: Ablation) -> Path:
    return write_json(path, validate(obj, path))
