"""Experiment 3's thresholds as a family and its separations: exponents of ``n*(d)`` per learner and
the paired test of a kernel's exponent against a network's.

For each threshold ``theta E_p`` (``E_p`` the target's degree-``p`` energy; ``theta`` the spec's
``theta`` and ``thetas``):

* every learner's ``n*`` per ``(d, seed)``, the first crossing of that seed's curve
  (:func:`rbk.stats.seed_bounds`), as a *bound* ``(lo, hi)``: ``lo == hi`` where it crosses,
  ``(N_max, inf)`` where it never does, ``(0, N_min)`` where it is below at once;
* its exponent by interval regression over those bounds (:func:`rbk.scaling.interval_slope`: a
  censored point is an interval, not a value);
* ``separations``: each kernel against each network learner, the difference of their exponents
  with a paired bootstrap CI (:func:`rbk.scaling.paired_slope_difference`: per ``d`` the seeds are
  resampled with replacement, the same draws for both learners, so the data they share stays
  shared), on three bases for the kernel's points:

  ``"measured"``   its measured bounds only (where the kernel ran);
  ``"predicted"``  its ``n*(d)`` predicted from its Gaussian spectrum (:mod:`.predicted`), the same
                   for every seed (the spectrum and the target's power do not depend on ``U``);
  ``"mixed"``      measured where the seed's curve crosses within the grid, predicted where it is
                   censored above or was not measured.

The theory's exponents per threshold (``theory``): networks ``2`` (``n ~ d^2 r + d r^p`` at fixed
``r``, any fixed accuracy); kernels ``p`` below ``E_p`` (``theta < 1``: a fixed share of the
degree-``p`` part must be learned, whose harmonics number ``~ d^p / p!``), and ``(2 + p) / 2`` at
``theta = 1``, a rough eigenlearning estimate: at ``E_p`` a kernel crosses once it has learned
the lower degrees *and* the share of degree ``p`` that makes up for what the lower ones still
miss (``~ d^2 / N`` each), so ``N^2 ~ d^2 d^p`` (it says the crossing moves with ``d`` more slowly
than ``d^p`` there; it is a heuristic, not a bound).
"""

from __future__ import annotations

import math

import numpy as np

KERNEL_KINDS = ("ntk", "nngp")
BASES = ("measured", "predicted", "mixed")


def theta_key(theta: float) -> str:
    """The summary's key of a threshold factor (``1.0 -> '1'``, ``0.5 -> '0.5'``)."""
    return f"{float(theta):g}"


def theory_exponent(kind: str, theta: float, p: int) -> float:
    """The theory's exponent of ``n*(d)`` at ``theta E_p`` (module docstring)."""
    if kind not in KERNEL_KINDS:
        return 2.0
    return float(p) if theta < 1.0 else (2.0 + p) / 2.0


def predicted_bounds(by_d: dict, theta: float, keys, n_max: float) -> dict:
    """``{(d, seed): (n, n)}`` of the predicted ``n*`` at ``theta`` for every key whose ``d`` has one
    (``(n_max, inf)`` where the prediction does not cross by ``n_max``)."""
    out = {}
    for d, seed in keys:
        v = by_d.get(str(d))
        if v is None:
            continue
        n = v["n_star"] if "n_star_by_threshold" not in v else v["n_star_by_threshold"].get(theta_key(theta))
        out[(d, seed)] = (float(n), float(n)) if n is not None else (float(n_max), math.inf)
    return out


def mixed_bounds(measured: dict, predicted: dict) -> dict:
    """Measured bounds where the seed crosses within the grid (or below at once), predicted elsewhere."""
    out = dict(predicted)
    out.update({k: b for k, b in measured.items() if math.isfinite(b[1])})
    return out


def _loglog(pts: dict, ds) -> dict | None:
    """The least-squares slope of the predicted ``log n*`` on ``log d`` over ``ds`` (``None`` below two)."""
    from rbk import stats

    if len(ds) < 2:
        return None
    slope, intercept = stats.loglog_slope(ds, [pts[d] for d in ds])
    return {"slope": slope, "intercept": intercept, "ds": list(ds)}


def _slope_entry(bounds: dict) -> dict | None:
    from rbk import scaling

    fit = scaling.bounds_slope(bounds)
    return fit if fit is not None and fit["slope"] is not None else None


def separation_entry(kernel: str, network: str, theta: float, basis: str, kb: dict, nb: dict, *, n_boot: int,
                     seed: int = 0) -> dict | None:
    """One ``summary["separations"]`` entry, or ``None`` when the pairs span fewer than two ``d``."""
    from rbk import scaling

    shared = sorted(set(kb) & set(nb))
    if len({d for d, _ in shared}) < 2:
        return None
    res = scaling.paired_slope_difference({k: kb[k] for k in shared}, {k: nb[k] for k in shared}, n_boot=n_boot,
                                          seed=seed)  # fmt: skip
    if res["slope_first"] is None or res["slope_second"] is None:
        return None
    fits = {w: _slope_entry({k: b[k] for k in shared}) for w, b in (("kernel", kb), ("network", nb))}
    censored = {"kernel": sum(not (kb[k][0] == kb[k][1]) for k in shared),
                "network": sum(not (nb[k][0] == nb[k][1]) for k in shared)}
    return {"kernel": kernel, "network": network, "theta": float(theta), "basis": basis,
            "slope_kernel": res["slope_first"], "slope_network": res["slope_second"],
            "ci95_kernel": res["ci95_first"], "ci95_network": res["ci95_second"],
            "difference": res["difference"], "ds": res["ds"], "pairs": res["pairs"], "censored": censored,
            "n_boot": res["n_boot"], "n_valid": res["n_valid"],
            "intercept_kernel": fits["kernel"]["intercept"] if fits["kernel"] else None,
            "intercept_network": fits["network"]["intercept"] if fits["network"] else None,
            "points_kernel": [[k[0], k[1], *kb[k]] for k in shared],
            "points_network": [[k[0], k[1], *nb[k]] for k in shared]}  # fmt: skip


