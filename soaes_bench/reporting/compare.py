"""`soaes-bench compare`: paired comparison of runs against the first (the reference).

    soaes-bench compare reports/baseline reports/latest --format markdown --output reports/compare.md

Per task and metric: both values, B - A, B / A, a paired 95% bootstrap CI over the items both runs answered
(matched by sample `id`; `n_shared` says how many), the bootstrap p, and McNemar's exact p for accuracy metrics.
Runs whose task prompt/config differ (config_sha256 or version) measure different things, so they are refused
unless --force. Without per-item samples the CI falls back to the two stderrs (ci_method "stderr").

Only eval results are compared: each RUN is a results.json or a folder holding one. A gate, profile or other record
is refused (exit 2, naming its kind: gate checks and profiles have no per-item samples to pair), and so is a run
that shares no task with the reference (nothing would be compared).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from soaes_bench import records, results, stats
from soaes_bench.errors import UserError
from soaes_bench.io import atomic_write_text
from soaes_bench.metrics.corpus_bleu import bleu_items

COLUMNS = ["group", "task", "metric", "level", "higher_is_better", "reference", "run", "value_ref", "value", "diff",
           "ci_low", "ci_high", "ratio", "ratio_low", "ratio_high", "p_bootstrap", "p_mcnemar", "n_shared", "ci_method",
           "floor", "floor_name"]
FORMATS = {".md": "markdown", ".csv": "csv", ".tex": "latex", ".txt": "table"}


def _labels(frames: list[pd.DataFrame], paths: list[Path]) -> list[str]:
    """Model names, made unique with the run name, then the folder name."""
    def first(df, col):
        vals = df[col].dropna()
        return str(vals.iloc[0]) if len(vals) else ""

    labels = [first(f, "model") or p.parent.name for f, p in zip(frames, paths)]
    if len(set(labels)) < len(labels):
        labels = [f"{lab}@{first(f, 'run')}" for lab, f in zip(labels, frames)]
    if len(set(labels)) < len(labels):
        labels = [f"{lab}@{p.parent.name}" for lab, p in zip(labels, paths)]
    if len(set(labels)) < len(labels):
        labels = [f"{lab}#{i}" for i, lab in enumerate(labels)]
    return labels


def _same(v) -> str:
    """A version as compared: 1 and 1.0 are one version (a frame whose group rows have none stores it as float)."""
    try:
        return repr(float(v))
    except (TypeError, ValueError):
        return str(v)


def eval_results(path, role: str = "run") -> Path:
    """The results.json of a run argument (file, or folder holding one), refused unless it is eval results."""
    p = results.find_results(path)
    kind = records.kind_of(p)
    if kind != records.results.KIND:
        raise UserError(f"{p}: {role} is a {kind} file, not eval results (results.json, schema "
                        f"{records.results.SCHEMA}); compare and check compare evaluated runs")
    return p


def check_shared_tasks(ref: pd.DataFrame, run: pd.DataFrame, ref_path: Path, run_path: Path) -> None:
    """UserError when two runs have no task in common: a comparison of nothing would pass any check."""
    a, b = set(ref[ref.level == "task"].task), set(run[run.level == "task"].task)
    if not a & b:
        def some(tasks):
            return ", ".join(sorted(tasks)[:3]) + (", ..." if len(tasks) > 3 else "") if tasks else "none"

        raise UserError(f"{run_path}: no task in common with {ref_path} ({some(b)} vs {some(a)}); "
                        f"compare runs of the same suite")


def check_comparable(ref: pd.DataFrame, run: pd.DataFrame, ref_path: Path, run_path: Path) -> None:
    """UserError when a task shared by both runs has a different config hash or version."""
    a = ref[ref.level == "task"].drop_duplicates("task").set_index("task")
    b = run[run.level == "task"].drop_duplicates("task").set_index("task")
    for task in a.index.intersection(b.index):
        for field in ("config_sha256", "version"):
            va, vb = a.at[task, field], b.at[task, field]
            if pd.notna(va) and pd.notna(vb) and _same(va) != _same(vb):
                raise UserError(f"{task}: task {field} differs ({va} in {ref_path}, {vb} in {run_path}); the runs "
                                f"measured different things: rerun both with the same tasks or pass --force")


def metric_items(df: pd.DataFrame, metric: str, sfx: str = ""):
    """(per-item array, statistic, kind) of one run's samples columns (suffix `sfx` after a merge) for `metric`:
    corpus BLEU from bleu_pair ("bleu"), bits per byte / perplexity from (loglikelihood, count) ("ratio"), else the
    per-item metric column ("mean"; (loglikelihood, bytes) pairs there are a "ratio"). None when the samples cannot
    give the metric. The one choice behind `compare`, `check` and the gates' paired tests."""
    def full(col):
        return col in df and bool(df[col].notna().all())

    if metric in results.CORPUS_METRICS and full("bleu_pair" + sfx):
        x, f = bleu_items(list(df["bleu_pair" + sfx]))
        return x, f, "bleu"
    count = results.RATIO_METRICS.get(metric)
    if count and full("loglikelihood" + sfx) and full(count + sfx):
        f = stats.bits_per_byte_statistic if metric == "bits_per_byte" else stats.perplexity_statistic
        return df[["loglikelihood" + sfx, count + sfx]].to_numpy(float), f, "ratio"
    if metric + sfx in df:
        vals = list(df[metric + sfx])
        if all(results.is_number(v) for v in vals):
            return np.asarray(vals, dtype=float), stats.mean_statistic, "mean"
        if all(isinstance(v, (list, tuple)) and len(v) == 2 and all(results.is_number(x) for x in v) for v in vals):
            return np.asarray(vals, dtype=float), stats.bits_per_byte_statistic, "ratio"
    return None


