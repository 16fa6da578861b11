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
    def kernel_fn(self, **kwargs):
        """The exact infinite-width ``kernel_fn`` of this model (``ntk`` parameterization only):
        the trained groups follow the variant and ``train_output`` (see
        :func:`rbk.kernels.model_kernel_fn`)."""
        from rbk import kernels

        return kernels.model_kernel_fn(self, **kwargs)

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
