"""rbk.models: forward pass by hand, initial scales, gradients against finite differences."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rbk import models


def _numpy_forward(arch, p, x, ntk=False, W_std=1.0, b_std=1.0):
    relu = lambda z: np.maximum(z, 0)
    d, m = p["W"].shape
    ws, us, os_ = (W_std / math.sqrt(d), W_std / math.sqrt(m), W_std / math.sqrt(m)) if ntk else (1, 1, 1)
    bs = b_std if ntk else 1.0
    a1 = relu(ws * x @ p["W"] + bs * p["b1"])
    if arch == "2nn":
        h = a1
    else:
        a2 = relu(us * a1 @ p["U"] + bs * p["b2"])
        h = a1 + a2 if arch == "3resnet" else a2
    return os_ * h @ p["A"]


@pytest.mark.parametrize("arch", models.ARCHS)
@pytest.mark.parametrize("par", models.PARAMETERIZATIONS)
def test_forward_matches_numpy(arch, par, full_f32):
    m = models.get_model(arch, 16, 6, 3, parameterization=par, W_std=1.3, b_std=0.4)
    p = m.init(jax.random.PRNGKey(0))
    # non-zero biases so the bias path is exercised in both parameterizations
    p = {k: (v + 0.3 if k.startswith("b") else v) for k, v in p.items()}
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (7, 6)))
    want = _numpy_forward(arch, {k: np.asarray(v) for k, v in p.items()}, x, par == "ntk", 1.3, 0.4)
    np.testing.assert_allclose(np.asarray(m.apply(p, jnp.asarray(x))), want, rtol=2e-5, atol=2e-5)


def test_standard_init_scales():
    m = models.get_model("3resnet", 512, 64, 8)
    p = m.init(jax.random.PRNGKey(0))
    assert np.var(p["W"]) == pytest.approx(2 / 64, rel=0.05)
    assert np.var(p["U"]) == pytest.approx(0.01 * 2 / 512, rel=0.05)  # u_scale 0.1 in the ResNet
    assert np.var(p["A"]) == pytest.approx(1 / 512, rel=0.1)
    assert np.all(p["b1"] == 0) and np.all(p["b2"] == 0)
    p3 = models.get_model("3nn", 512, 64, 8).init(jax.random.PRNGKey(0))
    assert np.var(p3["U"]) == pytest.approx(2 / 512, rel=0.05)


@pytest.mark.parametrize("arch", models.ARCHS)
def test_theory_variant_starts_at_the_random_init(arch, full_f32):
    prac = models.get_model(arch, 32, 6, 3)
    theo = models.get_model(arch, 32, 6, 3, variant="theory")
    pp, pt = prac.init(jax.random.PRNGKey(4)), theo.init(jax.random.PRNGKey(4))
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 6))
    np.testing.assert_allclose(prac.apply(pp, x), theo.apply(pt, x), rtol=1e-6)
    labels = theo.labels(pt)
    assert {k for k, v in labels.items() if v != models.FROZEN} == ({"dW"} if arch == "2nn" else {"dW", "dU"})
    assert np.all(pt["dW"] == 0)


@pytest.mark.parametrize("arch", models.ARCHS)
@pytest.mark.parametrize("par", models.PARAMETERIZATIONS)
def test_gradients_match_finite_differences(arch, par, full_f32):
    """Directional derivative of the loss along a random direction vs central differences."""
    m = models.get_model(arch, 24, 5, 2, parameterization=par)
    p = m.init(jax.random.PRNGKey(0))
    p = {k: v + 0.2 * jax.random.normal(jax.random.PRNGKey(9), v.shape) for k, v in p.items()}
    x = jax.random.normal(jax.random.PRNGKey(1), (9, 5))
    y = jax.random.normal(jax.random.PRNGKey(2), (9, 2))
    as64 = lambda t: jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), t)
    loss = lambda q: 0.5 * np.mean(np.sum((_numpy_forward(arch, q, np.asarray(x, np.float64), par == "ntk", m.W_std, m.b_std) - np.asarray(y)) ** 2, -1))
    g = jax.grad(lambda q: 0.5 * jnp.mean(jnp.sum((m.apply(q, x) - y) ** 2, -1)))(p)
    for seed in range(3):
        v = {k: np.asarray(jax.random.normal(jax.random.PRNGKey(100 + seed), a.shape), np.float64) for k, a in p.items()}
        eps = 1e-4
        p64 = as64(p)
        plus = {k: p64[k] + eps * v[k] for k in p64}
        minus = {k: p64[k] - eps * v[k] for k in p64}
        fd = (loss(plus) - loss(minus)) / (2 * eps)
        an = sum(float(np.sum(np.asarray(g[k], np.float64) * v[k])) for k in p)
        assert an == pytest.approx(fd, rel=2e-3, abs=1e-5)


def test_flops_per_example():
    m = models.get_model("3resnet", 512, 30, 15)
    assert models.flops_per_example(m) == 6 * (30 * 512 + 512 * 512 + 512 * 15)
    assert models.param_count(m) == 30 * 512 + 512 + 512 * 512 + 512 + 512 * 15
