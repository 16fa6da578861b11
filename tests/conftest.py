"""Shared test settings. Platform assumptions are explicit: a test that compares float32 JAX
with a float64 reference asks for full float32 matrix products (``full_f32``), since a GPU's
default is TF32 (about 1e-3 relative); tests that need CPU devices say so in their
subprocess's ``JAX_PLATFORMS=cpu``; nothing else assumes the platform.

Compiled XLA executables are kept in JAX's persistent compilation cache, in ``.jax_cache/`` at
the root of this clone (git-ignored; delete it to start cold): a computation compiled once,
by this process or by a subprocess a test spawns, is loaded from disk afterwards. The cache
changes no number: the same program is compiled with the same options either way. It is set
through the environment (which JAX reads when it is imported, and subprocesses inherit) and
through ``jax.config`` (for a JAX imported before this file)."""

import os
from pathlib import Path

#: JAX's persistent compilation cache of the test run: inside the clone, never elsewhere.
JAX_CACHE_DIR = Path(__file__).resolve().parents[1] / ".jax_cache"
_CACHE_SETTINGS = {
    "jax_compilation_cache_dir": str(JAX_CACHE_DIR),
    "jax_persistent_cache_min_compile_time_secs": 0.0,  # default 1 s: most test compiles are shorter
    "jax_persistent_cache_min_entry_size_bytes": -1,  # no size floor
}
for _name, _value in _CACHE_SETTINGS.items():
    os.environ[_name.upper()] = str(_value)

# Keep XLA from grabbing every core's worth of threads in tests that spawn subprocesses;
# the numbers do not depend on it.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402  (after the environment above)
import pytest  # noqa: E402

for _name, _value in _CACHE_SETTINGS.items():
    jax.config.update(_name, _value)


@pytest.fixture
def full_f32():
    """Full float32 matrix products in the test, whatever the platform's default."""
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture
def no_compute(monkeypatch):
    """Any attempt to run a cell, train or fit a kernel fails the test (``sweep.run`` itself may
    run: it checks), for the tests that a refusal comes before any compute."""
    from rbk import kernels, sweep, train

    def boom(*a, **k):
        raise AssertionError("computed before refusing")

    monkeypatch.setattr(sweep.driver, "run_cell", boom)
    monkeypatch.setattr(train, "train", boom)
    monkeypatch.setattr(kernels, "fit_predict", boom)


def pytest_configure(config):
    """Per-test CPU times (tests/_cputime.py) when ``RBK_TEST_CPU_TIMES`` names a file."""
    path = os.environ.get("RBK_TEST_CPU_TIMES")
    if path:
        from _cputime import CpuTimes

        config.pluginmanager.register(CpuTimes(path), "rbk_cputimes")
