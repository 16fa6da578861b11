r"""The eigenlearning estimate of kernel ridge regression's test error, for any spectrum.

A *spectrum* is a list of eigenvalues ``lambda_i >= 0`` of the kernel's integral operator
``(T f)(x) = E_{x'}[K(x, x') f(x')]`` under the input distribution, each with a multiplicity
``m_i`` (a degenerate eigenspace; e.g. ``C(d, l)`` Walsh monomials of degree ``l`` on the cube,
``N(d, l)`` spherical harmonics of degree ``l`` times one radial eigenfunction on Gaussian
inputs), and a ``scale``: the unit of rbk's relative ridges (``rbk.kernels.fit_predict`` uses
``ridge * mean(diag K_train)``). The target's *power* is its squared projection on each
eigenspace, summed over the eigenspace and over the outputs, one entry per eigenvalue.

Any object with the attributes ``eigenvalues``, ``multiplicities`` (arrays of one shape) and
``scale`` (a float) is a spectrum here (and, optionally, ``implicit_ridge``: an absolute ridge
added to ``delta`` that stands for the trace of modes left out of a truncated spectrum;
:class:`rbk.theory.sphere.HarmonicSpectrum` sets it to its ``mass_beyond``): :class:`rbk.theory.cube.Spectrum` (the Boolean cube),
:class:`rbk.theory.sphere.HarmonicSpectrum` (the sphere and Gaussian inputs) or
:class:`Eigensystem` (a plain list). The estimate (Bordelon, Canatar & Pehlevan, ICML 2020;
Canatar, Bordelon & Pehlevan, Nat. Commun. 2021; Simon, Dickens, Karkada & DeWeese, "The
eigenlearning framework", 2021; Jacot et al.'s kernel alignment risk estimator, NeurIPS 2020),
for kernel ridge ``K(x, X) (K(X, X) + delta I)^-1 y`` on ``N`` i.i.d. samples, with
``delta = ridge * scale``::

    sum_i m_i lambda_i / (lambda_i + kappa) + delta / kappa = N        (solved for kappa)
    L_i = lambda_i / (lambda_i + kappa)                                 (learnability)
    E0  = N / (N - sum_i m_i L_i^2)
    test error = E0 sum_i (1 - L_i)^2 P_i + s2 (E0 - 1)

with ``s2`` the label-noise variance summed over the outputs (training labels noisy, test labels
clean, as in :func:`rbk.data.make_dataset`). ``kappa`` is found by Newton's method on the
equation times ``kappa`` (a concave function of ``kappa``), started at the upper bound
``(tr + delta) / N``, so the iterates decrease monotonically to the root; vectorised over many
``(N, delta)`` at once, and ``N - sum m L^2`` is evaluated as ``delta / kappa + sum m L (1 - L)``
(no cancellation). Ridgeless with ``N >= R`` (``R`` the number of modes with ``lambda > 0``):
``kappa = 0``, every such mode learned (at ``N = R`` exactly the estimate diverges: ``inf``).

Public API: :func:`predict` (one or many ``(N, ridge)``), :func:`grid_curve` (best over a ridge
grid, what a learner selecting on validation does), :func:`optimal_curve` (best over all
ridges), :func:`n_star` (first crossing of a threshold, searched up to ``N = N_MAX``),
:func:`curve_grid` (the ``N`` at which summaries tabulate a curve), :class:`Eigensystem`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, Sequence

import numpy as np

from rbk._checks import check_array, check_real

#: Largest N searched for a crossing of the threshold (``None`` beyond it).
N_MAX = 1e9
#: Relative ridges over which :func:`optimal_curve` searches (log grid, then refined), plus 0.
OPTIMAL_RIDGE_RANGE = (1e-12, 1e6)
_MAX_STEPS = 500  # Newton steps for kappa (monotone; typically converges in well under 50)


@dataclasses.dataclass(frozen=True, eq=False)
class Eigensystem:
    """A plain spectrum: ``eigenvalues`` (``>= 0``) with ``multiplicities`` (``> 0``) and the ridge unit ``scale``."""

    eigenvalues: np.ndarray
    multiplicities: np.ndarray
    scale: float
    description: Mapping = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        lam = check_array("eigenvalues", self.eigenvalues, ndim=1).astype(np.float64)
        mult = check_array("multiplicities", self.multiplicities, ndim=1).astype(np.float64)
        if lam.size == 0 or mult.shape != lam.shape:
            raise ValueError(f"eigenvalues and multiplicities must be non-empty and of one shape, got {lam.shape} "
                             f"and {mult.shape}")
        if np.any(lam < 0) or np.any(mult <= 0):
            raise ValueError("eigenvalues must be >= 0 and multiplicities > 0")
        object.__setattr__(self, "eigenvalues", lam)
        object.__setattr__(self, "multiplicities", mult)
        object.__setattr__(self, "scale", check_real("scale", self.scale, lo=0.0, lo_open=True))

    @property
    def trace(self) -> float:
        """``sum_i m_i lambda_i``."""
        return float(np.sum(self.multiplicities * self.eigenvalues))


def check_spectrum(spectrum):
    """``spectrum`` must have ``eigenvalues``, ``multiplicities`` (one shape) and a ``scale`` > 0."""
    if not all(hasattr(spectrum, a) for a in ("eigenvalues", "multiplicities", "scale")):
        raise ValueError("spectrum must be an rbk.theory spectrum (kernel_spectrum(...), gaussian_spectrum(...), "
                         f"Eigensystem(...)), got {type(spectrum).__name__}")
    return spectrum


def _check_power(spectrum, power) -> np.ndarray:
    check_spectrum(spectrum)
    p = check_array("power", power, ndim=1).astype(np.float64)
    want = np.shape(spectrum.eigenvalues)
    if p.shape != want:
        layout = getattr(spectrum, "power_layout", f"{want[0]} entries (one per eigenvalue)")
        raise ValueError(f"power must have {layout}, got {p.shape}")
    if np.any(p < 0):
        raise ValueError("power must be >= 0 (squared coefficients on the eigenfunctions)")
    return p


def _check_n(n) -> np.ndarray:
    a = check_array("n", n).astype(np.float64)
    if a.size == 0 or np.any(a < 1):
        raise ValueError(f"n (training samples) must be >= 1, got {np.min(a) if a.size else 'nothing'}")
    return a


def _check_ridge(ridge) -> np.ndarray:
    a = check_array("ridge", ridge).astype(np.float64)
    if a.size == 0 or np.any(a < 0):
        raise ValueError(f"ridge (relative ridge) must be >= 0, got {np.min(a) if a.size else 'nothing'}")
    return a


def _solve_kappa(lam: np.ndarray, mult: np.ndarray, n: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``kappa`` with ``sum_l mult_l lam_l / (lam_l + kappa) + delta / kappa = n``, elementwise over
    ``n, delta`` (same shape); 0 where ridgeless and ``n >= rank``.

    Newton's method on ``h(kappa) = delta + kappa sum_l mult_l lam_l / (lam_l + kappa) - n kappa``
    (the equation times ``kappa``), which is concave with ``h(0) = delta >= 0``: started right
    of the root at the upper bound ``(tr + delta) / n`` it decreases monotonically to the root.
    """
    pos = lam > 0
    lam, mult = lam[pos], mult[pos]
    rank, tr = float(mult.sum()), float(np.sum(mult * lam))
    interp = (delta == 0) & (n >= rank)
    kap = (tr + delta) / n
    for _ in range(_MAX_STEPS):
        r = lam / (lam + kap[..., None])
        h = delta + kap * np.sum(mult * r, axis=-1) - n * kap
        dh = np.sum(mult * r * r, axis=-1) - n  # < 0 right of the root
        new = np.where((dh < 0) & (h < 0) & ~interp, kap - h / np.where(dh < 0, dh, -1.0), kap)
        done = new >= kap * (1.0 - 1e-14)
        kap = np.minimum(new, kap)
        if np.all(done):
            break
    return np.where(interp, 0.0, kap)


