"""Phase gates: declarative checks on results dicts, written as gate.json (schema "soaes-bench/gate") + gate.md.

A check reads one metric of one task (or group) from a phase's results and compares it with an absolute
`threshold`, or with the same metric of a `reference` run: bound = reference value * `ratio` (default 1) + `margin`:

    gates:
      - {name: domain-gain, task: soaes_domain, metric: acc, op: ">=", reference: base, margin: 0.02}
      - {name: no-forgetting, task: soaes_general, metric: acc, op: ">=", reference: base, margin: -0.03}
      - {name: retention, task: soaes_general_mc, metric: acc, op: ">=", reference: base, ratio: 0.95}
      - {name: bpb, task: soaes_domain_text, metric: bits_per_byte, op: "<=", threshold: 2.5}

References name other results the pipeline knows: "base" (the starting model), "previous" (the previous phase),
a phase name ("cpt", "sft"), or a phase-specific one ("single_stage" for the SFT ablation, "baseline" for the
undistilled draft). The predicates are pure functions (tests/test_training_gates.py).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from soaes_bench.config import positive
from soaes_bench.errors import UserError
from soaes_bench.io import atomic_write_text, write_json

OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
GATE_SCHEMA, GATE_VERSION = "soaes-bench/gate", 1


@dataclass
class Check:
    name: str = field(metadata={"help": "short label shown in gate.md"})
    metric: str = field(metadata={"help": "metric key, e.g. acc, rouge1, bits_per_byte, top1_agreement"})
    task: str = field(metadata={"help": "task or group name in the results"})
    op: Literal[">=", "<=", ">", "<"] = ">="
    threshold: float | None = field(default=None, metadata={"help": "absolute bound"})
    reference: str | None = field(default=None, metadata={"help": "results to compare with (base, previous, <phase>, ...)"})
    margin: float = field(default=0.0, metadata={"help": "added to the reference value: bound = ref * ratio + margin"})
    ratio: float | None = field(default=None, metadata={
        "help": "multiplies the reference value, e.g. 0.95 = keep 95% of the base accuracy", "check": positive})

    def __post_init__(self):
        if (self.threshold is None) == (self.reference is None):
            raise ValueError(f"gate {self.name!r}: give exactly one of threshold and reference")
        if self.ratio is not None and self.reference is None:
            raise ValueError(f"gate {self.name!r}: ratio needs a reference")


def metric_value(results: dict, task: str, metric: str) -> tuple[float | None, float | None]:
    """(value, stderr) of `metric` for `task` from results["tasks"] or results["groups"]; (None, None) if absent."""
    for section in ("tasks", "groups"):
        entry = (results.get(section) or {}).get(task)
        if entry and metric in entry.get("metrics", {}):
            m = entry["metrics"][metric]
            return m.get("value"), m.get("stderr")
    return None, None


def check_one(check: Check, results: dict, references: dict[str, dict]) -> dict:
    """One gate.json check row. A missing value or reference fails the check (and says so in `note`)."""
    value, stderr = metric_value(results, check.task, check.metric)
    note = None
    if check.reference is not None:
        ref = references.get(check.reference)
        ref_value = metric_value(ref, check.task, check.metric)[0] if ref is not None else None
        bound = None if ref_value is None else ref_value * (1.0 if check.ratio is None else check.ratio) + check.margin
        if ref is None:
            note = f"reference results {check.reference!r} not available"
        elif ref_value is None:
            note = f"{check.task}/{check.metric} missing in reference {check.reference!r}"
    else:
        ref_value, bound = None, check.threshold
    if value is None:
        note = f"{check.task}/{check.metric} missing in results"
    ci = [value - 1.96 * stderr, value + 1.96 * stderr] if value is not None and stderr else None
    passed = value is not None and bound is not None and bool(OPS[check.op](value, bound))
    return {"name": check.name, "metric": check.metric, "task": check.task, "op": check.op, "threshold": bound,
            "reference": check.reference, "reference_value": ref_value, "margin": check.margin, "ratio": check.ratio,
            "value": value, "ci": ci, "passed": passed, "note": note}


def evaluate_gate(phase: str, checks: list[Check], results: dict, references: dict[str, dict],
                  results_path: str | None = None) -> dict:
    """The gate report (DESIGN.md "Gate reports"). No checks -> passed."""
    rows = [check_one(c, results, references) for c in checks]
    return {"schema": GATE_SCHEMA, "schema_version": GATE_VERSION, "phase": phase,
            "passed": all(r["passed"] for r in rows), "checks": rows, "results": results_path}


def _fmt(v):
    return "–" if v is None else f"{v:.4g}"


def gate_markdown(report: dict) -> str:
    lines = [f"# Gate: {report['phase']} — {'PASSED' if report['passed'] else 'FAILED'}", "",
             "| check | task | metric | value | op | bound | reference | result |", "|---|---|---|---|---|---|---|---|"]
    for r in report["checks"]:
        ref = "absolute"
        if r["reference"] is not None:
            times = f" × {r['ratio']:g}" if r.get("ratio") is not None else ""  # gate.json of before `ratio`: none
            ref = f"{r['reference']} ({_fmt(r['reference_value'])}){times} {r['margin']:+g}"
        res = "pass" if r["passed"] else ("FAIL" + (f": {r['note']}" if r["note"] else ""))
        lines.append(f"| {r['name']} | {r['task']} | {r['metric']} | {_fmt(r['value'])} | {r['op']} | "
                     f"{_fmt(r['threshold'])} | {ref} | {res} |")
    if not report["checks"]:
        lines.append("| (no checks) | | | | | | | pass |")
    return "\n".join(lines) + "\n"


def write_gate(report: dict, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    write_json(out / "gate.json", report)
    atomic_write_text(out / "gate.md", gate_markdown(report))
    return out / "gate.json"


def check_references(checks: list[Check], available: set[str], where: str) -> None:
    """Fail early (before hours of training) when a gate names a reference the pipeline will never have."""
    for c in checks:
        if c.reference is not None and c.reference not in available:
            raise UserError(f"{where}: gate {c.name!r}: unknown reference {c.reference!r}; "
                            f"choose one of {', '.join(sorted(available))}")
