"""Spectral predictions of the exact-kernel learners on Gaussian inputs, for the multi-index summaries.

``summary["predicted"] = {learner: {str(d): {"n_star", "ns", "test_error", "ridge", "threshold",
"precision"}}}`` (:func:`rbk.theory.predicted_curves`: the Gaussian spectrum of the learner's
kernel, the target's exact harmonic power, the best of the learner's ridge grid at every ``N`` of
the measured grid and out to ``N = 1e7``). The target's power does not depend on its subspace
``U`` (the spectrum is rotation-invariant), so one draw per ``d`` serves every seed.
"""

from __future__ import annotations

import math

import numpy as np

#: Dimensions beyond the profile's at which Experiment 3 predicts the kernels' ``n*(d)``.
EXTRA_DS = (32, 48, 64, 96, 128)
#: Largest N of the predicted curves.
CURVE_MAX = 1e7


def kernel_predictions(names: dict, ds, ns, ridges, target_of_d, *, W_std: float, b_std: float, theta: float = 1.0,
                       thetas=()) -> dict:
    """``{learner: predicted_curves(...)}`` for ``names = {learner: 'ntk' or 'nngp'}`` (kernels of
    the two-layer ReLU net with ``W_std, b_std``) at each ``d`` of ``ds``; ``target_of_d(d)`` the target.

    ``n_star`` at ``theta`` times the target's threshold ``E_p`` and, with ``thetas``,
    ``n_star_by_threshold[f"{theta:g}"]`` at each of ``{theta} | thetas``."""
    from rbk import kernels, theory

    kfn = kernels.kernel_fn("2nn", W_std=W_std, b_std=b_std)
    out = {lr: {} for lr in names}
    for d in sorted(set(ds)):
        e_p = float(target_of_d(d).threshold)
        more = {f"{float(t):g}": float(t) * e_p for t in sorted({float(theta), *map(float, thetas)})} if thetas else None
        for lr, get in names.items():
            out[lr].update(theory.predicted_curves(kfn, target_of_d, [d], ns, ridges, get=get, curve_max=CURVE_MAX,
                                                   threshold=float(theta) * e_p, more_thresholds=more))
    return out


def seed_mean_prediction(kfn, get: str, heads: dict, ns, ridges, *, curve_max: float = CURVE_MAX) -> dict:
    """``{str(d): {"n_star", "ns", "test_error", "threshold", "seeds", "precision"}}``: the seed mean
    of the predicted curves of kernel ridge with ``kfn`` (its ``get`` kernel) on one target per
    seed, ``heads = {d: {seed: Target}}``, and ``n_star`` the first crossing of that mean curve.

    For targets whose power per eigenfunction depends on the seed (Experiment 3b's new head: its
    Gaussian coefficients, even their relative signs, are drawn per seed, and the cross terms of
    its Hermite degrees on the kernel's radial eigenfunctions follow them). The spectrum is
    computed once per ``d`` (:func:`rbk.theory.gaussian_spectrum`, default precision); each
    seed's exact power (:func:`rbk.theory.harmonic_power`) gives its best-of-``ridges`` curve
    (:func:`rbk.theory.grid_curve`: the ridge chosen per seed, as the measurement does).
    """
    from rbk import theory

    grid = theory.curve_grid(ns, curve_max)
    out = {}
    for d, by_seed in sorted(heads.items()):
        targets = [by_seed[s] for s in sorted(by_seed)]
        thr = {round(float(t.threshold), 12) for t in targets}
        if len(thr) != 1:
            raise ValueError(f"the targets at d = {d} have different thresholds {sorted(thr)}")
        spec = theory.gaussian_spectrum(kfn, int(d), get, max_degree=max(map(theory.default_max_degree, targets)))
        powers = [theory.harmonic_power(t, spec) for t in targets]

        def curve(n, spec=spec, powers=powers):
            return np.mean([theory.grid_curve(spec, pw, n, ridges)["test_error"] for pw in powers], axis=0)

        threshold = thr.pop()
        out[str(d)] = {"n_star": theory.n_star(curve, threshold), "ns": [int(n) for n in grid],
                       "test_error": [float(e) for e in np.atleast_1d(curve(np.asarray(grid, float)))],
                       "threshold": threshold, "seeds": sorted(by_seed), "precision": spec.precision()}
    return out


def predicted_slope(by_d: dict, theory_exponent: float) -> dict | None:
    """The least-squares slope of ``log n*`` on ``log d`` over the predicted ``n*`` (``None`` when
    fewer than two ``d`` cross by the search bound)."""
    from rbk import stats

    pts = sorted((int(d), v["n_star"]) for d, v in by_d.items() if v["n_star"] is not None)
    if len(pts) < 2:
        return None
    x, y = [p[0] for p in pts], [p[1] for p in pts]
    slope, intercept = stats.loglog_slope(x, y)
    return {"slope": slope, "intercept": intercept, "ci95": None, "censored": False, "bound": None, "x": x,
            "n_star": y, "theory": float(theory_exponent), "basis": "predicted",
            "not_crossing": sorted(int(d) for d, v in by_d.items() if v["n_star"] is None)}  # fmt: skip


def draw_curve(ax, curve: dict, color, n_hi: float) -> None:
    """A predicted curve (dashed) on ``ax`` up to ``n_hi``."""
    n = np.asarray(curve["ns"], float)
    keep = n <= n_hi
    if keep.any():
        ax.plot(n[keep], np.asarray(curve["test_error"])[keep], "--", color=color, lw=1)


def draw_n_star(ax, by_d: dict, slope: dict | None, color, label: str) -> None:
    """Predicted ``n*(d)`` (open diamonds) and its fitted line (dashed) on ``ax``; ``slope``: the
    learner's ``summary["slopes"]`` entry (predicted, or measured with a ``predicted`` one)."""
    slope = slope if slope is None or slope["basis"] == "predicted" else slope.get("predicted")
    pts = sorted((int(d), v["n_star"]) for d, v in by_d.items() if v["n_star"] is not None)
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "D", mfc="none", color=color, ms=4)
    if slope is not None:
        xx = np.geomspace(min(slope["x"]), max(slope["x"]), 20)
        ax.plot(xx, math.exp(slope["intercept"]) * xx ** slope["slope"], "--", color=color, lw=1,
                label=f"{label} predicted: {slope['slope']:.2f}")


def slope_lines(lr: str, s: dict) -> list[str]:
    """Table lines of one learner's slope: the measured fit (bootstrap CI) and/or the predicted one."""
    out = []
    if s["basis"] == "measured":
        cens = f", censored: {s['bound']} bound" if s["censored"] else ""
        out.append(f"  {lr:10s} {s['slope']:6.2f}  [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]  theory {s['theory']:g}{cens}")
    p = s if s["basis"] == "predicted" else s.get("predicted")
    if p is not None:
        ds = ", ".join(str(d) for d in p["x"])
        out.append(f"  {lr:10s} {p['slope']:6.2f}  predicted from the spectrum (d = {ds})  theory {p['theory']:g}")
    return out
