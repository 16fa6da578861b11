"""Figures and text tables of Experiments 1 and 2 (matplotlib, Agg backend; shared styles and
saving: :mod:`rbk.plots`).

* :func:`plot_exp1`: test error against N on log-log axes, one line per learner (networks
  solid with filled markers; kernels dashed / dash-dot / dotted for NTK / NNGP / RF with open
  markers; one colour per architecture), a band spanning the seeds' min-max, the threshold
  ``k alpha^2`` as a labelled horizontal line and each learner's ``n_star`` as a small
  triangle on it; each exact kernel's learning curve predicted from its spectrum (the summary's
  ``predicted``, :mod:`rbk.theory`) as a thin dashed line out to its last N (``10^7``), its
  predicted ``n*`` as an open triangle.
* :func:`plot_exp2`: the (beta, alpha) phase diagram of ``test error / (k alpha^2)`` with a
  diverging colour map centred at 1 on a symmetric log scale (blue: below the threshold,
  red: above), the ratio written in every cell and the line ``alpha = beta`` drawn.
* :func:`format_table` / :func:`print_table`: plain-text tables for the end of a run.

Both plot functions take the summary dict of :mod:`rbk.experiments.concept_class.summary`, or
the raw rows (a list of dicts or a path to results.csv / results.jsonl), write
``<out_dir>/<name>.png`` and ``<name>.pdf`` and return the two paths. :func:`figure_exp1` /
:func:`figure_exp2` return the ``Figure`` instead (for notebooks and tests; the caller closes it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import matplotlib.colors as mcolors
import matplotlib.patheffects as pe
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from rbk import plots, stats
from rbk.experiments.concept_class.summary import is_exp2_summary, summarize_exp1, summarize_exp2
from rbk.plots import plt


def _as_summary(obj, which: str) -> dict:
    if isinstance(obj, Mapping) and "rows" in obj and ("threshold" in obj or "instance" in obj):
        if which == "exp1" and is_exp2_summary(obj):
            raise ValueError("plot_exp1 got an experiment-2 summary")
        if which == "exp2" and not is_exp2_summary(obj):
            raise ValueError("plot_exp2 got an experiment-1 summary")
        return dict(obj)
    return summarize_exp1(obj) if which == "exp1" else summarize_exp2(obj)


def _instance_text(inst: Mapping, keys=("d", "k", "g_degree", "alpha", "beta")) -> str:
    names = {"d": "d", "k": "k", "g_degree": "deg G", "alpha": "α", "beta": "β"}
    parts = []
    for key in keys:
        if key in inst and inst[key] is not None and not isinstance(inst[key], list):
            v = inst[key]
            parts.append(f"{names[key]} = {v:g}" if isinstance(v, float) else f"{names[key]} = {v}")
    return ", ".join(parts)


def _label_threshold(ax, thr: float, curves, marks=()) -> None:
    """Write the threshold's value next to its line where the curves leave the most room."""
    x0, x1 = (math.log(v) for v in ax.get_xlim())
    y0, y1 = (math.log(v) for v in ax.get_ylim())
    ty = (math.log(thr) - y0) / (y1 - y0)
    pts = []  # curves in axes fraction, densely sampled
    for n, y in curves:
        ok = np.isfinite(y) & (y > 0)
        if ok.sum() == 0:
            continue
        lx, ly = np.log(n[ok]), np.log(y[ok])
        xs = np.linspace(lx.min(), lx.max(), 60) if ok.sum() > 1 else lx
        pts.append(np.stack([(xs - x0) / (x1 - x0), (np.interp(xs, lx, ly) - y0) / (y1 - y0)], 1))
    for x in marks:  # n* triangles on the line
        pts.append(np.array([[(math.log(x) - x0) / (x1 - x0), ty]]))
    pts = np.concatenate(pts) if pts else np.zeros((0, 2))
    w, h = 0.17, 0.06
    best = None
    for rank, xl in enumerate((0.82, 0.01, 0.2, 0.4, 0.6)):
        for va, (yl, yh) in (("bottom", (ty - 0.005, ty + h)), ("top", (ty - h, ty + 0.005))):
            hit = np.sum((pts[:, 0] >= xl - 0.01) & (pts[:, 0] <= xl + w) & (pts[:, 1] >= yl) & (pts[:, 1] <= yh))
            cand = (int(hit), rank, va != "bottom", xl, va)
            best = cand if best is None or cand < best else best
    _, _, _, xl, va = best
    ha, xa = "left", xl
    ax.annotate(
        f"k·α² = {thr:g}", xy=(xa, thr), xycoords=("axes fraction", "data"), xytext=(0, 3 if va == "bottom" else -3),
        textcoords="offset points", ha=ha, va=va, fontsize=8.5, color="0.2", zorder=6,
        bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none", alpha=0.7),
    )  # fmt: skip




