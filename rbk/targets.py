"""Target functions: the concept class ``H(x) = beta*F(x) + alpha*G(F(x))`` and its instances.

Every target is a pure, jittable function ``x (n, d) -> y (n, k)`` wrapped in a
:class:`Target`, which also carries what a result file needs to describe it (``info``),
the separation threshold (``k * alpha**2`` for the concept class) and named parts
(``F``, ``G``, ``base``, ``composed``) for diagnostics.

Constructors
------------
``paper_instance``   Allen-Zhu & Li (2019), Experiments 1 and 2: degree-2 parities ``F`` and a
                     degree-``g_degree`` parity ``G`` on the Boolean cube.
``random_instance``  ``F`` and ``G`` random two-layer networks with smooth activations from a
                     menu (our choice, documented below).
``concept``          any user-defined jittable ``F: (n, d) -> (n, k)`` and ``G: (n, k) -> (n, k)``.

Multi-index models on Gaussian inputs (Damian, Lee & Soltanolkotabi, COLT 2022)
-------------------------------------------------------------------------------
``f*(x) = g(U x)`` with ``x ~ N(0, I_d)``, ``U`` an ``(r, d)`` matrix with orthonormal rows and
``g(z) = sum_a c_a h_a(z)`` a polynomial of degree ``p`` written in the orthonormal Hermite
basis ``h_a(z) = prod_i He_{a_i}(z_i) / sqrt(a_i!)`` (``He``: probabilists' Hermite
polynomials). Since ``z = U x ~ N(0, I_r)``, ``E[f*^2] = sum c_a^2 = 1`` exactly and the
energy of ``f*`` in Hermite degree ``l`` is exactly ``sum_{|a| = l} c_a^2`` (``h_a(U x)`` lies in
the degree-``|a|`` Wiener chaos of ``x``). ``E[grad^2 f*] = U^T E[grad^2 g] U`` and ``E[grad^2 g]``
is read off the degree-2 coefficients (Stein's lemma); the paper assumes it has rank ``r``.
The threshold is the energy of the degree-``p`` part: the error of a learner that has
learned everything but that part.

``multi_index``        any ``U`` and coefficients (the general constructor).
``single_index``       ``g = a h_2(z) + b h_p(z)`` on one random direction.
``sum_of_products``    ``g = a r^{-1/2} sum_i h_2(z_i) + b h_alpha(z)`` with the degree-``p``
                       monomial ``alpha`` spread evenly over the ``r`` directions.
``random_multi_index`` random coefficients of every degree in ``2..p``, equal energy per degree.
``with_head``          a new ``g'`` on the same ``U`` (transfer).

The learners and sweeps only use ``target(x)``, ``target.d``, ``target.k``,
``target.threshold``, ``target.distribution`` and ``target.info``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rbk._checks import check_array, check_choice, check_int, check_key, check_real

Array = jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class Target:
    """A target function with its description.

    Attributes:
      fn: jittable ``(n, d) -> (n, k)``.
      d, k: input and output dimensions.
      name: short name used in result files.
      threshold: error level that separates learners that learned the hard part of the
        target from those that did not (``k * alpha**2`` for the concept class).
      info: JSON-serialisable description (all parameters needed to rebuild it).
      parts: named jittable pieces of the target (e.g. ``F``, ``G``, ``composed``).
      distribution: the input distribution the target is defined on (``'gaussian'`` for the
        multi-index family); ``None``: not fixed, :func:`rbk.data.make_dataset` uses its own
        ``distribution`` argument (default ``'cube'``).
    """

    fn: Callable[[Array], Array]
    d: int
    k: int
    name: str
    threshold: float
    info: Mapping = dataclasses.field(default_factory=dict)
    parts: Mapping[str, Callable] = dataclasses.field(default_factory=dict)
    distribution: str | None = None

    def __call__(self, x: Array) -> Array:
        if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != self.d:  # static: free under jit
            raise ValueError(f"x must have shape (n, d={self.d}) (the target's input dimension), got {jnp.shape(x)}")
        return self.fn(x)


# --------------------------------------------------------------------------- concept class


def concept(
    F: Callable[[Array], Array],
    G: Callable[[Array], Array],
    d: int,
    k: int,
    alpha: float,
    beta: float = 1.0,
    name: str = "custom",
    info: Mapping | None = None,
) -> Target:
    """``H(x) = beta*F(x) + alpha*G(F(x))`` for user-defined jittable ``F`` and ``G``.

    Shapes are checked abstractly (``jax.eval_shape``: nothing is compiled).
    """
    d = check_int("d", d, lo=1)
    k = check_int("k", k, lo=1)
    alpha = check_real("alpha", alpha, lo=0.0, hi=1.0, hi_open=True)
    beta = check_real("beta", beta, lo=0.0, lo_open=True)
    if not callable(F) or not callable(G):
        raise ValueError("F and G must be callables (n, d) -> (n, k) and (n, k) -> (n, k)")
    probe_x = jax.ShapeDtypeStruct((2, d), jnp.float32)
    f_shape = jax.eval_shape(F, probe_x).shape
    if f_shape != (2, k):
        raise ValueError(f"F must map (n, d={d}) to (n, k={k}); on (2, {d}) it returned shape {f_shape}")
    g_shape = jax.eval_shape(G, jax.ShapeDtypeStruct((2, k), jnp.float32)).shape
    if g_shape != (2, k):
        raise ValueError(f"G must map (n, k={k}) to (n, k={k}); on (2, {k}) it returned shape {g_shape}")

    def fn(x):
        f = F(x)
        return beta * f + alpha * G(f)

    parts = {
        "F": F,
        "G": G,
        "base": lambda x: beta * F(x),
        "composed": lambda x: alpha * G(F(x)),
    }
    meta = {"family": "concept", "d": d, "k": k, "alpha": alpha, "beta": beta}
    meta.update(info or {})
    return Target(fn=fn, d=d, k=k, name=name, threshold=k * alpha**2, info=meta, parts=parts)


# --------------------------------------------------------------------------- paper instance


def paper_instance(
    d: int = 30,
    k: int = 15,
    g_degree: int = 4,
    alpha: float = 0.3,
    beta: float = 1.0,
) -> Target:
    """The instance of the paper's experiments (``docs/paper.md``, section 1).

    ``F(x) = (x1 x2, x3 x4, ..., x_{2k-1} x_{2k})`` and ``G_i(y) = (-1)^i y1 ... y_{g_degree}``
    for ``i = 1..k``, so ``G(F(x))_i = (-1)^i x1 ... x_{2 g_degree}``. Defaults reproduce the
    paper: ``d = 30, k = 15, g_degree = 4, alpha = 0.3`` (threshold ``k alpha^2 = 1.35``).
    """
    d = check_int("d", d, lo=2)
    if d % 2:
        raise ValueError(f"d must be an even integer >= 2, got {d}")
    k = check_int("k", k, lo=1, hi=d // 2)
    g_degree = check_int("g_degree", g_degree, lo=1, hi=k)
    alpha = check_real("alpha", alpha, lo=0.0, hi=1.0, hi_open=True)
    beta = check_real("beta", beta, lo=0.0, lo_open=True)
    signs = jnp.asarray((-1.0) ** np.arange(1, k + 1), dtype=jnp.float32)

    def F(x):
        x = x[..., : 2 * k]
        return x[..., 0::2] * x[..., 1::2]

    def G(y):
        return jnp.prod(y[..., :g_degree], axis=-1, keepdims=True) * signs.astype(y.dtype)

    info = {"family": "paper", "g_degree": g_degree, "distribution": "cube"}
    return concept(F, G, d, k, alpha, beta, name="paper", info=info)


# --------------------------------------------------------------------------- random smooth instances

#: Activation menu for random instances: name -> (function, polynomial coefficients or None).
ACTIVATIONS: dict[str, tuple[Callable[[Array], Array], tuple[float, ...] | None]] = {
    "square": (lambda z: z**2, (0.0, 0.0, 1.0)),
    "cube": (lambda z: z**3, (0.0, 0.0, 0.0, 1.0)),
    "sin": (jnp.sin, None),
    "tanh": (jnp.tanh, None),
    "gauss": (lambda z: jnp.exp(-0.5 * z**2), None),
}


def complexity(phi: str | Sequence[float]) -> float | None:
    """``C(phi) = sum_i (i+1) |c_i|`` for a polynomial ``phi(z) = sum_i c_i z^i`` (constant C* = 1).

    ``phi`` is a menu name (see :data:`ACTIVATIONS`) or a coefficient sequence ``(c_0, c_1, ...)``.
    Returns ``None`` for non-polynomial activations (the paper's complexity of an analytic
    function depends on its whole Taylor series and a radius; rbk does not report it).
    """
    if isinstance(phi, str):
        check_choice("phi", phi, ACTIVATIONS)
        coeffs = ACTIVATIONS[phi][1]
        if coeffs is None:
            return None
    else:
        coeffs = tuple(float(c) for c in phi)
    return float(sum((i + 1) * abs(c) for i, c in enumerate(coeffs)))


def _two_layer(key, fan_in: int, p: int, k: int, activations: Sequence[str]):
    """Random ``z -> phi(z W) a``: unit-norm columns of W, entries of a in {+-1/sqrt(p)}, one
    activation per hidden unit drawn from ``activations``."""
    kw, ka, kp = jax.random.split(key, 3)
    W = jax.random.normal(kw, (fan_in, p))
    W = W / jnp.linalg.norm(W, axis=0, keepdims=True)
    a = jax.random.rademacher(ka, (p, k)).astype(jnp.float32) / math.sqrt(p)
    picks = [activations[int(i)] for i in jax.random.randint(kp, (p,), 0, len(activations))]
    fns = [ACTIVATIONS[name][0] for name in picks]

    def net(z):  # full-precision products: the labels do not depend on the platform's default (TF32 on GPUs)
        h = jnp.matmul(z, W.astype(z.dtype), precision="highest")
        h = jnp.stack([fns[j](h[..., j]) for j in range(p)], axis=-1)
        return jnp.matmul(h, a.astype(z.dtype), precision="highest")

    return net, picks


def random_instance(
    key: Array,
    d: int = 30,
    k: int = 15,
    p: int = 4,
    alpha: float = 0.3,
    beta: float = 1.0,
    activations: Sequence[str] = tuple(ACTIVATIONS),
    distribution: str = "cube",
    n_moment: int = 262144,
) -> Target:
    """A random member of the concept class (our choice of construction, documented).

    ``F`` and ``G`` are two-layer networks with ``p`` hidden units, unit-norm random
    first-layer weights, no biases, output weights ``+-1/sqrt(p)`` and one activation per
    hidden unit drawn from ``activations``. Each output of ``F``, then each output of
    ``G(F)``, is rescaled to unit second moment under ``distribution`` (estimated once on
    ``n_moment`` points drawn with a fixed key), so ``k * alpha^2`` remains the threshold.
    ``info['complexity']`` lists ``C(phi)`` of each unit's activation (``None`` where not
    polynomial).
    """
    from rbk.data import sample_inputs  # local import: data does not depend on targets

    check_key("key", key)
    d = check_int("d", d, lo=1)
    k = check_int("k", k, lo=1)
    p = check_int("p", p, lo=1)
    n_moment = check_int("n_moment", n_moment, lo=16)
    if not activations:
        raise ValueError(f"activations must name at least one of {sorted(ACTIVATIONS)}")
    for name in activations:
        check_choice("activations", name, ACTIVATIONS)
    check_choice("distribution", distribution, ("cube", "sphere", "gaussian"))
    kf, kg = jax.random.split(key)
    f_net, f_acts = _two_layer(kf, d, p, k, tuple(activations))
    g_net, g_acts = _two_layer(kg, k, p, k, tuple(activations))

    xs = sample_inputs(jax.random.PRNGKey(20190524), n_moment, d, distribution)
    f_scale = 1.0 / jnp.sqrt(jnp.mean(f_net(xs) ** 2, axis=0) + 1e-30)

    def F(x):
        return f_net(x) * f_scale.astype(x.dtype)

    g_scale = 1.0 / jnp.sqrt(jnp.mean(g_net(F(xs)) ** 2, axis=0) + 1e-30)

    def G(y):
        return g_net(y) * g_scale.astype(y.dtype)

    info = {
        "family": "random",
        "p": p,
        "distribution": distribution,
        "key": np.asarray(jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key).tolist(),
        "F_activations": f_acts,
        "G_activations": g_acts,
        "complexity": {"F": [complexity(a) for a in f_acts], "G": [complexity(a) for a in g_acts]},
    }
    return concept(F, G, d, k, alpha, beta, name="random", info=info)


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
    a = check_real(f"{name} weight a", a, lo=0.0)
    b = check_real(f"{name} weight b", b, lo=0.0)
    if a == 0.0 or b == 0.0:
        raise ValueError(f"a and b must both be > 0 (the degree-2 and degree-p parts), got a={a}, b={b}")
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


# --------------------------------------------------------------------------- deep hierarchies

HIERARCHY_READOUTS = ("square", "linear")
HIERARCHY_FIRST = ("linear", "quadratic")
#: Largest tensor Gauss-Hermite grid :func:`hierarchy` evaluates (nodes).
MAX_QUADRATURE_NODES = 2**22


def hierarchy_degrees(n_levels: int, first: str, readout: str) -> tuple[list[int], list[int]]:
    """Polynomial degrees of the levels ``S_l`` and of their read-outs, in ``z = U x``."""
    deg = [1 if first == "linear" else 2]
    for _ in range(1, n_levels):
        deg.append(2 * deg[-1])
    out = [2 * g if readout == "square" else g for g in deg]
    return deg, out


def _gauss_hermite_grid(n: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Tensor Gauss-Hermite rule for ``N(0, I_r)``: nodes ``(n^r, r)`` and weights ``(n^r,)``
    (exact for every polynomial of degree ``<= 2n - 1`` in each variable)."""
    t, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / math.sqrt(2.0 * math.pi)
    grids = np.meshgrid(*([t] * r), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=1)
    weights = np.ones(n**r)
    for wg in np.meshgrid(*([w] * r), indexing="ij"):
        weights = weights * wg.ravel()
    return nodes, weights


