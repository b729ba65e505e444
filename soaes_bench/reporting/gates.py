"""Phase gates: declarative checks on results, written as gate.json (schema "soaes-bench/gate") + gate.md.

Recipe syntax (a phase's `gates:` list; docs/pipeline.md has the longer explanation):

    gates:
      # statistical checks: decided on the per-item samples of both runs, paired by item id
      - {name: domain-mc-gain, task: soaes_domain_mc, metric: acc, test: superior, reference: base}
      - {name: general-kept, task: soaes_general_zh_bpb, metric: bits_per_byte, test: non_inferior, margin: 0.05,
         reference: base}
      # point checks: compare a value with a bound
      - {name: domain-gain, task: soaes_domain, metric: acc, op: ">=", reference: base, margin: 0.02}
      - {name: retention, task: soaes_general_mc@plain, metric: acc, op: ">=", reference: base, ratio: 0.95}
      - {name: bpb, task: soaes_domain_text, metric: bits_per_byte, op: "<=", threshold: 2.5}

References name other results the pipeline knows: "base" (the starting model), "previous" (the previous phase),
a phase name ("cpt", "sft"), or a phase-specific one ("single_stage" for the SFT ablation, "baseline" for the
undistilled draft, "base_val" for the starting model's CPT validation losses), and "floor": each task's best
content-free predictor run like a model (soaes_bench.evaluation.constant.floor_lm), so `test: superior, reference:
floor` means "better than anything that reads no question", paired item by item. `<task>@plain` reads the phase's
plain-text run (<phase>/eval_plain/).

Point checks (no `test`): value `op` bound, with bound = `threshold`, or reference value * `ratio` (default 1) +
`margin`. They compare point values and can pass on noise.

Statistical checks (`test`; the direction comes from the metric: results' higher_is_better, else
soaes_bench.results.metric_higher_is_better). d = model - reference over the n items both runs answered (matched by
id); its 95% CI is a paired percentile bootstrap (RESAMPLES draws, seed SEED) of the metric's own statistic: the mean
of per-item scores, corpus BLEU-4 from summed n-gram counts, or bits per byte = sum(nll) / sum(bytes) / ln 2 (the
choice of soaes_bench.reporting.compare.metric_items).

- `superior`: the CI excludes 0 on the good side: d_low > 0 (higher is better) or d_high < 0 (lower is better).
  One-sided p for H0 "d <= 0" ("d >= 0").
- `non_inferior` (needs `margin` > 0, in metric units): the CI's bad end stays within the margin: d_low > -margin
  (higher is better) or d_high < +margin (lower is better). One-sided p for H0 "d <= -margin" ("d >= +margin").
- p = (#{bootstrap d* on the null side} + 1) / (R + 1): below ALPHA / 2 = 0.025 exactly when the CI's bad end
  clears the null (up to one draw), i.e. each test is one-sided at 0.025, the level of a 95% two-sided CI.
- Family: the statistical checks of one phase are one family, Holm-corrected at one-sided ALPHA / 2: sort the m
  p-values, p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)). A check passes when its Holm-adjusted p <= 0.025 AND
  its CI clears the null, so no shown CI contradicts a pass. Point checks are not in the family.

Every gate line reports n, the difference with its 95% CI (reference checks: model - reference, paired over shared
items; absolute checks: value - threshold, one-sample bootstrap), p (one-sided as above for statistical checks;
two-sided bootstrap p for d = 0 on point checks; Holm-adjusted p for the family) and the minimum detectable effect
at 80% power for that n, two-sided alpha 0.05 (stats.mde):

    MDE = (z_{0.975} + z_{0.80}) * SD(d_i) / sqrt(n) = 2.80 * SD(d_i) / sqrt(n)   mean metrics, d_i per-item
    MDE = (z_{0.975} + z_{0.80}) * SE_boot                                       corpus metrics: SD of the d*

Without per-item samples (phase-internal tasks cpt_val, draft_heldout) the line falls back to the stderrs (normal
approximation), or shows none; statistical checks then fail, and pipeline_recipe.validate refuses them up front.

Vacuous gates are refused (UserError, exit 2) before any training, when the best content-free floor of the task
(soaes_bench.evaluation.task_floors.best_floor: what a model that reads nothing scores) would pass: see `vacuity`.
"""

