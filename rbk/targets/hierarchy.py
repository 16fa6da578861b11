"""Deep quadratic hierarchies (Allen-Zhu & Li, *Backward Feature Correction*, 2020) on Gaussian inputs."""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rbk._checks import check_choice, check_int, check_real
from rbk.targets.base import Array, Target


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
