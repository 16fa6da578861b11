"""The concept class ``H(x) = beta*F(x) + alpha*G(F(x))`` of Allen-Zhu & Li (2019) and its instances:
``paper_instance`` (degree-2 parities ``F`` and a degree-``g_degree`` parity ``G`` on the Boolean
cube), ``random_instance`` (``F`` and ``G`` random two-layer networks with smooth activations
from a menu) and ``concept`` (any user-defined ``F`` and ``G``)."""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rbk._checks import check_choice, check_int, check_key, check_real
from rbk.targets.base import Array, Target


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
