"""The practical training recipe, compiled once and vmapped over seeds x learning rates x weight decays.

Recipe (the paper's, ``docs/paper.md``; with PyTorch's SGD semantics)::

    loss     = 0.5 * mean over the batch of the squared error summed over the k outputs
    update   = optax.chain(add_decayed_weights(wd), sgd(lr_t, momentum=0.9))   # coupled L2
    lr_t     = lr, divided by 10 from epoch ``decay_epoch`` (default E/2) on
    batches  = 50 examples, a fresh permutation each epoch, the last partial batch dropped

The reported error is that of the final epoch (no early stopping): the mean over points of
the squared error summed over the ``k`` outputs, on the training, validation and test split.

One call of :func:`train` is one compiled XLA program: ``lax.scan`` over epochs and steps,
``vmap`` over the *members* (every (seed, learning rate, weight decay) triple). Width,
architecture and ``N`` change shapes, so each is its own call. Each seed has its own data
and its own training key (initialisation and batch order); members of one seed that differ
only in hyper-parameters share both (common random numbers, a fairer selection).
A member whose loss or parameters become NaN/inf is flagged ``diverged``; vmapped members
are independent, so the others are unaffected.

With several local devices (GPUs, TPU cores, or a CPU split into devices) the member axis is
split across them with ``jax.shard_map`` (data replicated), never over more devices than
there are members. On a GPU or TPU each device vmaps its members; on CPU devices they run one
after another inside the compiled call (``CPU_MEMBER_GROUP``; faster there than one wide
vmap, see ``_member_group``). :func:`configure_cpu_devices` splits the host CPU into one
device per core *before* JAX starts (``rbk`` on the command line does it): members then train
concurrently, one per core, while a single member still uses every core.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import time
import warnings
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rbk._checks import check_array, check_choice, check_int, check_real
from rbk.data import Dataset
from rbk.models import FROZEN, Model, get_model

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
    :class:`TrainConfig`); labels are the model's (:meth:`rbk.models.Model.labels`)."""
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
    return TrainConfig(epochs, batch_size, momentum, decay_epoch, decay_factor, tuple(rec), pairs[0], pairs[1], eval_chunk,
                       precision, tuple(sorted(phase_list)))  # fmt: skip


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


# --------------------------------------------------------------------------- optimiser


def optimizer(model: Model, params: dict, lr, wd, cfg: TrainConfig, steps_per_epoch: int):
    """The recipe as an optax transformation; ``lr`` and ``wd`` may be traced scalars."""
    boundary = cfg.decay_epoch * steps_per_epoch
    lr_mult, wd_mult = dict(cfg.layer_lr), dict(cfg.layer_wd)
    labels = model.labels(params)
    phases = {label: (a, b) for label, a, b in cfg.phases}
    unknown = set(phases) - set(labels.values())
    if unknown:
        raise ValueError(f"cfg.phases names labels the model does not have: {sorted(unknown)} "
                         f"(labels: {sorted(set(labels.values()))})")
    transforms = {FROZEN: optax.set_to_zero()}
    for label in set(labels.values()) - {FROZEN}:
        if label in phases:
            transforms[label] = _phased(lr * lr_mult.get(label, 1.0), wd * wd_mult.get(label, 1.0), phases[label],
                                        cfg, steps_per_epoch)
            continue
        schedule = optax.piecewise_constant_schedule(lr * lr_mult.get(label, 1.0), {boundary: cfg.decay_factor})
        transforms[label] = optax.chain(
            optax.add_decayed_weights(wd * wd_mult.get(label, 1.0)),
            optax.sgd(schedule, momentum=cfg.momentum or None),
        )
    return optax.multi_transform(transforms, labels)


