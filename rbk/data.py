"""Input distributions and train / validation / test splits.

``sample_inputs`` draws ``x (n, d)`` from the uniform Boolean cube ``{-1, 1}^d``, the sphere
of radius ``sqrt(d)`` or the standard Gaussian. ``make_dataset`` draws, from one key, a
training set of size ``n``, a validation set (default ``max(1000, n // 5)``, not counted in
``n``) and a test set (default 10000), labelled by a target. Optional Gaussian label noise
is added to the training and validation labels; test labels stay clean, so test error
measures the distance to the target itself.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from rbk._checks import check_choice, check_int, check_key, check_real

DISTRIBUTIONS = ("cube", "sphere", "gaussian")


class Dataset(NamedTuple):
    """Train / validation / test arrays (a pytree; leading axes may stack seeds)."""

    x_train: jax.Array
    y_train: jax.Array
    x_val: jax.Array
    y_val: jax.Array
    x_test: jax.Array
    y_test: jax.Array

    @property
    def n(self) -> int:
        return self.x_train.shape[-2]


def sample_inputs(key: jax.Array, n: int, d: int, distribution: str = "cube", dtype=jnp.float32) -> jax.Array:
    """``n`` points of ``R^d`` from ``distribution`` in ``{'cube', 'sphere', 'gaussian'}``.

    All three have ``E[x x^T] = I`` (cube, Gaussian) or ``|x|^2 = d`` (cube, sphere).
    """
    check_key("key", key)
    n = check_int("n", n, lo=1)
    d = check_int("d", d, lo=1)
    check_choice("distribution", distribution, DISTRIBUTIONS)
    if distribution == "cube":
        return jax.random.rademacher(key, (n, d)).astype(dtype)
    z = jax.random.normal(key, (n, d), dtype)
    if distribution == "sphere":
        z = z * jnp.sqrt(jnp.asarray(d, dtype)) / jnp.linalg.norm(z, axis=-1, keepdims=True)
    return z


def default_n_val(n: int) -> int:
    return max(1000, n // 5)


def resolve_distribution(target, distribution: str | None = None) -> str:
    """The input distribution to sample for ``target``: ``distribution`` if given, else the target's
    (``target.distribution``), else ``'cube'``; a given one that differs from the target's is an error."""
    own = getattr(target, "distribution", None)
    if distribution is None:
        return own if own is not None else "cube"
    check_choice("distribution", distribution, DISTRIBUTIONS)
    if own is not None and own != distribution:
        raise ValueError(f"distribution must be the target's own ({own!r}) or None, got {distribution!r}")
    return distribution


def make_dataset(
    key: jax.Array,
    target: Callable,
    n: int,
    *,
    d: int | None = None,
    n_val: int | None = None,
    n_test: int = 10000,
    distribution: str | None = None,
    noise: float = 0.0,
) -> Dataset:
    """Draw one train/validation/test split labelled by ``target``.

    Args:
      key: PRNG key; the three splits and the noise use independent sub-keys.
      target: jittable ``(n, d) -> (n, k)`` (e.g. an :class:`rbk.targets.Target`).
      n: training-set size (``>= 1``).
      d: input dimension (default ``target.d``).
      n_val: validation size, default ``max(1000, n // 5)``; not counted in ``n``.
      n_test: test size (default 10000).
      distribution: ``'cube'``, ``'sphere'`` or ``'gaussian'``; default (``None``): the target's own
        ``distribution`` (``'gaussian'`` for a multi-index target) when it has one, else ``'cube'``.
        Naming another distribution than the target's is an error.
      noise: standard deviation of Gaussian noise on training and validation labels.
    """
    check_key("key", key)
    n = check_int("n", n, lo=1)
    if not callable(target):
        raise ValueError(f"target must be a callable (n, d) -> (n, k), e.g. rbk.targets.paper_instance(), got {target!r}")
    if d is None:
        d = getattr(target, "d", None)
        if d is None:
            raise ValueError("d must be given when target has no attribute d")
    d = check_int("d", d, lo=1)
    if getattr(target, "d", d) != d:
        raise ValueError(f"d = {d} must equal the target's input dimension target.d = {target.d}")
    n_val = default_n_val(n) if n_val is None else check_int("n_val", n_val, lo=1)
    n_test = check_int("n_test", n_test, lo=1)
    distribution = resolve_distribution(target, distribution)
    noise = check_real("noise", noise, lo=0.0)

    k_tr, k_va, k_te, k_nz = jax.random.split(key, 4)
    xs = [sample_inputs(kk, m, d, distribution) for kk, m in ((k_tr, n), (k_va, n_val), (k_te, n_test))]
    ys = [target(x) for x in xs]
    if noise > 0:
        k1, k2 = jax.random.split(k_nz)
        ys[0] = ys[0] + noise * jax.random.normal(k1, ys[0].shape, ys[0].dtype)
        ys[1] = ys[1] + noise * jax.random.normal(k2, ys[1].shape, ys[1].dtype)
    return Dataset(xs[0], ys[0], xs[1], ys[1], xs[2], ys[2])


def stack(datasets) -> Dataset:
    """Stack same-shaped datasets along a new leading (seed) axis."""
    datasets = list(datasets)
    if not datasets or not all(isinstance(ds, Dataset) for ds in datasets):
        raise ValueError("datasets must be a non-empty sequence of rbk.data.Dataset (from make_dataset)")
    shapes = {tuple(a.shape for a in ds) for ds in datasets}
    if len(shapes) > 1:
        raise ValueError(f"datasets must all have the same split sizes to be stacked, got shapes {sorted(shapes)}")
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *datasets)


def seed_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """rbk's convention: seed ``s`` gives ``(data_key, train_key) = split(PRNGKey(s))``.

    Each seed therefore redraws both the data and the initialisation / batch order.
    """
    seed = check_int("seed", seed, lo=0)
    k_data, k_train = jax.random.split(jax.random.PRNGKey(seed))
    return k_data, k_train