from __future__ import annotations

import math
import operator
from pathlib import Path

import numpy as np
import pandas as pd

from soaes_bench import defaults, stats
from soaes_bench.errors import UserError
from soaes_bench.evaluation import task_floors
from soaes_bench.io import atomic_write_text, read_json
from soaes_bench.reporting.compare import metric_items
from soaes_bench.records import gate as gate_record
from soaes_bench.records import results as results_record
from soaes_bench.results import (ACCURACY_METRICS, FORM_METRICS, PLAIN, PLAIN_DIR, find_results, load_samples,
                                 metric_higher_is_better)
from soaes_bench.results import validate as validate_results
from soaes_bench.training.gate_spec import Check

OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
ALPHA, POWER = 0.05, 0.8  # two-sided level of every CI and of the MDE; tests are one-sided at ALPHA / 2
CONFIDENCE = 1 - ALPHA
RESAMPLES, SEED = defaults.RESAMPLES, defaults.BOOTSTRAP_SEED
# results the pipeline computes itself, with no per-item samples (statistical checks cannot read them)
NO_SAMPLES_REFERENCES = ("base_val", "baseline")


# reading results ------------------------------------------------------------------------------------------------
def metric_value(results: dict, task: str, metric: str) -> tuple[float | None, float | None]:
    """(value, stderr) of `metric` for `task` from results["tasks"] or results["groups"]; (None, None) if absent."""
    for section in ("tasks", "groups"):
        entry = (results.get(section) or {}).get(task)
        if entry and metric in entry.get("metrics", {}):
            m = entry["metrics"][metric]
            return m.get("value"), m.get("stderr")
    return None, None


def higher_is_better(results: dict | None, task: str, metric: str) -> bool:
    """The metric's direction: the results' own higher_is_better for the task, else results.metric_higher_is_better."""
    entry = ((results or {}).get("tasks") or {}).get(task)
    hib = entry.get("higher_is_better") if isinstance(entry, dict) else None
    if isinstance(hib, dict) and isinstance(hib.get(metric), bool):
        return hib[metric]
    return metric_higher_is_better(metric)


def _entry(results: dict | None, task: str) -> dict:
    e = ((results or {}).get("tasks") or {}).get(task)
    return e if isinstance(e, dict) else {}


def _tasks_of(results_json: Path, suffix: str) -> dict:
    """A results.json's tasks as merged results entries: names + suffix, each with the path it came from. A run made
    without a chat template (env.chat_template false: a plain-text model, the content-free model) is the plain-text
    form too, so its tasks also stand for <task>@plain."""
    obj = read_json(results_json)
    validate_results(obj, results_json)
    out = {k + suffix: dict(v, results_path=str(results_json)) for k, v in obj["tasks"].items()}
    if not suffix and (obj.get("env") or {}).get("chat_template") is False:
        out |= {k + PLAIN: v for k, v in out.items()}
    return out


def locate_samples(merged: dict, phase_dir: str | Path) -> dict:
    """Point the lm-eval tasks of saved phase metrics at <phase_dir>/eval[_plain]/results.json (where their samples
    are), so a run that moved, or one written before paths were kept, still pairs items. Changes `merged` in place."""
    found: dict[Path, set] = {}
    for name, entry in (merged.get("tasks") or {}).items():
        if not isinstance(entry, dict):
            continue
        f = Path(phase_dir) / (PLAIN_DIR if name.endswith(PLAIN) else "eval") / "results.json"
        if f not in found:
            found[f] = set((read_json(f).get("tasks") or {}) if f.is_file() else ())
        if name.removesuffix(PLAIN) in found[f]:
            entry["results_path"] = str(f)
    return merged


