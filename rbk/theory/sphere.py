r"""Spherical-harmonic spectra of rotation-invariant kernels, and the exact harmonic parts of polynomial targets.

A kernel ``k(x, x')`` invariant under every rotation of ``R^d`` is a function ``k(r, r', t)`` of
the radii ``r = |x|``, ``r' = |x'|`` and the cosine ``t = x.x' / (r r')``. On the sphere of
radius ``rho`` (``x = rho s``, ``s`` uniform on ``S^{d-1}``) Funk-Hecke diagonalises it::

    k(rho s, rho s') = sum_l N(d, l) k_l P_l(s.s'),   k_l = E_t[k(rho, rho, t) P_l(t)]

with ``P_l`` the Gegenbauer (Legendre, in dimension ``d``) polynomial normalised ``P_l(1) = 1``
(``P_l = C_l^{(d-2)/2} / C_l^{(d-2)/2}(1)``; Chebyshev at ``d = 2``), ``N(d, l)`` the dimension of
the spherical harmonics of degree ``l`` and ``t = s.s'`` distributed with density
``proportional to (1 - t^2)^((d-3)/2)`` on ``[-1, 1]``. Every degree-``l`` harmonic is an
eigenfunction of ``T f = E_{x'} k(x, x') f(x')`` with eigenvalue ``k_l`` (multiplicity
``N(d, l)``). ``E_t`` is done by Gauss-Jacobi quadrature (``scipy.special.roots_jacobi``, weight
``(1 - t^2)^((d-3)/2)``), exact for polynomial kernels of degree ``< 2 n_t - l`` in ``t``; the
kernel is evaluated in float64 at ``x1 = rho e1``, ``x2 = rho (t e1 + sqrt(1 - t^2) e2)``.

The same coefficients at two radii, ``k_l(r, r')``, make the radial operators of Gaussian inputs
(:mod:`rbk.theory.gaussian`); both are a :class:`HarmonicSpectrum`.

Harmonic parts of polynomial targets (exact)
--------------------------------------------
A target ``f(x) = g(z)``, ``z = Q x`` with ``Q (r, d)`` orthonormal rows and ``g`` a polynomial of
degree ``p`` (``rbk.targets.multi_index`` and its relatives, ``rbk.targets.hierarchy``), is
written in monomials ``z^a``. Each ``z^a`` (degree ``k = |a|``) is a homogeneous polynomial on
``R^d``; its Fischer decomposition ``z^a = h_k + |x|^2 h_{k-2} + |x|^4 h_{k-4} + ...`` (``h_j``
harmonic, homogeneous of degree ``j``) is computed exactly in closed form::

    h_k = sum_j c_j |x|^{2j} Lap^j p,   c_0 = 1,   c_{j+1} = -c_j / (2 (j + 1) (d + 2k - 2j - 4))

(``Lap h_k = 0`` follows term by term), then recursively on ``(p - h_k) / |x|^2``. All of it stays
in polynomials of ``z`` and ``q = |x|^2``: ``Lap(z^a q^m) = Lap_z(z^a) q^m + 2m (2|a| + d + 2m - 2)
z^a q^{m-1}`` (using ``Q Q^T = I``). So at ``x = rho s`` the degree-``l`` part of ``f`` is
``sum_k rho^k h_{k,l}(s)`` and its power at radii ``rho, rho'`` is ``C_l(rho, rho') = sum_{k,k'}
rho^k rho'^{k'} B_l[k, k']`` with ``B_l[k, k'] = E_s[h_{k,l}(s) h_{k',l}(s)]``, from the exact
moments of ``u = Q s`` on the sphere (``E[u^c] = prod_i (c_i - 1)!! / (d (d + 2) ... (d + |c| - 2))``
for even ``c``, else 0). The only rounding is float64 arithmetic on the coefficients.
:func:`harmonic_power` turns ``B_l`` into the power on each eigenvalue of a spectrum.

Public API: :func:`harmonic_dimension`, :func:`gegenbauer`, :func:`angle_rule`,
:func:`check_rotation_invariant`, :func:`kernel_on_pairs`, :func:`radial_spectrum`,
:func:`sphere_spectrum` -> :class:`HarmonicSpectrum`; :func:`target_polynomial`,
:func:`fischer_decomposition`, :func:`sphere_moment`, :func:`power_matrices`,
:func:`harmonic_power`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Callable, Mapping

import numpy as np
import scipy.special

from rbk._checks import check_choice, check_int
from rbk.theory.cube import evaluate_target

#: The kernel kinds a spectrum is computed for.
KINDS = ("ntk", "nngp")
#: Bound on the float64 error of a kernel value, in units of ``eps * max |k|``.
VALUE_ULPS = 64
#: Relative tolerance of the rotation-invariance check.
ROTATION_TOL = 1e-9
#: Default largest degree kept and default angle nodes (Gauss-Jacobi).
DEFAULT_MAX_DEGREE = 24
DEFAULT_ANGLE_NODES = 512
#: How the learning-curve estimate treats the spectral mass beyond the kept spectrum (:class:`HarmonicSpectrum`).
TAILS = ("ridge", "drop")


# ----------------------------------------------------------------------------- harmonic analysis on S^{d-1}


def check_d(d) -> int:
    """``d``: an integer ``>= 2`` (spherical harmonics need a circle at least)."""
    return check_int("d", d, lo=2)


def harmonic_dimension(d: int, l: int) -> int:
    """``N(d, l) = C(l + d - 1, l) - C(l + d - 3, l - 2)``: the dimension of degree-``l`` harmonics on ``S^{d-1}``."""
    d, l = check_d(d), check_int("l", l, lo=0)
    return math.comb(l + d - 1, l) - (math.comb(l + d - 3, l - 2) if l >= 2 else 0)


def gegenbauer(t, max_degree: int, d: int) -> np.ndarray:
    """``P_l(t)`` for ``l = 0..max_degree`` (shape ``t.shape + (max_degree + 1,)``), normalised ``P_l(1) = 1``.

    Three-term recurrence ``(l + d - 2) P_{l+1} = (2l + d - 2) t P_l - l P_{l-1}`` (``P_0 = 1``,
    ``P_1 = t``): Legendre at ``d = 3``, Chebyshev at ``d = 2``.
    """
    d, L = check_d(d), check_int("max_degree", max_degree, lo=0)
    t = np.asarray(t, np.float64)
    out = [np.ones_like(t), t]
    for l in range(1, L):
        out.append(((2 * l + d - 2) * t * out[l] - l * out[l - 1]) / (l + d - 2))
    return np.stack(out[: L + 1], axis=-1)


@functools.lru_cache(maxsize=64)
def angle_rule(d: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Jacobi nodes and weights (summing to 1) for the law of ``t = s.s'`` on ``S^{d-1}``:
    density ``proportional to (1 - t^2)^((d-3)/2)``; exact for polynomials of degree ``<= 2n - 1``."""
    d, n = check_d(d), check_int("angle_nodes", n, lo=2)
    a = (d - 3) / 2.0
    t, w = scipy.special.roots_jacobi(n, a, a)
    return t, w / w.sum()