def _phased(lr, wd, phase: tuple[int, int], cfg: TrainConfig, steps_per_epoch: int):
    """The recipe confined to epochs ``[start, stop)`` (its decay at the same fraction of the phase).

    The gradient is gated before the momentum (nothing accumulates while frozen) and the step
    after it (no leftover momentum moves a finished phase): outside the phase every update is
    exactly 0, so the parameters stay bit-identical.
    """
    start, stop = phase[0] * steps_per_epoch, phase[1] * steps_per_epoch
    boundary = start + ((phase[1] - phase[0]) * cfg.decay_epoch // cfg.epochs) * steps_per_epoch

    def gate(step):
        return jnp.where((step >= start) & (step < stop), 1.0, 0.0)

    def rate(step):
        return gate(step) * jnp.where(step < boundary, lr, lr * cfg.decay_factor)

    return optax.chain(
        optax.add_decayed_weights(wd),
        optax.scale_by_schedule(gate),
        optax.sgd(rate, momentum=cfg.momentum or None),
    )


def batch_loss(model: Model, params: dict, x, y):
    """``0.5 * mean_batch sum_k (f(x) - y)^2``."""
    return 0.5 * jnp.mean(jnp.sum((model.apply(params, x) - y) ** 2, axis=-1))


def error(model: Model, params: dict, x, y, chunk: int = 4096):
    """Mean over points of the squared error summed over outputs, evaluated in chunks."""
    n = x.shape[0]
    if n <= chunk:
        return jnp.mean(jnp.sum((model.apply(params, x) - y) ** 2, axis=-1))
    n_full = (n // chunk) * chunk
    xs = x[:n_full].reshape(-1, chunk, x.shape[-1])
    ys = y[:n_full].reshape(-1, chunk, y.shape[-1])
    sums = jax.lax.map(lambda xy: jnp.sum((model.apply(params, xy[0]) - xy[1]) ** 2), (xs, ys))
    total = jnp.sum(sums)
    if n_full < n:
        total = total + jnp.sum((model.apply(params, x[n_full:]) - y[n_full:]) ** 2)
    return total / n


# --------------------------------------------------------------------------- one member


def _flip(params: dict) -> dict:
    """Transpose every matrix leaf (its own inverse)."""
    return {k: v.T if v.ndim == 2 else v for k, v in params.items()}


def _tick(epochs) -> None:
    """Host side of the per-epoch progress callback: forward the count to the running calls' sinks."""
    for sink in list(_PROGRESS):
        sink(int(np.size(epochs)))


#: Progress sinks of the calls now running with ``progress=`` (host-side display only, never numbers).
_PROGRESS: list = []


def _run_member(model: Model, cfg: TrainConfig, data: Dataset, key, lr, wd, progress: bool = False):
    n = data.x_train.shape[0]
    bs = cfg.batch_size
    steps = n // bs
    k_init, k_order = jax.random.split(key)
    params = model.init(k_init)
    # SGD runs on the transposed weight matrices (its update is elementwise, so the numbers
    # are the same): XLA:CPU computes the gradient of W (d_in, d_out) as (g^T x)^T and fused
    # that transpose into the momentum update as a strided read, the costliest operation of
    # the step (about 0.95 ms of 2.9 ms per step at width 512); the gradient of W^T is g^T x
    # as it comes out of the matmul. The forward pass then reads W = (W^T)^T, which costs at
    # most one contiguous transpose per matrix and step. ~1.2x faster at width 512 (docs/benchmarks.md).
    params = _flip(params)
    opt = optimizer(model, params, lr, wd, cfg, steps)
    opt_state = opt.init(params)
    grad_fn = jax.value_and_grad(lambda p, x, y: batch_loss(model, _flip(p), x, y))

    def step(carry, idx):
        p, s = carry
        loss, g = grad_fn(p, data.x_train[idx], data.y_train[idx])
        upd, s = opt.update(g, s, p)
        return (optax.apply_updates(p, upd), s), loss

    def epoch(carry, ep):
        perm = jax.random.permutation(jax.random.fold_in(k_order, ep), n)[: steps * bs].reshape(steps, bs)
        carry, losses = jax.lax.scan(step, carry, perm)
        if progress:  # an unordered host callback: no data flows back, the numbers are unchanged
            jax.debug.callback(_tick, ep, ordered=False)
        return carry, jnp.mean(losses)

    carry = (params, opt_state)
    probe = getattr(model, "probe", None)  # optional per-model diagnostics at each recorded epoch
    errs, losses, probes, start = [], [], [], 0
    for stop in cfg.record_epochs:
        carry, ls = jax.lax.scan(epoch, carry, jnp.arange(start, stop))
        losses.append(ls)
        p = _flip(carry[0])
        errs.append(
            jnp.stack(
                [
                    error(model, p, data.x_train, data.y_train, cfg.eval_chunk),
                    error(model, p, data.x_val, data.y_val, cfg.eval_chunk),
                    error(model, p, data.x_test, data.y_test, cfg.eval_chunk),
                ]
            )
        )
        if probe is not None:
            probes.append(probe(p, data))
        start = stop
    params = _flip(carry[0])
    errs = jnp.stack(errs, axis=-1)  # (3, R)
    losses = jnp.concatenate(losses)
    finite = jnp.all(jnp.isfinite(errs)) & jnp.all(jnp.isfinite(losses))
    finite &= jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree_util.tree_leaves(params)]))
    if probe is not None:
        return errs, losses, ~finite, params, jnp.stack(probes)
    return errs, losses, ~finite, params


# --------------------------------------------------------------------------- the compiled call


def _validate(model: Model, data: Dataset, keys, lrs, wds, cfg: TrainConfig):
    if not isinstance(model, Model):
        raise ValueError(f"model must be an rbk.models.Model (use rbk.models.get_model), got {type(model).__name__}")
    if not isinstance(cfg, TrainConfig):
        raise ValueError("cfg must be an rbk.train.TrainConfig (use rbk.train.config)")
    if not isinstance(data, Dataset):
        raise ValueError("data must be an rbk.data.Dataset (use rbk.data.make_dataset / rbk.data.stack)")
    x = check_array("data.x_train", data.x_train, ndim=3)
    s, n, d = x.shape
    if d != model.d:
        raise ValueError(f"data.x_train has d={d} inputs but the model expects d={model.d}")
    check_array("data.y_train", data.y_train, shape=(s, n, model.k))
    for split in ("val", "test"):
        xs = check_array(f"data.x_{split}", getattr(data, f"x_{split}"), ndim=3)
        if xs.shape[0] != s or xs.shape[2] != d:
            raise ValueError(f"data.x_{split} must have shape ({s}, *, {d}), got {xs.shape}")
        check_array(f"data.y_{split}", getattr(data, f"y_{split}"), shape=(s, xs.shape[1], model.k))
    if cfg.batch_size > n:
        raise ValueError(f"batch_size must be in [1, N={n}] (the training-set size), got {cfg.batch_size}")
    keys = np.asarray(jax.random.key_data(keys) if jnp.issubdtype(jnp.asarray(keys).dtype, jax.dtypes.prng_key) else keys)
    if keys.shape != (s, 2):
        raise ValueError(f"keys must be {s} PRNG keys (one per seed, shape ({s}, 2)), got shape {keys.shape}")
    try:
        lrs, wds = (np.atleast_1d(np.asarray(v, np.float64)) for v in (lrs, wds))
    except (TypeError, ValueError):
        raise ValueError(f"lrs and wds must be lists of numbers, got {lrs!r} and {wds!r}") from None
    lrs = check_array("lrs", lrs, ndim=1)
    wds = check_array("wds", wds, ndim=1)
    if lrs.size == 0 or np.any(lrs <= 0):
        raise ValueError(f"lrs (learning rates) must be a non-empty list of numbers > 0, got {lrs.tolist()}")
    if wds.size == 0 or np.any(wds < 0):
        raise ValueError(f"wds (weight decays) must be a non-empty list of numbers >= 0, got {wds.tolist()}")
    return keys.astype(np.uint32), lrs.astype(np.float32), wds.astype(np.float32)


