"""Records: one module per kind of file the harness writes, each owning its schema id and version, its typed shape,
its builder (`new` or `stamp`), its validator and its reader/writer.

    kind     schema                   file                          module
    eval     soaes-bench/results      results.json                  records.results (+ records.samples: samples/*.jsonl)
    gate     soaes-bench/gate         <phase>/gate.json             records.gate
    profile  soaes-bench/profile      profile.json                  records.profile
    ablation soaes-bench/ablation     sft|distill/ablation.json     records.ablation
    forgetting soaes-bench/forgetting cpt|sft/forgetting.json       records.forgetting
    summary  soaes-bench/summary      <phase>/summary.json          records.summary
    timings  soaes-bench/timings      <run>/timings.json            records.timings

Writers validate before writing (atomically, never NaN/Infinity); readers reject what writers would not write
(wrong kind, newer version, missing or mistyped fields, NaN, samples outside the run folder). Provenance blocks
(model, tokenizer hash, env) come from records.provenance. This layer imports only the base modules.
"""

from __future__ import annotations

from pathlib import Path

from soaes_bench.errors import UserError
from soaes_bench.io import read_json
from soaes_bench.records import ablation, forgetting, gate, profile, results, samples, summary, timings

MODULES = (results, gate, profile, ablation, forgetting, summary, timings)
SCHEMAS = {m.SCHEMA: m.KIND for m in MODULES}     # schema id -> kind
BY_KIND = {m.KIND: m for m in MODULES}
FILE_NAMES = tuple(m.FILE_NAME for m in MODULES)   # what a run folder is searched for
_UNSTAMPED = {m.FILE_NAME: m for m in (summary, timings)}  # kinds whose files had no schema field before version 1


def _module(obj, source):
    if not isinstance(obj, dict):
        raise UserError(f"{source}: expected a JSON object at top level, got {type(obj).__name__}")
    schema = obj.get("schema")
    if schema is None and source is not None and Path(str(source)).name in _UNSTAMPED:
        return _UNSTAMPED[Path(str(source)).name]
    if schema not in SCHEMAS:
        what = "no schema field" if schema is None else f"unknown schema {schema!r}"
        raise UserError(f"{source}: schema: {what}; not a soaes-bench record (kinds: {', '.join(BY_KIND)})")
    return BY_KIND[SCHEMAS[schema]]


def kind_of(record: str | Path | dict) -> str:
    """The kind of a record file or object ("eval", "gate", "profile", ..., "samples" for a .jsonl file), from its
    schema id (summary.json and timings.json written before their schema: from the file name). UserError when it
    is none of them. Identifies only; `read` also validates."""
    if isinstance(record, dict):
        return _module(record, None).KIND
    p = Path(record)
    if p.suffix == ".jsonl":
        return samples.KIND
    if p.is_dir():
        raise UserError(f"{p}: a directory, not a record file")
    return _module(read_json(p), p).KIND


def validate(obj, source) -> str:
    """Validate a record of any kind; returns its kind."""
    module = _module(obj, source)
    module.validate(obj, source)
    return module.KIND


def read(path: str | Path) -> tuple[str, dict]:
    """(kind, validated object) of one record file."""
    obj = read_json(path)
    return validate(obj, path), obj


def write(path: str | Path, obj: dict) -> Path:
    """Validate by the object's schema and write atomically."""
    return _module(obj, path).write(path, obj)
