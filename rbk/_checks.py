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
