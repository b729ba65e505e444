"""`soaes-bench check`: the CI regression gate. Exit 0: nothing regressed; 1: a regression; 2: bad input.

    soaes-bench check --baseline reports/baseline/results.json --results reports/latest/results.json \\
        --policy reports/policy.yaml

A metric regresses when it moved in its bad direction (higher_is_better from the results; bits_per_byte: lower is
better) by more than its tolerance AND the paired bootstrap CI of (results - baseline) excludes 0 on the bad side.
Both conditions, because a big drop on 20 items can be noise and a significant drop of 0.1 ROUGE is not worth a
red build. Without per-item samples the CI comes from the two stderrs; with neither, the tolerance alone decides.

A task or metric of the baseline that is missing from the results is a regression by default (`missing:
regression`): CI must not go green because a task silently stopped running. Set `missing: error` to exit 2 instead,
or `ignore`. Tasks whose config_sha256 or version changed are bad input (exit 2): regenerate the baseline.
Only task-level metrics are judged; group aggregates are shown by `compare`, not gated.

Bad input, before anything is judged: a --baseline or --results that is not eval results (a gate.json or
profile.json is refused, naming its kind), two runs with no task in common, and a results.json whose samples do
not back it: every metric the samples can give (per-item means, corpus BLEU-4, bits per byte, perplexities; not
the corpus-only distinct and length_ratio) is recomputed from samples/ and must equal the file's value within
REL_TOL / ABS_TOL, and the samples must hold the task's n items. A mismatch means the samples were edited,
truncated or come from another run, and the paired CIs would then describe other numbers than the table. Metrics without a better
direction (results.DIRECTION_NEUTRAL: length_ratio) are listed with status "no direction" when they moved and never
count as a regression: a length change is a symptom to read next to looping/distinct/ROUGE, not a failure by itself.

The CIs resample the items' clusters (source documents) where the samples carry keys (`--unit cluster`, the
default; `--unit item` resamples items), as compare does; a baseline written before cluster keys existed is
resampled by items, and the output says so. Each judged metric also gets `detectable`: the drop that this check
flags with 80% power (stats.detectable_drop: max(tolerance, the significance threshold) + z_0.8 SE), printed as
"a drop of X would have been detected", so a green build on a small or clustered task is read for what it shows.
No multiplicity correction: the tolerance is what keeps false alarms over many metrics rare.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from soaes_bench import records, results, stats
from soaes_bench.config import from_dict, load_dataclass, non_negative, positive
from soaes_bench.errors import UserError
from soaes_bench.reporting.compare import POWER, compare, eval_results, metric_items
from soaes_bench.reporting.comparison_table import resampling_notes
from soaes_bench.reporting.tables import render

# results.json vs the value recomputed from its samples: the same numbers summed in another order differ by
# ~1e-15 relative; an edited or truncated samples file moves a mean by 1/n (n <= a few thousand items)
REL_TOL, ABS_TOL = 1e-6, 1e-9


def _confidence(v):
    return None if 0.0 < v < 1.0 else f"must be in (0, 1), got {v}"


@dataclass
class Tolerance:
    """Allowed move in the bad direction before it counts; with both set, the larger allowance applies."""

    absolute: float | None = field(default=None, metadata={"help": "in the metric's units", "check": non_negative})
    relative: float | None = field(default=None, metadata={"help": "fraction of |baseline|", "check": non_negative})

    def allowed(self, baseline: float) -> float:
        return max(self.absolute or 0.0, (self.relative or 0.0) * abs(baseline) if results.is_number(baseline) else 0.0)


@dataclass
class TaskPolicy:
    tolerance: Tolerance | None = None
    metrics: dict[str, Tolerance] = field(default_factory=dict)
    ignore: bool = False


@dataclass
class Policy:
    """Regression policy (reports/policy.yaml). Most specific tolerance wins: tasks.T.metrics.M, tasks.T.tolerance,
    metrics.M, tolerance."""

    tolerance: Tolerance = field(default_factory=lambda: Tolerance(relative=0.01))
    metrics: dict[str, Tolerance] = field(default_factory=dict)
    tasks: dict[str, TaskPolicy] = field(default_factory=dict)
    ignore: list[str] = field(default_factory=list, metadata={"help": "metric, task or task:metric names"})
    missing: Literal["regression", "error", "ignore"] = "regression"
    confidence: float = field(default=0.95, metadata={"check": _confidence})
    resamples: int = field(default=2000, metadata={"check": positive})
    seed: int = 0

    def tolerance_for(self, task: str, metric: str) -> Tolerance:
        tp = self.tasks.get(task)
        if tp is not None and metric in tp.metrics:
            return tp.metrics[metric]
        if tp is not None and tp.tolerance is not None:
            return tp.tolerance
        return self.metrics.get(metric, self.tolerance)

    def ignored(self, task: str, metric: str) -> bool:
        tp = self.tasks.get(task)
        return (tp is not None and tp.ignore) or metric in self.ignore or task in self.ignore \
            or f"{task}:{metric}" in self.ignore


def load_policy(policy: Policy | str | Path | dict | None) -> Policy:
    if policy is None:
        return Policy()
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, dict):
        return from_dict(Policy, policy, "<policy>")
    return load_dataclass(Policy, policy)


def _judge(row, pol: Policy) -> tuple[str, float]:
    """(status, allowed drop) of one compared metric."""
    if pol.ignored(row.task, row.metric):
        return "ignored", math.nan
    tol = pol.tolerance_for(row.task, row.metric).allowed(row.value_ref)
    if not results.is_number(row.value_ref):
        return "new", tol
    if not results.is_number(row.value):
        return ("missing" if pol.missing != "ignore" else "ignored"), tol
    if math.isclose(row.value, row.value_ref, rel_tol=REL_TOL, abs_tol=ABS_TOL):  # float summation order, not a move
        return "same", tol
    if row.metric in results.DIRECTION_NEUTRAL:  # e.g. length_ratio: shown, never a regression
        return "no direction", tol
    sign = 1.0 if row.higher_is_better else -1.0
    worse = -sign * row.diff  # > 0: moved in the bad direction
    if worse <= 0:
        return "better", tol
    if worse <= tol:
        return "within tolerance", tol
    has_ci = results.is_number(row.ci_low) and results.is_number(row.ci_high)
    significant = (row.ci_high < 0 if row.higher_is_better else row.ci_low > 0) if has_ci else True
    return ("REGRESSED" if significant else "not significant"), tol


def _statistic(items: np.ndarray, statistic) -> float:
    """A metric's statistic on all items (the point value the bootstraps resample)."""
    x = np.asarray(items, dtype=float).reshape(len(items), -1)
    return float(statistic(x.sum(axis=0, keepdims=True), len(x))[0])


