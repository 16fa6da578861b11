"""The summary of Experiment 4 (``summary.json``: thresholds, test error against N, ``n*`` in
labels, the paired ``ntk-deep - deep-joint`` difference, per-level feature quality of every deep
regime over training, the backward correction against its stop-gradient ablation, the kernel's
predicted curve and the comparison of ``n*``) and its printed table (:func:`format_table`)."""

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
            chosen = [_chosen(name, cell[s]) for s in sorted(cell)]
            out_rows.append({"learner": name, "kind": LEARNERS[name].kind, "n": n, "test_error_mean": m,
                             "test_error_ci95": [lo, hi], "seeds": len(fin), "diverged_seeds": len(tests) - len(fin),
                             "per_seed": tests, "chosen": chosen,
                             "below_threshold": bool(math.isfinite(hi) and hi < thr),
                             "above_threshold": bool(math.isfinite(lo) and lo > thr)})  # fmt: skip
        # every label the learner read: its N training points and the n_val it selected on
        nstar[name] = stats.n_star([dict(r, n=r.get("labels") or r["n"]) for r in sel if r["learner"] == name], thr)
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
        "n_star_counts": f"labels: the N training points, plus the n_val = {spec.n_val} validation labels for a "
                         "learner that selects among several settings",
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
        at = summary["ntk_minus_joint"][-1:]  # the largest N both ran at
        summary["ntk_minus_joint_at_largest_n"] = at[0] if at else None
    net_nmax = max([r["n"] for r in sel if LEARNERS[r["learner"]].kind == "net"] or [nmax])
    summary["largest_network_n"] = net_nmax
    if "deep-joint" in spec.learners and "deep-layerwise" in spec.learners:
        summary["feature_quality"] = _feature_quality(spec, by, net_nmax)
    summary["quality_over_training"] = _quality_over_training(spec, by, net_nmax)
    summary["correction"] = correction(spec, by, net_nmax)
    summary["predicted"] = predictions(spec)
    summary["comparison"] = _comparison(summary)
    summary["bar"] = _bar(summary)
    return summary


def _chosen(name: str, row: dict):
    """The selected setting of a row: the learning rate (networks), ``[eta, ridge]`` (two-stage), the ridge (kernels)."""
    if name == "two-stage":
        return [row.get("eta"), row.get("ridge")]
    return row.get("lr") if LEARNERS[name].kind == "net" else row.get("ridge")


#: The measures of a level's quality in the rows: the span of ``h_l``'s top ``k_l`` components
#: against the teacher's (not saturated by the width) and the ridge R^2 of ``S_l`` from all of ``h_l``.
MEASURES = {"subspace": "subspace_quality", "ridge_r2": "feature_quality"}


def _level_quality(row: dict, field: str, level: int, epoch: int | None = None) -> float:
    """Level ``level``'s quality in ``row`` at the recorded ``epoch`` (``None``: the end of training)."""
    q = row.get(field)
    if q is None or row.get("diverged"):
        return math.nan
    i = -1 if epoch is None else list(row["record_epochs"]).index(epoch)
    v = q[i][level - 1]
    return math.nan if v is None else float(v)


def correction(spec: Exp4Spec, by: dict, n: int) -> list[dict]:
    """The backward feature correction at ``n``, per level ``l < L``, regime (``progressive``, and
    ``joint``) and measure (:data:`MEASURES`): ``gain`` is level ``l``'s quality at the end of
    training minus at the epoch level ``l + 1`` starts training in the progressive schedule (the
    end of stage ``l``; joint training trains every level from epoch 0, so its gain is taken over
    the same epochs), ``ablation_gain`` the same for ``deep-stopgrad`` (the progressive schedule
    with no gradient from level ``l + 1`` into levels ``<= l``), and ``difference`` = gain minus
    ablation gain, paired by seed (each regime's own selected learning rate): what the backward
    path adds to level ``l``'s features. Empty without ``deep-stopgrad``."""
    ablation = by.get(("deep-stopgrad", n), {})
    if not ablation:
        return []
    out = []
    for measure, field in MEASURES.items():
        for regime in ("progressive", "joint"):
            cell = by.get((f"deep-{regime}", n), {})
            if not cell:
                continue
            for lvl in range(1, spec.levels):
                start = spec.epochs * lvl // spec.levels

                def gain(c):
                    return {s: _level_quality(r, field, lvl) - _level_quality(r, field, lvl, start) for s, r in c.items()}

                g, a = gain(cell), gain(ablation)
                out.append({"level": lvl, "regime": regime, "measure": measure, "n": n, "from_epoch": start,
                            "gain": _ci(g.values()), "ablation_gain": _ci(a.values()), "difference": _paired(g, a)})
    return out


