r"""Spectra of rotation-invariant kernels on Gaussian inputs ``x ~ N(0, I_d)``, and predicted learning curves.

Write ``x = r s`` with ``r = |x| ~ chi_d`` and ``s`` uniform on ``S^{d-1}``, independent. A
rotation-invariant kernel ``k(r, r', t)`` (``t`` the cosine of the angle) expands as
``sum_l N(d, l) k_l(r, r') P_l(t)`` (:mod:`rbk.theory.sphere`), so the integral operator
``T f = E_{x'}[k(x, x') f(x')]`` maps ``g(r) Y_l(s)`` (``Y_l`` any degree-``l`` harmonic) to
``(K_l g)(r) Y_l(s)`` with the radial operator ``(K_l g)(r) = E_{r'}[k_l(r, r') g(r')]`` on
``L2(chi_d)``. Its eigenvalues, each with multiplicity ``N(d, l)``, are the kernel's spectrum.

Numerics: ``k_l(r_i, r_j)`` by Gauss-Jacobi quadrature in ``t`` (:func:`rbk.theory.sphere.angle_rule`),
the radial operator by Gauss quadrature for the ``chi_d`` law (:func:`chi_rule`: generalized
Gauss-Laguerre in ``r^2 / 2 ~ Gamma(d/2)``, by Golub-Welsch), i.e. the eigenvalues of
``W^1/2 K_l W^1/2`` (Nystrom's method; they converge to the operator's as the nodes grow, the
top ones fastest). The kernel is evaluated in float64 at ``x1 = r_i e1``, ``x2 = r_j (t e1 +
sqrt(1 - t^2) e2)``, after a check of rotation invariance on random rotations. Reported
precision (:meth:`HarmonicSpectrum.precision`): radial and angle nodes, the largest degree kept,
the spectral mass beyond it (``E[k(x, x)]`` minus the kept trace) and an a-posteriori quadrature
error estimate (against a coarser rule).

Ridge convention: rbk's relative ridges multiply ``mean(diag K_train)`` (``rbk.kernels.fit_predict``);
on Gaussian inputs the diagonal ``k(x, x)`` varies with ``|x|`` and its mean over ``N`` points
tends to ``E[k(x, x)]`` (relative fluctuation ``O(N^-1/2)``), which is ``HarmonicSpectrum.scale``.

Learning curves: :func:`learning_curves` runs :mod:`rbk.theory.solver` on these spectra with the
target's exact power (:func:`rbk.theory.sphere.harmonic_power`), over a list of ``d``.
The eigenlearning estimate is asymptotic (many modes per learned eigenvalue); see
``docs/learning_curves.md`` for where it is expected to be worst.

Public API: :func:`chi_rule`, :func:`gaussian_spectrum`, :func:`learning_curves`,
:func:`predicted_curves` (the block experiment summaries carry).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import scipy.linalg

from rbk._checks import check_choice, check_int, check_real
from rbk.theory.solver import N_MAX, curve_grid, grid_curve, n_star, optimal_curve
from rbk.theory.sphere import (
    HarmonicSpectrum,
    angle_rule,
    check_kernel,
    check_rotation_invariant,
    check_rule_sizes,
    describe_kernel,
    gegenbauer_coefficients,
    harmonic_power,
    kernel_on_pairs,
    radial_spectrum,
    sphere_spectrum,
)

#: Default number of radial Gauss nodes.
DEFAULT_RADIAL_NODES = 32
DISTRIBUTIONS = ("gaussian", "sphere")


def chi_rule(d: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n``-point Gauss rule for ``r ~ chi_d``: radii and weights (summing to 1).

    ``u = r^2 / 2 ~ Gamma(d/2)``; the nodes are those of generalized Gauss-Laguerre with
    ``alpha = d/2 - 1`` (the eigenvalues of its Jacobi matrix, diagonal ``2k + alpha + 1``,
    off-diagonal ``sqrt(k (k + alpha))``; weights: squared first components), so the rule
    integrates every polynomial of degree ``<= 2n - 1`` in ``r^2`` exactly, for any ``d``.
    """
    d, n = check_int("d", d, lo=1), check_int("radial_nodes", n, lo=1)
    alpha = d / 2.0 - 1.0
    k = np.arange(n, dtype=np.float64)
    u, vec = scipy.linalg.eigh_tridiagonal(2 * k + alpha + 1, np.sqrt(k[1:] * (k[1:] + alpha)))
    w = vec[0] ** 2
    return np.sqrt(2.0 * u), w / w.sum()


def _radial_coefficients(kfn, d, get, n_r, nt, L):
    r, w = chi_rule(d, n_r)
    t, wt = angle_rule(d, nt)
    vals = kernel_on_pairs(kfn, d, get, r, r, t)
    return r, w, gegenbauer_coefficients(vals, d, L, wt, t), np.max(np.abs(vals), axis=-1)


