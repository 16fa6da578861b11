"""The training recipe's settings (:class:`TrainConfig`, built by :func:`config`) and the host-side
result of one compiled call (:class:`TrainResult`); the recipe itself is described in :mod:`rbk.train`."""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from rbk._checks import check_choice, check_int, check_real

SPLITS = ("train", "val", "test")

#: Float32 matrix-product precisions of the trainer (JAX's ``jax.default_matmul_precision``
#: names), alias -> the name recorded. ``highest``: full float32 (the default); ``high``:
#: TF32 on NVIDIA GPUs (3 bfloat16 passes on a TPU); ``default``: the platform's fastest (TF32
#: on NVIDIA GPUs, one bfloat16 pass on a TPU). A CPU computes every one in full float32.
MATMUL_PRECISIONS = {
    "highest": "highest", "float32": "highest",
    "high": "high", "tensorfloat32": "high",
    "default": "default", "bfloat16": "default",
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Static settings of a training run (hashable; build it with :func:`config`).

    Attributes:
      epochs: number of passes over the training set.
      batch_size: mini-batch size (last partial batch dropped).
      momentum: heavy-ball momentum of SGD.
      decay_epoch: epoch from which the learning rate is multiplied by ``decay_factor``
        (default ``epochs // 2``; ``epochs`` means never).
      decay_factor: the multiplier (0.1 in the paper).
      record_epochs: epochs after which train/val/test errors are recorded (the last one is
        always ``epochs``).
      layer_lr, layer_wd: per-label multipliers of the learning rate and weight decay, as
        sorted ``(label, factor)`` pairs; labels are those of :meth:`rbk.models.Model.labels`
        (``'W'``, ``'b1'``, ``'U'``, ``'b2'``, ``'A'``). Missing labels get 1.
      eval_chunk: points per chunk when evaluating errors (bounds memory).
      matmul_precision: float32 matrix-product precision of the compiled call (``'highest'``,
        ``'high'`` or ``'default'``; see :func:`config`).
      phases: stage schedule as sorted ``(label, start_epoch, stop_epoch)`` triples: a label listed
        here is trained only in ``[start, stop)`` (gradient and update gated to exactly 0 outside,
        so its parameters stay bit-identical there), with the recipe's decay placed at the same
        fraction of its own phase as ``decay_epoch`` is of the run. Labels not listed train
        throughout. Layer-wise training of :class:`rbk.models.DeepQuad`: one phase per level.
      clip_norm: ``None`` (the default: plain SGD) or a bound on the global norm of each
        mini-batch gradient (all parameters, before momentum, weight decay and any phase gate:
        ``optax.clip_by_global_norm``); a safety net for heavy-tailed labels, where one extreme
        label can make a step diverge.
    """

    epochs: int = 60
    batch_size: int = 50
    momentum: float = 0.9
    decay_epoch: int = 30
    decay_factor: float = 0.1
    record_epochs: tuple[int, ...] = (60,)
    layer_lr: tuple[tuple[str, float], ...] = ()
    layer_wd: tuple[tuple[str, float], ...] = ()
    eval_chunk: int = 4096
    matmul_precision: str = "highest"
    phases: tuple[tuple[str, int, int], ...] = ()
    clip_norm: float | None = None

    def describe(self) -> dict:
        out = dataclasses.asdict(self)
        out["layer_lr"] = dict(self.layer_lr)
        out["layer_wd"] = dict(self.layer_wd)
        out["record_epochs"] = list(self.record_epochs)
        out["phases"] = {label: [a, b] for label, a, b in self.phases}
        return out


def config(
    epochs: int = 60,
    *,
    batch_size: int = 50,
    momentum: float = 0.9,
    decay_epoch: int | None = None,
    decay_factor: float = 0.1,
    record_epochs: Sequence[int] | None = None,
    layer_lr: Mapping[str, float] | None = None,
    layer_wd: Mapping[str, float] | None = None,
    eval_chunk: int = 4096,
    matmul_precision: str = "highest",
    phases: Mapping[str, tuple[int, int]] | None = None,
    clip_norm: float | None = None,
) -> TrainConfig:
    """Validated :class:`TrainConfig`. ``record_epochs`` defaults to ``(E/4, E/2, 3E/4, E)``.

    ``matmul_precision`` sets the precision of every float32 matrix product of the compiled
    training call (forward, gradients, error evaluation), as ``jax.default_matmul_precision``
    would: ``'highest'`` (alias ``'float32'``, the default) computes them in full float32 on
    every platform, so a recipe gives the same numbers, up to float reassociation, on a CPU
    and a GPU, as in PyTorch's default. ``'high'`` (alias ``'tensorfloat32'``) and
    ``'default'`` (alias ``'bfloat16'``) are opt-in speed settings for accelerators: TF32
    products on NVIDIA GPUs (Ampere and later) for both, 3 or 1 bfloat16 passes on a TPU. A
    CPU computes all three in full float32 (the numbers do not change). The alias is recorded
    by its JAX name (``'high'`` for ``'tensorfloat32'``); see ``docs/devices.md``.

    ``phases``: ``{label: (start_epoch, stop_epoch)}`` with ``0 <= start < stop <= epochs`` (see
    :class:`TrainConfig`); labels are the model's (:meth:`rbk.models.Model.labels`).
    ``clip_norm``: ``None`` or a finite number > 0 (see :class:`TrainConfig`)."""
    epochs = check_int("epochs", epochs, lo=1)
    batch_size = check_int("batch_size", batch_size, lo=1)
    momentum = check_real("momentum", momentum, lo=0.0, hi=1.0, hi_open=True)
    decay_epoch = epochs // 2 if decay_epoch is None else check_int("decay_epoch", decay_epoch, lo=0, hi=epochs)
    decay_factor = check_real("decay_factor", decay_factor, lo=0.0)
    if record_epochs is None:
        record_epochs = [e for e in (epochs // 4, epochs // 2, (3 * epochs) // 4) if e >= 1]
    rec = sorted({check_int("record_epochs", e, lo=1, hi=epochs) for e in record_epochs} | {epochs})
    pairs = []
    for name, table in (("layer_lr", layer_lr), ("layer_wd", layer_wd)):
        table = dict(table or {})
        for label, factor in table.items():
            if label not in ("W", "b1", "U", "b2", "A"):
                raise ValueError(f"{name} keys must be among ['A', 'U', 'W', 'b1', 'b2'], got {label!r}")
            check_real(f"{name}[{label!r}]", factor, lo=0.0)
        pairs.append(tuple(sorted((k, float(v)) for k, v in table.items())))
    eval_chunk = check_int("eval_chunk", eval_chunk, lo=1)
    precision = MATMUL_PRECISIONS[check_choice("matmul_precision", matmul_precision, MATMUL_PRECISIONS)]
    phase_list = []
    if phases is not None and not isinstance(phases, Mapping):
        raise ValueError(f"phases must be a mapping label -> (start_epoch, stop_epoch), got {phases!r}")
    for label, span in dict(phases or {}).items():
        if not isinstance(label, str) or not isinstance(span, (tuple, list)) or len(span) != 2:
            raise ValueError(f"phases must map label strings to (start_epoch, stop_epoch), got {label!r}: {span!r}")
        a = check_int(f"phases[{label!r}] start", span[0], lo=0, hi=epochs - 1)
        b = check_int(f"phases[{label!r}] stop", span[1], lo=a + 1, hi=epochs)
        phase_list.append((label, a, b))
    if clip_norm is not None:
        clip_norm = check_real("clip_norm", clip_norm, lo=0.0, lo_open=True)
    return TrainConfig(epochs, batch_size, momentum, decay_epoch, decay_factor, tuple(rec), pairs[0], pairs[1], eval_chunk,
                       precision, tuple(sorted(phase_list)), clip_norm)  # fmt: skip


@dataclasses.dataclass
class TrainResult:
    """Host-side result of one compiled call; arrays are indexed ``[seed, lr, wd, ...]``.

    Attributes:
      errors: ``{'train' | 'val' | 'test': array (S, L, W, R)}`` errors after each recorded epoch.
      epoch_loss: ``(S, L, W, E)`` mean training loss of each epoch (the 0.5-scaled batch loss).
      diverged: ``(S, L, W)`` bool; NaN/inf loss, error or parameter at the end.
      record_epochs, lrs, wds: the axes.
      compile_s, run_s: compilation and execution wall time of the call.
      params: the final parameters (leading axes S, L, W), if requested.
      probes: ``(S, L, W, R, P)`` the model's ``probe(params, data)`` after each recorded epoch,
        for models that define one (e.g. :class:`rbk.models.DeepQuad` with a reference target).
    """

    errors: dict
    epoch_loss: np.ndarray
    diverged: np.ndarray
    record_epochs: tuple
    lrs: np.ndarray
    wds: np.ndarray
    compile_s: float
    run_s: float
    params: dict | None = None
    probes: np.ndarray | None = None

    def final(self, split: str = "test") -> np.ndarray:
        """Errors after the last epoch, ``(S, L, W)``; ``split`` is one of ``'train'``, ``'val'``, ``'test'``."""
        if split not in self.errors:
            raise ValueError(f"split must be one of {list(self.errors)}, got {split!r}")
        return self.errors[split][..., -1]
