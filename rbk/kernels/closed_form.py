r"""The one closed-form engine: exact NNGP / NTK of a described architecture, one block at a time.

Every exact kernel of rbk (the named ``2nn`` / ``3nn`` / ``3resnet``, the deep quadratic networks of
the hierarchy experiments) is this recursion applied to an :class:`rbk.kernels.ArchDescription`
(``docs/kernels.md``), with a table of Gaussian moments per activation.

Layer ``l`` (1-based; 0 is the input) reads the post-activations ``phi_j`` of the layers ``j`` in
``inputs``: ``h_l = e_l sum_j W_std/sqrt(fan_j) phi_j W_{l,j} + b_std b_l`` (``e_l = 1/sqrt(#inputs)``
when ``normalize_edges``, else 1; ``phi_0 = x``). A head reads a sum of terms ``(layer, 'pre' | 'post')``
through one read-out ``W_std/sqrt(m) (sum of terms) A``; the output is the sum of the heads. In the
infinite-width limit the pre-activations of different layers are independent centred Gaussian
processes, so for a pair of inputs, with ``S_l`` the pre-activation covariance, ``K_l = E[phi phi']``,
``D_l = E[phi' phi'']`` (derivatives) and ``M_l = E[phi]``, ``sw2 = W_std**2``, ``sb2 = b_std**2``::

    S_l   = e_l^2 sum_{j in inputs_l} sw2 K_j + sb2              (K_0 = x.x'/d)
    NNGP  = sw2 sum_heads ( sum_t C_t + sum_{t != t'} M_t(x) M_t'(x') )   (C = K_l post, S_l pre; M_pre = 0)
    B_l   = sw2 (#post-terms of l) D_l + sw2 (#pre-terms of l) + sum_{k: l in inputs_k} e_k^2 sw2 D_l B_k
    NTK   = sum_l (w_l e_l^2 sum_j sw2 K_j + b_l sb2) B_l + sum_h r_h NNGP_h

(``B_l``: the backward kernel, ``sum_i E[d out/d h_li (x) d out/d h_li (x')]``; ``w_l``, ``b_l``,
``r_h``: the rates of layer ``l``'s weights and bias and of head ``h``'s read-out, 0 = frozen.)
For ReLU, with ``cos t = S / sqrt(q q')`` (``q = S(x, x)``, ``q' = S(x', x')``)::

    K = sqrt(q q')/(2 pi) (sin t + (pi - t) cos t),   D = (pi - t)/(2 pi),   M = sqrt(q / (2 pi))
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

_TWO_PI = 2.0 * math.pi


def relu_moments(qa, qb, s):
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


def poly2_moments(a: float, b: float, c: float) -> Callable:
    """Moments of ``sigma(u) = a u^2 + b u + c`` (Isserlis: ``E[u^2 v^2] = q q' + 2 s^2``), as :func:`relu_moments`."""

    def table(qa, qb, s):
        k = a * a * (qa * qb + 2.0 * s * s) + a * c * (qa + qb) + b * b * s + c * c
        kd = 4.0 * a * a * s + b * b
        return k, kd

    return table


class GaussianMoments(NamedTuple):
    """The Gaussian moments of one activation ``phi`` that the recursion needs, ``u ~ N(0, q)``."""

    pair: Callable  #: ``(qa, qb, s) -> (E[phi(u) phi(v)], E[phi'(u) phi'(v)])``, ``(u, v)`` of covariance ``s``
    mean: Callable  #: ``q -> E[phi(u)]``
    second: Callable  #: ``q -> E[phi(u)^2]`` (``pair(q, q, q)[0]``, in closed form where it is simpler)


def _poly2(a: float, b: float, c: float, mean: Callable) -> GaussianMoments:
    pair = poly2_moments(a, b, c)
    return GaussianMoments(pair, mean, lambda q: pair(q, q, q)[0])


#: Activation name -> its :class:`GaussianMoments`.
GAUSSIAN_MOMENTS: dict[str, GaussianMoments] = {
    "relu": GaussianMoments(relu_moments, lambda q: jnp.sqrt(q / _TWO_PI), lambda q: q / 2),
    "square": _poly2(1.0, 0.0, 0.0, lambda q: q),
    "hermite": _poly2(1.0 / math.sqrt(2.0), 0.0, -1.0 / math.sqrt(2.0), lambda q: (q - 1.0) / math.sqrt(2.0)),
}


def closed_form(x1, x2, W_std, b_std, weight_rates, bias_rates, head_rates, *, desc, diag):
    """One block ``(nngp, ntk)``, each ``(n1, n2)``, of the described architecture ``desc`` (traced under x64).

    ``weight_rates``, ``bias_rates``: one per layer; ``head_rates``: one per head (arrays, so that
    every weighting of one description shares a compilation). ``diag``: ``x1`` is ``x2`` (a
    diagonal block), whose diagonal covariances are then exactly the variances (angle exactly 0).
    """
    d = x1.shape[1]
    sw2, sb2 = W_std * W_std, b_std * b_std
    eye = jnp.eye(x1.shape[0], x2.shape[0], dtype=bool) if diag else None
    # post-activation kernels K_j(x, x') and their weighted diagonals sw2 K_j(x, x), sw2 K_j(x', x');
    # layer 0 = input (its diagonals scaled as sw2 |x|^2 / d)
    K = {0: (x1 @ x2.T) / d}
    Wa = {0: sw2 * jnp.sum(x1 * x1, axis=1, keepdims=True) / d}
    Wb = {0: sw2 * jnp.sum(x2 * x2, axis=1, keepdims=True).T / d}
    S, D, Ma, Mb, weight = {}, {}, {}, {}, {}
    for l, ins in enumerate(desc.inputs, start=1):
        e2 = 1.0 / len(ins) if desc.normalize_edges else 1.0
        weight[l] = e2 * sum(sw2 * K[j] for j in ins)
        qa = e2 * sum(Wa[j] for j in ins) + sb2
        qb = e2 * sum(Wb[j] for j in ins) + sb2
        s = weight[l] + sb2
        S[l] = jnp.where(eye, jnp.sqrt(qa * qb), s) if diag else s
        act = GAUSSIAN_MOMENTS[desc.activations[l - 1]]
        K[l], D[l] = act.pair(qa, qb, S[l])
        Wa[l], Wb[l] = sw2 * act.second(qa), sw2 * act.second(qb)
        Ma[l], Mb[l] = act.mean(qa), act.mean(qb)
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
    ntk = 0.0
    for l in range(1, desc.n_layers + 1):
        ntk = ntk + weight_rates[l - 1] * (weight[l] * B[l]) + bias_rates[l - 1] * (sb2 * B[l])
    ntk = ntk + sum(head_rates[i] * nngp_heads[i] for i in range(len(desc.heads)))
    return nngp, ntk


#: :func:`closed_form` compiled (``desc`` and ``diag`` static).
closed_form_jit = jax.jit(closed_form, static_argnames=("desc", "diag"))
