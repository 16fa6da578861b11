"""Exact infinite-width kernel functions: :class:`KernelFn` (named architectures), :class:`DescribedKernelFn`
(any :class:`ArchDescription`) and their builders. Both evaluate the one recursion of
:mod:`rbk.kernels.closed_form`, block by block (:mod:`rbk.kernels.assemble`), in float64."""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp

from rbk._checks import check_choice, check_real
from rbk.kernels.assemble import assemble
from rbk.kernels.checks import check_block, check_get, check_rates, check_trainable, check_x, pack_kernels, x64
from rbk.kernels.closed_form import closed_form_jit
from rbk.kernels.descriptions import (LAYERS, ArchDescription, check_description, deepquad_description, describe_arch,
                                      group_rates)
from rbk.models import ARCHS, FROZEN, DeepQuad, Model


class ClosedFormKernel:
    """What an exact kernel function shares: ``description``, ``W_std``, ``b_std``, ``engine_rates``
    (``(weight_rates, bias_rates, head_rates)`` of the recursion) and the call.

    Call as ``kfn(x1, x2=None, get=('nngp', 'ntk'), block_size=None)``: ``x1 (n1, d)``,
    ``x2 (n2, d)`` (``None``: ``x2 = x1``, and the result is exactly symmetric); returns
    ``numpy.float64`` arrays of shape ``(n1, n2)``, per output (the kernels of the ``k``
    outputs are identical and independent). A string ``get`` returns that array, a tuple a
    namedtuple ``Kernel`` with the fields in the order asked. The Gram is assembled in
    ``block_size x block_size`` pieces (default 2048), so memory beyond the result is
    ``O(block_size**2)``.
    """

    description: ArchDescription
    W_std: float
    b_std: float
    engine_rates: tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]

    def __call__(self, x1, x2=None, get=("nngp", "ntk"), block_size=None):
        gets, single = check_get(get)
        x1, x2 = check_x(x1, x2)
        block = check_block(block_size)
        desc = self.description
        with x64():
            wr, br, hr = (jnp.asarray(r, jnp.float64) for r in self.engine_rates)
            ws, bs = jnp.asarray(self.W_std, jnp.float64), jnp.asarray(self.b_std, jnp.float64)

            def block_fn(a, b, diag):
                nngp, ntk = closed_form_jit(jnp.asarray(a, jnp.float64), jnp.asarray(b, jnp.float64), ws, bs,
                                            wr, br, hr, desc=desc, diag=diag)
                return {"nngp": nngp, "ntk": ntk}

            out = assemble(block_fn, x1, x2, gets, block)
        return pack_kernels(out, gets, single)


@dataclasses.dataclass(frozen=True)
class KernelFn(ClosedFormKernel):
    """The exact infinite-width NNGP / NTK of one named architecture (build with :func:`kernel_fn`).

    Its kernels are those of :func:`describe_arch` (``arch``), each parameter group's rate placed
    by :func:`group_rates`. Called as :class:`ClosedFormKernel` says.
    """

    arch: str
    W_std: float
    b_std: float
    trainable: tuple[str, ...]
    rates: tuple[tuple[str, float], ...]

    @property
    def layer_rates(self) -> dict[str, float]:
        return dict(self.rates)

    @property
    def description(self) -> ArchDescription:
        return describe_arch(self.arch)

    @property
    def engine_rates(self):
        return group_rates(self.arch, dict(self.rates))

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
    trainable = groups if trainable is None else check_trainable(trainable, groups, arch)
    rates = check_rates(layer_rates, trainable)
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


@dataclasses.dataclass(frozen=True)
class DescribedKernelFn(ClosedFormKernel):
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

    @property
    def description(self) -> ArchDescription:
        return self.desc

    @property
    def engine_rates(self):
        return self.layer_rates, self.layer_rates, self.head_rates

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
