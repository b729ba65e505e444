"""`soaes-bench plot`: the paper's figures from results, gate and profile files (PNG + SVG + PDF, 300 dpi).

    soaes-bench plot runs/soaes/*/results.json --kind phases --output reports/figures
    soaes-bench plot reports/profile/profile.json            # --kind auto picks "profile"

Kinds: phases (base -> CPT -> SFT -> final, general vs domain panels), sft-ablation (single-stage vs progressive SFT:
ROUGE-1/2/L and BLEU-4), distillation (acceptance of undistilled vs distilled draft, by position when measured),
profile (speedup vs gamma measured and predicted, acceptance by position, speedup vs context), models (grouped bars
per task). Error bars are 95% intervals: the gate's CI, 1.96 x stderr, or a bootstrap over the samples (BLEU-4).
Every function takes the tidy frame of `soaes_bench.results.load` and an output stem, and returns the files written.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from soaes_bench import results, stats
from soaes_bench.errors import UserError
from soaes_bench.io import read_json
from soaes_bench.metrics.corpus_bleu import bleu_items
from soaes_bench.reporting import style
from soaes_bench.reporting.compare import _labels

KINDS = ("auto", "phases", "sft-ablation", "distillation", "profile", "models")
METRIC_ORDER = ["acc", "acc_norm", "cloze_acc", "circular_acc", "bits_per_byte", "rouge1", "rouge2", "rougeL", "bleu4"]
GEN_METRICS = ["rouge1", "rouge2", "rougeL", "bleu4"]
# redundant in a figure (acc_norm with acc, perplexities with bits per byte, ROUGE-2/L with ROUGE-1 and BLEU-4), or
# about the answers' form, not their content (health metrics: tables show them)
SKIP = {"acc_norm", "cloze_acc_norm", "rotation_acc", "byte_perplexity", "word_perplexity", "rouge2", "rougeL",
        "distinct", "looping", "length_ratio"}
PHASES = ["base", "cpt", "sft_stage1", "stage1", "sft1", "sft_stage2", "stage2", "sft2", "sft", "progressive",
          "final", "distill"]
NAMES = {"acc": "accuracy", "cloze_acc": "cloze accuracy", "circular_acc": "circular accuracy", "bits_per_byte": "bits per byte (lower is better)", "rouge1": "ROUGE-1",
         "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "bleu4": "BLEU-4", "alpha": "acceptance rate α"}
FAMILIES = [("accuracy", {"acc", "acc_norm", "exact_match", "cloze_acc", "circular_acc"}), ("bits per byte (lower is better)", {"bits_per_byte"}),
            ("ROUGE / BLEU (0-100)", set(GEN_METRICS))]
RESAMPLES = 1000


# helpers ----------------------------------------------------------------------------------------------------------
def _phase_rank(label: str) -> int | None:
    low = label.lower()
    for name in sorted(PHASES, key=len, reverse=True):  # longest first: "sft_stage1" before "sft"
        if name in low:
            return PHASES.index(name)
    return None


def _fold_plain(df: pd.DataFrame) -> pd.DataFrame:
    """A pipeline's <phase>/eval_plain/ scores the same model as <phase>/eval/ without the chat template: draw them
    as that model's `<task>@plain` (the name its gates use), not as another model."""
    from soaes_bench.results import PLAIN, PLAIN_DIR

    src = df.source.astype(str)
    plain = src.str.contains(f"/{PLAIN_DIR}/", regex=False)
    if plain.any():
        df.loc[plain, "task"] = df.loc[plain, "task"] + PLAIN
        df.loc[plain, "source"] = src[plain].str.replace(f"/{PLAIN_DIR}/", "/eval/", regex=False)
    return df


def _with_labels(df: pd.DataFrame) -> pd.DataFrame:
    """Add `label` (one per source file: model name, phase for gates, draft for profiles) and `order`."""
    df = _fold_plain(df.copy())
    sources = list(dict.fromkeys(df.source))
    frames = [df[df.source == s] for s in sources]
    names = dict(zip(sources, _labels(frames, [Path(s) for s in sources])))
    df["label"] = [names[s] for s in df.source]
    gate = df.kind == "gate"
    df.loc[gate, "label"] = df.loc[gate, "phase"]
    prof = (df.kind == "profile") & df.draft.notna()
    drafts = df[prof].drop_duplicates("source")
    if drafts.draft.is_unique:  # otherwise keep the per-file labels
        df.loc[prof, "label"] = df.loc[prof, "draft"]
    order = list(dict.fromkeys(df.label))
    ranks = {lab: _phase_rank(lab) for lab in order}
    if len(order) > 1 and all(r is not None for r in ranks.values()):
        order = sorted(order, key=lambda lab: (ranks[lab], order.index(lab)))
    df["order"] = [order.index(lab) for lab in df.label]
    return df


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