def predict(spectrum, power, n, ridge, *, noise_var: float = 0.0) -> dict:
    """The eigenlearning estimate of kernel ridge regression's test error (module doc).

    Args:
      spectrum: the kernel's spectrum (module doc): ``eigenvalues``, ``multiplicities``, ``scale``.
      power: the target's power on each eigenvalue's eigenspace, summed over outputs (one entry
        per eigenvalue: ``rbk.theory.target_power`` on the cube, ``rbk.theory.harmonic_power``
        on the sphere and Gaussian inputs).
      n: training-set size(s), ``>= 1`` (real values allowed).
      ridge: relative ridge(s) ``>= 0``, rbk's convention (absolute ``ridge * spectrum.scale``);
        broadcast against ``n``.
      noise_var: label-noise variance on the training labels, summed over the outputs
        (``k * noise**2`` for :func:`rbk.data.make_dataset`'s ``noise``); test labels clean.

    Returns:
      dict of arrays of the broadcast shape: ``test_error``, ``kappa`` (absolute), ``e0``
      (``N / (N - sum L^2)``), ``bias`` (``sum (1 - L)^2 P``), and ``learnability`` (shape
      ``+ eigenvalues.shape``, per eigenvalue).
    """
    p = _check_power(spectrum, power)
    n_, r_ = np.broadcast_arrays(_check_n(n), _check_ridge(ridge))
    noise_var = check_real("noise_var", noise_var, lo=0.0)
    lam = np.asarray(spectrum.eigenvalues, np.float64)
    mult = np.asarray(spectrum.multiplicities, np.float64)
    delta = r_ * spectrum.scale + float(getattr(spectrum, "implicit_ridge", 0.0))
    kap = _solve_kappa(lam, mult, n_.ravel(), delta.ravel()).reshape(n_.shape)[..., None]
    zero = kap == 0
    safe = np.where(zero, 1.0, kap)
    L = np.where(zero, (lam > 0).astype(float), lam / (lam + safe))
    one_minus = np.where(zero, (lam <= 0).astype(float), safe / (lam + safe))
    rest = np.where(zero[..., 0], n_ - np.sum(mult * L, axis=-1), delta / safe[..., 0]) + np.sum(mult * L * one_minus, -1)
    with np.errstate(divide="ignore"):
        e0 = np.where(rest > 0, n_ / np.where(rest > 0, rest, 1.0), np.inf)
    bias = np.sum(one_minus**2 * p, axis=-1)
    with np.errstate(invalid="ignore"):  # ridgeless at N = rank: the estimate diverges (inf)
        err = np.where(np.isinf(e0), np.inf, e0 * bias + noise_var * (e0 - 1.0))
    return {"test_error": err, "kappa": kap[..., 0], "e0": e0, "bias": bias, "learnability": L}