def verify_samples(path: str | Path) -> None:
    """UserError unless each metric of a results.json equals the value recomputed from its samples (and the samples
    hold its n items). Tasks without a samples file are skipped: their CIs come from the stderrs."""
    obj = records.results.read(path)
    for task, t in obj["tasks"].items():
        s = results.load_samples(path, task)
        if s.empty:
            continue
        rows = int(s["rotations"].sum()) if "rotations" in s else len(s)
        if isinstance(t.get("n"), int) and rows != t["n"]:
            raise UserError(f"{path}: tasks.{task}: n is {t['n']} but its samples hold {rows} rows; the samples "
                            f"are truncated or from another run")
        for metric, mv in t["metrics"].items():
            found = metric_items(s, metric)
            if found is None or mv["value"] is None:
                continue
            again = _statistic(found[0], found[1])
            if not math.isclose(again, mv["value"], rel_tol=REL_TOL, abs_tol=ABS_TOL):
                raise UserError(f"{path}: tasks.{task}.metrics.{metric}: results.json has {mv['value']:.6g} but "
                                f"its samples give {again:.6g}; the samples were edited or come from another run")


def _detectable(row, pol: Policy) -> float:
    """The drop (in the metric's units) this check flags with POWER probability; NaN without an SE. When the two
    runs never differ on an item the observed paired SE is 0 and says nothing about power: the baseline's own SE is
    used instead (the paired SD of two runs whose per-item scores correlate 0.5, as `soaes-bench power` assumes)."""
    if not results.is_number(row.se) or row.status in ("ignored", "new", "missing", "no direction"):
        return math.nan
    se = float(row.se) if row.se > 0 or not results.is_number(row.se_ref) else float(row.se_ref)
    g = row.n_clusters
    df = (int(g) if g is not None and not pd.isna(g) else int(row.n_shared)) - 1 \
        if row.interval == "bca-expanded" else None
    return stats.detectable_drop(se, row.tolerance if results.is_number(row.tolerance) else 0.0,
                                 alpha=1 - pol.confidence, power=POWER, df=df)