def interval(row) -> tuple[float, float]:
    """(down, up) half-widths of a 95% interval for one tidy row; (0, 0) when nothing is known."""
    if results.is_number(row.get("ci_lo")) and results.is_number(row.get("ci_hi")):
        return max(0.0, row["value"] - row["ci_lo"]), max(0.0, row["ci_hi"] - row["value"])
    if results.is_number(row.get("stderr")):
        half = stats.normal_z() * row["stderr"]
        return half, half
    if row.get("kind") == "eval" and row.get("level") == "task" and isinstance(row.get("samples"), str):
        s = results.load_samples(row["source"], row["task"])
        try:
            if row["metric"] in results.CORPUS_METRICS and "bleu_pair" in s and s.bleu_pair.notna().all() and len(s):
                x, f = bleu_items(list(s.bleu_pair))
                _, lo, hi = stats.bootstrap_ci(x, f, RESAMPLES, 0)
            elif row["metric"] in s and len(s) and all(results.is_number(v) for v in s[row["metric"]]):
                _, lo, hi = stats.bootstrap_ci(s[row["metric"]].to_numpy(float), resamples=RESAMPLES)
            else:
                return 0.0, 0.0
        except ValueError:
            return 0.0, 0.0
        return max(0.0, row["value"] - lo), max(0.0, hi - row["value"])
    return 0.0, 0.0


def _errors(rows: pd.DataFrame) -> np.ndarray:
    return np.array([interval(r) for _, r in rows.iterrows()]).T.reshape(2, -1)


def _bars(ax, table: pd.DataFrame, xkey: str, xs: list, series: list, ylabel: str) -> None:
    """Grouped bars: one group per x, one hatched bar per series, 95% error bars."""
    width = 0.8 / max(1, len(series))
    for i, name in enumerate(series):
        st = style.series(i)
        rows = table[table.label == name].set_index(xkey).reindex(xs)
        pos = np.arange(len(xs)) + (i - (len(series) - 1) / 2) * width
        have = rows.value.notna().to_numpy()
        err = _errors(rows.reset_index()[have]) if have.any() else None
        ax.bar(pos[have], rows.value.to_numpy()[have], width, yerr=err if err is not None and err.any() else None,
               color=_light(st["color"]), edgecolor="black", linewidth=0.6, hatch=st["hatch"],
               error_kw={"elinewidth": 0.7})
    _xticks(ax, [NAMES.get(x, x) if isinstance(x, str) else str(x) for x in xs])
    ax.set_ylabel(ylabel)


def _bar_legend(fig, series: list[str]) -> None:
    """One legend under the figure for bar series, drawn from the style (panels may lack a series)."""
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=_light(style.series(i)["color"]), edgecolor="black", linewidth=0.6,
                     hatch=style.series(i)["hatch"], label=name) for i, name in enumerate(series)]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(series), 5))


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


