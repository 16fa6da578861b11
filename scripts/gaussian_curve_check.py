"""Check the predicted learning curves on Gaussian inputs (rbk.theory.learning_curves) against kernel ridge.

    nice python scripts/gaussian_curve_check.py --case exp3 [--ds 16] [--ns 1000,4000,16000]
        [--seeds 0,1,2] [--n-test 100000] [--results docs/gaussian_curves.jsonl]
        [--table docs/gaussian_curves_table.md] [--max-degree 24] [--radial-nodes 32]
    nice python scripts/gaussian_curve_check.py --case exp4 --ns 2000,8000,32000 ...

Cases (everything read from the experiments' ``quick`` profiles, nothing set here):

* ``exp3``: Experiment 3's target (``single_index``, ``p = 4``), the ``ntk-2nn`` kernel
  (``kernel_fn('2nn', W_std, b_std)``) and its relative ridges ``kernel_ridges``; the data of a
  ``(d, seed)`` are the experiment's own (``dataset(spec, d, seed, n)``: nested training sets,
  ``n_val`` validation points) with ``--n-test`` test points.
* ``exp4``: Experiment 4's hierarchy, the ``ntk-deep`` kernel (the exact NTK of its DeepQuad,
  built as the experiment builds it), its ``ridges``; data ``spec.dataset(n, seed)``.

Measurement: ``rbk.kernels.fit_predict`` (automatic solver; ridge selected on the validation
split, as the experiments do). The squared error has heavy tails (``f*`` is a polynomial of
``z = Q x``, ``Q`` from ``rbk.theory.target_polynomial``). Two estimates of the selected ridge's
test error: ``identity_error``, the exact identity ``E[(f - f*)^2] = E[f^2] - 2 E[f f*] + E[f*^2]``
with the first two terms averaged over the test points and the last the target's exact second
moment (1 for multi-index targets, the hierarchy's ``info['second_moment']``), and
``test_error`` (used in the table), the mean squared error with control variates: every product
of orthonormal Hermite polynomials of ``z`` of total degree ``1 .. 2p`` (exact mean 0 under
``N(0, I)``; 8 controls for a single-index target, 494 for a rank-4 hierarchy), coefficients by
least squares, cross-fitted (fitted on one half of the test points, applied to the other, both
ways: ``control_variate_mean``). Both are unbiased;
the second has several times smaller variance, since the kernel's error at large ``|z|`` is a
polynomial of ``z`` too. ``se_test``, ``se_identity``: their test-sampling standard errors. The
identity is applied to every ridge's raw test error too (``identity_errors``). The table gives the mean over
seeds and its standard error (the seeds' spread over ``sqrt(S)``: training-set and test-set
randomness together), and ``rel`` = predicted / measured - 1.

Prediction: ``rbk.theory.learning_curves`` (Gaussian spectrum, exact harmonic power) with the
same ridge grid (``grid``: the best of the grid, what validation selection aims at), plus the
best ridge of all (``optimal``). The spectrum's lost mass (``mass_beyond``: ``E[k(x, x)]`` minus
the kept trace, from degrees above ``max_degree`` and eigenvalues below float64 round-off) is
added to every absolute ridge, as ``rbk.theory`` does by default (``HarmonicSpectrum.tail =
'ridge'``: modes with eigenvalues far below ``kappa`` enter the estimate only through their
trace, exactly as a ridge does, and carry none of the target); ``grid_drop`` is the same with
that mass left out (``tail = 'drop'``), for comparison. (Prediction rows written before the
default changed have ``grid`` = dropped and ``grid_tail`` = as a ridge; the table reads both.)
Rows are appended to ``--results`` as they finish; a rerun skips those already there.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np


def _list(conv):
    return lambda s: [conv(v) for v in s.split(",") if v]


def case_setup(case: str, d: int | None, n_test: int):
    """``(spec, kernel_fn, ridges, target_of_seed, dataset_of(n, seed))`` of a case at dimension ``d``."""
    from rbk import experiments, kernels

    if case == "exp3":
        mod = experiments.module("exp3")
        spec = experiments.profile_spec("exp3", "quick", ds=(d,), n_test=n_test)
        kfn = kernels.kernel_fn("2nn", W_std=spec.W_std, b_std=spec.b_std)

        def data(n, seed):
            return mod.dataset(spec, d, seed, n)

        return spec, kfn, tuple(spec.kernel_ridges), data
    spec = experiments.profile_spec("exp4", "quick", n_test=n_test)
    from rbk.models import get_deepquad

    act = "hermite" if spec.activation == "truncated" else spec.activation  # as Experiment 4 (equal for |u| <= clip)
    kfn = kernels.model_kernel_fn(get_deepquad(spec.width, spec.d, levels=spec.levels, activation=act, skip=spec.skip,
                                               readout=spec.head, parameterization="ntk", head_init="random"))  # fmt: skip

    def data(n, seed):
        return spec.target(), spec.dataset(n, seed)

    return spec, kfn, tuple(spec.ridges), data


def second_moment(target) -> float:
    """The target's exact ``E[f*^2]`` (summed over outputs)."""
    return float(target.info["second_moment"])


