"""How the members of one training call are laid out over JAX devices.

The member axis is split across the local devices with ``jax.shard_map`` (data replicated),
never over more devices than there are members (:func:`devices_used`); on CPU devices the
members of a device run one after another (:func:`member_group`). :func:`configure_cpu_devices`
splits the host CPU into one device per core before JAX starts.
"""

from __future__ import annotations

import os
import re
import warnings

import jax
import numpy as np

from rbk._checks import check_int

#: Members vmapped together on a single CPU device (see :func:`member_group`).
CPU_MEMBER_GROUP = 1


def member_mesh(devices) -> jax.sharding.Mesh:
    """A one-axis mesh (``'members'``) over ``devices``, the axis the members are split along."""
    return jax.sharding.Mesh(np.asarray(devices), ("members",))


def shard_map(f, mesh, in_specs, out_specs):
    """``jax.shard_map`` (jax >= 0.7), or its ``jax.experimental`` predecessor on older JAX."""
    if hasattr(jax, "shard_map"):
        return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    from jax.experimental.shard_map import shard_map as experimental_shard_map  # pragma: no cover - jax < 0.7

    return experimental_shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)


def member_group(devices) -> int:
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


def devices_used(members: int, devices) -> int:
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

    :func:`rbk.train.train` splits its members across the local devices, so on a CPU with ``n`` devices
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