def call_kernel(kfn: Callable, x1: np.ndarray, x2: np.ndarray, get: str) -> np.ndarray:
    """``kfn(x1, x2, get)`` as float64 (rbk's kernel functions and any foreign ``(n1, d), (n2, d) -> (n1, n2)``)."""
    return np.asarray(kfn(x1, x2, get), np.float64)


def check_kernel(kfn, get: str) -> None:
    if not callable(kfn):
        raise ValueError(f"kfn must be a kernel function kfn(x1, x2, get) (e.g. rbk.kernels.kernel_fn('2nn')), got {kfn!r}")
    check_choice("get", get, KINDS)


def check_rotation_invariant(kfn: Callable, d: int, get: str, *, rotations: int = 3, seed: int = 0) -> float:
    """Refuse (``ValueError``) a kernel that changes under random rotations of ``R^d``; returns the
    largest relative change seen (``<= ROTATION_TOL``). Points and rotations come from
    ``numpy.random.default_rng(seed)`` (deterministic)."""
    check_kernel(kfn, get)
    d = check_d(d)
    rng = np.random.default_rng(seed)
    x1, x2 = rng.standard_normal((3, d)), rng.standard_normal((4, d))
    base = call_kernel(kfn, x1, x2, get)
    scale = max(float(np.max(np.abs(base))), 1e-300)
    worst = 0.0
    for _ in range(rotations):
        q, rr = np.linalg.qr(rng.standard_normal((d, d)))
        q = q * np.sign(np.diag(rr))
        worst = max(worst, float(np.max(np.abs(call_kernel(kfn, x1 @ q, x2 @ q, get) - base))) / scale)
    if not worst <= ROTATION_TOL:
        raise ValueError(f"kfn must be rotation-invariant (a function of |x|, |x'| and x.x'): under a random rotation "
                         f"of R^{d} its values changed by {worst:.2e} relative to max |k| (tolerance {ROTATION_TOL:g})")
    return worst


