"""`soaes-bench plot`: the paper's figures from results, gate and profile files (PNG + SVG + PDF, 300 dpi), each with
the table it draws beside it (`<figure>.csv`: label, task, metric, value, lo, hi, n, method, floor, floor_name).

    soaes-bench plot reports/base reports/reference/cpt/eval reports/baseline --kind phases --output reports/figures
    soaes-bench plot runs/a runs/b --labels "model A,model B"        # names for the inputs, in order
    soaes-bench plot reports/profile/profile.json            # --kind auto picks "profile"

Kinds: phases (one x position per phase, a line per task and metric, general vs domain panels), sft-ablation
(single-stage vs progressive SFT: ROUGE-1/2/L and BLEU-4), distillation (acceptance of undistilled vs distilled
draft, by position when measured), profile (speedup vs gamma measured and predicted, acceptance by position, speedup
vs context), models (grouped bars per task). Every function takes the tidy frame of `soaes_bench.results.load` and
an output stem, and returns the files written.

What a figure shows and why:
- **Error bars** are 95% intervals of the value drawn. With per-item samples: a bootstrap of the metric's own
  statistic (`compare.metric_items`, the choice compare, check and the gates use): the mean of items, the corpus
  ratio Σ bits / Σ bytes over resampled documents for bits per byte (not the mean of per-document values, which is
  another number than the one drawn), corpus BLEU of resampled items; `stats.statistic_ci` resamples the items'
  source documents when the samples carry cluster keys and picks the interval (percentile; BCa, level expanded for
  few clusters; Clopper-Pearson for few 0/1 items). Each reads quantiles of the bounded statistic itself, so an
  interval stays inside the metric's bounds (a mean of [0, 1] values is in [0, 1]) and nothing is clipped;
  tests/test_plots.py checks lo <= value <= hi and the bounds for every row of every figure. Without samples: a
  gate's own CI, else value +- 1.96 stderr, on the logit scale for bounded metrics (so it stays inside them). The
  caption names the methods used; legends or tick labels give n.
- **Floors**: each task's best content-free floor (results.json `tasks.<task>.floors`) is a thin dashed line in its
  series' colour, with the series' hollow marker at its right end (bars: a dashed black segment over the group).
- **Gaps**: a phase without a value for a task is a gap in that task's line, not a line drawn through it.
- **Names**: the results' model name when it is a name; a model stored as a path (runs/reference/cpt/model) is named
  by its phase folder (cpt); gates by their phase; profiles by their draft; `labels=` / `--labels` override.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from soaes_bench import results, stats
from soaes_bench.errors import UserError
from soaes_bench.io import read_json
from soaes_bench.reporting import style
from soaes_bench.reporting.figure_data import (METHODS, TABLE_COLUMNS, figure_table, measure, phase_rank,
                                               with_labels, write_table)

KINDS = ("auto", "phases", "sft-ablation", "distillation", "profile", "models")
METRIC_ORDER = ["acc", "acc_norm", "cloze_acc", "circular_acc", "bits_per_byte", "rouge1", "rouge2", "rougeL", "bleu4"]
GEN_METRICS = ["rouge1", "rouge2", "rougeL", "bleu4"]
# redundant in a figure (acc_norm with acc, perplexities with bits per byte, ROUGE-2/L with ROUGE-1 and BLEU-4), or
# about the answers' form, not their content (health metrics: tables show them)
SKIP = {"acc_norm", "cloze_acc_norm", "rotation_acc", "byte_perplexity", "word_perplexity", "rouge2", "rougeL",
        "distinct", "looping", "length_ratio"}
NAMES = {"acc": "accuracy", "cloze_acc": "cloze accuracy", "circular_acc": "circular accuracy",
         "bits_per_byte": "bits per byte ↓", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L",
         "bleu4": "BLEU-4", "alpha": "acceptance rate α"}
FAMILIES = [("accuracy", {"acc", "acc_norm", "exact_match", "cloze_acc", "circular_acc"}),
            ("bits per byte ↓", {"bits_per_byte"}), ("ROUGE / BLEU (0-100)", set(GEN_METRICS))]
FLOOR_LINE = (0, (4, 2))  # dashes of the floor lines, thinner than any series' line


# helpers ----------------------------------------------------------------------------------------------------------
def _metrics(df: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(df.metric))
    keep = [m for m in present if m not in SKIP] or present
    return sorted(keep, key=lambda m: (METRIC_ORDER.index(m) if m in METRIC_ORDER else len(METRIC_ORDER), m))


def _groups(df: pd.DataFrame) -> list:
    groups = list(dict.fromkeys(df.group.fillna("")))
    return sorted(groups, key=lambda g: (0 if "general" in g else 1 if "domain" in g else 2, groups.index(g)))


def _short(task: str, group) -> str:
    return task[len(group) + 1:] if isinstance(group, str) and group and task.startswith(group + "_") else task


def _light(color: str, f: float = 0.55) -> tuple:
    from matplotlib.colors import to_rgb

    return tuple(c + (1 - c) * f for c in to_rgb(color))


def _n_text(ns) -> str:
    vals = sorted({int(v) for v in ns if pd.notna(v)})
    if not vals:
        return ""
    return f"n={vals[0]}" if len(vals) == 1 else f"n={vals[0]}–{vals[-1]}"


def _err(rows: pd.DataFrame) -> np.ndarray:
    """(2, k) distances from each value to lo and hi; NaN (no bar drawn) where there is no interval."""
    v = rows.value.to_numpy(float)
    return np.vstack([v - rows.lo.to_numpy(float), rows.hi.to_numpy(float) - v])


# tables and captions -----------------------------------------------------------------------------------------------


def _caption(fig, rows: pd.DataFrame, width: float, floors: bool, extra: str = "") -> None:
    """The figure's caption under it: the interval methods used (n: legend or tick labels), the floor lines."""
    kinds = list(dict.fromkeys(rows.caption if "caption" in rows else rows.method))
    bars = [k for k in kinds if not k.startswith("no interval")]
    text = "Error bars: " + "; ".join(bars) + "." if bars else "No intervals known."
    if len(bars) < len(kinds) and bars:
        text += " A point without a bar has no interval."
    if floors:
        text += " Dashed: each task's best content-free floor (a model that reads nothing)."
    text += (" " + extra) if extra else ""
    fig.supxlabel("\n".join(textwrap.wrap(text, width=int(width * 19))), fontsize=6, x=0.02, ha="left")


