"""What every experiment's figures and tables share (matplotlib, Agg backend): the colours and
line styles of the learners (:data:`ARCH_COLORS`, :func:`arch_color`, :data:`KIND_STYLE`,
:data:`KIND_LABEL`), saving a figure as PNG and PDF (:func:`save`), plain-number log ticks
(:func:`log_ticks`) and the number formats and grid of the text tables (:func:`fmt_n`,
:func:`fmt_num`, :func:`grid_table`).

Each experiment family draws its own figures (``rbk.experiments.<family>``) with these.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter  # noqa: E402

ARCH_COLORS = {"3resnet": "#1f77b4", "3nn": "#d62728", "2nn": "#2ca02c"}
_EXTRA_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
KIND_STYLE = {  # linestyle, marker, filled
    "net": ("-", "o", True),
    "ntk": ("--", "s", False),
    "nngp": ("-.", "^", False),
    "rf": (":", "D", False),
}
KIND_LABEL = {"net": "network", "ntk": "NTK", "nngp": "NNGP", "rf": "random features"}


def arch_color(arch: str) -> str:
    """The colour of an architecture (fixed for 3resnet / 3nn / 2nn, stable for others)."""
    if arch in ARCH_COLORS:
        return ARCH_COLORS[arch]
    return _EXTRA_COLORS[sum(map(ord, arch)) % len(_EXTRA_COLORS)]


def save(fig, out_dir, name) -> tuple[Path, Path]:
    """Write ``fig`` to ``<out_dir>/<name>.png`` (150 dpi) and ``.pdf``, close it; return the two paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png, pdf = out / f"{name}.png", out / f"{name}.pdf"
    fig.savefig(png, dpi=150, bbox_inches="tight")
    fig.savefig(pdf, bbox_inches="tight")
    plt.close(fig)
    return png, pdf


def fmt_n(n: float) -> str:
    """Compact sample-size label: 300, 1k, 2.5k, 10k, 1M."""
    n = float(n)
    for div, suf in ((1e6, "M"), (1e3, "k")):
        if n >= div:
            v = n / div
            return f"{v:.0f}{suf}" if abs(v - round(v)) < 1e-9 else f"{v:.3g}{suf}"
    return f"{n:.0f}"


def fmt_num(x) -> str:
    """Table number: 3 decimals below 10, 2 below 100, else integer; tiny/huge in e-notation."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    ax = abs(x)
    if ax != 0 and (ax < 1e-3 or ax >= 1e6):
        return f"{x:.2e}"
    if ax < 0.1:
        return f"{x:.3g}"
    if ax < 10:
        return f"{x:.3f}"
    if ax < 100:
        return f"{x:.2f}"
    return f"{x:.0f}"


def log_ticks(axis, lo: float, hi: float, fmt=None) -> None:
    """Plain-number labels on a log axis, with enough labelled ticks for narrow ranges."""
    dec = math.log10(hi / lo)
    fmt = fmt or (lambda v: f"{v:g}")
    if dec <= 0.8:
        subs = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
    elif dec <= 2.2:
        subs = (1.0, 2.0, 5.0)
    else:
        subs = (1.0,)
    ticks = [m * 10.0**e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1) for m in subs]
    ticks = [t for t in ticks if lo <= t <= hi]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))
    axis.set_minor_locator(LogLocator(base=10, subs=np.arange(1, 10)))
    axis.set_minor_formatter(NullFormatter())


def grid_table(row_labels, col_labels, cells, corner="") -> list[str]:
    """The lines of a text table: ``cells[(row, col)]`` right-aligned under ``col_labels``."""
    w0 = max([len(corner)] + [len(r) for r in row_labels])
    widths = [max([len(c)] + [len(cells.get((r, c), "")) for r in row_labels]) for c in col_labels]
    lines = ["  ".join([corner.ljust(w0)] + [c.rjust(w) for c, w in zip(col_labels, widths)])]
    for r in row_labels:
        lines.append("  ".join([r.ljust(w0)] + [cells.get((r, c), "").rjust(w) for c, w in zip(col_labels, widths)]))
    return lines
