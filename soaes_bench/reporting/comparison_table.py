"""How a comparison (`compare`'s frame) reads: its table's cells, the notes under it (what was resampled, the
multiplicity correction) and the folds listing the items that flipped."""

from __future__ import annotations

import math

import pandas as pd

from soaes_bench import results, stats
from soaes_bench.reporting.tables import render


def _decimals(x: float) -> int:
    return 2 if results.is_number(x) and abs(x) >= 10 else 3


def _f(x, d: int) -> str:
    return f"{x:.{d}f}" if results.is_number(x) else "–"


def _p(x) -> str:
    if not results.is_number(x):
        return "–"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


_CORRECTION_LABEL = {"holm": "Holm", "bh": "BH"}


def _has(x) -> bool:
    """A finite number, numpy and pandas nullable integers included (not NA)."""
    try:
        return x is not None and not pd.isna(x) and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _correction(df: pd.DataFrame) -> str:
    used = [c for c in df["correction"].unique() if c] if "correction" in df else []
    return used[0] if used else "none"


def _n_cell(r) -> str:
    """Items, and "/G" when G < n clusters were resampled."""
    if not r.n_shared:
        return "–"
    g = r.n_clusters
    return f"{r.n_shared}/{int(g)}" if _has(g) and r.unit == "cluster" and int(g) < r.n_shared else str(r.n_shared)


def _wtl(r) -> str:
    return f"{int(r.wins)}/{int(r.ties)}/{int(r.losses)}" if _has(r.wins) else "–"


