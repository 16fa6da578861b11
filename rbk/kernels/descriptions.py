"""Architecture descriptions: the layered networks whose exact kernels :mod:`rbk.kernels.closed_form` computes.

The named architectures of :mod:`rbk.models` are descriptions (:func:`describe_arch`), as is the deep
quadratic network of the hierarchy experiments (:func:`deepquad_description`). :data:`LAYERS` and
:func:`group_rates` map a named architecture's parameter groups (optimiser labels) to the rates of
the recursion (each layer's weights and bias, each head's read-out).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from rbk._checks import check_choice, check_int
from rbk.kernels.closed_form import GAUSSIAN_MOMENTS
from rbk.models import ARCHS

#: Parameter groups (optimiser labels) of each architecture, in canonical order.
LAYERS = {"2nn": ("W", "b1", "A"), "3nn": ("W", "b1", "U", "b2", "A"), "3resnet": ("W", "b1", "U", "b2", "A")}
#: Each group's place in the description: ``('weight' | 'bias', layer index)`` or ``('head', head index)``.
GROUP_ROLES = {"W": ("weight", 0), "b1": ("bias", 0), "U": ("weight", 1), "b2": ("bias", 1), "A": ("head", 0)}


@dataclasses.dataclass(frozen=True)
class ArchDescription:
    """A layered network with skips and several heads (hashable; the recursion: :mod:`rbk.kernels.closed_form`).

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


_NAMED = {
    "2nn": ArchDescription(((0,),), ("relu",), (((1, "post"),),)),
    "3nn": ArchDescription(((0,), (1,)), ("relu", "relu"), (((2, "post"),),)),
    # features a1 + a2 (post-ReLU skip): one head reading both layers
    "3resnet": ArchDescription(((0,), (1,)), ("relu", "relu"), (((1, "post"), (2, "post")),)),
}


def describe_arch(arch: str) -> ArchDescription:
    """The description of ``'2nn'``, ``'3nn'`` or ``'3resnet'`` (the network of :class:`rbk.models.Model`)."""
    check_choice("arch", arch, ARCHS)
    return _NAMED[arch]


def group_rates(arch: str, rates: Mapping[str, float]) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """``(weight_rates, bias_rates, head_rates)`` of :func:`describe_arch` (``arch``) for per-group
    ``rates`` (groups of :data:`LAYERS`; a missing group has rate 0, i.e. is not trained)."""
    desc = describe_arch(arch)
    out = {"weight": [0.0] * desc.n_layers, "bias": [0.0] * desc.n_layers, "head": [0.0] * len(desc.heads)}
    for g in LAYERS[arch]:
        kind, i = GROUP_ROLES[g]
        out[kind][i] = float(rates.get(g, 0.0))
    return tuple(out["weight"]), tuple(out["bias"]), tuple(out["head"])


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
