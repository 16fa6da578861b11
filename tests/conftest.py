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


#: The heaviest test files, heaviest first (wall seconds of each, one process, cold cache, measured
#: 2026-12-02 with RBK_TEST_CPU_TIMES: 33 32 29 27 26 20 14 13 13 13 12 11). They run first, so
#: that pytest-xdist's two workers (``--dist loadfile``: a file per worker) do not end with one
#: big file running alone: longest first is the classic greedy schedule. Order only: each file's
#: tests keep their order, and no test depends on another file's.
HEAVY_FILES = ("test_sharding.py", "test_train.py", "test_kernels_cg.py", "test_multi_index.py", "test_kernels.py",
               "test_hierarchy.py", "test_cli.py", "test_exp3.py", "test_exp4.py", "test_learners.py", "test_exp3b.py",
               "test_giant_step.py")  # fmt: skip


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def pytest_configure(config):
    """Per-test CPU times (tests/_cputime.py) when ``RBK_TEST_CPU_TIMES`` names a file."""
    path = os.environ.get("RBK_TEST_CPU_TIMES")
    if path:
        from _cputime import CpuTimes

        config.pluginmanager.register(CpuTimes(path), "rbk_cputimes")
