"""Multi-index targets on Gaussian inputs and the two-stage learner (Damian, Lee & Soltanolkotabi 2022).

References are independent of the code under test: numpy's HermiteE polynomials, Monte Carlo
(normalisation; the degree profile through the noise operator ``E[f(x) f(rho x + sqrt(1-rho^2) x')]
= sum_l rho^l E_l``; ``E[grad^2 f]`` from ``jax.hessian`` at sample points), ``jax.grad`` and a
hand-written gradient for the first step, and a numpy Monte Carlo of the 2-layer ReLU kernels.
Monte Carlo checks allow 5 standard errors.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.polynomial import hermite_e

from rbk import data, kernels, models, targets, train

KEY = jax.random.PRNGKey(0)


def _mc(values):
    v = np.asarray(values, np.float64).ravel()
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))


def _targets():
    return [
        targets.single_index(KEY, 8, p=4),
        targets.sum_of_products(KEY, 8, r=2, p=4, a=1.0, b=2.0),
        targets.sum_of_products(KEY, 8, r=3, p=3),
        targets.random_multi_index(KEY, 8, r=2, p=4),
    ]


# --------------------------------------------------------------------------- the family


def test_hermite_matches_numpy_hermite_e():
    z = np.linspace(-3, 3, 13)
    got = np.asarray(targets.hermite(jnp.asarray(z, jnp.float32), 6))
    for k in range(7):
        ref = hermite_e.hermeval(z, [0] * k + [1]) / math.sqrt(math.factorial(k))
        np.testing.assert_allclose(got[:, k], ref, rtol=2e-5, atol=2e-5)


def test_random_subspace_orthonormal_seeded():
    U = targets.random_subspace(KEY, 12, 3)
    np.testing.assert_allclose(U @ U.T, np.eye(3), atol=1e-12)
    np.testing.assert_array_equal(U, targets.random_subspace(KEY, 12, 3))
    assert not np.allclose(U, targets.random_subspace(jax.random.PRNGKey(1), 12, 3))


@pytest.mark.parametrize("t", _targets(), ids=lambda t: f"{t.name}-r{t.info['r']}")
def test_normalisation_and_degree_profile_by_monte_carlo(t):
    k1, k2 = jax.random.split(jax.random.PRNGKey(7))
    n = 400_000
    x = jax.random.normal(k1, (n, t.d))
    xp = jax.random.normal(k2, (n, t.d))
    E = np.asarray(t.info["degree_energy"])
    assert E.sum() == pytest.approx(1.0, abs=1e-12) and t.threshold == pytest.approx(E[-1])
    fx = np.asarray(t(x), np.float64)[:, 0]
    m, se = _mc(fx**2)
    assert abs(m - 1.0) < 5 * se, (m, se)
    for rho in (0.4, 0.7, 0.9):
        fy = np.asarray(t(rho * x + math.sqrt(1 - rho**2) * xp), np.float64)[:, 0]
        m, se = _mc(fx * fy)
        want = float(np.sum(E * rho ** np.arange(E.size)))
        assert abs(m - want) < 5 * se, (rho, m, want, se)
    # The learner that knows everything but the degree-p part has error E_p (the threshold).
    m, se = _mc((fx - np.asarray(t.parts["below_p"](x), np.float64)[:, 0]) ** 2)
    assert abs(m - t.threshold) < 5 * se, (m, t.threshold, se)


@pytest.mark.parametrize("t", _targets()[1:3], ids=lambda t: f"{t.name}-r{t.info['r']}")
def test_expected_hessian_has_rank_r(t):
    x = jax.random.normal(jax.random.PRNGKey(11), (8000, t.d))
    hess = jax.jit(jax.vmap(jax.hessian(lambda v: t(v[None])[0, 0])))(x)  # (n, d, d)
    h = np.asarray(hess, np.float64)
    mc, se = h.mean(0), h.std(0, ddof=1) / math.sqrt(h.shape[0])
    exact = targets.expected_hessian(t)
    assert np.all(np.abs(mc - exact) < 5 * se + 1e-6)
    s = np.linalg.svd(exact, compute_uv=False)
    r = t.info["r"]
    assert t.info["hessian_rank"] == r and s[r - 1] > 0.1 and np.all(s[r:] < 1e-10)
    s_mc = np.linalg.svd(mc, compute_uv=False)
    assert s_mc[r - 1] > 4 * s_mc[r]  # the Monte Carlo estimate has r clear directions


def _numpy_value(t, x):
    """``sum_a c_a prod_i He_{a_i}(z_i) / sqrt(a_i!)``, ``z = U x``, with numpy's HermiteE (float64)."""
    z = x @ np.asarray(t.info["U"]).T
    out = np.zeros(x.shape[0])
    for a, c in t.info["terms"]:
        out += c * np.prod([hermite_e.hermeval(z[:, i], [0] * k + [1]) / math.sqrt(math.factorial(k))
                            for i, k in enumerate(a)], axis=0)
    return out