def _save(fig, out: str | Path, table: pd.DataFrame) -> list[Path]:
    return style.save(fig, out) + [write_table(table, out)]


def _bars(ax, table: pd.DataFrame, xkey: str, xs: list, series: list, ylabel: str,
          xlabels: list[str] | None = None) -> bool:
    """Grouped bars: one group per x, one hatched bar per series, 95% error bars; each x's floor as a dashed
    segment over its group. True when a floor was drawn."""
    width = 0.8 / max(1, len(series))
    for i, name in enumerate(series):
        st = style.series(i)
        rows = table[table.label == name].drop_duplicates(xkey).set_index(xkey).reindex(xs)
        pos = np.arange(len(xs)) + (i - (len(series) - 1) / 2) * width
        have = rows.value.notna().to_numpy()
        err = _err(rows[have]) if have.any() else None
        ax.bar(pos[have], rows.value.to_numpy()[have], width, yerr=err, color=_light(st["color"]),
               edgecolor="black", linewidth=0.6, hatch=st["hatch"], error_kw={"elinewidth": 0.7})
    drawn = False
    if "floor" in table:
        for j, x in enumerate(xs):
            f = table[table[xkey] == x].floor.dropna()
            if len(f):
                ax.hlines(float(f.iloc[0]), j - 0.45, j + 0.45, colors="black", linestyles=[FLOOR_LINE],
                          linewidth=0.9, zorder=3)
                drawn = True
    _xticks(ax, xlabels or [NAMES.get(x, x) if isinstance(x, str) else str(x) for x in xs])
    ax.set_ylabel(ylabel)
    return drawn


