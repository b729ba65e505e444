"""Profiler figures (PNG + SVG, paper style from soaes_bench.reporting.style), drawn from a profile.json object.

    from soaes_bench.reporting.profile_figures import write_figures
    write_figures(read_json("reports/profile/profile.json"), "reports/profile/figures")

speedup_vs_gamma: measured speedup (median over repeats; bars: its order-statistic CI, whose real level, e.g. 75% for
3 repeats or 96.9% for 6, the x label states) and the Leviathan prediction from measured alpha and c,
per prompt category; acceptance_by_position: P(position i accepted | proposed) at the largest gamma, with the
i.i.d. model alpha^i (alpha per token) dotted; tau_by_category: tokens per target forward at each gamma, with the i.i.d. expected tau as diamonds;
speedup_vs_context: measured and predicted speedup on long contexts at the best gamma.
"""

from __future__ import annotations

from pathlib import Path

from soaes_bench.reporting import style
from soaes_bench.stats import level_label

FORMATS = ("png", "svg")


def _short(report: dict) -> list[str]:
    return list(dict.fromkeys(s["category"] for s in report["settings"] if s["category"] != "long"))


def _rows(report: dict, category: str) -> list[dict]:
    return sorted((s for s in report["settings"] if s["category"] == category), key=lambda s: (s["context"], s["gamma"]))


def _errors(rows: list[dict], key: str):
    lo = [r[key] - r[f"{key}_ci"][0] if r[f"{key}_ci"] else 0.0 for r in rows]
    hi = [r[f"{key}_ci"][1] - r[key] if r[f"{key}_ci"] else 0.0 for r in rows]
    return [lo, hi]


def _bars(rows: list[dict]) -> str:
    """The x-label suffix " (bars: 75% CI)": the level of the error bars drawn for `rows` (their ci_level)."""
    levels = sorted({r["ci_level"] for r in rows if r.get("ci_level") is not None and r.get("speedup_ci")})
    return f" (bars: {' / '.join(map(level_label, levels))} CI)" if levels else ""


def speedup_vs_gamma(report: dict, ax) -> None:
    for i, cat in enumerate(_short(report)):
        rows = [r for r in _rows(report, cat) if r["speedup"] is not None]
        if not rows:
            continue
        s = style.series(i)
        g = [r["gamma"] for r in rows]
        ax.errorbar(g, [r["speedup"] for r in rows], yerr=_errors(rows, "speedup"), color=s["color"],
                    marker=s["marker"], linestyle="-", label=f"{cat} measured")
        pred = [(r["gamma"], r["predicted_speedup"]) for r in rows if r["predicted_speedup"] is not None]
        if pred:
            ax.plot(*zip(*pred), color=s["color"], marker=s["marker"], markerfacecolor="none", linestyle="--",
                    label=f"{cat} predicted")
    ax.axhline(1.0, color="#808080", linewidth=0.6)
    ax.set_xticks(sorted({r["gamma"] for r in report["settings"] if r["category"] != "long"}))
    ax.set_xlabel("draft tokens per round γ" + _bars([r for r in report["settings"] if r["category"] != "long"]))
    ax.set_ylabel("speedup over target-only (×)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=3, fontsize=6)  # below: lines fill the axes


def acceptance_by_position(report: dict, ax) -> None:
    for i, cat in enumerate(_short(report)):
        rows = _rows(report, cat)
        if not rows:
            continue
        r = max(rows, key=lambda x: x["gamma"])
        pts = [(k + 1, v) for k, v in enumerate(r["acceptance_by_position"]) if v is not None]
        if not pts:
            continue
        s = style.series(i)
        ax.plot(*zip(*pts), color=s["color"], marker=s["marker"], linestyle=s["linestyle"],
                label=f"{cat} (γ={r['gamma']})")
        if r["alpha_token"] is not None:
            ax.plot([p for p, _ in pts], [r["alpha_token"] ** p for p, _ in pts], color=s["color"], linestyle=":",
                    linewidth=0.8)
    ax.set_ylim(0, 1.02)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("draft position i (dotted: α^i)")
    ax.set_ylabel("P(position i accepted)")
    ax.legend()


def tau_by_category(report: dict, ax) -> None:
    cats = _short(report)
    gammas = sorted({s["gamma"] for s in report["settings"] if s["category"] in cats})
    width = 0.8 / max(len(gammas), 1)
    for j, g in enumerate(gammas):
        s = style.series(j)
        xs, taus, exp = [], [], []
        for i, cat in enumerate(cats):
            r = next((x for x in _rows(report, cat) if x["gamma"] == g and x["tau"] is not None), None)
            if r is not None:
                xs.append(i - 0.4 + width * (j + 0.5))
                taus.append(r["tau"])
                exp.append(r["expected_tau"])
        ax.bar(xs, taus, width=width, color=s["color"], hatch=s["hatch"], edgecolor="black", linewidth=0.4,
               label=f"γ={g}")
        ax.scatter(xs, exp, marker="D", s=9, facecolor="white", edgecolor="black", linewidth=0.6, zorder=3)
    ax.set_xticks(range(len(cats)), cats)
    ax.set_ylabel("tokens per target forward τ (◇ expected)")
    ax.margins(y=0.25)  # head room for the legend
    ax.legend(ncols=min(len(gammas), 4), loc="upper center", fontsize=6)


def speedup_vs_context(report: dict, ax) -> None:
    rows = [r for r in _rows(report, "long") if r["speedup"] is not None]
    if not rows:
        ax.text(0.5, 0.5, "no long-context settings", ha="center", va="center", transform=ax.transAxes)
        return
    x = [r["context"] for r in rows]
    ax.errorbar(x, [r["speedup"] for r in rows], yerr=_errors(rows, "speedup"), color=style.COLORS[0], marker="o",
                label=f"measured (γ={rows[0]['gamma']})")
    pred = [(r["context"], r["predicted_speedup"]) for r in rows if r["predicted_speedup"] is not None]
    if pred:
        ax.plot(*zip(*pred), color=style.COLORS[1], marker="s", markerfacecolor="none", linestyle="--",
                label="predicted")
    ax.axhline(1.0, color="#808080", linewidth=0.6)
    ax.set_xscale("log", base=2)
    ax.set_xticks(x, [str(v) for v in x])
    ax.set_xlabel("context length (tokens)" + _bars(rows))
    ax.set_ylabel("speedup over target-only (×)")
    ax.legend()


FIGURES = {"speedup_vs_gamma": speedup_vs_gamma, "acceptance_by_position": acceptance_by_position,
           "tau_by_category": tau_by_category, "speedup_vs_context": speedup_vs_context}


def write_figures(report: dict, out_dir: str | Path, formats=FORMATS) -> list[Path]:
    """Draw every profiler figure into out_dir as <name>.png/.svg; returns the written paths."""
    paths = []
    with style.paper():
        for name, draw in FIGURES.items():
            fig, axes = style.figure(width=style.COLUMN_WIDTH, height=2.4)
            draw(report, axes[0][0])
            paths += style.save(fig, Path(out_dir) / name, formats=formats)
    return paths