def plot_phases(df: pd.DataFrame, out: str | Path) -> list[Path]:
    """Scores per phase: a row of panels per suite (general, domain), a column per metric family (accuracy,
    bits per byte, ROUGE/BLEU), a line per task and metric."""
    d = _with_labels(df)
    ev = d[(d.kind == "eval") & (d.level == "task")]
    if ev.empty:  # gate reports only: the values the gates measured
        ev = d[d.kind == "gate"].copy()
        ev["group"] = ["soaes_domain" if "domain" in str(t) else "soaes_general" for t in ev.task]
    ev = ev[ev.metric.isin(_metrics(ev))].assign(family=lambda t: [_family(m) for m in t.metric])
    if ev.empty:
        raise UserError("plot phases: no results or gate rows in the inputs")
    phases = list(ev.sort_values("order").label.drop_duplicates())
    groups = _groups(ev)
    families = sorted(dict.fromkeys(ev.family), key=lambda f: [n for n, _ in FAMILIES].index(f)
                      if f in [n for n, _ in FAMILIES] else len(FAMILIES))
    with style.paper():
        fig, axes = style.figure(width=style.PAGE_WIDTH if len(families) > 1 else style.COLUMN_WIDTH + 0.6,
                                 height=2.1 * len(groups) + 0.2, nrows=len(groups), ncols=len(families))
        for r, g in enumerate(groups):
            for c, fam in enumerate(families):
                ax = axes[r, c]
                sub = ev[(ev.group.fillna("") == g) & (ev.family == fam)]
                if sub.empty:
                    ax.set_visible(False)
                    continue
                lines = list(dict.fromkeys(zip(sub.task, sub.metric)))
                for i, (task, metric) in enumerate(lines):
                    st = style.series(i)
                    rows = sub[(sub.task == task) & (sub.metric == metric)].drop_duplicates("label")
                    rows = rows.set_index("label").reindex(phases)
                    have = rows.value.notna().to_numpy()
                    name = _short(task, g) if len({m for _, m in lines}) == 1 else NAMES.get(metric, metric)
                    if len({t for t, _ in lines}) > 1 and len({m for _, m in lines}) > 1:
                        name = f"{_short(task, g)} {NAMES.get(metric, metric)}"
                    ax.errorbar(np.arange(len(phases))[have], rows.value.to_numpy()[have],
                                yerr=_errors(rows.reset_index()[have]), label=name, color=st["color"],
                                marker=st["marker"], linestyle=st["linestyle"])
                    thr = rows.threshold.to_numpy(float)
                    if np.isfinite(thr).any():  # gate reports: the threshold each phase had to meet
                        ax.plot(np.arange(len(phases)), thr, color="gray", linestyle=":", marker="_",
                                markersize=10, label=f"{name} threshold")
                _xticks(ax, phases)
                ax.set_title(f"{g.replace('soaes_', '') or 'other'} · {fam}")
                if len(ax.get_legend_handles_labels()[1]) > 1:
                    ax.legend(loc="best")
        return style.save(fig, out)


def plot_sft_ablation(df: pd.DataFrame, out: str | Path) -> list[Path]:
    """Single-stage vs progressive SFT: ROUGE-1/2/L and BLEU-4 bars with 95% CIs, one panel per generation task."""
    d = _with_labels(df)
    ev = d[(d.kind == "eval") & (d.level == "task") & d.metric.isin(GEN_METRICS)]
    if ev.empty:
        raise UserError("plot sft-ablation: no ROUGE/BLEU rows in the inputs (need generation tasks)")
    runs = list(ev.sort_values("order").label.drop_duplicates())
    runs.sort(key=lambda lab: 0 if "single" in lab.lower() else 1 if "progress" in lab.lower() else 0.5)
    tasks = sorted(dict.fromkeys(ev.task), key=lambda t: 0 if "domain" in t else 1)
    with style.paper():
        fig, axes = style.figure(height=2.4, ncols=len(tasks))
        for ax, task in zip(axes[0], tasks):
            sub = ev[ev.task == task]
            _bars(ax, sub, "metric", [m for m in GEN_METRICS if m in set(sub.metric)], runs, "score (0-100)")
            ax.set_title(task)
        _bar_legend(fig, runs)
        return style.save(fig, out)


def plot_models(df: pd.DataFrame, out: str | Path) -> list[Path]:
    """Grouped bars comparing models per task, one panel per metric."""
    d = _with_labels(df)
    ev = d[(d.kind == "eval") & (d.level == "task")]
    if ev.empty:
        raise UserError("plot models: no results rows in the inputs")
    models = list(ev.sort_values("order").label.drop_duplicates())
    metrics = _metrics(ev)
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    with style.paper():
        fig, axes = style.figure(height=2.2 * nrows + 0.3, nrows=nrows, ncols=ncols)
        flat = list(axes.flat)
        for ax, metric in zip(flat, metrics):
            sub = ev[ev.metric == metric].assign(x=lambda t: t.task.str.removeprefix("soaes_"))
            _bars(ax, sub, "x", list(dict.fromkeys(sub.x)), models, NAMES.get(metric, metric))
        for ax in flat[len(metrics):]:
            ax.set_visible(False)
        _bar_legend(fig, models)
        return style.save(fig, out)


def plot_profile(df: pd.DataFrame, out: str | Path) -> list[Path]:
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
        return style.save(fig, out)


