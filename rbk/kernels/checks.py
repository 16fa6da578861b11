"""Argument checks shared by the kernels, solvers and predictors, and the float64 context.

Every check raises ``ValueError`` naming the parameter and the allowed values, before any compute.
"""

from __future__ import annotations

import collections
import functools
from typing import Mapping, Sequence

import jax
import numpy as np

from rbk._checks import check_array, check_choice, check_int, check_real
from rbk.models import Model

#: Names a kernel function can return (``get``).
GETS = ("nngp", "ntk")
#: Rows / columns of one block of an assembled Gram.
DEFAULT_BLOCK = 2048
#: Most relative ridges one fit selects among.
MAX_RIDGES = 5


def x64():
    """A context manager enabling 64-bit JAX locally (restores the caller's flag on exit).

    ``jax.enable_x64`` in recent jax, ``jax.experimental.enable_x64`` in older (0.5.x).
    """
    enable = getattr(jax, "enable_x64", None)
    if enable is None:  # jax < 0.6
        from jax.experimental import enable_x64 as enable
    return enable(True)


def check_get(get) -> tuple[tuple[str, ...], bool]:
    """Normalise ``get`` to a tuple; second value: whether a single array is returned."""
    if isinstance(get, str):
        check_choice("get", get, GETS)
        return (get,), True
    if not isinstance(get, (tuple, list)) or len(get) == 0:
        raise ValueError(f"get must be one of {list(GETS)} or a non-empty tuple of them, got {get!r}")
    for g in get:
        if not isinstance(g, str) or g not in GETS:
            raise ValueError(f"get must contain only names from {list(GETS)}, got {get!r}")
    if len(set(get)) != len(get):
        raise ValueError(f"get must not repeat a name, got {get!r}")
    return tuple(get), False


def pack_kernels(values: dict, gets: tuple[str, ...], single: bool):
    """``values[get]`` for a single ``get``, else the namedtuple ``Kernel`` of the ``gets`` in order."""
    if single:
        return values[gets[0]]
    return _namedtuple(gets)(*(values[g] for g in gets))


@functools.lru_cache(maxsize=None)
def _namedtuple(gets: tuple[str, ...]):
    return collections.namedtuple("Kernel", gets)


def check_x(x1, x2) -> tuple[np.ndarray, np.ndarray | None]:
    """``x1 (n1, d)`` and ``x2 (n2, d)`` (or ``None``) as float64 arrays."""
    x1 = check_array("x1", x1, ndim=2)
    if x1.shape[0] < 1 or x1.shape[1] < 1:
        raise ValueError(f"x1 must have at least one row and one column, got shape {x1.shape}")
    if x2 is not None:
        x2 = check_array("x2", x2, ndim=2)
        if x2.shape[0] < 1:
            raise ValueError(f"x2 must have at least one row, got shape {x2.shape}")
        if x2.shape[1] != x1.shape[1]:
            raise ValueError(f"x2 must have the same dimension as x1 ({x1.shape[1]}), got shape {x2.shape}")
        x2 = x2.astype(np.float64)
    return x1.astype(np.float64), x2


def check_block(block_size) -> int:
    """``block_size`` (``None``: :data:`DEFAULT_BLOCK`), an int ``>= 1``."""
    return DEFAULT_BLOCK if block_size is None else check_int("block_size", block_size, lo=1)


def check_rates(layer_rates, allowed: Sequence[str]) -> dict[str, float]:
    """``layer_rates``: a mapping from groups in ``allowed`` to rates ``>= 0`` (``None``: empty)."""
    if layer_rates is None:
        return {}
    if not isinstance(layer_rates, Mapping):
        raise ValueError(f"layer_rates must be a mapping label -> rate, got {layer_rates!r}")
    out = {}
    for name, r in layer_rates.items():
        if name not in allowed:
            raise ValueError(f"layer_rates keys must be among the trained groups {list(allowed)}, got {name!r}")
        out[name] = check_real(f"layer_rates[{name!r}]", r, lo=0.0)
    return out


def check_trainable(trainable, groups: Sequence[str], owner: str, what: str = "groups") -> tuple[str, ...]:
    """``trainable``: distinct names from ``groups`` (of ``owner``), returned in the order of ``groups``."""
    if isinstance(trainable, str) or not isinstance(trainable, (tuple, list, set, frozenset)):
        raise ValueError(f"trainable must be a tuple of {what} from {list(groups)}, got {trainable!r}")
    for g in trainable:
        if g not in groups:
            raise ValueError(f"trainable must contain only {what} of {owner!r}: {list(groups)}, got {g!r}")
    if len(set(trainable)) != len(tuple(trainable)):
        raise ValueError(f"trainable must not repeat a group, got {trainable!r}")
    return tuple(g for g in groups if g in set(trainable))