def hermite_controls(z: np.ndarray, degree: int) -> np.ndarray:
    """Products of orthonormal Hermite polynomials of ``z ~ N(0, I_r)``, total degree ``1..degree``:
    ``(n, m)`` columns of exact mean 0 (control variates)."""
    from numpy.polynomial import hermite_e

    r = z.shape[1]
    h = np.stack([hermite_e.hermeval(z, np.eye(degree + 1)[k]) / math.sqrt(math.factorial(k))
                  for k in range(degree + 1)], axis=-1)  # (n, r, degree + 1)
    cols = []
    for a in np.ndindex(*([degree + 1] * r)):
        if 1 <= sum(a) <= degree:
            cols.append(np.prod([h[:, i, k] for i, k in enumerate(a)], axis=0))
    return np.stack(cols, axis=1)


def control_variate_mean(values: np.ndarray, controls: np.ndarray) -> tuple[float, float]:
    """``mean(values - controls beta)`` (the controls' exact means are 0), cross-fitted: ``beta``
    by least squares on one half of the points and applied to the other, both ways, so that no
    point's own residual shaped its coefficient. Exactly unbiased (``beta`` is independent of the
    points it is applied to); fitting ``beta`` on the same points is unbiased only up to
    ``O(controls / points)``, and the controls are many and heavy-tailed for a hierarchy (494
    Hermite products up to degree 16). (Measured: at Experiment 4's N = 2000, 100 000 test points,
    the two agree to 0.3 %, well inside the seeds' spread; the same-point fit was not biased there.)
    Also returns its standard error from the residuals."""
    half = values.size // 2
    res = np.empty_like(values)
    for fit, use in ((slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))):
        c = controls[fit] - controls[fit].mean(axis=0)
        beta = np.linalg.lstsq(c, values[fit] - values[fit].mean(), rcond=None)[0]
        res[use] = values[use] - controls[use] @ beta
    return float(res.mean()), float(res.std(ddof=1) / math.sqrt(res.size))


def measure(case, d, n, seed, n_test):
    from rbk import kernels, theory

    _, kfn, ridges, data = case_setup(case, d, n_test)
    target, ds = data(n, seed)
    m2 = second_moment(target)
    out = kernels.fit_predict(kfn, ds, ridges=ridges, get="ntk", return_predictions=True)
    f = np.asarray(out["pred_test"], np.float64)
    x, y = np.asarray(ds.x_test, np.float64), np.asarray(ds.y_test, np.float64)
    ident = np.sum(f * f - 2.0 * f * y, axis=-1)  # E[f^2] - 2 E[f f*] per test point (+ exact E[f*^2])
    Q, _ = theory.target_polynomial(target)
    p = int(max(target.info.get("readout_degrees", [target.info.get("p", 0)])))
    est, se = control_variate_mean(np.sum((f - y) ** 2, axis=-1), hermite_controls(x @ Q.T, 2 * p))
    y2 = float(np.mean(np.sum(y * y, axis=-1)))
    return {"case": case, "d": int(target.d), "n": n, "seed": seed, "n_test": int(y.shape[0]), "cv": "cross-fitted",
            "ridges": list(ridges),
            "lam": out["lam"], "test_error": est, "se_test": se, "identity_error": float(ident.mean() + m2),
            "se_identity": float(ident.std(ddof=1) / math.sqrt(ident.size)),
            "raw_test_error": out["test_error"], "mean_y2_test": y2, "second_moment": m2,
            "identity_errors": [float(e - y2 + m2) for e in out["test_errors"]], "val_errors": out["val_errors"],
            "seconds": out["seconds"], "solver": out.get("solver"), "iterations": out.get("iterations")}  # fmt: skip


def predict(case, d, ns, n_test, max_degree, radial_nodes):
    """The prediction over the case's ridge grid, as ``rbk.theory.learning_curves`` computes it
    (Gaussian spectrum, exact harmonic power, ``grid_curve``), and with the spectrum's lost mass
    as a ridge (``grid_tail``: ``mass_beyond`` added to every absolute ridge, module doc)."""
    from rbk import theory

    _, kfn, ridges, data = case_setup(case, d, n_test)
    target = data(1, 0)[0]
    t0 = time.perf_counter()
    spec = theory.gaussian_spectrum(kfn, target.d, "ntk", max_degree=max_degree, radial_nodes=radial_nodes)
    power = theory.harmonic_power(target, spec)
    grid = theory.grid_curve(spec, power, ns, ridges)  # the tail as a ridge (rbk.theory's default)
    drop = theory.grid_curve(spec.with_tail("drop"), power, ns, ridges)
    kappa = theory.predict(spec, power, ns, grid["ridge"])["kappa"]
    return {"case": case, "d": int(target.d), "kind": "prediction", "tail": spec.tail, "ns": [int(n) for n in ns],
            "ridges": list(ridges), "grid": grid["test_error"].tolist(), "grid_ridge": grid["ridge"].tolist(),
            "grid_errors": grid["errors"].tolist(), "grid_drop": drop["test_error"].tolist(),
            "optimal": theory.optimal_curve(spec, power, ns)["test_error"].tolist(), "kappa": kappa.tolist(),
            "precision": spec.precision(), "power_total": float(power.sum()), "max_degree": max_degree,
            "radial_nodes": radial_nodes, "seconds": time.perf_counter() - t0}  # fmt: skip