def grid_curve(spectrum, power, ns, ridges: Sequence[float], *, noise_var: float = 0.0) -> dict:
    """Best predicted test error over a grid of relative ridges, at each ``N`` of ``ns``.

    What a learner that picks its ridge from ``ridges`` on a (large) validation split gets.
    Returns ``{"n", "test_error", "ridge", "errors"}`` (``errors``: ``(len(ns), len(ridges))``).
    """
    ns = _check_n(np.atleast_1d(ns))
    r = _check_ridge(np.atleast_1d(ridges))
    errs = predict(spectrum, power, ns[:, None], r[None, :], noise_var=noise_var)["test_error"]
    best = np.argmin(errs, axis=1)
    return {"n": ns, "test_error": errs[np.arange(ns.size), best], "ridge": r[best], "errors": errs}


def optimal_curve(spectrum, power, ns, *, noise_var: float = 0.0) -> dict:
    """Predicted test error at the best relative ridge in ``{0} U OPTIMAL_RIDGE_RANGE``, at each ``N``.

    A log grid (4 per decade) followed by golden-section refinement in ``log ridge`` around the
    best grid point (to ~1e-6 in ``log ridge``). Returns ``{"n", "test_error", "ridge"}``.
    """
    ns = _check_n(np.atleast_1d(ns))
    lo, hi = (math.log10(v) for v in OPTIMAL_RIDGE_RANGE)
    grid = np.concatenate([[0.0], np.logspace(lo, hi, int(round(4 * (hi - lo))) + 1)])
    errs = predict(spectrum, power, ns[:, None], grid[None, :], noise_var=noise_var)["test_error"]
    j = np.argmin(errs, axis=1)
    best_e, best_r = errs[np.arange(ns.size), j], grid[j]
    # golden section on log10 ridge in [grid[j-1], grid[j+1]] (grid[0] = 0 stands for 10^lo - 0.25)
    step = 0.25
    c = np.log10(np.where(best_r > 0, best_r, 10.0**lo))
    a, b = c - step, c + step
    g = (math.sqrt(5) - 1) / 2

    def f(t):
        return predict(spectrum, power, ns, 10.0**t, noise_var=noise_var)["test_error"]

    x1, x2 = b - g * (b - a), a + g * (b - a)
    f1, f2 = f(x1), f(x2)
    for _ in range(40):  # keep the bracket [a, b] around the minimum; reuse one inner point
        left = f1 < f2  # minimum in [a, x2]
        a, b = np.where(left, a, x1), np.where(left, x2, b)
        keep_x, keep_f = np.where(left, x1, x2), np.where(left, f1, f2)
        new_x = np.where(left, b - g * (b - a), a + g * (b - a))
        new_f = f(new_x)
        x1, f1 = np.where(left, new_x, keep_x), np.where(left, new_f, keep_f)
        x2, f2 = np.where(left, keep_x, new_x), np.where(left, keep_f, new_f)
    t = np.where(f1 < f2, x1, x2)
    ft = np.minimum(f1, f2)
    better = ft < best_e
    return {"n": ns, "test_error": np.where(better, ft, best_e), "ridge": np.where(better, 10.0**t, best_r)}


