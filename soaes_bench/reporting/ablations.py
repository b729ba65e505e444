"""Reports the gates cannot give: sample-level forgetting, the SFT curriculum ablation, the distillation ablation.

    soaes-bench ablations runs/reference [--resamples 2000] [--seed 0]

A gate says whether general accuracy stayed above a bound; it cannot say *which* items were forgotten, nor whether
a mean that held hides many items lost and as many learned. SOAEsV2 claims both a domain gain and general-ability
retention after CPT, a benefit of the domain-progressive SFT curriculum over one-stage SFT, and a better draft from
distillation; these reports put numbers with paired uncertainty on each claim, from files the pipeline already wrote
(pipeline.py docstring):

    cpt/forgetting.json, .md     base/eval vs cpt/eval: per accuracy task, items forgotten / learned, McNemar p
    sft/forgetting.json, .md     base/eval vs sft/eval (the final target), same table
    sft/ablation.json, .md       sft/single_stage/eval vs sft/eval: ROUGE-1/2/L, BLEU-4, diff, ratio, paired 95% CI
    distill/ablation.json, .md   distill/summary.json: undistilled (baseline) vs distilled draft held-out metrics

The statistics are those of `soaes-bench compare` (reporting/compare.py, soaes_bench/stats/), not reimplemented.
The JSON files hold {"rows": [flat objects]} so `soaes-bench report` renders them as tables (report.py picks up
ablation*.json).
"""

from __future__ import annotations

import math
from pathlib import Path

from soaes_bench import records, results, stats
from soaes_bench.defaults import BOOTSTRAP_SEED, RESAMPLES
from soaes_bench.errors import UserError
from soaes_bench.io import atomic_write_text, iter_jsonl, read_json
from soaes_bench.paths import tasks_dir
from soaes_bench.reporting.compare import check_comparable, paired_stats
from soaes_bench.reporting.tables import render
from soaes_bench.reporting.gates import metric_value
from soaes_bench.results import PLAIN, PLAIN_DIR
from soaes_bench.training.distill import HELDOUT_TASK

GEN_TASKS = ("soaes_domain_knowledge", "soaes_domain_qa", "soaes_general_gen")
GEN_METRICS = ("rouge1", "rouge2", "rougeL", "bleu4")
DRAFT_METRICS = ("top1_agreement", "kl_teacher", "ce")  # distill.heldout_metrics; top1 = greedy acceptance at γ=1
EXAMPLES = 10  # forgotten items listed in forgetting.md


