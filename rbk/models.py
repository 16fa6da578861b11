"""The learners of Allen-Zhu & Li (2019) (``docs/paper.md``) as pure ``init`` / ``apply`` pairs over plain pytrees.

Architectures (``sigma`` = ReLU, width ``m``)::

    2nn      out(x) = A sigma(W x + b1)
    3nn      out(x) = A sigma(U sigma(W x + b1) + b2)
    3resnet  out(x) = A ( sigma(W x + b1) + sigma(U sigma(W x + b1) + b2) )

Parameters are a dict of arrays: ``W (d, m)``, ``b1 (m,)``, ``U (m, m)``, ``b2 (m,)``
(three-layer nets only) and ``A (m, k)``; inputs are rows, so ``W x`` is ``x @ W``.

Parameterizations
-----------------
``standard`` (default for training): ``h = x @ W + b``; He-normal ``W`` and ``U``
(variance ``2 / fan_in``; ``U`` further scaled by ``u_scale``, default 0.1 in the ResNet
and 1 in ``3nn``), ``A`` with variance ``1 / m``, zero biases.

``ntk`` (what :mod:`rbk.kernels` describes exactly, neural-tangents' meaning of
``W_std`` and ``b_std``): every entry ``N(0, 1)`` and ``h = W_std / sqrt(fan_in) * x @ W +
b_std * b``; the output layer has no bias.

Variants
--------
``practical`` (default): every listed parameter is trained (``train_output=False``
freezes ``A``).
``theory`` (Theorem 1's learner): the random initialisation ``W0``, ``U0``, ``A``, ``b1``,
``b2`` is fixed and SGD moves zero-initialised offsets ``dW``, ``dU``, so the network uses
``W0 + dW`` and ``U0 + dU``. Per-layer learning rates and weight decays are set in
:class:`rbk.train.TrainConfig` (``layer_lr``, ``layer_wd``) by label.

``Model.labels(params)`` gives each leaf its optimiser label: ``'W'``, ``'b1'``, ``'U'``,
``'b2'``, ``'A'`` for trained leaves and ``'frozen'`` for the others.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from rbk._checks import check_choice, check_int, check_key, check_real

ARCHS = ("2nn", "3nn", "3resnet")
PARAMETERIZATIONS = ("standard", "ntk")
VARIANTS = ("practical", "theory")
FROZEN = "frozen"


@dataclasses.dataclass(frozen=True)
class Model:
    """An architecture at a given width, parameterization and variant (hashable, static).

    Build it with :func:`get_model` (which validates the arguments).
    """

    arch: str
    width: int
    d: int
    k: int
    parameterization: str = "standard"
    variant: str = "practical"
    train_output: bool = True
    W_std: float = math.sqrt(2.0)
    b_std: float = 0.1
    u_scale: float | None = None

    # ------------------------------------------------------------------ structure
    @property
    def depth(self) -> int:
        return 2 if self.arch == "2nn" else 3

    @property
    def _u_scale(self) -> float:
        if self.u_scale is not None:
            return self.u_scale
        return 0.1 if self.arch == "3resnet" else 1.0

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        m = self.width
        shapes = {"W": (self.d, m), "b1": (m,)}
        if self.depth == 3:
            shapes.update({"U": (m, m), "b2": (m,)})
        shapes["A"] = (m, self.k)
        return shapes

    # ------------------------------------------------------------------ init
    def init(self, key: jax.Array) -> dict:
        """Random parameters (a dict pytree)."""
        check_key("key", key)
        shapes = self._shapes()
        keys = dict(zip(shapes, jax.random.split(key, len(shapes))))
        p = {}
        for name, shape in shapes.items():
            z = jax.random.normal(keys[name], shape, jnp.float32)
            if self.parameterization == "ntk":
                p[name] = z
            elif name.startswith("b"):
                p[name] = jnp.zeros(shape, jnp.float32)
            elif name == "W":
                p[name] = z * math.sqrt(2.0 / self.d)
            elif name == "U":
                p[name] = z * math.sqrt(2.0 / self.width) * self._u_scale
            else:  # A
                p[name] = z * math.sqrt(1.0 / self.width)
        if self.variant == "theory":
            p["W0"] = p.pop("W")
            p["dW"] = jnp.zeros_like(p["W0"])
            if self.depth == 3:
                p["U0"] = p.pop("U")
                p["dU"] = jnp.zeros_like(p["U0"])
        return p

    def labels(self, params: dict) -> dict:
        """Optimiser label of each leaf (``'frozen'`` for leaves that never move)."""
        if self.variant == "theory":
            return {name: {"dW": "W", "dU": "U"}.get(name, FROZEN) for name in params}
        return {name: (FROZEN if name == "A" and not self.train_output else name) for name in params}

    # ------------------------------------------------------------------ apply
    def effective(self, params: dict) -> dict:
        """The weights the network computes with (``W0 + dW`` etc. in the theory variant)."""
        if self.variant != "theory":
            return params
        eff = {n: v for n, v in params.items() if n not in ("W0", "dW", "U0", "dU")}
        eff["W"] = params["W0"] + params["dW"]
        if self.depth == 3:
            eff["U"] = params["U0"] + params["dU"]
        return eff

    def features(self, params: dict, x: jax.Array) -> jax.Array:
        """The last hidden representation, the input of ``A``: ``(n, m)``."""
        if jnp.shape(x)[-1:] != (self.d,):  # static: free under jit
            raise ValueError(f"x must have shape (n, d={self.d}) (the model's input dimension), got {jnp.shape(x)}")
        p = self.effective(params)
        ntk = self.parameterization == "ntk"
        ws = self.W_std / math.sqrt(self.d) if ntk else 1.0
        bs = self.b_std if ntk else 1.0
        a1 = jax.nn.relu(ws * (x @ p["W"]) + bs * p["b1"])
        if self.depth == 2:
            return a1
        us = self.W_std / math.sqrt(self.width) if ntk else 1.0
        a2 = jax.nn.relu(us * (a1 @ p["U"]) + bs * p["b2"])
        return a1 + a2 if self.arch == "3resnet" else a2

    def apply(self, params: dict, x: jax.Array) -> jax.Array:
        """Network output ``(n, k)`` for inputs ``x (n, d)``."""
        p = self.effective(params)
        h = self.features(params, x)
        scale = self.W_std / math.sqrt(self.width) if self.parameterization == "ntk" else 1.0
        return scale * (h @ p["A"])

    # ------------------------------------------------------------------ the third view
    def __getattr__(self, name: str):
        # the exact kernels of a model are rbk.kernels' business (rbk.kernels imports rbk.models, never
        # the reverse): a clear pointer for code written against the former method ``Model.kernel_fn``
        if name == "kernel_fn":
            raise AttributeError(f"{type(self).__name__}.kernel_fn() was removed: "
                                 "use rbk.kernels.model_kernel_fn(model)")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def describe(self) -> dict:
        out = dataclasses.asdict(self)
        out["u_scale"] = self._u_scale
        return out


def get_model(
    arch: str,
    width: int,
    d: int,
    k: int,
    *,
    parameterization: str = "standard",
    variant: str = "practical",
    train_output: bool = True,
    W_std: float = math.sqrt(2.0),
    b_std: float = 0.1,
    u_scale: float | None = None,
) -> Model:
    """Validated constructor of :class:`Model` (raises ``ValueError`` naming the bad argument)."""
    check_choice("arch", arch, ARCHS)
    width = check_int("width", width, lo=1)
    d = check_int("d", d, lo=1)
    k = check_int("k", k, lo=1)
    check_choice("parameterization", parameterization, PARAMETERIZATIONS)
    check_choice("variant", variant, VARIANTS)
    if not isinstance(train_output, bool):
        raise ValueError(f"train_output must be True or False, got {train_output!r}")
    W_std = check_real("W_std", W_std, lo=0.0, lo_open=True)
    b_std = check_real("b_std", b_std, lo=0.0)
    if u_scale is not None:
        u_scale = check_real("u_scale", u_scale, lo=0.0, lo_open=True)
    return Model(arch, width, d, k, parameterization, variant, train_output, W_std, b_std, u_scale)


def param_count(model: Model) -> int:
    if not isinstance(model, Model):
        raise ValueError(f"model must be an rbk.models.Model (use get_model), got {type(model).__name__}")
    return sum(math.prod(s) for s in model._shapes().values())


def flops_per_example(model: Model) -> int:
    """Training FLOPs per example: ``6 x`` multiply-adds of the forward pass (2 forward, 4 backward)."""
    m = model.width
    macs = model.d * m + m * model.k + (m * m if model.depth == 3 else 0)
    return 6 * macs


# --------------------------------------------------------------------------- subspaces


def _orth(a) -> np.ndarray:
    """An orthonormal basis of the column span of ``a`` (SVD; rank tolerance as ``numpy.linalg.matrix_rank``)."""
    a = np.asarray(a, np.float64)
    if a.ndim != 2:
        raise ValueError(f"a subspace must be given as a matrix (n, k) of spanning columns, got shape {a.shape}")
    u, sv, _ = np.linalg.svd(a, full_matrices=False)
    tol = (sv[0] if sv.size else 0.0) * max(a.shape) * np.finfo(np.float64).eps
    return u[:, sv > tol] if sv.size and sv[0] > 0 else u[:, :0]


def subspace_angles(a, b) -> np.ndarray:
    """Principal angles (radians, ascending, in ``[0, pi/2]``) between the column spans of ``a (n, p)``
    and ``b (n, q)``: ``min(rank a, rank b)`` of them.

    With orthonormal bases ``Q_a``, ``Q_b``, the cosines are the singular values of ``Q_a^T Q_b``
    (Bjorck & Golub 1973); angles below ``pi/4`` are taken from the sines instead, the singular
    values of ``Q_b - Q_a Q_a^T Q_b`` (Knyazev & Argentati 2002), which keeps small angles accurate
    (``arccos`` of a cosine near 1 loses half the digits). Float64, on the host.
    """
    qa, qb = _orth(a), _orth(b)
    if qa.shape[0] != qb.shape[0]:
        raise ValueError(f"the two subspaces must live in the same space, got {qa.shape[0]} and {qb.shape[0]} rows")
    if qa.shape[1] < qb.shape[1]:
        qa, qb = qb, qa
    if qb.shape[1] == 0:
        return np.zeros(0)
    cos = np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), 0.0, 1.0)  # descending: angles ascending
    sin = np.clip(np.sort(np.linalg.svd(qb - qa @ (qa.T @ qb), compute_uv=False)), 0.0, 1.0)
    return np.where(cos * cos >= 0.5, np.arcsin(sin), np.arccos(cos))


def span_overlap(a, b) -> float:
    """Mean ``cos^2`` of the principal angles between the column spans of ``a`` and ``b``
    (:func:`subspace_angles`): ``|Q_a^T Q_b|_F^2 / min(p, q)``. 1 when one span contains the other,
    0 when they are orthogonal; for a fixed ``p``-dim span and a uniformly random ``q``-dim span of
    ``R^n`` its expectation is ``max(p, q) / n`` (``E[P_b] = (q / n) I`` for the projector onto a
    random span, so ``E|Q_a^T Q_b|_F^2 = p q / n``)."""
    ang = subspace_angles(a, b)
    return float(np.mean(np.cos(ang) ** 2)) if ang.size else float("nan")


# --------------------------------------------------------------------------- deep quadratic networks

DEEP_ACTIVATIONS = ("square", "hermite", "truncated")
DEEP_READOUTS = ("post", "pre")
HEAD_INITS = ("zero", "random")


#: ``(model.level_features(params, x), the reference's levels at x)``, compiled once per model
#: (``jax.jit`` of a bound method would trace anew at each call).
_levels_pair = jax.jit(lambda model, params, x: (model.level_features(params, x), model.reference.parts["levels"](x)),
                       static_argnums=0)


def level_label(level: int) -> str:
    """Optimiser label of every parameter of level ``level`` of a :class:`DeepQuad` (``'L1'``, ...)."""
    return f"L{level}"


@dataclasses.dataclass(frozen=True)
class DeepQuad(Model):
    """The learner of the hierarchy experiments: an ``L``-level network with quadratic activations.

    Levels mirror :func:`rbk.targets.hierarchy`: ``h_1 = x W_1 + b_1`` (linear), ``h_2 = sigma(h_1) W_2
    + b_2``, and for ``l >= 3`` ``h_l = (sigma(h_{l-1}) W_l + sigma(h_{l-2}) V_l) / sqrt(2) + b_l``
    (``skip=False``: no ``V_l``, no ``1/sqrt(2)``); the output is read from every level,
    ``out = sum_l sigma(h_l) A_l`` (``readout='post'``, the analogue of the target's
    ``Sum(sigma(S_l))``) or ``sum_l h_l A_l`` (``'pre'``). Width ``m`` at every level.

    Activations: ``'square'`` ``u^2``; ``'hermite'`` ``(u^2 - 1)/sqrt(2)`` (default: mean 0 and
    variance 1 for ``u ~ N(0, 1)``, so the forward variances stay 1 at initialisation instead of
    growing like ``3^(2^l)``); ``'truncated'``: the Hermite form with ``u^2`` continued linearly
    (``2 B |u| - B^2``) beyond ``|u| > clip`` - bounded gradients, the stabilised quadratic
    (rbk's choice of truncation, default ``clip = 2``: in the Experiment 4 sizing, ``clip = 4``
    diverged at learning rates >= 5e-4 where 2 trained at 3e-3; its kernel is taken as that of
    ``'hermite'``, which it equals for ``|u| <= clip``).

    Parameterizations as :class:`Model` (``standard``: weights ``N(0, W_std^2 / fan_in)``,
    ``ntk``: ``N(0, 1)`` and ``W_std / sqrt(fan_in)`` in the forward pass). Read-outs start at 0
    (``head_init='zero'``, default for training: untrained levels add nothing to the output) or
    random (``'random'``: what the exact kernels describe). Every parameter of level ``l`` has
    the optimiser label ``'L<l>'`` (:func:`level_label`), so a stage schedule
    (:func:`rbk.train.config` ``phases``) trains levels jointly, one after another, or any mix.

    ``reference``: optional :class:`rbk.targets.Target` of the hierarchy family; when set,
    :meth:`probe` (evaluated by :func:`rbk.train.train` at each recorded epoch) returns the
    statistics of every level's feature quality (:meth:`feature_quality_from_stats`), and
    :meth:`level_angles` / :meth:`subspace_quality` / :meth:`input_angles` compare the spans the
    levels learned with the teacher's (principal angles, not saturated by the width). Build with
    :func:`get_deepquad`.

    ``stop_gradient``: the levels ``j`` (sorted, in ``1 .. L-1``) whose output ``sigma(h_j)``
    reaches the levels above only through ``jax.lax.stop_gradient`` (the regime ``'stopgrad'``
    of :func:`rbk.train.regime_model` detaches every level). The forward pass is unchanged
    (predictions are bit-identical); only the backward path from the levels above into levels
    ``<= j`` is cut: with every level detached, level ``l``'s parameters receive gradient only
    through its own read-out term ``sigma(h_l) A_l`` (the residual they see still holds every
    level's output). The exact kernels (:func:`rbk.kernels.model_kernel_fn`) ignore it.
    """

    levels: int = 3
    activation: str = "hermite"
    clip: float = 2.0
    skip: bool = True
    readout: str = "post"
    head_init: str = "zero"
    reference: object = None
    probe_ridge: float = 1e-3
    stop_gradient: tuple = ()

    @property
    def depth(self) -> int:
        return self.levels

    def _inputs(self, level: int) -> tuple[int, ...]:
        if level == 1:
            return (0,)
        return (level - 1, level - 2) if self.skip and level >= 3 else (level - 1,)

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        m = self.width
        shapes = {}
        for l in range(1, self.levels + 1):
            shapes[f"W{l}"] = (self.d if l == 1 else m, m)
            if self.skip and l >= 3:
                shapes[f"V{l}"] = (m, m)
            shapes[f"b{l}"] = (m,)
            shapes[f"A{l}"] = (m, self.k)
        return shapes

    @staticmethod
    def _level_of(name: str) -> int:
        return int(name[1:])

    def init(self, key: jax.Array) -> dict:
        shapes = self._shapes()
        keys = dict(zip(shapes, jax.random.split(key, len(shapes))))
        p = {}
        for name, shape in shapes.items():
            z = jax.random.normal(keys[name], shape, jnp.float32)
            if name[0] == "b":
                p[name] = z if self.parameterization == "ntk" else jnp.zeros(shape, jnp.float32)
            elif name[0] == "A" and self.head_init == "zero":
                p[name] = jnp.zeros(shape, jnp.float32)
            elif self.parameterization == "ntk":
                p[name] = z
            else:
                p[name] = z * (self.W_std / math.sqrt(shape[0]))
        return p

    def labels(self, params: dict) -> dict:
        return {name: level_label(self._level_of(name)) for name in params}

    def effective(self, params: dict) -> dict:
        return params

    def sigma(self, u):
        if self.activation == "square":
            return u * u
        sq = u * u
        if self.activation == "truncated":
            a = jnp.abs(u)
            sq = jnp.where(a <= self.clip, sq, 2.0 * self.clip * a - self.clip**2)
        return (sq - 1.0) / math.sqrt(2.0)

    def level_features(self, params: dict, x: jax.Array) -> list:
        """Pre-activations ``[h_1, ..., h_L]``, each ``(n, m)``. A level ``j`` in ``stop_gradient``
        feeds the levels above with ``stop_gradient(sigma(h_j))`` (same values; its own ``h_j``,
        returned here and read by its head, keeps its gradient)."""
        ntk = self.parameterization == "ntk"
        bs = self.b_std if ntk else 1.0
        hs, posts = [], [x]
        for l in range(1, self.levels + 1):
            ins = self._inputs(l)
            acc = 0.0
            for j in ins:
                w = params[f"W{l}"] if j == l - 1 else params[f"V{l}"]
                inp = jax.lax.stop_gradient(posts[j]) if j in self.stop_gradient else posts[j]
                fan = inp.shape[-1]
                acc = acc + (self.W_std / math.sqrt(fan) if ntk else 1.0) * (inp @ w)
            h = acc / math.sqrt(len(ins)) + bs * params[f"b{l}"]
            hs.append(h)
            posts.append(self.sigma(h))
        return hs

    def features(self, params: dict, x: jax.Array) -> jax.Array:
        """What the heads read, concatenated over levels: ``(n, L m)``."""
        hs = self.level_features(params, x)
        return jnp.concatenate([self.sigma(h) if self.readout == "post" else h for h in hs], axis=-1)

    def apply(self, params: dict, x: jax.Array) -> jax.Array:
        scale = self.W_std / math.sqrt(self.width) if self.parameterization == "ntk" else 1.0
        out = 0.0
        for l, h in enumerate(self.level_features(params, x), start=1):
            out = out + (self.sigma(h) if self.readout == "post" else h) @ params[f"A{l}"]
        return scale * out

    # ------------------------------------------------------------------ the mechanism
    def probe_stats(self, params: dict, x: jax.Array) -> jax.Array:
        """Sufficient statistics of the feature-quality read-outs (matrix products only, cheap to
        compile inside training): per level, with ``h = h_l``, ``s = S_l`` of the reference target,
        fit split = first half of ``x``, evaluation split = second half, both centred by the fit
        means: ``H_f^T H_f``, ``H_f^T S_f``, ``H_e^T H_e``, ``H_e^T S_e``, ``|S_e|^2``; then the
        evaluation split centred by its own means, ``H_c^T H_c``, ``H_c^T S_c``, ``S_c^T S_c``;
        flattened and concatenated. :meth:`feature_quality_from_stats` turns them into the ridge
        quality, :meth:`subspace_quality_from_stats` into the span quality."""
        levels = self.reference.parts["levels"](x)
        n = x.shape[0] // 2
        parts = []
        for h, s in zip(self.level_features(params, x), levels):
            hm, sm = jnp.mean(h[:n], 0), jnp.mean(s[:n], 0)
            hf, sf, he, se = h[:n] - hm, s[:n] - sm, h[n : 2 * n] - hm, s[n : 2 * n] - sm
            hc, sc = he - jnp.mean(he, 0), se - jnp.mean(se, 0)
            parts += [(hf.T @ hf).ravel(), (hf.T @ sf).ravel(), (he.T @ he).ravel(), (he.T @ se).ravel(),
                      jnp.sum(se * se)[None], (hc.T @ hc).ravel(), (hc.T @ sc).ravel(), (sc.T @ sc).ravel()]
        return jnp.concatenate(parts)

    def _stat_blocks(self, stats) -> list[list[np.ndarray]]:
        """:meth:`probe_stats` split per level into its eight matrices (float64, leading axes kept)."""
        stats = np.asarray(stats, np.float64)
        m, lead = self.width, stats.shape[:-1]
        per = [((m, m), (m, k), (m, m), (m, k), (1,), (m, m), (m, k), (k, k)) for k in self.reference.info["widths"]]
        size = sum(int(np.prod(sh)) for shapes in per for sh in shapes)
        if stats.shape[-1] != size:
            raise ValueError(f"stats must hold {size} numbers per record (this model's probe_stats), got {stats.shape[-1]}")
        out, off = [], 0
        for shapes in per:
            blocks = []
            for shape in shapes:
                size = int(np.prod(shape))
                blocks.append(stats[..., off : off + size].reshape(lead + shape))
                off += size
            out.append(blocks)
        return out

    def feature_quality_from_stats(self, stats) -> np.ndarray:
        """Per level ``l``: held-out fraction of the reference's ``S_l`` variance (pooled over its
        units) explained by the best ridge read-out of ``h_l`` (ridge ``probe_ridge * mean diag
        H_f^T H_f``, with intercept); ``stats (..., P)`` from :meth:`probe_stats` (host, float64).
        Returns ``(..., L)``; can be negative for useless features."""
        m = self.width
        out = []
        for G, C, Ge, Ce, see, *_ in self._stat_blocks(stats):
            see = see[..., 0]
            lam = self.probe_ridge * np.trace(G, axis1=-2, axis2=-1) / m + 1e-12
            B = np.linalg.solve(G + lam[..., None, None] * np.eye(m), C)
            err = see - 2 * np.einsum("...ij,...ij->...", B, Ce) + np.einsum("...ij,...ik,...kj->...", B, Ge, B)
            out.append(1.0 - err / see)
        return np.stack(out, axis=-1)

    def subspace_quality_from_stats(self, stats) -> np.ndarray:
        """Per level ``l``: :meth:`subspace_quality` from :meth:`probe_stats` (the evaluation half of
        the probe's points, centred on itself): the mean ``cos^2`` of the principal angles between
        the span of the teacher's ``S_l`` units and that of the top ``k_l`` principal components of
        ``h_l``, as functions on those points. With ``H^T H = V diag(w) V^T`` the components are
        ``H V_k w_k^{-1/2}`` and, with ``Q = S (S^T S)^{-1/2}``, the cosines are the singular values
        of ``(S^T S)^{-1/2} S^T H V_k w_k^{-1/2}``: only the three Gram blocks are needed. Components
        and teacher directions below round-off (``1e-10`` of the largest eigenvalue) are dropped,
        as :func:`subspace_angles` drops a rank-deficient basis. ``(..., L)``, host float64."""
        out = []
        for *_, G, C, T in self._stat_blocks(stats):
            k = T.shape[-1]
            bad = ~(np.isfinite(G).all((-2, -1)) & np.isfinite(C).all((-2, -1)) & np.isfinite(T).all((-2, -1)))
            if bad.any():  # a diverged member's record: NaN quality, and the others computed on
                G, C, T = (np.where(bad[..., None, None], 0.0, a) for a in (G, C, T))
            w, V = np.linalg.eigh(G)  # ascending
            w, V = w[..., ::-1][..., :k], V[..., ::-1][..., :k]
            keep_h = w > 1e-10 * np.maximum(w[..., :1], 1e-300)
            t, P = np.linalg.eigh(T)
            keep_s = t > 1e-10 * np.maximum(t[..., -1:], 1e-300)
            inv_h = np.where(keep_h, 1.0 / np.sqrt(np.where(keep_h, w, 1.0)), 0.0)
            inv_s = np.where(keep_s, 1.0 / np.sqrt(np.where(keep_s, t, 1.0)), 0.0)
            # cosines: singular values of P diag(inv_s) P^T C^T V diag(inv_h); |.|_F^2 is basis-free
            M = np.swapaxes(P, -1, -2) @ np.swapaxes(C, -1, -2) @ V
            M = inv_s[..., :, None] * M * inv_h[..., None, :]
            r = np.minimum(keep_h.sum(-1), keep_s.sum(-1))
            out.append(np.where((r > 0) & ~bad, np.sum(M * M, axis=(-2, -1)) / np.maximum(r, 1), np.nan))
        return np.stack(out, axis=-1)

    def feature_quality(self, params: dict, x) -> np.ndarray:
        """:meth:`feature_quality_from_stats` of ``params`` on the points ``x`` (``(L,)``)."""
        return self.feature_quality_from_stats(jax.jit(self.probe_stats)(params, jnp.asarray(x)))

    # ------------------------------------------------------------------ spans against the teacher's
    def _teacher(self):
        if self.reference is None:
            raise ValueError("the span comparisons need the teacher: build the model with reference= "
                             "(a hierarchy target, rbk.targets.hierarchy)")
        return self.reference

    def level_angles(self, params: dict, x) -> list[np.ndarray]:
        """Per level ``l``: principal angles (:func:`subspace_angles`) between the teacher's level-``l``
        span and the span level ``l`` learned, as functions of ``x``, on the points ``x (n, d)``.

        Teacher's span: the ``k_l`` units of the reference's ``S_l``; learned span: the top ``k_l``
        principal components of the network's ``h_l`` (``min(k_l, m)`` of them; ``k_l``: the rank of
        the teacher's units on ``x``), both centred on ``x`` and compared in ``R^n`` (the empirical
        ``L2`` of the inputs). Unlike the ridge quality
        (:meth:`feature_quality`, which reads ``S_l`` from all ``m`` units and is 1 at level 1
        whenever ``m >= d``), the learned span has the teacher's dimension, so it is not saturated by
        the width: it asks whether the *dominant* ``k_l`` directions of level ``l`` are the teacher's
        (a span hidden in low-variance directions of ``h_l`` does not count). Use ``n >> m`` points
        (a random comparison has an upward bias of order ``k_l / n``). At level 1 with Gaussian
        inputs it tends to :meth:`input_angles` (exact, from the weights) as ``n`` grows.
        ``params``: one member's parameters (no leading axes). Returns ``L`` arrays, ascending.
        """
        self._teacher()
        hs, ss = _levels_pair(self, params, jnp.asarray(x, jnp.float32))
        out = []
        for h, s_ in zip(hs, ss):
            h = np.asarray(h, np.float64)
            s_ = np.asarray(s_, np.float64)
            h = h - h.mean(0)
            s_ = s_ - s_.mean(0)
            u, _, _ = np.linalg.svd(h, full_matrices=False)
            out.append(subspace_angles(s_, u[:, : min(_orth(s_).shape[1], u.shape[1])]))
        return out

    def subspace_quality(self, params: dict, x) -> np.ndarray:
        """Per level: mean ``cos^2`` of :meth:`level_angles` (``(L,)``): 1 when level ``l``'s top
        ``k_l`` principal directions span the teacher's ``S_l``, near 0 for unrelated spans (see
        :func:`span_overlap`). Compare against its value at initialisation, not a formula: the random
        baseline of a level ``>= 2`` depends on the architecture (random polynomial features of the
        same degree overlap ``S_l``'s low-degree parts)."""
        return np.array([float(np.mean(np.cos(a) ** 2)) if a.size else np.nan for a in self.level_angles(params, x)])

    def input_angles(self, params: dict) -> np.ndarray:
        """Level 1 exactly, from the weights: principal angles between the teacher's level-1 span in
        ``R^d`` (the directions ``S_1`` reads, ``span(U^T W_1^T)`` of :func:`rbk.targets.hierarchy`,
        recovered as the Jacobian of the linear map ``x -> S_1``) and the span of the top ``k_1`` left
        singular vectors of the network's ``W_1 (d, m)`` (the input directions it weighs most). With
        Gaussian inputs these are the population values of :meth:`level_angles`' level 1. At a
        Gaussian initialisation ``W_1``'s top span is uniformly random, so the mean ``cos^2`` is
        ``k_1 / d`` in expectation (:func:`span_overlap`). Needs a linear first level
        (``first='linear'``)."""
        teacher = self._teacher()
        if teacher.info.get("first") != "linear":
            raise ValueError("input_angles needs a teacher with a linear first level (first='linear'); "
                             "use level_angles (on points) otherwise")
        s1 = np.asarray(teacher.parts["levels"](jnp.eye(self.d + 1, self.d, -1, jnp.float32))[0], np.float64)
        jac = s1[1:] - s1[0]  # (d, k_1): S_1(e_i) - S_1(0), exact for a linear map
        u, _, _ = np.linalg.svd(np.asarray(params["W1"], np.float64), full_matrices=False)
        return subspace_angles(jac, u[:, : min(_orth(jac).shape[1], u.shape[1])])

    def probe(self, params: dict, data) -> jax.Array:
        """Diagnostics :func:`rbk.train.train` records at each recorded epoch: :meth:`probe_stats` on
        the validation inputs (needs ``reference``; without one, a single NaN)."""
        if self.reference is None:
            return jnp.full((1,), jnp.nan, jnp.float32)
        return self.probe_stats(params, data.x_val)

    def describe(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "reference"}
        out["reference"] = None if self.reference is None else self.reference.name
        out.pop("u_scale", None)
        return out


def get_deepquad(
    width: int,
    d: int,
    k: int = 1,
    *,
    levels: int = 3,
    activation: str = "hermite",
    clip: float = 2.0,
    skip: bool = True,
    readout: str = "post",
    head_init: str | None = None,
    parameterization: str = "standard",
    W_std: float = 1.0,
    b_std: float = 0.0,
    reference=None,
    probe_ridge: float = 1e-3,
    stop_gradient=False,
) -> DeepQuad:
    """Validated constructor of :class:`DeepQuad` (``ValueError`` naming the bad argument).

    ``head_init`` defaults to ``'zero'`` (standard) and ``'random'`` (ntk). ``reference`` must be a
    hierarchy target with ``levels`` levels and ``d`` inputs (mismatched widths are an error).
    ``stop_gradient``: ``False`` (none), ``True`` (every level ``1 .. L-1``) or the levels to detach.
    """
    width = check_int("width", width, lo=1)
    d = check_int("d", d, lo=1)
    k = check_int("k", k, lo=1)
    levels = check_int("levels", levels, lo=1)
    check_choice("activation", activation, DEEP_ACTIVATIONS)
    clip = check_real("clip", clip, lo=1.0)
    if not isinstance(skip, bool):
        raise ValueError(f"skip must be True or False, got {skip!r}")
    check_choice("readout", readout, DEEP_READOUTS)
    check_choice("parameterization", parameterization, PARAMETERIZATIONS)
    head_init = ("zero" if parameterization == "standard" else "random") if head_init is None else head_init
    check_choice("head_init", head_init, HEAD_INITS)
    W_std = check_real("W_std", W_std, lo=0.0, lo_open=True)
    b_std = check_real("b_std", b_std, lo=0.0)
    probe_ridge = check_real("probe_ridge", probe_ridge, lo=0.0, lo_open=True)
    stop_gradient = _stop_levels(stop_gradient, levels)
    if reference is not None:
        info = getattr(reference, "info", {}) or {}
        if info.get("family") != "hierarchy":
            raise ValueError("reference must be a hierarchy target (rbk.targets.hierarchy) or None")
        if info["levels"] != levels or reference.d != d:
            raise ValueError(f"reference must have levels={levels} and d={d} (the model's), got "
                             f"levels={info['levels']} and d={reference.d}")
    return DeepQuad("deepquad", width, d, k, parameterization, "practical", True, W_std, b_std, None, levels,
                    activation, clip, skip, readout, head_init, reference, probe_ridge, stop_gradient)


def _stop_levels(value, levels: int) -> tuple[int, ...]:
    """``stop_gradient`` of :func:`get_deepquad` as the sorted tuple of detached levels."""
    if isinstance(value, bool):
        return tuple(range(1, levels)) if value else ()
    bad = ValueError(f"stop_gradient must be True, False or a list of distinct levels in [1, {levels - 1}] "
                     f"(levels whose output reaches the levels above without gradient), got {value!r}")
    if not isinstance(value, (list, tuple, range)):
        raise bad
    try:
        out = sorted(int(v) for v in value if not isinstance(v, bool) and int(v) == v)
    except (TypeError, ValueError):
        raise bad from None
    if len(out) != len(value) or len(set(out)) != len(out) or any(not 1 <= v < levels for v in out):
        raise bad
    return tuple(out)
