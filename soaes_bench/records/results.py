"""results.json, written by `soaes-bench run` (and the pipeline's evaluations): one evaluated model on lm-eval tasks.

Layout and field meanings: docs/DESIGN.md, "Results schema". evaluation/writer.py turns lm-eval's output into the
task entries and calls `new`; `soaes_bench.results` turns validated files into DataFrame rows.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import NotRequired, TypedDict

from soaes_bench.io import read_json, write_json
from soaes_bench.records import fields
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


class Backend(TypedDict, total=False):
    name: str                     # "hf" (transformers, lm-eval's HFLM) or "vllm" (lm-eval's vLLM model)
    dtype: str | None             # the dtype the weights ran in ("auto": the model config's)
    data_parallel_size: int       # processes (hf: `accelerate launch` ranks; vllm: engine replicas)
    tensor_parallel_size: int     # vllm only
    gpu_memory_utilization: float  # vllm only
    max_model_len: int | None     # vllm only; null: the model's own
    batch_size: int | str         # hf: sequences per scoring forward; vllm: "auto" (vLLM schedules)
    gen_batch_size: int           # hf only: prompts per generation batch


DEFAULT_BACKEND = "hf"  # what a results.json without a `backend` block (written before it existed) ran on


def backend_name(obj: dict) -> str:
    """The backend a results dict was evaluated with; files without the block ran on lm-eval's HFLM."""
    return ((obj.get("backend") or {}).get("name")) or DEFAULT_BACKEND


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
    backend: NotRequired[Backend]  # optional: absent in files written before backends existed (= hf)
    tasks: dict[str, Task]
    groups: dict[str, Group]


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new(*, model: ModelBlock, env: EnvBlock, tasks: dict, groups: dict, suite: str, seed: int, limit=None,
        run: str | None = None, date: str | None = None, backend: Backend | None = None) -> Results:
    """A results dict with its schema, version and kind stamped, in the order the file shows them."""
    out = {"schema": SCHEMA, "schema_version": VERSION, "kind": KIND, "run": run, "suite": suite,
           "date": date or utc_now(), "seed": seed, "limit": limit, "model": model, "env": env}
    if backend is not None:
        out["backend"] = backend
    return {**out, "tasks": tasks, "groups": groups}


def _metrics(block, source, where: str) -> None:
    fields.check(block, dict, source, where)
    for m, mv in block.items():
        fields.check(mv, dict, source, f"{where}.{m}")
        fields.need(mv, "value", fields.NUMBER, source, f"{where}.{m}", nullable=True)
        fields.optional(mv, "stderr", fields.NUMBER, source, f"{where}.{m}")


def validate(obj, source) -> Results:
    """Every field a reader relies on; NaN/Infinity nowhere; samples paths inside the run folder."""
    fields.header(obj, source, SCHEMA, VERSION, KIND)
    if obj.get("kind", KIND) != KIND:
        fields.fail(source, "kind", f"expected {KIND!r}, got {obj.get('kind')!r}")
    fields.need(fields.need(obj, "model", dict, source), "name", str, source, "model")
    backend = fields.optional(obj, "backend", dict, source, nullable=False)
    if backend is not None:
        fields.need(backend, "name", str, source, "backend")
    tasks = fields.need(obj, "tasks", dict, source)
    for name, t in tasks.items():
        where = f"tasks.{name}"
        fields.check(t, dict, source, where)
        _metrics(fields.need(t, "metrics", dict, source, where), source, f"{where}.metrics")
        hib = fields.optional(t, "higher_is_better", dict, source, where)
        for m, v in (hib or {}).items():
            fields.check(v, bool, source, f"{where}.higher_is_better.{m}", nullable=True)
        fields.optional(t, "n", int, source, where)
        rel = fields.optional(t, "samples", str, source, where)
        if rel is not None:
            check_relative(rel, source, f"{where}.samples")
        for m, f in (fields.optional(t, "floors", dict, source, where) or {}).items():
            fields.need(fields.check(f, dict, source, f"{where}.floors.{m}"), "value", fields.NUMBER, source, f"{where}.floors.{m}")
    for name, g in (fields.optional(obj, "groups", dict, source, nullable=False) or {}).items():
        fields.check(g, dict, source, f"groups.{name}")
        _metrics(g.get("metrics") or {}, source, f"groups.{name}.metrics")
    fields.finite(obj, source)
    return obj


def read(path: str | Path) -> Results:
    return validate(read_json(path), path)


def write(path: str | Path, obj: Results) -> Path:
    """Validate, then write atomically: a results.json that this code would not read is never written."""
    return write_json(path, validate(obj, path))