def plot_exp1(rows_or_summary, out_dir, name: str = "exp1", *, title: str | None = None) -> tuple[Path, Path]:
    """Log-log test error against N for every learner; writes PNG and PDF, returns their paths.

    ``rows_or_summary``: the :func:`rbk.summarize_exp1` dict, or rows / a results path
    (summarised here). See :func:`figure_exp1`.
    """
    return plots.save(figure_exp1(rows_or_summary, title=title), out_dir, name)


def figure_exp1(rows_or_summary, *, title: str | None = None):
    """The experiment-1 figure (a matplotlib ``Figure``; the caller saves / closes it).

    One line per learner (seed-mean test error), a band over the seeds' min-max (seeds that
    diverged left out; no band with one seed), ``j div.`` above a point where j seeds
    diverged, an ``x`` at the top where all did, the threshold ``k alpha^2`` dashed and
    labelled, each learner's ``n_star`` as a triangle on it, and the predicted curves of the
    summary's ``predicted`` (thin dashed) with their ``n*`` (open triangles).
    """
    s = _as_summary(rows_or_summary, "exp1")
    thr = float(s["threshold"])
    inst = s.get("instance", {}) or {}
    learners: dict[str, dict] = {}
    for r in s["rows"]:
        info = {"kind": r.get("kind", "net"), "arch": r.get("arch", r["learner"]), "rows": []}
        learners.setdefault(r["learner"], info)
        learners[r["learner"]]["rows"].append(r)
    order = sorted(learners, key=lambda lr: stats.learner_sort_key(lr, learners[lr]["kind"], learners[lr]["arch"]))

    fig, ax = plt.subplots(figsize=(7.6, 4.8))
    all_n, all_y, curves = set(), [], []
    band_drawn = part_div = False
    for lr in order:
        info = learners[lr]
        rs = sorted(info["rows"], key=lambda r: r["n"])
        n = np.array([r["n"] for r in rs], dtype=float)
        y = np.array([np.nan if r["test_error_mean"] is None else r["test_error_mean"] for r in rs], dtype=float)
        all_n.update(n.tolist())
        all_y.extend(y[np.isfinite(y)].tolist())
        curves.append((n, y))
        color = plots.arch_color(info["arch"])
        ls, marker, filled = plots.KIND_STYLE.get(info["kind"], ("--", "x", True))
        ax.plot(
            n, y, linestyle=ls, marker=marker, color=color, lw=1.8 if info["kind"] == "net" else 1.4,
            ms=5.5, markerfacecolor=color if filled else "white", markeredgewidth=1.3, label=lr, zorder=3,
        )  # fmt: skip
        lo = np.array([np.nan if r.get("test_error_min") is None else r["test_error_min"] for r in rs], dtype=float)
        hi = np.array([np.nan if r.get("test_error_max") is None else r["test_error_max"] for r in rs], dtype=float)
        if "test_error_min" not in rs[0]:  # summary without min/max: fall back to the CI
            lo = np.array([np.nan if r["test_error_ci95"][0] is None else r["test_error_ci95"][0] for r in rs], float)
            hi = np.array([np.nan if r["test_error_ci95"][1] is None else r["test_error_ci95"][1] for r in rs], float)
            lo = np.where(lo > 0, lo, np.nan)
        band = np.isfinite(lo) & np.isfinite(hi) & (hi > lo)
        if band.any():
            band_drawn = True
            ax.fill_between(n, np.where(band, lo, np.nan), np.where(band, hi, np.nan),
                            color=color, alpha=0.13, lw=0, zorder=1)  # fmt: skip
            all_y.extend(lo[band].tolist() + hi[band].tolist())
        # diverged seeds: a small cross above the point
        for r, nn, yy in zip(rs, n, y):
            if r.get("diverged_seeds") and np.isfinite(yy):
                ax.annotate(f"{r['diverged_seeds']} div.", (nn, yy), xytext=(0, 6), textcoords="offset points",
                            ha="center", fontsize=7.5, color=color, zorder=6,
                            bbox=dict(boxstyle="square,pad=0.05", fc="white", ec="none", alpha=0.7))  # fmt: skip
                part_div = True

    # each exact kernel's learning curve predicted from its spectrum: thin dashed, out to its last N
    pred_drawn = False
    pred_nstar = []
    for lr, pr in (s.get("predicted") or {}).items():
        pts = sorted((float(n), e) for n, e in (pr.get("curve") or {}).items() if e is not None and e > 0)
        if not pts:
            continue
        arch = learners[lr]["arch"] if lr in learners else lr.partition("-")[2]
        pn, pe_ = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
        ax.plot(pn, pe_, color=plots.arch_color(arch), lw=0.9, ls=(0, (4, 2.5)), alpha=0.85, zorder=2)
        all_n.update([pn.min(), pn.max()])
        all_y.extend(pe_.tolist())
        curves.append((pn, pe_))
        pred_drawn = True
        if pr.get("n_star") is not None and pr["n_star"] <= pn.max():
            pred_nstar.append((pr["n_star"], plots.arch_color(arch)))

    # threshold line, labelled at the right end
    ax.axhline(thr, color="0.25", lw=1.1, ls=(0, (6, 3)), zorder=2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    if all_n:
        xmin, xmax = min(all_n), max(all_n)
        pad = (xmax / xmin) ** 0.06 if xmax > xmin else 1.5
        ax.set_xlim(xmin / pad, xmax * pad)
    ys = [v for v in all_y if v > 0] + [thr]
    ylo, yhi = min(ys), max(ys)
    span = max(yhi / ylo, 1.5)
    ax.set_ylim(ylo / span**0.08, yhi * span**0.08)

    # n_star ticks on the threshold line
    nstar_drawn = any_div = False
    nstar_x = []
    for lr in order:
        ns = (s.get("n_star") or {}).get(lr) or {}
        est = ns.get("estimate")
        if est is not None:
            ax.plot([est], [thr], marker="v", ms=7, color=plots.arch_color(learners[lr]["arch"]),
                    markeredgecolor="black", markeredgewidth=0.6, zorder=4, linestyle="none")  # fmt: skip
            nstar_drawn = True
            nstar_x.append(est)
    for est, color in pred_nstar:  # predicted n*: open triangles
        ax.plot([est], [thr], marker="v", ms=7, color="white", markeredgecolor=color, markeredgewidth=1.2,
                zorder=4, linestyle="none")  # fmt: skip
        nstar_x.append(est)
    _label_threshold(ax, thr, curves, nstar_x)

    # all seeds diverged: an x at the top edge
    for lr in order:
        for r in learners[lr]["rows"]:
            if r["test_error_mean"] is None and r.get("diverged_seeds"):
                ax.plot([r["n"]], [0.97], transform=ax.get_xaxis_transform(), marker="x", ms=7, mew=1.8,
                        color=plots.arch_color(learners[lr]["arch"]), linestyle="none", zorder=5, clip_on=False)  # fmt: skip
                any_div = True

    # x ticks at the grid N when there are few of them, else 1-2-5 ticks; compact labels
    grid = sorted(all_n)
    if 1 < len(grid) <= 9 and not pred_drawn:
        ax.xaxis.set_major_locator(FixedLocator(grid))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: plots.fmt_n(v)))
        ax.xaxis.set_minor_locator(NullLocator())
    else:
        plots.log_ticks(ax.xaxis, *ax.get_xlim(), fmt=plots.fmt_n)
    plots.log_ticks(ax.yaxis, *ax.get_ylim())
    ax.set_xlabel("training samples N")
    ax.set_ylabel("test error (sum of squared errors over k outputs)")
    ax.grid(True, which="major", color="0.88", lw=0.8)
    ax.grid(True, which="minor", axis="y", color="0.94", lw=0.6)
    ax.set_axisbelow(True)
    head = "Experiment 1: test error vs N"
    it = _instance_text(inst)
    ax.set_title(title or (f"{head}\n{it}" if it else head), fontsize=10.5)

    handles, labels = ax.get_legend_handles_labels()
    extra = [Line2D([], [], color="0.25", lw=1.1, ls=(0, (6, 3)), label=f"threshold k·α² = {thr:g}")]
    if band_drawn:
        extra.append(Patch(facecolor="0.5", alpha=0.25, label="seed min–max"))
    if pred_drawn:
        extra.append(Line2D([], [], color="0.3", lw=0.9, ls=(0, (4, 2.5)), label="kernel, predicted\nfrom its spectrum"))
    if pred_nstar:
        extra.append(Line2D([], [], marker="v", color="white", markeredgecolor="0.3", markeredgewidth=1.2,
                            linestyle="none", ms=7, label="predicted n*"))  # fmt: skip
    if nstar_drawn:
        extra.append(Line2D([], [], marker="v", color="0.4", markeredgecolor="black", markeredgewidth=0.6,
                            linestyle="none", ms=7, label="n* (crosses threshold)"))  # fmt: skip
    if part_div:
        extra.append(Line2D([], [], linestyle="none", label="j div.: j seeds diverged\n(left out of the mean)"))
    if any_div:
        extra.append(Line2D([], [], marker="x", color="0.3", mew=1.8, linestyle="none", ms=7,
                            label="all seeds diverged"))  # fmt: skip
    ax.legend(handles + extra, labels + [h.get_label() for h in extra], loc="upper left",
              bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8.5, handlelength=2.6)  # fmt: skip
    return fig