@pytest.mark.parametrize("f32_first", [True, False])
def test_float64_under_jit_in_either_order_of_precisions(f32_first):
    # the same target evaluated in float32 and, under kernels.x64() and jax.jit, in float64 (in both
    # orders): mixed int32/int64 Hermite indices used to fail the second call's trace
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (64, 8)), np.float64)
    for t in _targets():
        ref = _numpy_value(t, x)

        def f64():
            with kernels.x64():
                y = jax.jit(t.__call__)(jnp.asarray(x, jnp.float64))
                assert y.dtype == jnp.float64
                np.testing.assert_allclose(np.asarray(y)[:, 0], ref, rtol=1e-12, atol=1e-12)
                g = jax.jit(t.parts["degree_2"])(jnp.asarray(x, jnp.float64))  # a masked part too
                assert g.dtype == jnp.float64

        def f32():
            y = jax.jit(t.__call__)(jnp.asarray(x, jnp.float32))
            np.testing.assert_allclose(np.asarray(y)[:, 0], ref, rtol=1e-4, atol=1e-4)

        for call in ((f32, f64) if f32_first else (f64, f32)):
            call()


def test_with_head_keeps_the_subspace():
    t = targets.sum_of_products(KEY, 10, r=2, p=4)
    t2 = targets.with_head(t, {(2, 0): 1.0, (0, 2): -1.0, (1, 2): 1.0})
    assert t2.info["U"] == t.info["U"] and t2.threshold == pytest.approx(1 / 3)
    x = jax.random.normal(KEY, (5, 10))
    z = np.asarray(x) @ np.asarray(t.info["U"]).T
    h = lambda k, v: hermite_e.hermeval(v, [0] * k + [1]) / math.sqrt(math.factorial(k))  # noqa: E731
    want = (h(2, z[:, 0]) - h(2, z[:, 1]) + h(1, z[:, 0]) * h(2, z[:, 1])) / math.sqrt(3)
    np.testing.assert_allclose(np.asarray(t2(x))[:, 0], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: targets.random_subspace(KEY, 3, 4), "r must be an integer in"),
        (lambda: targets.multi_index(np.eye(3, 2), {(2, 0, 0): 1.0}), "r must be <= d"),
        (lambda: targets.multi_index(np.array([[1.0, 0.1, 0.0]]), {(2,): 1.0}), "orthonormal rows"),
        (lambda: targets.multi_index(np.eye(2, 4), {(0, 0): 1.0}), "degree p of g must be >= 1"),
        (lambda: targets.multi_index(np.eye(1, 4), {(4,): 1.0}), "rank r=1"),
        (lambda: targets.multi_index(np.eye(2, 4), {(2, 0): 1.0, (3, 1): 1.0}), "rank r=2"),
        (lambda: targets.multi_index(np.eye(2, 4), {(2,): 1.0}), "tuples of 2"),
        (lambda: targets.multi_index(np.eye(1, 4), {(-1,): 1.0}), "tuples of 1"),
        (lambda: targets.multi_index(np.eye(1, 4), {}), "at least one non-zero"),
        (lambda: targets.single_index(KEY, 8, p=2), "p must be an integer"),
        (lambda: targets.single_index(KEY, 8, p=4, a=0.0), "weight a \\(of the degree-2 part\\) must be a finite number > 0.0, got 0.0"),
        (lambda: targets.single_index(KEY, 8, p=4, a=float("nan")), "weight a \\(of the degree-2 part\\) must be a finite number > 0.0, got nan"),
        (lambda: targets.sum_of_products(KEY, 3, r=4), "r must be an integer in"),
        (lambda: targets.random_multi_index(KEY, 8, 2, 4, degrees=(3, 4)), "include 2 and p"),
        (lambda: targets.expected_hessian(targets.paper_instance(d=8, k=2, g_degree=2)), "multi-index"),
    ],
)
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_degenerate_allowed_on_request():
    t = targets.multi_index(np.eye(1, 4), {(4,): 1.0}, allow_degenerate=True)
    assert t.info["hessian_rank"] == 0 and t.threshold == pytest.approx(1.0)


