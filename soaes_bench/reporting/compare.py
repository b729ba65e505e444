"""`soaes-bench compare`: paired comparison of runs against the first (the reference).

    soaes-bench compare reports/baseline reports/latest --format markdown --output reports/compare.md

Per task and metric: both values, B - A, B / A, a paired 95% bootstrap CI over the items both runs answered
(matched by sample `id`; `n_shared` says how many), the bootstrap p, and McNemar's exact p for accuracy metrics.
Runs whose task prompt/config differ (config_sha256 or version) measure different things, so they are refused
unless --force; so are runs of different backends (results.json `backend.name`, hf when absent). Without per-item samples the CI falls back to the two stderrs (ci_method "stderr").

What is resampled (`--unit`, default cluster): the items' clusters (their source documents, samples field
`cluster`), the same clusters for both runs; samples written before cluster keys existed have none, and their items
are resampled instead (the row's `unit_note` says so). The interval method follows n and the number of clusters
(stats.interval_method: BCa at an expanded level for clusters and small sets, none with fewer than 6 clusters).
Every row also gets the jackknife SE, the design effect, the minimum detectable effect at 80% power, and the
win/tie/loss counts of the per-item scores (with the ids of the items that flipped). The p-values of one run pair's
task x metric grid are adjusted together (`--correction`: holm, bh or none); `significant` is after correction.

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
from soaes_bench.reporting.comparison_table import format_comparison

COLUMNS = ["group", "task", "metric", "level", "higher_is_better", "reference", "run", "value_ref", "value", "diff",
           "ci_low", "ci_high", "ratio", "ratio_low", "ratio_high", "p_bootstrap", "p_mcnemar", "p", "p_adjusted",
           "significant", "correction", "n_shared", "unit", "n_clusters", "ci_method", "interval", "confidence", "se",
           "se_ref", "deff", "mde", "widened", "resamples", "wins", "ties", "losses", "won_ids", "lost_ids", "unit_note",
           "floor", "floor_name"]
FORMATS = {".md": "markdown", ".csv": "csv", ".tex": "latex", ".txt": "table"}
UNITS = ("cluster", "item")  # --unit: resample clusters (source documents) where the samples have keys, or items
POWER = 0.8  # the power of the reported minimum detectable effect
NO_KEYS = "no cluster keys in the samples, written before they existed: items resampled"


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


def check_same_backend(ref_path: Path, run_path: Path) -> None:
    """UserError when two runs were evaluated by different backends (hf, vllm: results.json `backend.name`, hf
    when absent): kernels, batching and numerics differ, so a difference could be the engine's, not the model's.
    A content-free run (`constant`) ran on no engine and pairs with any."""
    a, b = (records.results.backend_name(records.results.read(p)) for p in (ref_path, run_path))
    if a != b and "constant" not in (a, b):
        raise UserError(f"{run_path}: backend {b} differs from the reference's ({a}, {ref_path}); scores of one "
                        f"model differ between backends: evaluate both with the same --backend or pass --force")


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


def cluster_keys(m: pd.DataFrame) -> list[str] | None:
    """Cluster keys of merged samples rows (the reference's, else the run's), or None when neither run's samples
    carry one for every shared item (samples written before cluster keys existed)."""
    for col in ("cluster_a", "cluster", "cluster_b"):
        if col in m and bool(m[col].notna().all()):
            return [str(k) for k in m[col]]
    return None


def item_scores(x: np.ndarray, kind: str) -> np.ndarray | None:
    """Per-item scores whose ties, wins and losses are counted: the metric's per-item value ("mean"), a document's
    own bits per byte or perplexity exponent ("ratio": |log-likelihood| / count); none for corpus BLEU."""
    if kind == "mean":
        return np.asarray(x, dtype=float).reshape(-1)
    if kind == "ratio":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.abs(x[:, 0]) / x[:, 1]
    return None


def paired_stats(sa: pd.DataFrame, sb: pd.DataFrame, metric: str, resamples: int, seed: int,
                 confidence: float = 0.95, unit: str = "cluster", higher_is_better: bool = True,
                 method: str = "auto") -> dict:
    """CI fields for one metric from two runs' samples (matched by id); {} when they cannot be paired.

    unit "cluster": resample the shared items' clusters (the same for both runs) when the samples carry keys,
    else items (with `unit_note`); "item": items. `method`: the interval (stats.interval_method when "auto"; the
    gates read plain percentiles of the same draws, `method="percentile"`)."""
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
    keys = cluster_keys(m) if unit == "cluster" else None
    p = stats.paired_ci(xa, xb, fa, keys, resamples, seed, confidence, statistic_b=fb, method=method)
    clustered = p.n_clusters is not None and p.n_clusters < p.n
    if metric in results.ACCURACY_METRICS and kind == "mean":
        out["p_mcnemar"] = stats.mcnemar(xa, xb)[2]
    # McNemar's exact p where items are the independent units; the (clustered) bootstrap's p otherwise
    p_row = out["p_mcnemar"] if "p_mcnemar" in out and not clustered else p.p_value
    # design effect of this comparison: (clustered SE / item SE)^2, as estimated (below 1 is noise; the CI and MDE
    # then use the item-level numbers, stats.paired_ci's floor_items)
    se_items = stats.paired_se(xa, xb, fa, None, fb) if clustered else p.se
    se_clusters = stats.paired_se(xa, xb, fa, keys, fb) if clustered else p.se
    # the reference's own SE over the same units: what check assumes for the paired SE when the runs never differ
    se_ref = stats.jackknife_se(stats.jackknife(stats.units(xa, keys), fa))
    df = (p.n_clusters if p.n_clusters is not None else p.n) - 1 if p.method == "bca-expanded" else None
    # diff and ratio over the shared items, so they agree with their CIs (= value - value_ref when all are shared)
    out.update(diff=p.diff, ratio=p.ratio, ci_low=p.diff_low, ci_high=p.diff_high, ratio_low=p.ratio_low,
               ratio_high=p.ratio_high, p_bootstrap=p.p_value, p=p_row, ci_method="paired-bootstrap",
               interval=p.method, confidence=confidence, widened=p.widened, resamples=resamples,
               unit="cluster" if keys is not None else "item",
               n_clusters=p.n_clusters, se=p.se, se_ref=se_ref,
               deff=(se_clusters / se_items) ** 2 if se_items and math.isfinite(se_items) and se_items > 0
               else math.nan,
               mde=stats.mde(se=p.se, alpha=1 - confidence, power=POWER, df=df) if math.isfinite(p.se) else math.nan)
    if unit == "cluster" and keys is None:
        out["unit_note"] = NO_KEYS
    scores_a, scores_b = item_scores(xa, kind), item_scores(xb, kind)
    if scores_a is not None and metric not in results.DIRECTION_NEUTRAL:
        o = stats.outcomes(scores_a, scores_b, higher_is_better)
        ids = [str(i) for i in m["id"]]
        out.update(wins=int(np.sum(o > 0)), ties=int(np.sum(o == 0)), losses=int(np.sum(o < 0)),
                   won_ids=" ".join(i for i, x in zip(ids, o) if x > 0),
                   lost_ids=" ".join(i for i, x in zip(ids, o) if x < 0))
    return out


def _pair(ref: pd.DataFrame, run: pd.DataFrame, ref_path: Path, run_path: Path, labels: tuple[str, str],
          resamples: int, seed: int, confidence: float, unit: str = "cluster") -> list[dict]:
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
                                    confidence, unit, bool(meta["higher_is_better"])))
            if row["ci_method"] == "" and results.is_number(ra["stderr"]) and results.is_number(rb["stderr"]):
                lo, hi = stats.normal_diff_ci(va, float(ra["stderr"]), vb, float(rb["stderr"]), confidence)
                se = math.sqrt(float(ra["stderr"]) ** 2 + float(rb["stderr"]) ** 2)
                row.update(ci_low=lo, ci_high=hi, ci_method="stderr", confidence=confidence, se=se,
                           mde=stats.mde(se=se, alpha=1 - confidence, power=POWER))
        rows.append(row)
    return rows


def adjust(rows: list[dict], correction: str = "holm", confidence: float = 0.95) -> list[dict]:
    """Fill p_adjusted / significant / correction of one run pair's task rows that have a p (the family: its task x
    metric grid), by stats.adjust_p; significant = adjusted p <= 1 - confidence."""
    family = [r for r in rows if r.get("level") == "task" and results.is_number(r.get("p"))]
    for r, q in zip(family, stats.adjust_p([r["p"] for r in family], correction)):
        r.update(p_adjusted=q, significant=bool(q <= 1 - confidence), correction=correction)
    return rows


def compare(paths, resamples: int = 2000, seed: int = 0, force: bool = False,
            confidence: float = 0.95, unit: str = "cluster", correction: str = "holm") -> pd.DataFrame:
    """One row per (run, level, task, metric) for every run after the first, compared with the first.

    `unit`: "cluster" (resample source documents where the samples have keys, else items) or "item";
    `correction`: "holm", "bh" or "none", over each run pair's task x metric p-values."""
    paths = [eval_results(p, "run" if i else "reference") for i, p in enumerate(paths)]
    if len(paths) < 2:
        raise UserError("compare: need at least two runs (the first is the reference)")
    if resamples < 1:
        raise UserError(f"--resamples: must be >= 1, got {resamples}")
    if unit not in UNITS:
        raise UserError(f"--unit: unknown unit {unit!r}; use {' or '.join(UNITS)}")
    if correction not in stats.CORRECTIONS:
        raise UserError(f"--correction: unknown correction {correction!r}; use {', '.join(stats.CORRECTIONS)}")
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
            check_same_backend(paths[0], path)
        pair_rows = _pair(frames[0], frame, paths[0], path, (labels[0], label), resamples, seed, confidence, unit)
        rows += add_floors(adjust(pair_rows, correction, confidence), [path, paths[0]])
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["n_shared"] = out["n_shared"].fillna(0).astype(int)
    for col in ("ci_method", "interval", "unit", "unit_note", "correction", "won_ids", "lost_ids"):
        out[col] = [v if isinstance(v, str) else "" for v in out[col]]
    for col in ("wins", "ties", "losses", "n_clusters"):
        out[col] = out[col].astype("Int64")
    out["significant"] = out["significant"].astype("boolean")
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


def cli_compare(args) -> int:
    df = compare(args.runs, resamples=args.resamples, seed=args.seed, force=args.force,
                 unit=getattr(args, "unit", "cluster"), correction=getattr(args, "correction", "holm"))
    print(format_comparison(df, args.format), end="")
    if args.output:
        out = Path(args.output)
        fmt = FORMATS.get(out.suffix.lower())
        if fmt is None:
            raise UserError(f"--output: {out}: unknown suffix {out.suffix!r}; use {', '.join(FORMATS)}")
        atomic_write_text(out, format_comparison(df, fmt))
    return 0