# --------------------------------------------------------------------------------------------
# experiment 2
# --------------------------------------------------------------------------------------------


def fmt_ratio(r) -> str:
    if r is None or not math.isfinite(r):
        return "n/a"
    if r >= 100:
        return f"{r:.0f}"
    if r >= 10:
        return f"{r:.1f}"
    if r >= 0.1:
        return f"{r:.2f}"
    return f"{r:.2g}"


def plot_exp2(rows_or_summary, out_dir, name: str = "exp2", *, title: str | None = None) -> tuple[Path, Path]:
    """Phase diagram ``test error / (k alpha^2)`` over (beta, alpha); writes PNG and PDF.

    ``rows_or_summary``: the :func:`rbk.summarize_exp2` dict, or rows / a results path.
    See :func:`figure_exp2`.
    """
    return plots.save(figure_exp2(rows_or_summary, title=title), out_dir, name)


def figure_exp2(rows_or_summary, *, title: str | None = None):
    """The experiment-2 figure (a matplotlib ``Figure``; the caller saves / closes it).

    One panel per (learner, N) present. Colour: symmetric log scale around 1 (``RdBu_r``;
    blue = below the threshold = the composed part learned). Cells: the ratio; ``n/a`` where it
    is undefined (``alpha = 0``, or every seed diverged), blank where no run exists. The dashed
    line is ``alpha = beta`` (piecewise linear between grid values when the grids differ).
    """
    s = _as_summary(rows_or_summary, "exp2")
    entries = s["rows"]
    if not entries:
        raise ValueError("plot_exp2 needs at least one row")
    panels: dict[tuple, list] = {}
    for e in entries:
        panels.setdefault((e["learner"], e["n"]), []).append(e)
    keys = sorted(panels, key=lambda t: (stats.learner_sort_key(t[0], panels[t][0].get("kind", "net"),
                                                              panels[t][0].get("arch", t[0])), t[1]))  # fmt: skip
    ratios = [e["ratio"] for e in entries if e.get("ratio") is not None and e["ratio"] > 0]
    R = max([2.0] + [max(r, 1.0 / r) for r in ratios])
    norm = mcolors.LogNorm(vmin=1.0 / R, vmax=R)
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.82")

    alphas_all = sorted({e["alpha"] for e in entries})
    betas_all = sorted({e["beta"] for e in entries})
    npan = len(keys)
    cw = 0.62 * len(betas_all) + 1.6
    ch = 0.5 * len(alphas_all) + 1.5
    fig, axes = plt.subplots(
        1, npan, figsize=(max(4.8, cw) * npan + 1.2, max(3.6, ch) + 0.9), squeeze=False, layout="constrained"
    )
    im = None
    for ax, key in zip(axes[0], keys):
        es = panels[key]
        alphas = sorted({e["alpha"] for e in es})
        betas = sorted({e["beta"] for e in es})
        Z = np.full((len(alphas), len(betas)), np.nan)
        present = np.zeros_like(Z, dtype=bool)
        for e in es:
            i, j = alphas.index(e["alpha"]), betas.index(e["beta"])
            present[i, j] = True
            if e.get("ratio") is not None and e["ratio"] > 0:
                Z[i, j] = e["ratio"]
        Zm = np.ma.masked_invalid(Z)
        im = ax.imshow(Zm, origin="lower", cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
        # blank (white) where no run exists; grey "n/a" where the ratio is undefined
        for i in range(len(alphas)):
            for j in range(len(betas)):
                if not present[i, j]:
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="white", edgecolor="none"))
                    continue
                e = next(e for e in es if e["alpha"] == alphas[i] and e["beta"] == betas[j])
                txt = fmt_ratio(e.get("ratio"))
                if e.get("diverged_seeds"):
                    txt += f"\n{e['diverged_seeds']}✗"
                val = Z[i, j]
                dark = np.isfinite(val) and abs(math.log(val)) > 0.62 * math.log(R)
                ax.text(j, i, txt, ha="center", va="center", fontsize=8 if len(betas) <= 8 else 6.5, zorder=7,
                        color="white" if dark else "black",
                        path_effects=[pe.withStroke(linewidth=2.2, foreground=cmap(norm(val)) if np.isfinite(val)
                                                    else "0.82")])  # fmt: skip
        # cell borders
        ax.set_xticks(np.arange(len(betas) + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(len(alphas) + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="white", lw=1.2)
        ax.tick_params(which="minor", length=0)
        ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
        ax.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
        ax.set_xlabel("β  (weight of F)")
        ax.set_ylabel("α  (weight of G∘F)")
        # alpha = beta, mapped into cell-index coordinates
        lo, hi = max(alphas[0], betas[0]), min(alphas[-1], betas[-1])
        if hi > lo or (hi == lo and len(alphas) == len(betas) == 1):
            v = np.linspace(lo, hi, 200)
            xs = np.interp(v, betas, np.arange(len(betas))) if len(betas) > 1 else np.zeros_like(v)
            ys = np.interp(v, alphas, np.arange(len(alphas))) if len(alphas) > 1 else np.zeros_like(v)
            ax.plot(xs, ys, color="black", lw=1.3, ls=(0, (5, 3)), zorder=5, label="α = β")
            ax.legend(loc="upper right", bbox_to_anchor=(1.0, -0.13), frameon=False, fontsize=8.5,
                      handlelength=2.4, borderaxespad=0.0)  # fmt: skip
        ax.set_xlim(-0.5, len(betas) - 0.5)
        ax.set_ylim(-0.5, len(alphas) - 0.5)
        ax.set_title(f"{key[0]}, N = {key[1]:,}", fontsize=10)
    cb = fig.colorbar(im, ax=list(axes[0]), fraction=0.05 if npan == 1 else 0.03, pad=0.03)
    cb.set_label("test error / (k·α²)   (< 1: α·G(F) learned)")
    plots.log_ticks(cb.ax.yaxis, 1.0 / R, R)
    cb.ax.yaxis.set_minor_locator(NullLocator())
    inst = s.get("instance", {}) or {}
    it = _instance_text(inst, ("d", "k", "g_degree"))
    head = "Experiment 2: target β·F(x) + α·G(F(x)), error relative to k·α²"
    fig.suptitle(title or (f"{head}\n{it}" if it else head), fontsize=10.5)
    return fig


def _fmt_cell(mean, ci, below: bool, div: int) -> str:
    if mean is None:
        return "all diverged" if div else "-"
    else:
        txt = plots.fmt_num(mean) + ("*" if below else "")
        if ci and ci[0] is not None and ci[1] is not None:
            txt += f" [{plots.fmt_num(ci[0])}, {plots.fmt_num(ci[1])}]"
    if div:
        txt += f" ({div} div)"
    return txt




def _fmt_nstar(ns: Mapping) -> str:
    c = ns.get("censored")
    if c == "below_at_min_n":
        txt = f"<= {ns['bound']:,.0f} (below threshold already at the smallest N)"
    elif c == "never_below":
        txt = f"> {ns['bound']:,.0f} (never below threshold)"
    else:
        txt = f"{ns['estimate']:,.0f}"
        lo, hi = (ns.get("ci95") or [None, None])[:2]
        if lo is not None and hi is not None:
            txt += f" [{lo:,.0f}, {hi:,.0f}]"
    if c == "none" and ns.get("final_below") is False:
        txt += " (back above the threshold at the largest N)"
    if ns.get("cross_share") is not None:
        txt += f"  reached in {100 * ns['cross_share']:.0f}% of bootstrap resamples"
    return txt


def format_table(summary: Mapping) -> str:
    """Plain-text table of an experiment-1 or experiment-2 summary.

    Experiment 1: learner x N of ``mean test error [95% CI]`` (``*``: mean below the
    threshold; ``(j div)``: j seeds diverged, excluded from the mean), then ``n*`` per learner
    and the network-kernel separation per N. Experiment 2: per (learner, N) an alpha x beta
    table of ``error / (k alpha^2)``.
    """
    if not isinstance(summary, Mapping) or "rows" not in summary:
        raise ValueError("summary must be a summary dict (rbk.summarize_exp1 / summarize_exp2, or summary.json)")
    cells = summary.get("cells") or {}
    missing = cells.get("total", 0) - cells.get("done", 0)
    note = f"\n{missing} of {cells['total']} cells missing: run the same command to finish" if missing > 0 else ""
    if is_exp2_summary(summary):
        return _format_exp2(summary) + note
    thr = float(summary["threshold"])
    inst = _instance_text(summary.get("instance", {}) or {})
    lines = [f"Experiment 1{' (' + inst + ')' if inst else ''}: mean test error over seeds [95% t-CI]",
             f"threshold k*alpha^2 = {thr:g}; '*' = mean below threshold"]  # fmt: skip
    rows = summary["rows"]
    learners, seen = [], set()
    for r in rows:
        if r["learner"] not in seen:
            seen.add(r["learner"])
            learners.append(r["learner"])
    ns = sorted({r["n"] for r in rows})
    cols = [f"N={n:,}" for n in ns]
    cells = {}
    for r in rows:
        m = r["test_error_mean"]
        cells[(r["learner"], f"N={r['n']:,}")] = _fmt_cell(
            m, r.get("test_error_ci95"), m is not None and m < thr, r.get("diverged_seeds", 0)
        )
    seeds = sorted({r["seeds"] for r in rows})
    lines.append(f"seeds per cell: {', '.join(map(str, seeds))}")
    lines.append("")
    lines += plots.grid_table(learners, cols, cells, corner="learner")
    nstar = summary.get("n_star") or {}
    if nstar:
        lines += ["", "n* (N where the seed-mean log error crosses the threshold; bootstrap 95% CI):"]
        w = max(len(k) for k in nstar)
        lines += [f"  {k.ljust(w)}  {_fmt_nstar(v)}" for k, v in nstar.items()]
    sep = summary.get("separation") or []
    if sep:
        lines += ["", "separation (best kernel - best network test error, paired by seed, 95% t-CI):"]
        for e in sep:
            lo, hi = e["difference_ci95"]
            ci = f" [{plots.fmt_num(lo)}, {plots.fmt_num(hi)}]" if lo is not None and hi is not None else ""
            mark = "  significant" if e["significant"] else ""
            lines.append(
                f"  N={e['n']:,}: {e['best_kernel']} - {e['best_network']} = {plots.fmt_num(e['difference_mean'])}{ci}{mark}"
            )
    lines += _format_predicted(summary)
    return "\n".join(lines) + note


def _format_predicted(summary: Mapping) -> list[str]:
    """The kernels' spectrum-predicted ``n*`` and the separation ratio of an Experiment 1 summary."""
    pred = summary.get("predicted") or {}
    lines = []
    if pred:
        lines += ["", "predicted from each kernel's spectrum (eigenlearning estimate, ridge grid of the sweep):"]
        w = max(len(k) for k in pred)
        for k, v in pred.items():
            ns = v.get("n_star")
            lines.append(f"  {k.ljust(w)}  n* = " + (f"{ns:,.0f}" if ns is not None else "not below the threshold by N = 1e9"))
    ratio = summary.get("separation_ratio") or {}
    if ratio.get("value") is not None:
        lines += ["", f"separation ratio n*({ratio['kernel']}) / n*({ratio['network']}) = {plots.fmt_num(ratio['value'])} "
                      f"({ratio['basis']})"]  # fmt: skip
    elif ratio.get("note"):
        lines += ["", f"separation ratio: {ratio['note']}"]
    return lines


def _format_exp2(summary: Mapping) -> str:
    inst = _instance_text(summary.get("instance", {}) or {}, ("d", "k", "g_degree"))
    lines = [f"Experiment 2{' (' + inst + ')' if inst else ''}: test error / (k*alpha^2); '*' = below 1"]
    panels: dict[tuple, list] = {}
    for e in summary["rows"]:
        panels.setdefault((e["learner"], e["n"]), []).append(e)
    for (learner, n), es in panels.items():
        alphas = sorted({e["alpha"] for e in es}, reverse=True)
        betas = sorted({e["beta"] for e in es})
        cells = {}
        for e in es:
            r = e.get("ratio")
            txt = fmt_ratio(r) + ("*" if r is not None and r < 1 else "")
            if e.get("diverged_seeds"):
                txt += f" ({e['diverged_seeds']} div)"
            cells[(f"alpha={e['alpha']:g}", f"beta={e['beta']:g}")] = txt
        lines += ["", f"{learner}, N={n:,}:"]
        lines += plots.grid_table([f"alpha={a:g}" for a in alphas], [f"beta={b:g}" for b in betas], cells, corner="")
    return "\n".join(lines)


def print_table(summary: Mapping) -> None:
    """Print :func:`format_table` of ``summary``."""
    print(format_table(summary))