def test_make_dataset_samples_the_targets_gaussian_inputs():
    t = targets.single_index(KEY, 6, p=3)
    ds = data.make_dataset(KEY, t, 3000)
    x = np.asarray(ds.x_train)
    assert len(np.unique(np.round(x, 6))) > 1000  # not the cube
    assert abs(x.mean()) < 0.05 and abs(x.var() - 1) < 0.05
    np.testing.assert_allclose(np.asarray(ds.y_test), np.asarray(t(ds.x_test)))
    with pytest.raises(ValueError, match="target's own"):
        data.make_dataset(KEY, t, 10, distribution="cube")
    # Targets without a distribution keep the old default (the cube).
    xc = np.asarray(data.make_dataset(KEY, targets.paper_instance(d=8, k=2, g_degree=2), 10).x_train)
    assert set(np.unique(xc)) == {-1.0, 1.0}


# --------------------------------------------------------------------------- the two-stage learner


def test_symmetric_init_outputs_zero():
    m = models.get_model("2nn", 64, 7, 1)
    p = train.symmetric_init(KEY, 7, 64)
    x = jax.random.normal(KEY, (50, 7))
    assert np.max(np.abs(np.asarray(m.apply(p, x)))) < 1e-5
    assert np.asarray(p["A"]).sum() == 0 and np.all(np.asarray(p["b1"]) == 0)


def test_first_step_is_minus_eta_times_the_gradient():
    d, width, n, eta = 7, 32, 200, 3.7
    model = models.get_model("2nn", width, d, 1)
    params = train.symmetric_init(jax.random.PRNGKey(2), d, width)
    x = jax.random.normal(jax.random.PRNGKey(3), (n, d))
    y = jnp.sin(x[:, :1]) + x[:, 1:2] ** 2
    W1 = np.asarray(train.first_step(model, params, x, y, jnp.float32(eta)), np.float64)
    g = jax.grad(lambda w: train.batch_loss(model, {**params, "W": w}, x, y))(params["W"])
    np.testing.assert_allclose(W1, -eta * np.asarray(g), rtol=1e-4, atol=1e-6)
    # The same by hand: f = 0 at init, so grad_{w_j} = -(a_j / n) sum_i y_i 1[w_j . x_i > 0] x_i.
    X, Y, W0, a = (np.asarray(v, np.float64) for v in (x, y, params["W"], params["A"][:, 0]))
    hand = -(X.T @ (Y * (X @ W0 > 0))) * a / n
    np.testing.assert_allclose(W1, -eta * hand, rtol=1e-4, atol=1e-6)
    assert np.abs(W1).max() > 0.1  # the step moved W away from 0 (W0 itself is gone)


def test_linear_part_is_the_degree_one_coefficients():
    t = targets.multi_index(np.eye(2, 5), {(0, 0): 0.5, (1, 0): 0.3, (0, 1): -0.2, (2, 0): 1.0, (0, 2): 1.0})
    x = jax.random.normal(KEY, (200_000, 5))
    alpha, beta = train.linear_part(x, t(x))
    c = dict((tuple(a), v) for a, v in t.info["terms"])
    assert float(alpha[0]) == pytest.approx(c[(0, 0)], abs=0.01)
    np.testing.assert_allclose(np.asarray(beta)[:, 0], [c[(1, 0)], c[(0, 1)], 0, 0, 0], atol=0.01)


@pytest.fixture(scope="module")
def small_instance():
    """A degree-4 single-index target in d = 10 (threshold 1/2) and the two-stage learner's result
    on 4000 samples of it (shared by the tests below: only the test split's size differed)."""
    t = targets.single_index(jax.random.PRNGKey(5), 10, p=4)
    cfg = train.two_stage_config(256, (3.0,))
    # Errors of degree-4 targets are heavy-tailed (rare large |u.x|): the default 10000 test points.
    return t, cfg, train.two_stage(data.make_dataset(jax.random.PRNGKey(6), t, 4000), KEY, cfg)


def test_two_stage_learns_a_small_instance_with_enough_samples_only(small_instance):
    t, cfg, many = small_instance  # threshold 1/2
    few = train.two_stage(data.make_dataset(jax.random.PRNGKey(6), t, 100), KEY, cfg)
    assert few["test_error"] > t.threshold, few["test_error"]
    assert many["test_error"] < 0.5 * t.threshold, many["test_error"]
    assert (few["n1"], few["n2"], many["n1"], many["n2"]) == (50, 50, 2000, 2000)
    # The learned first layer points into span(U): most of each neuron's weight lies there.
    W, u = many["features"]["W"], np.asarray(t.info["U"])[0]
    share = np.sum((u @ W) ** 2) / np.sum(W**2)
    assert share > 0.5, share
    # Features from random weights (no step) at the same sample size stay above the threshold.
    rf = train.fit_readout({"W": np.asarray(train.symmetric_init(KEY, 10, 256)["W"]), "b1": many["features"]["b1"]},
                           data.make_dataset(jax.random.PRNGKey(6), t, 2000), preprocess="mean_linear")
    assert rf["test_error"] > t.threshold, rf["test_error"]