def display(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells of the comparison (one `run` column only when several runs are compared)."""
    many = df["run"].nunique() > 1
    ref = df["reference"].iloc[0] if len(df) else "A"
    run = df["run"].iloc[0] if len(df) else "B"
    conf = next((c for c in df["confidence"] if results.is_number(c)), 0.95) if "confidence" in df else 0.95
    level = stats.level_label(conf)
    corr = _correction(df)
    head = ["task", "metric"] + (["run", f"{ref} (reference)", "value"] if many else [ref, run])
    with_floor = "floor" in df and bool(df["floor"].notna().any())
    head += (["floor"] if with_floor else []) + [f"diff [{level} CI]", f"ratio [{level} CI]", "p"]
    head += ([f"p ({_CORRECTION_LABEL[corr]})"] if corr in _CORRECTION_LABEL else []) + ["MDE", "W/T/L", "n"]
    rows = []
    for r in df.itertuples():
        d = _decimals(r.value_ref)
        if results.is_number(r.ci_low):
            diff = _f(r.diff, d) + f" [{_f(r.ci_low, d)}, {_f(r.ci_high, d)}]"
        else:
            diff = _f(r.diff, d) + (" [no CI]" if r.interval == "none" else "")
        ratio = _f(r.ratio, 3) + (f" [{_f(r.ratio_low, 3)}, {_f(r.ratio_high, 3)}]"
                                  if results.is_number(r.ratio_low) else "")
        metric = r.metric + (" (no direction)" if r.metric in results.DIRECTION_NEUTRAL
                             else "" if r.higher_is_better else " (lower better)")
        star = "*" if not pd.isna(r.significant) and bool(r.significant) else ""
        p_cells = [_p(r.p) + ("" if corr in _CORRECTION_LABEL else star)]
        if corr in _CORRECTION_LABEL:
            p_cells.append(_p(r.p_adjusted) + star)
        floor = ([(_f(r.floor, d) + f" ({r.floor_name})") if results.is_number(r.floor) else "–"]
                 if with_floor else [])
        rows.append([r.task, metric] + ([r.run] if many else []) + [_f(r.value_ref, d), _f(r.value, d)] + floor
                    + [diff, ratio] + p_cells + [_f(r.mde, d), _wtl(r), _n_cell(r)])
    return head, rows


NOTE = ("diff = run - reference and ratio = run / reference over the n items both runs answered (matched by id); "
        "CI: paired bootstrap over those items' clusters (their source documents; n/G = items/clusters) or items, "
        "the same draws for both runs, or from the two stderrs when no samples exist; "
        "p: McNemar exact for 0/1 metrics over independent items, the bootstrap's otherwise. "
        "MDE: the difference detectable with 80% power at the CI's level. "
        "W/T/L: items where the run's per-item score is higher/equal/lower (bits per byte: lower wins).")


def resampling_notes(df: pd.DataFrame) -> list[str]:
    """One line per task: unit, items, clusters and interval method of its paired rows (or why items were used)."""
    lines, seen = [], set()
    for r in df[(df.level == "task") & (df.ci_method == "paired-bootstrap")].itertuples():
        g = int(r.n_clusters) if _has(r.n_clusters) else None
        clustered = r.unit == "cluster" and g is not None and g < r.n_shared
        key = (r.task, r.run, r.unit, r.n_shared, g, r.interval, r.unit_note)
        if key in seen:
            continue
        seen.add(key)
        if clustered:
            what = f"{r.n_shared} items in {g} clusters"
        elif r.unit_note:
            what = f"{r.n_shared} items ({r.unit_note})"
        else:
            what = f"{r.n_shared} items ({'each its own cluster' if r.unit == 'cluster' else '--unit item'})"
        method = stats.describe_method(r.interval, g if clustered else r.n_shared, clustered)
        lines.append(f"{r.task}{f' ({r.run})' if df['run'].nunique() > 1 else ''}: {what}; {method}")
    return list(dict.fromkeys(lines))


def correction_note(df: pd.DataFrame) -> str:
    corr = _correction(df)
    fam = df[df.p_adjusted.notna()]
    m = int(fam.groupby("run").size().max()) if len(fam) else 0
    alpha = 1 - (next((c for c in df["confidence"] if results.is_number(c)), 0.95))
    if corr == "none":
        return f"No multiplicity correction (--correction none): * p <= {alpha:g} for one comparison alone."
    name = {"holm": "Holm (family-wise error)", "bh": "Benjamini-Hochberg (false discovery rate)"}[corr]
    text = (f"p ({_CORRECTION_LABEL[corr]}): {name} adjustment over the {m} task x metric p-values of each run "
            f"pair; * significant at {alpha:g} after correction. The CIs are per comparison.")
    r = next((int(x) for x in df["resamples"] if _has(x)), None) if "resamples" in df else None
    if r and corr == "holm" and m * 2 / (r + 1) > alpha:  # Holm's first step needs p <= alpha / m
        text += (f" With {r} resamples the smallest bootstrap p is 2/(R+1) = {2 / (r + 1):.4f}, too coarse for "
                 f"Holm over {m} (which needs {alpha / m:.4f}): use --resamples {math.ceil(2 * m / alpha)} or more.")
    return text


def flipped_markdown(df: pd.DataFrame) -> str:
    """<details> folds with the ids of the items that flipped (won or lost) for each paired metric."""
    out = []
    for r in df[(df.level == "task") & ((df.won_ids != "") | (df.lost_ids != ""))].itertuples():
        won, lost = r.won_ids.split(), r.lost_ids.split()
        who = f" ({r.run})" if df["run"].nunique() > 1 else ""
        out += [f"<details><summary>{r.task} {r.metric}{who}: {len(won)} items won, {len(lost)} lost, "
                f"{int(r.ties) if _has(r.ties) else 0} tied</summary>", "",
                "won: " + (", ".join(f"`{i}`" for i in won) or "none"), "",
                "lost: " + (", ".join(f"`{i}`" for i in lost) or "none"), "", "</details>", ""]
    return "\n".join(out)


def format_comparison(df: pd.DataFrame, fmt: str = "table") -> str:
    if fmt == "csv":
        return df.to_csv(index=False)
    head, rows = display(df)
    notes = [NOTE + (" floor: the task's best content-free floor for the metric (from results.json; soaes-bench "
                     "floors)." if "floor" in head else ""), correction_note(df)]
    res = resampling_notes(df)
    if res:
        notes.append(("Resampling:\n" if fmt == "table" else "Resampling:\n\n")
                     + "\n".join(("- " if fmt == "markdown" else "  ") + line for line in res))
    text = render(head, rows, fmt, note="\n\n".join(notes) if fmt == "markdown" else "\n".join(notes),
                  right_from=2)
    if fmt == "markdown":
        folds = flipped_markdown(df)
        text += ("\n" + folds) if folds else ""
    return text
