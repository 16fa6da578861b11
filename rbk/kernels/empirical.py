"""Empirical (finite-width) NNGP / NTK of a drawn network, from ``jax.vjp`` / ``jax.jvp`` of ``model.apply``."""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rbk._checks import check_choice, check_int
from rbk.kernels.assemble import blocks, bucket, pad_rows
from rbk.kernels.checks import check_get, check_model_params, check_rates, check_trainable, check_x, pack_kernels, x64
from rbk.kernels.descriptions import LAYERS
from rbk.models import FROZEN, Model

#: ``outputs`` of an empirical kernel: the output-averaged ``(n1, n2)`` or the full ``(n1, n2, k, k)``.
OUTPUTS = ("trace", "full")


def empirical_block(params, x1, xs, outs, rates, *, model, names, with_ntk):
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


#: :func:`empirical_block` compiled (``model``, ``names``, ``with_ntk`` static).
empirical_block_jit = jax.jit(empirical_block, static_argnames=("model", "names", "with_ntk"))


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
        gets, single = check_get(get)
        x1, x2 = check_x(x1, x2)
        params = check_model_params(self.model, params)
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
        return pack_kernels({"ntk": ntk, "nngp": nngp}, gets, single)

    def _kernel(self, p64, x1, x2, names, rvec, size, with_ntk):
        k = self.model.k
        n1, n2 = x1.shape[0], x2.shape[0]
        # tangent pairs (point j, output a), a fastest
        pj = np.repeat(np.arange(n2), k)
        pa = np.tile(np.arange(k), n2)
        T = n2 * k
        fit = max(1, self.max_tangent_bytes // (16 * size))  # gradients and rate-scaled tangents
        bt = min(1 << (fit.bit_length() - 1), 1 << (T - 1).bit_length())  # powers of two: few shapes
        b1 = bucket(n1, self.block_size)
        shape = (n1, n2, k, k) if self.outputs == "full" else (n1, n2)
        res = {"ntk": np.zeros(shape) if with_ntk else None, "nngp": np.zeros(shape)}
        for t0 in range(0, T, bt):
            t1 = min(t0 + bt, T)
            idx = np.concatenate([np.arange(t0, t1), np.full(bt - (t1 - t0), t0)])
            xs = jnp.asarray(x2[pj[idx]])
            outs = jnp.asarray(pa[idx])
            js, as_ = pj[t0:t1], pa[t0:t1]
            for i0, i1 in blocks(n1, b1):
                xb1 = jnp.asarray(pad_rows(x1[i0:i1], b1))
                got = empirical_block_jit(p64, xb1, xs, outs, rvec, model=self.model, names=names, with_ntk=with_ntk)
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
        trainable = check_trainable(trainable, groups, model.arch, "labels")
    rates = check_rates(layer_rates, trainable if trainable is not None else groups)
    check_choice("outputs", outputs, OUTPUTS)
    max_tangent_bytes = check_int("max_tangent_bytes", max_tangent_bytes, lo=1)
    block_size = check_int("block_size", block_size, lo=1)
    return EmpiricalKernelFn(model, trainable, tuple(sorted(rates.items())), outputs, max_tangent_bytes, block_size)


# ----------------------------------------------------------------------------- linear algebra
