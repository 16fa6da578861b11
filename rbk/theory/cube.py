r"""Kernel learning curves predicted from the spectrum, on the uniform Boolean cube ``{-1, 1}^d``.

How many samples does kernel ridge regression need to learn a target? On the cube every kernel
of rbk is a function of ``x . x'`` alone (the norms are constant), i.e. of the Hamming distance
``h`` between the two points. Such a kernel is diagonal in the Walsh basis ``chi_S(x) =
prod_{i in S} x_i``: the eigenvalue of every monomial of degree ``l`` (multiplicity ``C(d, l)``)
of the integral operator ``(T f)(x) = E_{x'}[K(x, x') f(x')]`` (``x'`` uniform) is the
Krawtchouk transform of the ``d + 1`` kernel values ``k(h)``::

    lambda_l = 2^-d sum_h C(d, h) K_l(h) k(h) / C(d, l),   K_l(h) = sum_j (-1)^j C(h, j) C(d - h, l - j)

(``K_l(h) = sum_{|S| = l} chi_S(x) chi_S(x')`` for ``x, x'`` at distance ``h``; conversely
``k(h) = sum_l lambda_l K_l(h)``).

The target's squared Walsh coefficients, summed over each degree and over the ``k`` outputs,
give its power ``P_l`` per degree. The eigenlearning / omniscient-risk estimate of kernel
ridge regression with ``N`` i.i.d. samples and predictor ``K(x, X) (K(X, X) + delta I)^-1 y``
(Bordelon, Canatar & Pehlevan, ICML 2020; Canatar, Bordelon & Pehlevan, Nat. Commun. 2021;
Simon, Dickens, Karkada & DeWeese, "The eigenlearning framework", 2021; Jacot et al.'s
kernel alignment risk estimator, NeurIPS 2020) then reads::

    sum_l C(d, l) lambda_l / (lambda_l + kappa) + delta / kappa = N        (solved for kappa)
    L_l = lambda_l / (lambda_l + kappa)                                      (learnability)
    E0  = N / (N - sum_l C(d, l) L_l^2)
    test error = E0 sum_l (1 - L_l)^2 P_l + s2 (E0 - 1)

with ``s2`` the label-noise variance summed over the outputs (training labels noisy, test
labels clean, as in :func:`rbk.data.make_dataset`). The test error is rbk's: the mean over
test points of the squared error summed over the ``k`` outputs. rbk's relative ridges
(:func:`rbk.kernels.fit_predict`) are relative to ``mean(diag K_train)``, which on the cube is
exactly ``k(0)`` for every training set: ``delta = ridge * k(0)`` (:attr:`Spectrum.scale`).

Numerics
--------
* The transform is done exactly in rational arithmetic (:class:`fractions.Fraction` on the
  float64 kernel values, integer Krawtchouk numbers) and rounded once: no cancellation. What
  remains is the float64 error of the kernel values themselves; it moves ``lambda_l`` by at
  most ``sum_h |w_lh| max_h |dk(h)| <= max_h |dk(h)| / sqrt(C(d, l))`` with ``w_lh`` the
  weights above (Cauchy-Schwarz with the orthogonality of the Krawtchouk polynomials), reported
  per degree as :attr:`Spectrum.roundoff` with ``|dk| <= VALUE_ULPS * eps * max |k|`` (measured:
  rbk's float64 kernel values are within ~2.4 ulps of ``max |k|``; see the tests).
  An eigenvalue below ``-roundoff`` means the kernel is not positive semi-definite (an
  error); one within ``[-roundoff, 0)`` is round-off and is set to 0.
* The learning curve itself is :mod:`rbk.theory.solver`'s (Newton's method for ``kappa``).

Public API
----------
:func:`kernel_spectrum` / :func:`spectrum_from_values` -> :class:`Spectrum`;
:func:`target_power` (exact for :func:`rbk.targets.paper_instance`, exact by a fast
Walsh-Hadamard transform for ``d <= EXACT_MAX_D``, else Monte Carlo with a standard error);
the curves of :mod:`rbk.theory.solver` on these spectra, and
:func:`predict_learners` (what ``summary.json`` of Experiment 1 carries). Derivation and the
check against measured kernel ridge: ``docs/learning_curves.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from fractions import Fraction
from typing import Callable, Mapping, Sequence

import numpy as np

from rbk._checks import check_array, check_choice, check_int, check_real
from rbk.theory.solver import N_MAX, curve_grid, grid_curve, n_star, optimal_curve

#: Bound on the float64 error of a kernel value, in units of ``eps * max |k|`` (see the module doc).
VALUE_ULPS = 64
#: ``d`` up to which :func:`target_power` transforms a generic target exactly (``2^d`` points).
EXACT_MAX_D = 16
_KINDS = ("ntk", "nngp")


# ----------------------------------------------------------------------------- the spectrum


@functools.lru_cache(maxsize=None)
def krawtchouk(d: int) -> tuple[tuple[int, ...], ...]:
    """The integer Krawtchouk numbers ``K[l][h] = sum_j (-1)^j C(h, j) C(d - h, l - j)``.

    ``K_l(h) = sum_{|S| = l} chi_S(x) chi_S(x')`` for any two points at Hamming distance ``h``.
    """
    d = check_int("d", d, lo=1)
    return tuple(
        tuple(sum((-1) ** j * math.comb(h, j) * math.comb(d - h, l - j) for j in range(min(h, l) + 1))
              for h in range(d + 1))
        for l in range(d + 1)
    )  # fmt: skip


def cube_points(d: int) -> np.ndarray:
    """``(d + 1, d)`` float64 points; row ``h`` has its first ``h`` coordinates ``-1``, the rest ``+1``.

    Row ``h`` is at Hamming distance ``h`` from row 0 (``x . x' = d - 2h``).
    """
    d = check_int("d", d, lo=1)
    return np.where(np.arange(d)[None, :] < np.arange(d + 1)[:, None], -1.0, 1.0)


def transform_weights(d: int) -> list[list[Fraction]]:
    """``w[l][h] = 2^-d C(d, h) K_l(h) / C(d, l)`` as exact rationals."""
    K = krawtchouk(d)
    return [[Fraction(math.comb(d, h) * K[l][h], 2**d * math.comb(d, l)) for h in range(d + 1)]
            for l in range(d + 1)]  # fmt: skip


def degree_transform(values, d: int) -> np.ndarray:
    """Exact ``2^-d sum_h C(d, h) K_l(h) values[h] / C(d, l)`` for ``l = 0..d``, rounded once to float64.

    ``values`` (``d + 1`` finite floats) are taken as the exact binary rationals they are.
    """
    v = [Fraction(float(x)) for x in values]
    return np.array([float(sum((w * x for w, x in zip(row, v)), Fraction(0))) for row in transform_weights(d)])


@dataclasses.dataclass(frozen=True, eq=False)
class Spectrum:
    """The Walsh spectrum of a dot-product kernel on ``{-1, 1}^d`` (uniform measure).

    Attributes:
      d: dimension.
      eigenvalues: ``(d + 1,)`` eigenvalue of each Walsh degree ``l`` (``>= 0``).
      multiplicities: ``(d + 1,)`` ``C(d, l)`` as float64.
      scale: ``k(0)`` = ``mean(diag K)`` of every Gram on the cube: the unit of rbk's relative
        ridges (``delta = ridge * scale``).
      values: the ``d + 1`` kernel values ``k(h)`` it was computed from.
      roundoff: ``(d + 1,)`` bound on the eigenvalues' error due to the float64 values.
      description: where it came from (JSON-serialisable).
    """

    d: int
    eigenvalues: np.ndarray
    multiplicities: np.ndarray
    scale: float
    values: np.ndarray
    roundoff: np.ndarray
    description: Mapping = dataclasses.field(default_factory=dict)

    @property
    def power_layout(self) -> str:
        """What a power vector for this spectrum holds (for error messages)."""
        return f"d + 1 = {self.d + 1} entries (one per Walsh degree)"

    @property
    def trace(self) -> float:
        """``sum_l C(d, l) lambda_l`` (equals ``k(0)`` up to round-off)."""
        return float(np.sum(self.multiplicities * self.eigenvalues))

    def gram(self, x1, x2=None) -> np.ndarray:
        """The kernel rebuilt from the spectrum, ``sum_l lambda_l K_l(h(x1, x2))``: a check."""
        x1 = check_array("x1", x1, ndim=2, shape=(None, self.d)).astype(np.float64)
        x2 = x1 if x2 is None else check_array("x2", x2, ndim=2, shape=(None, self.d)).astype(np.float64)
        h = np.rint((self.d - x1 @ x2.T) / 2).astype(int)
        per_h = np.asarray(krawtchouk(self.d), np.float64).T @ self.eigenvalues
        return per_h[h]


def spectrum_from_values(values, *, description: Mapping | None = None) -> Spectrum:
    """The :class:`Spectrum` of the kernel with values ``values[h]`` at Hamming distance ``h``.

    ``values``: ``d + 1`` finite numbers (``d >= 1``), ``values[0]`` the diagonal.

    Raises:
      ValueError: bad values, or an eigenvalue below minus its round-off bound (the kernel is
        not positive semi-definite on the cube).
    """
    v = check_array("values", values, ndim=1).astype(np.float64)
    if v.size < 2:
        raise ValueError(f"values must hold the kernel at the d + 1 >= 2 Hamming distances, got {v.size}")
    d = v.size - 1
    lam = degree_transform(v, d)
    w_abs = np.array([float(sum(abs(w) for w in row)) for row in transform_weights(d)])
    roundoff = w_abs * VALUE_ULPS * np.finfo(np.float64).eps * float(np.max(np.abs(v)))
    bad = np.flatnonzero(lam < -roundoff)
    if bad.size:
        l = int(bad[0])
        raise ValueError(
            f"kernel is not positive semi-definite on the cube {{-1, 1}}^{d}: the eigenvalue of Walsh degree {l} "
            f"is {lam[l]:.3e}, below minus its round-off bound {roundoff[l]:.1e} (values = k(h) at Hamming "
            "distance h must give eigenvalues >= 0)"
        )
    mult = np.array([float(math.comb(d, l)) for l in range(d + 1)])
    return Spectrum(d, np.maximum(lam, 0.0), mult, float(v[0]), v, roundoff, dict(description or {}))


def kernel_spectrum(kfn: Callable, d: int, get: str = "ntk") -> Spectrum:
    """The spectrum of a kernel function on ``{-1, 1}^d`` from its float64 values at ``d + 1`` pairs.

    ``kfn``: a :class:`rbk.kernels.KernelFn` (e.g. ``kernel_fn('3resnet')``) or any
    ``kfn(x1, x2, get) -> (n1, n2)``; it must be a function of ``x . x'`` on the cube (all of
    rbk's are). ``get``: ``'ntk'`` or ``'nngp'``.
    """
    from rbk import kernels

    if not callable(kfn):
        raise ValueError(f"kfn must be a kernel function (e.g. rbk.kernels.kernel_fn('2nn')), got {kfn!r}")
    d = check_int("d", d, lo=1)
    check_choice("get", get, _KINDS)
    x = cube_points(d)
    if isinstance(kfn, kernels.KernelFn):
        gram = kfn(x, None, get=get)
        desc = {**kfn.describe(), "get": get}
    else:
        gram = np.asarray(kfn(x, x, get), np.float64)
        desc = {"kernel": repr(kfn), "get": get}
    return spectrum_from_values(np.asarray(gram, np.float64)[0], description=desc)


# ----------------------------------------------------------------------------- the target's power per degree


def _paper_walsh(d: int, k: int, g_degree: int, alpha: float, beta: float) -> list[dict[frozenset, float]]:
    """Walsh expansion of each output of ``paper_instance``, from its definition.

    ``F_i = x_{2i-1} x_{2i}`` is the monomial ``{2i-1, 2i}``; a product of monomials is the
    monomial of the symmetric difference (``x_j^2 = 1``), so ``G_i(F) = (-1)^i F_1 ... F_g``
    is ``(-1)^i`` times the monomial ``S_1 ^ ... ^ S_g``.
    """
    F = [frozenset((2 * i, 2 * i + 1)) for i in range(k)]  # 0-based coordinates
    composed = functools.reduce(lambda a, b: a ^ b, F[:g_degree], frozenset())
    outs = []
    for i in range(1, k + 1):
        coef: dict[frozenset, float] = {}
        coef[F[i - 1]] = coef.get(F[i - 1], 0.0) + beta
        coef[composed] = coef.get(composed, 0.0) + alpha * (-1.0) ** i
        outs.append(coef)
    return outs


def paper_power(target) -> np.ndarray:
    """Exact power per Walsh degree (summed over the outputs) of a :func:`rbk.targets.paper_instance`."""
    info = getattr(target, "info", None) or {}
    if info.get("family") != "paper":
        raise ValueError("target must be an rbk.targets.paper_instance (info['family'] == 'paper')")
    d, k, g = int(info["d"]), int(info["k"]), int(info["g_degree"])
    power = np.zeros(d + 1)
    for out in _paper_walsh(d, k, g, float(info["alpha"]), float(info["beta"])):
        for mono, c in out.items():
            power[len(mono)] += c * c
    return power


def walsh_hadamard(values: np.ndarray) -> np.ndarray:
    """Fast Walsh-Hadamard transform along axis 0 (length ``2^d``), normalised: ``2^-d H values``.

    Index bit ``j`` of a point is coordinate ``j`` (``x_j = -1`` where set); output index ``S``
    (bitmask) holds the coefficient of ``chi_S``.
    """
    a = np.array(values, dtype=np.float64, copy=True)
    n = a.shape[0]
    d = n.bit_length() - 1
    if n < 2 or 1 << d != n:
        raise ValueError(f"values must have a power-of-two length >= 2 along axis 0, got {n}")
    rest = a.shape[1:]
    for j in range(d):
        a = a.reshape((n >> (j + 1), 2, 1 << j) + rest)
        lo, hi = a[:, 0].copy(), a[:, 1].copy()
        a[:, 0], a[:, 1] = lo + hi, lo - hi
    return a.reshape((n,) + rest) / n


def all_cube_points(d: int) -> np.ndarray:
    """All ``2^d`` points of ``{-1, 1}^d`` (float64), point ``b`` having ``x_j = -1`` where bit ``j`` is set."""
    d = check_int("d", d, lo=1, hi=24)
    b = np.arange(1 << d)
    return np.where((b[:, None] >> np.arange(d)[None, :]) & 1, -1.0, 1.0)


def evaluate_target(target, x: np.ndarray) -> np.ndarray:
    import jax.numpy as jnp

    from rbk.kernels import x64

    import jax

    with x64():
        return np.asarray(jax.jit(target)(jnp.asarray(x, jnp.float64)), np.float64)


def walsh_power_exact(target, d: int) -> np.ndarray:
    coef = walsh_hadamard(evaluate_target(target, all_cube_points(d)))
    deg = np.array([bin(s).count("1") for s in range(1 << d)])
    return np.bincount(deg, weights=np.sum(coef**2, axis=1), minlength=d + 1)


def walsh_power_monte_carlo(target, d: int, key, n: int, batches: int) -> tuple[np.ndarray, np.ndarray]:
    """U-statistic ``P_l = E_{x, x' indep}[f(x) . f(x') K_l(h(x, x'))]`` per batch; mean and s.e."""
    import jax

    from rbk.data import sample_inputs

    K = np.asarray(krawtchouk(d), np.float64)  # (l, h)
    m = n // batches
    est = []
    for kb in jax.random.split(key, batches):
        x = np.asarray(sample_inputs(kb, m, d, "cube"), np.float64)
        y = evaluate_target(target, x)
        A = np.zeros(d + 1)
        for i0 in range(0, m, 1024):
            h = np.rint((d - x[i0:i0 + 1024] @ x.T) / 2).astype(int)
            A += np.bincount(h.ravel(), weights=(y[i0:i0 + 1024] @ y.T).ravel(), minlength=d + 1)
        A[0] -= np.sum(y * y)  # drop the pairs (i, i)
        est.append(K @ A / (m * (m - 1)))
    est = np.array(est)
    return est.mean(0), est.std(0, ddof=1) / math.sqrt(batches)


def target_power(target, *, key=None, n: int = 32768, batches: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Power of ``target`` per Walsh degree on the uniform cube, summed over its outputs, and its s.e.

    Returns ``(power (d + 1,), stderr (d + 1,))``: ``power[l] = sum_outputs sum_{|S| = l}
    f_S^2``. Exact (``stderr`` 0) for a :func:`rbk.targets.paper_instance` (from its
    definition) and for any target with ``d <= EXACT_MAX_D`` (fast Walsh-Hadamard transform of
    its values on all ``2^d`` points); otherwise a Monte Carlo estimate from ``n`` uniform
    points in ``batches`` independent batches (the unbiased U-statistic above per batch; the
    standard error is over batches). Its error grows like ``sqrt(C(d, l)) / (n / batches)``
    times the target's second moment: high degrees need many points.

    Args:
      target: an :class:`rbk.targets.Target` (``d``, ``k``; any jittable ``(n, d) -> (n, k)``).
      key: PRNG key of the Monte Carlo draw (required only when it is used).
      n, batches: Monte Carlo points (``>= 2 batches``) and batches (``>= 2``).
    """
    d = check_int("target.d", getattr(target, "d", None), lo=1)
    info = getattr(target, "info", None) or {}
    if info.get("distribution", "cube") != "cube":
        raise ValueError(f"target_power is for targets on the uniform cube, got distribution {info['distribution']!r}")
    if info.get("family") == "paper":
        p = paper_power(target)
        return p, np.zeros_like(p)
    if d <= EXACT_MAX_D:
        p = walsh_power_exact(target, d)
        return p, np.zeros_like(p)
    batches = check_int("batches", batches, lo=2)
    n = check_int("n", n, lo=4 * batches)
    if key is None:
        raise ValueError(f"key (a jax PRNG key) is required for a Monte Carlo Walsh profile (d = {d} > {EXACT_MAX_D})")
    return walsh_power_monte_carlo(target, d, key, n, batches)


# ----------------------------------------------------------------------------- experiment summaries


def spectral_learners(learners: Sequence[str]) -> list[str]:
    """The learners of ``learners`` that have a spectrum here: exact kernels ``'ntk-<arch>'`` and
    ``'nngp-<arch>'`` with ``<arch>`` one of :data:`rbk.models.ARCHS` (networks and random
    features have none)."""
    from rbk.models import ARCHS

    return [lr for lr in learners if isinstance(lr, str) and lr.partition("-")[0] in _KINDS
            and lr.partition("-")[2] in ARCHS]  # fmt: skip


def predict_learners(
    learners: Sequence[str],
    target,
    ns: Sequence[int],
    ridges: Sequence[float],
    threshold: float,
    *,
    W_std: float = math.sqrt(2.0),
    b_std: float = 0.1,
    noise: float = 0.0,
    curve_max: float = 1e7,
    n_max: float = N_MAX,
) -> dict:
    """Predicted learning curve and ``n*`` of each exact-kernel learner (``ntk-*``, ``nngp-*``).

    For each such learner: ``{"n_star": float or None, "curve": {N: error}, "n_star_optimal_ridge",
    "ridges"}``. ``curve`` is the best over the relative-ridge grid ``ridges`` (the learner's
    own selection) at the :func:`curve_grid` of ``ns`` out to ``curve_max``; ``n_star`` its first
    crossing of ``threshold`` up to ``n_max`` (``None``: not below by then);
    ``n_star_optimal_ridge`` the same for the best ridge of all (:func:`optimal_curve`).
    Any other learner (networks, random features: no spectrum) is refused (``ValueError``, before
    any compute); :func:`spectral_learners` selects those with one. ``noise``: label-noise standard
    deviation per output (as in the sweep). Costs well under a second per learner.
    """
    from rbk import kernels

    if isinstance(learners, str) or not len(learners):
        raise ValueError(f"learners must be a non-empty list of kernel learners ('ntk-<arch>', 'nngp-<arch>'), got {learners!r}")
    bad = [lr for lr in learners if lr not in spectral_learners([lr])]
    if bad:
        raise ValueError(f"learners must be exact-kernel learners 'ntk-<arch>' or 'nngp-<arch>' (arch in rbk.models.ARCHS), "
                         f"which have a spectrum; got {bad} (pass rbk.theory.spectral_learners(learners))")
    d, k = int(target.d), int(target.k)
    power, _ = target_power(target)
    nv = k * check_real("noise", noise, lo=0.0) ** 2
    grid = curve_grid(ns, curve_max)
    out = {}
    for learner in learners:
        kind, _, arch = learner.partition("-")
        spec = kernel_spectrum(kernels.kernel_fn(arch, W_std=W_std, b_std=b_std), d, kind)
        curve = grid_curve(spec, power, grid, ridges, noise_var=nv)
        out[learner] = {
            "n_star": n_star(lambda n: grid_curve(spec, power, n, ridges, noise_var=nv)["test_error"], threshold,
                             n_max=n_max),
            "curve": {str(int(n)): float(e) for n, e in zip(curve["n"], curve["test_error"])},
            "n_star_optimal_ridge": n_star(lambda n: optimal_curve(spec, power, n, noise_var=nv)["test_error"],
                                           threshold, n_max=n_max),
            "ridges": [float(r) for r in ridges],
        }  # fmt: skip
    return out
