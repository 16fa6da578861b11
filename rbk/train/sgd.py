"""The SGD executor: the recipe as an optax transformation, one member's training loop, and the
compiled, vmapped (and device-split) call :func:`train` over seeds x learning rates x weight
decays; :func:`prepare` is its first half (validate and lay out, without running)."""

from __future__ import annotations

import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rbk._checks import check_array, check_int
from rbk.data import Dataset
from rbk.models import FROZEN, Model
from rbk.train.devices import devices_used, member_group, member_mesh, shard_map
from rbk.train.recipe import SPLITS, TrainConfig, TrainResult, config

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
    # sorted: iterating a set of strings follows the per-process hash seed, so the traced
    # program (and with it the persistent compilation cache's key) would change from run to run
    for label in sorted(set(labels.values()) - {FROZEN}):
        if label in phases:
            transforms[label] = _phased(lr * lr_mult.get(label, 1.0), wd * wd_mult.get(label, 1.0), phases[label],
                                        cfg, steps_per_epoch)
            continue
        schedule = optax.piecewise_constant_schedule(lr * lr_mult.get(label, 1.0), {boundary: cfg.decay_factor})
        transforms[label] = optax.chain(
            optax.add_decayed_weights(wd * wd_mult.get(label, 1.0)),
            optax.sgd(schedule, momentum=cfg.momentum or None),
        )
    per_label = optax.multi_transform(transforms, labels)
    return per_label if cfg.clip_norm is None else optax.chain(optax.clip_by_global_norm(cfg.clip_norm), per_label)


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


def progress_sinks() -> tuple:
    """The progress sinks of the :func:`train` calls running now (empty once every call has returned)."""
    return tuple(_PROGRESS)


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


def prepare(model: Model, data: Dataset, keys, lrs, wds, cfg: TrainConfig | None, devices=None, progress=False):
    """The first half of :func:`train`: validate and lay out one call, without compiling or running it.

    Returns ``(fn, args, (S, L, W, M), lrs, wds)``: ``fn(*args)`` is the jitted trainer
    :func:`train` compiles and runs (``benchmarks/`` times the same executable through this
    function), ``lrs`` and ``wds`` the validated grids; ``M`` is the number of real members (the
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
    devices = devices[: devices_used(M, devices)]
    pad = (-M) % len(devices)
    if pad:  # pad with copies of the last member so the axis divides the devices
        seed_idx, m_lr, m_wd = (np.concatenate([a, np.repeat(a[-1:], pad)]) for a in (seed_idx, m_lr, m_wd))

    fn = _compiled_fn(model, cfg, member_group(devices), tuple(devices) if len(devices) > 1 else (), progress)
    args = (data, jnp.asarray(keys), jnp.asarray(seed_idx), jnp.asarray(m_lr), jnp.asarray(m_wd))
    if len(devices) > 1:
        mesh = member_mesh(devices)
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
    max_members: int | None = None,
) -> TrainResult:
    """Train every (seed, lr, wd) member in one compiled, vmapped call (or in calls of at most
    ``max_members`` members).

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
      max_members: ``None`` (one call) or the most members one compiled call trains: the members
        are split, in their (seed, lr, wd) order, into consecutive calls (whole seeds per call where
        a seed's ``lrs x wds`` members fit, else whole learning rates, else single weight
        decays) and the results put back together, ``compile_s`` and ``run_s`` summed. It bounds
        the memory of the members trained side by side; each member's numbers are those of the
        single call up to float reassociation (the members of a call are independent).

    Bad arguments raise ``ValueError`` before anything is compiled.
    """
    cfg = config() if cfg is None else cfg
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be None or a callable taking a count, got {progress!r}")
    if max_members is not None:
        max_members = check_int("max_members", max_members, lo=1)
        batched = _as_batched(data)
        keys_, lrs_, wds_ = _validate(model, batched, keys, lrs, wds, cfg)
        if keys_.shape[0] * lrs_.size * wds_.size > max_members:
            return _train_split(model, batched, keys_, lrs_, wds_, cfg, max_members,
                                dict(return_params=return_params, devices=devices, progress=progress))
    fn, args, (S, L, W, M), lrs, wds = prepare(model, data, keys, lrs, wds, cfg, devices, progress is not None)
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


def _train_split(model, data, keys, lrs, wds, cfg, m: int, kw: dict) -> TrainResult:
    """:func:`train` in calls of at most ``m`` members (validated arguments; see ``max_members``)."""
    S, L, W = keys.shape[0], lrs.size, wds.size
    if S * L * W <= m:
        return train(model, data, keys, lrs, wds, cfg, **kw)
    if S > 1:  # whole seeds per call where they fit, else one seed at a time, split further
        g = max(1, m // (L * W))
        seeds = [slice(i, i + g) for i in range(0, S, g)]
        parts = [_train_split(model, jax.tree_util.tree_map(lambda a: a[s], data), keys[s], lrs, wds, cfg, m, kw)
                 for s in seeds]  # fmt: skip
        return _concat(parts, 0)
    if L > 1:
        g = max(1, m // W)
        parts = [_train_split(model, data, keys, lrs[i : i + g], wds, cfg, m, kw) for i in range(0, L, g)]
        return _concat(parts, 1)
    return _concat([train(model, data, keys, lrs, wds[i : i + m], cfg, **kw) for i in range(0, W, m)], 2)


def _concat(parts: list, axis: int) -> TrainResult:
    """The :class:`TrainResult` of consecutive blocks of members along ``axis`` (0 seeds, 1 lrs, 2 wds)."""
    cat = lambda *a: np.concatenate([np.asarray(v) for v in a], axis=axis)  # noqa: E731
    first = parts[0]
    tree_cat = lambda trees: None if trees[0] is None else jax.tree_util.tree_map(cat, *trees)  # noqa: E731
    return TrainResult(
        errors={sp: cat(*(p.errors[sp] for p in parts)) for sp in first.errors},
        epoch_loss=cat(*(p.epoch_loss for p in parts)),
        diverged=cat(*(p.diverged for p in parts)),
        record_epochs=first.record_epochs,
        lrs=np.concatenate([p.lrs for p in parts]) if axis == 1 else first.lrs,
        wds=np.concatenate([p.wds for p in parts]) if axis == 2 else first.wds,
        compile_s=sum(p.compile_s for p in parts),
        run_s=sum(p.run_s for p in parts),
        params=tree_cat([p.params for p in parts]),
        probes=tree_cat([p.probes for p in parts]),
    )


_CACHE: dict = {}


def _compiled_fn(model: Model, cfg: TrainConfig, group: int = 0, devices: tuple = (), progress: bool = False):
    """The jitted trainer for one (model, config, member layout); cached on the host.

    ``group > 0``: the members run in sequential groups of ``group``, vmapped within a group
    (:func:`member_group`): the same computation up to float reassociation inside the
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
            run_all = shard_map(
                run_all, member_mesh(devices), (P(), P(), P("members"), P("members"), P("members")), P("members")
            )
        _CACHE[key] = jax.jit(run_all)
    return _CACHE[key]


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