def _num(x):
    """JSON-safe number: NaN/inf and non-numbers become None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def _suite(task: str, group: str | None) -> str:
    name = f"{group or ''} {task}"
    return "general" if "general" in name else "domain" if "domain" in name else (group or "other")


# ---------------------------------------------------------------- a) forgetting
def _raw_rows(results_path: Path, task: str) -> dict[str, dict]:
    """Samples rows by id as written (load_samples keeps only metrics; the question may be elsewhere in the row)."""
    path = results.samples_path(results_path, task)
    return {} if path is None else {str(r.get("id")): r for _, r in iter_jsonl(path)}


def _question(row: dict) -> str | None:
    doc = row.get("doc") if isinstance(row.get("doc"), dict) else {}
    for q in (row.get("question"), doc.get("question"), row.get("prompt")):
        if isinstance(q, str):
            return q
    return None


def item_questions(ids, rows: dict[str, dict] | None = None, data_dirs=None) -> dict[str, str]:
    """Question text of evaluation items by id: from their samples rows, else from the shipped task data
    (tasks/<suite>/data/*.jsonl; lm-eval samples rows as the writer stores them carry no question)."""
    ids = {str(i) for i in ids}
    found = {i: q for i in ids if (q := _question((rows or {}).get(i, {})))}
    if data_dirs is None:
        try:
            data_dirs = sorted(tasks_dir().glob("*/data"))
        except FileNotFoundError:
            data_dirs = []
    for path in (p for d in data_dirs for p in sorted(Path(d).glob("*.jsonl"))):
        if len(found) == len(ids):
            break
        for _, row in iter_jsonl(path):
            rid = str(row.get("id"))
            if rid in ids and rid not in found and isinstance(row.get("question"), str):
                found[rid] = row["question"]
    return found


ACCURACY_FORMS = ("acc", "cloze_acc", "circular_acc")  # the per-item 0/1 score of each multiple-choice form


def forgetting(base_results, new_results, tasks=None, metric: str | None = None) -> dict:
    """Item-level change of per-item correctness between two runs, per task, items matched by `id`.

    forgotten = right before, wrong now (McNemar's b); learned = wrong before, right now (c); p_mcnemar is the exact
    two-sided test of b vs c (stats.mcnemar). `tasks=None`: every task both runs scored, each tagged with its suite
    (general / domain) so retention and domain gain are read apart. `metric=None`: each task's accuracy in its own
    form (ACCURACY_FORMS: letter acc, cloze_acc, circular_acc).
    """
    pa, pb = results.find_results(base_results), results.find_results(new_results)
    ta, tb = read_json(pa).get("tasks") or {}, read_json(pb).get("tasks") or {}

    def form(task):
        shared = set((ta.get(task) or {}).get("metrics") or {}) & set((tb.get(task) or {}).get("metrics") or {})
        return metric if metric is not None else next((m for m in ACCURACY_FORMS if m in shared), ACCURACY_FORMS[0])

    if tasks is None:
        tasks = [t for t in ta if t in tb and form(t) in (ta[t].get("metrics") or {})
                 and form(t) in (tb[t].get("metrics") or {})]
    rows = []
    for task in tasks:
        metric_t = form(task)
        if task not in ta or task not in tb:
            raise UserError(f"forgetting: task {task!r} missing in {pa if task not in ta else pb}")
        sa, sb = results.load_samples(pa, task), results.load_samples(pb, task)
        if metric_t not in sa or metric_t not in sb:
            where = pa if metric_t not in sa else pb
            raise UserError(f"forgetting: {task}: no per-item {metric_t!r} in the samples of {where}")
        m = sa[["id", metric_t]].merge(sb[["id", metric_t]], on="id", suffixes=("_a", "_b")).dropna()
        if m.empty:
            raise UserError(f"forgetting: {task}: no items shared by {pa} and {pb} (matched by id)")
        a, b = m[f"{metric_t}_a"].to_numpy(float) >= 0.5, m[f"{metric_t}_b"].to_numpy(float) >= 0.5
        n_forgot, n_learned, p = stats.mcnemar(a, b)
        ids = m["id"].astype(str).to_numpy()
        rows.append({"suite": _suite(task, ta[task].get("group")), "task": task, "metric": metric_t, "n_shared": len(m),
                     "base_correct": int(a.sum()), "new_correct": int(b.sum()), "base_acc": float(a.mean()),
                     "new_acc": float(b.mean()), "both_right": int((a & b).sum()), "both_wrong": int((~a & ~b).sum()),
                     "forgotten": n_forgot, "learned": n_learned, "net": n_learned - n_forgot,
                     "forgotten_rate": n_forgot / int(a.sum()) if a.any() else None,
                     "retention": float(b.mean() / a.mean()) if a.any() else None, "p_mcnemar": p,
                     "forgotten_ids": [str(i) for i in ids[a & ~b]],
                     "learned_ids": [str(i) for i in ids[~a & b]]})
    return records.forgetting.new(metric=metric or "accuracy", base=str(pa), new=str(pb), rows=rows)


def _f(x, d: int = 3) -> str:
    return "–" if _num(x) is None else f"{x:.{d}f}"


def _p(x) -> str:
    return "–" if _num(x) is None else "<0.001" if x < 0.001 else f"{x:.3f}"


def forgetting_markdown(rep: dict, examples: int = EXAMPLES) -> str:
    out = [f"# Forgetting: `{rep['new']}` vs `{rep['base']}` ({rep['metric']})", ""]
    head = ["task", "metric", "n", "base acc", "new acc", "both right", "both wrong", "forgotten", "learned", "net",
            "retention", "p (McNemar)"]
    for suite in dict.fromkeys(r["suite"] for r in rep["rows"]):
        rows = [[r["task"], r.get("metric", rep["metric"]), str(r["n_shared"]), _f(r["base_acc"]), _f(r["new_acc"]), str(r["both_right"]),
                 str(r["both_wrong"]), str(r["forgotten"]), str(r["learned"]), f"{r['net']:+d}", _f(r["retention"]),
                 _p(r["p_mcnemar"])] for r in rep["rows"] if r["suite"] == suite]
        out += [f"## {suite}", "", render(head, rows, "markdown")]
    note = ("forgotten: right before, wrong now; learned: the reverse; retention = new acc / base acc over the shared "
            "items; p: exact McNemar test of forgotten vs learned.")
    out += [note, ""]
    for r in rep["rows"]:
        ids = r["forgotten_ids"][:examples]
        if not ids:
            continue
        # rows from another pair of runs (write_forgetting's plain-text rows) name their own files and task
        task = r.get("samples_task", r["task"])
        raw_a, raw_b = _raw_rows(Path(r.get("base", rep["base"])), task), _raw_rows(Path(r.get("new", rep["new"])), task)
        texts = item_questions(ids, raw_a)
        cells = [[i, _short(texts.get(i)), str(raw_a.get(i, {}).get("target") or "–"),
                  str(raw_a.get(i, {}).get("prediction") or "–"), str(raw_b.get(i, {}).get("prediction") or "–")]
                 for i in ids]
        out += [f"### {r['task']}: first {len(ids)} of {r['forgotten']} forgotten items", "",
                render(["id", "question", "answer", "base", "new"], cells, "markdown", right_from=9)]
    return "\n".join(out).rstrip() + "\n"


def _short(text: str | None, width: int = 60) -> str:
    if not text:
        return "–"
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# ---------------------------------------------------------------- b) SFT curriculum ablation
def sft_ablation(single_results, progressive_results, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED,
                 tasks=GEN_TASKS, metrics=GEN_METRICS) -> dict:
    """Single-stage vs domain-progressive SFT on the generation tasks: values, diff = progressive - single,
    ratio = progressive / single, and the paired bootstrap 95% CI of both over the shared items (compare.paired_stats:
    item means for ROUGE, corpus BLEU-4 recomputed from each resample's bleu_pairs)."""
    ps, pp = results.find_results(single_results), results.find_results(progressive_results)
    check_comparable(results.load([ps]), results.load([pp]), ps, pp)
    ts, tp = read_json(ps).get("tasks") or {}, read_json(pp).get("tasks") or {}
    rows = []
    for task in (t for t in tasks if t in ts and t in tp):
        ss, sp = results.load_samples(ps, task), results.load_samples(pp, task)
        for metric in metrics:
            vs = ((ts[task].get("metrics") or {}).get(metric) or {}).get("value")
            vp = ((tp[task].get("metrics") or {}).get(metric) or {}).get("value")
            if _num(vs) is None or _num(vp) is None:
                continue
            row = {"task": task, "metric": metric, "single": vs, "progressive": vp, "diff": vp - vs,
                   "ratio": vp / vs if vs else None, "ci_low": None, "ci_high": None, "ratio_low": None,
                   "ratio_high": None, "p_bootstrap": None, "n_shared": 0, "ci_method": ""}
            row.update({k: v for k, v in paired_stats(ss, sp, metric, resamples, seed).items() if k in row})
            rows.append({k: _num(v) if isinstance(v, float) else v for k, v in row.items()})
    if not rows:
        raise UserError(f"sft ablation: no {'/'.join(metrics)} of {', '.join(tasks)} in both {ps} and {pp}")
    return records.ablation.new("sft", rows, single=str(ps), progressive=str(pp), resamples=resamples, seed=seed)


def sft_markdown(rep: dict) -> str:
    head = ["task", "metric", "single-stage", "progressive", "diff [95% CI]", "ratio [95% CI]", "p", "n"]
    rows = []
    for r in rep["rows"]:
        ci = f" [{_f(r['ci_low'], 2)}, {_f(r['ci_high'], 2)}]" if r["ci_low"] is not None else ""
        rci = f" [{_f(r['ratio_low'])}, {_f(r['ratio_high'])}]" if r["ratio_low"] is not None else ""
        rows.append([r["task"], r["metric"], _f(r["single"], 2), _f(r["progressive"], 2), _f(r["diff"], 2) + ci,
                     _f(r["ratio"]) + rci, _p(r["p_bootstrap"]), str(r["n_shared"] or "–")])
    note = ("diff = progressive - single-stage, ratio = progressive / single-stage; 95% CI and p: paired bootstrap "
            f"over the n shared items ({rep['resamples']} resamples, seed {rep['seed']}; "
            "BLEU-4 recomputed per resample).")
    return (f"# SFT ablation: domain-progressive vs single-stage\n\nsingle `{rep['single']}`, progressive "
            f"`{rep['progressive']}`\n\n" + render(head, rows, "markdown", note=note, right_from=2))


# ---------------------------------------------------------------- c) distillation ablation
def _draft_results(run_dir: Path) -> tuple[dict, dict]:
    """(undistilled, distilled) held-out results of the draft: distill/summary.json, else the model dirs' provenance."""
    d = run_dir / "distill"
    if (d / "summary.json").is_file():
        s = records.summary.read(d / "summary.json")
        base, dist = (s.get("baseline") or {}).get("results"), (s.get("distilled") or {}).get("results")
    else:
        base = (read_json(d / "baseline" / "model" / "soaes_training.json") if
                (d / "baseline" / "model" / "soaes_training.json").is_file() else {}).get("results")
        dist = read_json(d / "phase_metrics.json") if (d / "phase_metrics.json").is_file() else None
    if not base or not dist:
        what = "undistilled baseline" if not base else "distilled draft"
        raise UserError(f"{d}: no held-out results of the {what} in summary.json "
                        "(needs `baseline: true` and val_blocks > 0)")
    return base, dist


def distill_ablation(run_dir) -> dict:
    """Undistilled vs distilled draft on the held-out blocks: top1_agreement (the greedy acceptance rate at γ = 1),
    kl_teacher and ce, with diff, ratio distilled / undistilled, and which is better. The agreement CI combines the
    two drafts' block-clustered stderrs (distill.clustered_rate; the per-position pairs are not stored, so it is not
    paired and errs wide)."""
    run_dir = Path(run_dir)
    base, dist = _draft_results(run_dir)
    rows = []
    for metric in DRAFT_METRICS:
        (vb, sb), (vd, sd) = metric_value(base, HELDOUT_TASK, metric), metric_value(dist, HELDOUT_TASK, metric)
        if _num(vb) is None or _num(vd) is None:
            continue
        hib = ((dist.get("tasks") or {}).get(HELDOUT_TASK) or {}).get("higher_is_better") or {}
        higher = bool(hib.get(metric, metric == "top1_agreement"))
        lo, hi = stats.normal_diff_ci(vb, sb, vd, sd) if _num(sb) is not None and _num(sd) is not None else (None, None)
        rows.append({"metric": metric, "higher_is_better": higher, "undistilled": vb, "distilled": vd,
                     "diff": vd - vb, "ratio": _num(vd / vb) if vb else None, "ci_low": _num(lo), "ci_high": _num(hi),
                     "better": "tie" if vd == vb else "distilled" if (vd > vb) == higher else "undistilled"})
    if not rows:
        raise UserError(f"{run_dir / 'distill'}: no {', '.join(DRAFT_METRICS)} in the draft held-out results")
    return records.ablation.new("distill", rows, source=str(run_dir / "distill"))


def distill_markdown(rep: dict) -> str:
    rows = [[r["metric"] + ("" if r["higher_is_better"] else " ↓"), _f(r["undistilled"], 4), _f(r["distilled"], 4),
             _f(r["diff"], 4) + (f" [{_f(r['ci_low'], 4)}, {_f(r['ci_high'], 4)}]" if r["ci_low"] is not None else ""),
             _f(r["ratio"]), r["better"]] for r in rep["rows"]]
    note = ("Held-out blocks of the distillation text, teacher-forced. top1_agreement = greedy acceptance rate at "
            "γ = 1; kl_teacher = KL(teacher || draft) per token (nats); ce per token (nats); ↓ lower is better. "
            "diff = distilled - undistilled (95% CI from the two stderrs, not paired); "
            "ratio = distilled / undistilled.")
    return ("# Distillation ablation: undistilled (CE-only) vs distilled draft\n\n"
            + render(["metric", "undistilled", "distilled", "diff [95% CI]", "ratio", "better"], rows, "markdown",
                     note=note, right_from=1))


# ---------------------------------------------------------------- d) writers
def _write(obj: dict, json_path: Path, markdown: str) -> Path:
    records.write(json_path, obj)  # validated by its schema (ablation or forgetting)
    atomic_write_text(json_path.with_suffix(".md"), markdown)
    return json_path


def _eval(run_dir: Path, *parts: str) -> Path:
    path = run_dir.joinpath(*parts, "eval", "results.json")
    if not path.is_file():
        raise FileNotFoundError(f"no {path}")
    return path


def write_forgetting(run_dir, phase: str) -> Path:
    """base vs phase, plus the plain-text scores (eval_plain/, tasks shown as <task>@plain) when both have them."""
    run_dir = Path(run_dir)
    rep = forgetting(_eval(run_dir, "base"), _eval(run_dir, phase))
    plain = [run_dir / p / PLAIN_DIR / "results.json" for p in ("base", phase)]
    if all(p.is_file() for p in plain):
        rep["rows"] += [dict(r, task=r["task"] + PLAIN, samples_task=r["task"], base=str(plain[0]), new=str(plain[1]))
                        for r in forgetting(*plain)["rows"]]
    if not rep["rows"]:
        raise FileNotFoundError(f"no accuracy task in both {run_dir / 'base/eval'} and {run_dir / phase / 'eval'}")
    return _write(rep, run_dir / phase / "forgetting.json", forgetting_markdown(rep))


def write_sft_ablation(run_dir, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Path:
    run_dir = Path(run_dir)
    rep = sft_ablation(_eval(run_dir, "sft", "single_stage"), _eval(run_dir, "sft"), resamples, seed)
    return _write(rep, run_dir / "sft" / "ablation.json", sft_markdown(rep))


def write_distill_ablation(run_dir) -> Path:
    run_dir = Path(run_dir)
    if not (run_dir / "distill").is_dir():
        raise FileNotFoundError(f"no {run_dir / 'distill'}")
    rep = distill_ablation(run_dir)
    return _write(rep, run_dir / "distill" / "ablation.json", distill_markdown(rep))


def phase_reports(run_dir, phase: str, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict[str, object]:
    """The reports that follow `phase` -> {file: written Path, or the reason it was not written (a string)}.
    Never raises for a report: one missing or broken input must not cost the others (or the pipeline its run)."""
    run_dir = Path(run_dir)
    jobs = {"cpt": [("cpt/forgetting.json", lambda: write_forgetting(run_dir, "cpt"))],
            "sft": [("sft/forgetting.json", lambda: write_forgetting(run_dir, "sft")),
                    ("sft/ablation.json", lambda: write_sft_ablation(run_dir, resamples, seed))],
            "distill": [("distill/ablation.json", lambda: write_distill_ablation(run_dir))]}.get(phase, [])
    out: dict[str, object] = {}
    for name, job in jobs:
        try:
            out[name] = job()
        except FileNotFoundError as e:
            out[name] = f"skipped ({e.args[0] if e.args else e})"
        except Exception as e:  # noqa: BLE001 - a report is an extra; its failure is reported, never raised
            first = (str(e).splitlines() or [""])[0]
            out[name] = f"warning: not written ({type(e).__name__}: {first})"
    return out


def write_ablations(run_dir, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict[str, object]:
    """Every report that the files in `run_dir` allow (phase_reports for cpt, sft, distill)."""
    if not Path(run_dir).is_dir():
        raise UserError(f"{run_dir}: not a directory")
    out: dict[str, object] = {}
    for phase in ("cpt", "sft", "distill"):
        out.update(phase_reports(run_dir, phase, resamples, seed))
    return out


def cli_ablations(args) -> int:
    """`soaes-bench ablations RUN_DIR`: every report the run directory's files allow (write_ablations); exit 0 when
    at least one was written, 1 when none could be, 2 on bad input."""
    written = write_ablations(args.run_dir, args.resamples, args.seed)
    for name, what in written.items():
        print(f"{name}: {'wrote ' + str(what) if isinstance(what, Path) else what}")
    return 0 if any(isinstance(w, Path) for w in written.values()) else 1
