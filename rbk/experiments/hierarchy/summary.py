"""The summary of Experiment 4 (``summary.json``: thresholds, test error against N, ``n*``, the
paired ``ntk-deep - deep-joint`` difference, per-level feature quality of both regimes) and its
printed table (:func:`format_table`)."""

from __future__ import annotations

import math

import numpy as np

from rbk.experiments.hierarchy.study import LEARNERS, Exp4Spec




def _paired(a: dict, b: dict) -> dict:
    """Paired (by seed) ``a - b`` of two ``{seed: value}`` maps, with its Student-t 95 % CI."""
    from rbk import stats

    seeds = sorted(s for s in a if s in b and math.isfinite(a[s] - b[s]))
    diffs = [a[s] - b[s] for s in seeds]
    m, lo, hi = stats.t_ci(diffs)
    return {"mean": m, "ci95": [lo, hi], "seeds": len(seeds), "per_seed": dict(zip(seeds, diffs))}


def _ci(values) -> dict:
    from rbk import stats

    vals = [v for v in values if math.isfinite(v)]
    m, lo, hi = stats.t_ci(vals)
    return {"mean": m, "ci95": [lo, hi], "seeds": len(vals)}


def summarize(spec: Exp4Spec, rows, *, quiet: bool = False) -> dict:
    """``summary.json`` of Experiment 4 (see the module doc)."""
    from rbk import stats

    target = spec.target()
    thr = float(target.threshold)
    sel = stats.select(rows, keys=("experiment", "learner", "n", "seed"))
    by = {}
    for r in sel:
        by.setdefault((r["learner"], r["n"]), {})[r["seed"]] = r
    out_rows, nstar = [], {}
    for name in [l for l in spec.learners if any(k[0] == l for k in by)]:
        for n in sorted(k[1] for k in by if k[0] == name):
            cell = by[(name, n)]
            tests = [cell[s]["test_error"] for s in sorted(cell)]
            fin = [t for t in tests if math.isfinite(t)]
            m, lo, hi = stats.t_ci(fin)
            chosen = [cell[s].get("lr") if LEARNERS[name].kind == "net" else cell[s].get("ridge") for s in sorted(cell)]
            out_rows.append({"learner": name, "kind": LEARNERS[name].kind, "n": n, "test_error_mean": m,
                             "test_error_ci95": [lo, hi], "seeds": len(fin), "diverged_seeds": len(tests) - len(fin),
                             "per_seed": tests, "chosen": chosen,
                             "below_threshold": bool(math.isfinite(hi) and hi < thr),
                             "above_threshold": bool(math.isfinite(lo) and lo > thr)})  # fmt: skip
        nstar[name] = stats.n_star([r for r in sel if r["learner"] == name], thr)
    summary = {
        "experiment": spec.experiment,
        "instance": {"d": spec.d, "widths": list(spec.widths), "alphas": list(spec.alphas), "readout": spec.readout,
                     "first": spec.first, "skip": spec.skip, "levels": spec.levels,
                     "second_moment": float(target.info["second_moment"])},  # fmt: skip
        "threshold": thr,
        "thresholds": {str(l): float(v) for l, v in sorted(target.info["thresholds"].items()) if l >= 2},
        "degree_energy": [float(v) for v in np.asarray(target.info["degree_energy"])],
        "rows": out_rows,
        "n_star": nstar,
        "stage_epochs": [spec.epochs * l // spec.levels for l in range(1, spec.levels)],
    }
    nmax = max(r["n"] for r in sel)
    summary["largest_n"] = nmax

    def test_of(name, n):
        return {s: r["test_error"] for s, r in by.get((name, n), {}).items()}

    if "deep-joint" in spec.learners and "ntk-deep" in spec.learners:
        summary["ntk_minus_joint"] = [
            {"n": n, **_paired(test_of("ntk-deep", n), test_of("deep-joint", n))}
            for n in spec.ns if (("ntk-deep", n) in by and ("deep-joint", n) in by)
        ]  # fmt: skip
        at = [p for p in summary["ntk_minus_joint"] if p["n"] == nmax]
        summary["ntk_minus_joint_at_largest_n"] = at[0] if at else None
    if "deep-joint" in spec.learners and "deep-layerwise" in spec.learners:
        summary["feature_quality"] = _feature_quality(spec, by, nmax)
    summary["predicted"] = predictions(spec)
    summary["bar"] = _bar(summary)
    return summary


def predictions(spec: Exp4Spec) -> dict:
    """``summary["predicted"]``: per exact-kernel learner run (and ``ntk-deep`` whenever a network
    is), ``{str(d): {"n_star", "n_star_by_level", "ns", "test_error", ...}}`` from the kernel's
    Gaussian spectrum and the hierarchy's exact harmonic power (:func:`rbk.theory.predicted_curves`
    over the learner's ridges, ``ns`` from the measured grid to ``N = 1e7``); ``n_star`` at the
    deepest level's threshold, ``n_star_by_level`` at every level's (levels >= 2)."""
    from rbk import theory

    names = {lr: LEARNERS[lr].kind for lr in spec.learners if LEARNERS[lr].kind in ("ntk", "nngp")}
    if any(LEARNERS[lr].kind == "net" for lr in spec.learners):
        names.setdefault("ntk-deep", "ntk")
    target = spec.target()
    levels = {str(l): float(v) for l, v in sorted(target.info["thresholds"].items()) if l >= 2}
    out = {}
    for lr, get in names.items():
        by_d = theory.predicted_curves(spec.kernel_fn(), [target], [spec.d], spec.ns, spec.ridges, get=get,
                                       threshold=float(target.threshold), more_thresholds=levels)  # fmt: skip
        for v in by_d.values():
            v["n_star_by_level"] = v.pop("n_star_by_threshold")
        out[lr] = by_d
    return out


def _has_quality(row: dict) -> bool:
    """A selected row with a feature quality to summarise (a diverged member's is null inside)."""
    return row.get("feature_quality") is not None and not row.get("diverged")


def _quality_curves(cell: dict) -> tuple[list, np.ndarray]:
    """``(record_epochs, (seeds, R, levels) array)`` of one (learner, N)'s selected rows."""
    seeds = sorted(s for s in cell if _has_quality(cell[s]))
    if not seeds:
        return [], np.zeros((0, 0, 0))
    return list(cell[seeds[0]]["record_epochs"]), np.array([cell[s]["feature_quality"] for s in seeds], dtype=float)


def _feature_quality(spec: Exp4Spec, by: dict, n: int) -> list[dict]:
    """Per level: paired joint - layer-wise quality at the end of training at ``n``, and both
    regimes' mean curves over training with CI bands."""
    joint, layer = by.get(("deep-joint", n), {}), by.get(("deep-layerwise", n), {})
    out = []
    for lvl in range(1, spec.levels + 1):

        def end(cell):
            return {s: float(r["feature_quality"][-1][lvl - 1]) for s, r in cell.items()
                    if _has_quality(r)}  # fmt: skip

        entry = {"level": lvl, "n": n, "joint": _ci(end(joint).values()), "layerwise": _ci(end(layer).values()),
                 "joint_minus_layerwise": _paired(end(joint), end(layer))}  # fmt: skip
        curves = {}
        for name, cell in (("joint", joint), ("layerwise", layer)):
            epochs, q = _quality_curves(cell)
            if q.size == 0:
                continue
            stats_ = [_ci(q[:, i, lvl - 1]) for i in range(q.shape[1])]
            curves[name] = {"epochs": epochs, "mean": [c["mean"] for c in stats_], "ci95": [c["ci95"] for c in stats_]}
        entry["over_training"] = curves
        out.append(entry)
    return out


def _bar(summary: dict) -> dict:
    """The issue's three checks, as read from the summary (at the largest N)."""
    n = summary["largest_n"]
    thr = summary["threshold"]
    rows = {r["learner"]: r for r in summary["rows"] if r["n"] == n}
    out = {}
    if "deep-joint" in rows:
        out["joint_below_threshold"] = rows["deep-joint"]["below_threshold"]
    if "ntk-deep" in rows:
        out["ntk_above_threshold"] = rows["ntk-deep"]["above_threshold"]
    p = summary.get("ntk_minus_joint_at_largest_n")
    if p:
        out["ntk_minus_joint_ci_above_zero"] = bool(math.isfinite(p["ci95"][0]) and p["ci95"][0] > 0)
    for fq in summary.get("feature_quality", []):
        if fq["level"] == 2:
            lo = fq["joint_minus_layerwise"]["ci95"][0]
            out["level2_quality_ci_above_zero"] = bool(math.isfinite(lo) and lo > 0)
    out["threshold"] = thr
    return out

# --------------------------------------------------------------------------------------------
# table and figures
# --------------------------------------------------------------------------------------------


def fmt_ci(m, ci) -> str:
    lo, hi = ci
    if not math.isfinite(m):
        return "-"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{m:.4f}"
    return f"{m:.4f} [{lo:.4f}, {hi:.4f}]"


def format_table(summary) -> str:
    """The printed summary: test error per learner and N, thresholds, paired differences, feature quality."""
    inst = summary["instance"]
    lines = [f"Experiment 4: d={inst['d']} widths={inst['widths']} alphas={inst['alphas']} readout={inst['readout']} "
             f"E[y^2]={inst['second_moment']:.4f}",
             "thresholds: " + ", ".join(f"level {l}: {v:.4f}" for l, v in summary["thresholds"].items())
             + f"  (deepest: {summary['threshold']:.4f})", ""]  # fmt: skip
    ns = sorted({r["n"] for r in summary["rows"]})
    names = list(dict.fromkeys(r["learner"] for r in summary["rows"]))
    cells = {(r["learner"], r["n"]): r for r in summary["rows"]}
    lines.append("| learner | " + " | ".join(f"N={n}" for n in ns) + " | n* |")
    lines.append("|---" * (len(ns) + 2) + "|")
    for name in names:
        vals = []
        for n in ns:
            r = cells.get((name, n))
            vals.append("-" if r is None else fmt_ci(r["test_error_mean"], r["test_error_ci95"])
                        + (" *" if r["below_threshold"] else ""))  # fmt: skip
        ns_ = summary["n_star"].get(name, {})
        est = ns_.get("estimate")
        nst = (f"{est:.0f}" if isinstance(est, float) and math.isfinite(est) else ns_.get("censored", "-"))
        lines.append(f"| {name} | " + " | ".join(vals) + f" | {nst} |")
    lines.append("(* : the 95 % CI lies below the deepest threshold)")
    p = summary.get("ntk_minus_joint_at_largest_n")
    if p:
        lines.append(f"\nntk-deep - deep-joint at N={summary['largest_n']} (paired by seed): "
                     f"{fmt_ci(p['mean'], p['ci95'])}")  # fmt: skip
    if summary.get("feature_quality"):
        lines.append(f"\nfeature quality at the end of training, N={summary['largest_n']} (held-out R^2 of S_l from h_l):")
        lines.append("| level | joint | layer-wise | joint - layer-wise (paired) |")
        lines.append("|---|---|---|---|")
        for fq in summary["feature_quality"]:
            lines.append(f"| {fq['level']} | {fmt_ci(fq['joint']['mean'], fq['joint']['ci95'])} | "
                         f"{fmt_ci(fq['layerwise']['mean'], fq['layerwise']['ci95'])} | "
                         f"{fmt_ci(fq['joint_minus_layerwise']['mean'], fq['joint_minus_layerwise']['ci95'])} |")  # fmt: skip
    lines.append("\nbar: " + ", ".join(f"{k}={v}" for k, v in summary.get("bar", {}).items() if k != "threshold"))
    return "\n".join(lines)
