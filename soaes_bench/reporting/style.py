"""One paper style for every soaes-bench figure, and a deterministic, atomic saver.

Why these choices: figures must survive a grayscale printout (each series also gets its own hatch, marker and line
style, and the palette steps in lightness), render the same on any machine without network fonts (DejaVu Serif ships
with matplotlib), and not churn in git when nothing changed (fixed svg.hashsalt, no dates or version strings in the
file metadata, TrueType fonts embedded in the PDF).
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path

import matplotlib

from soaes_bench.io import atomic_write_bytes

DPI = 300
FORMATS = ("png", "svg", "pdf")
COLUMN_WIDTH = 3.3  # inches: one column of a two-column paper
PAGE_WIDTH = 6.8  # inches: full text width

# Okabe-Ito colours ordered so neighbouring series differ in lightness too (black, orange, blue, green, ...).
COLORS = ["#000000", "#E69F00", "#0072B2", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442"]
HATCHES = ["", "///", "...", "xxx", "\\\\\\", "---", "ooo", "+++"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
LINESTYLES = ["-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (5, 3))]

RC = {
    "font.family": "serif",
    "font.serif": ["DejaVu Serif"],
    "mathtext.fontset": "dejavuserif",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#d0d0d0",
    "grid.linewidth": 0.5,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.2,
    "lines.markersize": 4,
    "hatch.linewidth": 0.6,
    "hatch.color": "#000000",
    "errorbar.capsize": 2,
    "legend.frameon": False,
    "savefig.dpi": DPI,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "svg.hashsalt": "soaes-bench",  # stable element ids in SVG
    "svg.fonttype": "path",
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
}

# Metadata that would change on every save (dates, library versions) is dropped.
METADATA = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None},
}


def series(i: int) -> dict:
    """Colour, hatch, marker and line style of the i-th series, so series differ without colour."""
    return {"color": COLORS[i % len(COLORS)], "hatch": HATCHES[i % len(HATCHES)], "marker": MARKERS[i % len(MARKERS)],
            "linestyle": LINESTYLES[i % len(LINESTYLES)]}


@contextmanager
def paper():
    """Apply the paper style for the figures made inside the block."""
    with matplotlib.rc_context(RC):
        yield


def figure(width: float = PAGE_WIDTH, height: float = 2.4, ncols: int = 1, nrows: int = 1, **kw):
    """A pyplot-free Figure (no global state, nothing leaks between calls) and its axes array."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def save(fig, stem: str | Path, formats=FORMATS) -> list[Path]:
    """Write stem.png/.svg/.pdf atomically (readers never see half a figure); returns the paths."""
    stem = Path(stem)
    out = []
    with matplotlib.rc_context(RC):
        for fmt in formats:
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, dpi=DPI, metadata=METADATA.get(fmt))
            out.append(atomic_write_bytes(stem.with_suffix(f".{fmt}"), buf.getvalue()))
    return out
