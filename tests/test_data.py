"""rbk.data: distributions, split sizes, determinism."""

import jax
import numpy as np
import pytest

from rbk import data, targets


@pytest.mark.parametrize("dist", ["cube", "sphere", "gaussian"])
def test_distributions(dist):
    x = np.asarray(data.sample_inputs(jax.random.PRNGKey(0), 20000, 10, dist))
    assert x.shape == (20000, 10)
    if dist == "cube":
        assert set(np.unique(x)) == {-1.0, 1.0}
    if dist == "sphere":
        np.testing.assert_allclose(np.linalg.norm(x, axis=1), np.sqrt(10), rtol=1e-5)
    # all three are isotropic with unit second moment per coordinate
    np.testing.assert_allclose(np.mean(x**2, axis=0), 1.0, atol=0.05)
    np.testing.assert_allclose(np.mean(x, axis=0), 0.0, atol=0.05)


def test_split_sizes_and_determinism():
    t = targets.paper_instance(d=8, k=4, g_degree=2)
    ds = data.make_dataset(jax.random.PRNGKey(5), t, 300)
    assert ds.x_train.shape == (300, 8) and ds.x_val.shape == (1000, 8) and ds.x_test.shape == (10000, 8)
    assert data.make_dataset(jax.random.PRNGKey(5), t, 20000, n_test=10).x_val.shape[0] == 4000
    ds2 = data.make_dataset(jax.random.PRNGKey(5), t, 300)
    for a, b in zip(ds, ds2):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(ds.y_test, t(ds.x_test))


def test_noise_only_on_train_and_val():
    t = targets.paper_instance(d=8, k=4, g_degree=2)
    ds = data.make_dataset(jax.random.PRNGKey(5), t, 5000, noise=0.5, n_test=100)
    r_tr = np.asarray(ds.y_train - t(ds.x_train))
    assert np.std(r_tr) == pytest.approx(0.5, rel=0.05)
    assert np.std(np.asarray(ds.y_val - t(ds.x_val))) == pytest.approx(0.5, rel=0.1)
    np.testing.assert_allclose(ds.y_test, t(ds.x_test))


def test_seed_keys_differ():
    a = data.seed_keys(0)
    b = data.seed_keys(1)
    assert not np.array_equal(a[0], b[0]) and not np.array_equal(a[0], a[1])
