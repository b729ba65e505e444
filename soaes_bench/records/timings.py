"""timings.json of a pipeline run (<run>/timings.json): wall seconds of each part, accumulated over --resume.

{"schema", "schema_version", "processes": int, "base_eval_s": seconds, "<phase>": {"train_s", "eval_gate_s"
(absent when training stopped at its time cap), "stopped_by" (only then)}}. Files written before this schema
have no schema field and are read as they are (version 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

from soaes_bench.io import read_json, write_json
from soaes_bench.records import fields

SCHEMA, VERSION, KIND = "soaes-bench/timings", 1, "timings"
FILE_NAME = "timings.json"
META = ("schema", "schema_version", "processes")


class PhaseTimes(TypedDict, total=False):
    train_s: float
    eval_gate_s: float
    stopped_by: str


class Timings(TypedDict, total=False):
    schema: str
    schema_version: int
    processes: int
    base_eval_s: float
    # and one PhaseTimes per phase name


def stamp(timings: dict) -> Timings:
    return fields.stamped(timings, SCHEMA, VERSION)


def seconds(obj: Timings) -> list[tuple[str | None, str, float]]:
    """(phase or None for the run, what, seconds) of every timing in the file."""
    out = []
    for key, v in obj.items():
        if key in META:
            continue
        if isinstance(v, dict):
            out += [(key, what, float(s)) for what, s in v.items() if fields.is_number(s)]
        elif fields.is_number(v):
            out.append((None, key, float(v)))
    return out


def validate(obj, source) -> Timings:
    if not (isinstance(obj, dict) and "schema" not in obj):  # version 0: written before the schema existed
        fields.header(obj, source, SCHEMA, VERSION, KIND)
    fields.optional(obj, "processes", int, source)
    for key, v in obj.items():
        if key in META:
            continue
        if isinstance(v, dict):
            for what, s in v.items():
                fields.check(s, str if what == "stopped_by" else fields.NUMBER, source, f"{key}.{what}")
        else:
            fields.check(v, fields.NUMBER, source, key)
    fields.finite(obj, source)
    return obj


def read(path: str | Path) -> Timings:
    return validate(read_json(path), path)


def write(path: str | Path, timings: dict) -> Path:
    return write_json(path, validate(stamp(timings), path))
