"""rbk.kernels: closed forms by hand, symmetry / PSD, the empirical kernels of the finite nets
(the drift guard between rbk.models and the closed forms), Monte Carlo agreement of the
ResNet kernels, validation, float64 without touching the global flag, and the predictors."""

import math
import subprocess
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jax.flatten_util import ravel_pytree

from rbk import data, kernels, models, targets

D = 12


def _x(n=8, d=D, seed=0, dist="gaussian"):
    """Test inputs (numpy draws: nothing to compile), Gaussian or on the cube ``{-1, 1}^d``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) if dist == "gaussian" else rng.choice([-1.0, 1.0], (n, d))
    if n >= 4:  # a repeated point, an antipodal one and a correlated one
        x[1] = x[0]
        x[2] = -x[0]
        x[3] = 0.6 * x[0] + 0.8 * x[3]
    return x


def _relfro(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def x():
    return _x()


# ----------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("arch", models.ARCHS)
@pytest.mark.parametrize("trainable", [None, ("W", "b1"), ("W",)])
def test_symmetric_psd_and_blocks(arch, trainable, x):
    kf = kernels.kernel_fn(arch, W_std=1.3, b_std=0.4, trainable=trainable)
    x2 = _x(5, seed=1)
    for g in ("nngp", "ntk"):
        K = kf(x, get=g)
        assert K.dtype == np.float64 and K.shape == (8, 8)
        np.testing.assert_array_equal(K, K.T)
        w = np.linalg.eigvalsh(K)
        assert w.min() >= -1e-10 * w.max()
        # x2 = x1 explicitly, the transpose, and a small block size give the same numbers (to
        # ~1e-8 where two distinct rows coincide: arccos(1 - eps) amplifies rounding to sqrt(eps))
        np.testing.assert_allclose(kf(x, x, get=g), K, rtol=1e-7)
        Kc = kf(x, x2, get=g)
        np.testing.assert_allclose(kf(x2, x, get=g), Kc.T, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(kf(x, None, get=g, block_size=3), K, rtol=1e-7)
        np.testing.assert_allclose(kf(x, x2, get=g, block_size=3), Kc, rtol=1e-12, atol=1e-14)


def _hand_points(d=4):
    x = np.ones(d)  # |x|^2 / d = 1
    xo = np.array([1.0, -1.0] * (d // 2))  # orthogonal to x, same norm
    return np.stack([x, xo, -x])


@pytest.mark.parametrize("w", [1.0, math.sqrt(2.0), 1.7])
def test_relu_arccos_special_cases_by_hand(w):
    """b_std = 0, inputs at angles 0, pi/2 and pi: K = q/2, q/(2 pi), 0; D = 1/2, 1/4, 0."""
    x = _hand_points()
    pi = math.pi
    w2 = w * w
    # 2nn: q1 = w^2
    k = kernels.kernel_fn("2nn", W_std=w, b_std=0.0)(x)
    assert k.nngp[0, 0] == pytest.approx(w2 * w2 / 2, rel=1e-14)
    assert k.ntk[0, 0] == pytest.approx(w2 * w2 / 2 + w2 * 0.5 * w2, rel=1e-14)
    assert k.nngp[0, 1] == pytest.approx(w2 * w2 / (2 * pi), rel=1e-14)
    assert k.ntk[0, 1] == pytest.approx(w2 * w2 / (2 * pi), rel=1e-14)  # x.x' = 0 kills the W term
    assert abs(k.nngp[0, 2]) < 1e-15 and abs(k.ntk[0, 2]) < 1e-15
    # 3nn at angle 0: q2 = w^4/2, NNGP = w^2 q2/2, Theta2 = q2 + w^2 q1/2 = w^4, NTK = w^2 q2/2 + w^2/2 Theta2
    k = kernels.kernel_fn("3nn", W_std=w, b_std=0.0)(x)
    assert k.nngp[0, 0] == pytest.approx(w2**3 / 4, rel=1e-14)
    assert k.ntk[0, 0] == pytest.approx(w2**3 / 4 + w2**3 / 2, rel=1e-14)
    # 3nn at pi/2: S2 = w^2 K1 = w^4/(2 pi), q2 = w^4/2, cos t2 = 1/pi
    c2 = 1 / pi
    t2 = math.acos(c2)
    k2 = (w2 * w2 / 2) / (2 * pi) * (math.sin(t2) + (pi - t2) * c2)
    assert k.nngp[0, 1] == pytest.approx(w2 * k2, rel=1e-13)
    assert k.ntk[0, 1] == pytest.approx(w2 * k2 + w2 * (pi - t2) / (2 * pi) * w2 * w2 / (2 * pi), rel=1e-13)
    # 3resnet at angle 0: means M1 = w/sqrt(2 pi), M2 = sqrt(w^4/2)/sqrt(2 pi)
    k = kernels.kernel_fn("3resnet", W_std=w, b_std=0.0)(x)
    m1, m2 = w / math.sqrt(2 * pi), w2 / math.sqrt(2) / math.sqrt(2 * pi)
    nngp = w2 * (w2 / 2 + w2 * w2 / 4 + 2 * m1 * m2)
    assert k.nngp[0, 0] == pytest.approx(nngp, rel=1e-14)
    theta_u = w2 * (w2 / 2) * w2 * 0.5
    theta_w = w2 * 1.0 * w2 * 0.5 * (1 + w2 * 0.5)
    assert k.ntk[0, 0] == pytest.approx(nngp + theta_u + theta_w, rel=1e-14)


def test_bias_only_and_group_decomposition(x):
    """The NTK is the sum of its groups; rates scale groups linearly; frozen output = NTK - NNGP."""
    for arch in models.ARCHS:
        groups = kernels.LAYERS[arch]
        full = kernels.kernel_fn(arch, W_std=1.2, b_std=0.3)(x)
        parts = sum(kernels.kernel_fn(arch, W_std=1.2, b_std=0.3, trainable=(g,))(x, get="ntk") for g in groups)
        np.testing.assert_allclose(parts, full.ntk, rtol=1e-12)
        frozen = kernels.kernel_fn(arch, W_std=1.2, b_std=0.3, trainable=groups[:-1])(x, get="ntk")
        np.testing.assert_allclose(frozen, full.ntk - full.nngp, rtol=1e-10, atol=1e-12)
        rated = kernels.kernel_fn(arch, W_std=1.2, b_std=0.3, trainable=("W", "b1"), layer_rates={"W": 3.0})
        w_only = kernels.kernel_fn(arch, W_std=1.2, b_std=0.3, trainable=("W",))(x, get="ntk")
        b_only = kernels.kernel_fn(arch, W_std=1.2, b_std=0.3, trainable=("b1",))(x, get="ntk")
        np.testing.assert_allclose(rated(x, get="ntk"), 3 * w_only + b_only, rtol=1e-12)


def test_get_convention_and_model_views(x):
    kf = kernels.kernel_fn("3resnet", W_std=1.1, b_std=0.2)
    both = kf(x, None, ("ntk", "nngp"))
    assert both._fields == ("ntk", "nngp")
    np.testing.assert_allclose(both.ntk, kf(x, None, "ntk"), rtol=1e-14)
    np.testing.assert_allclose(both[1], kf(x, get="nngp"), rtol=1e-14)
    np.testing.assert_allclose(kf(x, x[:3], get=["nngp"]).nngp, both.nngp[:, :3], rtol=1e-7)
    m = models.get_model("3resnet", 8, D, 2, parameterization="ntk", W_std=1.1, b_std=0.2)
    np.testing.assert_array_equal(kernels.model_kernel_fn(m)(x, get="ntk"), both.ntk)
    with pytest.raises(AttributeError, match=r"rbk\.kernels\.model_kernel_fn\(model\)"):  # the former method points here
        m.kernel_fn()
    assert not hasattr(m, "kernel_fn") and not hasattr(m, "no_such_field")
    th = models.get_model("3resnet", 8, D, 2, parameterization="ntk", variant="theory")
    assert kernels.model_kernel_fn(th).trainable == ("W", "U")
    fr = models.get_model("2nn", 8, D, 2, parameterization="ntk", train_output=False)
    assert kernels.model_kernel_fn(fr).trainable == ("W", "b1")
    with pytest.raises(ValueError, match="parameterization"):
        kernels.model_kernel_fn(models.get_model("2nn", 8, D, 2))


def test_input_dtype_and_scale_invariance(x):
    kf = kernels.kernel_fn("3nn")
    np.testing.assert_allclose(kf(x.astype(np.float32), get="ntk"), kf(x.astype(np.float32).astype(np.float64), get="ntk"))
    np.testing.assert_allclose(kf(jnp.asarray(x, jnp.float32), get="nngp"), kf(np.float32(x), get="nngp"))
    # zero inputs with zero bias: zero variance, no NaN
    k0 = kernels.kernel_fn("3resnet", b_std=0.0)(np.zeros((2, 3)))
    assert np.all(np.isfinite(k0.ntk)) and np.all(k0.nngp == 0)


# ----------------------------------------------------------------------------- validation, x64


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: kernels.kernel_fn("4nn"), "arch"),
        (lambda: kernels.kernel_fn("2nn", W_std=0.0), "W_std"),
        (lambda: kernels.kernel_fn("2nn", W_std=-1.0), "W_std"),
        (lambda: kernels.kernel_fn("2nn", W_std=float("nan")), "W_std"),
        (lambda: kernels.kernel_fn("2nn", b_std=-0.1), "b_std"),
        (lambda: kernels.kernel_fn("2nn", trainable=("U",)), "trainable"),
        (lambda: kernels.kernel_fn("2nn", trainable="W"), "trainable"),
        (lambda: kernels.kernel_fn("3nn", layer_rates={"W": -1.0}), "layer_rates"),
        (lambda: kernels.kernel_fn("3nn", trainable=("W",), layer_rates={"U": 1.0}), "layer_rates"),
        (lambda: kernels.kernel_fn("2nn")(np.ones((3, 4)), np.ones((2, 5))), "x2"),
        (lambda: kernels.kernel_fn("2nn")(np.array([[1.0, np.nan]])), "x1"),
        (lambda: kernels.kernel_fn("2nn")(np.ones((2, 2)), np.array([[np.inf, 0.0]])), "x2"),
        (lambda: kernels.kernel_fn("2nn")(np.ones(3)), "x1"),
        (lambda: kernels.kernel_fn("2nn")(np.ones((2, 2)), get="cov"), "get"),
        (lambda: kernels.kernel_fn("2nn")(np.ones((2, 2)), get=("ntk", "ntk")), "get"),
        (lambda: kernels.kernel_fn("2nn")(np.ones((2, 2)), get=()), "get"),
        (lambda: kernels.kernel_fn("2nn")(np.ones((2, 2)), block_size=0), "block_size"),
        (lambda: kernels.ridge_solve(np.eye(3), np.ones(3), ridge=-1.0), "ridge"),
        (lambda: kernels.ridge_solve(np.ones((3, 2)), np.ones(3)), "k_train_train"),
        (lambda: kernels.ridge_solve(np.eye(3), np.ones(4)), "y_train"),
        (lambda: kernels.gradient_flow_predict(np.eye(3), np.ones(3), -1.0), "t"),
        (lambda: kernels.gradient_flow_predict(np.eye(3), np.ones(3), 1.0, learning_rate=0), "learning_rate"),
        (lambda: kernels.empirical_kernel_fn(models.get_model("2nn", 4, 3, 1), outputs="diag"), "outputs"),
        (lambda: kernels.empirical_kernel_fn(models.get_model("2nn", 4, 3, 1), trainable=("U",)), "trainable"),
        (lambda: kernels.empirical_kernel_fn(models.get_model("2nn", 4, 3, 1))(np.ones((2, 3))), "params"),
    ],
)
def test_bad_input_raises_value_error_naming_parameter(call, name, monkeypatch):
    # nothing may be compiled before the check fails
    monkeypatch.setattr(kernels.analytic, "closed_form_jit", None)
    monkeypatch.setattr(kernels.empirical, "empirical_block_jit", None)
    with pytest.raises(ValueError, match=name):
        call()


def test_fit_predict_validation():
    ds = _tiny(n=10, k=2, n_val=5, n_test=5)
    kf = kernels.kernel_fn("2nn")
    with pytest.raises(ValueError, match="ridges"):
        kernels.fit_predict(kf, ds, ridges=(1, 2, 3, 4, 5, 6))
    with pytest.raises(ValueError, match="ridges"):
        kernels.fit_predict(kf, ds, ridges=(-1.0,))
    with pytest.raises(ValueError, match="get"):
        kernels.fit_predict(kf, ds, get="cov")
    with pytest.raises(ValueError, match="dataset"):
        kernels.fit_predict(kf, ds._replace(x_val=ds.x_val[:, :3]))
    with pytest.raises(ValueError, match="dataset"):
        kernels.fit_predict(kf, (1, 2))
    m = models.get_model("2nn", 4, 4, 2, parameterization="ntk")
    with pytest.raises(ValueError, match="params"):
        kernels.random_features_fit_predict(m, {"W": np.ones((4, 4))}, ds)


def test_x64_flag_unchanged(x):
    before = jax.config.jax_enable_x64
    K = kernels.kernel_fn("3resnet")(x, get="ntk")
    m = models.get_model("2nn", 16, D, 1, parameterization="ntk")
    E = kernels.empirical_kernel_fn(m)(x, None, "ntk", m.init(jax.random.PRNGKey(0)))
    assert K.dtype == E.dtype == np.float64
    assert jax.config.jax_enable_x64 == before
    assert jnp.zeros(1).dtype == (jnp.float64 if before else jnp.float32)


def test_import_pulls_no_training_stack():
    code = "import sys, rbk.kernels; bad = [m for m in ('flax', 'optax', 'rbk.train') if m in sys.modules]; assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ----------------------------------------------------------------------------- empirical vs exact


def _draws(model, ekf, x, n, seed0=0, get=("nngp", "ntk")):
    init = jax.jit(model.init)
    return [ekf(x, None, get, init(jax.random.PRNGKey(seed0 + s))) for s in range(n)]


def _convergence(arch, widths, n_mean, n_single, x, d):
    exact = kernels.kernel_fn(arch)(x)
    single = {g: [] for g in ("nngp", "ntk")}
    mean_err = {}
    for w in widths:
        model = models.get_model(arch, w, d, 1, parameterization="ntk")
        ekf = kernels.empirical_kernel_fn(model, max_tangent_bytes=2**29)
        Es = _draws(model, ekf, x, max(n_single, n_mean if w == widths[-1] else 0), seed0=1000 * w)
        for g in single:
            errs = [_relfro(getattr(E, g), getattr(exact, g)) for E in Es[:n_single]]
            single[g].append(float(np.sqrt(np.mean(np.square(errs)))))  # RMS single-draw error
            if w == widths[-1]:
                mean_err[g] = _relfro(np.mean([getattr(E, g) for E in Es[:n_mean]], 0), getattr(exact, g))
    slopes = {g: np.polyfit(np.log(widths), np.log(single[g]), 1)[0] for g in single}
    return mean_err, slopes, single


@pytest.mark.parametrize("arch", models.ARCHS)
def test_empirical_converges_to_exact_small(arch):
    """Default lane: widths 64 and 512 (the slow test runs the bar at 256..4096)."""
    xx = _x(8, 30, seed=3, dist="cube")
    mean_err, slopes, single = _convergence(arch, [64, 512], 8, 8, xx, 30)
    for g in ("nngp", "ntk"):
        assert mean_err[g] < 0.06, (g, mean_err, single)
        assert -0.85 <= slopes[g] <= -0.25, (g, slopes, single)


@pytest.mark.slow
@pytest.mark.parametrize("arch", models.ARCHS)
def test_empirical_converges_to_exact_bar(arch):
    """The bar: mean of 8 draws within 2 % at width 4096; single-draw slope in [-0.7, -0.3].

    The mean of 8 independent draws has a random error of about ``c / sqrt(8 m)`` (the bias is
    ``O(1/m)``), ``c`` = RMS single-draw error x ``sqrt(m)``: ``c ~ 2-2.5`` for 2nn and 3resnet
    (1.0-1.3 % expected at m = 4096) but ``c ~ 3-3.5`` for the 3nn NNGP and ``~2.9`` for its NTK
    (two layers of sampling noise): 1.4-1.9 % expected, so for 3nn the 2 % bar holds on these
    fixed draws (1.0 % and 1.3 %) but is statistically thin (another set of 8 draws on other
    inputs gave 2.2 % and 2.4 %). The expected value is asserted too.
    """
    xx = _x(8, 30, seed=3, dist="cube")
    mean_err, slopes, single = _convergence(arch, [256, 512, 1024, 2048, 4096], 8, 8, xx, 30)
    for g in ("nngp", "ntk"):
        expected8 = single[g][-1] / math.sqrt(8)
        print(f"{arch} {g}: mean-of-8 error {mean_err[g]:.4f} (expected {expected8:.4f}), slope {slopes[g]:.3f}")
        assert mean_err[g] < 0.02 and expected8 < 0.02, (g, mean_err, single)
        assert -0.7 <= slopes[g] <= -0.3, (g, slopes, single)


def _monte_carlo(arch, width, n_draws, variant="practical", train_output=True, rates=None):
    xx = _x(4, D, seed=5)
    xx[1] = 0.6 * xx[0] + 0.8 * xx[1]
    model = models.get_model(arch, width, D, 1, parameterization="ntk", variant=variant,
                             train_output=train_output, W_std=1.4, b_std=0.3)
    exact = kernels.model_kernel_fn(model, layer_rates=rates)(xx)
    Es = _draws(model, kernels.empirical_kernel_fn(model, layer_rates=rates, max_tangent_bytes=2**29), xx, n_draws)
    iu = np.triu_indices(4)
    for g in ("nngp", "ntk"):
        S = np.stack([getattr(E, g) for E in Es])
        mu, se = S.mean(0), S.std(0, ddof=1) / math.sqrt(n_draws)
        z = (mu - getattr(exact, g)) / se
        assert np.all(np.abs(z[iu]) < 4), (arch, variant, g, z)
        # and the error bars are tight enough to mean something (a few % of the entries)
        assert np.all(se[iu] < 0.05 * np.abs(getattr(exact, g)).max())


@pytest.mark.parametrize(
    "variant, train_output, rates",
    [("practical", True, None), ("practical", False, None), ("theory", True, {"W": 2.0, "U": 0.5})],
)
def test_resnet_monte_carlo(variant, train_output, rates):
    """3resnet: full, frozen-output and theory (dW, dU with rates) NTKs and the NNGP, within 4 SE."""
    _monte_carlo("3resnet", 512, 48, variant, train_output, rates)


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch, variant, train_output, rates",
    [
        ("3resnet", "practical", True, None),
        ("3resnet", "practical", False, None),
        ("3resnet", "theory", True, {"W": 2.0, "U": 0.5}),
        ("3nn", "practical", True, None),
        ("3nn", "theory", True, {"W": 0.5, "U": 2.0}),
        ("2nn", "practical", False, None),
    ],
)
def test_monte_carlo_large_width(arch, variant, train_output, rates):
    _monte_carlo(arch, 2048, 64, variant, train_output, rates)


def test_empirical_full_outputs_and_trainable_selection():
    xx = _x(5, 4, seed=7)
    m = models.get_model("3resnet", 6, 4, 3, parameterization="ntk", W_std=1.2, b_std=0.5)
    p = _np_params(m, 2)
    full = kernels.empirical_kernel_fn(m, outputs="full")(xx, xx[:3], ("nngp", "ntk"), p)
    tr = kernels.empirical_kernel_fn(m)(xx, xx[:3], ("nngp", "ntk"), p)
    assert full.ntk.shape == (5, 3, 3, 3)
    np.testing.assert_allclose(np.trace(full.ntk, axis1=2, axis2=3) / 3, tr.ntk, rtol=1e-12)
    # reference: the explicit float64 Jacobian of model.apply
    with kernels.x64():
        p64 = {k: jnp.asarray(v, jnp.float64) for k, v in p.items()}
        J = jax.jit(jax.jacrev(lambda q, z: m.apply(q, z), argnums=0))
        J1, J2 = J(p64, jnp.asarray(xx)), J(p64, jnp.asarray(xx[:3]))
        ref = {g: sum(np.einsum("iap,jbp->ijab", np.asarray(J1[n]).reshape(5, 3, -1), np.asarray(J2[n]).reshape(3, 3, -1))
                      for n in names)
               for g, names in (("ntk", tuple(p)), ("nngp", ("A",)), ("frozen", ("W", "b1", "U", "b2")))}
    np.testing.assert_allclose(full.ntk, ref["ntk"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(full.nngp, ref["nngp"], rtol=1e-10, atol=1e-12)
    fr = kernels.empirical_kernel_fn(m, trainable=("W", "b1", "U", "b2"), outputs="full")(xx, xx[:3], "ntk", p)
    np.testing.assert_allclose(fr, ref["frozen"], rtol=1e-10, atol=1e-12)
    # the theory variant at its initialisation: d/d dW = d/dW, weighted by the rates
    th = models.get_model("3resnet", 6, 4, 3, parameterization="ntk", variant="theory", W_std=1.2, b_std=0.5)
    pt = _np_params(th, 2)
    assert set(pt) == {"W0", "dW", "U0", "dU", "b1", "b2", "A"}
    pt_eq = dict(pt, W0=p["W"], U0=p["U"], b1=p["b1"], b2=p["b2"], A=p["A"])
    got = kernels.empirical_kernel_fn(th, layer_rates={"W": 2.0, "U": 0.5}, outputs="full")(xx, xx[:3], "ntk", pt_eq)
    with kernels.x64():
        want = 2.0 * np.einsum("iap,jbp->ijab", np.asarray(J1["W"]).reshape(5, 3, -1), np.asarray(J2["W"]).reshape(3, 3, -1))
        want += 0.5 * np.einsum("iap,jbp->ijab", np.asarray(J1["U"]).reshape(5, 3, -1), np.asarray(J2["U"]).reshape(3, 3, -1))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="trainable"):
        kernels.empirical_kernel_fn(th, trainable=("A",))(xx, None, "ntk", pt)


# ----------------------------------------------------------------------------- predictors


def _tiny(n=30, seed=0, k=3, n_val=20, n_test=25):
    """A small ``rbk.data.Dataset`` on the cube ``{-1, 1}^{2k}``: ``y_a = x_{2a} x_{2a+1} + 0.3 x_1 x_2 x_3 x_4``."""
    rng = np.random.default_rng(seed)
    xs = [rng.choice([-1.0, 1.0], (m, 2 * k)).astype(np.float32) for m in (n, n_val, n_test)]
    ys = [x[:, 0::2] * x[:, 1::2] + 0.3 * np.prod(x[:, :4], axis=1, keepdims=True) for x in xs]
    return data.Dataset(xs[0], ys[0], xs[1], ys[1], xs[2], ys[2])


def _np_params(model, seed):
    """ntk-parameterization draws (all N(0, 1)) without compiling model.init (predictor tests)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    return {n: (np.zeros if n in ("dW", "dU") else rng.standard_normal)(v.shape).astype(np.float32)
            for n, v in shapes.items()}