def _bar_legend(fig, series: list[str], floor: bool = False) -> None:
    """One legend under the figure for bar series, drawn from the style (panels may lack a series)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=_light(style.series(i)["color"]), edgecolor="black", linewidth=0.6,
                     hatch=style.series(i)["hatch"], label=name) for i, name in enumerate(series)]
    if floor:
        handles.append(Line2D([], [], color="black", linestyle=FLOOR_LINE, linewidth=0.9, label="best floor"))
    fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 6))


def _integer_x(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


# figures -------------------------------------------------------------------------------------------------------------
def _family(metric: str) -> str:
    for name, members in FAMILIES:
        if metric in members:
            return name
    return NAMES.get(metric, metric)


def _xticks(ax, labels: list[str]) -> None:
    long = max((len(x) for x in labels), default=0) * len(labels) > 28
    ax.set_xticks(range(len(labels)), labels, rotation=30 if long else 0, ha="right" if long else "center")


def plot_phases(df: pd.DataFrame, out: str | Path, names: dict[str, str] | None = None) -> list[Path]:
    """Scores per phase: a row of panels per suite (general, domain), a column per metric family (accuracy,
    bits per byte, ROUGE/BLEU), a line per task and metric with its floor dashed; a phase without the task is a gap."""
    d = with_labels(df, names)
    ev = d[(d.kind == "eval") & (d.level == "task")]
    if ev.empty:  # gate reports only: the values the gates measured
        ev = d[d.kind == "gate"].copy()
        ev["group"] = ["soaes_domain" if "domain" in str(t) else "soaes_general" for t in ev.task]
    ev = ev[ev.metric.isin(_metrics(ev))].assign(family=lambda t: [_family(m) for m in t.metric])
    if ev.empty:
        raise UserError("plot phases: no results or gate rows in the inputs")
    ev = measure(ev)
    phases = list(ev.sort_values("order").label.drop_duplicates())
    groups = _groups(ev)
    families = sorted(dict.fromkeys(ev.family), key=lambda f: [n for n, _ in FAMILIES].index(f)
                      if f in [n for n, _ in FAMILIES] else len(FAMILIES))
    drawn, any_floor = [], False
    width = style.PAGE_WIDTH if len(families) > 1 else style.COLUMN_WIDTH + 0.6
    with style.paper():
        fig, axes = style.figure(width=width, height=3.0 * len(groups) + 0.5, nrows=len(groups), ncols=len(families))
        x = np.arange(len(phases))
        for r, g in enumerate(groups):
            for c, fam in enumerate(families):
                ax = axes[r, c]
                sub = ev[(ev.group.fillna("") == g) & (ev.family == fam)]
                if sub.empty:
                    ax.set_visible(False)
                    continue
                lines = list(dict.fromkeys(zip(sub.task, sub.metric)))
                tasks = [t for t, _ in lines]
                for i, (task, metric) in enumerate(lines):
                    st = style.series(i)
                    rows = sub[(sub.task == task) & (sub.metric == metric)].drop_duplicates("label")
                    drawn.append(rows)
                    rows = rows.set_index("label").reindex(phases)
                    # the task names the line; the metric too where the panel shows several of one task
                    name = _short(task, g) if len(set(tasks)) == len(tasks) else NAMES.get(metric, metric)
                    if len(set(tasks)) > 1 and len(set(tasks)) < len(tasks):
                        name = f"{_short(task, g)} {NAMES.get(metric, metric)}"
                    n = _n_text(rows.n)
                    # NaN values break the line: a phase that did not run the task is a gap
                    ax.errorbar(x, rows.value.to_numpy(float), yerr=_err(rows), label=f"{name} ({n})" if n else name,
                                color=st["color"], marker=st["marker"], linestyle=st["linestyle"])
                    floor = rows.floor.dropna()
                    if len(floor):  # the series' hollow marker at the right end names the line in grayscale
                        ax.plot([x[0] - 0.2, x[-1] + 0.2], [float(floor.iloc[0])] * 2, color=st["color"],
                                linestyle=FLOOR_LINE, linewidth=0.8, marker=st["marker"], markevery=[1],
                                fillstyle="none")
                        any_floor = True
                    thr = rows.threshold.to_numpy(float)
                    if np.isfinite(thr).any():  # gate reports: the threshold each phase had to meet
                        ax.plot(x, thr, color="gray", linestyle=":", marker="_", markersize=10,
                                label=f"{name} threshold")
                _xticks(ax, phases)
                ax.set_xlim(x[0] - 0.35, x[-1] + 0.35)
                ax.set_title(f"{g.replace('soaes_', '') or 'other'} · {fam}")
                names = ax.get_legend_handles_labels()[1]
                ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=6, handlelength=2.5,
                          ncols=2 if max(map(len, names)) <= 14 else 1,
                          columnspacing=1.0)  # below the panel: lines and floors fill it
        table = pd.concat(drawn)
        _caption(fig, table, width, any_floor)
        return _save(fig, out, figure_table(table))


def plot_sft_ablation(df: pd.DataFrame, out: str | Path, names: dict[str, str] | None = None) -> list[Path]:
    """Single-stage vs progressive SFT: ROUGE-1/2/L and BLEU-4 bars with 95% CIs, one panel per generation task."""
    d = with_labels(df, names)
    ev = d[(d.kind == "eval") & (d.level == "task") & d.metric.isin(GEN_METRICS)]
    if ev.empty:
        raise UserError("plot sft-ablation: no ROUGE/BLEU rows in the inputs (need generation tasks)")
    ev = measure(ev)
    runs = list(ev.sort_values("order").label.drop_duplicates())
    runs.sort(key=lambda lab: 0 if "single" in lab.lower() else 1 if "progress" in lab.lower() else 0.5)
    if not names and len(runs) == 2 and "single" in runs[0].lower() and "progress" not in runs[1].lower():
        ev = ev.replace({"label": {runs[1]: f"{runs[1]} (progressive)"}})  # the pipeline's sft phase is progressive
        runs[1] = f"{runs[1]} (progressive)"
    tasks = sorted(dict.fromkeys(ev.task), key=lambda t: 0 if "domain" in t else 1)
    floor = False
    with style.paper():
        fig, axes = style.figure(height=2.8, ncols=len(tasks))
        for ax, task in zip(axes[0], tasks):
            sub = ev[ev.task == task]
            floor |= _bars(ax, sub, "metric", [m for m in GEN_METRICS if m in set(sub.metric)], runs, "score (0-100)")
            ax.set_title(f"{task} ({_n_text(sub.n)})")
        _bar_legend(fig, runs, floor)
        table = ev.sort_values(["task", "order"], kind="stable")
        _caption(fig, table, style.PAGE_WIDTH, floor)
        return _save(fig, out, figure_table(table))


def plot_models(df: pd.DataFrame, out: str | Path, names: dict[str, str] | None = None) -> list[Path]:
    """Grouped bars comparing models per task, one panel per metric, each task's floor dashed over its group."""
    d = with_labels(df, names)
    ev = d[(d.kind == "eval") & (d.level == "task")]
    if ev.empty:
        raise UserError("plot models: no results rows in the inputs")
    models = list(ev.sort_values("order").label.drop_duplicates())
    metrics = _metrics(ev)
    ev = measure(ev[ev.metric.isin(metrics)])
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    floor, drawn = False, []
    with style.paper():
        fig, axes = style.figure(height=2.3 * nrows + 0.7, nrows=nrows, ncols=ncols)
        flat = list(axes.flat)
        for ax, metric in zip(flat, metrics):
            sub = ev[ev.metric == metric].assign(x=lambda t: t.task.str.removeprefix("soaes_"))
            xs = list(dict.fromkeys(sub.x))
            ticks = [f"{x} ({_n_text(sub[sub.x == x].n)})" for x in xs]
            floor |= _bars(ax, sub, "x", xs, models, NAMES.get(metric, metric), ticks)
            drawn.append(sub.drop(columns="x"))
        for ax in flat[len(metrics):]:
            ax.set_visible(False)
        _bar_legend(fig, models, floor)
        table = pd.concat(drawn)
        _caption(fig, table, style.PAGE_WIDTH, floor)
        return _save(fig, out, figure_table(table))


