"""rbk.targets against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rbk import data, targets


def test_paper_instance_hand_computed_point():
    # d = 8, k = 4, g_degree = 2: F = (x1x2, x3x4, x5x6, x7x8), G_i(y) = (-1)^i y1 y2.
    t = targets.paper_instance(d=8, k=4, g_degree=2, alpha=0.5, beta=2.0)
    x = jnp.array([[1, -1, 1, 1, -1, -1, 1, -1]], jnp.float32)
    f = np.array([-1, 1, 1, -1], np.float32)
    g = np.array([-1, 1, -1, 1], np.float32) * (f[0] * f[1])
    np.testing.assert_allclose(np.asarray(t(x))[0], 2.0 * f + 0.5 * g)
    assert t.threshold == pytest.approx(4 * 0.25)


def test_paper_defaults_reproduce_the_paper():
    t = targets.paper_instance()
    assert (t.d, t.k, t.info["g_degree"], t.info["alpha"], t.info["beta"]) == (30, 15, 4, 0.3, 1.0)
    assert t.threshold == pytest.approx(1.35)
    x = data.sample_inputs(jax.random.PRNGKey(0), 512, 30)
    # The composed part is (-1)^i x1 ... x8 for every output i = 1..15.
    composed = np.asarray(t.parts["composed"](x)) / 0.3
    parity = np.prod(np.asarray(x)[:, :8], axis=1)
    for i in range(1, 16):
        np.testing.assert_allclose(composed[:, i - 1], (-1) ** i * parity, atol=1e-6)
    # F is the 15 disjoint degree-2 parities.
    np.testing.assert_allclose(np.asarray(t.parts["F"](x)), np.asarray(x)[:, 0::2] * np.asarray(x)[:, 1::2])
    # A learner that knows F exactly but not G(F) has error k * alpha^2 (orthogonal parities).
    err = np.mean(np.sum((np.asarray(t(x)) - np.asarray(t.parts["base"](x))) ** 2, axis=1))
    assert err == pytest.approx(t.threshold, rel=1e-6)


def test_concept_accepts_user_callables():
    F = lambda x: jnp.tanh(x[:, :3])
    G = lambda y: y**2
    t = targets.concept(F, G, d=5, k=3, alpha=0.2, beta=0.7)
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 5))
    np.testing.assert_allclose(t(x), 0.7 * np.tanh(x[:, :3]) + 0.2 * np.tanh(x[:, :3]) ** 2, rtol=1e-6)
    assert jax.jit(t)(x).shape == (4, 3)


def test_random_instance_is_normalised_and_seeded():
    key = jax.random.PRNGKey(3)
    t = targets.random_instance(key, d=12, k=4, p=4, activations=("sin", "tanh", "square"))
    t2 = targets.random_instance(key, d=12, k=4, p=4, activations=("sin", "tanh", "square"))
    x = data.sample_inputs(jax.random.PRNGKey(20190524), 262144, 12)  # the normalisation sample
    f = t.parts["F"](x)
    np.testing.assert_allclose(np.mean(np.asarray(f) ** 2, axis=0), 1.0, rtol=1e-3)
    np.testing.assert_allclose(np.mean(np.asarray(t.parts["G"](f)) ** 2, axis=0), 1.0, rtol=1e-3)
    np.testing.assert_array_equal(np.asarray(t(x[:10])), np.asarray(t2(x[:10])))
    assert t.threshold == pytest.approx(4 * 0.09)
    for acts, comps in ((t.info["F_activations"], t.info["complexity"]["F"]),):
        for a, c in zip(acts, comps):
            assert c == {"square": 3.0, "sin": None, "tanh": None}[a]


def test_complexity_of_polynomials():
    # C(phi) = sum_i (i + 1) |c_i|
    assert targets.complexity("square") == 3.0
    assert targets.complexity("cube") == 4.0
    assert targets.complexity((1.0, -2.0, 0.0, 0.5)) == pytest.approx(1 + 4 + 0 + 2)
    assert targets.complexity("tanh") is None