def load_run(paths) -> dict:
    """Merged results of one or more RUN arguments, as the pipeline gates them: a results.json (in a folder named
    eval_plain: its tasks become <task>@plain), a folder holding one, a phase folder (eval/, eval_plain/ and the
    phase-internal tasks of phase_metrics.json), or a JSON with a "tasks" object (phase_metrics.json)."""
    out = {"tasks": {}, "groups": {}}
    for p in [paths] if isinstance(paths, (str, Path)) else paths:
        p = Path(p)
        if p.is_dir():
            if (p / "results.json").is_file():
                p = p / "results.json"
            elif any((p / d / "results.json").is_file() for d in ("eval", PLAIN_DIR)) or (p / "phase_metrics.json").is_file():
                for sub, suffix in (("eval", ""), (PLAIN_DIR, PLAIN)):
                    if (p / sub / "results.json").is_file():
                        out["tasks"].update(_tasks_of(p / sub / "results.json", suffix))
                        if not suffix:
                            out["groups"].update(read_json(p / sub / "results.json").get("groups") or {})
                if (p / "phase_metrics.json").is_file():
                    saved = locate_samples(read_json(p / "phase_metrics.json"), p)
                    for k, v in (saved.get("tasks") or {}).items():
                        out["tasks"].setdefault(k, v)
                    for k, v in (saved.get("groups") or {}).items():
                        out["groups"].setdefault(k, v)
                continue
            else:
                p = find_results(p)
        if not p.is_file():
            raise UserError(f"{p}: file not found")
        obj = read_json(p)
        if isinstance(obj, dict) and obj.get("schema") == results_record.SCHEMA:
            plain = p.parent.name == PLAIN_DIR
            out["tasks"].update(_tasks_of(p, PLAIN if plain else ""))
            if not plain:
                out["groups"].update(obj.get("groups") or {})
        elif isinstance(obj, dict) and isinstance(obj.get("tasks"), dict):
            saved = locate_samples(obj, p.parent)
            out["tasks"].update(saved["tasks"])
            out["groups"].update(saved.get("groups") or {})
        else:
            raise UserError(f"{p}: neither a results.json (schema {results_record.SCHEMA}) nor phase metrics (a tasks object)")
    return out


class _Samples:
    """Per-item samples of a task of merged results (via the results_path each task entry keeps), cached."""

    def __init__(self):
        self.cache: dict = {}

    def __call__(self, merged: dict | None, task: str) -> pd.DataFrame:
        path = _entry(merged, task).get("results_path")
        if not isinstance(path, str) or not Path(path).is_file():
            return pd.DataFrame(columns=["id"])
        key = (path, task)
        if key not in self.cache:
            self.cache[key] = load_samples(path, task.removesuffix(PLAIN))
        return self.cache[key]


def _none_stats(note=None) -> dict:
    return {"n": None, "diff": None, "diff_ci": None, "p": None, "mde": None, "ci_method": None, "stats_note": note}


def _f(x):
    x = float(x)
    return x if math.isfinite(x) else None


