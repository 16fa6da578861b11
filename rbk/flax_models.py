"""rbk's learners as Flax (``flax.linen``) modules, with a one-to-one map to rbk's pytrees.

Needs the optional extra ``pip install 'rbk[flax]'``; nothing else in rbk imports this module.

``Learner(model)`` is a ``flax.linen.Module`` computing exactly :meth:`rbk.models.Model.apply`
for any :class:`rbk.models.Model` (``2nn``, ``3nn``, ``3resnet``; ``standard`` or ``ntk``
parameterization; ``practical`` or ``theory`` variant). Its variables are laid out by layer,
as a Flax user expects, and each is one leaf of rbk's parameter dict:

============  =========================  ===========================================
rbk leaf      Flax variable              note
============  =========================  ===========================================
``W``         ``layer1/kernel``          ``W0`` in the theory variant
``dW``        ``layer1/kernel_offset``   theory variant only (the layer uses ``W0 + dW``)
``b1``        ``layer1/bias``
``U``         ``layer2/kernel``          three-layer nets; ``U0`` in the theory variant
``dU``        ``layer2/kernel_offset``   theory variant only
``b2``        ``layer2/bias``            three-layer nets
``A``         ``readout/kernel``         no output bias
============  =========================  ===========================================

Leaves that rbk's trainer moves (:meth:`rbk.models.Model.labels` other than ``'frozen'``) live
in the ``'params'`` collection; the others (``A`` with ``train_output=False``; ``W0``, ``U0``,
``A``, ``b1``, ``b2`` in the theory variant) in the ``'frozen'`` collection, so that
``jax.grad`` over ``variables['params']`` in a user's own loop trains what rbk trains.
:func:`to_flax_params` and :func:`from_flax_params` convert, exactly, in both directions.

Why ``flax.linen`` rather than ``flax.nnx``: linen modules are stateless, their variables are a
plain dict pytree passed to a pure ``apply``, which is rbk's own model of a learner (pure
functions over explicit pytrees); the map to rbk's parameters is then a rearrangement of
dicts. NNX users can wrap the module with ``flax.nnx.bridge.ToNNX``.

``Learner(model).init(key, x)`` draws each layer's variables with ``model.init`` (under keys
that Flax derives from ``key``), so they have rbk's initial distribution; for the very
parameters rbk draws from a key ``k``, use ``to_flax_params(model, model.init(k))``.
"""

from __future__ import annotations

import math
from typing import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from rbk.models import FROZEN, Model

#: rbk leaf name -> (Flax layer, Flax variable name).
LAYOUT = {
    "W": ("layer1", "kernel"),
    "W0": ("layer1", "kernel"),
    "dW": ("layer1", "kernel_offset"),
    "b1": ("layer1", "bias"),
    "U": ("layer2", "kernel"),
    "U0": ("layer2", "kernel"),
    "dU": ("layer2", "kernel_offset"),
    "b2": ("layer2", "bias"),
    "A": ("readout", "kernel"),
}
TRAINED, FIXED = "params", "frozen"


def _check_model(model) -> Model:
    if not isinstance(model, Model):
        raise ValueError(f"model must be an rbk.models.Model (use rbk.models.get_model), got {type(model).__name__}")
    return model


def _leaf_shapes(model: Model) -> dict[str, tuple[int, ...]]:
    """rbk's leaf names and shapes for ``model`` (abstractly: nothing is drawn)."""
    tree = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    return {name: tuple(a.shape) for name, a in tree.items()}


def _placement(model: Model) -> dict[str, tuple[str, str, str]]:
    """rbk leaf name -> (Flax collection, layer, variable)."""
    names = _leaf_shapes(model)
    labels = model.labels(dict.fromkeys(names))
    return {n: (FIXED if labels[n] == FROZEN else TRAINED, *LAYOUT[n]) for n in names}


