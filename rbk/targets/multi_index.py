"""Multi-index models ``f*(x) = g(U x)`` on Gaussian inputs (Damian, Lee & Soltanolkotabi, COLT 2022),
written in the orthonormal Hermite basis (see :mod:`rbk.targets`)."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rbk._checks import check_array, check_int, check_real
from rbk.targets.base import Array, Target


# --------------------------------------------------------------------------- multi-index models

#: Tolerance on ``|U U^T - I|`` (max entry) for a user-given ``U``.
ORTHONORMAL_TOL = 1e-5
#: Relative size (to the largest) below which an eigenvalue of ``E[grad^2 g]`` counts as zero.
RANK_TOL = 1e-8


def hermite(z: Array, p: int) -> Array:
    """Normalised probabilists' Hermite polynomials ``He_k(z) / sqrt(k!)``, ``k = 0..p``: ``z.shape + (p+1,)``.

    Orthonormal under ``N(0, 1)``; recurrence ``He_{k+1} = z He_k - k He_{k-1}``.
    """
    hs = [jnp.ones_like(z), z]
    for k in range(1, p):
        hs.append(z * hs[k] - k * hs[k - 1])
    norms = jnp.asarray([math.sqrt(math.factorial(k)) for k in range(p + 1)], z.dtype)
    return jnp.stack(hs[: p + 1], axis=-1) / norms


def multi_indices(r: int, degree: int) -> list[tuple[int, ...]]:
    """All ``a`` in ``N^r`` with ``|a| = degree``, in lexicographic order (largest first entry first)."""
    if r == 1:
        return [(degree,)]
    return [(i,) + rest for i in range(degree, -1, -1) for rest in multi_indices(r - 1, degree - i)]


def random_subspace(key: Array, d: int, r: int) -> np.ndarray:
    """``U (r, d)`` with orthonormal rows: the QR factor of a Gaussian ``(d, r)`` matrix, signs fixed
    so that ``R`` has a positive diagonal (then ``U`` is Haar-distributed), in float64."""
    d = check_int("d", d, lo=1)
    r = check_int("r", r, lo=1, hi=d)
    g = np.asarray(jax.random.normal(key, (d, r), jnp.float32), np.float64)
    q, rr = np.linalg.qr(g)
    return (q * np.sign(np.diag(rr))).T.copy()


def _key_info(key) -> list:
    return np.asarray(jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key).tolist()


def _check_terms(terms, r: int) -> dict[tuple[int, ...], float]:
    if isinstance(terms, Mapping):
        items = list(terms.items())
    else:
        try:
            items = [(a, c) for a, c in terms]
        except (TypeError, ValueError):
            raise ValueError("terms must be a mapping or pairs multi-index -> coefficient") from None
    out: dict[tuple[int, ...], float] = {}
    for a, c in items:
        a = tuple(a) if isinstance(a, (tuple, list)) else a
        if not isinstance(a, tuple) or len(a) != r or any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 0 for i in a):
            raise ValueError(f"terms keys must be multi-indices: tuples of {r} (= r) integers >= 0, got {a!r}")
        a = tuple(int(i) for i in a)
        c = check_real(f"terms[{a}]", c)
        out[a] = out.get(a, 0.0) + c
    return {a: c for a, c in out.items() if c != 0.0}


def expected_hessian_g(terms: Mapping[tuple[int, ...], float], r: int) -> np.ndarray:
    """``E[grad^2 g(z)]`` for ``z ~ N(0, I_r)``, exact: ``E[g z_i z_j] - delta_ij E[g]`` (Stein), i.e.
    ``sqrt(2) c_{2 e_i}`` on the diagonal and ``c_{e_i + e_j}`` off it."""
    h = np.zeros((r, r))
    for a, c in terms.items():
        if sum(a) != 2:
            continue
        idx = [i for i in range(r) for _ in range(a[i])]
        i, j = idx
        if i == j:
            h[i, i] = math.sqrt(2.0) * c
        else:
            h[i, j] = h[j, i] = c
    return h


def expected_hessian(target: Target) -> np.ndarray:
    """``E[grad^2 f*(x)] = U^T E[grad^2 g] U`` (``(d, d)``) of a multi-index target."""
    if target.info.get("family") != "multi_index":
        raise ValueError(f"target must be a multi-index target (rbk.targets.multi_index), got family {target.info.get('family')!r}")
    U = np.asarray(target.info["U"])
    return U.T @ np.asarray(target.info["hessian_g"]) @ U


def multi_index(
    U,
    terms,
    *,
    normalize: bool = True,
    allow_degenerate: bool = False,
    name: str = "multi_index",
    info: Mapping | None = None,
) -> Target:
    """``f*(x) = g(U x)``, ``g(z) = sum_a c_a prod_i He_{a_i}(z_i) / sqrt(a_i!)``, on ``x ~ N(0, I_d)``.

    Args:
      U: ``(r, d)`` with orthonormal rows (``|U U^T - I| <= 1e-5``), ``1 <= r <= d``.
      terms: mapping (or pairs) multi-index ``a`` (a tuple of ``r`` integers ``>= 0``) -> ``c_a``.
        The degree ``p = max |a|`` must be ``>= 1``.
      normalize: rescale the coefficients so that ``E[f*^2] = sum c_a^2 = 1`` (default);
        ``False``: the coefficients as given, ``E[f*^2] = sum c_a^2`` (``info['second_moment']``).
      allow_degenerate: accept ``rank E[grad^2 g] < r`` (the paper assumes rank ``r``).

    ``info`` records ``U``, the coefficients, ``degree_energy`` (``[E_0, ..., E_p]``, summing to
    ``E[f*^2]``, 1 when normalised), ``hessian_g`` and its ``hessian_rank``; ``threshold = E_p``. Parts: ``g`` (on ``z``),
    ``project`` (``x -> U x``), ``below_p`` (``f*`` without its degree-``p`` part) and ``degree_l``
    for each degree ``l`` present.
    """
    U = check_array("U", U, ndim=2).astype(np.float64)
    r, d = U.shape
    if r < 1 or d < 1:
        raise ValueError(f"U must have shape (r, d) with 1 <= r <= d, got {U.shape}")
    if r > d:
        raise ValueError(f"r must be <= d: U has r={r} rows in d={d} dimensions")
    err = float(np.max(np.abs(U @ U.T - np.eye(r))))
    if err > ORTHONORMAL_TOL:
        raise ValueError(f"U must have orthonormal rows (max |U U^T - I| <= {ORTHONORMAL_TOL}), got {err:.3g}")
    if not isinstance(normalize, bool) or not isinstance(allow_degenerate, bool):
        raise ValueError("normalize and allow_degenerate must be True or False")
    terms = _check_terms(terms, r)
    if not terms:
        raise ValueError("terms must have at least one non-zero coefficient")
    p = max(sum(a) for a in terms)
    if p < 1:
        raise ValueError(f"the degree p of g must be >= 1 (terms of degree >= 1), got p={p}")
    total = sum(c * c for c in terms.values())
    if normalize:
        terms = {a: c / math.sqrt(total) for a, c in terms.items()}
    hess = expected_hessian_g(terms, r)
    eig = np.abs(np.linalg.eigvalsh(hess))
    rank = int(np.sum(eig > RANK_TOL * max(float(eig.max()), 1e-300))) if eig.max() > 0 else 0
    if rank < r and not allow_degenerate:
        raise ValueError(
            f"E[grad^2 g] must have rank r={r} (the degree-2 coefficients define it), got rank {rank}; "
            "add degree-2 terms or pass allow_degenerate=True"
        )
    energy = [0.0] * (p + 1)
    for a, c in terms.items():
        energy[sum(a)] += c * c

    alphas = sorted(terms, key=lambda a: (sum(a), tuple(-i for i in a)))
    coef = np.asarray([terms[a] for a in alphas])
    deg = np.asarray([sum(a) for a in alphas])
    A = np.asarray(alphas, np.int32)  # (T, r)
    rows = np.arange(r, dtype=np.int32)[None, :]  # one index dtype (int32/int64 mixed fail under x64)

    def g_masked(z, mask):
        h = hermite(z, p)[..., rows, A]  # (n, T, r)
        return (jnp.prod(h, axis=-1) @ jnp.asarray(coef * mask, z.dtype))[..., None]

    def project(x):
        return x @ jnp.asarray(U.T, x.dtype)

    def part(mask):  # jitted: one compilation per input shape instead of one per primitive
        return jax.jit(lambda x: g_masked(project(x), mask))

    ones = np.ones_like(coef)
    parts = {"g": jax.jit(lambda z: g_masked(z, ones)), "project": project, "below_p": part((deg < p).astype(float))}
    for l in sorted(set(deg.tolist())):
        parts[f"degree_{l}"] = part((deg == l).astype(float))
    meta = {
        "family": "multi_index",
        "distribution": "gaussian",
        "d": d,
        "r": r,
        "p": p,
        "terms": [[list(a), terms[a]] for a in alphas],
        "degree_energy": energy,
        "second_moment": 1.0 if normalize else float(total),
        "hessian_g": hess.tolist(),
        "hessian_rank": rank,
        "U": U.tolist(),
    }
    meta.update(info or {})
    return Target(fn=part(ones), d=d, k=1, name=name, threshold=energy[p], info=meta, parts=parts,
                  distribution="gaussian")


def _weights(name: str, a, b) -> tuple[float, float]:
    """The weights of the degree-2 and degree-p parts: each a finite number > 0, one rule, one wording."""
    a = check_real(f"{name} weight a (of the degree-2 part)", a, lo=0.0, lo_open=True)
    b = check_real(f"{name} weight b (of the degree-p part)", b, lo=0.0, lo_open=True)
    return a, b


def single_index(key: Array, d: int, p: int = 4, *, a: float = 1.0, b: float = 1.0) -> Target:
    """``f*(x) = (a h_2(u.x) + b h_p(u.x)) / sqrt(a^2 + b^2)``, ``h_k = He_k / sqrt(k!)``, ``u`` a random unit vector.

    ``He_p`` alone has ``E[grad^2 f*] = 0`` for ``p >= 3`` (outside the paper's assumption);
    the degree-2 part makes it rank 1. Threshold ``b^2 / (a^2 + b^2)`` (1/2 by default).
    """
    d = check_int("d", d, lo=1)
    p = check_int("p", p, lo=3)
    a, b = _weights("single_index", a, b)
    U = random_subspace(key, d, 1)
    return multi_index(U, {(2,): a, (p,): b}, name="single_index",
                       info={"construction": "single_index", "key": _key_info(key), "a": a, "b": b})


def _spread(p: int, r: int) -> tuple[int, ...]:
    """The degree-``p`` multi-index spread as evenly as possible over ``r`` directions."""
    return tuple(p // r + (1 if i < p % r else 0) for i in range(r))


def sum_of_products(key: Array, d: int, r: int = 2, p: int = 4, *, a: float = 1.0, b: float = 1.0) -> Target:
    """``g(z) = a r^{-1/2} sum_i h_2(z_i) + b prod_i h_{alpha_i}(z_i)`` (normalised), ``alpha = spread(p, r)``.

    The degree-``p`` part is a product across directions (``r = 2, p = 4``: ``h_2(z_1) h_2(z_2)``;
    ``r = 3``: ``h_2(z_1) h_1(z_2) h_1(z_3)``), so it cannot be written through fewer than
    ``min(r, p)`` directions; ``E[grad^2 g] = sqrt(2) a r^{-1/2} I_r / norm`` (rank ``r``). With
    ``r > p`` the directions beyond the ``p``-th carry only the degree-2 part. Threshold
    ``b^2 / (a^2 + b^2)``.
    """
    d = check_int("d", d, lo=1)
    r = check_int("r", r, lo=1, hi=d)
    p = check_int("p", p, lo=3)
    a, b = _weights("sum_of_products", a, b)
    U = random_subspace(key, d, r)
    terms = {tuple(2 if j == i else 0 for j in range(r)): a / math.sqrt(r) for i in range(r)}
    terms[_spread(p, r)] = terms.get(_spread(p, r), 0.0) + b
    return multi_index(U, terms, name="sum_of_products",
                       info={"construction": "sum_of_products", "key": _key_info(key), "a": a, "b": b})


def random_multi_index(key: Array, d: int, r: int = 2, p: int = 4, *, degrees: Sequence[int] | None = None) -> Target:
    """Random ``g``: Gaussian coefficients on every multi-index of each degree in ``degrees``
    (default ``2..p``), each degree rescaled to equal energy ``1 / len(degrees)``. Degree 2 must be
    among ``degrees`` (the Hessian condition); a draw of rank ``< r`` is rejected (probability 0)."""
    d = check_int("d", d, lo=1)
    r = check_int("r", r, lo=1, hi=d)
    p = check_int("p", p, lo=2)
    degrees = tuple(range(2, p + 1)) if degrees is None else tuple(check_int("degrees", l, lo=0, hi=p) for l in degrees)
    if 2 not in degrees or p not in degrees or len(set(degrees)) != len(degrees):
        raise ValueError(f"degrees must be distinct integers in [0, p={p}] that include 2 and p, got {degrees}")
    ku, kc = jax.random.split(key)
    U = random_subspace(ku, d, r)
    terms = {}
    for i, l in enumerate(degrees):
        alphas = multi_indices(r, l)
        c = np.asarray(jax.random.normal(jax.random.fold_in(kc, l), (len(alphas),), jnp.float32), np.float64)
        c = c / np.linalg.norm(c) / math.sqrt(len(degrees))
        terms.update(zip(alphas, c.tolist()))
    return multi_index(U, terms, name="random_multi_index",
                       info={"construction": "random_multi_index", "key": _key_info(key), "degrees": list(degrees)})


def with_head(target: Target, terms, *, name: str = "transfer_head", **kwargs) -> Target:
    """A new head ``g'`` on the same ``U`` as the multi-index ``target`` (for transfer experiments)."""
    if not isinstance(target, Target) or target.info.get("family") != "multi_index":
        raise ValueError("target must be a multi-index target (rbk.targets.multi_index)")
    return multi_index(np.asarray(target.info["U"]), terms, name=name,
                       info={"construction": "with_head", "source": target.name}, **kwargs)