def _pooled(pr: pd.DataFrame) -> pd.DataFrame:
    """Short-prompt settings of each profile: the pooled category "all" where present, else every short category."""
    pr = pr[(pr.level == "profile") & (pr.category != "long") & pr.gamma.notna()]
    parts = []
    for _, sub in pr.groupby("source", sort=False):
        parts.append(sub[sub.category == "all"] if (sub.category == "all").any() else sub)
    return pd.concat(parts) if parts else pr


def plot_distillation(df: pd.DataFrame, out: str | Path) -> list[Path]:
    """Acceptance of each draft (undistilled vs distilled): alpha per gamma, and by position at the largest gamma."""
    d = _with_labels(df[df.kind == "profile"])
    if d.empty:
        raise UserError("plot distillation: no profile rows in the inputs")
    drafts = sorted(dict.fromkeys(d.sort_values("order").label), key=lambda s: 1 if "distil" in s.lower() and
                    "undistil" not in s.lower() and "no" not in s.lower().split("-") else 0)
    pooled = _pooled(d)
    by_gamma = pooled[(pooled.metric == "alpha")].groupby(["label", "gamma"], as_index=False).value.mean()
    pos = pooled[(pooled.metric == "acceptance") & pooled.position.notna()]
    pos = pos[pos.gamma == pos.groupby("label").gamma.transform("max")]
    with style.paper():
        fig, axes = style.figure(width=style.PAGE_WIDTH if len(pos) else style.COLUMN_WIDTH + 0.6, height=2.4,
                                 ncols=2 if len(pos) else 1)
        if by_gamma.empty:
            raise UserError("plot distillation: the profiles have no alpha per gamma")
        gammas = sorted(by_gamma.gamma.unique())
        _bars(axes[0, 0], by_gamma.assign(gamma=by_gamma.gamma.astype(int)), "gamma", [int(g) for g in gammas],
              drafts, NAMES["alpha"])
        axes[0, 0].set(xlabel="draft length γ", ylim=(0, 1.02), title="acceptance rate")
        if len(pos):
            ax = axes[0, 1]
            for i, name in enumerate(drafts):
                st = style.series(i)
                sub = pos[(pos.label == name)].groupby("position", as_index=False).value.mean()
                ax.plot(sub.position, sub.value, color=st["color"], marker=st["marker"], linestyle=st["linestyle"],
                        label=name)
            ax.set(xlabel="draft position", ylabel="P(position accepted)", ylim=(0, 1.02),
                   title=f"acceptance by position (γ={int(pos.gamma.max())})")
            _integer_x(ax)
            ax.legend(loc="best")
        _bar_legend(fig, drafts)
        return style.save(fig, out)


FIGURES = {"phases": plot_phases, "sft-ablation": plot_sft_ablation, "distillation": plot_distillation,
           "profile": plot_profile, "models": plot_models}


def auto_kinds(df: pd.DataFrame) -> list[str]:
    """Which figures the inputs call for: one for the eval/gate part, one for the profile part."""
    kinds = []
    ev = df[(df.kind == "eval") & (df.level == "task")]
    if len(ev):
        labels = list(_with_labels(ev).drop_duplicates("source").label)
        low = " ".join(labels).lower()
        if len(labels) >= 2 and "single" in low and "progress" in low:
            kinds.append("sft-ablation")
        elif len(labels) >= 2 and all(_phase_rank(lab) is not None for lab in labels):
            kinds.append("phases")
        else:
            kinds.append("models")
    elif (df.kind == "gate").any():
        kinds.append("phases")
    pr = df[df.kind == "profile"]
    if len(pr):
        kinds.append("distillation" if pr.source.nunique() >= 2 else "profile")
    return kinds


def plot(inputs, kind: str = "auto", output: str | Path = "reports/figures") -> list[Path]:
    """Draw figures of `kind` (or every kind the inputs call for) into `output`; returns the files written."""
    if kind not in KINDS:
        raise UserError(f"--kind: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    df = results.load(inputs)
    if df.empty:
        raise UserError(f"{', '.join(map(str, inputs))}: no measurements found")
    kinds = auto_kinds(df) if kind == "auto" else [kind]
    out = []
    for k in kinds:
        out += FIGURES[k](df, Path(output) / k.replace("-", "_"))
    return out


def cli_plot(args) -> int:
    for path in plot(args.inputs, args.kind, args.output):
        print(path)
    return 0