def _profile_table(report: dict, source) -> pd.DataFrame:
    """The numbers the profile panels draw (soaes_bench.reporting.profile_figures), one row per setting and metric;
    x is the setting (γ, context, draft position)."""
    rows = []
    for s in report.get("settings") or []:
        where = f"γ={s.get('gamma')}, context={s.get('context')}"
        level = s.get("ci_level")
        for metric in ("speedup", "predicted_speedup", "tau", "expected_tau", "alpha"):
            v = s.get(metric)
            if not results.is_number(v):
                continue
            ci = s.get(f"{metric}_ci")
            has = isinstance(ci, list) and len(ci) == 2 and all(results.is_number(c) for c in ci)
            method = (METHODS["none"] if not has else "order-statistic CI of the median of repeats"
                      + (f" ({stats.level_label(level)})" if level else " (level not recorded)"))
            rows.append({"label": s.get("category"), "task": "speculative", "metric": metric, "value": float(v),
                         "lo": ci[0] if has else math.nan, "hi": ci[1] if has else math.nan,
                         "n": s.get("n_prompts"), "method": method, "x": where})
        for i, v in enumerate(s.get("acceptance_by_position") or [], 1):
            if results.is_number(v):
                rows.append({"label": s.get("category"), "task": "speculative", "metric": "acceptance", "value": v,
                             "lo": math.nan, "hi": math.nan, "n": s.get("n_prompts"), "method": METHODS["none"],
                             "x": f"{where}, position={i}"})
    t = pd.DataFrame(rows, columns=TABLE_COLUMNS + ["x"])
    t["n"] = t["n"].astype("Int64")
    return t