def n_star(curve: Callable[[np.ndarray], np.ndarray], threshold: float, *, n_max: float = N_MAX) -> float | None:
    """First ``N`` in ``[1, n_max]`` where ``curve(N)`` gets below ``threshold`` (``None``: never).

    ``curve`` maps an array of ``N`` to test errors (e.g. ``lambda n: grid_curve(s, p, n,
    ridges)['test_error']``, vectorised). A log grid of 32 points per decade locates the first
    crossing from above; four rounds of 64 points in ``log N`` refine it to ~1e-9 relative.
    Already below at ``N = 1``: 1.0.
    """
    threshold = check_real("threshold", threshold, lo=0.0, lo_open=True)
    n_max = check_real("n_max", n_max, lo=1.0, lo_open=True)
    top = math.log10(n_max)
    ns = np.logspace(0.0, top, max(2, int(math.ceil(32 * top))) + 1)
    below = np.asarray(curve(ns)) < threshold
    if not below.any():
        return None
    j = int(np.argmax(below))
    if j == 0:
        return 1.0
    a, b = math.log(ns[j - 1]), math.log(ns[j])
    for _ in range(4):  # 4 rounds of 64 points: the bracket shrinks 64^4-fold (~1e-9 relative in N)
        t = np.linspace(a, b, 65)
        below = np.asarray(curve(np.exp(t[1:-1]))) < threshold
        i = int(np.argmax(below)) + 1 if below.any() else 64  # first point below (b if none inside)
        a, b = t[i - 1], t[i]
    return float(math.exp(b))


def curve_grid(ns: Sequence[int], n_max: float = 1e7, per_decade: int = 4) -> list[int]:
    """The sweep's ``ns`` plus a log grid (``per_decade`` points per decade, integers) from
    the smallest of them up to ``n_max``."""
    lo = min(ns)
    top = math.log10(n_max)
    start = math.floor(per_decade * math.log10(lo)) / per_decade
    grid = {int(round(10.0**e)) for e in np.arange(start, top + 1e-9, 1.0 / per_decade)}
    return sorted({int(n) for n in ns} | {g for g in grid if lo <= g <= n_max})
