"""What a figure shows, apart from how it is drawn: each run's label and floors, each value's interval, and the table
written beside every figure. soaes_bench/reporting/plots.py draws from these; its docstring says why the error bars
and floors are what they are.
"""

from __future__ import annotations

import math
from pathlib import Path, PurePath
from typing import NamedTuple

import numpy as np
import pandas as pd

from soaes_bench import results, stats
from soaes_bench.defaults import BOOTSTRAP_SEED, CONFIDENCE
from soaes_bench.errors import UserError
from soaes_bench.io import atomic_write_text, read_json
from soaes_bench.reporting.compare import _labels, cluster_keys, metric_items

RESAMPLES = 1000  # error bars are for reading, not for decisions: half of compare's 2000 draws; seed BOOTSTRAP_SEED

# The range each metric's values live in. A figure's interval must stay inside it (tests/test_plots.py checks every
# drawn row): accuracies and shares in [0, 1], ROUGE and BLEU in [0, 100], bits per byte, perplexities and speeds >= 0.
UNIT = {"acc", "acc_norm", "exact_match", "cloze_acc", "cloze_acc_norm", "circular_acc", "rotation_acc", "distinct",
        "looping", "alpha", "alpha_token", "acceptance", "conditional_acceptance"}
PERCENT = {"rouge1", "rouge2", "rougeL", "bleu4", "bleu"}
NON_NEGATIVE = {"bits_per_byte", "byte_perplexity", "word_perplexity", "length_ratio", "speedup", "predicted_speedup",
                "tau", "expected_tau"}

TABLE_COLUMNS = ["label", "task", "metric", "value", "lo", "hi", "n", "method", "floor", "floor_name"]
_LEVEL = f"{CONFIDENCE:.0%}"
WHAT = {"mean": "the mean", "ratio": "the corpus ratio Σ bits / Σ bytes", "bleu": "corpus BLEU"}  # what each
# compare.metric_items kind recomputes on every resample
METHODS = {  # intervals without samples (value_interval) -> the words in the table and the caption
    "gate": f"the gate's {_LEVEL} CI",
    "stderr": f"{_LEVEL} normal interval, value ± z·stderr",
    "logit": f"{_LEVEL} normal interval on the logit scale (bounded metric), from the stderr",
    "none": "no interval",
}


def metric_bounds(metric: str) -> tuple[float, float]:
    """(low, high) of the values `metric` can take; (-inf, inf) when unknown."""
    if metric in UNIT:
        return 0.0, 1.0
    if metric in PERCENT:
        return 0.0, 100.0
    if metric in NON_NEGATIVE:
        return 0.0, math.inf
    return -math.inf, math.inf


# labels --------------------------------------------------------------------------------------------------------------
PHASES = ["base", "cpt", "sft_stage1", "stage1", "sft1", "sft_stage2", "stage2", "sft2", "sft", "progressive",
          "final", "distill"]


def phase_rank(label: str) -> int | None:
    low = label.lower()
    for name in sorted(PHASES, key=len, reverse=True):  # longest first: "sft_stage1" before "sft"
        if name in low:
            return PHASES.index(name)
    return None


def _display_name(model, source) -> str:
    """What a figure calls a run: its model name when that is a name ("base", "target"); a model stored as a path
    (runs/reference/cpt/model) by the folder that names it (cpt; sft/single_stage -> "sft single-stage"); without a
    model name, the run's folder (<phase>/eval/results.json -> <phase>)."""
    m = model if isinstance(model, str) else ""
    if m and "/" not in m and "\\" not in m:
        return m
    parts = list(PurePath(m).parts) if m else []
    if parts and parts[-1] == "model":
        parts = parts[:-1]
    if not parts:
        folder = Path(str(source)).parent
        if folder.name in ("eval", results.PLAIN_DIR):
            folder = folder.parent
        parts = list(folder.parts)
    if not parts:
        return m or str(source)
    last = parts[-1]
    if len(parts) > 1 and phase_rank(last) is None and phase_rank(parts[-2]) is not None:
        return f"{parts[-2]} {last.replace('_', '-')}"
    return last


def _add_floors(df: pd.DataFrame) -> pd.DataFrame:
    """`floor`, `floor_name` of eval task rows: the task's best content-free floor from its results.json `floors`
    block (evaluation/task_floors.py), NaN where there is none."""
    blocks: dict[str, dict] = {}
    floor, name = [], []
    for r in df.itertuples():
        f = None
        if r.kind == "eval" and r.level == "task":
            if r.source not in blocks:
                try:
                    tasks = read_json(r.source).get("tasks") or {}
                except (OSError, ValueError, AttributeError, UserError):
                    tasks = {}
                blocks[r.source] = {t: v.get("floors") or {} for t, v in tasks.items() if isinstance(v, dict)}
            f = (blocks[r.source].get(r.task) or {}).get(r.metric)
        ok = isinstance(f, dict) and results.is_number(f.get("value"))
        floor.append(float(f["value"]) if ok else math.nan)
        name.append(str(f.get("name")) if ok and f.get("name") is not None else None)
    return df.assign(floor=floor, floor_name=name)