def plot_profile(df: pd.DataFrame, out: str | Path, names: dict[str, str] | None = None) -> list[Path]:
    """Profiler curves of one target/draft pair (the first profile in the inputs), drawn by the profiler's own
    panels (soaes_bench.reporting.profile_figures): speedup vs gamma measured and predicted, acceptance by position,
    tokens per target forward, speedup vs context."""
    from soaes_bench.reporting import profile_figures

    pr = df[df.kind == "profile"]
    if pr.empty:
        raise UserError("plot profile: no profile rows in the inputs")
    source = pr.source.iloc[0]
    report = read_json(source)
    panels = list(profile_figures.FIGURES.values())
    with style.paper():
        fig, axes = style.figure(height=4.6, nrows=2, ncols=2)
        for ax, draw in zip(axes.flat, panels):
            try:
                draw(report, ax)
            except (KeyError, TypeError, ValueError) as e:
                raise UserError(f"{source}: cannot draw the profile figure ({e.__class__.__name__}: {e})") from None
        for ax in list(axes.flat)[:2]:  # gamma and draft position are integers
            _integer_x(ax)
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
        return _save(fig, out, _profile_table(report, source))


def short_settings(pr: pd.DataFrame) -> pd.DataFrame:
    """Short-prompt settings of each profile: the pooled category "all" where present, else every short category."""
    pr = pr[(pr.level == "profile") & (pr.category != "long") & pr.gamma.notna()]
    parts = []
    for _, sub in pr.groupby("source", sort=False):
        parts.append(sub[sub.category == "all"] if (sub.category == "all").any() else sub)
    return pd.concat(parts) if parts else pr