def gaussian_spectrum(kfn: Callable, d: int, get: str = "ntk", *, max_degree: int | None = None,
                      radial_nodes: int = DEFAULT_RADIAL_NODES, angle_nodes: int | None = None) -> HarmonicSpectrum:
    """Spectrum of ``kfn`` under ``x ~ N(0, I_d)``: per harmonic degree ``l <= max_degree`` the
    ``radial_nodes`` eigenvalues of the discretised radial operator, multiplicity ``N(d, l)``.

    Args:
      kfn: any rotation-invariant ``kfn(x1, x2, get) -> (n1, n2)``: ``rbk.kernels.kernel_fn(arch)``,
        ``described_kernel_fn(...)``, ``model_kernel_fn(model)`` or a foreign callable; refused
        (``ValueError``) if random rotations change it.
      d: dimension ``>= 2``.
      get: ``'ntk'`` or ``'nngp'``.
      max_degree: largest harmonic degree kept (default 24; at least the target's degree).
      radial_nodes: Gauss nodes for ``chi_d`` (``>= 2``).
      angle_nodes: Gauss-Jacobi nodes (default ``max(512, 4 max_degree)``, ``>= 2 max_degree + 2``).
    """
    check_kernel(kfn, get)
    d, L, nt = check_rule_sizes(d, max_degree, angle_nodes)
    n_r = check_int("radial_nodes", radial_nodes, lo=2)
    check_rotation_invariant(kfn, d, get)
    r, w, coef, vmax = _radial_coefficients(kfn, d, get, n_r, nt, L)
    _, wc, coef_c, _ = _radial_coefficients(kfn, d, get, max(2, (3 * n_r) // 4), max(nt // 2, L + 1), L)
    diag = np.diagonal(kernel_on_pairs(kfn, d, get, r, r, [1.0])[:, :, 0])
    return radial_spectrum(coef, w, (coef_c, wc), r, d=d, distribution="gaussian", scale=float(w @ diag),
                           value_max=np.maximum(vmax, np.abs(diag)[:, None]), angle_nodes=nt,
                           description={**describe_kernel(kfn, get), "distribution": "gaussian"})


def learning_curves(
    kfn: Callable,
    targets,
    ds: Sequence[int],
    ns,
    ridges: Sequence[float] | None = None,
    *,
    get: str = "ntk",
    distribution: str = "gaussian",
    threshold: float | None = None,
    noise_var: float = 0.0,
    max_degree: int | None = None,
    radial_nodes: int = DEFAULT_RADIAL_NODES,
    angle_nodes: int | None = None,
    n_max: float = N_MAX,
    optimal_n_star: bool = True,
    more_thresholds: Mapping[str, float] | None = None,
) -> list[dict]:
    """Predicted learning curves of kernel ridge with ``kfn`` on a target, for each ``d`` of ``ds``.

    Args:
      kfn: a rotation-invariant kernel function (as for :func:`gaussian_spectrum`; rbk's are
        dimension-free, so one serves every ``d``).
      targets: a callable ``d -> Target`` or a sequence of targets, one per ``d`` (each with
        ``target.d == d``): multi-index targets or hierarchies.
      ds: the dimensions.
      ns: training-set sizes at which to tabulate the curves.
      ridges: relative ridge grid (the learner's own selection; ``None``: the best ridge only).
      distribution: ``'gaussian'`` (default) or ``'sphere'`` (radius ``sqrt(d)``).
      threshold: error level for ``n*`` (default: each target's ``threshold``).
      noise_var: label-noise variance of the training labels (summed over outputs).
      max_degree: harmonic degrees kept (default: ``max(24, target degree)``).
      radial_nodes, angle_nodes: the quadrature rules (as for :func:`gaussian_spectrum`).
      optimal_n_star: also ``n_star_optimal_ridge`` (the slow part: a ridge search at every ``N``
        the crossing search visits); ``False``: ``None`` there.
      more_thresholds: ``{name: level}``; with ``ridges``, ``n_star_by_threshold`` then gives the
        grid curve's first crossing of each.

    Returns:
      one dict per ``d``: ``d``, ``precision`` (:meth:`HarmonicSpectrum.precision`), ``power_total``
      (the target's second moment, the sum of its powers), ``threshold``, ``optimal`` (the best-ridge
      curve, :func:`rbk.theory.optimal_curve`) and ``n_star_optimal_ridge``; with ``ridges`` also
      ``grid`` (:func:`rbk.theory.grid_curve`) and ``n_star`` (its first crossing; ``None``: not
      below by ``n_max``).
    """
    check_kernel(kfn, get)
    check_choice("distribution", distribution, DISTRIBUTIONS)
    if isinstance(ds, (int, np.integer)) or not len(ds):
        raise ValueError(f"ds must be a non-empty list of dimensions >= 2, got {ds!r}")
    ds = [check_int("ds", d, lo=2) for d in ds]
    if not callable(targets) and (isinstance(targets, (str, bytes)) or len(targets) != len(ds)):
        raise ValueError(f"targets must be a callable d -> Target or one target per d (len(ds) = {len(ds)})")
    noise_var = check_real("noise_var", noise_var, lo=0.0)
    levels = {str(k): check_real("more_thresholds", v, lo=0.0, lo_open=True) for k, v in (more_thresholds or {}).items()}
    chosen = [targets(d) if callable(targets) else targets[i] for i, d in enumerate(ds)]
    for d, target in zip(ds, chosen):  # all checked before any spectrum is computed
        if getattr(target, "d", None) != d:
            raise ValueError(f"targets for d = {d} must have target.d == {d}, got {getattr(target, 'd', None)!r}")
    out = []
    for d, target in zip(ds, chosen):
        L = default_max_degree(target) if max_degree is None else max_degree
        if distribution == "gaussian":
            spec = gaussian_spectrum(kfn, d, get, max_degree=L, radial_nodes=radial_nodes, angle_nodes=angle_nodes)
        else:
            spec = sphere_spectrum(kfn, d, get, max_degree=L, angle_nodes=angle_nodes)
        power = harmonic_power(target, spec)
        thr = float(target.threshold if threshold is None else check_real("threshold", threshold, lo=0.0, lo_open=True))
        opt = optimal_curve(spec, power, ns, noise_var=noise_var)
        row = {"d": d, "precision": spec.precision(), "power_total": float(power.sum()), "threshold": thr,
               "optimal": opt, "n_star_optimal_ridge": n_star(
                   lambda n: optimal_curve(spec, power, n, noise_var=noise_var)["test_error"], thr, n_max=n_max)
               if optimal_n_star else None}
        if ridges is not None:
            row["grid"] = grid_curve(spec, power, ns, ridges, noise_var=noise_var)

            def curve(n):
                return grid_curve(spec, power, n, ridges, noise_var=noise_var)["test_error"]

            row["n_star"] = n_star(curve, thr, n_max=n_max)
            if levels:
                row["n_star_by_threshold"] = {k: n_star(curve, v, n_max=n_max) for k, v in levels.items()}
        out.append(row)
    return out


def default_max_degree(target) -> int:
    """The harmonic degrees kept by default for ``target``: ``max(24, its polynomial degree)``."""
    return max(24, int(max(target.info.get("readout_degrees", [target.info.get("p", 0)]))))


def predicted_curves(kfn: Callable, targets, ds: Sequence[int], ns, ridges: Sequence[float], *, get: str = "ntk",
                     threshold: float | None = None, curve_max: float = 1e7, n_max: float = N_MAX,
                     max_degree: int | None = None, radial_nodes: int = DEFAULT_RADIAL_NODES,
                     more_thresholds: Mapping[str, float] | None = None) -> dict:
    """One kernel learner's predicted learning curve and ``n*`` per ``d`` on Gaussian inputs, as
    experiment summaries carry them: ``{str(d): {"n_star", "ns", "test_error", "ridge",
    "threshold", "precision"}}``.

    ``ns``: the measured grid, tabulated with :func:`rbk.theory.curve_grid` out to ``curve_max``;
    the curve is :func:`rbk.theory.grid_curve` over the learner's relative ``ridges`` and
    ``n_star`` its first crossing of the threshold (``None``: not below by ``n_max``). Arguments
    otherwise as for :func:`learning_curves`, which computes it (with ``more_thresholds``, also
    ``n_star_by_threshold``).
    """
    grid = curve_grid(ns, check_real("curve_max", curve_max, lo=1.0))
    rows = learning_curves(kfn, targets, ds, grid, ridges, get=get, threshold=threshold, max_degree=max_degree,
                           radial_nodes=radial_nodes, n_max=n_max, optimal_n_star=False,
                           more_thresholds=more_thresholds)  # fmt: skip
    return {str(r["d"]): {"n_star": r["n_star"], "ns": [int(n) for n in grid],
                          **({"n_star_by_threshold": r["n_star_by_threshold"]} if more_thresholds else {}),
                          "test_error": [float(e) for e in r["grid"]["test_error"]],
                          "ridge": [float(v) for v in r["grid"]["ridge"]], "threshold": r["threshold"],
                          "precision": r["precision"]} for r in rows}  # fmt: skip