def table(measured, predicted, max_degree, radial_nodes) -> str:
    """Markdown: per measured ``(case, d, N)``, the latest prediction at that precision."""
    lines = ["| case | d | N | predicted | measured +- s.e. | rel | predicted, tail dropped | rel | seeds |"
             " ridge: predicted / picked |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    keys = sorted({(m["case"], m["d"], m["n"]) for m in measured})
    for case, d, n in keys:
        preds = [p for p in predicted if (p["case"], p["d"], p["max_degree"], p["radial_nodes"]) ==
                 (case, d, max_degree, radial_nodes) and n in p["ns"]]  # fmt: skip
        if not preds:
            continue
        p, i = preds[-1], preds[-1]["ns"].index(n)
        tail, drop = (p["grid"], p["grid_drop"]) if "grid_drop" in p else (p["grid_tail"], p["grid"])  # older rows
        rows = sorted((m for m in measured if (m["case"], m["d"], m["n"]) == (case, d, n)), key=lambda m: m["seed"])
        e = np.asarray([m["test_error"] for m in rows])
        mean = float(e.mean())
        se = float(e.std(ddof=1) / math.sqrt(e.size)) if e.size > 1 else float("nan")
        lams = [m["lam"] for m in rows]
        picked = ", ".join(f"{v:g}" + (f" x{lams.count(v)}" if len(set(lams)) > 1 else "") for v in sorted(set(lams)))
        lines.append(f"| {case} | {d} | {n} | {tail[i]:.4f} | {mean:.4f} +- {se:.4f} ({se / mean:.1%}) | "
                     f"{tail[i] / mean - 1:+.1%} | {drop[i]:.4f} | {drop[i] / mean - 1:+.1%} | "
                     f"{e.size} | {p['grid_ridge'][i]:g} / {picked} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", choices=("exp3", "exp4"), required=True)
    ap.add_argument("--ds", type=_list(int), default=[16], help="dimensions (exp3 only; exp4 has the profile's d)")
    ap.add_argument("--ns", type=_list(int), default=None)
    ap.add_argument("--seeds", type=_list(int), default=[0, 1, 2])
    ap.add_argument("--n-test", type=int, default=100000)
    ap.add_argument("--max-degree", type=int, default=24)
    ap.add_argument("--radial-nodes", type=int, default=32)
    ap.add_argument("--results", default="docs/gaussian_curves.jsonl")
    ap.add_argument("--table", default="docs/gaussian_curves_table.md")
    ap.add_argument("--predict-only", action="store_true")
    a = ap.parse_args(argv)
    ns = a.ns or ([1000, 4000, 16000] if a.case == "exp3" else [2000, 8000, 32000])
    ds = a.ds if a.case == "exp3" else [None]
    path = Path(a.results)
    rows = [json.loads(s) for s in path.read_text().splitlines() if s.strip()] if path.exists() else []
    for d in ds:
        pred = predict(a.case, d, ns, a.n_test, a.max_degree, a.radial_nodes)
        print(json.dumps({k: pred[k] for k in ("case", "d", "ns", "grid", "optimal", "precision", "seconds")}), flush=True)
        rows.append(pred)
        with path.open("a") as fh:
            fh.write(json.dumps(pred) + "\n")
        if a.predict_only:
            continue
        for n in ns:
            for seed in a.seeds:
                if any(r.get("kind") != "prediction" and r.get("cv") == "cross-fitted" and
                       (r["case"], r["d"], r["n"], r["seed"], r["n_test"]) == (a.case, pred["d"], n, seed, a.n_test)
                       for r in rows):  # fmt: skip
                    continue
                row = measure(a.case, d, n, seed, a.n_test)
                print(json.dumps({k: row[k] for k in ("case", "d", "n", "seed", "lam", "test_error", "se_test",
                                                      "identity_error", "se_identity", "seconds", "solver")}), flush=True)  # fmt: skip
                rows.append(row)
                with path.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
    # one row per (case, d, N, seed): the first with the cross-fitted estimate (rows measured before it
    # fitted the control coefficients on the same points, biased low for the hierarchy; kept in the file)
    measured = list({(r["case"], r["d"], r["n"], r["seed"]): r for r in reversed(rows)
                     if r.get("kind") != "prediction" and r.get("cv") == "cross-fitted"}.values())
    predicted = [r for r in rows if r.get("kind") == "prediction" and ("grid_tail" in r or "grid_drop" in r)]
    Path(a.table).write_text(table(measured, predicted, a.max_degree, a.radial_nodes))
    print(Path(a.table).read_text())


if __name__ == "__main__":
    main()
