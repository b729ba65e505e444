"""`soaes-bench report RUN_DIR`: one Markdown page for a run directory.

    soaes-bench report runs/soaes            # -> runs/soaes/report.md, figures in runs/soaes/figures/

Sections (each only when its files exist): results (every results.json below RUN_DIR, one column per run, in phase
order), gates (every gate.json: check, threshold, value, CI, pass/fail), ablations (ablation*.json), speculative
decoding profile (profile.json), and the figures `soaes-bench plot --kind auto` would draw, linked relatively.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from soaes_bench import records, results, stats
from soaes_bench.errors import UserError
from soaes_bench.io import atomic_write_text, read_json
from soaes_bench.reporting import figure_data, plots
from soaes_bench.reporting.tables import render


def _f(x, d: int | None = None) -> str:
    if not results.is_number(x):
        return "–"
    d = d if d is not None else (2 if abs(x) >= 10 else 3)
    return f"{x:.{d}f}"


def _rel(path, base: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), base.resolve())).as_posix()


def results_section(df: pd.DataFrame, base: Path) -> list[str]:
    ev = figure_data.with_labels(df[df.kind == "eval"])
    ev = ev[ev.level == "task"]
    if ev.empty:
        return []
    runs = list(ev.sort_values("order").label.drop_duplicates())
    head = ["task", "metric"] + runs
    rows = []
    for (task, metric), sub in ev.groupby(["task", "metric"], sort=False):
        cells = []
        for run in runs:
            r = sub[sub.label == run]
            if r.empty:
                cells.append("–")
                continue
            r = r.iloc[0]
            d = 2 if results.is_number(r.value) and abs(r.value) >= 10 else 3
            pm = f" ± {_f(stats.normal_z() * r.stderr, d)}" if results.is_number(r.stderr) else ""
            cells.append(_f(r.value) + pm)
        hib = bool(sub.higher_is_better.iloc[0])
        rows.append([task, metric + ("" if hib else " ↓")] + cells)
    prov = []
    for source, sub in ev.groupby("source", sort=False):
        r = sub.iloc[0]
        prov.append([r.label, str(r.model), str(r.weights_sha256 or "–")[:12], str(r.date or "–"),
                     str(r.device or "–"), _rel(source, base)])
    return ["## Results", "",
            render(head, rows, "markdown", note="± is 1.96 × stderr (95%); ↓ lower is better.", right_from=2),
            render(["run", "model", "weights sha256", "date", "device", "file"], prov, "markdown", right_from=9)]


def gates_section(df: pd.DataFrame, base: Path) -> list[str]:
    gates = df[df.kind == "gate"]
    if gates.empty:
        return []
    out = ["## Gates", ""]
    for source, sub in gates.groupby("source", sort=False):
        ok = bool(sub.passed.all())
        out += [f"### {sub.phase.iloc[0]}: {'passed' if ok else 'FAILED'}", "", f"From `{_rel(source, base)}`.", ""]
        rows = [[str(r.check or "–"), str(r.task or "–"), r.metric, f"{r.op or ''} {_f(r.threshold)}".strip(),
                 _f(r.value), f"[{_f(r.ci_lo)}, {_f(r.ci_hi)}]" if results.is_number(r.ci_lo) else "–",
                 "pass" if r.passed else "**FAIL**"] for r in sub.itertuples()]
        out.append(render(["check", "task", "metric", "threshold", "value", "95% CI", "result"], rows, "markdown",
                          right_from=3))
    return out


def _generic_table(obj) -> str | None:
    """A Markdown table for a list of flat objects, {"rows": [...]}, or {name: {field: value}}; else None."""
    if isinstance(obj, dict) and isinstance(obj.get("rows"), list):
        obj = obj["rows"]
    if isinstance(obj, dict) and obj and all(isinstance(v, dict) for v in obj.values()):
        obj = [{"name": k, **v} for k, v in obj.items()]
    if not (isinstance(obj, list) and obj and all(isinstance(r, dict) for r in obj)):
        return None
    cols = list(dict.fromkeys(k for r in obj for k in r if not isinstance(r[k], (dict, list))))

    def cell(v):
        return _f(v) if results.is_number(v) and not isinstance(v, int) else "–" if v is None else str(v)

    return render(cols, [[cell(r.get(c)) for c in cols] for r in obj], "markdown", right_from=1)


def ablations_section(run_dir: Path, base: Path) -> list[str]:
    files = sorted(p for p in run_dir.rglob("ablation*.json") if p.is_file())
    if not files:
        return []
    out = ["## Ablations", ""]
    for path in files:
        obj = read_json(path)
        out += [f"### {path.stem}", "", f"From `{_rel(path, base)}`.", ""]
        if isinstance(obj, dict) and records.SCHEMAS.get(obj.get("schema")) in ("eval", "gate", "profile"):
            df = results.load([path])
            out += results_section(df, base)[2:3] or gates_section(df, base)[2:] or profile_section(df, base)[2:]
            continue
        table = _generic_table(obj)
        out.append(table if table else "```json\n" + json.dumps(obj, ensure_ascii=False, indent=2)[:4000] + "\n```\n")
    return out


def profile_section(df: pd.DataFrame, base: Path) -> list[str]:
    """The profiler's own Markdown (profile_tables.py) one heading level down; a short summary if it fails."""
    pr = df[df.kind == "profile"]
    if pr.empty:
        return []
    out = ["## Speculative decoding profile", ""]
    for source in dict.fromkeys(pr.source):
        out += [f"From `{_rel(source, base)}`.", ""]
        try:
            from soaes_bench.reporting.profile_tables import to_markdown

            text = to_markdown(read_json(source))
            out.append("\n".join(("##" + line if line.startswith("#") else line) for line in text.splitlines()))
            continue
        except (ImportError, KeyError, TypeError, ValueError, IndexError):
            pass
        sub = pr[pr.source == source]
        summary = sub[sub.level == "summary"].drop_duplicates("metric").set_index("metric").value
        if len(summary):
            out.append(", ".join(f"{k} {_f(v)}" for k, v in summary.items()) + "\n")
        sweep = plots.short_settings(sub)
        if len(sweep):
            table = sweep.pivot_table(index="gamma", columns="metric", values="value", aggfunc="mean")
            cols = [c for c in ("alpha", "tau", "speedup", "predicted_speedup") if c in table]
            rows = [[str(int(g))] + [_f(table.at[g, c]) for c in cols] for g in table.index]
            out.append(render(["γ"] + cols, rows, "markdown", right_from=0))
    return out


