"""The figures of Experiment 4: test error against N per learner with the thresholds, each
level's feature quality over training for the joint and layer-wise regimes, and the backward
correction (every deep regime's span and ridge quality over training, the ablation beside)."""

from __future__ import annotations

import numpy as np

from rbk.experiments.hierarchy.study import EXPERIMENT
from rbk.experiments.hierarchy.summary import fmt_ci


def plot(summary, out_dir) -> list:
    """Figure 1 ``exp4.png/.pdf``: test error against N per learner, each level's threshold drawn;
    figure 2 ``exp4_features.png/.pdf``: feature quality over training per level, joint vs
    layer-wise (mean over seeds, 95 % CI band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rbk.plots import save

    paths = []
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    names = list(dict.fromkeys(r["learner"] for r in summary["rows"]))
    styles = {"deep-joint": ("C0", "o", "-"), "deep-layerwise": ("C1", "s", "-"), "deep-progressive": ("C4", "v", "-"),
              "deep-stopgrad": ("C6", "P", "-."), "ntk-deep": ("C3", "^", "--"), "nngp-deep": ("C5", "D", "--"),
              "2nn": ("C2", "x", ":"), "two-stage": ("C7", "*", "-")}  # fmt: skip
    for name in names:
        rs = sorted((r for r in summary["rows"] if r["learner"] == name), key=lambda r: r["n"])
        n = np.array([r["n"] for r in rs], float)
        m = np.array([r["test_error_mean"] for r in rs], float)
        lo = np.array([r["test_error_ci95"][0] for r in rs], float)
        hi = np.array([r["test_error_ci95"][1] for r in rs], float)
        c, mk, ls = styles.get(name, ("0.3", "o", "-"))
        ax.plot(n, m, marker=mk, ls=ls, color=c, label=name)
        ok = np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            ax.fill_between(n[ok], np.maximum(lo[ok], 1e-6), hi[ok], color=c, alpha=0.15, lw=0)
    top = max(r["n"] for r in summary["rows"])
    for name, by_d in summary.get("predicted", {}).items():  # dashed: predicted from the kernel's spectrum
        cur = by_d[str(summary["instance"]["d"])]
        n = np.array(cur["ns"], float)
        keep = n <= top
        ax.plot(n[keep], np.array(cur["test_error"])[keep], ls=(0, (4, 2)), lw=1, color=styles.get(name, ("0.3",))[0],
                label=f"{name} predicted")
    for i, (lvl, thr) in enumerate(summary["thresholds"].items()):
        ax.axhline(thr, color="0.2", lw=0.9, ls=(0, (1 + i, 2)))
        ax.annotate(f"level {lvl} threshold {thr:.3g}", xy=(0.01, thr), xycoords=("axes fraction", "data"),
                    xytext=(0, 2), textcoords="offset points", fontsize=8, color="0.2")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training samples N")
    ax.set_ylabel("test error (mean over seeds, 95 % CI)")
    inst = summary["instance"]
    ax.set_title(f"Experiment 4: d={inst['d']}, widths {inst['widths']}, readout {inst['readout']}", fontsize=10)
    ax.legend(fontsize=8)
    paths += list(save(fig, out_dir, EXPERIMENT))
    fqs = [fq for fq in summary.get("feature_quality", []) if fq["level"] >= 2 and fq["over_training"]]
    if fqs:
        fig, axes = plt.subplots(1, len(fqs), figsize=(4.0 * len(fqs), 3.4), squeeze=False)
        for ax, fq in zip(axes[0], fqs):
            for name, c in (("joint", "C0"), ("layerwise", "C1")):
                cur = fq["over_training"].get(name)
                if not cur:
                    continue
                e = np.array(cur["epochs"], float)
                m = np.array(cur["mean"], float)
                lo = np.array([v[0] for v in cur["ci95"]], float)
                hi = np.array([v[1] for v in cur["ci95"]], float)
                ax.plot(e, m, marker="o", color=c, label=f"deep-{name}")
                ok = np.isfinite(lo) & np.isfinite(hi)
                ax.fill_between(e[ok], lo[ok], hi[ok], color=c, alpha=0.2, lw=0)
            for e in summary.get("stage_epochs", []):
                ax.axvline(e, color="0.6", lw=0.8, ls=":")
            d = fq["joint_minus_layerwise"]
            ax.set_title(f"level {fq['level']}: joint - layer-wise {fmt_ci(d['mean'], d['ci95'])}", fontsize=8.5)
            ax.set_xlabel("epoch")
            ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.02)
        axes[0][0].set_ylabel(f"feature quality (held-out R², N={fqs[0]['n']})")
        axes[0][0].legend(fontsize=8)
        paths += list(save(fig, out_dir, f"{EXPERIMENT}_features"))
    paths += _correction_figure(summary, out_dir, plt, save)
    return paths


def _correction_figure(summary, out_dir, plt, save) -> list:
    """``exp4_correction.png/.pdf``: per measure (rows) and level (columns), every deep regime's
    quality over training (mean over seeds, 95 % CI band), the stage ends dotted; the panel title
    gives the paired progressive - ablation difference of the gain after the next level starts."""
    qot = summary.get("quality_over_training") or {}
    if "stopgrad" not in qot:
        return []
    measures = [m for m in ("subspace", "ridge_r2") if any(m in v for v in qot.values())]
    levels = len(summary["instance"]["widths"])
    fig, axes = plt.subplots(len(measures), levels, figsize=(3.6 * levels, 3.0 * len(measures)), squeeze=False)
    colours = {"joint": "C0", "layerwise": "C1", "progressive": "C4", "stopgrad": "C6"}
    corr = {(c["level"], c["regime"], c["measure"]): c for c in summary.get("correction", [])}
    for i, measure in enumerate(measures):
        for lvl in range(1, levels + 1):
            ax = axes[i][lvl - 1]
            for regime, cur in qot.items():
                cur = cur.get(measure)
                if not cur:
                    continue
                e = np.array(cur["epochs"], float)
                m = np.array([row[lvl - 1] for row in cur["mean"]], float)
                lo = np.array([row[lvl - 1][0] for row in cur["ci95"]], float)
                hi = np.array([row[lvl - 1][1] for row in cur["ci95"]], float)
                ax.plot(e, m, marker=".", color=colours.get(regime, "0.3"), label=f"deep-{regime}",
                        ls="-." if regime == "stopgrad" else "-")
                ok = np.isfinite(lo) & np.isfinite(hi)
                ax.fill_between(e[ok], lo[ok], hi[ok], color=colours.get(regime, "0.3"), alpha=0.15, lw=0)
            for e in summary.get("stage_epochs", []):
                ax.axvline(e, color="0.6", lw=0.8, ls=":")
            c = corr.get((lvl, "progressive", measure))
            title = f"level {lvl}, {measure}"
            if c:
                title += f"\nprogr. - ablation gain {fmt_ci(c['difference']['mean'], c['difference']['ci95'])}"
            ax.set_title(title, fontsize=8)
            ax.set_xlabel("epoch")
            ax.set_ylim(-0.02, 1.02)  # both measures live in [0, 1] (the t bands of few seeds do not)
        axes[i][0].set_ylabel("span quality (mean cos²)" if measure == "subspace" else "held-out R² of S_l")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return list(save(fig, out_dir, f"{EXPERIMENT}_correction"))