def paired_stats(sa: pd.DataFrame, sb: pd.DataFrame, metric: str, resamples: int, seed: int,
                 confidence: float = 0.95) -> dict:
    """CI fields for one metric from two runs' samples (matched by id); {} when they cannot be paired."""
    if sa.empty or sb.empty or "id" not in sa or "id" not in sb:
        return {}
    m = sa.merge(sb, on="id", suffixes=("_a", "_b"))
    if m.empty:
        return {"n_shared": 0}
    out: dict = {"n_shared": len(m)}
    a, b = metric_items(m, metric, "_a"), metric_items(m, metric, "_b")
    if a is None or b is None or a[2] != b[2] or a[0].shape != b[0].shape:
        return out
    (xa, fa, kind), (xb, fb, _) = a, b
    p = stats.paired_bootstrap(xa, xb, fa, resamples, seed, confidence, statistic_b=fb)
    if metric in results.ACCURACY_METRICS and kind == "mean":
        out["p_mcnemar"] = stats.mcnemar(xa, xb)[2]
    # diff and ratio over the shared items, so they agree with their CIs (= value - value_ref when all are shared)
    out.update(diff=p.diff, ratio=p.ratio, ci_low=p.diff_low, ci_high=p.diff_high, ratio_low=p.ratio_low,
               ratio_high=p.ratio_high,
               p_bootstrap=p.p_value, ci_method="paired-bootstrap")
    return out