def kernel_on_pairs(kfn: Callable, d: int, get: str, r1, r2, t) -> np.ndarray:
    """``k(r1_i, r2_j, t_q)`` (shape ``(n1, n2, nt)``), evaluated at ``x1 = r1_i e1`` and
    ``x2 = r2_j (t_q e1 + sqrt(1 - t_q^2) e2)`` in float64 (one Gram of ``n1 x (n2 nt)`` points)."""
    r1, r2, t = (np.asarray(a, np.float64).ravel() for a in (r1, r2, t))
    x1 = np.zeros((r1.size, d))
    x1[:, 0] = r1
    x2 = np.zeros((r2.size, t.size, d))
    x2[:, :, 0] = r2[:, None] * t[None, :]
    x2[:, :, 1] = r2[:, None] * np.sqrt(np.clip(1.0 - t * t, 0.0, None))[None, :]
    return call_kernel(kfn, x1, x2.reshape(-1, d), get).reshape(r1.size, r2.size, t.size)


def gegenbauer_coefficients(values: np.ndarray, d: int, max_degree: int, weights: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``k_l = sum_q w_q k(t_q) P_l(t_q)`` along the last axis: ``values.shape[:-1] + (max_degree + 1,)``."""
    return values @ (weights[:, None] * gegenbauer(t, max_degree, d))


# ----------------------------------------------------------------------------- the spectrum


@dataclasses.dataclass(frozen=True, eq=False)
class HarmonicSpectrum:
    """Spectrum of a rotation-invariant kernel on the sphere or on Gaussian inputs, truncated at ``max_degree``.

    Eigenvalue ``i`` belongs to harmonic degree ``degrees[i]`` and radial eigenvector
    ``radial_index[i]`` of that degree, with multiplicity ``N(d, degrees[i])``.

    Attributes:
      d, distribution: dimension and ``'sphere'`` (radius ``sqrt(d)``) or ``'gaussian'``.
      max_degree: the largest harmonic degree kept.
      eigenvalues, multiplicities, degrees, radial_index: flat ``(M,)`` arrays (``M =
        (max_degree + 1) n_r``); eigenvalues below their round-off bound are 0.
      radii, radial_weights: the radial rule (``n_r`` nodes; one node ``sqrt(d)``, weight 1 on
        the sphere).
      vectors: ``(max_degree + 1, n_r, n_r)``, column ``j`` of degree ``l`` the ``j``-th
        eigenvector of ``W^1/2 K_l W^1/2`` (``radial_index`` ``j``).
      scale: ``E[k(x, x)]``, the unit of rbk's relative ridges (``mean(diag K_train)`` tends to it).
      mass_beyond: ``scale`` minus the kept trace ``sum m lambda``: the spectral mass of degrees
        above ``max_degree`` plus eigenvalues zeroed as round-off.
      roundoff: ``(max_degree + 1,)`` bound on an eigenvalue's error due to the float64 kernel
        values (``VALUE_ULPS`` ulps of ``max_t |k|``, weighted by the radial rule).
      error_estimate: ``(max_degree + 1,)`` change of each degree's top eigenvalues against a
        coarser rule (half the angle nodes, three quarters of the radial ones): an a-posteriori
        error estimate of the quadrature.
      angle_nodes: Gauss-Jacobi nodes used.
      description: where it came from.
      tail: how the learning-curve estimate treats ``mass_beyond``: ``'ridge'`` (the default) adds
        it to the absolute ridge (:attr:`implicit_ridge`), ``'drop'`` leaves it out. The modes
        beyond the kept spectrum have eigenvalues far below ``kappa`` at any ``N`` the estimate is
        used at, so they enter its equation ``sum m lambda / (lambda + kappa) + delta / kappa = N``
        only through their trace, as ``mass_beyond / kappa``: exactly a ridge, and they carry none
        of a polynomial target of degree ``<= max_degree``. Dropping them predicts a kernel that
        interpolates more gently than the real one (``docs/learning_curves.md`` section 7).
    """

    d: int
    distribution: str
    max_degree: int
    eigenvalues: np.ndarray
    multiplicities: np.ndarray
    degrees: np.ndarray
    radial_index: np.ndarray
    radii: np.ndarray
    radial_weights: np.ndarray
    vectors: np.ndarray
    scale: float
    mass_beyond: float
    roundoff: np.ndarray
    error_estimate: np.ndarray
    angle_nodes: int
    description: Mapping = dataclasses.field(default_factory=dict)
    tail: str = "ridge"

    def __post_init__(self):
        check_choice("tail", self.tail, TAILS)

    @property
    def implicit_ridge(self) -> float:
        """The absolute ridge the estimate adds for the modes beyond the kept spectrum (see ``tail``)."""
        return max(0.0, float(self.mass_beyond)) if self.tail == "ridge" else 0.0

    def with_tail(self, tail: str) -> "HarmonicSpectrum":
        """The same spectrum with ``tail`` (``'ridge'`` or ``'drop'``)."""
        return dataclasses.replace(self, tail=tail)

    @property
    def power_layout(self) -> str:
        return (f"{self.eigenvalues.size} entries (one per eigenvalue: degrees 0..{self.max_degree} times "
                f"{self.radii.size} radial eigenvectors; rbk.theory.harmonic_power)")

    @property
    def trace(self) -> float:
        """The kept trace ``sum_i m_i lambda_i`` (``scale - mass_beyond``)."""
        return float(np.sum(self.multiplicities * self.eigenvalues))

    def precision(self) -> dict:
        """Radial nodes, angle nodes, largest degree kept, spectral mass beyond it (absolute and
        relative to the trace) and the largest quadrature error estimate (relative to the top eigenvalue)."""
        return {"radial_nodes": int(self.radii.size), "angle_nodes": self.angle_nodes, "max_degree": self.max_degree,
                "mass_beyond": self.mass_beyond, "mass_beyond_relative": self.mass_beyond / self.scale, "tail": self.tail,
                "error_estimate_relative": float(np.max(self.error_estimate) / np.max(self.eigenvalues))}

    def degree_eigenvalues(self, l: int) -> np.ndarray:
        """The ``n_r`` eigenvalues of degree ``l`` (radial order)."""
        l = check_int("l", l, lo=0, hi=self.max_degree)
        return self.eigenvalues[self.degrees == l]


def _sorted_eigh(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lam, vec = np.linalg.eigh((a + np.swapaxes(a, -1, -2)) / 2)
    return lam[..., ::-1], vec[..., ::-1]


def _weighted(coef: np.ndarray, weights) -> np.ndarray:
    """``W^1/2 K_l W^1/2`` per degree: ``(L + 1, n_r, n_r)`` from ``coef (n_r, n_r, L + 1)``."""
    sw = np.sqrt(np.asarray(weights, np.float64))
    return np.moveaxis(sw[:, None, None] * coef * sw[None, :, None], -1, 0)


def radial_spectrum(coef: np.ndarray, weights, coarse: tuple[np.ndarray, np.ndarray], radii, *, d: int,
                    distribution: str, scale: float, value_max, angle_nodes: int,
                    description: Mapping) -> HarmonicSpectrum:
    """A :class:`HarmonicSpectrum` from the coefficients ``coef (n_r, n_r, L + 1)`` = ``k_l(r_i, r_j)`` on
    the radial rule ``(radii, weights)`` (eigenvalues of ``W^1/2 K_l W^1/2``); ``coarse``: the
    ``(coef, weights)`` of a coarser rule, for the error estimate; ``value_max``: ``max_t |k(r_i, r_j, t)|``
    (``(n_r, n_r)`` or a scalar), the scale of the kernel values' float64 error."""
    L = coef.shape[-1] - 1
    sw = np.sqrt(np.asarray(weights, np.float64))
    lam, vec = _sorted_eigh(_weighted(coef, weights))
    lam_c = np.linalg.eigvalsh(_weighted(*coarse))[..., ::-1]
    top = min(4, lam_c.shape[1])
    err = np.max(np.abs(lam[:, :top] - lam_c[:, :top]), axis=1)
    # |error of an entry of W^1/2 K_l W^1/2| <= VALUE_ULPS eps sqrt(w_i w_j) max_t |k(r_i, r_j, t)| (sum_q w_q |P_l| <= 1):
    # an eigenvalue moves by at most the Frobenius norm of that bound
    vm = np.broadcast_to(np.asarray(value_max, np.float64), coef.shape[:2])
    bound = float(np.linalg.norm(sw[:, None] * vm * sw[None, :]))
    roundoff = np.full(L + 1, VALUE_ULPS * np.finfo(np.float64).eps * bound)
    bad = lam < -(roundoff + err)[:, None]
    if bad.any():
        l = int(np.argwhere(bad)[0, 0])
        raise ValueError(f"kernel is not positive semi-definite on {distribution} inputs in R^{d}: degree {l} has the "
                         f"eigenvalue {lam[bad][0]:.3e}, below minus its round-off and quadrature error bound "
                         f"{roundoff[l] + err[l]:.1e}")
    lam = np.where(lam > roundoff[:, None], lam, 0.0)
    n_r = lam.shape[1]
    mult = np.array([float(harmonic_dimension(d, l)) for l in range(L + 1)])
    kept = float(np.sum(mult[:, None] * lam))
    return HarmonicSpectrum(d, distribution, L, lam.ravel(), np.repeat(mult, n_r), np.repeat(np.arange(L + 1), n_r),
                            np.tile(np.arange(n_r), L + 1), np.asarray(radii, np.float64).ravel(), sw**2, vec,
                            float(scale), float(scale - kept), roundoff, err, angle_nodes, dict(description))


def check_rule_sizes(d, max_degree, angle_nodes) -> tuple[int, int, int]:
    d = check_d(d)
    L = check_int("max_degree", DEFAULT_MAX_DEGREE if max_degree is None else max_degree, lo=0)
    nt = check_int("angle_nodes", max(DEFAULT_ANGLE_NODES, 4 * L) if angle_nodes is None else angle_nodes, lo=2 * L + 2)
    return d, L, nt


def describe_kernel(kfn, get: str) -> dict:
    return {**kfn.describe(), "get": get} if hasattr(kfn, "describe") else {"kernel": repr(kfn), "get": get}


def sphere_spectrum(kfn: Callable, d: int, get: str = "ntk", *, max_degree: int | None = None,
                    angle_nodes: int | None = None) -> HarmonicSpectrum:
    """Spectrum of ``kfn`` on the sphere of radius ``sqrt(d)`` (uniform measure): ``lambda_l = k_l`` at
    ``r = r' = sqrt(d)`` with multiplicity ``N(d, l)``, ``l = 0..max_degree`` (module doc).

    ``kfn``: any rotation-invariant ``kfn(x1, x2, get) -> (n1, n2)`` (rbk's exact kernels, e.g.
    ``rbk.kernels.kernel_fn('2nn')``, ``described_kernel_fn(...)``, ``model_kernel_fn(model)``);
    checked on random rotations first. ``max_degree`` default 24, ``angle_nodes`` default
    ``max(512, 4 max_degree)`` (``>= 2 max_degree + 2``).
    """
    check_kernel(kfn, get)
    d, L, nt = check_rule_sizes(d, max_degree, angle_nodes)
    check_rotation_invariant(kfn, d, get)
    rho = math.sqrt(d)
    coefs, vmax = [], 0.0
    for n in (nt, max(nt // 2, L + 1)):
        t, w = angle_rule(d, n)
        vals = kernel_on_pairs(kfn, d, get, [rho], [rho], t)
        vmax = max(vmax, float(np.max(np.abs(vals))))
        coefs.append(gegenbauer_coefficients(vals, d, L, w, t))
    diag = float(kernel_on_pairs(kfn, d, get, [rho], [rho], [1.0])[0, 0, 0])
    return radial_spectrum(coefs[0], [1.0], (coefs[1], [1.0]), [rho], d=d, distribution="sphere", scale=diag,
                           value_max=max(abs(diag), vmax), angle_nodes=nt,
                           description={**describe_kernel(kfn, get), "distribution": "sphere"})


# ----------------------------------------------------------------------------- polynomial targets


def monomials(r: int, p: int) -> list[tuple[int, ...]]:
    """All exponents ``a`` in ``N^r`` with ``|a| <= p``, by total degree."""
    return [a for k in range(p + 1) for a in itertools.product(range(k + 1), repeat=r) if sum(a) == k]


def _laplacian(poly: dict, d: int) -> dict:
    """``Lap`` on ``R^d`` of ``sum c z^a q^m`` (``{(a, m): c}``, ``z = Q x``, ``q = |x|^2``)."""
    out: dict = {}
    for (a, m), c in poly.items():
        for i, ai in enumerate(a):
            if ai >= 2:
                b = a[:i] + (ai - 2,) + a[i + 1:]
                out[(b, m)] = out.get((b, m), 0.0) + c * ai * (ai - 1)
        if m >= 1:
            out[(a, m - 1)] = out.get((a, m - 1), 0.0) + c * 2 * m * (2 * sum(a) + d + 2 * m - 2)
    return out


def _add(acc: dict, poly: dict, c: float, shift: int) -> None:
    for (a, m), v in poly.items():
        acc[(a, m + shift)] = acc.get((a, m + shift), 0.0) + c * v


@functools.lru_cache(maxsize=4096)
def fischer_decomposition(a: tuple[int, ...], d: int) -> dict[int, dict[tuple[tuple[int, ...], int], float]]:
    """The harmonic parts of ``z^a`` on ``R^d``: ``{l: h_l}`` with ``z^a = sum_l |x|^{|a| - l} h_l``,
    ``h_l`` harmonic homogeneous of degree ``l`` as ``{(b, m): c}`` (``c z^b |x|^{2m}``). Module doc."""
    out = {}
    cur, k = {(tuple(a), 0): 1.0}, sum(a)
    while cur and k >= 0:
        qs = [cur]
        for _ in range(k // 2):
            qs.append(_laplacian(qs[-1], d))
        c = [1.0]
        for j in range(k // 2):
            c.append(-c[j] / (2 * (j + 1) * (d + 2 * k - 2 * j - 4)))
        h: dict = {}
        rest: dict = {}
        for j, q in enumerate(qs):
            _add(h, q, c[j], j)
            if j >= 1:
                _add(rest, q, -c[j], j - 1)
        out[k] = {key: v for key, v in h.items() if v != 0.0}
        cur, k = {key: v for key, v in rest.items() if v != 0.0}, k - 2
    return out


def sphere_moment(c: tuple[int, ...], d: int) -> float:
    """``E[u^c]`` for ``u`` the first ``len(c)`` coordinates of a uniform point of the unit sphere ``S^{d-1}``."""
    if any(ci % 2 for ci in c):
        return 0.0
    num = math.prod(math.prod(range(ci - 1, 0, -2)) for ci in c)
    return num / math.prod(d + 2 * i for i in range(sum(c) // 2))


def power_matrices(coef: Mapping[tuple[int, ...], float], d: int) -> np.ndarray:
    """``B[l, k, k'] = E_s[h_{k,l}(s) h_{k',l}(s)]`` (shape ``(p + 1,) * 3``) of ``g(z) = sum_a coef[a] z^a``,
    ``h_{k,l}`` the degree-``l`` harmonic part of its degree-``k`` homogeneous part (module doc)."""
    d = check_d(d)
    alphas = list(coef)
    r = len(alphas[0])
    p = max(sum(a) for a in alphas)
    basis = monomials(r, p)
    index = {b: i for i, b in enumerate(basis)}
    moments = np.array([[sphere_moment(tuple(x + y for x, y in zip(b1, b2)), d) for b2 in basis] for b1 in basis])
    H = np.zeros((p + 1, p + 1, len(basis)))  # H[l, k]: h_{k,l} on the sphere (q = 1) in the monomial basis
    for a in alphas:
        for l, h in fischer_decomposition(a, d).items():
            for (b, _m), v in h.items():
                H[l, sum(a), index[b]] += coef[a] * v
    return np.einsum("lki,ij,lqj->lkq", H, moments, H)


def _hermite_to_monomial(n: int) -> np.ndarray:
    """``T[j, k]``: coefficient of ``z^j`` in ``He_k(z) / sqrt(k!)``, ``j, k < n``."""
    T = np.zeros((n, n))
    for k in range(n):
        c = np.polynomial.hermite_e.herme2poly(np.eye(n)[k]) / math.sqrt(math.factorial(k))
        T[: c.size, k] = c
    return T


def _tensor_to_dict(C: np.ndarray, p: int, tol: float) -> dict[tuple[int, ...], float]:
    return {tuple(int(i) for i in a): float(C[a]) for a in itertools.product(*map(range, C.shape))
            if sum(a) <= p and abs(C[a]) > tol}  # fmt: skip


def _hermite_tensor_to_monomials(Ch: np.ndarray) -> np.ndarray:
    T = _hermite_to_monomial(Ch.shape[0])
    C = Ch
    for axis in range(C.ndim):
        C = np.moveaxis(np.tensordot(T, C, axes=([1], [axis])), 0, axis)
    return C


def _gradient_subspace(target, d: int, rank: int) -> np.ndarray:
    """An orthonormal basis ``(rank, d)`` of the span of the target's gradients (its ``U``'s row space)."""
    import jax
    import jax.numpy as jnp

    from rbk.kernels import x64

    x = np.random.default_rng(0).standard_normal((2 * rank + 4, d))
    with x64():
        g = np.asarray(jax.vmap(jax.grad(lambda v: jnp.sum(target(v[None, :]))))(jnp.asarray(x)), np.float64)
    _, s, vt = np.linalg.svd(g, full_matrices=False)
    if rank < min(g.shape) and s[rank] > 1e-9 * s[0]:
        raise ValueError(f"target must depend on x through a rank-{rank} projection; its gradients span more "
                         f"(singular values {s[: rank + 1]})")
    return vt[:rank]


def target_polynomial(target) -> tuple[np.ndarray, list[dict[tuple[int, ...], float]]]:
    """``(Q, [g_o])``: the target as ``f_o(x) = sum_a g_o[a] (Q x)^a`` per output ``o``, ``Q (r, d)`` orthonormal rows.

    Multi-index targets (``rbk.targets.multi_index``, ``single_index``, ``sum_of_products``,
    ``random_multi_index``, ``with_head``): exact from the Hermite coefficients and ``U``.
    Hierarchies (``rbk.targets.hierarchy``, a polynomial of degree ``max(readout_degrees)`` in
    ``U x``): ``Q`` spans the target's gradients (the row space of ``U``), and the coefficients are
    the exact Hermite transform of ``g(z) = f(Q^T z)`` on a tensor Gauss-Hermite grid of ``p + 1``
    nodes per variable (exact for a polynomial of degree ``p``; checked on random points).
    """
    info = getattr(target, "info", None) or {}
    family = info.get("family")
    if family == "multi_index":
        Q = np.asarray(info["U"], np.float64)
        r, p = Q.shape[0], int(info["p"])
        Ch = np.zeros((p + 1,) * r)
        for a, c in info["terms"]:
            Ch[tuple(a)] += c
        return Q, [_tensor_to_dict(_hermite_tensor_to_monomials(Ch), p, 0.0)]
    if family == "hierarchy":
        d, r, p = int(target.d), int(info["rank"]), int(max(info["readout_degrees"]))
        Q = _gradient_subspace(target, d, r)
        t, w = np.polynomial.hermite_e.hermegauss(p + 1)
        w = w / math.sqrt(2.0 * math.pi)
        Z = np.stack([g.ravel() for g in np.meshgrid(*([t] * r), indexing="ij")], axis=1)
        y = evaluate_target(target, Z @ Q)
        T = np.stack([w * np.polynomial.hermite_e.hermeval(t, np.eye(p + 1)[k]) / math.sqrt(math.factorial(k))
                      for k in range(p + 1)])  # fmt: skip
        polys = []
        for o in range(y.shape[1]):
            C = y[:, o].reshape((p + 1,) * r)
            for axis in range(r):
                C = np.moveaxis(np.tensordot(T, C, axes=([1], [axis])), 0, axis)
            M = _hermite_tensor_to_monomials(C)
            polys.append(_tensor_to_dict(M, p, 1e-14 * float(np.max(np.abs(M)))))
        xs = np.random.default_rng(1).standard_normal((8, d))
        z = xs @ Q.T
        rebuilt = np.array([[sum(c * np.prod(zi ** np.array(a)) for a, c in g.items()) for g in polys] for zi in z])
        want = evaluate_target(target, xs)
        if np.max(np.abs(rebuilt - want)) > 1e-8 * max(1.0, float(np.max(np.abs(want)))):
            raise ValueError(f"target is not a polynomial of degree {p} in a rank-{r} projection of x "
                             f"(rebuilt values off by {np.max(np.abs(rebuilt - want)):.1e})")
        return Q, polys
    raise ValueError("target must be a polynomial target of rbk.targets on Gaussian inputs: a multi-index target "
                     f"(multi_index, single_index, sum_of_products, random_multi_index, with_head) or a hierarchy, "
                     f"got family {family!r}")


def harmonic_power(target, spectrum: HarmonicSpectrum) -> np.ndarray:
    """The target's power on each eigenvalue of ``spectrum`` (summed over the eigenspace and the outputs).

    At degree ``l`` and radial eigenvector ``v_j`` (``v_j(r_i) = V_ij / sqrt(w_i)``) the power is
    ``sum_{k,k'} a_jk a_jk' B_l[k, k']`` with ``a_jk = E_r[r^k v_j(r)] = sum_i sqrt(w_i) r_i^k V_ij``
    (:func:`power_matrices`). The powers sum to ``E[f^2]`` under the spectrum's distribution
    (1 for a multi-index target on Gaussian inputs) up to rounding: the radial rule integrates
    ``r^{k + k'}`` exactly. Needs ``spectrum.max_degree >= p`` (the target's degree).
    """
    if not isinstance(spectrum, HarmonicSpectrum):
        raise ValueError(f"spectrum must be an rbk.theory.HarmonicSpectrum (gaussian_spectrum / sphere_spectrum), "
                         f"got {type(spectrum).__name__}")
    d = check_int("target.d", getattr(target, "d", None), lo=1)
    if d != spectrum.d:
        raise ValueError(f"target.d = {d} must equal the spectrum's d = {spectrum.d}")
    Q, polys = target_polynomial(target)
    p = max(sum(a) for g in polys for a in g)
    if p > spectrum.max_degree:
        raise ValueError(f"the target has degree p = {p}, beyond the spectrum's max_degree = {spectrum.max_degree}: "
                         f"compute the spectrum with max_degree >= {p}")
    B = sum(power_matrices(g, d) for g in polys)
    sw = np.sqrt(spectrum.radial_weights)
    rk = spectrum.radii[:, None] ** np.arange(p + 1)[None, :]  # (n_r, p + 1)
    out = np.zeros((spectrum.max_degree + 1, spectrum.radii.size))
    for l in range(p + 1):
        A = spectrum.vectors[l].T @ (sw[:, None] * rk)  # (j, k)
        out[l] = np.einsum("jk,kq,jq->j", A, B[l], A)
    return np.maximum(out.ravel(), 0.0)