def _fold_plain(df: pd.DataFrame) -> pd.DataFrame:
    """A pipeline's <phase>/eval_plain/ scores the same model as <phase>/eval/ without the chat template: draw them
    as that model's `<task>@plain` (the name its gates use), not as another model. `origin` and `origin_task` keep
    the file and task the row came from (its samples)."""
    src = df.source.astype(str)
    plain = src.str.contains(f"/{results.PLAIN_DIR}/", regex=False)
    if plain.any():
        df.loc[plain, "task"] = df.loc[plain, "task"] + results.PLAIN
        df.loc[plain, "source"] = src[plain].str.replace(f"/{results.PLAIN_DIR}/", "/eval/", regex=False)
    return df


def with_labels(df: pd.DataFrame, names: dict[str, str] | None = None) -> pd.DataFrame:
    """Add `label` (one per source file: model or phase name, phase for gates, draft for profiles; `names` maps
    source files to labels given by the user), `order`, the rows' origin and their floors."""
    df = df.copy()
    df["origin"], df["origin_task"] = df.source, df.task
    df = _fold_plain(_add_floors(df))
    sources = list(dict.fromkeys(df.source))
    frames = [df[df.source == s] for s in sources]
    shown = [f.assign(model=_display_name(f.model.dropna().iloc[0] if f.model.notna().any() else None, s))
             for f, s in zip(frames, sources)]
    # made unique among the files that keep them (a gate is named by its phase below, so "cpt" of cpt/eval and
    # of cpt/gate.json are no clash)
    own = [i for i, f in enumerate(frames) if not (f.kind == "gate").all()]
    labels = {s: str(f.model.iloc[0]) for s, f in zip(sources, shown)}
    labels.update(zip([sources[i] for i in own], _labels([shown[i] for i in own], [Path(sources[i]) for i in own])))
    for s, f in zip(sources, frames):
        given = [names[o] for o in dict.fromkeys(f.origin) if names and o in names]
        if given:
            labels[s] = given[0]
    df["label"] = [labels[s] for s in df.source]
    gate = df.kind == "gate"
    df.loc[gate, "label"] = df.loc[gate, "phase"]
    prof = (df.kind == "profile") & df.draft.notna()
    drafts = df[prof].drop_duplicates("source")
    if drafts.draft.is_unique and not names:  # otherwise keep the per-file labels
        df.loc[prof, "label"] = df.loc[prof, "draft"]
    order = list(dict.fromkeys(df.label))
    ranks = {lab: phase_rank(lab) for lab in order}
    if len(order) > 1 and all(r is not None for r in ranks.values()):
        order = sorted(order, key=lambda lab: (ranks[lab], order.index(lab)))
    df["order"] = [order.index(lab) for lab in df.label]
    return df


def _snap(value: float, lo: float, hi: float) -> tuple[float, float]:
    """A bootstrap of identical items sums them in another order than the point estimate: its percentiles can miss
    the value by a rounding error (1e-16). Only that is put back on the value; a real miss stays visible."""
    eps = 1e-9 * max(1.0, abs(value))
    if value < lo <= value + eps:
        lo = value
    if value - eps <= hi < value:
        hi = value
    return lo, hi


class Bar(NamedTuple):
    """The interval drawn for one value: `method` in words with its counts (the table), `caption` without them (the
    figure's caption lists each kind once), `kind` the compare.metric_items kind or a METHODS key."""

    lo: float
    hi: float
    n: int | None
    method: str
    caption: str
    kind: str


def _bootstrap_words(kind: str, iv) -> tuple[str, str]:
    """(method with counts, method for the caption) of a stats.Interval of a metric_items `kind`."""
    clustered = iv.n_clusters is not None and iv.n_clusters < iv.n
    units = iv.n_clusters if clustered else iv.n
    unit = "source documents (clusters of items)" if clustered else "documents" if kind == "ratio" else "items"
    if iv.method == "none":
        return stats.describe_method("none", units, clustered), "no interval where there are too few clusters"
    if iv.method == "clopper-pearson":
        text = f"{_LEVEL} Clopper-Pearson exact interval of the proportion"
        return f"{text} ({iv.n} items)", text
    what = f"{_LEVEL} {stats.describe_method(iv.method)}, of {WHAT[kind]}"
    return f"{what} ({RESAMPLES} resamples of {units} {unit})", f"{what} ({RESAMPLES} resamples of {unit})"