def check(baseline, results_path, policy=None, resamples: int | None = None,
          seed: int | None = None, unit: str = "cluster") -> tuple[int, pd.DataFrame]:
    """(exit code, table) for results vs baseline under `policy` (Policy, YAML path, dict or None for defaults).
    `unit`: "cluster" (resample source documents where the samples have keys) or "item".

    Bad input (missing files, not eval results, no shared task, samples that disagree with their results.json, bad
    policy, changed task configs) raises UserError (exit 2).
    """
    pol = load_policy(policy)
    resamples = pol.resamples if resamples is None else resamples
    seed = pol.seed if seed is None else seed
    baseline, results_path = eval_results(baseline, "--baseline"), eval_results(results_path, "--results")
    for path in dict.fromkeys([baseline, results_path]):
        verify_samples(path)
    df = compare([baseline, results_path], resamples=resamples, seed=seed, confidence=pol.confidence, unit=unit,
                 correction="none")
    df = df[df.level == "task"].reset_index(drop=True)
    judged = [_judge(r, pol) for r in df.itertuples()]
    df["status"] = [s for s, _ in judged]
    df["tolerance"] = [t for _, t in judged]
    df["detectable"] = [_detectable(r, pol) for r in df.itertuples()]
    missing = df[df.status == "missing"]
    if len(missing) and pol.missing == "error":
        first = missing.iloc[0]
        raise UserError(f"{results_path}: {first.task}:{first.metric} is in the baseline but not in the results "
                        f"({len(missing)} missing in all)")
    code = 1 if df.status.isin(["REGRESSED", "missing"]).any() else 0
    return code, df


def _fmt(value_ref):
    d = 2 if results.is_number(value_ref) and abs(value_ref) >= 10 else 3
    return lambda x: f"{x:.{d}f}" if results.is_number(x) else "–"


def power_lines(df: pd.DataFrame) -> list[str]:
    """ "a drop of X would have been detected" for every judged metric with an SE (80% power)."""
    out = []
    for r in df[df.detectable.notna()].itertuples():
        f = _fmt(r.value_ref)
        g = r.n_clusters
        clustered = r.unit == "cluster" and g is not None and not pd.isna(g) and int(g) < r.n_shared
        units = f"{r.n_shared} items in {int(g)} clusters" if clustered else \
            (f"{r.n_shared} items" if r.n_shared else "stderr")
        assumed = "; no item differs: baseline SE assumed" if not r.se > 0 else ""
        out.append(f"  {r.task} {r.metric}: a drop of {f(r.detectable)} would have been detected "
                   f"({int(100 * POWER)}% power; tolerance {f(r.tolerance)}; {units}{assumed})")
    return out


def format_check(df: pd.DataFrame, code: int) -> str:
    """The metrics that moved (or went missing), one line each, what each check could detect, and a verdict."""
    moved = df[~df.status.isin(["same", "ignored"])]
    if moved.empty:
        body = "no metric moved\n"
    else:
        head = ["task", "metric", "status", "baseline", "results", "diff [CI]", "tolerance", "detectable"]
        rows = []
        for r in moved.itertuples():
            f = _fmt(r.value_ref)
            ci = f" [{f(r.ci_low)}, {f(r.ci_high)}]" if results.is_number(r.ci_low) else ""
            rows.append([r.task, r.metric, r.status, f(r.value_ref), f(r.value), f(r.diff) + ci, f(r.tolerance),
                         f(r.detectable)])
        body = render(head, rows, "table", right_from=3)
    lines = power_lines(df)
    if lines:
        body += "power (true drop flagged 4 times in 5):\n" + "\n".join(lines) + "\n"
    notes = resampling_notes(df)
    if notes:
        body += "resampling:\n" + "\n".join("  " + n for n in notes) + "\n"
    n_bad = int(df.status.isin(["REGRESSED", "missing"]).sum())
    verdict = f"FAIL: {n_bad} regression(s)" if code else f"OK: {len(df)} metric(s) checked, none regressed"
    return body + verdict + "\n"


def tolerance_source(policy) -> str:
    """Where the tolerances came from, for the report: the policy file, and how it was made when its header says."""
    if policy is None:
        return "tolerances: built-in defaults (no --policy)"
    lines = Path(policy).read_text(encoding="utf-8").splitlines()
    calibrated = any("calibrated" in line for line in lines if line.startswith("#"))
    return f"tolerances: {policy}" + (" (calibrated from measured run-to-run spread: soaes-bench calibrate)"
                                      if calibrated else " (hand-set)")


def cli_check(args) -> int:
    code, df = check(args.baseline, args.results, args.policy, resamples=args.resamples, seed=args.seed,
                     unit=getattr(args, "unit", "cluster"))
    print(tolerance_source(args.policy))
    print(format_check(df, code), end="")
    return code