def hermite_profile(values: np.ndarray, n: int, r: int) -> np.ndarray:
    """Energy of each total Hermite degree of a function sampled on :func:`_gauss_hermite_grid` ``(n, r)``.

    ``values (n^r,)``: the function at the nodes. Exact when the function is a polynomial of degree
    ``<= n - 1`` in each variable. Returns ``(r (n - 1) + 1,)`` with ``sum = E[f^2]``.
    """
    t, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / math.sqrt(2.0 * math.pi)
    T = np.stack([w * np.polynomial.hermite_e.hermeval(t, np.eye(n)[k]) / math.sqrt(math.factorial(k)) for k in range(n)])
    C = values.reshape((n,) * r)
    for axis in range(r):
        C = np.moveaxis(np.tensordot(T, C, axes=([1], [axis])), 0, axis)
    total = sum(np.meshgrid(*([np.arange(n)] * r), indexing="ij"))
    return np.bincount(total.ravel(), weights=(C * C).ravel(), minlength=r * (n - 1) + 1)


def hierarchy(
    key: Array,
    d: int = 20,
    widths: Sequence[int] = (4, 4, 4),
    alphas: Sequence[float] = (1.0, 0.5, 0.25),
    *,
    skip: bool = True,
    readout: str = "square",
    first: str = "linear",
    rank: int | None = None,
    paper_regime: bool = True,
    distribution: str = "gaussian",
) -> Target:
    """A deep hierarchical target of ``L = len(widths)`` levels (Allen-Zhu & Li 2020, Section 2).

    With ``z = U x`` (``U``: ``rank`` orthonormal rows drawn from ``key``; ``x ~ N(0, I_d)``, so
    ``z ~ N(0, I_rank)``) and ``sigma(u) = u^2``::

        S_1 = z W_1^T  (first='linear'; W_1 = I when widths[0] == rank)  or  sigma(z) W_1^T ('quadratic')
        S_2 = sigma(S_1) W_2^T
        S_l = sigma(S_{l-1}) W_l^T + sigma(S_{l-2}) V_l^T        (l >= 3; skip=False drops V_l)
        y   = sum_l alpha_l * s_l,   s_l = std(Sum(sigma(S_l)))   (readout='square', the paper's
                                                                   output map)  or std(Sum(S_l))

    ``W_l, V_l`` have ``N(0, 1/fan_in)`` entries; every unit of every ``S_l`` and every read-out
    ``s_l`` is standardised (``std``: exact mean subtracted, exact variance divided out), so
    ``E[s_l] = 0``, ``E[s_l^2] = 1``. All moments are *exact* (up to float64 rounding): the target
    is a polynomial in ``z`` of known degree, and a tensor Gauss-Hermite rule with ``deg + 1`` nodes
    per variable integrates its square exactly (at most :data:`MAX_QUADRATURE_NODES` nodes, which
    bounds ``rank`` and ``L``; a clear error otherwise).

    Thresholds (``info['thresholds'][l]``, level ``l = 2..L``): the error of the best predictor of
    degree ``<= deg(s_{l-1})`` in ``x`` - everything the lower levels' degrees allow, including the
    low-degree parts of the higher levels - computed exactly from the Hermite degree profile
    (``info['degree_energy']``). A learner below it has learned part of what only levels ``>= l``
    supply. ``Target.threshold`` is the deepest level's. ``info['tails'][l]`` holds the naive
    alternative ``E[(sum_{j >= l} alpha_j s_j)^2]`` (the error of ``sum_{j < l} alpha_j s_j``),
    ``info['level_gram']`` the exact ``E[s_i s_j]``.

    ``paper_regime`` (default): ``alphas`` must be positive and strictly decreasing (the paper's
    information gap). ``parts``: ``'levels'`` (``x -> [S_1, ..., S_L]``, each ``(n, k_l)``),
    ``'level<l>'`` (``x -> alpha_l s_l``).
    """
    d = check_int("d", d, lo=1)
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or len(widths) < 2:
        raise ValueError(f"widths must list the width k_l of each of L >= 2 levels, got {widths!r}")
    widths = tuple(check_int(f"widths[{i}]", k, lo=1) for i, k in enumerate(widths))
    L = len(widths)
    if isinstance(alphas, (str, bytes)) or not isinstance(alphas, Sequence) or len(alphas) != L:
        raise ValueError(f"alphas must have one weight per level (L = {L}, from widths), got {alphas!r}")
    alphas = tuple(check_real(f"alphas[{i}]", a, lo=0.0) for i, a in enumerate(alphas))
    if not isinstance(paper_regime, bool) or not isinstance(skip, bool):
        raise ValueError("paper_regime and skip must be True or False")
    if paper_regime and (alphas[0] <= 0 or any(b >= a for a, b in zip(alphas, alphas[1:]))):
        raise ValueError(f"alphas must be positive and strictly decreasing in the paper's regime "
                         f"(paper_regime=True), got {list(alphas)}")
    check_choice("readout", readout, HIERARCHY_READOUTS)
    check_choice("first", first, HIERARCHY_FIRST)
    if distribution != "gaussian":
        raise ValueError(f"distribution must be 'gaussian' (the exact moments use Gaussian inputs), got {distribution!r}")
    rank = widths[0] if rank is None else check_int("rank", rank, lo=1)
    if rank > d:
        raise ValueError(f"rank (the dimension of the subspace the target depends on, default widths[0]) must be "
                         f"in [1, d={d}], got {rank}")
    deg, out_deg = hierarchy_degrees(L, first, readout)
    n_nodes = max(out_deg) + 1
    if n_nodes**rank > MAX_QUADRATURE_NODES:
        raise ValueError(f"rank={rank} with L={L} levels needs {n_nodes}^{rank} quadrature nodes for exact moments "
                         f"(at most {MAX_QUADRATURE_NODES}); use fewer levels or a smaller rank / widths[0]")

    key_data = np.asarray(jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key)
    # weights from a numpy generator seeded by the key: nothing to compile (host-side construction)
    rng = np.random.default_rng([int(v) for v in key_data.ravel()])
    U, _ = np.linalg.qr(rng.standard_normal((d, rank)))
    U = U.T  # (rank, d), orthonormal rows

    def gauss(shape):
        return rng.standard_normal(shape) / math.sqrt(shape[1])

    W, V = [], []
    for l in range(L):
        fan = rank if l == 0 else widths[l - 1]
        if l == 0 and first == "linear" and widths[0] == rank:
            W.append(np.eye(rank))
        else:
            W.append(gauss((widths[l], fan)))
        V.append(gauss((widths[l], widths[l - 2])) if skip and l >= 2 else None)

    def raw_levels(z, std, xp):
        """Levels from ``z``; ``std`` = per-level (mean, scale) of the units (None entries: raw)."""
        sq = lambda u: u * u  # noqa: E731
        cast = lambda a: xp.asarray(a, z.dtype)  # noqa: E731
        out = []
        for l in range(L):
            if l == 0:
                s = (z if first == "linear" else sq(z)) @ cast(W[0].T)
            else:
                s = sq(out[l - 1]) @ cast(W[l].T)
                if V[l] is not None:
                    s = s + sq(out[l - 2]) @ cast(V[l].T)
            if std is not None and std[l] is not None:
                s = (s - cast(std[l][0])) / cast(std[l][1])
            out.append(s)
        return out

    # exact moments on the quadrature grid, level by level
    Z, wq = _gauss_hermite_grid(n_nodes, rank)
    unit_std = []
    for l in range(L):
        s = raw_levels(Z, unit_std + [None] * (L - l), np)[l]
        mean = wq @ s
        var = wq @ (s * s) - mean * mean
        if np.any(var <= 1e-24):
            raise ValueError(f"level {l + 1} has a constant unit (zero variance); draw another key")
        unit_std.append((mean, np.sqrt(var)))
    levels_q = raw_levels(Z, unit_std, np)

    def read(s, xp):
        return xp.sum(s * s, axis=-1) if readout == "square" else xp.sum(s, axis=-1)

    out_std = []
    for l in range(L):
        r_ = read(levels_q[l], np)
        mean = float(wq @ r_)
        out_std.append((mean, math.sqrt(float(wq @ (r_ * r_)) - mean * mean)))
    sq_ = np.stack([(read(levels_q[l], np) - out_std[l][0]) / out_std[l][1] for l in range(L)], axis=1)
    gram = (sq_ * wq[:, None]).T @ sq_
    a = np.asarray(alphas)
    y_q = sq_ @ a
    profile = hermite_profile(y_q, n_nodes, rank)
    second = float(wq @ (y_q * y_q))
    thresholds = {1: second}
    for l in range(2, L + 1):
        thresholds[l] = float(np.sum(profile[out_deg[l - 2] + 1 :]))
    tails = {l: float(a[l - 1 :] @ gram[l - 1 :, l - 1 :] @ a[l - 1 :]) for l in range(1, L + 1)}

    def levels_fn(x):
        return raw_levels(x @ jnp.asarray(U.T, x.dtype), unit_std, jnp)

    def scaled_readouts(x):
        ls = levels_fn(x)
        return [alphas[l] * (read(ls[l], jnp) - out_std[l][0]) / out_std[l][1] for l in range(L)]

    def fn(x):
        return sum(scaled_readouts(x))[..., None]

    parts = {"levels": levels_fn}
    for l in range(L):
        parts[f"level{l + 1}"] = (lambda i: (lambda x: scaled_readouts(x)[i][..., None]))(l)
    info = {
        "family": "hierarchy",
        "d": d,
        "levels": L,
        "widths": list(widths),
        "alphas": list(alphas),
        "skip": skip,
        "readout": readout,
        "first": first,
        "rank": rank,
        "paper_regime": paper_regime,
        "distribution": "gaussian",
        "key": key_data.tolist(),
        "level_degrees": deg,
        "readout_degrees": out_deg,
        "second_moment": second,
        "thresholds": thresholds,
        "tails": tails,
        "level_gram": gram.tolist(),
        "degree_energy": profile.tolist(),
        "moments": f"exact: tensor Gauss-Hermite rule, {n_nodes}^{rank} nodes, float64",
    }
    return Target(fn=fn, d=d, k=1, name="hierarchy", threshold=thresholds[L], info=info, parts=parts)
