"""results.json, written by `soaes-bench run` (and the pipeline's evaluations): one evaluated model on lm-eval tasks.

Layout and field meanings: docs/DESIGN.md, "Results schema". evaluation/writer.py turns lm-eval's output into the
task entries and calls `new`; `soaes_bench.results` turns validated files into DataFrame rows.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TypedDict

from soaes_bench.io import read_json, write_json
from soaes_bench.records import fields as F
from soaes_bench.records.provenance import EnvBlock, ModelBlock
from soaes_bench.records.samples import check_relative

SCHEMA, VERSION, KIND = "soaes-bench/results", 1, "eval"
FILE_NAME = "results.json"


class Metric(TypedDict):
    value: float | None   # null: lm-eval gave no finite value (an overflowing perplexity, "N/A")
    stderr: float | None


class Floor(TypedDict):
    name: str             # e.g. "always A", "most common answer"
    value: float


class Task(TypedDict, total=False):
    group: str | None
    version: int | float | str | None
    config_sha256: str
    n: int
    output_type: str
    higher_is_better: dict[str, bool]
    metrics: dict[str, Metric]
    samples: str                  # relative to the folder of results.json, inside it
    floors: dict[str, Floor]      # optional: best content-free floor per metric
    positions: dict               # optional, multiple choice: where the predictions fall (writer.positions)


class Group(TypedDict):
    metrics: dict[str, Metric]
    n: int


class Results(TypedDict):
    schema: str
    schema_version: int
    kind: str
    run: str | None
    suite: str
    date: str
    seed: int
    limit: int | float | None
    model: ModelBlock
    env: EnvBlock
    tasks: dict[str, Task]
    groups: dict[str, Group]


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new(*, model: ModelBlock, env: EnvBlock, tasks: dict, groups: dict, suite: str, seed: int, limit=None,
        run: str | None = None, date: str | None = None) -> Results:
    """A results dict with its schema, version and kind stamped, in the order the file shows them."""
    return {"schema": SCHEMA, "schema_version": VERSION, "kind": KIND, "run": run, "suite": suite,
            "date": date or utc_now(), "seed": seed, "limit": limit, "model": model, "env": env, "tasks": tasks,
            "groups": groups}


def _metrics(block, source, where: str) -> None:
    F.check(block, dict, source, where)
    for m, mv in block.items():
        F.check(mv, dict, source, f"{where}.{m}")
        F.need(mv, "value", F.NUMBER, source, f"{where}.{m}", nullable=True)
        F.optional(mv, "stderr", F.NUMBER, source, f"{where}.{m}")


def validate(obj, source) -> Results:
    """Every field a reader relies on; NaN/Infinity nowhere; samples paths inside the run folder."""
    F.header(obj, source, SCHEMA, VERSION, KIND)
    if obj.get("kind", KIND) != KIND:
        F.fail(source, "kind", f"expected {KIND!r}, got {obj.get('kind')!r}")
    F.need(F.need(obj, "model", dict, source), "name", str, source, "model")
    tasks = F.need(obj, "tasks", dict, source)
    for name, t in tasks.items():
        where = f"tasks.{name}"
        F.check(t, dict, source, where)
        _metrics(F.need(t, "metrics", dict, source, where), source, f"{where}.metrics")
        hib = F.optional(t, "higher_is_better", dict, source, where)
        for m, v in (hib or {}).items():
            F.check(v, bool, source, f"{where}.higher_is_better.{m}", nullable=True)
        F.optional(t, "n", int, source, where)
        rel = F.optional(t, "samples", str, source, where)
        if rel is not None:
            check_relative(rel, source, f"{where}.samples")
        for m, f in (F.optional(t, "floors", dict, source, where) or {}).items():
            F.need(F.check(f, dict, source, f"{where}.floors.{m}"), "value", F.NUMBER, source, f"{where}.floors.{m}")
    for name, g in (F.optional(obj, "groups", dict, source, nullable=False) or {}).items():
        F.check(g, dict, source, f"groups.{name}")
        _metrics(g.get("metrics") or {}, source, f"groups.{name}.metrics")
    F.finite(obj, source)
    return obj


def read(path: str | Path) -> Results:
    return validate(read_json(path), path)


def write(path: str | Path, obj: Results) -> Path:
    """Validate, then write atomically: a results.json that this code would not read is never written."""
    return write_json(path, validate(obj, path))