def _pair(ref: pd.DataFrame, run: pd.DataFrame, ref_path: Path, run_path: Path, labels: tuple[str, str],
          resamples: int, seed: int, confidence: float) -> list[dict]:
    cache: dict = {}

    def samples(path: Path, task: str) -> pd.DataFrame:
        if (path, task) not in cache:
            cache[path, task] = results.load_samples(path, task)
        return cache[path, task]

    keys = ["level", "task", "metric"]
    a, b = ref.drop_duplicates(keys).set_index(keys), run.drop_duplicates(keys).set_index(keys)
    rows = []
    for key in list(a.index) + [k for k in b.index if k not in a.index]:
        level, task, metric = key
        ra = a.loc[key] if key in a.index else None
        rb = b.loc[key] if key in b.index else None
        va = float(ra["value"]) if ra is not None else math.nan
        vb = float(rb["value"]) if rb is not None else math.nan
        meta = ra if ra is not None else rb
        row = {"group": meta["group"], "task": task, "metric": metric, "level": level,
               "higher_is_better": bool(meta["higher_is_better"]), "reference": labels[0], "run": labels[1],
               "value_ref": va, "value": vb, "diff": vb - va, "ratio": vb / va if va else math.nan,
               "n_shared": 0, "ci_method": ""}
        if ra is not None and rb is not None and level == "task":
            row.update(paired_stats(samples(ref_path, task), samples(run_path, task), metric, resamples, seed,
                                    confidence))
            if row["ci_method"] == "" and results.is_number(ra["stderr"]) and results.is_number(rb["stderr"]):
                lo, hi = stats.normal_diff_ci(va, float(ra["stderr"]), vb, float(rb["stderr"]), confidence)
                row.update(ci_low=lo, ci_high=hi, ci_method="stderr")
        rows.append(row)
    return rows


def compare(paths, resamples: int = 2000, seed: int = 0, force: bool = False,
            confidence: float = 0.95) -> pd.DataFrame:
    """One row per (run, level, task, metric) for every run after the first, compared with the first."""
    paths = [eval_results(p, "run" if i else "reference") for i, p in enumerate(paths)]
    if len(paths) < 2:
        raise UserError("compare: need at least two runs (the first is the reference)")
    if resamples < 1:
        raise UserError(f"--resamples: must be >= 1, got {resamples}")
    frames = []
    for p in paths:
        df = results.load([p])
        frames.append(df[df.kind == "eval"])
    labels = _labels(frames, paths)
    rows = []
    for frame, path, label in zip(frames[1:], paths[1:], labels[1:]):
        check_shared_tasks(frames[0], frame, paths[0], path)
        if not force:
            check_comparable(frames[0], frame, paths[0], path)
        pair_rows = _pair(frames[0], frame, paths[0], path, (labels[0], label), resamples, seed, confidence)
        rows += add_floors(pair_rows, [path, paths[0]])
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["n_shared"] = out["n_shared"].fillna(0).astype(int)
    out["ci_method"] = out["ci_method"].fillna("")
    return out


def add_floors(rows: list[dict], paths: list[Path]) -> list[dict]:
    """Fill `floor`/`floor_name` of task rows from the results.json `floors` blocks of `paths` (the first that has
    one wins: the run, then the reference): the best content-free floor of that task and metric."""
    from soaes_bench.io import read_json

    blocks = []
    for p in paths:
        try:
            tasks = read_json(p).get("tasks") or {}
        except (OSError, ValueError, AttributeError):
            tasks = {}
        blocks.append({t: v.get("floors") for t, v in tasks.items() if isinstance(v, dict)})
    for row in rows:
        if row.get("level") != "task":
            continue
        for block in blocks:
            f = (block.get(row["task"]) or {}).get(row["metric"])
            if isinstance(f, dict) and results.is_number(f.get("value")):
                row["floor"], row["floor_name"] = float(f["value"]), f.get("name")
                break
    return rows


# rendering -------------------------------------------------------------------------------------------------------
_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "–": "--", "<": r"$<$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(c, c) for c in str(text))