def by_threshold(spec, sel_rows, kinds: dict, predicted: dict, *, n_boot: int) -> tuple[dict, list]:
    """``(by_theta, separations)`` of the summary.

    ``kinds``: ``{learner: kind}`` of the learners with rows; ``predicted``: ``summary["predicted"]``
    (its curves carry ``n_star_by_threshold`` for every ``theta``). ``by_theta[theta_key]`` holds the
    thresholds per ``d``, each learner's seed-mean ``n*`` per ``d`` (:func:`rbk.stats.n_star`), its
    measured exponent by interval regression (``slopes``), the predicted ``n*`` and the least-squares
    slope of the predicted ``log n*`` over the profile's ``d`` and over every predicted ``d``
    (``predicted_slopes``: ``"profile"``, ``"all"``); ``separations``
    lists every (kernel, network learner, ``theta``, basis) entry (:func:`separation_entry`).
    """
    from rbk import stats
    from rbk.theory.solver import N_MAX  # the predicted curves' search bound

    energy = {}
    for r in sel_rows:
        energy[r["d"]] = float(r["threshold"])  # the target's E_p (one per d: checked by the caller)
    thetas = sorted({float(spec.theta), *map(float, spec.thetas)})
    kernel_max = float(max(spec.kernel_ns))
    out, seps = {}, []
    for th in thetas:
        thr = {d: th * e for d, e in energy.items()}
        entry = {"theta": th, "thresholds": {str(d): v for d, v in sorted(thr.items())}, "n_star": {}, "slopes": {},
                 "predicted_n_star": {}, "theory": {}}  # fmt: skip
        bounds = {}
        for lr, kind in kinds.items():
            mine = [r for r in sel_rows if r["learner"] == lr]
            groups = stats.group_by(mine, "d")
            entry["n_star"][lr] = {str(d): dict(stats.n_star(rows, thr[d], n_boot=n_boot),
                                                ns=sorted({r["n"] for r in rows})) for (d,), rows in sorted(groups.items())}
            bounds[lr] = stats.seed_bounds(mine, thr)
            fit = _slope_entry(bounds[lr])
            entry["theory"][lr] = theory_exponent(kind, th, spec.p)
            if fit is not None:
                entry["slopes"][lr] = dict(fit, basis="measured", theory=entry["theory"][lr])
        for lr, by_d in predicted.items():
            entry["predicted_n_star"][lr] = {
                d: (v["n_star"] if "n_star_by_threshold" not in v else v["n_star_by_threshold"].get(theta_key(th)))
                for d, v in by_d.items()}
            entry["theory"].setdefault(lr, theory_exponent("ntk", th, spec.p))
            pts = {int(d): v for d, v in entry["predicted_n_star"][lr].items() if v is not None}
            entry.setdefault("predicted_slopes", {})[lr] = {
                span: _loglog(pts, ds) for span, ds in (("profile", [d for d in spec.ds if d in pts]),
                                                         ("all", sorted(pts)))}  # fmt: skip
        out[theta_key(th)] = entry
        nets = [lr for lr, k in kinds.items() if k not in KERNEL_KINDS]
        kers = sorted(set(lr for lr, k in kinds.items() if k in KERNEL_KINDS) | set(predicted))
        for net in nets:
            for ker in kers:
                meas = bounds.get(ker, {})
                pred = (predicted_bounds(predicted.get(ker, {}), th, bounds[net], N_MAX)  # no crossing: (N_MAX, inf)
                        if ker in predicted else {})
                cands = {"measured": meas, "predicted": pred, "mixed": mixed_bounds(meas, pred) if meas and pred else {}}
                for basis in BASES:
                    if not cands[basis]:
                        continue
                    e = separation_entry(ker, net, th, basis, cands[basis], bounds[net], n_boot=n_boot)
                    if e is not None:
                        e["kernel_grid_max"] = kernel_max
                        seps.append(e)
    return out, seps


def format_separations(seps: list) -> list[str]:
    """Table lines of ``summary["separations"]``."""
    lines = ["", "separations: kernel exponent minus network exponent, paired bootstrap over (d, seed) (95% CI)"]
    for e in seps:
        lo, hi = e["difference"]["ci95"] or (math.nan, math.nan)
        lines.append(f"  theta {e['theta']:<5g} {e['kernel']:8s} {e['basis']:9s} {e['slope_kernel']:6.2f} - "
                     f"{e['network']:10s} {e['slope_network']:5.2f} = {e['difference']['mean']:5.2f} "
                     f"[{lo:.2f}, {hi:.2f}]  (d = {', '.join(str(int(d)) for d in e['ds'])}; censored points "
                     f"kernel {e['censored']['kernel']}, network {e['censored']['network']} of {e['pairs']})")
    return lines


def rse(values) -> float:
    """Relative standard error of a seed mean: ``std / sqrt(n) / |mean|`` (NaN below two values)."""
    v = np.asarray([x for x in values if math.isfinite(x)], float)
    if v.size < 2 or v.mean() == 0:
        return math.nan
    return float(v.std(ddof=1) / math.sqrt(v.size) / abs(v.mean()))
