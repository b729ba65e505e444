"""Tables as aligned text, GitHub Markdown or LaTeX booktabs, hand-written so outputs are byte-stable across pandas
versions (every report and comparison renders through here)."""

from __future__ import annotations

from soaes_bench.errors import UserError

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
