"""profile.json, written by `soaes-bench profile` (soaes_bench/speculative/profile.py says how each number is
measured): speculative decoding of a target with a draft.

Layout (schema "soaes-bench/profile", schema_version 1):

    schema, schema_version, date (UTC ISO), seed
    model, draft: the provenance model block (records/provenance.py): name, path, weights_sha256, tokenizer_sha256,
                  n_params, layers, hidden
    env: the provenance env block, with dtype, attn_implementation and timer ("perf_counter" | "cuda_events");
         on CUDA also cuda (torch.version.cuda) and gpu_count; device_name is the GPU's name there
    config: {gammas, contexts, max_new_tokens, temperature, top_p, repeats, warmup, num_prompts, prompts
             ({category: count}), chat_template, hf_baseline, long_source, ignore_eos}
    costs: [{context, target_ms, draft_ms (alone), c_isolated,
             verify: [{gamma, verify_ms, verify_cost, draft_ms (inside a round), c}]}]
    settings: [{category, context, gamma, mode ("greedy" | "sampling"), temperature, n_prompts, new_tokens, rounds,
                alpha, alpha_token, tau, expected_tau, acceptance_by_position, conditional_acceptance_by_position,
                c, c_isolated, verify_cost, predicted_speedup, predicted_speedup_verify, speedup, speedup_ci,
                measured_over_predicted, ideal_speedup, loop_efficiency,
                target_tokens_per_s(_ci, _values), spec_tokens_per_s(_ci, _values),
                hf_assisted_tokens_per_s(_ci, _values), hf_target_tokens_per_s(_ci, _values),
                ours_over_hf(_ci, _values), speedup_values, ci_level, lossless, hf_lossless}]
    best: {category: {gamma, speedup, predicted_speedup}}
    summary: {category, best_gamma, speedup, speedup_ci, predicted_speedup, predicted_speedup_verify,
              measured_over_predicted, ideal_speedup, loop_efficiency, alpha, alpha_token, tau, c, c_isolated,
              ours_over_hf, ours_over_hf_ci, lossless, ci_level}
    outputs (optional, --save-outputs keeps them in outputs.jsonl instead)

Settings: category "all" pools the short-prompt categories, "long" is a held-out text cut to `context` tokens;
context is the prompt length (median for short prompts). *_ci are [low, high] or null, *_values the per-repeat
values (absent in profiles written before them), ci_level the coverage of the setting's intervals; hf_* are null
without hf_baseline; lossless is the share of greedy outputs identical to target-only decoding (null when sampling).

The metric fields below are what `soaes_bench.results` turns into rows (level "profile": settings and costs, with
their gamma / context / category; level "summary"); a `<metric>_ci` pair becomes ci_lo / ci_hi.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

from soaes_bench.io import read_json, write_json
from soaes_bench.records import fields
from soaes_bench.records.provenance import EnvBlock, ModelBlock

SCHEMA, VERSION, KIND = "soaes-bench/profile", 1, "profile"
FILE_NAME = "profile.json"

SETTING_METRICS = ("alpha", "alpha_token", "tau", "expected_tau", "c", "c_isolated", "verify_cost",
                   "predicted_speedup", "predicted_speedup_verify", "speedup", "measured_over_predicted",
                   "ideal_speedup", "loop_efficiency", "target_tokens_per_s", "spec_tokens_per_s",
                   "hf_assisted_tokens_per_s", "hf_target_tokens_per_s", "ours_over_hf", "lossless", "hf_lossless")
POSITION_METRICS = {"acceptance_by_position": "acceptance",  # list per draft position -> one row per position
                    "conditional_acceptance_by_position": "conditional_acceptance"}
COST_METRICS = ("target_ms", "draft_ms", "c_isolated")
VERIFY_METRICS = ("verify_ms", "verify_cost", "draft_ms", "c")
SUMMARY_METRICS = ("alpha", "alpha_token", "tau", "c", "c_isolated", "predicted_speedup", "predicted_speedup_verify",
                   "speedup", "measured_over_predicted", "ideal_speedup", "loop_efficiency", "ours_over_hf",
                   "lossless")


class Verify(TypedDict):
    gamma: int
    verify_ms: float
    verify_cost: float
    draft_ms: float
    c: float


class Cost(TypedDict):
    context: int
    target_ms: float
    draft_ms: float
    c_isolated: float
    verify: list[Verify]


class Setting(TypedDict, total=False):
    category: str
    context: int | float
    gamma: int
    mode: str
    alpha: float
    tau: float
    speedup: float | None
    speedup_ci: list[float] | None
    predicted_speedup: float
    acceptance_by_position: list[float | None]
    ci_level: float | None
    # ... and the other SETTING_METRICS, their _ci and _values


class Summary(TypedDict, total=False):
    category: str
    best_gamma: int
    speedup: float | None
    speedup_ci: list[float] | None
    ci_level: float | None
    # ... and the other SUMMARY_METRICS


class Profile(TypedDict, total=False):
    schema: str
    schema_version: int
    date: str
    seed: int
    model: ModelBlock
    draft: ModelBlock
    env: EnvBlock
    config: dict
    costs: list[Cost]
    settings: list[Setting]
    best: dict[str, dict]
    summary: Summary


def new(**body) -> Profile:
    """A profile with its schema and version stamped first; `body` in the order of the layout above."""
    return {"schema": SCHEMA, "schema_version": VERSION, **body}


def _metrics(row: dict, names, source, where: str) -> None:
    for key in names:
        fields.optional(row, key, fields.NUMBER, source, where)
        fields.pair(row.get(f"{key}_ci"), source, f"{where}.{key}_ci")


def validate(obj, source) -> Profile:
    fields.header(obj, source, SCHEMA, VERSION, KIND)
    for key in ("model", "draft"):
        block = fields.optional(obj, key, dict, source)
        if block is not None:
            fields.optional(block, "name", str, source, key)
    fields.optional(obj, "env", dict, source)
    for i, s in enumerate(fields.optional(obj, "settings", list, source) or []):
        where = f"settings[{i}]"
        fields.check(s, dict, source, where)
        fields.need(s, "category", str, source, where)
        fields.need(s, "gamma", int, source, where)
        fields.need(s, "context", fields.NUMBER, source, where, nullable=True)
        _metrics(s, SETTING_METRICS, source, where)
        for key in POSITION_METRICS:
            for j, x in enumerate(fields.optional(s, key, list, source, where) or []):
                fields.check(x, fields.NUMBER, source, f"{where}.{key}[{j}]", nullable=True)
    for i, c in enumerate(fields.optional(obj, "costs", list, source) or []):
        where = f"costs[{i}]"
        fields.check(c, dict, source, where)
        fields.need(c, "context", fields.NUMBER, source, where)
        _metrics(c, COST_METRICS, source, where)
        for j, v in enumerate(fields.optional(c, "verify", list, source, where) or []):
            fields.check(v, dict, source, f"{where}.verify[{j}]")
            fields.need(v, "gamma", int, source, f"{where}.verify[{j}]")
            _metrics(v, VERIFY_METRICS, source, f"{where}.verify[{j}]")
    summary = fields.optional(obj, "summary", dict, source)
    if summary is not None:
        fields.optional(summary, "category", str, source, "summary")
        fields.optional(summary, "best_gamma", int, source, "summary")
        _metrics(summary, SUMMARY_METRICS, source, "summary")
    fields.optional(obj, "best", dict, source)
    fields.finite(obj, source)
    return obj


def read(path: str | Path) -> Profile:
    return validate(read_json(path), path)


def write(path: str | Path, obj: Profile) -> Path:
    return write_json(path, validate(obj, path))
