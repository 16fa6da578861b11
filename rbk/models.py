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


# --------------------------------------------------------------------------- deep quadratic networks

DEEP_ACTIVATIONS = ("square", "hermite", "truncated")
DEEP_READOUTS = ("post", "pre")
HEAD_INITS = ("zero", "random")


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
    statistics of every level's feature quality (:meth:`feature_quality_from_stats`). Build with
    :func:`get_deepquad`.
    """

    levels: int = 3
    activation: str = "hermite"
    clip: float = 2.0
    skip: bool = True
    readout: str = "post"
    head_init: str = "zero"
    reference: object = None
    probe_ridge: float = 1e-3

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
        """Pre-activations ``[h_1, ..., h_L]``, each ``(n, m)``."""
        ntk = self.parameterization == "ntk"
        bs = self.b_std if ntk else 1.0
        hs, posts = [], [x]
        for l in range(1, self.levels + 1):
            ins = self._inputs(l)
            acc = 0.0
            for j in ins:
                w = params[f"W{l}"] if j == l - 1 else params[f"V{l}"]
                fan = posts[j].shape[-1]
                acc = acc + (self.W_std / math.sqrt(fan) if ntk else 1.0) * (posts[j] @ w)
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
        means: ``H_f^T H_f``, ``H_f^T S_f``, ``H_e^T H_e``, ``H_e^T S_e``, ``|S_e|^2``, flattened and
        concatenated. :meth:`feature_quality_from_stats` turns them into the quality."""
        levels = self.reference.parts["levels"](x)
        n = x.shape[0] // 2
        parts = []
        for h, s in zip(self.level_features(params, x), levels):
            hm, sm = jnp.mean(h[:n], 0), jnp.mean(s[:n], 0)
            hf, sf, he, se = h[:n] - hm, s[:n] - sm, h[n : 2 * n] - hm, s[n : 2 * n] - sm
            parts += [(hf.T @ hf).ravel(), (hf.T @ sf).ravel(), (he.T @ he).ravel(), (he.T @ se).ravel(),
                      jnp.sum(se * se)[None]]
        return jnp.concatenate(parts)

    def feature_quality_from_stats(self, stats) -> np.ndarray:
        """Per level ``l``: held-out fraction of the reference's ``S_l`` variance (pooled over its
        units) explained by the best ridge read-out of ``h_l`` (ridge ``probe_ridge * mean diag
        H_f^T H_f``, with intercept); ``stats (..., P)`` from :meth:`probe_stats` (host, float64).
        Returns ``(..., L)``; can be negative for useless features."""
        stats = np.asarray(stats, np.float64)
        m = self.width
        ks = self.reference.info["widths"]
        out, off = [], 0
        for k in ks:
            sizes = (m * m, m * k, m * m, m * k, 1)
            blocks = []
            for size in sizes:
                blocks.append(stats[..., off : off + size])
                off += size
            G = blocks[0].reshape(stats.shape[:-1] + (m, m))
            C = blocks[1].reshape(stats.shape[:-1] + (m, k))
            Ge = blocks[2].reshape(stats.shape[:-1] + (m, m))
            Ce = blocks[3].reshape(stats.shape[:-1] + (m, k))
            see = blocks[4][..., 0]
            lam = self.probe_ridge * np.trace(G, axis1=-2, axis2=-1) / m + 1e-12
            B = np.linalg.solve(G + lam[..., None, None] * np.eye(m), C)
            err = see - 2 * np.einsum("...ij,...ij->...", B, Ce) + np.einsum("...ij,...ik,...kj->...", B, Ge, B)
            out.append(1.0 - err / see)
        return np.stack(out, axis=-1)

    def feature_quality(self, params: dict, x) -> np.ndarray:
        """:meth:`feature_quality_from_stats` of ``params`` on the points ``x`` (``(L,)``)."""
        return self.feature_quality_from_stats(jax.jit(self.probe_stats)(params, jnp.asarray(x)))

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
) -> DeepQuad:
    """Validated constructor of :class:`DeepQuad` (``ValueError`` naming the bad argument).

    ``head_init`` defaults to ``'zero'`` (standard) and ``'random'`` (ntk). ``reference`` must be a
    hierarchy target with ``levels`` levels and ``d`` inputs (mismatched widths are an error).
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
    if reference is not None:
        info = getattr(reference, "info", {}) or {}
        if info.get("family") != "hierarchy":
            raise ValueError("reference must be a hierarchy target (rbk.targets.hierarchy) or None")
        if info["levels"] != levels or reference.d != d:
            raise ValueError(f"reference must have levels={levels} and d={d} (the model's), got "
                             f"levels={info['levels']} and d={reference.d}")
    return DeepQuad("deepquad", width, d, k, parameterization, "practical", True, W_std, b_std, None, levels,
                    activation, clip, skip, readout, head_init, reference, probe_ridge)