def value_interval(row, samples: pd.DataFrame | None = None) -> Bar:
    """The 95% interval of one tidy row's value, never clipped; n is the number of items it rests on.

    With per-item samples (eval task rows; `samples` or read from the row's file): the bootstrap of the metric's own
    statistic (`compare.metric_items`: a mean of items, the corpus ratio of documents for bits per byte, corpus BLEU
    for BLEU-4) by `stats.statistic_ci`, which resamples the items' source documents when the samples carry cluster
    keys and picks the interval (percentile, BCa, Clopper-Pearson for few 0/1 items, none for too few clusters).
    Every one reads quantiles of the statistic's own draws (or beta quantiles), so a bounded statistic keeps its
    bounds. Else a gate's CI (ci_lo, ci_hi), else the stderr: value ± z·se, on the logit scale for a metric bounded
    on both sides (the delta method: se / (p(1 - p)) there), so it stays inside the bounds.
    """
    value = row.get("value")
    n = int(row["n"]) if results.is_number(row.get("n")) else None
    if not results.is_number(value):
        return Bar(math.nan, math.nan, n, METHODS["none"], METHODS["none"], "none")
    if samples is None and row.get("kind") == "eval" and row.get("level") == "task" \
            and isinstance(row.get("samples"), str):
        samples = results.load_samples(row.get("origin", row["source"]), row.get("origin_task", row["task"]))
    found = metric_items(samples, row["metric"]) if samples is not None and len(samples) else None
    if found is not None:
        x, statistic, kind = found
        proportion = kind == "mean" and bool(np.all((x == 0) | (x == 1)))
        try:
            iv = stats.statistic_ci(x, statistic, cluster_keys(samples), CONFIDENCE, RESAMPLES, BOOTSTRAP_SEED,
                                    proportion=proportion)
        except ValueError:
            iv = None
        if iv is not None:
            lo, hi = _snap(value, iv.lo, iv.hi) if math.isfinite(iv.lo) and math.isfinite(iv.hi) else (iv.lo, iv.hi)
            return Bar(lo, hi, iv.n, *_bootstrap_words(kind, iv), kind)
    if results.is_number(row.get("ci_lo")) and results.is_number(row.get("ci_hi")):
        return Bar(float(row["ci_lo"]), float(row["ci_hi"]), n, METHODS["gate"], METHODS["gate"], "gate")
    se = row.get("stderr")
    if results.is_number(se) and se >= 0:
        z = stats.normal_z(CONFIDENCE)
        a, b = metric_bounds(row["metric"])
        if not (math.isfinite(a) and math.isfinite(b)):
            return Bar(value - z * se, value + z * se, n, METHODS["stderr"], METHODS["stderr"], "stderr")
        if se == 0:
            return Bar(value, value, n, METHODS["stderr"], METHODS["stderr"], "stderr")
        if a < value < b:  # at a bound with a spread, no normal interval respects the bound: none is drawn
            p = (value - a) / (b - a)
            centre, half = math.log(p / (1 - p)), z * se / (b - a) / (p * (1 - p))
            lo, hi = (a + (b - a) / (1 + math.exp(-(centre + s * half))) for s in (-1, 1))
            return Bar(lo, hi, n, METHODS["logit"], METHODS["logit"], "logit")
    return Bar(math.nan, math.nan, n, METHODS["none"], METHODS["none"], "none")


def interval(row) -> tuple[float, float]:
    """(down, up) distances from the value to the ends of its interval (value_interval); (0, 0) when none."""
    bar = value_interval(row)
    if not (math.isfinite(bar.lo) and math.isfinite(bar.hi)):
        return 0.0, 0.0
    return row["value"] - bar.lo, bar.hi - row["value"]


def measure(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` with lo, hi, n, method and caption: every interval a figure draws, each samples file read once."""
    cache: dict = {}
    out = []
    for _, r in rows.iterrows():
        s = None
        if r.get("kind") == "eval" and r.get("level") == "task" and isinstance(r.get("samples"), str):
            key = (r["origin"], r["origin_task"])
            if key not in cache:
                cache[key] = results.load_samples(*key)
            s = cache[key]
        out.append(value_interval(r, s))
    rows = rows.copy()
    rows["lo"] = [o.lo for o in out]
    rows["hi"] = [o.hi for o in out]
    rows["n"] = pd.array([o.n for o in out], dtype="Int64")
    rows["method"] = [o.method for o in out]
    rows["caption"] = [o.caption for o in out]
    return rows


def figure_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows a figure draws as its table (TABLE_COLUMNS, method in words), in drawing order."""
    t = rows[rows.value.notna()].copy()
    for col in TABLE_COLUMNS:
        if col not in t:
            t[col] = None
    extra = [c for c in ("x",) if c in rows]
    return t[TABLE_COLUMNS + extra].reset_index(drop=True)


def write_table(table: pd.DataFrame, stem: str | Path) -> Path:
    """`<stem>.csv`, atomically; floats with 10 significant digits so the file does not churn."""
    text = table.to_csv(index=False, float_format="%.10g", lineterminator="\n")
    return atomic_write_text(Path(stem).with_suffix(".csv"), text)