def figures_section(df: pd.DataFrame, run_dir: Path, base: Path) -> list[str]:
    out = []
    for kind in plots.auto_kinds(df):
        try:
            files = plots.FIGURES[kind](df, run_dir / "figures" / kind.replace("-", "_"))
        except UserError as e:
            out += [f"- {kind}: not drawn ({e})"]
            continue
        png = next(f for f in files if f.suffix == ".png")
        out += [f"![{kind}]({_rel(png, base)})", ""]
    return ["## Figures", ""] + out if out else []


def report(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Write the Markdown report of `run_dir` (default RUN_DIR/report.md) and its figures; returns the report path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a directory")
    out = Path(output) if output else run_dir / "report.md"
    try:
        df = results.load([run_dir])
    except UserError as e:
        if "found in this directory" not in str(e):
            raise
        df = results._frame([])
    base = out.parent
    parts = [f"# soaes-bench report: {run_dir.resolve().name}", ""]
    parts += results_section(df, base) + gates_section(df, base) + ablations_section(run_dir, base)
    parts += profile_section(df, base) + (figures_section(df, run_dir, base) if len(df) else [])
    if len(parts) == 2:
        raise UserError(f"{run_dir}: nothing to report (no results.json, gate.json, profile.json or ablation*.json)")
    atomic_write_text(out, "\n".join(parts).rstrip() + "\n")
    return out


def cli_report(args) -> int:
    print(report(args.run_dir, args.output))
    return 0