def _as_batched(data: Dataset) -> Dataset:
    if np.ndim(data.x_train) == 2:
        return jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], data)
    return data


def _prepare(model: Model, data: Dataset, keys, lrs, wds, cfg: TrainConfig | None, devices=None, progress=False):
    """Validate and lay out one call: ``(fn, args, (S, L, W, M), lrs, wds)``.

    ``fn(*args)`` is the jitted trainer :func:`train` compiles and runs (``benchmarks/`` times
    the same executable through this function); ``M`` is the number of real members (the
    member axis may be padded to a multiple of the device count).
    """
    cfg = config() if cfg is None else cfg
    if not isinstance(data, Dataset):
        raise ValueError("data must be an rbk.data.Dataset (use rbk.data.make_dataset / rbk.data.stack)")
    data = _as_batched(data)
    keys = jnp.atleast_2d(jnp.asarray(keys)) if not jnp.issubdtype(jnp.asarray(keys).dtype, jax.dtypes.prng_key) else keys
    keys, lrs, wds = _validate(model, data, keys, lrs, wds, cfg)
    S, L, W = keys.shape[0], lrs.size, wds.size
    # flatten members: seed-major, then lr, then wd
    seed_idx = np.repeat(np.arange(S), L * W)
    m_lr = np.tile(np.repeat(lrs, W), S)
    m_wd = np.tile(wds, S * L)
    M = seed_idx.size
    devices = list(devices) if devices is not None else jax.local_devices()
    if not devices:
        raise ValueError("devices must be a non-empty sequence of JAX devices (or None for all local devices)")
    devices = devices[: _devices_used(M, devices)]
    pad = (-M) % len(devices)
    if pad:  # pad with copies of the last member so the axis divides the devices
        seed_idx, m_lr, m_wd = (np.concatenate([a, np.repeat(a[-1:], pad)]) for a in (seed_idx, m_lr, m_wd))

    fn = _compiled_fn(model, cfg, _member_group(devices), tuple(devices) if len(devices) > 1 else (), progress)
    args = (data, jnp.asarray(keys), jnp.asarray(seed_idx), jnp.asarray(m_lr), jnp.asarray(m_wd))
    if len(devices) > 1:
        mesh = _mesh(devices)
        shard = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("members"))
        repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        args = (
            jax.device_put(args[0], repl),
            jax.device_put(args[1], repl),
            *(jax.device_put(a, shard) for a in args[2:]),
        )
    return fn, args, (S, L, W, M), lrs, wds