def test_transfer_head_on_learned_features(small_instance):
    t, _, res = small_instance  # features learned on 4000 samples (the training split alone sets them)
    t2 = targets.with_head(t, {(2,): 1.0, (3,): 1.0})  # a new g' on the same direction
    ds2 = data.make_dataset(jax.random.PRNGKey(8), t2, 200, n_test=4000)
    learned = train.fit_readout(res["features"], ds2)
    assert learned["test_error"] < 0.1, learned["test_error"]
    assert learned["beta"] is None and learned["preprocess"] == "mean"


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: train.two_stage_config(7), "width must be an even"),
        (lambda: train.two_stage_config(8, (0.0,)), "etas must be"),
        (lambda: train.two_stage_config(8, split=1.0), "split must be"),
        (lambda: train.two_stage_config(8, preprocess="linear"), "preprocess must be one of"),
        (lambda: train.two_stage_config(8, ridges=()), "ridges must be"),
        (lambda: train.two_stage(data.make_dataset(KEY, targets.single_index(KEY, 4), 1), KEY), "N must be >= 2"),
        (lambda: train.fit_readout({"W": np.ones((3, 4))}, None), "features must be a dict"),
    ],
)
def test_two_stage_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- rbk's other learners on Gaussian inputs


def test_exact_2nn_kernels_at_gaussian_points_of_different_norms():
    """The closed form needs only the pre-activation covariances, so it holds for any input norms;
    checked against a numpy Monte Carlo over the hidden units' (w, b)."""
    rng = np.random.default_rng(0)
    d, sw, sb = 10, math.sqrt(2.0), 0.3
    x = rng.standard_normal((4, d)) * np.array([[0.3], [1.0], [1.7], [3.0]])
    kfn = kernels.kernel_fn("2nn", W_std=sw, b_std=sb)
    exact = kfn(x)
    nngp, ntk = np.zeros((4, 4)), np.zeros((4, 4))
    n_mc, chunk = 2_000_000, 250_000
    for _ in range(n_mc // chunk):
        w, b = rng.standard_normal((d, chunk)), rng.standard_normal(chunk)
        h = sw / math.sqrt(d) * x @ w + sb * b
        a, da = np.maximum(h, 0), (h > 0).astype(float)
        nngp += sw**2 * a @ a.T / n_mc
        ntk += sw**2 * (da @ da.T) / n_mc
    ntk = nngp + (sw**2 * x @ x.T / d + sb**2) * ntk
    np.testing.assert_allclose(exact.nngp, nngp, rtol=0.01, atol=2e-3)
    np.testing.assert_allclose(exact.ntk, ntk, rtol=0.01, atol=2e-3)


def test_kernels_and_random_features_run_on_multi_index_data():
    t = targets.single_index(jax.random.PRNGKey(5), 8, p=4)
    ds = data.make_dataset(KEY, t, 1000, n_val=500, n_test=2000)
    ntk = kernels.fit_predict(kernels.kernel_fn("2nn"), ds, (1e-3, 1e-1))
    model = models.get_model("2nn", 256, 8, 1, parameterization="ntk")
    rf = kernels.random_features_fit_predict(model, model.init(KEY), ds, (1e-3, 1e-1))
    errs = [ntk["test_error"], rf["test_error"]]
    # Each learns the degree-2 half of f* at least in part (error below the trivial 1).
    assert all(0.0 < e < 0.9 for e in errs), errs


@pytest.mark.slow
def test_sgd_runs_on_multi_index_data():
    """rbk.train.fit draws the target's Gaussian inputs and trains the standard 2nn on them."""
    t = targets.single_index(jax.random.PRNGKey(5), 8, p=4)
    sgd = train.fit(models.get_model("2nn", 64, 8, 1), t, 1000, [0], [0.02], [0.0], train.config(5),
                    n_val=500, n_test=2000, return_params=True)
    assert not sgd.diverged.any() and 0.0 < float(sgd.final()[0, 0, 0]) < 0.9, sgd.final()
