"""Experiment 3's figures: the test error against N per d (measured points, predicted curves
dashed) and ``n*`` against ``d`` with the fitted and theory slopes (:func:`plot`)."""

from __future__ import annotations

import numpy as np

from rbk.experiments.multi_index.predicted import draw_curve, draw_n_star

#: One colour per Experiment 3 learner.
COLORS = {"two-stage": "C0", "giant-step": "C5", "2nn": "C2", "ntk-2nn": "C3", "nngp-2nn": "C1", "rf-2nn": "C4"}


def plain_ticks(axis) -> None:
    from matplotlib import ticker

    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def plot(summary, out_dir) -> list:
    """Figure 1 ``exp3_error_vs_n``: mean test error (band: range over seeds) against N, one panel per d,
    every learner, threshold line. Figure 2 ``exp3_nstar_vs_d``: ``n*`` against ``d`` (log-log)
    with CIs (open markers with an arrow: censored at the grid bound), the fitted lines and the
    theory's slopes (dotted, through the fit's centre)."""
    from pathlib import Path

    from rbk import plots

    plt = plots.plt
    out_dir = Path(out_dir)
    ds = summary["instance"]["ds"]
    learners = list(summary["n_star"])
    fig, axes = plt.subplots(1, len(ds), figsize=(3.6 * len(ds), 3.4), sharey=True, squeeze=False)
    for ax, d in zip(axes[0], ds):
        for lr in learners:
            rs = sorted((e for e in summary["rows"] if e["learner"] == lr and e["d"] == d), key=lambda e: e["n"])
            rs = [e for e in rs if e["test_error_mean"] is not None]
            if not rs:
                continue
            n = [e["n"] for e in rs]
            m = np.array([e["test_error_mean"] for e in rs])
            ax.plot(n, m, "o-", color=COLORS.get(lr), label=lr, ms=3)
            ax.fill_between(n, [e["test_error_min"] for e in rs], [e["test_error_max"] for e in rs],
                            color=COLORS.get(lr), alpha=0.15)
        for lr, by_d in summary.get("predicted", {}).items():
            if str(d) in by_d:
                draw_curve(ax, by_d[str(d)], COLORS.get(lr), max(e["n"] for e in summary["rows"]))
        thr = summary["thresholds"].get(str(d))
        if thr:
            ax.axhline(thr, color="k", ls="--", lw=0.8)
        ax.set(xscale="log", yscale="log", title=f"d = {d}", xlabel="N")
        plain_ticks(ax.xaxis)
    axes[0][0].set_ylabel("test error / E[f*^2]")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"Experiment 3: {summary['instance']['target']}, p = {summary['instance']['p']} "
                 f"(dashed black: threshold E_p; dashed: predicted from the spectrum)", fontsize=9)
    made = list(plots.save(fig, out_dir, "exp3_error_vs_n"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    for lr, by_d in summary.get("predicted", {}).items():
        draw_n_star(ax, by_d, summary["slopes"].get(lr), COLORS.get(lr), lr)
    for lr, s in summary["slopes"].items():
        if s["basis"] != "measured":
            continue
        c = COLORS.get(lr)
        x = np.array(s["x"])
        by_d = summary["n_star"][lr]
        for d, y in zip(x, s["n_star"]):
            st = by_d[str(int(d))]
            if st["censored"] == "none":
                lo, hi = st["ci95"]
                err = None if lo is None else [[y - lo], [hi - y]]
                ax.errorbar([d], [y], yerr=err, fmt="o", color=c, ms=4, capsize=2)
            else:
                up = st["censored"] == "never_below"
                ax.plot([d], [y], "^" if up else "v", mfc="none", color=c, ms=6)
        xx = np.geomspace(x.min(), x.max(), 20)
        bound = f" (censored: a {s['bound']} bound)" if s.get("censored") else ""
        ax.plot(xx, np.exp(s["intercept"]) * xx ** s["slope"], "-" if not bound else "-.", color=c,
                label=f"{lr}: {s['slope']:.2f} [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]{bound}")
        um = np.mean(np.log(x))
        vm = s["intercept"] + s["slope"] * um
        ax.plot(xx, np.exp(vm + s["theory"] * (np.log(xx) - um)), ":", color=c, lw=1)
    ax.set(xscale="log", yscale="log", xlabel="d", ylabel="n* (first crossing of the threshold)")
    ax.set_xticks(sorted(set(ds) | {int(d) for by_d in summary.get("predicted", {}).values() for d in by_d}))
    plain_ticks(ax.xaxis)
    ax.set_title("n* against d: fitted slopes [95% CI]; dotted: theory (2 networks, p kernels)", fontsize=8)
    ax.legend(fontsize=7)
    made += list(plots.save(fig, out_dir, "exp3_nstar_vs_d"))
    plt.close(fig)
    if summary.get("separations"):
        made += plot_separations(summary, out_dir)
    return made


def plot_separations(summary, out_dir) -> list:
    """Figure 3 ``exp3_separations``: one panel per threshold ``theta``, each (d, seed)'s ``n*`` of
    the network (dots) and the kernel (filled: measured; open diamonds: predicted from the spectrum;
    triangles: censored bounds), the interval-regression lines and the bands of their paired
    bootstrap slopes (pivoting at the mean ``log d``), for the entry of basis ``mixed`` (else the
    first) of each threshold."""
    from pathlib import Path

    from rbk import plots

    plt = plots.plt
    pick = {}
    for e in summary["separations"]:
        if e["theta"] not in pick or e["basis"] == "mixed":
            pick[e["theta"]] = e
    fig, axes = plt.subplots(1, len(pick), figsize=(4.2 * len(pick), 3.8), squeeze=False, sharey=True)
    for ax, (theta, e) in zip(axes[0], sorted(pick.items())):
        for who, name in (("network", e["network"]), ("kernel", e["kernel"])):
            c = COLORS.get(name)
            pts = np.array(e[f"points_{who}"], float)  # (d, seed, lo, hi); hi null on disk: infinite
            pts[:, 3] = np.where(np.isnan(pts[:, 3]), np.inf, pts[:, 3])
            exact = pts[:, 2] == pts[:, 3]
            pred = np.zeros(len(pts), bool)
            if who == "kernel":  # the kernel's predicted points (open diamonds), not measured crossings
                pred = exact & np.array([_is_predicted(summary, e, p) for p in pts])
            ax.plot(pts[exact & ~pred, 0], pts[exact & ~pred, 2], "o", color=c, ms=3, alpha=0.6)
            ax.plot(pts[pred, 0], pts[pred, 2], "D", mfc="none", color=c, ms=5)
            up = np.isinf(pts[:, 3])
            ax.plot(pts[up, 0], pts[up, 2], "^", mfc="none", color=c, ms=5)
            slope, icpt = e[f"slope_{who}"], e[f"intercept_{who}"]
            if icpt is None:
                continue
            x = np.geomspace(pts[:, 0].min(), pts[:, 0].max(), 20)
            um = np.mean(np.log(pts[:, 0]))
            vm = icpt + slope * um
            ax.plot(x, np.exp(vm + slope * (np.log(x) - um)), "-", color=c,
                    label=f"{name} ({who}): {slope:.2f}")
            ci = e[f"ci95_{who}"]
            if ci:
                lo, hi = (np.exp(vm + s * (np.log(x) - um)) for s in ci)
                ax.fill_between(x, np.minimum(lo, hi), np.maximum(lo, hi), color=c, alpha=0.15)
        lo, hi = e["difference"]["ci95"] or (np.nan, np.nan)
        ax.set(xscale="log", yscale="log", xlabel="d",
               title=f"theta = {theta:g} ({e['basis']}): difference {e['difference']['mean']:.2f} "
                     f"[{lo:.2f}, {hi:.2f}]")
        ax.title.set_fontsize(8)
        ax.set_xticks(sorted({int(p[0]) for p in e["points_network"]}))
        plain_ticks(ax.xaxis)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("n* per (d, seed)")
    made = list(plots.save(fig, Path(out_dir), "exp3_separations"))
    plt.close(fig)
    return made


def _is_predicted(summary, e, point) -> bool:
    """Whether a kernel point of a separation entry is its predicted ``n*`` (not a measured crossing)."""
    if e["basis"] == "predicted":
        return True
    if e["basis"] == "measured":
        return False
    by = summary["by_theta"].get(f"{e['theta']:g}", {}).get("predicted_n_star", {}).get(e["kernel"], {})
    v = by.get(str(int(point[0])))
    return v is not None and abs(point[2] - v) <= 1e-9 * v