def render(head: list[str], rows: list[list[str]], fmt: str = "table", note: str = "", right_from: int = 1) -> str:
    """A table as aligned text ("table"), GitHub Markdown ("markdown") or LaTeX booktabs ("latex").

    Hand-written so the output is byte-stable across pandas versions; columns from `right_from` on are numbers
    (right-aligned).
    """
    right = [i >= right_from for i in range(len(head))]
    if fmt == "markdown":
        lines = ["| " + " | ".join(h.replace("|", "\\|") for h in head) + " |",
                 "|" + "|".join("---:" if r else ":---" for r in right) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join(lines) + ("\n\n" + note if note else "") + "\n"
    if fmt == "latex":
        spec = "".join("r" if r else "l" for r in right)
        lines = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
                 " & ".join(latex_escape(h) for h in head) + " \\\\", "\\midrule"]
        lines += [" & ".join(latex_escape(c) for c in row) + " \\\\" for row in rows]
        lines += ["\\bottomrule", "\\end{tabular}"]
        return "\n".join(lines) + "\n"
    if fmt != "table":
        raise UserError(f"--format: unknown format {fmt!r}; use table, markdown, csv or latex")
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(head)]

    def line(cells):
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()

    lines = [line(head), "  ".join("-" * w for w in widths)] + [line(row) for row in rows]
    return "\n".join(lines) + ("\n" + note if note else "") + "\n"


def _decimals(x: float) -> int:
    return 2 if results.is_number(x) and abs(x) >= 10 else 3


def _f(x, d: int) -> str:
    return f"{x:.{d}f}" if results.is_number(x) else "–"


def _p(x) -> str:
    if not results.is_number(x):
        return "–"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def display(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells of the comparison (one `run` column only when several runs are compared)."""
    many = df["run"].nunique() > 1
    ref = df["reference"].iloc[0] if len(df) else "A"
    run = df["run"].iloc[0] if len(df) else "B"
    head = ["task", "metric"] + (["run", f"{ref} (reference)", "value"] if many else [ref, run])
    with_floor = "floor" in df and bool(df["floor"].notna().any())
    head += (["floor"] if with_floor else []) + ["diff [95% CI]", "ratio [95% CI]", "p", "n"]
    rows = []
    for r in df.itertuples():
        d = _decimals(r.value_ref)
        diff = _f(r.diff, d) + (f" [{_f(r.ci_low, d)}, {_f(r.ci_high, d)}]" if results.is_number(r.ci_low) else "")
        ratio = _f(r.ratio, 3) + (f" [{_f(r.ratio_low, 3)}, {_f(r.ratio_high, 3)}]"
                                  if results.is_number(r.ratio_low) else "")
        metric = r.metric + (" (no direction)" if r.metric in results.DIRECTION_NEUTRAL
                             else "" if r.higher_is_better else " (lower better)")
        p = r.p_mcnemar if results.is_number(r.p_mcnemar) else r.p_bootstrap
        floor = ([(_f(r.floor, d) + f" ({r.floor_name})") if results.is_number(r.floor) else "–"]
                 if with_floor else [])
        rows.append([r.task, metric] + ([r.run] if many else []) + [_f(r.value_ref, d), _f(r.value, d)] + floor
                    + [diff, ratio, _p(p), str(r.n_shared or "–")])
    return head, rows


NOTE = ("diff = run - reference and ratio = run / reference over the n items both runs answered (matched by id); "
        "95% CI: paired bootstrap over those items, or from the two stderrs when no samples exist; "
        "p: McNemar exact for acc/acc_norm, paired bootstrap otherwise.")


def format_comparison(df: pd.DataFrame, fmt: str = "table") -> str:
    if fmt == "csv":
        return df.to_csv(index=False)
    head, rows = display(df)
    note = NOTE + (" floor: the task's best content-free floor for the metric (from results.json; soaes-bench floors)."
                   if "floor" in head else "")
    return render(head, rows, fmt, note=note, right_from=2)


def cli_compare(args) -> int:
    df = compare(args.runs, resamples=args.resamples, seed=args.seed, force=args.force)
    print(format_comparison(df, args.format), end="")
    if args.output:
        out = Path(args.output)
        fmt = FORMATS.get(out.suffix.lower())
        if fmt is None:
            raise UserError(f"--output: {out}: unknown suffix {out.suffix!r}; use {', '.join(FORMATS)}")
        atomic_write_text(out, format_comparison(df, fmt))
    return 0