def plot_distillation(df: pd.DataFrame, out: str | Path, names: dict[str, str] | None = None) -> list[Path]:
    """Acceptance of each draft (undistilled vs distilled): alpha per gamma, and by position at the largest gamma.
    The profiles store no interval of α, so no bars (the caption says so)."""
    d = with_labels(df[df.kind == "profile"], names)
    if d.empty:
        raise UserError("plot distillation: no profile rows in the inputs")
    drafts = sorted(dict.fromkeys(d.sort_values("order").label), key=lambda s: 1 if "distil" in s.lower() and
                    "undistil" not in s.lower() and "no" not in s.lower().split("-") else 0)
    pooled = short_settings(d)
    by_gamma = pooled[(pooled.metric == "alpha")].groupby(["label", "gamma"], as_index=False).value.mean()
    pos = pooled[(pooled.metric == "acceptance") & pooled.position.notna()]
    pos = pos[pos.gamma == pos.groupby("label").gamma.transform("max")]
    width = style.PAGE_WIDTH if len(pos) else style.COLUMN_WIDTH + 0.6
    with style.paper():
        fig, axes = style.figure(width=width, height=2.7, ncols=2 if len(pos) else 1)
        if by_gamma.empty:
            raise UserError("plot distillation: the profiles have no alpha per gamma")
        gammas = sorted(by_gamma.gamma.unique())
        bars = by_gamma.assign(gamma=by_gamma.gamma.astype(int), lo=math.nan, hi=math.nan)
        _bars(axes[0, 0], bars, "gamma", [int(g) for g in gammas], drafts, NAMES["alpha"])
        axes[0, 0].set(xlabel="draft length γ", ylim=(0, 1.02), title="acceptance rate")
        lines = pos.groupby(["label", "position"], as_index=False).value.mean()
        if len(pos):
            ax = axes[0, 1]
            for i, name in enumerate(drafts):
                st = style.series(i)
                sub = lines[lines.label == name]
                ax.plot(sub.position, sub.value, color=st["color"], marker=st["marker"], linestyle=st["linestyle"],
                        label=name)
            ax.set(xlabel="draft position", ylabel="P(position accepted)", ylim=(0, 1.02),
                   title=f"acceptance by position (γ={int(pos.gamma.max())})")
            _integer_x(ax)
            ax.legend(loc="best")
        _bar_legend(fig, drafts)
        table = pd.concat([
            bars.assign(metric="alpha", x=[f"γ={g}" for g in bars.gamma]),
            lines.assign(metric="acceptance", lo=math.nan, hi=math.nan,
                         x=[f"γ={int(pos.gamma.max())}, position={int(p)}" for p in lines.position])])
        table = table.assign(task="speculative", n=pd.array([None] * len(table), dtype="Int64"), method=METHODS["none"],
                             floor=math.nan, floor_name=None)
        _caption(fig, table, width, False, "α is the mean over the pooled short-prompt settings; the profiles store "
                                           "no interval of it.")
        return _save(fig, out, figure_table(table))


FIGURES = {"phases": plot_phases, "sft-ablation": plot_sft_ablation, "distillation": plot_distillation,
           "profile": plot_profile, "models": plot_models}


def auto_kinds(df: pd.DataFrame) -> list[str]:
    """Which figures the inputs call for: one for the eval/gate part, one for the profile part."""
    kinds = []
    ev = df[(df.kind == "eval") & (df.level == "task")]
    if len(ev):
        labels = list(with_labels(ev).drop_duplicates("source").label)
        low = " ".join(labels).lower()
        if len(labels) >= 2 and "single" in low and "progress" in low:
            kinds.append("sft-ablation")
        elif len(labels) >= 2 and all(phase_rank(lab) is not None for lab in labels):
            kinds.append("phases")
        else:
            kinds.append("models")
    elif (df.kind == "gate").any():
        kinds.append("phases")
    pr = df[df.kind == "profile"]
    if len(pr):
        kinds.append("distillation" if pr.source.nunique() >= 2 else "profile")
    return kinds


def _label_map(inputs, labels) -> dict[str, str] | None:
    """{source file: label} for `labels`, one per input (each file an input folder holds gets its input's label)."""
    if labels is None:
        return None
    labels = [s.strip() for s in labels.split(",")] if isinstance(labels, str) else list(labels)
    inputs = list(inputs)
    if len(labels) != len(inputs) or not all(labels):
        raise UserError(f"--labels: need one non-empty label per input ({len(inputs)}), got {len(labels)}")
    return {str(f): lab for inp, lab in zip(inputs, labels) for f in results.find_files([inp])}


def plot(inputs, kind: str = "auto", output: str | Path = "reports/figures", labels=None) -> list[Path]:
    """Draw figures of `kind` (or every kind the inputs call for) into `output`; returns the files written (PNG,
    SVG, PDF and the CSV table of each figure). `labels`: one name per input (list or comma-separated)."""
    if kind not in KINDS:
        raise UserError(f"--kind: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    df = results.load(inputs)
    if df.empty:
        raise UserError(f"{', '.join(map(str, inputs))}: no measurements found")
    names = _label_map(inputs, labels)
    kinds = auto_kinds(df) if kind == "auto" else [kind]
    out = []
    for k in kinds:
        out += FIGURES[k](df, Path(output) / k.replace("-", "_"), names)
    return out


def cli_plot(args) -> int:
    for path in plot(args.inputs, args.kind, args.output, getattr(args, "labels", None)):
        print(path)
    return 0
