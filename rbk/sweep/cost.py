"""The engine's side of the cost model: the memory of the machine a run plans for.

A study estimates its own cells (``Study.memory_problems``, ``Study.format_plan``); the driver
gives it the memory of one local device (:func:`device_memory_bytes`) and of the host
(:func:`rbk._checks.host_memory_bytes`), so that what cannot fit is refused before anything runs.
"""

from __future__ import annotations

import os


def device_memory_bytes() -> tuple[int | None, str]:
    """Memory of one local device: ``bytes_limit`` of accelerators, total RAM for the CPU."""
    import jax

    dev = jax.local_devices()[0]
    try:
        st = dev.memory_stats() or {}
        if st.get("bytes_limit"):
            return int(st["bytes_limit"]), f"{dev.device_kind} bytes_limit"
    except Exception:  # noqa: BLE001 - CPU devices may not implement memory_stats
        pass
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return int(total) // max(1, jax.local_device_count()), "host RAM / local devices"
    except (ValueError, OSError, AttributeError):
        return None, "unknown"


def data_bytes(points: int, columns: int, copies: int = 1, itemsize: int = 4) -> int:
    """Bytes of ``copies`` float arrays of ``points x columns`` (``itemsize`` 4: float32): the
    floor under a network call's memory (its data and one layer's activations on them), which a
    study compares with a device's memory to refuse a plan that cannot fit (:func:`fits`)."""
    return int(points) * int(columns) * int(copies) * int(itemsize)


def too_big(what: str, need: int, have: int | None, fix: str, *, fraction: float = 0.8) -> list[str]:
    """``[message]`` when ``need`` bytes exceed ``fraction`` of ``have`` (a device's memory; ``None``:
    unknown, nothing refused), else ``[]``: the message gives both figures and ``fix``, the
    option(s) that make it fit."""
    if have is None or need <= fraction * have:
        return []
    return [f"{what} needs at least {need / 2**30:,.1f} GiB, more than {fraction:.0%} of the "
            f"{have / 2**30:.1f} GiB of a device here: {fix}"]
