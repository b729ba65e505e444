"""gate.json, written by the pipeline and `soaes-bench gate`: the verdict of one phase's checks.

Field meanings: docs/DESIGN.md ("Gate reports") and the docstring of soaes_bench/reporting/gates.py, which computes
the checks; this module owns the layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

from soaes_bench.io import read_json, write_json
from soaes_bench.records import fields

SCHEMA, VERSION, KIND = "soaes-bench/gate", 1, "gate"
FILE_NAME = "gate.json"


class Check(TypedDict, total=False):
    name: str
    metric: str
    task: str
    op: str | None                  # point checks: ">=", "<=", ">", "<"
    threshold: float | None
    reference: str | None
    reference_value: float | None
    margin: float
    ratio: float | None
    value: float | None
    ci: list[float] | None          # [low, high]
    passed: bool
    note: str
    test: str | None                # "superior" | "non_inferior" | null (point check)
    blocking: bool
    higher_is_better: bool
    n: int | None
    diff: float | None
    diff_ci: list[float] | None
    p: float | None
    p_null: float | None
    p_adjusted: float | None
    mde: float | None
    ci_method: str | None


class Family(TypedDict):
    method: str                     # "holm"
    size: int
    alpha_one_sided: float


class Gate(TypedDict, total=False):
    schema: str
    schema_version: int
    phase: str
    passed: bool                    # ignores failed checks with blocking: false
    checks: list[Check]
    results: str | None             # the results.json (or phase_metrics.json) judged
    alpha: float
    power: float
    resamples: int
    seed: int
    family: Family


def new(*, phase: str, passed: bool, checks: list[Check], results: str | None, **statistics) -> Gate:
    """A gate report with its schema and version stamped; `statistics`: alpha, power, resamples, seed, family."""
    return {"schema": SCHEMA, "schema_version": VERSION, "phase": phase, "passed": passed, "checks": checks,
            "results": results, **statistics}


def validate(obj, source) -> Gate:
    fields.header(obj, source, SCHEMA, VERSION, KIND)
    fields.need(obj, "phase", str, source)
    fields.need(obj, "passed", bool, source)
    for i, c in enumerate(fields.need(obj, "checks", list, source)):
        where = f"checks[{i}]"
        fields.check(c, dict, source, where)
        fields.need(c, "metric", str, source, where)
        fields.need(c, "value", fields.NUMBER, source, where, nullable=True)
        fields.need(c, "threshold", fields.NUMBER, source, where, nullable=True)
        fields.need(c, "passed", bool, source, where)
        for key in ("reference_value", "diff", "p", "p_adjusted", "mde"):
            fields.optional(c, key, fields.NUMBER, source, where)
        fields.pair(c.get("ci"), source, f"{where}.ci")
        fields.pair(c.get("diff_ci"), source, f"{where}.diff_ci")
    fields.optional(obj, "results", str, source)
    fields.finite(obj, source)
    return obj


def read(path: str | Path) -> Gate:
    return validate(read_json(path), path)


def write(path: str | Path, obj: Gate) -> Path:
    return write_json(path, validate(obj, path))
