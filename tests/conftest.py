"""Shared test settings. Platform assumptions are explicit: a test that compares float32 JAX
with a float64 reference asks for full float32 matrix products (``full_f32``), since a GPU's
default is TF32 (about 1e-3 relative); tests that need CPU devices say so in their
subprocess's ``JAX_PLATFORMS=cpu``; nothing else assumes the platform."""

import os

import jax
import pytest

# Keep XLA from grabbing every core's worth of threads in tests that spawn subprocesses;
# the numbers do not depend on it.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


@pytest.fixture
def full_f32():
    """Full float32 matrix products in the test, whatever the platform's default."""
    with jax.default_matmul_precision("highest"):
        yield