def to_flax_params(model: Model, params: Mapping) -> dict:
    """rbk's parameter dict -> Flax variables ``{'params': ..., 'frozen': ...}`` (same arrays).

    The ``'frozen'`` collection is present only when ``model`` has frozen leaves. Raises
    ``ValueError`` naming the leaf when ``params`` does not have ``model``'s leaves and shapes.
    """
    model = _check_model(model)
    shapes = _leaf_shapes(model)
    if not isinstance(params, Mapping) or set(params) != set(shapes):
        got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
        raise ValueError(f"params must be a dict with exactly the leaves {sorted(shapes)} of this model, got {got}")
    out: dict = {}
    for name, (col, layer, var) in _placement(model).items():
        if tuple(jnp.shape(params[name])) != shapes[name]:
            raise ValueError(f"params[{name!r}] must have shape {shapes[name]}, got {tuple(jnp.shape(params[name]))}")
        out.setdefault(col, {}).setdefault(layer, {})[var] = params[name]
    return out


def from_flax_params(model: Model, variables: Mapping) -> dict:
    """Flax variables of :class:`Learner` (or gradients with their structure) -> rbk's dict.

    Exact inverse of :func:`to_flax_params`. Raises ``ValueError`` naming the missing or
    unexpected variable, or the one whose shape differs from ``model``'s.
    """
    model = _check_model(model)
    shapes = _leaf_shapes(model)
    placement = _placement(model)
    wanted = {(col, layer, var) for col, layer, var in placement.values()}
    if not isinstance(variables, Mapping):
        raise ValueError(f"variables must be a dict of Flax collections, got {type(variables).__name__}")
    got = set()
    for col, layers in variables.items():
        for layer, leaves in layers.items() if isinstance(layers, Mapping) else [(None, None)]:
            got.update((col, layer, var) for var in (leaves if isinstance(leaves, Mapping) else [None]))
    if got != wanted:
        fmt = lambda s: sorted("/".join(map(str, t)) for t in s)  # noqa: E731
        raise ValueError(
            f"variables must hold exactly {fmt(wanted)} for this model; missing {fmt(wanted - got)}, "
            f"unexpected {fmt(got - wanted)}"
        )
    out = {}
    for name, (col, layer, var) in placement.items():
        leaf = variables[col][layer][var]
        if tuple(jnp.shape(leaf)) != shapes[name]:
            raise ValueError(f"variables[{col!r}][{layer!r}][{var!r}] must have shape {shapes[name]}, got {jnp.shape(leaf)}")
        out[name] = leaf
    return out


class Learner(nn.Module):
    """The learner ``model`` (an :class:`rbk.models.Model`) as a Flax linen module.

    ``__call__(x)`` maps inputs ``(..., d)`` to outputs ``(..., k)``. The forward pass is
    written here layer by layer (``h = w_scale * x @ kernel + b_scale * bias``), independently
    of :meth:`rbk.models.Model.apply`; the tests hold the two to each other.
    """

    model: Model

    @nn.compact
    def __call__(self, x):
        m = _check_model(self.model)
        if x.shape[-1] != m.d:
            raise ValueError(f"x must have d={m.d} features in its last axis (the model's d), got shape {x.shape}")
        placement = _placement(m)
        groups: dict = {}
        for name, (col, layer, var) in placement.items():
            groups.setdefault((col, layer), {})[var] = name
        v = {}
        for (col, layer), names in groups.items():
            # each group draws from rbk's own init (Flax also traces it, abstractly, to check shapes)
            make = lambda key, names=names: {var: m.init(key)[name] for var, name in names.items()}  # noqa: E731
            if col == TRAINED:
                value = self.param(layer, make)
            else:
                value = self.variable(col, layer, lambda make=make: make(self.make_rng("params"))).value
            v.update({(layer, var): value[var] for var in names})

        ntk = m.parameterization == "ntk"
        bias_scale = m.b_std if ntk else 1.0

        def dense(layer, h, w_scale):
            kernel = v[layer, "kernel"]
            if (layer, "kernel_offset") in v:
                kernel = kernel + v[layer, "kernel_offset"]
            out = w_scale * jnp.dot(h, kernel)
            if (layer, "bias") in v:
                out = out + bias_scale * v[layer, "bias"]
            return out

        hidden_scale = m.W_std / math.sqrt(m.width) if ntk else 1.0
        a1 = nn.relu(dense("layer1", x, m.W_std / math.sqrt(m.d) if ntk else 1.0))
        if m.arch == "2nn":
            h = a1
        else:
            a2 = nn.relu(dense("layer2", a1, hidden_scale))
            h = a1 + a2 if m.arch == "3resnet" else a2
        return dense("readout", h, hidden_scale)