def check_ridges(ridges) -> tuple[float, ...]:
    """1 to :data:`MAX_RIDGES` relative ridges ``>= 0`` (a single number is one ridge)."""
    if isinstance(ridges, (int, float, np.floating, np.integer)) and not isinstance(ridges, bool):
        ridges = (ridges,)
    if not isinstance(ridges, (tuple, list, np.ndarray)) or not 1 <= len(ridges) <= MAX_RIDGES:
        raise ValueError(f"ridges must be a sequence of 1 to {MAX_RIDGES} relative ridges >= 0, got {ridges!r}")
    return tuple(check_real("ridges", r, lo=0.0) for r in ridges)


def check_dataset(dataset) -> dict[str, np.ndarray]:
    """The six float64 2-d splits of an :class:`rbk.data.Dataset`, with consistent shapes."""
    names = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
    if not all(hasattr(dataset, n) for n in names):
        raise ValueError(f"dataset must have attributes {names} (an rbk.data.Dataset)")
    out = {n: check_array(f"dataset.{n}", getattr(dataset, n), ndim=2).astype(np.float64) for n in names}
    d, k = out["x_train"].shape[1], out["y_train"].shape[1]
    for split in ("train", "val", "test"):
        x, y = out[f"x_{split}"], out[f"y_{split}"]
        if x.shape[0] < 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"dataset.x_{split} and dataset.y_{split} must have the same number (>= 1) of rows, "
                             f"got {x.shape} and {y.shape}")
        if x.shape[1] != d or y.shape[1] != k:
            raise ValueError(f"dataset.x_{split}/y_{split} must have {d} input and {k} output columns, "
                             f"got {x.shape} and {y.shape}")
    return out


def check_time(t, learning_rate):
    """A gradient-flow time ``t`` (``None`` or ``>= 0``, ``inf`` allowed) and a learning rate ``> 0``."""
    learning_rate = check_real("learning_rate", learning_rate, lo=0.0, lo_open=True)
    if t is None:
        return None, learning_rate
    if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)) or not float(t) >= 0:
        raise ValueError(f"t must be None or a time >= 0 (inf allowed), got {t!r}")
    return float(t), learning_rate


def check_model_params(model, params) -> dict:
    """``model`` an :class:`rbk.models.Model` and ``params`` its parameter dict (names and shapes)."""
    if not isinstance(model, Model):
        raise ValueError(f"model must be an rbk.models.Model, got {type(model).__name__}")
    if not isinstance(params, Mapping):
        raise ValueError("params must be the model's parameter dict (from model.init)")
    want = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    if set(want) != set(params) or any(tuple(np.shape(params[n])) != want[n].shape for n in want):
        raise ValueError(
            "params must be the model's parameter dict (from model.init): expected "
            f"{ {n: want[n].shape for n in want} }"
        )
    for n, v in params.items():
        check_array(f"params[{n!r}]", v)
    return params


def check_targets(name: str, y, n: int) -> tuple[np.ndarray, bool]:
    """``y (n,)`` or ``(n, k)`` as a float64 ``(n, k)`` copy; second value: whether it was 1-d."""
    y = check_array(name, y)
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) or ({n}, k), got {y.shape}")
    vec = y.ndim == 1
    return np.array(y.reshape(n, -1), np.float64), vec


def check_square(name: str, k, rtol: float = 1e-6, block: int = 1024) -> np.ndarray:
    """A square, symmetric (to ``rtol`` of its largest entry) finite matrix; checked in row blocks."""
    k = check_array(name, k, ndim=2)
    if k.shape[0] != k.shape[1] or k.shape[0] < 1:
        raise ValueError(f"{name} must be a square (n, n) matrix, got shape {k.shape}")
    tol = rtol * float(np.max(np.abs(k)))
    for i0 in range(0, k.shape[0], block):
        rows, cols = k[i0 : i0 + block], k[:, i0 : i0 + block]
        gap = float(np.max(np.abs(rows - cols.T)))
        if gap > tol:
            raise ValueError(f"{name} must be symmetric (a kernel matrix): entries differ from their transpose "
                             f"by up to {gap:.3g}, more than {rtol:g} x max |entry|")
    return k