def paired_test(sa: pd.DataFrame, sb: pd.DataFrame, metric: str, hib: bool, test: str | None = None,
                margin: float = 0.0, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """Statistics of model (sb) - reference (sa) over the items both answered (matched by id): n, diff, diff_ci,
    p, mde, ci_method; with `test`: p is one-sided for its null (gates docstring), p_null names it and `ci_passes`
    says whether the CI clears it. {"n": 0, ...} with a stats_note when nothing pairs."""
    if sa.empty or sb.empty or "id" not in sa or "id" not in sb:
        return _none_stats("no per-item samples to pair")
    m = sa.merge(sb, on="id", suffixes=("_a", "_b"))
    if m.empty:
        return dict(_none_stats("no item ids shared by the two runs"), n=0)
    a, b = metric_items(m, metric, "_a"), metric_items(m, metric, "_b")
    if a is None or b is None or a[2] != b[2] or a[0].shape != b[0].shape:
        return dict(_none_stats(f"samples do not give {metric} per item"), n=len(m))
    (xa, fa, kind), (xb, fb, _) = a, b
    pa, pb, draws = stats.paired_bootstrap_draws(xa, xb, fa, resamples, seed, statistic_b=fb)
    lo, hi = stats.percentile_ci(draws, CONFIDENCE)
    finite = draws[np.isfinite(draws)]
    if kind == "mean":
        sd = float(np.std(xb - xa, ddof=1)) if len(xa) > 1 else math.nan
        mde = stats.mde(sd, len(xa), alpha=ALPHA, power=POWER)
    else:
        mde = stats.mde(se=float(np.std(finite, ddof=1)) if finite.size > 1 else math.nan, alpha=ALPHA, power=POWER)
    out = {"n": len(m), "diff": _f(pb - pa), "diff_ci": [_f(lo), _f(hi)] if math.isfinite(lo) else None,
           "mde": _f(mde), "ci_method": "paired-bootstrap", "stats_note": None}
    if test is None:
        out.update(p=_f(stats.bootstrap_p(finite)), p_null="diff = 0 (two-sided)")
    else:
        null = stats.null_difference(test, margin, hib)
        out.update(p=_f(stats.one_sided_p(finite, null, hib)), p_null=f"diff {'<=' if hib else '>='} {null:g}",
                   ci_passes=(stats.superior(lo, hi, hib) if test == "superior"
                              else stats.non_inferior(lo, hi, margin, hib)))
    if metric in ACCURACY_METRICS and kind == "mean":
        out["p_mcnemar"] = stats.mcnemar(xa, xb)[2]
    return out


def one_sample_test(s: pd.DataFrame, metric: str, threshold: float, resamples: int = RESAMPLES,
                    seed: int = SEED) -> dict:
    """Statistics of value - threshold from one run's samples: n, diff, diff_ci (bootstrap), two-sided p, mde."""
    got = metric_items(s, metric) if not s.empty else None
    if got is None:
        return _none_stats("no per-item samples")
    x, f, kind = got
    value, draws = stats.bootstrap_draws(x, f, resamples, seed)
    d = draws[np.isfinite(draws)] - threshold
    lo, hi = stats.percentile_ci(d, CONFIDENCE)
    if kind == "mean":
        mde = stats.mde(float(np.std(x, ddof=1)) if len(x) > 1 else math.nan, len(x), alpha=ALPHA, power=POWER)
    else:
        mde = stats.mde(se=float(np.std(d, ddof=1)) if d.size > 1 else math.nan, alpha=ALPHA, power=POWER)
    return {"n": len(x), "diff": _f(value - threshold), "diff_ci": [_f(lo), _f(hi)] if math.isfinite(lo) else None,
            "p": _f(stats.bootstrap_p(d)), "p_null": "diff = 0 (two-sided)", "mde": _f(mde), "ci_method": "bootstrap",
            "stats_note": None}


def _stderr_stats(diff: float, se: float | None, n) -> dict:
    """Normal approximation from standard errors, when there are no per-item samples."""
    if se is None or not math.isfinite(se) or se <= 0:
        return _none_stats("no per-item samples and no stderr")
    from scipy.stats import norm

    z = float(norm.ppf(1 - ALPHA / 2))
    return {"n": n, "diff": diff, "diff_ci": [diff - z * se, diff + z * se],
            "p": float(2 * norm.sf(abs(diff) / se)), "p_null": "diff = 0 (two-sided)",
            "mde": stats.mde(se=se, alpha=ALPHA, power=POWER), "ci_method": "stderr", "stats_note": None}


# one check, one gate ---------------------------------------------------------------------------------------------
def check_one(check: Check, results: dict, references: dict[str, dict], samples=None,
              resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """One gate.json check row. A missing value or reference fails the check (and says so in `note`).
    A statistical check alone is a family of one (evaluate_gate applies Holm across a phase's checks)."""
    samples = samples or _Samples()
    value, stderr = metric_value(results, check.task, check.metric)
    hib = higher_is_better(results, check.task, check.metric)
    note, ref, ref_value, ref_stderr = None, None, None, None
    if check.reference is not None:
        ref = references.get(check.reference)
        ref_value, ref_stderr = metric_value(ref, check.task, check.metric) if ref is not None else (None, None)
        if ref is None:
            note = f"reference results {check.reference!r} not available"
        elif ref_value is None:
            note = f"{check.task}/{check.metric} missing in reference {check.reference!r}"
    if value is None:
        note = f"{check.task}/{check.metric} missing in results"
    z = stats.normal_z(CONFIDENCE)
    ci = [value - z * stderr, value + z * stderr] if value is not None and stderr else None

    if check.test is not None:
        null = stats.null_difference(check.test, check.margin, hib)
        op = ">" if hib else "<"
        bound = None if ref_value is None else ref_value + null
        st = _none_stats(note)
        if note is None:
            try:
                st = paired_test(samples(ref, check.task), samples(results, check.task), check.metric, hib,
                                 check.test, check.margin, resamples, seed)
            except (UserError, ValueError) as e:
                st = _none_stats(f"samples: {e}")
            note = st.get("stats_note")
        p = st.get("p")
        passed = note is None and bool(st.get("ci_passes")) and p is not None and p <= ALPHA / 2
        if note is None and not passed:
            note = _why_not(st, null)
    else:
        op = check.op
        if check.reference is not None:
            times = 1.0 if check.ratio is None else check.ratio
            bound = None if ref_value is None else ref_value * times + check.margin
        else:
            bound = check.threshold
        passed = value is not None and bound is not None and bool(OPS[op](value, bound))
        st = _none_stats()
        if value is not None and (check.reference is None or ref_value is not None):
            try:
                if check.reference is not None:
                    st = paired_test(samples(ref, check.task), samples(results, check.task), check.metric, hib,
                                     None, 0.0, resamples, seed)
                    if st["ci_method"] is None and stderr and ref_stderr:
                        st = _stderr_stats(value - ref_value, math.hypot(stderr, ref_stderr),
                                           _entry(results, check.task).get("n"))
                else:
                    st = one_sample_test(samples(results, check.task), check.metric, bound, resamples, seed)
                    if st["ci_method"] is None and stderr:
                        st = _stderr_stats(value - bound, stderr, _entry(results, check.task).get("n"))
            except (UserError, ValueError) as e:
                st = _none_stats(f"samples: {e}")
    return {"name": check.name, "metric": check.metric, "task": check.task, "op": op, "threshold": bound,
            "reference": check.reference, "reference_value": ref_value, "margin": check.margin,
            "ratio": check.ratio, "value": value, "ci": ci, "passed": passed, "note": note, "test": check.test,
            "higher_is_better": hib, "n": st.get("n"), "diff": st.get("diff"), "diff_ci": st.get("diff_ci"), "p": st.get("p"), "p_null": st.get("p_null"),
            "p_adjusted": None, "mde": st.get("mde"), "ci_method": st.get("ci_method"), "blocking": check.blocking,
            **({"p_mcnemar": st["p_mcnemar"]} if "p_mcnemar" in st else {}),
            **({"ci_passes": st["ci_passes"]} if "ci_passes" in st else {}),
            **({"stats_note": st["stats_note"]} if st.get("stats_note") and check.test is None else {})}


def _why_not(st: dict, null: float, adjusted: float | None = None) -> str:
    ci = st.get("diff_ci")
    if not st.get("ci_passes"):
        shown = f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "–"
        return f"95% CI of diff {shown} does not clear {null:g}"
    p = st.get("p") if adjusted is None else adjusted
    what = "p" if adjusted is None else "Holm-adjusted p"
    return f"{what} {_fmt(p)} > {ALPHA / 2:g}"


def evaluate_gate(phase: str, checks: list[Check], results: dict, references: dict[str, dict],
                  results_path: str | None = None, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """The gate report (DESIGN.md "Gate reports"). No checks -> passed; a failed check with blocking: false is
    reported but does not fail the phase. The statistical checks form one family (blocking or not):
    each passes when its CI clears the null and its Holm-adjusted one-sided p <= ALPHA / 2 (module docstring)."""
    samples = _Samples()
    rows = [check_one(c, results, references, samples, resamples, seed) for c in checks]
    family = [r for r in rows if r.get("test")]
    adjusted, rejected = stats.holm([r["p"] for r in family], alpha=ALPHA / 2)
    for r, adj, rej in zip(family, adjusted, rejected):
        r["p_adjusted"] = adj
        if r["passed"] and not rej:
            r["passed"] = False
            null = stats.null_difference(r["test"], r["margin"], r["higher_is_better"])
            r["note"] = _why_not(r, null, adj)
    return gate_record.new(phase=phase, passed=all(r["passed"] or not r.get("blocking", True) for r in rows),
                           checks=rows, results=results_path, alpha=ALPHA, power=POWER, resamples=resamples,
                           seed=seed, family={"method": "holm", "size": len(family), "alpha_one_sided": ALPHA / 2})


# gate.md ---------------------------------------------------------------------------------------------------------
def _fmt(v):
    return "–" if v is None else f"{v:.4g}"


def _p(x) -> str:
    if x is None:
        return "–"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


NOTE = ("diff: model − reference over the n items both runs answered (matched by id), or value − bound for absolute "
        "checks; 95% CI: bootstrap over items (stderr: normal approximation without samples). p: one-sided for "
        "superior (H0: diff ≤ 0) and non-inferior (H0: diff ≤ −margin; signs flip for lower-is-better metrics), "
        "two-sided for diff = 0 on point checks; Holm: the statistical checks of this phase as one family, each "
        "passing when its CI clears the null and its Holm-adjusted p ≤ 0.025. MDE: the smallest true diff found "
        "with 80% power at two-sided α = 0.05 for this n (2.80 × SD of per-item diffs / √n; corpus metrics: "
        "2.80 × bootstrap SE).")


def gate_markdown(report: dict) -> str:
    """gate.md; reads gate.json of every version (rows written before the statistics show "–" there)."""
    lines = [f"# Gate: {report['phase']} — {'PASSED' if report['passed'] else 'FAILED'}", "",
             "| check | task | metric | value | op | bound | reference | n | diff [95% CI] | p | p Holm | MDE | result |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["checks"]:
        test = r.get("test")
        ref = "absolute"
        if test:
            hib = r.get("higher_is_better", True)
            null = stats.null_difference(test, r["margin"], hib)
            op, bound = test.replace("_", "-"), f"diff {'>' if hib else '<'} {null:g}"
            ref = f"{r['reference']} ({_fmt(r['reference_value'])})"
        else:
            op, bound = r["op"], _fmt(r["threshold"])
            if r["reference"] is not None:
                times = f" × {r['ratio']:g}" if r.get("ratio") is not None else ""  # gate.json of before `ratio`: none
                ref = f"{r['reference']} ({_fmt(r['reference_value'])}){times} {r['margin']:+g}"
        ci = r.get("diff_ci")
        diff = "–" if r.get("diff") is None else _fmt(r["diff"]) + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "")
        res = "pass" if r["passed"] else ("FAIL" + ("" if r.get("blocking", True) else " (not blocking)")
                                          + (f": {r['note']}" if r["note"] else ""))
        lines.append(f"| {r['name']} | {r['task']} | {r['metric']} | {_fmt(r['value'])} | {op} | {bound} | {ref} | "
                     f"{r.get('n') if r.get('n') is not None else '–'} | {diff} | {_p(r.get('p'))} | "
                     f"{_p(r.get('p_adjusted'))} | {_fmt(r.get('mde'))} | {res} |")
    if not report["checks"]:
        lines.append("| (no checks) | | | | | | | | | | | | pass |")
    return "\n".join(lines) + "\n\n" + NOTE + "\n"


def write_gate(report: dict, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    path = gate_record.write(out / gate_record.FILE_NAME, report)
    atomic_write_text(out / "gate.md", gate_markdown(report))
    return path


def check_references(checks: list[Check], available: set[str], where: str) -> None:
    """Fail early (before hours of training) when a gate names a reference the pipeline will never have."""
    for c in checks:
        if c.reference is not None and c.reference not in available:
            raise UserError(f"{where}: gate {c.name!r}: unknown reference {c.reference!r}; "
                            f"choose one of {', '.join(sorted(available))}")


# vacuous gates ---------------------------------------------------------------------------------------------------
def best_floor_of(task: str, metric: str) -> tuple[str, float] | None:
    """The best content-free floor of `task` (its @plain run: the same items) for `metric`, or None: what a model
    that reads nothing scores (soaes_bench.evaluation.task_floors)."""
    return task_floors.best_floor(task.removesuffix(PLAIN), metric)


def vacuity(check: Check, floor: tuple[str, float], ref_value: float | None = None,
            hib: bool | None = None) -> str | None:
    """Why `check` is vacuous, or None: the best content-free floor (name, value) would already pass it.

    - threshold: the floor satisfies `op threshold`;
    - reference point check: the floor satisfies `op` against ref * ratio + margin;
    - superior: the reference scores worse than the floor: a content-free answer beats it, so it could pass (a
      reference exactly at the floor is kept: passing it means beating the best content-free answer);
    - non_inferior: the floor is better than reference - margin (reference + margin when lower is better).
    Reference checks need `ref_value` (None: not checkable yet -> None)."""
    name, fv = floor
    hib = metric_higher_is_better(check.metric) if hib is None else hib
    at = f"{check.task}/{check.metric}"
    tail = "a content-free answer would pass"
    if check.test is None and check.reference is None:
        if OPS[check.op](fv, check.threshold):
            return (f"gate {check.name!r}: the content-free floor {name!r} scores {fv:.4g} on {at}, which already "
                    f"meets {check.op} {check.threshold:g}: {tail}; set a bound the floor does not meet")
        return None
    if ref_value is None:
        return None
    if check.test is None:
        bound = ref_value * (1.0 if check.ratio is None else check.ratio) + check.margin
        if OPS[check.op](fv, bound):
            return (f"gate {check.name!r}: bound {bound:.4g} from reference {check.reference!r} ({ref_value:.4g}) on "
                    f"{at} is met by the content-free floor {name!r} ({fv:.4g} {check.op} {bound:.4g}): {tail}; "
                    f"use test: superior or non_inferior, or compare with another reference")
        return None
    if check.test == "superior":
        worse = ref_value < fv if hib else ref_value > fv
        if worse:
            return (f"gate {check.name!r}: reference {check.reference!r} scores {ref_value:.4g} on {at}, "
                    f"{'below' if hib else 'above'} the content-free floor {name!r} ({fv:.4g}): {tail}; "
                    f"compare with another reference")
        return None
    null = ref_value - check.margin if hib else ref_value + check.margin
    if (fv > null) if hib else (fv < null):
        return (f"gate {check.name!r}: reference {check.reference!r} {'-' if hib else '+'} margin = {ref_value:.4g} "
                f"{'-' if hib else '+'} {check.margin:g} = {null:.4g} on {at} is "
                f"{'below' if hib else 'above'} the content-free floor {name!r} ({fv:.4g}): {tail}; narrow the "
                f"margin or compare with another reference")
    return None


def refuse_vacuous(checks: list[Check], references: dict[str, dict | None], skip=(), where: str = "") -> None:
    """UserError (exit 2, one line naming the gate and the floor) for the first vacuous check that can be judged
    now: threshold checks always, reference checks when `references` holds their reference's results. Tasks in
    `skip` (phase-internal ones, which have no floors) are skipped, and so are form metrics (results.FORM_METRICS):
    a gate on them guards the answers' form beside the ability gates, which are the ones held to the floors."""
    for c in checks:
        if c.task in skip or c.task.removesuffix(PLAIN) in skip or c.metric in FORM_METRICS:
            continue  # form metrics (distinct, looping): a content-free answer is perfect there by design
        ref_value, hib = None, None
        if c.reference is not None:
            ref = references.get(c.reference)
            if not ref:
                continue
            ref_value = metric_value(ref, c.task, c.metric)[0]
            if ref_value is None:
                continue
            hib = higher_is_better(ref, c.task, c.metric)
        floor = best_floor_of(c.task, c.metric)
        if floor is None or floor[1] is None or not math.isfinite(floor[1]):
            continue
        why = vacuity(c, (floor[0], float(floor[1])), ref_value, hib)
        if why:
            raise UserError(f"{where}: {why}" if where else why)