def _quality_over_training(spec: Exp4Spec, by: dict, n: int) -> dict:
    """``{regime: {measure: {"epochs", "mean": (R, L), "ci95": (R, L, 2)}}}`` of every deep regime run, at ``n``."""
    out = {}
    for name in [lr for lr in spec.learners if lr.startswith("deep-")]:
        cell = by.get((name, n), {})
        seeds = sorted(s for s, r in cell.items() if _has_quality(r))
        if not seeds:
            continue
        epochs = list(cell[seeds[0]]["record_epochs"])
        entry = {}
        for measure, field in MEASURES.items():
            if any(cell[s].get(field) is None for s in seeds):
                continue
            q = np.array([cell[s][field] for s in seeds], dtype=float)  # (seeds, R, L)
            cis = [[_ci(q[:, i, l]) for l in range(q.shape[2])] for i in range(q.shape[1])]
            entry[measure] = {"epochs": epochs, "seeds": len(seeds), "mean": [[c["mean"] for c in r] for r in cis],
                              "ci95": [[c["ci95"] for c in r] for r in cis]}
        out[name.removeprefix("deep-")] = entry
    return out


def _comparison(summary: dict) -> dict:
    """The deepest threshold's ``n*`` side by side: the deep networks' and the two-stage control's
    (measured, in labels), the NTK's (measured where its curve crosses, and predicted from its
    spectrum, in training points with the best ridge: no selection labels, in the kernel's
    favour), and the ratio of the NTK's to the best deep network's."""
    d = str(summary["instance"]["d"])
    ns = summary["n_star"]

    def measured(name):
        v = ns.get(name)
        if v is None:
            return None
        est = v.get("estimate")
        return {"estimate": est, "ci95": v.get("ci95"), "censored": v.get("censored"), "bound": v.get("bound")}

    out = {name: measured(name) for name in ns}
    pred = summary.get("predicted", {}).get("ntk-deep", {}).get(d)
    out["ntk-deep (predicted)"] = None if pred is None else {"estimate": pred["n_star"]}
    deep = [v["estimate"] for k, v in out.items() if k in ("deep-joint", "deep-progressive") and v is not None
            and isinstance(v.get("estimate"), float) and math.isfinite(v["estimate"])]  # fmt: skip
    kern = [v["estimate"] for k, v in out.items() if k.startswith("ntk-deep") and v is not None
            and isinstance(v.get("estimate"), float) and math.isfinite(v["estimate"])]  # fmt: skip
    best = min(deep) if deep else math.nan
    out["ntk_over_deep"] = min(kern) / best if deep and kern else math.nan
    return out


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
    """The checks, as read from the summary: the deep networks at their largest N, the NTK at its
    own, the correction's paired differences, the ratio of ``n*``."""
    thr = summary["threshold"]
    net_n = summary.get("largest_network_n", summary["largest_n"])
    last = {}
    for r in summary["rows"]:
        if r["learner"] not in last or r["n"] > last[r["learner"]]["n"]:
            last[r["learner"]] = r
    rows = {k: v for k, v in last.items() if v["n"] == net_n or LEARNERS[k].kind != "net"}
    out = {}
    for name in ("deep-joint", "deep-progressive"):
        if name in rows:
            out[f"{name.removeprefix('deep-')}_below_threshold"] = rows[name]["below_threshold"]
    if "ntk-deep" in rows:
        out["ntk_above_threshold"] = rows["ntk-deep"]["above_threshold"]
    corr = [c for c in summary.get("correction", []) if math.isfinite(c["difference"]["ci95"][0])]
    if corr:
        out["correction_ci_above_zero"] = sorted({f"level {c['level']} {c['regime']} ({c['measure']})" for c in corr
                                                  if c["difference"]["ci95"][0] > 0})  # fmt: skip
    ratio = summary.get("comparison", {}).get("ntk_over_deep")
    if ratio is not None:
        out["ntk_n_star_over_deep"] = ratio
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
    corr = summary.get("correction") or []
    if corr:
        lines.append(f"\nbackward correction at N={corr[0]['n']}: level l's quality gain after level l+1 starts, "
                     "minus the stop-gradient ablation's (paired by seed):")
        lines.append("| level | regime | measure | gain | ablation gain | difference |")
        lines.append("|---|---|---|---|---|---|")
        for c in corr:
            lines.append(f"| {c['level']} | {c['regime']} | {c['measure']} | {fmt_ci(c['gain']['mean'], c['gain']['ci95'])} | "
                         f"{fmt_ci(c['ablation_gain']['mean'], c['ablation_gain']['ci95'])} | "
                         f"{fmt_ci(c['difference']['mean'], c['difference']['ci95'])} |")  # fmt: skip
    comp = summary.get("comparison") or {}
    if comp:
        def _est(v):
            if not v:
                return "-"
            e = v.get("estimate")
            if isinstance(e, float) and math.isfinite(e):
                return f"{e:.4g}"
            return f"{v.get('censored')} (bound {v.get('bound')})"

        lines.append("\nn* at the deepest threshold (labels; the prediction: training points, best ridge): "
                     + ", ".join(f"{k} {_est(v)}" for k, v in comp.items() if k != "ntk_over_deep")
                     + f"; NTK / deep: {comp.get('ntk_over_deep', math.nan):.3g}")  # fmt: skip
    lines.append("\nbar: " + ", ".join(f"{k}={v}" for k, v in summary.get("bar", {}).items() if k != "threshold"))
    return "\n".join(lines)