def _np_features(p, x, W_std, b_std):
    """3resnet features by hand (numpy, float64)."""
    relu = lambda z: np.maximum(z, 0.0)
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    a1 = relu(W_std / math.sqrt(x.shape[1]) * x @ p["W"] + b_std * p["b1"])
    a2 = relu(W_std / math.sqrt(a1.shape[1]) * a1 @ p["U"] + b_std * p["b2"])
    return a1 + a2


def test_ridge_solve_matches_numpy():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((12, 7))
    K = a @ a.T + 0.1 * np.eye(12)
    y = rng.standard_normal((12, 3))
    np.testing.assert_allclose(kernels.ridge_solve(K, y, 0.3), np.linalg.solve(K + 0.3 * np.eye(12), y), rtol=1e-10)
    np.testing.assert_allclose(kernels.ridge_solve(K, y[:, 0]), np.linalg.solve(K, y[:, 0]), rtol=1e-9)
    Kc = K.copy()
    kernels.ridge_solve(Kc, y, 0.3)
    np.testing.assert_array_equal(Kc, K)  # default: input untouched
    # rank-deficient, ridgeless: warning and the pseudo-inverse (minimum-norm) solution
    Ks = a @ a.T
    for overwrite in (False, True):
        Kw = Ks.copy()
        with pytest.warns(kernels.KernelSolveWarning):
            alpha = kernels.ridge_solve(Kw, y, 0.0, overwrite=overwrite)
        np.testing.assert_allclose(Ks @ alpha, Ks @ np.linalg.pinv(Ks, rcond=1e-10) @ y, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(alpha, np.linalg.pinv(Ks, rcond=1e-10) @ y, rtol=1e-5, atol=1e-6)


def test_fit_predict_matches_numpy_reference():
    ds = _tiny()
    kf = kernels.kernel_fn("3resnet")
    with warnings.catch_warnings():
        warnings.simplefilter("error", kernels.KernelSolveWarning)
        out = kernels.fit_predict(kf, ds, ridges=(1e-4, 1e-2, 1.0), return_predictions=True, block_size=7)
    xtr, ytr = np.asarray(ds.x_train, np.float64), np.asarray(ds.y_train, np.float64)
    K = kf(xtr, get="ntk")
    errs = []
    for lam in (1e-4, 1e-2, 1.0):
        r = lam * np.mean(np.diag(K))
        alpha = np.linalg.solve(K + r * np.eye(len(K)), ytr)
        pv = kf(np.asarray(ds.x_val), xtr, get="ntk") @ alpha
        pt = kf(np.asarray(ds.x_test), xtr, get="ntk") @ alpha
        errs.append((np.mean(np.sum((pv - np.asarray(ds.y_val)) ** 2, 1)), np.mean(np.sum((pt - np.asarray(ds.y_test)) ** 2, 1)), pt))
    best = int(np.argmin([e[0] for e in errs]))
    assert out["lam"] == (1e-4, 1e-2, 1.0)[best]
    np.testing.assert_allclose(out["val_errors"], [e[0] for e in errs], rtol=1e-8)
    np.testing.assert_allclose(out["test_error"], errs[best][1], rtol=1e-8)
    np.testing.assert_allclose(out["pred_test"], errs[best][2], rtol=1e-7, atol=1e-8)
    assert out["ridge"] == pytest.approx(out["lam"] * np.mean(np.diag(K)))
    # a foreign kernel function with neural-tangents' signature gives the same numbers
    out2 = kernels.fit_predict(lambda a, b, get: kf(a, b, get), ds, ridges=(1e-4, 1e-2, 1.0))
    np.testing.assert_allclose(out2["test_errors"], out["test_errors"], rtol=1e-7)
    # ridgeless interpolates the training set
    out0 = kernels.fit_predict(kf, ds, ridges=(0.0,))
    assert out0["train_error"] < 1e-12


def test_gradient_flow_matches_expm_reference():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((10, 6))
    K = a @ a.T + 0.5 * np.eye(10)
    Kt = rng.standard_normal((4, 6)) @ a.T
    y, f0, ft0 = rng.standard_normal((10, 2)), rng.standard_normal((10, 2)), rng.standard_normal((4, 2))
    lr, ridge, N = 0.7, 0.2, y.size
    Kr = K + ridge * np.eye(10)
    for t in (0.0, 3.0, 50.0):
        tr, te = kernels.gradient_flow_predict(K, y, t, k_test_train=Kt, fx_train_0=f0, fx_test_0=ft0,
                                               learning_rate=lr, ridge=ridge)
        M = np.linalg.solve(Kr, np.eye(10) - scipy.linalg.expm(-lr * t * Kr / N))
        np.testing.assert_allclose(te, ft0 + Kt @ M @ (y - f0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(tr, f0 + K @ M @ (y - f0), rtol=1e-9, atol=1e-12)
    tr, te = kernels.gradient_flow_predict(K, y, None, k_test_train=Kt)
    np.testing.assert_allclose(tr, y, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(te, Kt @ np.linalg.solve(K, y), rtol=1e-9)
    trs, tes = kernels.gradient_flow_predict(K, y[:, 0], np.array([1.0, np.inf]), k_test_train=Kt)
    assert trs.shape == (2, 10) and tes.shape == (2, 4)
    np.testing.assert_allclose(tes[1], te[:, 0], rtol=1e-8)
    # fit_predict(t=...) is gradient flow from zero output, with the same normalisation
    ds = _tiny(seed=2)
    kf = kernels.kernel_fn("2nn")
    out = kernels.fit_predict(kf, ds, ridges=(0.0,), t=5.0, learning_rate=2.0, return_predictions=True)
    xtr = np.asarray(ds.x_train, np.float64)
    _, want = kernels.gradient_flow_predict(kf(xtr, get="ntk"), np.asarray(ds.y_train), 5.0, learning_rate=2.0,
                                            k_test_train=kf(np.asarray(ds.x_test), xtr, get="ntk"))
    np.testing.assert_allclose(out["pred_test"], want, rtol=1e-8, atol=1e-10)


def test_random_features_primal_equals_dual_and_reference():
    width = 24
    full = _tiny(n=30, n_val=12, n_test=14)
    m = models.get_model("3resnet", width, full.x_train.shape[1], 3, parameterization="ntk")
    p = _np_params(m, 4)
    for n, primal in ((30, True), (16, False)):
        ds = full._replace(x_train=full.x_train[:n], y_train=full.y_train[:n])
        out = kernels.random_features_fit_predict(m, p, ds, ridges=(1e-3, 1e-1), return_predictions=True)
        assert out["primal"] is primal
        P = _np_features(p, np.asarray(ds.x_train, np.float64), m.W_std, m.b_std)
        Pt = _np_features(p, np.asarray(ds.x_test, np.float64), m.W_std, m.b_std)
        r = out["lam"] * np.mean(np.sum(P * P, 1))
        w = np.linalg.solve(P.T @ P + r * np.eye(width), P.T @ np.asarray(ds.y_train, np.float64))
        np.testing.assert_allclose(out["pred_test"], Pt @ w, rtol=1e-7, atol=1e-9)


def test_linearized_full_is_the_taylor_model():
    """'full': ridge regression of the first-order Taylor model in parameter space (explicit Jacobian)."""
    ds = _tiny(n=12, k=2, n_val=10, n_test=14)
    d = ds.x_train.shape[1]
    m = models.get_model("3resnet", 5, d, 2, parameterization="ntk")
    p = _np_params(m, 3)
    out = kernels.linearized_fit_predict(m, p, ds, ridges=(1e-3,), outputs="full", return_predictions=True)
    with kernels.x64():
        p64 = {k: jnp.asarray(v, jnp.float64) for k, v in p.items()}
        flat, unravel = ravel_pytree(p64)
        f = lambda th, z: m.apply(unravel(th), z)
        xtr, xte = jnp.asarray(ds.x_train, jnp.float64), jnp.asarray(ds.x_test, jnp.float64)
        jac = jax.jit(jax.jacrev(f))
        Jtr = np.asarray(jac(flat, xtr)).reshape(-1, flat.size)
        Jte = np.asarray(jac(flat, xte)).reshape(-1, flat.size)
        f0tr, f0te = np.asarray(f(flat, xtr)), np.asarray(f(flat, xte))
    K = Jtr @ Jtr.T
    r = 1e-3 * np.mean(np.diag(K))
    delta = Jtr.T @ np.linalg.solve(K + r * np.eye(len(K)), (np.asarray(ds.y_train) - f0tr).reshape(-1))
    np.testing.assert_allclose(out["pred_test"], f0te + (Jte @ delta).reshape(f0te.shape), rtol=1e-7, atol=1e-9)
    # 'trace' uses the output-averaged NTK for every output
    outt = kernels.linearized_fit_predict(m, p, ds, ridges=(1e-3,), return_predictions=True)
    Kt = np.einsum("iaP,jaP->ij", Jtr.reshape(12, 2, -1), Jtr.reshape(12, 2, -1)) / 2
    Kte = np.einsum("iaP,jaP->ij", Jte.reshape(-1, 2, flat.size), Jtr.reshape(12, 2, -1)) / 2
    a = np.linalg.solve(Kt + 1e-3 * np.mean(np.diag(Kt)) * np.eye(12), np.asarray(ds.y_train) - f0tr)
    np.testing.assert_allclose(outt["pred_test"], f0te + Kte @ a, rtol=1e-7, atol=1e-9)


@pytest.mark.slow
def test_bar_paper_instance_ntk_above_threshold():
    """Paper instance, N = 10000, seeds 0-2: 3resnet NTK kernel ridge learns F, not G(F)."""
    tgt = targets.paper_instance()
    kf = kernels.kernel_fn("3resnet")
    errs = []
    t0 = time.perf_counter()
    for seed in range(3):
        ds = data.make_dataset(data.seed_keys(seed)[0], tgt, 10000)
        errs.append(kernels.fit_predict(kf, ds)["test_error"])
    print(f"3resnet NTK N=10000 test errors {errs}, mean {np.mean(errs):.4f}, {time.perf_counter() - t0:.0f}s")
    assert np.mean(errs) >= tgt.threshold


def test_large_cholesky_runs_on_one_blas_thread():
    """Above SINGLE_THREAD_CHOLESKY_N the dense solver's factorisation runs on one BLAS thread (a
    bundled-OpenBLAS dpotrf crash, rbk.kernels.solvers.dense), and up to SMALL_CHOLESKY_N (thread
    teams cost more than they save there); between the two the thread count is untouched."""
    threadpool_info = pytest.importorskip("threadpoolctl").threadpool_info  # (absent in the nt lane's pinned env)
    from rbk.kernels.solvers import dense

    before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    with dense._blas_threads_for_cholesky(dense.SINGLE_THREAD_CHOLESKY_N + 1):
        assert all(i["num_threads"] == 1 for i in threadpool_info() if i["user_api"] == "blas")
    with dense._blas_threads_for_cholesky(dense.SINGLE_THREAD_CHOLESKY_N):
        assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == before
    with dense._blas_threads_for_cholesky(dense.SMALL_CHOLESKY_N + 1):
        assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == before
    with dense._blas_threads_for_cholesky(dense.SMALL_CHOLESKY_N):
        assert all(i["num_threads"] == 1 for i in threadpool_info() if i["user_api"] == "blas")
    assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == before
