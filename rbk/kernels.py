r"""Exact infinite-width NNGP / NTK of the learners, their empirical counterparts, and predictors.

Everything here is computed in float64 whatever the caller's ``jax_enable_x64`` flag: JAX
work runs inside a local ``enable_x64`` context (the flag is restored on exit) and results
come back as ``numpy.float64`` arrays. The module imports only numpy, scipy and jax (plus
:mod:`rbk._checks` and :mod:`rbk.models`), so it also works in the neural-tangents
environment (jax 0.5.3). Derivations: ``docs/kernels.md``.

Conventions (neural-tangents' ``ntk`` parameterization, as in :class:`rbk.models.Model`)
------------------------------------------------------------------------------------------
All parameters ``N(0, 1)``; ``h1 = W_std/sqrt(d) x W + b_std b1``, ``a1 = relu(h1)``;
``h2 = W_std/sqrt(m) a1 U + b_std b2``, ``a2 = relu(h2)``; features ``phi = a1`` (``2nn``),
``a2`` (``3nn``), ``a1 + a2`` (``3resnet``, post-ReLU skip); ``out = W_std/sqrt(m) phi A``,
no output bias. With ``sw2 = W_std**2``, ``sb2 = b_std**2`` and for a pair of inputs::

    S1   = sw2 x.x'/d + sb2                          (pre-activation covariance, layer 1)
    K_l  = E[relu(u) relu(v)] = sqrt(q q')/(2 pi) (sin t + (pi - t) cos t)
    D_l  = E[relu'(u) relu'(v)] = (pi - t)/(2 pi),   cos t = S_l / sqrt(q q')
    M_l  = E[relu(u)] = sqrt(q / (2 pi))             (q = S_l(x, x), q' = S_l(x', x'))
    S2   = sw2 K_1 + sb2

    NNGP:  2nn   sw2 K1
           3nn   sw2 K2
           3resnet  sw2 (K1 + K2 + M1(x) M2(x') + M2(x) M1(x'))

The NTK is a sum over parameter groups of ``rate_g * Theta_g`` with (``B2 = sw2 D2``;
``B1 = sw2 D1`` for 2nn, ``sw2 D1 B2`` for 3nn, ``sw2 D1 (1 + B2)`` for 3resnet)::

    Theta_A  = NNGP        Theta_U = sw2 K1 B2     Theta_b2 = sb2 B2
    Theta_W  = sw2 (x.x'/d) B1                     Theta_b1 = sb2 B1

``trainable`` picks the groups (default all: the ordinary NTK; without ``'A'``: the
frozen-output NTK; ``('W', 'U')`` with ``layer_rates``: the theory-faithful variant whose
offsets ``dW``, ``dU`` alone move).

Public API
----------
``kernel_fn(arch, *, W_std, b_std, trainable=None, layer_rates=None)`` -> :class:`KernelFn`,
called as ``kfn(x1, x2=None, get=('nngp', 'ntk'), block_size=None)`` (neural-tangents'
convention: a string ``get`` returns one array, a tuple a namedtuple in that order).
``model_kernel_fn(model)``: the same for an ``ntk``-parameterized :class:`rbk.models.Model`
(trainable groups and rates taken from its variant).
``empirical_kernel_fn(model, ...)``: the finite-width NNGP / NTK of a drawn network from
``jax.vjp`` / ``jax.jvp`` of ``model.apply`` (never a full Jacobian in memory).
Predictors (float64, Cholesky; eigh with a warning only on failure): :func:`ridge_solve`,
:func:`gradient_flow_predict` (``nt.predict.gradient_descent_mse``'s convention),
:func:`fit_predict` (kernel ridge with the ridge chosen on validation; above N = 20000 by
matrix-free preconditioned conjugate gradients, ``solver='cg'``, never storing the Gram),
:func:`random_features_fit_predict`, :func:`linearized_fit_predict`. :func:`fit_bytes` is the one
estimate of a fit's host memory; :func:`fit_predict` refuses a fit that exceeds the machine.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import os
import time
import warnings
from typing import Callable, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from rbk._checks import check_array, check_choice, check_int, check_memory, check_real, host_memory_bytes
from rbk.models import ARCHS, FROZEN, DeepQuad, Model

GETS = ("nngp", "ntk")
#: Parameter groups (optimiser labels) of each architecture, in canonical order.
LAYERS = {"2nn": ("W", "b1", "A"), "3nn": ("W", "b1", "U", "b2", "A"), "3resnet": ("W", "b1", "U", "b2", "A")}
#: Default ridge grid, relative to the kernel scale ``mean(diag K_train)``; 0 is the ridgeless limit.
DEFAULT_RIDGES = (1e-6, 1e-4, 1e-2, 1e-1, 1.0)
MAX_RIDGES = 5
OUTPUTS = ("trace", "full")
DEFAULT_BLOCK = 2048
SOLVERS = ("auto", "dense", "cg")
PRECISIONS = ("mixed", "float64")
#: ``solver='auto'`` keeps the dense Cholesky path up to this N (and while its two Grams fit).
DENSE_MAX_N = 20000
#: Relative residual ``|Y - (K + r I) A|_F / |Y|_F`` each ridge must reach (checked in float64).
CG_TOL = 1e-6
#: Nystrom rank of the preconditioner (landmarks; capped at N).
CG_RANK = 2000
CG_MAX_ITER = 400
CG_BLOCK = (256, 4096)  # rows x columns of one kernel block in the products
_F32_FLOOR = 1e-5  # inner float32 iterations stop here; float64 refinement takes over
_MAX_REFINE = 4

_TWO_PI = 2.0 * math.pi


class KernelSolveWarning(RuntimeWarning):
    """Cholesky failed (matrix not numerically positive definite; eigh pseudo-inverse used), or
    conjugate gradients missed their tolerance (the message gives the residuals)."""


# ----------------------------------------------------------------------------- float64 context


def x64():
    """A context manager enabling 64-bit JAX locally (restores the caller's flag on exit).

    ``jax.enable_x64`` in recent jax, ``jax.experimental.enable_x64`` in older (0.5.x).
    """
    enable = getattr(jax, "enable_x64", None)
    if enable is None:  # jax < 0.6
        from jax.experimental import enable_x64 as enable
    return enable(True)


# ----------------------------------------------------------------------------- validation helpers


def _check_get(get) -> tuple[tuple[str, ...], bool]:
    """Normalise ``get`` to a tuple; second value: whether a single array is returned."""
    if isinstance(get, str):
        check_choice("get", get, GETS)
        return (get,), True
    if not isinstance(get, (tuple, list)) or len(get) == 0:
        raise ValueError(f"get must be one of {list(GETS)} or a non-empty tuple of them, got {get!r}")
    for g in get:
        if not isinstance(g, str) or g not in GETS:
            raise ValueError(f"get must contain only names from {list(GETS)}, got {get!r}")
    if len(set(get)) != len(get):
        raise ValueError(f"get must not repeat a name, got {get!r}")
    return tuple(get), False


def _check_x(x1, x2) -> tuple[np.ndarray, np.ndarray | None]:
    x1 = check_array("x1", x1, ndim=2)
    if x1.shape[0] < 1 or x1.shape[1] < 1:
        raise ValueError(f"x1 must have at least one row and one column, got shape {x1.shape}")
    if x2 is not None:
        x2 = check_array("x2", x2, ndim=2)
        if x2.shape[0] < 1:
            raise ValueError(f"x2 must have at least one row, got shape {x2.shape}")
        if x2.shape[1] != x1.shape[1]:
            raise ValueError(f"x2 must have the same dimension as x1 ({x1.shape[1]}), got shape {x2.shape}")
        x2 = x2.astype(np.float64)
    return x1.astype(np.float64), x2


def _check_block(block_size) -> int:
    return DEFAULT_BLOCK if block_size is None else check_int("block_size", block_size, lo=1)


def _check_rates(layer_rates, allowed: Sequence[str]) -> dict[str, float]:
    if layer_rates is None:
        return {}
    if not isinstance(layer_rates, Mapping):
        raise ValueError(f"layer_rates must be a mapping label -> rate, got {layer_rates!r}")
    out = {}
    for name, r in layer_rates.items():
        if name not in allowed:
            raise ValueError(f"layer_rates keys must be among the trained groups {list(allowed)}, got {name!r}")
        out[name] = check_real(f"layer_rates[{name!r}]", r, lo=0.0)
    return out


def _pack(values: dict, gets: tuple[str, ...], single: bool):
    if single:
        return values[gets[0]]
    return _namedtuple(gets)(*(values[g] for g in gets))


@functools.lru_cache(maxsize=None)
def _namedtuple(gets: tuple[str, ...]):
    return collections.namedtuple("Kernel", gets)


# ----------------------------------------------------------------------------- closed form


def _relu_moments(qa, qb, s):
    """``E[relu(u) relu(v)]`` and ``E[relu'(u) relu'(v)]`` for ``(u, v)`` centred Gaussian.

    ``qa (n1, 1)``, ``qb (1, n2)`` the variances, ``s (n1, n2)`` the covariance. The cosine is
    clipped to ``[-1, 1]`` before ``arccos``; zero-variance pairs give ``0`` for both.
    """
    norm = jnp.sqrt(qa * qb)
    pos = norm > 0
    c = jnp.clip(jnp.where(pos, s / jnp.where(pos, norm, 1.0), 0.0), -1.0, 1.0)
    t = jnp.arccos(c)
    sin = jnp.sqrt(jnp.maximum(1.0 - c * c, 0.0))
    k = norm / _TWO_PI * (sin + (math.pi - t) * c)
    kd = jnp.where(pos, (math.pi - t) / _TWO_PI, 0.0)
    return k, kd


def _closed_form(x1, x2, W_std, b_std, rates, *, arch, diag):
    """One block of the exact ``(nngp, ntk)`` (traced under x64).

    ``rates``: one weight per group of ``LAYERS[arch]`` (0 for groups not trained). Only the
    architecture and the diagonal-block flag are static, so every configuration of one
    architecture shares one compilation per block shape.
    """
    d = x1.shape[1]
    sw2, sb2 = W_std * W_std, b_std * b_std
    lin = (x1 @ x2.T) / d
    qa = sw2 * jnp.sum(x1 * x1, axis=1, keepdims=True) / d + sb2
    qb = sw2 * jnp.sum(x2 * x2, axis=1, keepdims=True).T / d + sb2
    s1 = sw2 * lin + sb2
    eye = jnp.eye(x1.shape[0], x2.shape[0], dtype=bool) if diag else None
    if diag:  # x1 is x2: the diagonal is exactly the variance (angle exactly 0)
        s1 = jnp.where(eye, jnp.sqrt(qa * qb), s1)
    k1, d1 = _relu_moments(qa, qb, s1)
    theta = {}
    if arch == "2nn":
        nngp = sw2 * k1
        back1 = sw2 * d1
    else:
        s2 = sw2 * k1 + sb2
        qa2, qb2 = sw2 * qa / 2 + sb2, sw2 * qb / 2 + sb2
        if diag:
            s2 = jnp.where(eye, jnp.sqrt(qa2 * qb2), s2)
        k2, d2 = _relu_moments(qa2, qb2, s2)
        back2 = sw2 * d2
        if arch == "3nn":
            nngp = sw2 * k2
            back1 = sw2 * d1 * back2
        else:  # 3resnet: features a1 + a2; a1_i and a2_i independent in the limit
            m1a, m1b = jnp.sqrt(qa / _TWO_PI), jnp.sqrt(qb / _TWO_PI)
            m2a, m2b = jnp.sqrt(qa2 / _TWO_PI), jnp.sqrt(qb2 / _TWO_PI)
            nngp = sw2 * (k1 + k2 + m1a * m2b + m2a * m1b)
            back1 = sw2 * d1 * (1.0 + back2)
        theta["U"] = sw2 * k1 * back2
        theta["b2"] = sb2 * back2
    theta["W"] = sw2 * lin * back1
    theta["b1"] = sb2 * back1
    theta["A"] = nngp
    ntk = sum(rates[i] * theta[g] for i, g in enumerate(LAYERS[arch]))
    return nngp, ntk


_closed_form_jit = jax.jit(_closed_form, static_argnames=("arch", "diag"))


def _bucket(n: int, block: int, least: int = 8) -> int:
    """Rows per block: ``block`` for large inputs, else the next power of two (>= ``least``),
    so that inputs of nearby sizes share a compilation."""
    return min(block, max(least, 1 << (n - 1).bit_length()))


def _pad_rows(x: np.ndarray, size: int) -> np.ndarray:
    if x.shape[0] == size:
        return x
    return np.concatenate([x, np.repeat(x[:1], size - x.shape[0], axis=0)], axis=0)


def _blocks(n: int, b: int):
    return [(i, min(i + b, n)) for i in range(0, n, b)]


def _assemble(block_fn, x1: np.ndarray, x2: np.ndarray | None, gets, block: int) -> dict[str, np.ndarray]:
    """Fill ``(n1, n2)`` float64 arrays block by block (upper blocks only when ``x2 is None``).

    ``block_fn(xb1, xb2, diag) -> {get: (b1, b2)}``; blocks are padded to a bucketed size so
    that each shape compiles once.
    """
    same = x2 is None
    x2_ = x1 if same else x2
    n1, n2 = x1.shape[0], x2_.shape[0]
    b1, b2 = _bucket(n1, block, 32), _bucket(n2, block, 32)  # closed forms: padding is cheap
    if same:
        b1 = b2 = max(b1, b2)
    out = {g: np.empty((n1, n2), np.float64) for g in gets}
    for i0, i1 in _blocks(n1, b1):
        xb1 = _pad_rows(x1[i0:i1], b1)
        for j0, j1 in _blocks(n2, b2):
            if same and j0 < i0:
                continue
            diag = same and i0 == j0
            xb2 = xb1 if diag else _pad_rows(x2_[j0:j1], b2)
            res = block_fn(xb1, xb2, diag)
            for g in gets:
                r = np.asarray(res[g], np.float64)[: i1 - i0, : j1 - j0]
                if diag:
                    r = 0.5 * (r + r.T)
                out[g][i0:i1, j0:j1] = r
                if same and not diag:
                    out[g][j0:j1, i0:i1] = r.T
    return out


@dataclasses.dataclass(frozen=True)
class KernelFn:
    """The exact infinite-width NNGP / NTK of one architecture (build with :func:`kernel_fn`).

    Call as ``kfn(x1, x2=None, get=('nngp', 'ntk'), block_size=None)``: ``x1 (n1, d)``,
    ``x2 (n2, d)`` (``None``: ``x2 = x1``, and the result is exactly symmetric); returns
    ``numpy.float64`` arrays of shape ``(n1, n2)``, per output (the kernels of the ``k``
    outputs are identical and independent). A string ``get`` returns that array, a tuple a
    namedtuple ``Kernel`` with the fields in the order asked. The Gram is assembled in
    ``block_size x block_size`` pieces (default 2048), so memory beyond the result is
    ``O(block_size**2)``.
    """

    arch: str
    W_std: float
    b_std: float
    trainable: tuple[str, ...]
    rates: tuple[tuple[str, float], ...]

    @property
    def layer_rates(self) -> dict[str, float]:
        return dict(self.rates)

    def __call__(self, x1, x2=None, get=("nngp", "ntk"), block_size=None):
        gets, single = _check_get(get)
        x1, x2 = _check_x(x1, x2)
        block = _check_block(block_size)
        rates = dict(self.rates)
        with x64():
            rvec = jnp.asarray([rates.get(g, 0.0) for g in LAYERS[self.arch]], jnp.float64)
            ws, bs = jnp.asarray(self.W_std, jnp.float64), jnp.asarray(self.b_std, jnp.float64)

            def block_fn(a, b, diag):
                nngp, ntk = _closed_form_jit(
                    jnp.asarray(a, jnp.float64), jnp.asarray(b, jnp.float64), ws, bs, rvec, arch=self.arch, diag=diag
                )
                return {"nngp": nngp, "ntk": ntk}

            out = _assemble(block_fn, x1, x2, gets, block)
        return _pack(out, gets, single)

    def describe(self) -> dict:
        """JSON-serialisable description (enough to rebuild it)."""
        return {
            "kind": "exact",
            "arch": self.arch,
            "W_std": self.W_std,
            "b_std": self.b_std,
            "trainable": list(self.trainable),
            "layer_rates": dict(self.rates),
        }


def kernel_fn(
    arch: str,
    *,
    W_std: float = math.sqrt(2.0),
    b_std: float = 0.1,
    trainable: Sequence[str] | None = None,
    layer_rates: Mapping[str, float] | None = None,
) -> KernelFn:
    """The exact infinite-width kernels of ``arch`` in the ``ntk`` parameterization.

    Args:
      arch: ``'2nn'``, ``'3nn'`` or ``'3resnet'``.
      W_std: weight scale (``> 0``), neural-tangents' meaning (``W_std / sqrt(fan_in)``).
      b_std: bias scale (``>= 0``); the output layer has no bias.
      trainable: parameter groups whose gradients make the NTK, among ``'W', 'b1', 'U', 'b2',
        'A'`` (three-layer nets) or ``'W', 'b1', 'A'`` (``2nn``). Default: all (the usual
        NTK). Without ``'A'``: the NTK with the output layer frozen; ``('W', 'U')``: the
        theory-faithful variant (only the offsets ``dW``, ``dU`` move). The NNGP does not
        depend on it.
      layer_rates: optional per-group rate (``>= 0``, default 1) weighing each group's
        contribution: ``NTK = sum_g rate_g <df/dtheta_g, df'/dtheta_g>`` (gradient flow with
        per-layer learning rates ``eta * rate_g`` has this NTK times ``eta``).

    Returns:
      A :class:`KernelFn`; ``kfn(x1, x2=None, get=('nngp', 'ntk'), block_size=None)``.

    Raises:
      ValueError: naming the bad argument, before any computation.
    """
    check_choice("arch", arch, ARCHS)
    W_std = check_real("W_std", W_std, lo=0.0, lo_open=True)
    b_std = check_real("b_std", b_std, lo=0.0)
    groups = LAYERS[arch]
    if trainable is None:
        trainable = groups
    else:
        if isinstance(trainable, str) or not isinstance(trainable, (tuple, list, set, frozenset)):
            raise ValueError(f"trainable must be a tuple of group names from {list(groups)}, got {trainable!r}")
        for g in trainable:
            if g not in groups:
                raise ValueError(f"trainable must contain only groups of {arch!r}: {list(groups)}, got {g!r}")
        if len(set(trainable)) != len(tuple(trainable)):
            raise ValueError(f"trainable must not repeat a group, got {trainable!r}")
        trainable = tuple(g for g in groups if g in set(trainable))
    rates = _check_rates(layer_rates, trainable)
    rate_pairs = tuple((g, float(rates.get(g, 1.0))) for g in trainable)
    return KernelFn(arch, W_std, b_std, tuple(trainable), rate_pairs)


def _model_groups(model: Model) -> tuple[str, ...]:
    """The optimiser labels that ``model`` trains (its variant and ``train_output``)."""
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    labels = set(model.labels(shapes).values()) - {FROZEN}
    return tuple(g for g in LAYERS[model.arch] if g in labels)


def model_kernel_fn(model: Model, *, layer_rates=None, head_rates: Sequence[float] | None = None):
    """The exact kernels of an ``ntk``-parameterized model, trained groups from its variant.

    ``practical`` trains every group (``A`` only if ``train_output``); ``theory`` trains
    ``W`` and ``U`` (the offsets). ``layer_rates`` as in :func:`kernel_fn`.

    A :class:`rbk.models.DeepQuad` gets the kernels of its description
    (:func:`deepquad_description`; ``'truncated'`` is taken as ``'hermite'``, which it equals for
    ``|u| <= clip``) from :func:`described_kernel_fn`, ``layer_rates`` and ``head_rates`` one per
    level.
    """
    if isinstance(model, DeepQuad):
        act = "hermite" if model.activation == "truncated" else model.activation
        desc = deepquad_description(model.levels, activation=act, skip=model.skip, readout=model.readout)
        return described_kernel_fn(desc, W_std=model.W_std, b_std=model.b_std, layer_rates=layer_rates,
                                   head_rates=head_rates)  # fmt: skip
    if not isinstance(model, Model):
        raise ValueError(f"model must be an rbk.models.Model, got {type(model).__name__}")
    if head_rates is not None:
        raise ValueError(f"head_rates applies to a DeepQuad model, not to {model.arch!r} (use layer_rates)")
    if model.parameterization != "ntk":
        raise ValueError(
            f"model.parameterization must be 'ntk' for an exact kernel, got {model.parameterization!r}"
        )
    return kernel_fn(
        model.arch, W_std=model.W_std, b_std=model.b_std, trainable=_model_groups(model), layer_rates=layer_rates
    )


# ----------------------------------------------------------------------------- empirical kernels


def _empirical_block(params, x1, xs, outs, rates, *, model, names, with_ntk):
    """Columns of the empirical kernels (traced under x64).

    For each ``(xs[t], outs[t])``: the gradient ``g_t`` of output ``outs[t]`` at the single
    point ``xs[t]`` w.r.t. the leaves ``names`` and ``A`` (``jax.vjp``), then
    ``J(x1) (rates * g_t)`` over the selected leaves (``jax.jvp`` over the batch ``x1``: the
    NTK columns) and ``J_A(x1) g_t[A]`` (the read-out term: the NNGP columns). Returns
    ``(ntk or None, nngp)``, each ``(T, n1, k)``.
    """
    wrt = tuple(dict.fromkeys(names + ("A",)))
    theta = {n: params[n] for n in wrt}
    rest = {n: v for n, v in params.items() if n not in theta}

    def f(th, x, fixed):
        return model.apply({**rest, **fixed, **th}, x)

    def tangent(x, a):
        _, pull = jax.vjp(lambda th: f(th, x[None], {})[0, a], theta)
        (g,) = pull(jnp.ones((), x.dtype))
        return g

    g = jax.vmap(tangent)(xs, outs)
    fixed_a = {n: v for n, v in theta.items() if n != "A"}
    nngp = jax.vmap(lambda t: jax.jvp(lambda th: f(th, x1, fixed_a), ({"A": theta["A"]},), ({"A": t},))[1])(g["A"])
    if not with_ntk:
        return None, nngp
    sel = {n: theta[n] for n in names}
    fixed = {n: v for n, v in theta.items() if n not in sel}
    tan = {n: rates[i] * g[n] for i, n in enumerate(names)}
    ntk = jax.vmap(lambda t: jax.jvp(lambda th: f(th, x1, fixed), (sel,), (t,))[1])(tan)
    return ntk, nngp


_empirical_block_jit = jax.jit(_empirical_block, static_argnames=("model", "names", "with_ntk"))


@dataclasses.dataclass(frozen=True)
class EmpiricalKernelFn:
    """Finite-width NNGP / NTK of a drawn network (build with :func:`empirical_kernel_fn`).

    Call as ``ekf(x1, x2=None, get=('nngp', 'ntk'), params=...)`` (neural-tangents' order).
    ``'ntk'``: ``sum over trained leaves of rate * <df/dleaf (x1), df/dleaf (x2)>``;
    ``'nngp'``: the same restricted to the read-out ``A`` = ``W_std**2/m phi(x1).phi(x2)``,
    the Gram of the last hidden layer (whose expectation is the NNGP; it converges like
    ``1/sqrt(m)``, unlike the output covariance ``f(x1) f(x2)`` of a single draw).
    ``outputs='trace'`` returns ``(n1, n2)``: the mean over outputs of the diagonal output
    blocks (neural-tangents' ``trace_axes=(-1,)``); ``'full'`` returns ``(n1, n2, k, k)``.
    """

    model: Model
    trainable: tuple[str, ...] | None
    rates: tuple[tuple[str, float], ...]
    outputs: str
    max_tangent_bytes: int
    block_size: int

    def leaves(self, params) -> tuple[tuple[str, ...], tuple[float, ...]]:
        """Leaf names the NTK differentiates and their rates (from ``model.labels``)."""
        labels = self.model.labels(params)
        want = self.trainable
        if want is None:
            names = [n for n in params if labels[n] != FROZEN]
        else:
            names = [n for n in params if labels[n] != FROZEN and labels[n] in want]
            found = {labels[n] for n in names}
            for g in want:
                if g not in found:
                    raise ValueError(
                        f"trainable group {g!r} matches no trained leaf of this model "
                        f"(labels: {sorted(set(labels.values()))})"
                    )
        rates = dict(self.rates)
        return tuple(names), tuple(float(rates.get(labels[n], 1.0)) for n in names)

    def __call__(self, x1, x2=None, get=("nngp", "ntk"), params=None):
        gets, single = _check_get(get)
        x1, x2 = _check_x(x1, x2)
        params = _check_model_params(self.model, params)
        if x1.shape[1] != self.model.d:
            raise ValueError(f"x1 must have model.d = {self.model.d} columns, got shape {x1.shape}")
        names, rates = self.leaves(params)
        with_ntk = "ntk" in gets
        if not with_ntk:
            names, rates = (), ()
        x2_ = x1 if x2 is None else x2
        with x64():
            p64 = {n: jnp.asarray(v, jnp.float64) for n, v in params.items()}
            rvec = jnp.asarray(rates, jnp.float64).reshape(len(names))
            size = sum(int(np.prod(p64[n].shape)) for n in set(names) | {"A"})
            ntk, nngp = self._kernel(p64, x1, x2_, names, rvec, size, with_ntk)
        return _pack({"ntk": ntk, "nngp": nngp}, gets, single)

    def _kernel(self, p64, x1, x2, names, rvec, size, with_ntk):
        k = self.model.k
        n1, n2 = x1.shape[0], x2.shape[0]
        # tangent pairs (point j, output a), a fastest
        pj = np.repeat(np.arange(n2), k)
        pa = np.tile(np.arange(k), n2)
        T = n2 * k
        fit = max(1, self.max_tangent_bytes // (16 * size))  # gradients and rate-scaled tangents
        bt = min(1 << (fit.bit_length() - 1), 1 << (T - 1).bit_length())  # powers of two: few shapes
        b1 = _bucket(n1, self.block_size)
        shape = (n1, n2, k, k) if self.outputs == "full" else (n1, n2)
        res = {"ntk": np.zeros(shape) if with_ntk else None, "nngp": np.zeros(shape)}
        for t0 in range(0, T, bt):
            t1 = min(t0 + bt, T)
            idx = np.concatenate([np.arange(t0, t1), np.full(bt - (t1 - t0), t0)])
            xs = jnp.asarray(x2[pj[idx]])
            outs = jnp.asarray(pa[idx])
            js, as_ = pj[t0:t1], pa[t0:t1]
            for i0, i1 in _blocks(n1, b1):
                xb1 = jnp.asarray(_pad_rows(x1[i0:i1], b1))
                got = _empirical_block_jit(p64, xb1, xs, outs, rvec, model=self.model, names=names, with_ntk=with_ntk)
                for g, cols in zip(("ntk", "nngp"), got):
                    if cols is None:
                        continue
                    cols = np.asarray(cols, np.float64)[: t1 - t0, : i1 - i0]  # (t, i, b)
                    if self.outputs == "full":  # [i, j, b, a] <- (t, i, b); (j, a) pairs distinct
                        res[g][i0:i1, js, :, as_] = cols
                    else:  # mean over outputs of the diagonal blocks; j repeats within a batch
                        np.add.at(res[g][i0:i1], (slice(None), js), cols[np.arange(t1 - t0), :, as_].T / k)
        return res["ntk"], res["nngp"]

    def describe(self) -> dict:
        return {
            "kind": "empirical",
            "model": self.model.describe(),
            "trainable": None if self.trainable is None else list(self.trainable),
            "layer_rates": dict(self.rates),
            "outputs": self.outputs,
        }


def empirical_kernel_fn(
    model: Model,
    *,
    trainable: Sequence[str] | None = None,
    layer_rates: Mapping[str, float] | None = None,
    outputs: str = "trace",
    max_tangent_bytes: int = 2**28,
    block_size: int = 1024,
) -> EmpiricalKernelFn:
    """Empirical (finite-width) kernels of ``model`` from ``jax.vjp`` / ``jax.jvp`` of ``model.apply``.

    The same ``model.apply`` that trains is differentiated, so this is the drift guard between
    :mod:`rbk.models` and the closed forms. Cost: ``n2 * k`` vector-Jacobian products at single
    points and as many Jacobian-vector products over ``x1``; memory: at most
    ``max_tangent_bytes`` of parameter-shaped tangents at a time (no full Jacobian).

    Args:
      model: any :class:`rbk.models.Model` (either parameterization, either variant).
      trainable: optimiser labels (``model.labels``) whose leaves enter the NTK; default: every
        leaf the model trains. Leaves labelled ``'frozen'`` never enter.
      layer_rates: rate per label (default 1), as in :func:`kernel_fn`.
      outputs: ``'trace'`` (``(n1, n2)``, mean over outputs of the diagonal blocks) or
        ``'full'`` (``(n1, n2, k, k)``).
      max_tangent_bytes: memory budget for one batch of tangents (>= one tangent is used).
      block_size: rows of ``x1`` per Jacobian-vector product batch.
    """
    if not isinstance(model, Model):
        raise ValueError(f"model must be an rbk.models.Model, got {type(model).__name__}")
    groups = LAYERS[model.arch]
    if trainable is not None:
        if isinstance(trainable, str) or not isinstance(trainable, (tuple, list, set, frozenset)):
            raise ValueError(f"trainable must be a tuple of labels from {list(groups)}, got {trainable!r}")
        for g in trainable:
            if g not in groups:
                raise ValueError(f"trainable must contain only labels of {model.arch!r}: {list(groups)}, got {g!r}")
        trainable = tuple(g for g in groups if g in set(trainable))
    rates = _check_rates(layer_rates, trainable if trainable is not None else groups)
    check_choice("outputs", outputs, OUTPUTS)
    max_tangent_bytes = check_int("max_tangent_bytes", max_tangent_bytes, lo=1)
    block_size = check_int("block_size", block_size, lo=1)
    return EmpiricalKernelFn(model, trainable, tuple(sorted(rates.items())), outputs, max_tangent_bytes, block_size)


# ----------------------------------------------------------------------------- linear algebra


def _as_2d_targets(name: str, y, n: int) -> tuple[np.ndarray, bool]:
    y = check_array(name, y)
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) or ({n}, k), got {y.shape}")
    vec = y.ndim == 1
    return np.array(y.reshape(n, -1), np.float64), vec


def _check_square(name: str, k, rtol: float = 1e-6, block: int = 1024) -> np.ndarray:
    """A square, symmetric (to ``rtol`` of its largest entry) finite matrix; checked in row blocks."""
    k = check_array(name, k, ndim=2)
    if k.shape[0] != k.shape[1] or k.shape[0] < 1:
        raise ValueError(f"{name} must be a square (n, n) matrix, got shape {k.shape}")
    tol = rtol * float(np.max(np.abs(k)))
    for i0 in range(0, k.shape[0], block):
        rows, cols = k[i0 : i0 + block], k[:, i0 : i0 + block]
        gap = float(np.max(np.abs(rows - cols.T)))
        if gap > tol:
            raise ValueError(f"{name} must be symmetric (a kernel matrix): entries differ from their transpose "
                             f"by up to {gap:.3g}, more than {rtol:g} x max |entry|")
    return k


def _fortran_view(a: np.ndarray) -> np.ndarray:
    """A Fortran-ordered view of the symmetric ``a`` (its transpose if C-ordered): LAPACK then works in place."""
    return a if a.flags.f_contiguous else a.T


def _restore_lower(af: np.ndarray, diag: np.ndarray, block: int = 1024) -> None:
    """Rebuild the lower triangle of the Fortran-ordered ``af`` from its (intact) strict upper one."""
    n = af.shape[0]
    for j0 in range(0, n, block):
        j1 = min(j0 + block, n)
        blk = af[j0:j1, j0:j1]
        blk[...] = np.triu(blk) + np.triu(blk, 1).T
        if j1 < n:
            af[j1:, j0:j1] = af[j0:j1, j1:].T
    af[np.diag_indices(n)] = diag


def _solve_inplace(a: np.ndarray, y: np.ndarray, diag: np.ndarray) -> tuple[np.ndarray, str]:
    """Solve ``a alpha = y`` for the symmetric float64 ``a``, destroying ``a``.

    ``diag`` is ``a``'s diagonal (used to rebuild ``a`` if the Cholesky factorisation fails,
    since LAPACK only overwrites one triangle). Cholesky first; on failure a
    :class:`KernelSolveWarning` and the eigh pseudo-inverse (eigenvalues below
    ``n * eps * max`` dropped).
    """
    n = a.shape[0]
    af = _fortran_view(a)
    try:
        c = scipy.linalg.cho_factor(af, lower=True, overwrite_a=True, check_finite=False)
        return scipy.linalg.cho_solve(c, y, check_finite=False), "cholesky"
    except np.linalg.LinAlgError:
        pass
    warnings.warn(
        "Cholesky failed (kernel matrix not numerically positive definite); using the eigh "
        "pseudo-inverse instead. A larger ridge avoids this.",
        KernelSolveWarning,
        stacklevel=3,
    )
    _restore_lower(af, diag)
    w, v = scipy.linalg.eigh(af, lower=True, overwrite_a=True, check_finite=False)
    keep = w > max(float(w[-1]), 0.0) * n * np.finfo(np.float64).eps
    coef = (v[:, keep].T @ y) / w[keep][:, None]
    return v[:, keep] @ coef, "eigh"


def ridge_solve(k_train_train, y_train, ridge: float = 0.0, *, overwrite: bool = False) -> np.ndarray:
    """``alpha = (K + ridge I)^{-1} y`` in float64, one factorisation for all outputs.

    Cholesky (scipy, in place on a working copy, or on ``k_train_train`` itself when
    ``overwrite=True`` and it is a contiguous writeable float64 numpy array, whose content is
    then destroyed). If the factorisation fails, a :class:`KernelSolveWarning` is issued and
    the eigh pseudo-inverse is used, so ``ridge=0`` gives the ridgeless (minimum-norm
    interpolating) solution.

    Args:
      k_train_train: ``(n, n)`` symmetric PSD kernel.
      y_train: ``(n,)`` or ``(n, k)`` targets.
      ridge: absolute ridge ``>= 0``.
      overwrite: allow destroying ``k_train_train``.

    Returns:
      ``alpha`` with the shape of ``y_train``.
    """
    K = _check_square("k_train_train", k_train_train)
    n = K.shape[0]
    y, vec = _as_2d_targets("y_train", y_train, n)
    ridge = check_real("ridge", ridge, lo=0.0)
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite must be True or False, got {overwrite!r}")
    inplace = (
        overwrite
        and isinstance(k_train_train, np.ndarray)
        and K.dtype == np.float64
        and (K.flags.c_contiguous or K.flags.f_contiguous)
        and K.flags.writeable
    )
    work = K if inplace else np.array(K, np.float64, order="C")
    diag = work.diagonal() + ridge
    work[np.diag_indices(n)] = diag
    alpha, _ = _solve_inplace(work, y, diag)
    return alpha[:, 0] if vec else alpha


def _gf_factors(w: np.ndarray, r: float, t: float, norm: float) -> np.ndarray:
    """Spectral factor of ``Kr^{-1} (I - exp(-t Kr / norm))`` for eigenvalues ``w`` of ``K``, ``Kr = K + r``."""
    lam = np.maximum(w + r, 0.0)
    if np.isinf(t):
        keep = lam > max(float(lam.max()), 0.0) * lam.size * np.finfo(np.float64).eps
        return np.where(keep, 1.0 / np.where(keep, lam, 1.0), 0.0)
    e = -np.expm1(-lam * t / norm)
    return np.where(lam > 0, e / np.where(lam > 0, lam, 1.0), t / norm)


def gradient_flow_predict(
    k_train_train,
    y_train,
    t,
    *,
    k_test_train=None,
    fx_train_0=0.0,
    fx_test_0=0.0,
    learning_rate: float = 1.0,
    ridge: float = 0.0,
):
    r"""Outputs of gradient flow on the MSE at time ``t`` (``nt.predict.gradient_descent_mse``).

    Convention (neural-tangents'): loss ``L = 1/(2 N) sum_{i,a} (f_a(x_i) - y_ia)^2`` with
    ``N = y_train.size`` (``n k``), ``dtheta/dt = -learning_rate * grad L``; in function space,
    with ``Kr = K + ridge I`` and ``E(t) = exp(-learning_rate t Kr / N)``::

        f_train(t) = f_train(0) + K Kr^{-1} (I - E(t)) (y - f_train(0))
        f_test(t)  = f_test(0) + K_test,train Kr^{-1} (I - E(t)) (y - f_train(0))

    (for ``ridge = 0``: ``f_train(t) = y + E(t) (f_train(0) - y)``). ``t = inf`` (or ``None``) is
    kernel ridge (Cholesky); finite ``t`` uses ``eigh`` of ``K`` (eigenvalues clipped at 0; a
    zero eigenvalue contributes its limit ``t / N``).

    Args:
      k_train_train: ``(n, n)``.
      y_train: ``(n,)`` or ``(n, k)``.
      t: ``None``, a scalar or a 1-d array of times ``>= 0`` (``inf`` allowed), in units of the
        learning rate, as in neural-tangents.
      k_test_train: ``(n_test, n)`` or ``None``.
      fx_train_0, fx_test_0: outputs at ``t = 0`` (scalars, or arrays shaped like the
        predictions); 0 for the infinite-width mean predictor.
      learning_rate: ``> 0``.
      ridge: absolute diagonal regulariser ``>= 0``.

    Returns:
      ``(fx_train_t, fx_test_t)``, ``fx_test_t`` is ``None`` without ``k_test_train``; for an
      array ``t`` both have a leading time axis.
    """
    K = _check_square("k_train_train", k_train_train)
    n = K.shape[0]
    y, vec = _as_2d_targets("y_train", y_train, n)
    learning_rate = check_real("learning_rate", learning_rate, lo=0.0, lo_open=True)
    ridge = check_real("ridge", ridge, lo=0.0)
    t_arr = np.asarray(np.inf if t is None else t, np.float64)
    if t_arr.ndim > 1 or t_arr.size < 1 or np.any(np.isnan(t_arr)) or np.any(t_arr < 0):
        raise ValueError(f"t must be None, a time >= 0 or a 1-d array of them, got {t!r}")
    Kt = None
    if k_test_train is not None:
        Kt = check_array("k_test_train", k_test_train, ndim=2)
        if Kt.shape[1] != n:
            raise ValueError(f"k_test_train must have shape (n_test, {n}), got {Kt.shape}")
    f0 = _offset("fx_train_0", fx_train_0, y.shape, np.shape(y_train))
    ft0 = None if Kt is None else _offset("fx_test_0", fx_test_0, (Kt.shape[0], y.shape[1]), (Kt.shape[0],) + np.shape(y_train)[1:])
    r = y - f0
    ts = np.atleast_1d(t_arr) * learning_rate
    norm = float(y.size)
    coefs = []
    if np.all(np.isinf(ts)):
        coefs = [ridge_solve(K, r, ridge)] * ts.size
    else:
        w, v = scipy.linalg.eigh(np.asarray(K, np.float64), check_finite=False)
        vr = v.T @ r
        coefs = [v @ (_gf_factors(w, ridge, float(tt), norm)[:, None] * vr) for tt in ts]
    Kf = np.asarray(K, np.float64)
    train = np.stack([f0 + Kf @ c for c in coefs])
    test = None if Kt is None else np.stack([ft0 + np.asarray(Kt, np.float64) @ c for c in coefs])
    if vec:
        train = train[..., 0]
        test = None if test is None else test[..., 0]
    if t_arr.ndim == 0:
        train = train[0]
        test = None if test is None else test[0]
    return train, test


def _offset(name: str, value, shape2d: tuple[int, int], shape_user: tuple) -> np.ndarray:
    arr = check_array(name, value)
    if arr.ndim == 0:
        return np.full(shape2d, float(arr))
    if arr.shape not in (tuple(shape_user), tuple(shape2d)):
        raise ValueError(f"{name} must be a scalar or have shape {tuple(shape_user)}, got {arr.shape}")
    return np.asarray(arr, np.float64).reshape(shape2d)


# ----------------------------------------------------------------------------- fit / predict


def _check_ridges(ridges) -> tuple[float, ...]:
    if isinstance(ridges, (int, float, np.floating, np.integer)) and not isinstance(ridges, bool):
        ridges = (ridges,)
    if not isinstance(ridges, (tuple, list, np.ndarray)) or not 1 <= len(ridges) <= MAX_RIDGES:
        raise ValueError(f"ridges must be a sequence of 1 to {MAX_RIDGES} relative ridges >= 0, got {ridges!r}")
    return tuple(check_real("ridges", r, lo=0.0) for r in ridges)


def _check_dataset(dataset) -> dict[str, np.ndarray]:
    names = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
    if not all(hasattr(dataset, n) for n in names):
        raise ValueError(f"dataset must have attributes {names} (an rbk.data.Dataset)")
    out = {n: check_array(f"dataset.{n}", getattr(dataset, n), ndim=2).astype(np.float64) for n in names}
    d, k = out["x_train"].shape[1], out["y_train"].shape[1]
    for split in ("train", "val", "test"):
        x, y = out[f"x_{split}"], out[f"y_{split}"]
        if x.shape[0] < 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"dataset.x_{split} and dataset.y_{split} must have the same number (>= 1) of rows, "
                             f"got {x.shape} and {y.shape}")
        if x.shape[1] != d or y.shape[1] != k:
            raise ValueError(f"dataset.x_{split}/y_{split} must have {d} input and {k} output columns, "
                             f"got {x.shape} and {y.shape}")
    return out


def _check_time(t, learning_rate):
    learning_rate = check_real("learning_rate", learning_rate, lo=0.0, lo_open=True)
    if t is None:
        return None, learning_rate
    if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)) or not float(t) >= 0:
        raise ValueError(f"t must be None or a time >= 0 (inf allowed), got {t!r}")
    return float(t), learning_rate


def _sq_error(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean over points of the squared error summed over outputs."""
    return float(np.mean(np.sum((pred - y) ** 2, axis=-1)))


def _coef_path(K: np.ndarray, R: np.ndarray, ridges, t, learning_rate, norm):
    """Coefficients ``Kr^{-1} R`` (or ``Kr^{-1} (I - E(t)) R``) for each absolute ridge; ``K`` intact.

    Returns ``(coefs (L, N, c), solvers)``. Kernel ridge (``t is None``): one working copy of
    ``K``, one in-place Cholesky per ridge. Gradient flow: one ``eigh``.
    """
    N = K.shape[0]
    coefs, solvers = [], []
    if t is None:
        work = np.empty_like(K, order="C")
        for r in ridges:
            np.copyto(work, K)
            diag = np.diagonal(K) + r
            work[np.diag_indices(N)] = diag
            c, how = _solve_inplace(work, R, diag)
            coefs.append(c)
            solvers.append(how)
        del work
    else:
        w, v = scipy.linalg.eigh(K, check_finite=False)
        vr = v.T @ R
        for r in ridges:
            coefs.append(v @ (_gf_factors(w, r, t * learning_rate, norm)[:, None] * vr))
            solvers.append("eigh")
        del v
    return np.stack(coefs), solvers


def _scale(K: np.ndarray) -> float:
    """Kernel scale: ``mean(diag K)`` (neural-tangents' ``trace(K) / n``)."""
    return float(np.mean(np.diagonal(K)))


def _apply_coefs(K_rows: np.ndarray, coefs: np.ndarray) -> np.ndarray:
    """``(rows, N) x (L, N, c) -> (L, rows, c)`` with one matrix product."""
    L, N, c = coefs.shape
    flat = coefs.transpose(1, 0, 2).reshape(N, L * c)
    return (K_rows @ flat).reshape(K_rows.shape[0], L, c).transpose(1, 0, 2)


def _select(lams, ridges, scale, solvers, pred, ys, t, learning_rate, extra) -> dict:
    errs = {s: [_sq_error(p, ys[s]) for p in pred[s]] for s in ("train", "val", "test")}
    best = int(np.argmin(errs["val"]))
    out = {
        "val_error": errs["val"][best],
        "test_error": errs["test"][best],
        "train_error": errs["train"][best],
        "ridge": ridges[best],
        "lam": lams[best],
        "kernel_scale": scale,
        "lams": list(lams),
        "ridges": list(ridges),
        "val_errors": errs["val"],
        "test_errors": errs["test"],
        "train_errors": errs["train"],
        "solvers": list(solvers),
        "n_train": int(ys["train"].shape[0]),
        "n_val": int(ys["val"].shape[0]),
        "n_test": int(ys["test"].shape[0]),
        "t": t,
        "learning_rate": learning_rate,
    }
    out.update(extra)
    return out


def fit_bytes(n: int, block_size: int | None = None, *, gradient_flow: bool = False, solver: str = "dense") -> int:
    """Estimated host bytes of :func:`fit_predict` with ``n`` training points (the one place this is estimated).

    Dense: the float64 ``(n, n)`` training Gram and one working copy (kernel ridge) or the
    eigenvectors and a working copy (gradient flow, ``t`` given), plus two streamed
    ``block_size x n`` blocks. Matrix-free (``solver='cg'``): four ``n x rank`` float64 arrays of
    the Nystrom preconditioner (rank :data:`CG_RANK`) and 1 GiB for the blocks and iterates.
    """
    if solver == "cg":
        return 4 * 8 * n * min(n, CG_RANK) + 2**30
    block = DEFAULT_BLOCK if block_size is None else block_size
    return (3 if gradient_flow else 2) * 8 * n * n + 2 * 8 * block * max(n, block)


def _kernel_rows(kfn, x, x_train, get, block):
    """Row blocks ``(i0, i1, K(x[i0:i1], x_train))`` of a (possibly foreign) kernel function."""
    for i0, i1 in _blocks(x.shape[0], block):
        if isinstance(kfn, KernelFn):
            kb = kfn(x[i0:i1], x_train, get=get, block_size=block)
        else:
            kb = kfn(x[i0:i1], x_train, get)
        yield i0, i1, np.asarray(kb, np.float64)


def fit_predict(
    kernel_fn: Callable,
    dataset,
    ridges: Sequence[float] = DEFAULT_RIDGES,
    *,
    get: str = "ntk",
    t: float | None = None,
    learning_rate: float = 1.0,
    block_size: int | None = None,
    return_predictions: bool = False,
    solver: str = "auto",
    tol: float = CG_TOL,
    rank: int = CG_RANK,
    max_iter: int = CG_MAX_ITER,
    precision: str = "mixed",
) -> dict:
    """Kernel regression on ``dataset`` with the ridge chosen on the validation split.

    The absolute ridge is ``lam * mean(diag K_train)`` for each relative ``lam`` in ``ridges``
    (at most 5; ``lam = 0`` is the ridgeless limit, min-norm interpolation through the
    pseudo-inverse if Cholesky fails). The ``k`` outputs share one factorisation. The
    selected ``lam`` minimises the validation error; test error is reported for it (and, as
    diagnostics only, for every ``lam``). Error = mean over points of the squared error
    summed over the ``k`` outputs.

    With ``t`` (a time, in units of ``learning_rate``) the predictor is instead gradient flow
    from zero output for time ``t`` (:func:`gradient_flow_predict`'s convention), one ``eigh``.

    Memory: the ``(n, n)`` float64 training Gram plus one working copy; validation and test
    kernels are streamed in ``block_size`` rows (N = 20000: about 6.4 GB + blocks).

    Args:
      kernel_fn: a :class:`KernelFn`, or any ``kfn(x1, x2, get) -> (n1, n2)`` (e.g.
        neural-tangents' ``kernel_fn``).
      dataset: an :class:`rbk.data.Dataset` (2-d arrays, no seed axis).
      ridges: relative ridges (1 to 5 values ``>= 0``).
      get: ``'ntk'`` or ``'nngp'``.
      t, learning_rate: gradient-flow time (``None``: converged / kernel ridge) and rate.
      block_size: rows per streamed block (default 2048).
      return_predictions: also return ``'pred_val'`` and ``'pred_test'`` of the selected ridge.
      solver: ``'dense'`` (Cholesky of the stored Gram), ``'cg'`` (matrix-free preconditioned
        conjugate gradients, the same problem without storing the Gram: an exact
        :class:`KernelFn` and kernel ridge only) or ``'auto'`` (:func:`choose_solver`: ``'cg'``
        above ``DENSE_MAX_N = 20000`` points or when two Grams would take half the memory).
      tol, rank, max_iter, precision: the ``'cg'`` solver's relative residual ``> 0`` (each
        ridge, checked in float64), Nystrom preconditioner rank, iteration budget per ridge,
        and ``'mixed'`` (float32 kernel blocks in the iterations, float64 refinement) or
        ``'float64'``. A run that misses ``tol`` warns (:class:`KernelSolveWarning`).

    Returns:
      dict with ``val_error, test_error, train_error, ridge, lam, kernel_scale`` and the
      per-``lam`` lists ``lams, ridges, val_errors, test_errors, train_errors, solvers``, plus
      sizes, ``get``, ``kernel`` (description), ``solver`` and ``seconds``; with ``'cg'`` also
      the per-``lam`` lists ``iterations`` and ``residuals`` and the details ``cg``.
    """
    t0 = time.perf_counter()
    if not callable(kernel_fn):
        raise ValueError(f"kernel_fn must be callable (e.g. rbk.kernels.kernel_fn(...)), got {kernel_fn!r}")
    check_choice("get", get, GETS)
    lams = _check_ridges(ridges)
    t, learning_rate = _check_time(t, learning_rate)
    block = _check_block(block_size)
    check_choice("solver", solver, SOLVERS)
    tol = check_real("tol", tol, lo=0.0, lo_open=True)
    rank = check_int("rank", rank, lo=1)
    max_iter = check_int("max_iter", max_iter, lo=1)
    check_choice("precision", precision, PRECISIONS)
    ds = _check_dataset(dataset)
    xtr, ytr = ds["x_train"], ds["y_train"]
    n = xtr.shape[0]
    if solver == "auto":
        solver = choose_solver(n, kernel_fn, t)
    need = fit_bytes(n, block, gradient_flow=t is not None, solver=solver)
    check_memory(f"a kernel fit with N = {n} training points (dataset.x_train)", need, host_memory_bytes(),
                 "fit on fewer training points")
    if solver == "cg":
        if not isinstance(kernel_fn, KernelFn):
            raise ValueError("solver='cg' needs an exact rbk.kernels.KernelFn as kernel_fn (it assembles blocks itself)")
        if t is not None:
            raise ValueError("solver='cg' solves kernel ridge only: t must be None (gradient flow needs solver='dense')")
        pred, ridge_abs, scale, info = _cg_fit_predict(kernel_fn, ds, lams, get, tol=tol, rank=rank, max_iter=max_iter,
                                                       precision=precision, block=CG_BLOCK)
        ys = {s: ds[f"y_{s}"] for s in ("train", "val", "test")}
        out = _select(lams, ridge_abs, scale, ["cg"] * len(lams), pred, ys, t, learning_rate,
                      {"get": get, "kernel": kernel_fn.describe(), "method": "kernel", "solver": "cg",
                       "iterations": info["iterations"], "residuals": info["residuals"], "cg": info})
        if return_predictions:
            best = out["lams"].index(out["lam"])
            out["pred_val"], out["pred_test"] = pred["val"][best], pred["test"][best]
        out["seconds"] = time.perf_counter() - t0
        return out
    if isinstance(kernel_fn, KernelFn):
        K = kernel_fn(xtr, None, get=get, block_size=block)
    else:
        K = np.array(kernel_fn(xtr, None, get), np.float64)
    scale = _scale(K)
    ridge_abs = [lam * scale for lam in lams]
    coefs, solvers = _coef_path(K, ytr, ridge_abs, t, learning_rate, float(ytr.size))
    pred = {"train": _apply_coefs(K, coefs)}
    del K
    for split in ("val", "test"):
        x = ds[f"x_{split}"]
        p = np.empty((len(lams), x.shape[0], ytr.shape[1]))
        for i0, i1, kb in _kernel_rows(kernel_fn, x, xtr, get, block):
            p[:, i0:i1] = _apply_coefs(kb, coefs)
        pred[split] = p
    ys = {s: ds[f"y_{s}"] for s in ("train", "val", "test")}
    desc = kernel_fn.describe() if hasattr(kernel_fn, "describe") else repr(kernel_fn)
    out = _select(lams, ridge_abs, scale, solvers, pred, ys, t, learning_rate,
                  {"get": get, "kernel": desc, "method": "kernel", "solver": "dense"})
    if return_predictions:
        best = out["lams"].index(out["lam"])
        out["pred_val"], out["pred_test"] = pred["val"][best], pred["test"][best]
    out["seconds"] = time.perf_counter() - t0
    return out


# ----------------------------------------------------------------------------- finite-width predictors


def _check_model_params(model, params) -> dict:
    if not isinstance(model, Model):
        raise ValueError(f"model must be an rbk.models.Model, got {type(model).__name__}")
    if not isinstance(params, Mapping):
        raise ValueError("params must be the model's parameter dict (from model.init)")
    want = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    if set(want) != set(params) or any(tuple(np.shape(params[n])) != want[n].shape for n in want):
        raise ValueError(
            "params must be the model's parameter dict (from model.init): expected "
            f"{ {n: want[n].shape for n in want} }"
        )
    for n, v in params.items():
        check_array(f"params[{n!r}]", v)
    return params


_features_jit = jax.jit(lambda model, p, x: model.features(p, x), static_argnums=0)
_apply_jit = jax.jit(lambda model, p, x: model.apply(p, x), static_argnums=0)


def _rows_f64(fn, model, params, x, block=4096) -> np.ndarray:
    """``fn(model, params, x)`` in float64, by bucketed row blocks."""
    b = _bucket(x.shape[0], block)
    with x64():
        p64 = {n: jnp.asarray(v, jnp.float64) for n, v in params.items()}
        parts = [np.asarray(fn(model, p64, jnp.asarray(_pad_rows(x[i0:i1], b))), np.float64)[: i1 - i0]
                 for i0, i1 in _blocks(x.shape[0], b)]
    return np.concatenate(parts, axis=0)


def random_features_fit_predict(model: Model, params, dataset, ridges: Sequence[float] = DEFAULT_RIDGES,
                                *, return_predictions: bool = False) -> dict:
    """Random features: train only the read-out ``A`` of a drawn network, by ridge regression.

    Features ``phi = model.features(params, x)`` (float64); the read-out is fitted from zero
    (not from the initial ``A``): ``min_w |phi w - y|^2 + ridge |w|^2``, ``ridge = lam *
    mean_i |phi(x_i)|^2`` (relative to the feature kernel's scale, so the read-out's fixed
    prefactor does not matter). Primal (``m x m``) when the width is below ``n``, dual
    (``n x n``) otherwise; both give the same predictor, ``lam = 0`` the minimum-norm
    least-squares one. Same selection and return dict as :func:`fit_predict`.
    """
    t0 = time.perf_counter()
    params = _check_model_params(model, params)
    lams = _check_ridges(ridges)
    ds = _check_dataset(dataset)
    if ds["x_train"].shape[1] != model.d or ds["y_train"].shape[1] != model.k:
        raise ValueError(f"dataset must have d = {model.d} inputs and k = {model.k} outputs (the model's)")
    phi = {s: _rows_f64(_features_jit, model, params, ds[f"x_{s}"]) for s in ("train", "val", "test")}
    P, Y = phi["train"], ds["y_train"]
    n, m = P.shape
    scale = float(np.sum(P * P) / n)  # mean diag of the feature kernel P P^T
    ridge_abs = [lam * scale for lam in lams]
    if m < n:  # primal: (P^T P + ridge I) w = P^T y
        weights, solvers = _coef_path(P.T @ P, P.T @ Y, ridge_abs, None, 1.0, 1.0)
    else:  # dual: w = P^T (P P^T + ridge I)^{-1} y
        coefs, solvers = _coef_path(P @ P.T, Y, ridge_abs, None, 1.0, 1.0)
        weights = np.stack([P.T @ c for c in coefs])
    pred = {s: _apply_coefs(phi[s], weights) for s in phi}
    ys = {s: ds[f"y_{s}"] for s in ("train", "val", "test")}
    out = _select(lams, ridge_abs, scale, solvers, pred, ys, None, None,
                  {"method": "random_features", "model": model.describe(), "primal": bool(m < n)})
    if return_predictions:
        best = out["lams"].index(out["lam"])
        out["pred_val"], out["pred_test"] = pred["val"][best], pred["test"][best]
    out["seconds"] = time.perf_counter() - t0
    return out


def linearized_fit_predict(
    model: Model,
    params,
    dataset,
    ridges: Sequence[float] = DEFAULT_RIDGES,
    *,
    t: float | None = None,
    learning_rate: float = 1.0,
    outputs: str = "trace",
    trainable: Sequence[str] | None = None,
    layer_rates: Mapping[str, float] | None = None,
    return_predictions: bool = False,
) -> dict:
    """Lazy training: the first-order Taylor model of the drawn network around ``params``.

    ``f_lin(x) = f(x; params) + J(x) (theta - params)`` trained on the MSE is kernel regression
    with the empirical NTK ``Theta`` and offset ``f_0``: ``f_0(x*) + Theta(x*, X) (Theta + ridge
    I)^{-1} (y - f_0(X))`` (``ridge``: weight decay towards the initialisation; ``ridge -> 0``:
    gradient flow to convergence), or at time ``t`` the gradient-flow solution of
    :func:`gradient_flow_predict`. ``outputs='full'`` uses the exact ``(n k) x (n k)`` NTK
    (the linearised net exactly); ``'trace'`` (default) shares the output-averaged ``(n, n)``
    NTK across outputs, as neural-tangents' ``trace_axes=(-1,)`` (exact as width -> inf).

    Cost: ``(n + n_val + n_test) * k`` Jacobian-vector products over the training set, so this
    is for small ``n`` (a few thousand) and moderate width. ``trainable`` / ``layer_rates``:
    as in :func:`empirical_kernel_fn` (default: what the model trains).
    """
    t0 = time.perf_counter()
    params = _check_model_params(model, params)
    lams = _check_ridges(ridges)
    t, learning_rate = _check_time(t, learning_rate)
    ds = _check_dataset(dataset)
    if ds["x_train"].shape[1] != model.d or ds["y_train"].shape[1] != model.k:
        raise ValueError(f"dataset must have d = {model.d} inputs and k = {model.k} outputs (the model's)")
    ekf = empirical_kernel_fn(model, trainable=trainable, layer_rates=layer_rates, outputs=outputs)
    f0 = {s: _rows_f64(_apply_jit, model, params, ds[f"x_{s}"]) for s in ("train", "val", "test")}
    xtr = ds["x_train"]
    n, k = ds["y_train"].shape
    K = ekf(xtr, None, "ntk", params)
    R = ds["y_train"] - f0["train"]
    if outputs == "full":
        K = K.transpose(0, 2, 1, 3).reshape(n * k, n * k)
        R = R.reshape(n * k, 1)
    scale = _scale(K)
    ridge_abs = [lam * scale for lam in lams]
    coefs, solvers = _coef_path(K, R, ridge_abs, t, learning_rate, float(n * k))

    def predict(x, base):
        kx = ekf(x, xtr, "ntk", params)
        if outputs == "full":
            kx = kx.transpose(0, 2, 1, 3).reshape(x.shape[0] * k, n * k)
            return base[None] + _apply_coefs(kx, coefs).reshape(len(lams), x.shape[0], k)
        return base[None] + _apply_coefs(kx, coefs)

    if outputs == "full":
        pred = {"train": f0["train"][None] + _apply_coefs(K, coefs).reshape(len(lams), n, k)}
    else:
        pred = {"train": f0["train"][None] + _apply_coefs(K, coefs)}
    del K
    for s in ("val", "test"):
        pred[s] = predict(ds[f"x_{s}"], f0[s])
    ys = {s: ds[f"y_{s}"] for s in ("train", "val", "test")}
    out = _select(lams, ridge_abs, scale, solvers, pred, ys, t, learning_rate,
                  {"method": "linearized", "model": model.describe(), "outputs": outputs,
                   "kernel": ekf.describe()})
    if return_predictions:
        best = out["lams"].index(out["lam"])
        out["pred_val"], out["pred_test"] = pred["val"][best], pred["test"][best]
    out["seconds"] = time.perf_counter() - t0
    return out


# ----------------------------------------------------------------------------- described architectures
#
# The same closed forms, derived from a *description* instead of an architecture name: a table of
# Gaussian moments per activation and one recursion over layers with arbitrary skips and heads.
# ``describe_arch('2nn' | '3nn' | '3resnet')`` reproduces the hand-written closed forms above
# (tests/test_hierarchy.py checks it to 1e-12); ``'deepquad'`` (:class:`rbk.models.DeepQuad`) is the
# deep quadratic network of the hierarchy experiments.
#
# Layer ``l`` (1-based; 0 is the input) reads the post-activations ``phi_j`` of the layers ``j`` in
# ``inputs``: ``h_l = e_l sum_j W_std/sqrt(fan_j) phi_j W_{l,j} + b_std b_l`` (``e_l = 1/sqrt(#inputs)``
# when ``normalize_edges``, else 1; ``phi_0 = x``). A head reads a sum of terms ``(layer, 'pre' | 'post')``
# through one read-out ``W_std/sqrt(m) (sum of terms) A``; the output is the sum of the heads. In the
# infinite-width limit the pre-activations of different layers are independent centred Gaussian
# processes, so for a pair of inputs, with ``S_l`` the pre-activation covariance, ``K_l = E[phi phi']``,
# ``D_l = E[phi' phi'']`` (derivatives) and ``M_l = E[phi]``::
#
#     S_l   = e_l^2 sum_{j in inputs_l} sw2 K_j + sb2              (K_0 = x.x'/d)
#     NNGP  = sw2 sum_heads ( sum_t C_t + sum_{t != t'} M_t(x) M_t'(x') )   (C = K_l post, S_l pre; M_pre = 0)
#     B_l   = sw2 (#post-terms of l) D_l + sw2 (#pre-terms of l) + sum_{k: l in inputs_k} e_k^2 sw2 D_l B_k
#     Theta_layer_l = (e_l^2 sum_j sw2 K_j + sb2) B_l,   Theta_head = NNGP of that head
#
# (``B_l``: the backward kernel, ``sum_i E[d out/d h_li (x) d out/d h_li (x')]``).


def _relu_table(qa, qb, s):
    k, kd = _relu_moments(qa, qb, s)
    return k, kd


def _poly2_table(a: float, b: float, c: float):
    """Moments of ``sigma(u) = a u^2 + b u + c`` (Isserlis: ``E[u^2 v^2] = q q' + 2 s^2``)."""

    def table(qa, qb, s):
        k = a * a * (qa * qb + 2.0 * s * s) + a * c * (qa + qb) + b * b * s + c * c
        kd = 4.0 * a * a * s + b * b
        return k, kd

    return table


#: Activation -> ``(moments(qa, qb, s) -> (E[phi(u) phi(v)], E[phi'(u) phi'(v)]), mean(q) -> E[phi(u)])``.
GAUSSIAN_MOMENTS: dict[str, tuple[Callable, Callable]] = {
    "relu": (_relu_table, lambda q: jnp.sqrt(q / _TWO_PI)),
    "square": (_poly2_table(1.0, 0.0, 0.0), lambda q: q),
    "hermite": (_poly2_table(1.0 / math.sqrt(2.0), 0.0, -1.0 / math.sqrt(2.0)), lambda q: (q - 1.0) / math.sqrt(2.0)),
}


@dataclasses.dataclass(frozen=True)
class ArchDescription:
    """A layered network with skips and several heads (hashable; see the section comment).

    Attributes:
      inputs: per layer ``l = 1..L``, the tuple of layers it reads (``0`` = the input ``x``).
      activations: per layer, a name of :data:`GAUSSIAN_MOMENTS`.
      heads: per head, a tuple of ``(layer, 'pre' | 'post')`` terms sharing one read-out.
      normalize_edges: scale each layer's sum over inputs by ``1/sqrt(#inputs)``.
    """

    inputs: tuple[tuple[int, ...], ...]
    activations: tuple[str, ...]
    heads: tuple[tuple[tuple[int, str], ...], ...]
    normalize_edges: bool = False

    @property
    def n_layers(self) -> int:
        return len(self.inputs)


def check_description(desc: ArchDescription) -> ArchDescription:
    """Validate an :class:`ArchDescription` (``ValueError`` naming the bad field)."""
    if not isinstance(desc, ArchDescription):
        raise ValueError(f"description must be an rbk.kernels.ArchDescription, got {type(desc).__name__}")
    L = desc.n_layers
    if L < 1 or len(desc.activations) != L:
        raise ValueError(f"description.inputs and description.activations must both have one entry per layer "
                         f"(>= 1), got {L} and {len(desc.activations)}")
    for l, ins in enumerate(desc.inputs, start=1):
        if not ins or any(not isinstance(j, int) or not 0 <= j < l for j in ins) or len(set(ins)) != len(ins):
            raise ValueError(f"description.inputs[{l - 1}] (layer {l}) must be distinct earlier layers in [0, {l - 1}], "
                             f"got {ins!r}")
    for name in desc.activations:
        check_choice("description.activations", name, GAUSSIAN_MOMENTS)
    if not desc.heads:
        raise ValueError("description.heads must name at least one head")
    for h in desc.heads:
        layers = [t[0] for t in h]
        if not h or len(set(layers)) != len(layers):
            raise ValueError(f"description.heads: each head needs >= 1 term and each layer at most once, got {h!r}")
        for l, kind in h:
            if not isinstance(l, int) or not 1 <= l <= L or kind not in ("pre", "post"):
                raise ValueError(f"description.heads terms must be (layer in [1, {L}], 'pre' | 'post'), got {(l, kind)!r}")
    return desc


def describe_arch(arch: str) -> ArchDescription:
    """The description of ``'2nn'``, ``'3nn'`` or ``'3resnet'`` (equal to :func:`kernel_fn`'s closed forms)."""
    check_choice("arch", arch, ARCHS)
    if arch == "2nn":
        return ArchDescription(((0,),), ("relu",), (((1, "post"),),))
    if arch == "3nn":
        return ArchDescription(((0,), (1,)), ("relu", "relu"), (((2, "post"),),))
    return ArchDescription(((0,), (1,)), ("relu", "relu"), (((1, "post"), (2, "post")),))


def _described_closed_form(x1, x2, W_std, b_std, layer_rates, head_rates, *, desc, diag):
    """One block of ``(nngp, ntk)`` of a described architecture (traced under x64)."""
    d = x1.shape[1]
    sw2, sb2 = W_std * W_std, b_std * b_std
    eye = jnp.eye(x1.shape[0], x2.shape[0], dtype=bool) if diag else None
    # post-activation kernels K_j(x, x') and diagonals K_j(x, x), K_j(x', x'); layer 0 = input
    K = {0: (x1 @ x2.T) / d}
    Ka = {0: jnp.sum(x1 * x1, axis=1, keepdims=True) / d}
    Kb = {0: jnp.sum(x2 * x2, axis=1, keepdims=True).T / d}
    S, D, Ma, Mb, inner = {}, {}, {}, {}, {}
    for l, ins in enumerate(desc.inputs, start=1):
        e2 = 1.0 / len(ins) if desc.normalize_edges else 1.0
        inner[l] = e2 * sum(sw2 * K[j] for j in ins) + sb2
        qa = e2 * sum(sw2 * Ka[j] for j in ins) + sb2
        qb = e2 * sum(sw2 * Kb[j] for j in ins) + sb2
        s = jnp.where(eye, jnp.sqrt(qa * qb), inner[l]) if diag else inner[l]
        S[l] = s
        moments, mean = GAUSSIAN_MOMENTS[desc.activations[l - 1]]
        K[l], D[l] = moments(qa, qb, s)
        Ka[l], _ = moments(qa, qa, qa)
        Kb[l], _ = moments(qb, qb, qb)
        Ma[l], Mb[l] = mean(qa), mean(qb)
    nngp_heads = []
    for head in desc.heads:
        h = sum(K[l] if kind == "post" else S[l] for l, kind in head)
        for l, kind in head:
            for l2, kind2 in head:
                if l2 != l and kind == "post" and kind2 == "post":
                    h = h + Ma[l] * Mb[l2]
        nngp_heads.append(sw2 * h)
    nngp = sum(nngp_heads)
    B = {}
    for l in range(desc.n_layers, 0, -1):
        b = 0.0
        for head in desc.heads:
            for l2, kind in head:
                if l2 == l:
                    b = b + sw2 * (D[l] if kind == "post" else 1.0)
        for k in range(l + 1, desc.n_layers + 1):
            if l in desc.inputs[k - 1]:
                e2 = 1.0 / len(desc.inputs[k - 1]) if desc.normalize_edges else 1.0
                b = b + e2 * sw2 * D[l] * B[k]
        B[l] = b
    ntk = sum(head_rates[i] * nngp_heads[i] for i in range(len(desc.heads)))
    ntk = ntk + sum(layer_rates[l - 1] * inner[l] * B[l] for l in range(1, desc.n_layers + 1))
    return nngp, ntk


_described_closed_form_jit = jax.jit(_described_closed_form, static_argnames=("desc", "diag"))


@dataclasses.dataclass(frozen=True)
class DescribedKernelFn:
    """Exact NNGP / NTK of an :class:`ArchDescription` (build with :func:`described_kernel_fn`).

    Called like :class:`KernelFn`: ``kfn(x1, x2=None, get=('nngp', 'ntk'), block_size=None)``.
    ``layer_rates`` weigh each layer's weights and bias, ``head_rates`` each head's read-out
    (0 = frozen), so the NTK is ``sum_l rate_l Theta_layer_l + sum_h rate_h Theta_head_h``.
    """

    desc: ArchDescription
    W_std: float
    b_std: float
    layer_rates: tuple[float, ...]
    head_rates: tuple[float, ...]

    def __call__(self, x1, x2=None, get=("nngp", "ntk"), block_size=None):
        gets, single = _check_get(get)
        x1, x2 = _check_x(x1, x2)
        block = _check_block(block_size)
        with x64():
            lr = jnp.asarray(self.layer_rates, jnp.float64)
            hr = jnp.asarray(self.head_rates, jnp.float64)
            ws, bs = jnp.asarray(self.W_std, jnp.float64), jnp.asarray(self.b_std, jnp.float64)

            def block_fn(a, b, diag):
                nngp, ntk = _described_closed_form_jit(jnp.asarray(a, jnp.float64), jnp.asarray(b, jnp.float64),
                                                       ws, bs, lr, hr, desc=self.desc, diag=diag)
                return {"nngp": nngp, "ntk": ntk}

            out = _assemble(block_fn, x1, x2, gets, block)
        return _pack(out, gets, single)

    def describe(self) -> dict:
        return {"kind": "exact-described", "description": dataclasses.asdict(self.desc), "W_std": self.W_std,
                "b_std": self.b_std, "layer_rates": list(self.layer_rates), "head_rates": list(self.head_rates)}


def described_kernel_fn(
    desc: ArchDescription,
    *,
    W_std: float = 1.0,
    b_std: float = 0.0,
    layer_rates: Sequence[float] | None = None,
    head_rates: Sequence[float] | None = None,
) -> DescribedKernelFn:
    """Exact infinite-width kernels of a described architecture (``ntk`` parameterization).

    ``layer_rates`` (one per layer) and ``head_rates`` (one per head), each ``>= 0``, default 1.
    """
    desc = check_description(desc)
    W_std = check_real("W_std", W_std, lo=0.0, lo_open=True)
    b_std = check_real("b_std", b_std, lo=0.0)
    rates = []
    for name, given, n in (("layer_rates", layer_rates, desc.n_layers), ("head_rates", head_rates, len(desc.heads))):
        given = (1.0,) * n if given is None else tuple(given)
        if len(given) != n:
            raise ValueError(f"{name} must have {n} entries (one per {name.split('_')[0]}), got {len(given)}")
        rates.append(tuple(check_real(name, r, lo=0.0) for r in given))
    return DescribedKernelFn(desc, W_std, b_std, rates[0], rates[1])


def deepquad_description(levels: int, *, activation: str = "hermite", skip: bool = True,
                         readout: str = "post") -> ArchDescription:
    """The deep quadratic network of :class:`rbk.models.DeepQuad`: level 1 ``h_1 = x W_1`` (linear),
    level 2 reads ``sigma(h_1)``, level ``l >= 3`` reads ``sigma(h_{l-1})`` and (``skip``)
    ``sigma(h_{l-2})``, edges normalised by ``1/sqrt(#inputs)``; one head per level reading
    ``sigma(h_l)`` (``readout='post'``) or ``h_l`` (``'pre'``)."""
    levels = check_int("levels", levels, lo=1)
    check_choice("activation", activation, ("square", "hermite"))
    check_choice("readout", readout, ("pre", "post"))
    ins = [(0,)] + [((l - 1, l - 2) if skip and l >= 3 else (l - 1,)) for l in range(2, levels + 1)]
    heads = tuple((((l, readout),)) for l in range(1, levels + 1))
    return ArchDescription(tuple(ins), (activation,) * levels, heads, normalize_edges=True)


# ----------------------------------------------------------------------------- matrix-free kernel ridge
#
# Preconditioned conjugate gradients on (K + r I) A = Y, K never stored: every product with K
# assembles it block by block on the default device (docs/kernels.md, section 10).



def _cube_words(x: np.ndarray) -> np.ndarray | None:
    """Rows of ``x`` as bit words ``(n, ceil(d/32))`` uint32 if every entry is exactly +-1, else None.

    On the cube every kernel of rbk depends on ``x . x' = d - 2 hamming(x, x')`` alone (the norms
    are all ``sqrt d``), and the Hamming distance is a popcount of the xor of the words.
    """
    if not np.all(np.abs(x) == 1.0):
        return None
    n, d = x.shape
    w = -(-d // 32)
    bits = np.zeros((n, w * 32), np.uint32)
    bits[:, :d] = x > 0
    return np.sum(bits.reshape(n, w, 32) << np.arange(32, dtype=np.uint32), axis=-1, dtype=np.uint32)


def _cube_table(kfn: "KernelFn", d: int, get: str) -> np.ndarray:
    """The kernel at Hamming distance ``h = 0..d`` on ``{-1, 1}^d`` (float64, through the closed form;
    ``h = 0`` is a diagonal entry of the Gram, computed as such)."""
    z = np.ones((d + 1, d))
    z[np.tril_indices(d + 1, -1, d)] = -1.0  # row h: its first h entries are -1
    return np.asarray(kfn(z, None, get=get), np.float64)[0]


def _cube_block(rows, cols, table, ri, cj, row_diag):
    """Cube block: the Hamming distances (popcount of the xor'ed words) looked up in ``table``."""
    h = sum(jax.lax.population_count(rows[:, None, w] ^ cols[None, :, w]).astype(jnp.int32)
            for w in range(rows.shape[1]))
    return table[h]


@functools.lru_cache(maxsize=64)
def _closed_block(kfn: "KernelFn", get: str):
    """Closed-form block ``(rows, cols, table, ri, cj, row_diag)`` -> float64 ``(B, C)`` of ``kfn``;
    with ``row_diag``, the entries whose global row index equals the column index (``ri, cj``)
    are set to it (the diagonal of the Gram, computed apart)."""
    rvec = tuple(dict(kfn.rates).get(g, 0.0) for g in LAYERS[kfn.arch])

    def block(rows, cols, table, ri, cj, row_diag):
        nngp, ntk = _closed_form(rows, cols, kfn.W_std, kfn.b_std, jnp.asarray(rvec, jnp.float64), arch=kfn.arch,
                                 diag=False)
        kb = ntk if get == "ntk" else nngp
        return kb if row_diag is None else jnp.where(ri[:, None] == cj[None, :], row_diag[:, None], kb)

    return block


@functools.partial(jax.jit, static_argnames=("block", "f32", "same"))
def _kmv(rows, cols, v, table, row_diag, *, block, f32, same):
    """``K(rows, cols) @ v`` without storing K: ``rows (nb, B, .)``, ``cols (nc, C, .)``, ``v (nc, C, m)``.

    Each ``(B, C)`` block is built and multiplied at once; the sum over column blocks is float64.
    ``f32``: the block and its product in float32 (the sum stays float64).
    """
    nb, B = rows.shape[:2]
    nc, C = cols.shape[:2]
    vv = v.astype(jnp.float32) if f32 else v
    tab = table.astype(jnp.float32) if f32 else table

    def row(i):
        ri = i * B + jnp.arange(B)

        def body(j, acc):
            kb = block(rows[i], cols[j], tab, ri, j * C + jnp.arange(C), row_diag[i] if same else None)
            return acc + (kb @ vv[j]).astype(jnp.float64)

        return jax.lax.fori_loop(0, nc, body, jnp.zeros((B, v.shape[-1]), jnp.float64))

    return jax.lax.map(row, jnp.arange(nb)).reshape(nb * B, v.shape[-1])


@functools.partial(jax.jit, static_argnames=("block",))
def _krows(rows, cols, table, *, block):
    """The kernel ``K(rows, cols)`` itself, ``(nb * B, n_cols)`` (the Nystrom columns)."""
    B = rows.shape[1]
    return jax.lax.map(lambda r: block(r, cols, table, None, None, None), rows).reshape(rows.shape[0] * B, cols.shape[0])


def _pad_to(x, size: int):
    return jnp.concatenate([x, jnp.zeros((size - x.shape[0],) + x.shape[1:], x.dtype)]) if x.shape[0] < size else x


class _Operator:
    """Products with the training kernel ``K`` (``n x n``) and with ``K(x_eval, x_train)``, by blocks.

    Cube inputs (every entry exactly +-1, checked) use the popcount / table blocks, others the
    closed form. Arrays live on JAX's default device.
    """

    def __init__(self, kfn: "KernelFn", get: str, xtr: np.ndarray, block: tuple[int, int]):
        self.n, d = xtr.shape
        words = _cube_words(xtr)
        self.cube = words is not None
        self.B, self.C = (_bucket(self.n, block[0]), _bucket(self.n, block[1]))
        self.table = jnp.asarray(_cube_table(kfn, d, get) if self.cube else np.zeros(1))
        self.closed = _closed_block(kfn, get)
        self.block = _cube_block if self.cube else self.closed
        self.x = jnp.asarray(xtr)
        self.data = jnp.asarray(words) if self.cube else self.x
        self.cols = self._split(self.data, self.C)
        self.rows = self._split(self.data, self.B)
        if self.cube:
            self.diag = jnp.full(self.n, self.table[0])
        else:
            rvec = jnp.asarray([dict(kfn.rates).get(g, 0.0) for g in LAYERS[kfn.arch]], jnp.float64)
            one = lambda z: _closed_form(z[None], z[None], kfn.W_std, kfn.b_std, rvec, arch=kfn.arch, diag=True)
            self.diag = jax.jit(jax.vmap(lambda z: one(z)[GETS.index(get)][0, 0]))(self.x)
        self.row_diag = self._split(self.diag, self.B)

    @staticmethod
    def _split(a, b: int):
        m = -(-a.shape[0] // b) * b
        return _pad_to(a, m).reshape((m // b, b) + a.shape[1:])

    def matvec(self, v, *, f32: bool = False):
        """``K @ v`` for ``v (n, m)`` float64 (``f32``: float32 blocks and block products)."""
        out = _kmv(self.rows, self.cols, self._split(v, self.C), self.table, self.row_diag, block=self.block,
                   f32=f32, same=not self.cube)
        return out[: self.n]

    def cross(self, x: np.ndarray, v):
        """``K(x, x_train) @ v`` in float64 (no diagonal: ``x`` is another sample)."""
        words = _cube_words(x) if self.cube else None
        block, data, cols = (self.block, jnp.asarray(words), self.cols) if words is not None else \
            (self.closed, jnp.asarray(x), self._split(self.x, self.C))
        out = _kmv(self._split(data, self.B), cols, self._split(v, self.C), self.table, self.row_diag, block=block,
                   f32=False, same=False)
        return out[: x.shape[0]]

    def columns(self, idx: np.ndarray):
        """``K[:, idx]`` (float64, ``(n, len(idx))``)."""
        out = _krows(self.rows, self.data[idx], self.table, block=self.block)[: self.n]
        if not self.cube:  # the landmarks' own entries are diagonal entries
            out = out.at[jnp.asarray(idx), jnp.arange(len(idx))].set(self.diag[idx])
        return out


class _Nystrom:
    """Nystrom preconditioner of rank ``M`` (uniform landmarks, as Falkon): ``K ~ U diag(lam) U^T``.

    ``K_nm = K[:, S]``, ``K_mm = K[S, S]`` (``|S| = M``, drawn without replacement by a fixed
    seed); ``B = K_nm chol(K_mm + nu I)^{-T}``, ``B = U diag(sqrt(lam + nu)) V^T`` through the
    eigendecomposition of ``B^T B`` (stable form of Frangella, Tropp & Udell 2023, shift ``nu``).
    For ridge ``r``: ``P^{-1} = (lam_min + r) U (diag(lam) + r)^{-1} U^T + (I - U U^T)`` (a
    multiple of the inverse of ``U diag(lam) U^T + (lam_min + r)`` on the complement).
    """

    def __init__(self, op: "_Operator", rank: int, seed: int = 0):
        n = op.n
        m = min(rank, n)
        idx = np.sort(np.random.default_rng(seed).choice(n, m, replace=False))
        c = op.columns(idx)
        self.u, self.lam = _nystrom_factor(c, jnp.asarray(idx))
        self.rank = int(self.lam.shape[0])

    def apply(self, r, ridges):
        """``P^{-1} r`` for ``r (n, L, k)`` with one ridge per ``L``."""
        return _nystrom_apply(self.u, self.lam, r, ridges)


@jax.jit
def _nystrom_factor(c, idx):
    w = c[idx]
    w = 0.5 * (w + w.T)
    nu = jnp.finfo(jnp.float64).eps * w.shape[0] * jnp.trace(w)
    low = jnp.linalg.cholesky(w + nu * jnp.eye(w.shape[0]))
    b = jax.scipy.linalg.solve_triangular(low, c.T, lower=True).T  # K_nm L^{-T}
    s2, v = jnp.linalg.eigh(b.T @ b)
    keep = s2 > 1e3 * nu  # directions the landmarks resolve
    s = jnp.sqrt(jnp.where(keep, s2, 1.0))
    u = jnp.where(keep[None, :], (b @ v) / s[None, :], 0.0)
    lam = jnp.where(keep, jnp.maximum(s2 - nu, 0.0), 0.0)
    return u, lam


@jax.jit
def _nystrom_apply(u, lam, r, ridges):
    lam_min = jnp.min(jnp.where(lam > 0, lam, jnp.inf))
    f = jnp.where(lam[:, None] > 0, (lam_min + ridges[None, :]) / (lam[:, None] + ridges[None, :]) - 1.0, 0.0)
    ur = jnp.einsum("nm,nlk->mlk", u, r)
    return r + jnp.einsum("nm,mlk->nlk", u, f[:, :, None] * ur)


@jax.jit
def _cg_update(x, r, p, q, rz, ridges, u, lam):
    """One PCG step for every column (each column its own scalar CG); ``(n, L, k)`` arrays."""
    pq = jnp.sum(p * q, axis=0)
    bad = jnp.any((pq <= 0) & (jnp.sum(p * p, axis=0) > 0))
    alpha = jnp.where(pq > 0, rz / jnp.where(pq > 0, pq, 1.0), 0.0)
    x = x + alpha * p
    r = r - alpha * q
    z = _nystrom_apply(u, lam, r, ridges)
    rz_new = jnp.sum(r * z, axis=0)
    beta = jnp.where(rz > 0, rz_new / jnp.where(rz > 0, rz, 1.0), 0.0)
    return x, r, z + beta * p, rz_new, jnp.sqrt(jnp.sum(r * r, axis=(0, 2))), bad


def _pcg(op: _Operator, pre: _Nystrom, rhs, ridges: np.ndarray, tol: np.ndarray, max_iter: np.ndarray, f32: bool):
    """PCG from zero on ``(K + r_l I) X_l = rhs_l`` for all ridges at once; ``rhs (n, L, k)``.

    Each iteration is one pass over K for the stacked search directions of the ridges still
    running (a ridge stops at relative residual ``tol[l]`` or after ``max_iter[l]`` steps).
    Returns ``(X, iterations per ridge, seconds of each iteration)``.
    """
    n, L, k = rhs.shape
    rj = jnp.asarray(ridges)
    x, r = jnp.zeros_like(rhs), rhs
    z = pre.apply(r, rj)
    p, rz = z, jnp.sum(r * z, axis=0)
    norm0 = np.sqrt(np.asarray(jnp.sum(rhs * rhs, axis=(0, 2))))
    res = np.ones(L)
    its = np.zeros(L, int)
    times = []
    while True:
        act = np.flatnonzero((res > tol) & (its < max_iter) & (norm0 > 0))
        if act.size == 0:
            return x, its, times
        t0 = time.perf_counter()
        a = jnp.asarray(act)
        pa = p[:, a]
        q = op.matvec(pa.reshape(n, -1), f32=f32).reshape(n, act.size, k) + rj[a][None, :, None] * pa
        xa, ra, pa, rza, resa, bad = _cg_update(x[:, a], r[:, a], pa, q, rz[a], rj[a], pre.u, pre.lam)
        if bool(bad):
            raise ValueError("kernel_fn: conjugate gradients broke down (p^T (K + ridge I) p <= 0), so the kernel "
                             "matrix is not positive semi-definite; check the kernel, or use a ridge > 0")
        x, r, p, rz = x.at[:, a].set(xa), r.at[:, a].set(ra), p.at[:, a].set(pa), rz.at[a].set(rza)
        res[act] = np.asarray(resa) / norm0[act]
        its[act] += 1
        times.append(time.perf_counter() - t0)


def _cg_solve(op: _Operator, y: np.ndarray, ridges: Sequence[float], *, tol: float, rank: int, max_iter: int,
              precision: str):
    """``A_l = (K + r_l I)^{-1} Y`` for every ridge, and ``K A_l``; float64 iterative refinement.

    Each round runs PCG (float32 blocks for ``precision='mixed'``) on the current residual,
    then one float64 pass computes ``K A`` and the true residual ``Y - (K + r I) A``; rounds
    repeat until every ridge meets ``tol`` (relative, Frobenius over the ``k`` outputs), the
    iterations run out or a round stops gaining. Returns ``(A, KA, info)``, ``(n, L, k)`` arrays.
    """
    t0 = time.perf_counter()
    n, k = y.shape
    L = len(ridges)
    rid = np.asarray(ridges, np.float64)
    pre = _Nystrom(op, rank)
    t_pre = time.perf_counter() - t0
    rhs = jnp.broadcast_to(jnp.asarray(y)[:, None, :], (n, L, k))
    ynorm = float(np.linalg.norm(y))
    A, KA, R = jnp.zeros((n, L, k)), jnp.zeros((n, L, k)), rhs
    res = np.ones(L) if ynorm > 0 else np.zeros(L)
    its, rounds, passes, iter_s = np.zeros(L, int), 0, 0, []
    f32 = precision == "mixed"
    while rounds < _MAX_REFINE:
        todo = np.flatnonzero((res > tol) & (its < max_iter))
        if todo.size == 0:
            break
        rounds += 1
        a = jnp.asarray(todo)
        inner = np.maximum(0.3 * tol / res[todo], _F32_FLOOR if f32 else 0.0)  # margin: one round usually does
        D, got, secs = _pcg(op, pre, R[:, a], rid[todo], inner, max_iter - its[todo], f32)
        its[todo] += got
        passes, iter_s = passes + len(secs), iter_s + secs
        A = A.at[:, a].add(D)
        KA = KA.at[:, a].set(op.matvec(A[:, a].reshape(n, -1)).reshape(n, todo.size, k))
        R = rhs - KA - jnp.asarray(rid)[None, :, None] * A
        new = np.sqrt(np.asarray(jnp.sum(R * R, axis=(0, 2)))) / max(ynorm, 1e-300)
        stalled = new[todo] > 0.5 * res[todo]
        res = new
        if np.all(stalled | (res[todo] <= tol)) and np.any(stalled & (res[todo] > tol)):
            break
    info = {"iterations": its.tolist(), "residuals": res.tolist(), "tol": tol, "converged": bool(np.all(res <= tol)),
            "rounds": rounds, "rank": pre.rank, "precision": precision, "cube": op.cube, "block": [op.B, op.C],
            "max_iter": max_iter, "passes": passes, "float64_passes": rounds, "preconditioner_s": t_pre,
            "iterations_s": float(np.sum(iter_s)), "iteration_s_median": float(np.median(iter_s)) if iter_s else 0.0,
            "solve_s": time.perf_counter() - t0}
    if not info["converged"]:
        warnings.warn(
            f"conjugate gradients did not reach the relative residual tol={tol:g}: residuals "
            f"{', '.join(f'{v:.3g}' for v in res)} for the ridges {', '.join(f'{v:.3g}' for v in rid)} after "
            f"{', '.join(map(str, its))} iterations (max_iter={max_iter}); raise max_iter or rank, or use solver='dense'",
            KernelSolveWarning, stacklevel=3)
    return A, KA, info


def _phys_bytes() -> float:
    mem = host_memory_bytes()
    return math.inf if mem is None else float(mem)


def choose_solver(n: int, kernel_fn=None, t=None) -> str:
    """What ``solver='auto'`` picks for ``n`` training points: ``'cg'`` (matrix-free) for an exact
    :class:`KernelFn` in kernel ridge (``t is None``) when ``n > DENSE_MAX_N`` or the dense path's
    two float64 Grams (``16 n^2`` bytes) exceed half the physical memory; else ``'dense'``."""
    n = check_int("n", n, lo=1)
    big = n > DENSE_MAX_N or 16.0 * n * n > 0.5 * _phys_bytes()
    return "cg" if big and t is None and (kernel_fn is None or isinstance(kernel_fn, KernelFn)) else "dense"


def _cg_fit_predict(kfn: KernelFn, ds: dict, lams, get: str, *, tol, rank, max_iter, precision, block):
    xtr, ytr = ds["x_train"], ds["y_train"]
    with x64():
        op = _Operator(kfn, get, xtr, block)
        diag = np.asarray(op.diag, np.float64)
        if np.any(diag < 0):
            raise ValueError(f"kernel_fn has a negative diagonal entry ({diag.min():.3g}): not positive semi-definite")
        scale = float(np.mean(diag))
        ridge_abs = [lam * scale for lam in lams]
        A, KA, info = _cg_solve(op, ytr, ridge_abs, tol=tol, rank=rank, max_iter=max_iter, precision=precision)
        n, L, k = A.shape
        pred = {"train": np.asarray(KA, np.float64).transpose(1, 0, 2)}
        nv = ds["x_val"].shape[0]
        both = np.asarray(op.cross(np.concatenate([ds["x_val"], ds["x_test"]]), A.reshape(n, L * k)), np.float64)
        both = both.reshape(-1, L, k).transpose(1, 0, 2)
        pred["val"], pred["test"] = both[:, :nv], both[:, nv:]
    return pred, ridge_abs, scale, info
