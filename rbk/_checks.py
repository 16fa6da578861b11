"""Host-side input validation shared by rbk's entry points.

Every public entry point checks its arguments here *before* anything is traced or
compiled, and raises ``ValueError`` naming the parameter and its allowed range.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np


def check_int(name: str, value, *, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` must be an integer in ``[lo, hi]`` (either bound may be omitted)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer{_range(lo, hi, '[', ']')}, got {value!r}")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{name} must be an integer{_range(lo, hi, '[', ']')}, got {value}")
    return value


def check_real(
    name: str,
    value,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """``value`` must be a finite real number in the given (half-)open interval."""
    if isinstance(value, bool) or not isinstance(value, (Real, np.floating, np.integer)):
        raise ValueError(
            f"{name} must be a finite number{_range(lo, hi, '(' if lo_open else '[', ')' if hi_open else ']')}, "
            f"got {value!r}"
        )
    value = float(value)
    bad = not math.isfinite(value)
    bad |= lo is not None and (value <= lo if lo_open else value < lo)
    bad |= hi is not None and (value >= hi if hi_open else value > hi)
    if bad:
        raise ValueError(
            f"{name} must be a finite number{_range(lo, hi, '(' if lo_open else '[', ')' if hi_open else ']')}, "
            f"got {value}"
        )
    return value


def check_list(name: str, values, check=None, *, scalar: bool = True, empty: bool = False, unique: bool = True,
               order: str | None = None, index_names: bool = False) -> tuple:
    """A list of values, each checked: the tuple of ``check(item_name, v)`` (``v`` itself without ``check``).

    ``scalar``: a single value (a string too) counts as a list of one, else it is refused;
    ``empty``: whether an empty list is allowed; ``unique``: refuse repeated values; ``order``:
    ``None`` (kept as given), ``'sorted'`` (returned sorted) or ``'ascending'`` (refused unless
    strictly ascending as given); ``index_names``: the items are named ``name[i]`` in
    ``check``'s message, else ``name``. Every message names ``name``.
    """
    if order not in (None, "sorted", "ascending"):
        raise ValueError(f"order must be None, 'sorted' or 'ascending', got {order!r}")
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        if not scalar:
            raise ValueError(f"{name} must be a list, got {values!r}")
        values = (values,)
    vals = tuple(values)
    out = tuple(v if check is None else check(f"{name}[{i}]" if index_names else name, v) for i, v in enumerate(vals))
    if not out and not empty:
        raise ValueError(f"{name} must not be empty")
    if unique and len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat a value, got {list(out)}")
    if order == "ascending" and list(out) != sorted(out):
        raise ValueError(f"{name} must be ascending, got {list(out)}")
    return tuple(sorted(out)) if order == "sorted" else out


def check_ints(name: str, values, *, lo: int | None = None, hi: int | None = None, **kwargs) -> tuple[int, ...]:
    """:func:`check_list` of integers in ``[lo, hi]`` (:func:`check_int`); ``kwargs`` go to :func:`check_list`."""
    return check_list(name, values, lambda n, v: check_int(n, v, lo=lo, hi=hi), **kwargs)


def check_reals(name: str, values, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
                hi_open: bool = False, **kwargs) -> tuple[float, ...]:
    """:func:`check_list` of finite numbers in the interval (:func:`check_real`); ``kwargs`` go to :func:`check_list`."""
    return check_list(name, values, lambda n, v: check_real(n, v, lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open),
                      **kwargs)


def check_bool(name: str, value) -> bool:
    """``value`` must be ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_key(name: str, key):
    """A JAX PRNG key: a typed key (``jax.random.key``) or raw ``uint32`` key data of shape ``(..., 2)``."""
    import jax

    dt = getattr(key, "dtype", None)
    if dt is not None and jax.numpy.issubdtype(dt, jax.dtypes.prng_key):
        return key
    if dt != np.uint32 or tuple(getattr(key, "shape", ()))[-1:] != (2,):
        raise ValueError(f"{name} must be a JAX PRNG key (jax.random.PRNGKey(seed) or jax.random.key(seed)), "
                         f"got {type(key).__name__}{'' if dt is None else f' of dtype {dt}'}")
    return key


def check_array(name: str, x, *, ndim: int | None = None, shape: tuple | None = None) -> np.ndarray:
    """A finite float array of the given rank/shape (``None`` entries in ``shape`` are free)."""
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-d array, got shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite values (no NaN or inf)")
    return arr


def _range(lo, hi, lb, rb) -> str:
    if lo is None and hi is None:
        return ""
    if hi is None:
        return f" {'>' if lb == '(' else '>='} {lo}"
    if lo is None:
        return f" {'<' if rb == ')' else '<='} {hi}"
    return f" in {lb}{lo}, {hi}{rb}"


def host_memory_bytes() -> int | None:
    """Memory this process may use on the host: physical RAM, capped by a cgroup limit (``None`` if unknown)."""
    import os

    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            total = int(text) if total is None else min(total, int(text))
        break
    return total


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GiB"


def check_memory(what: str, need: int, have: int | None, fix: str) -> None:
    """Refuse (``ValueError``) when the estimated ``need`` exceeds the available ``have`` bytes."""
    if have is not None and need > have:
        raise ValueError(f"{what} needs about {gib(need)} but this machine has {gib(have)}; {fix}")