def train(
    model: Model,
    data: Dataset,
    keys,
    lrs: Sequence[float],
    wds: Sequence[float],
    cfg: TrainConfig | None = None,
    *,
    return_params: bool = False,
    devices: Sequence | None = None,
    progress: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train every (seed, lr, wd) member in one compiled, vmapped call.

    Args:
      model: from :func:`rbk.models.get_model`.
      data: an :class:`rbk.data.Dataset` with a leading seed axis ``S`` (``rbk.data.stack``),
        or a single unbatched split (``S = 1``).
      keys: ``S`` training keys (``(S, 2)`` uint32), e.g. ``rbk.data.seed_keys(s)[1]`` per seed.
      lrs, wds: the learning-rate and weight-decay grids (full outer product is trained).
      cfg: :class:`TrainConfig` (default ``config()``: 60 epochs, the paper's recipe).
      return_params: also return the final parameters.
      devices: devices to shard the members over (default: all local devices).
      progress: a host function called with a count of finished member-epochs as training
        advances (``members x epochs`` in all, padding members included), e.g. a tqdm bar's
        ``update``; from an unordered ``jax.debug.callback`` in the epoch loop (its own compiled
        program; the numbers are the same as without).

    Bad arguments raise ``ValueError`` before anything is compiled.
    """
    cfg = config() if cfg is None else cfg
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be None or a callable taking a count, got {progress!r}")
    fn, args, (S, L, W, M), lrs, wds = _prepare(model, data, keys, lrs, wds, cfg, devices, progress is not None)
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    t1 = time.perf_counter()
    if progress is not None:
        _PROGRESS.append(progress)
    try:
        errs, losses, diverged, params, *probes = compiled(*args)
        errs, losses, diverged = jax.device_get((errs, losses, diverged))
        jax.effects_barrier()  # every callback delivered before the sink is removed
    finally:
        if progress is not None:
            _PROGRESS.remove(progress)
    t2 = time.perf_counter()

    def shape(a):
        a = np.asarray(a)[:M]
        return a.reshape((S, L, W) + a.shape[1:])

    errs = shape(errs)  # (S, L, W, 3, R)
    return TrainResult(
        errors={split: errs[..., i, :] for i, split in enumerate(SPLITS)},
        epoch_loss=shape(losses),
        diverged=shape(diverged).astype(bool),
        record_epochs=cfg.record_epochs,
        lrs=lrs,
        wds=wds,
        compile_s=t1 - t0,
        run_s=t2 - t1,
        params=jax.tree_util.tree_map(shape, jax.device_get(params)) if return_params else None,
        probes=shape(jax.device_get(probes[0])) if probes else None,
    )


_CACHE: dict = {}
#: Members vmapped together on a single CPU device (see :func:`_member_group`).
CPU_MEMBER_GROUP = 1


def _mesh(devices) -> jax.sharding.Mesh:
    return jax.sharding.Mesh(np.asarray(devices), ("members",))


def _compiled_fn(model: Model, cfg: TrainConfig, group: int = 0, devices: tuple = (), progress: bool = False):
    """The jitted trainer for one (model, config, member layout); cached on the host.

    ``group > 0``: the members run in sequential groups of ``group``, vmapped within a group
    (:func:`_member_group`): the same computation up to float reassociation inside the
    batched matmuls (a member's numbers then match those of training it alone).
    ``devices`` (two or more): the member axis is split across them with ``jax.shard_map``,
    each device running its own members as above. Every matrix product is traced at
    ``cfg.matmul_precision`` (recorded on each dot of the program, whatever the caller's
    ``jax.default_matmul_precision``; ``cfg`` is part of the cache key).
    """
    key = (model, cfg, group, devices, progress)
    if key not in _CACHE:

        def run_all(*args):
            with jax.default_matmul_precision(cfg.matmul_precision):
                return run_members(*args)

        def run_members(data, keys, seed_idx, lrs, wds):
            def member(si, lr, wd):
                d = jax.tree_util.tree_map(lambda a: a[si], data)
                return _run_member(model, cfg, d, keys[si], lr, wd, progress)

            batch = jax.vmap(member)
            members = (seed_idx, lrs, wds)
            m = seed_idx.shape[0]
            if not group or group >= m:
                return batch(*members)
            full = m - m % group
            grouped = [a[:full].reshape(full // group, group) for a in members]
            out = jax.lax.map(lambda g: batch(*g), grouped)
            out = jax.tree_util.tree_map(lambda a: a.reshape((full,) + a.shape[2:]), out)
            if full < m:
                rest = batch(*(a[full:] for a in members))
                out = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), out, rest)
            return out

        if devices:
            P = jax.sharding.PartitionSpec
            run_all = _shard_map(
                run_all, _mesh(devices), (P(), P(), P("members"), P("members"), P("members")), P("members")
            )
        _CACHE[key] = jax.jit(run_all)
    return _CACHE[key]


def _shard_map(f, mesh, in_specs, out_specs):
    """``jax.shard_map`` (jax >= 0.7), or its ``jax.experimental`` predecessor on older JAX."""
    if hasattr(jax, "shard_map"):
        return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    from jax.experimental.shard_map import shard_map  # pragma: no cover - jax < 0.7

    return shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)


def _member_group(devices) -> int:
    """Members vmapped together on each device: all of them (0), except on CPU devices.

    On a CPU, one vmap over S members runs each operation over all S members' weights and
    optimiser state before the next, and the aggregate throughput fell as S grew (likely the
    working set outgrowing the cache): at width 512 on 2 cores, one vmap over 16 members
    trained 26k model-examples/s, the members one after another 44-46k, as many as S=1
    (alike at widths 256 and 1024; groups of 2 or 4 came within 5% of groups of 1; see
    docs/benchmarks.md). The step's own matmuls already keep the cores busy at S=1; members
    gain from running side by side on CPU devices of their own (:func:`configure_cpu_devices`).
    Accelerators keep one vmap per device: there the batch is where speed comes from.
    """
    if all(d.platform == "cpu" for d in devices):
        return CPU_MEMBER_GROUP
    return 0


def _devices_used(members: int, devices) -> int:
    """How many of ``devices`` a call with ``members`` members is split over.

    Never more devices than members. On accelerators: all of them up to that (the member
    axis is padded to a multiple, with copies of the last member, which cost little there).
    On CPU devices a padding copy takes a core from the real members, so the split is the
    largest count that divides ``members`` (1: the old single-device program, where one member
    uses every core), unless padding to all the devices wastes at most 1/8 of the members run.
    Measured at 2 cores (``benchmarks/sgd_throughput.py``): members side by side train
    1.56-1.76x (width 256), 1.1-1.2x (512) and 0.92-1.0x (1024) the model-examples/s of one
    member on both cores; a padded split loses more (3 members at width 1024: about 0.75x).
    """
    n = min(len(devices), members)
    if not all(d.platform == "cpu" for d in devices):
        return n
    div = max(k for k in range(1, n + 1) if members % k == 0)
    if div < n and members > n and ((-members) % n) * 8 <= members + (-members) % n:
        return n
    return div


def configure_cpu_devices(n: int | None = None) -> int:
    """Split the host CPU into ``n`` JAX devices (default: one per core this process may use).

    :func:`train` splits its members across the local devices, so on a CPU with ``n`` devices
    up to ``n`` members train at once, each on its own device, while a call with one member
    still uses every core (XLA's intra-op thread pool is shared by the CPU devices). At width
    512 on 2 cores this trains 1.2x as many model-examples per second as one device
    (``benchmarks/sgd_throughput.py``). Each member computes the same numbers either way.

    This is process-wide JAX configuration (``jax_num_cpu_devices``), so it is left to the
    program's entry point: the ``rbk`` command line calls it first thing; a script calls it
    right after ``import jax``. A count the user has already chosen
    (``JAX_NUM_CPU_DEVICES``, ``jax_num_cpu_devices``, or
    ``XLA_FLAGS=--xla_force_host_platform_device_count``) is kept as it is; when JAX's backends
    are already initialised with another count, nothing changes and a warning says so.
    Returns the number of CPU devices JAX will have.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = cores if n is None else check_int("n", n, lo=1)
    flag = re.search(r"--xla_force_host_platform_device_count=(\d+)", os.environ.get("XLA_FLAGS", ""))
    if flag:
        return int(flag.group(1))
    current = jax.config.jax_num_cpu_devices
    if current >= 0 or "JAX_NUM_CPU_DEVICES" in os.environ:
        return current
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:
        have = len(jax.devices("cpu"))
        if have == n:
            return n
        warnings.warn(
            "configure_cpu_devices: JAX's backends are already initialised; call it before any JAX "
            f"computation (right after `import jax`). Keeping the current {have} CPU device(s).",
            stacklevel=2,
        )
        return have
    return n


# --------------------------------------------------------------------------- training regimes

REGIMES = ("joint", "layerwise", "progressive")


def regime_config(regime: str, levels: int, epochs: int, *, record_per_stage: int = 2, **kwargs) -> TrainConfig:
    """A :class:`TrainConfig` training the levels of a :class:`rbk.models.DeepQuad` by ``regime``.

    The run has ``epochs`` epochs split into ``levels`` equal stages (``epochs`` must be a multiple):
    ``'joint'``: every level from the start, the plain recipe; ``'layerwise'``: level ``l`` only in
    stage ``l``, frozen before (at its initialisation, read-out 0) and after (each stage a full
    run of the recipe, its own decay); ``'progressive'``: level ``l`` from stage ``l`` to the end.
    Errors and probes are recorded ``record_per_stage`` times per stage. ``kwargs`` go to
    :func:`config` (not ``phases`` or ``record_epochs``). The same number of SGD steps in all three.
    """
    check_choice("regime", regime, REGIMES)
    levels = check_int("levels", levels, lo=1)
    epochs = check_int("epochs", epochs, lo=levels)
    record_per_stage = check_int("record_per_stage", record_per_stage, lo=1)
    if epochs % levels:
        raise ValueError(f"epochs must be a multiple of levels={levels} (equal stages), got {epochs}")
    for bad in ("phases", "record_epochs"):
        if bad in kwargs:
            raise ValueError(f"regime_config sets {bad} itself; do not pass it")
    stage = epochs // levels
    from rbk.models import level_label

    if regime == "joint":
        phases = None
    elif regime == "layerwise":
        phases = {level_label(l): ((l - 1) * stage, l * stage) for l in range(1, levels + 1)}
    else:
        phases = {level_label(l): ((l - 1) * stage, epochs) for l in range(1, levels + 1)}
    rec = sorted({max(1, (s * stage) + (stage * (i + 1)) // record_per_stage)
                  for s in range(levels) for i in range(record_per_stage)})
    return config(epochs, record_epochs=rec, phases=phases, **kwargs)


# --------------------------------------------------------------------------- convenience


def fit(
    model: Model,
    target,
    n: int,
    seeds: Sequence[int],
    lrs: Sequence[float],
    wds: Sequence[float],
    cfg: TrainConfig | None = None,
    *,
    distribution: str | None = None,
    n_val: int | None = None,
    n_test: int = 10000,
    noise: float = 0.0,
    **kwargs,
) -> TrainResult:
    """Draw each seed's data with :func:`rbk.data.make_dataset` and :func:`train` on it
    (``distribution=None``: the target's own, else the cube)."""
    from rbk.data import make_dataset, seed_keys, stack

    n = check_int("n", n, lo=1)
    if not callable(target):
        raise ValueError(f"target must be a callable (n, d) -> (n, k), e.g. rbk.targets.paper_instance(), got {target!r}")
    if not isinstance(model, Model):
        raise ValueError(f"model must be an rbk.models.Model (use rbk.models.get_model), got {type(model).__name__}")
    for dim in ("d", "k"):
        want = getattr(target, dim, getattr(model, dim))
        if want != getattr(model, dim):
            raise ValueError(f"model.{dim} = {getattr(model, dim)} must equal the target's {dim} = {want} "
                             f"({'input dimension' if dim == 'd' else 'outputs'})")
    cfg = config() if cfg is None else cfg
    if cfg.batch_size > n:
        raise ValueError(f"batch_size must be in [1, N={n}] (the training-set size), got {cfg.batch_size}")
    seeds = [check_int("seeds", s, lo=0) for s in seeds]
    if not seeds:
        raise ValueError("seeds must be a non-empty list of integers >= 0")
    pairs = [seed_keys(s) for s in seeds]
    data = stack(
        [
            make_dataset(kd, target, n, d=model.d, n_val=n_val, n_test=n_test, distribution=distribution, noise=noise)
            for kd, _ in pairs
        ]
    )
    keys = jnp.stack([kt for _, kt in pairs])
    return train(model, data, keys, lrs, wds, cfg, **kwargs)


def total_flops(model: Model, n: int, cfg: TrainConfig, members: int = 1) -> float:
    """Training FLOPs of one call (excluding evaluation): ``6 x MACs`` per example seen."""
    from rbk.models import flops_per_example

    n = check_int("n", n, lo=0)
    return float(flops_per_example(model)) * (n // cfg.batch_size) * cfg.batch_size * cfg.epochs * members


# --------------------------------------------------------------------------- the two-stage learner
#
# Damian, Lee & Soltanolkotabi, "Neural Networks can Learn Representations with Gradient
# Descent" (COLT 2022, arXiv 2206.15144), Section 3, Algorithm 1. What rbk does, step by step
# (the paper's statement, as rbk reads it, in brackets; deviations marked):
#
#   network    f(x) = sum_j a_j relu(w_j . x + b_j), width m even.
#   init       symmetric: w_j = w_{j+m/2} ~ N(0, s^2 I_d / d), a_j = +1, a_{j+m/2} = -1, b_j = 0,
#              so f = 0 at initialisation.
#   preprocess alpha = mean(y), beta = mean(y x) over the N training points; the learner fits
#              y - alpha - beta . x and adds alpha + beta . x back [Algorithm 1's preprocessing].
#   step 1     one full-batch gradient step on W alone, on the first N1 = split * N points,
#              learning rate eta, weight decay lambda = 1/eta, so W1 = -eta grad_W L(W0)
#              [one large step with lambda_1 = 1/eta_1; eta_1 of order sqrt(d)].
#   biases     re-drawn, b_j ~ N(0, bias_std^2) [re-initialised after step 1].
#   step 2     the output layer by ridge regression (float64, closed form) on the other N - N1
#              points, the ridge (and eta, from a grid) chosen on the validation split
#              [the paper runs T steps of gradient descent with weight decay on a alone, a convex
#              problem whose limit is this ridge solution: deviation, its exact minimiser].
#
# Not verified against the paper's PDF here (no copy was reachable): the independent split of
# the samples between the two stages (analyses of one-step feature learning use fresh samples
# for the second stage; ``split=None`` reuses all N points for both), the init scale and the
# bias law. Loss: 0.5 * mean squared error, as everywhere in rbk.

PREPROCESS = ("mean_linear", "mean", "none")


@dataclasses.dataclass(frozen=True)
class TwoStageConfig:
    """Settings of :func:`two_stage` (hashable; build it with :func:`two_stage_config`).

    Attributes:
      width: hidden units ``m`` (even: neurons come in opposite pairs).
      etas: first-step learning rates; each is tried and the validation error picks one.
      split: fraction of the ``N`` training points used by step 1 (the rest fit the output
        layer); ``None``: both stages use all ``N`` points.
      preprocess: ``'mean_linear'`` (Algorithm 1: remove ``alpha + beta . x``), ``'mean'``
        (only ``alpha``) or ``'none'``.
      init_scale: ``w_j ~ N(0, init_scale^2 I_d / d)``.
      bias_std: standard deviation of the re-drawn biases.
      ridges: relative ridges of the output layer (see :func:`rbk.kernels.random_features_fit_predict`).
    """

    width: int = 512
    etas: tuple[float, ...] = (1.0,)
    split: float | None = 0.5
    preprocess: str = "mean_linear"
    init_scale: float = 1.0
    bias_std: float = 1.0
    ridges: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)

    def describe(self) -> dict:
        out = dataclasses.asdict(self)
        out["etas"], out["ridges"] = list(self.etas), list(self.ridges)
        return out


def two_stage_config(
    width: int = 512,
    etas: Sequence[float] = (1.0,),
    *,
    split: float | None = 0.5,
    preprocess: str = "mean_linear",
    init_scale: float = 1.0,
    bias_std: float = 1.0,
    ridges: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0),
) -> TwoStageConfig:
    """Validated :class:`TwoStageConfig` (``ValueError`` naming the bad argument)."""
    from rbk.kernels import check_ridges

    width = check_int("width", width, lo=2)
    if width % 2:
        raise ValueError(f"width must be an even integer >= 2 (neurons come in opposite pairs), got {width}")
    etas = check_array("etas", np.atleast_1d(np.asarray(etas, np.float64)), ndim=1)
    if etas.size == 0 or np.any(etas <= 0):
        raise ValueError(f"etas must be a non-empty list of numbers > 0, got {etas.tolist()}")
    if split is not None:
        split = check_real("split", split, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    check_choice("preprocess", preprocess, PREPROCESS)
    init_scale = check_real("init_scale", init_scale, lo=0.0, lo_open=True)
    bias_std = check_real("bias_std", bias_std, lo=0.0)
    ridges = check_ridges(tuple(ridges))
    return TwoStageConfig(width, tuple(float(e) for e in etas), split, preprocess, init_scale, bias_std, ridges)


def symmetric_init(key: jax.Array, d: int, width: int, k: int = 1, init_scale: float = 1.0) -> dict:
    """Parameters of a standard ``2nn`` (:class:`rbk.models.Model`) with output 0: ``W (d, m)`` with
    column ``j + m/2`` equal to column ``j`` (``N(0, init_scale^2 / d)`` entries), ``b1 = 0`` and
    ``A (m, k)`` equal to ``+1`` on the first half, ``-1`` on the second."""
    half = jax.random.normal(key, (d, width // 2), jnp.float32) * (init_scale / math.sqrt(d))
    sign = jnp.concatenate([jnp.ones(width // 2), -jnp.ones(width // 2)]).astype(jnp.float32)
    return {"W": jnp.concatenate([half, half], axis=1), "b1": jnp.zeros(width, jnp.float32),
            "A": jnp.tile(sign[:, None], (1, k))}


@functools.partial(jax.jit, static_argnums=0)
def first_step(model: Model, params: dict, x, y, eta) -> jax.Array:
    """The new first layer after one full-batch gradient step on ``W`` with learning rate ``eta``
    and weight decay ``1 / eta`` (optax's coupled decay, as in :func:`optimizer`), i.e. exactly
    ``-eta * grad_W L`` up to rounding, with ``L = 0.5 * mean squared error``."""
    w = params["W"]
    g = jax.grad(lambda w_: batch_loss(model, {**params, "W": w_}, x, y))(w)
    opt = optax.chain(optax.add_decayed_weights(1.0 / eta), optax.sgd(eta))
    upd, _ = opt.update(g, opt.init(w), w)
    return optax.apply_updates(w, upd)


@jax.jit
def linear_part(x, y) -> tuple[jax.Array, jax.Array]:
    """Algorithm 1's label preprocessing: ``alpha = mean(y)`` ``(k,)`` and ``beta = mean(y x)`` ``(d, k)``
    (for ``x ~ N(0, I)``, the degree-0 and degree-1 Hermite coefficients of the labels)."""
    return jnp.mean(y, axis=0), x.T @ y / x.shape[0]


def _offset_fn(alpha, beta, preprocess: str):
    if preprocess == "none":
        return lambda x: 0.0
    if preprocess == "mean":
        return lambda x: np.asarray(alpha)[None, :]
    return lambda x: np.asarray(alpha)[None, :] + np.asarray(x, np.float64) @ np.asarray(beta, np.float64)


def _residual_dataset(data: Dataset, idx2, offset) -> Dataset:
    """The stage-2 training points ``idx2`` and the validation / test splits, labels minus ``offset``.

    A predictor ``h`` of the residual has exactly the error of ``h + offset`` on the labels."""
    xtr, ytr = np.asarray(data.x_train)[idx2], np.asarray(data.y_train, np.float64)[idx2]
    parts = [(xtr, ytr)] + [(np.asarray(getattr(data, f"x_{s}")), np.asarray(getattr(data, f"y_{s}"), np.float64))
                            for s in ("val", "test")]
    out = []
    for x, y in parts:
        out += [x, y - offset(x)]
    return Dataset(*out)


def fit_readout(features: dict, data: Dataset, ridges: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0), *,
                preprocess: str = "mean", train_idx=None, linear=None) -> dict:
    """Fit the output layer on fixed first-layer ``features = {'W': (d, m), 'b1': (m,)}`` by ridge.

    ``x -> relu(x W + b1)`` are the features; the labels lose ``alpha`` (``'mean'``), ``alpha +
    beta . x`` (``'mean_linear'``) or nothing (``'none'``), with ``(alpha, beta) = linear`` if
    given, else estimated (:func:`linear_part`) on the training points used (``train_idx``,
    default all); the predictor adds them back, so its errors are on the labels themselves.
    Float64 ridge with the ridge chosen on validation
    (:func:`rbk.kernels.random_features_fit_predict`); returns its dict plus ``alpha``, ``beta``.
    Step 2 of :func:`two_stage`, and transfer: a new head on learned features.
    """
    from rbk.kernels import random_features_fit_predict

    check_choice("preprocess", preprocess, PREPROCESS)
    if not isinstance(features, Mapping) or set(features) != {"W", "b1"}:
        raise ValueError("features must be a dict with the first layer 'W' (d, m) and biases 'b1' (m,)")
    W = check_array("features['W']", features["W"], ndim=2)
    check_array("features['b1']", features["b1"], shape=(W.shape[1],))
    x = check_array("data.x_train", data.x_train, ndim=2)
    y = check_array("data.y_train", data.y_train, ndim=2)
    if x.shape[1] != W.shape[0]:
        raise ValueError(f"data has d={x.shape[1]} inputs but features['W'] has {W.shape[0]} rows")
    idx = np.arange(x.shape[0]) if train_idx is None else np.asarray(train_idx)
    if linear is None:
        linear = linear_part(jnp.asarray(x[idx]), jnp.asarray(y[idx]))
    alpha, beta = (np.asarray(a, np.float64) for a in linear)
    res = _residual_dataset(data, idx, _offset_fn(alpha, beta, preprocess))
    model = get_model("2nn", W.shape[1], W.shape[0], y.shape[1])
    params = {"W": jnp.asarray(W), "b1": jnp.asarray(features["b1"]), "A": jnp.zeros((W.shape[1], y.shape[1]))}
    out = random_features_fit_predict(model, params, res, ridges)
    out.update({"alpha": alpha.tolist(), "beta": beta.tolist() if preprocess == "mean_linear" else None,
                "preprocess": preprocess})
    return out


def two_stage(data: Dataset, key: jax.Array, cfg: TwoStageConfig | None = None) -> dict:
    """Algorithm 1 of Damian, Lee & Soltanolkotabi (2022) on one split (see the section comment).

    Args:
      data: an unbatched :class:`rbk.data.Dataset` (2-d arrays).
      key: PRNG key of the initialisation and of the re-drawn biases.
      cfg: :class:`TwoStageConfig` (default ``two_stage_config()``).

    Returns the selected ``(eta, ridge)``'s ``val_error, test_error, train_error`` (test: mean
    squared error on clean labels), ``eta``, ``ridge``, ``lam``, per-eta ``val_errors`` and
    ``test_errors`` (each at its best ridge), ``ridge_paths`` (per eta, ``None`` where it diverged:
    ``lams`` and the ``train/val/test_errors`` of every ridge), ``n1, n2`` (points per stage), ``features`` (the
    selected first layer ``{'W', 'b1'}``, numpy, for :func:`fit_readout`), ``diverged`` and
    ``seconds``. An eta whose step gives non-finite weights is skipped (all of them: diverged).
    """
    cfg = two_stage_config() if cfg is None else cfg
    if not isinstance(cfg, TwoStageConfig):
        raise ValueError("cfg must be an rbk.train.TwoStageConfig (use rbk.train.two_stage_config)")
    if not isinstance(data, Dataset):
        raise ValueError("data must be an rbk.data.Dataset (use rbk.data.make_dataset)")
    x = check_array("data.x_train", data.x_train, ndim=2)
    y = check_array("data.y_train", data.y_train, ndim=2)
    n, d = x.shape
    if cfg.split is None:
        idx1 = idx2 = np.arange(n)
    else:
        n1 = int(round(cfg.split * n))
        if n1 < 1 or n1 >= n:
            raise ValueError(f"split={cfg.split} leaves a stage without points at N={n}; N must be >= 2")
        idx1, idx2 = np.arange(n1), np.arange(n1, n)
    t0 = time.perf_counter()
    model = get_model("2nn", cfg.width, d, y.shape[1])
    k_init, k_bias = jax.random.split(key)
    params = symmetric_init(k_init, d, cfg.width, y.shape[1], cfg.init_scale)
    linear = linear_part(jnp.asarray(x), jnp.asarray(y))  # Algorithm 1: on the whole training set
    offset = _offset_fn(*linear, cfg.preprocess)
    x1 = jnp.asarray(x[idx1])
    y1 = jnp.asarray(np.asarray(y[idx1], np.float64) - offset(x[idx1]), jnp.float32)
    bias = np.asarray(cfg.bias_std * jax.random.normal(k_bias, (cfg.width,), jnp.float32))
    runs = []
    for eta in cfg.etas:
        W1 = np.asarray(first_step(model, params, x1, y1, jnp.float32(eta)))
        if not np.all(np.isfinite(W1)):
            runs.append(None)
            continue
        feats = {"W": W1, "b1": bias}
        runs.append((eta, feats, fit_readout(feats, data, cfg.ridges, preprocess=cfg.preprocess,
                                             train_idx=idx2, linear=linear)))
    ok = [r for r in runs if r is not None]
    if not ok:
        return {"diverged": True, "val_error": math.inf, "test_error": math.inf, "train_error": math.inf,
                "eta": math.nan, "seconds": time.perf_counter() - t0}
    eta, feats, best = min(ok, key=lambda r: r[2]["val_error"])
    return {
        "diverged": False,
        "val_error": best["val_error"],
        "test_error": best["test_error"],
        "train_error": best["train_error"],
        "eta": eta,
        "ridge": best["ridge"],
        "lam": best["lam"],
        "etas": list(cfg.etas),
        "val_errors": [math.inf if r is None else r[2]["val_error"] for r in runs],
        "test_errors": [math.inf if r is None else r[2]["test_error"] for r in runs],
        "ridge_paths": [None if r is None else {k: list(r[2][k]) for k in ("lams", "train_errors", "val_errors",
                                                                            "test_errors")} for r in runs],
        "n1": int(idx1.size),
        "n2": int(idx2.size),
        "features": feats,
        "config": cfg.describe(),
        "seconds": time.perf_counter() - t0,
    }


__all__ = [
    "MATMUL_PRECISIONS",
    "TrainConfig",
    "TrainResult",
    "config",
    "train",
    "fit",
    "optimizer",
    "batch_loss",
    "error",
    "total_flops",
    "configure_cpu_devices",
    "TwoStageConfig",
    "two_stage_config",
    "two_stage",
    "symmetric_init",
    "first_step",
    "linear_part",
    "fit_readout",
    "regime_config",
    "REGIMES",
]
