"""rbk.theory: the Walsh spectrum rebuilds the Gram, the target's degree profile matches a
brute-force Walsh transform, the eigenlearning estimate matches a second implementation and
(approximately) the average of actual kernel ridge fits, and bad input is refused."""

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize

from rbk import kernels, targets, theory


def characters(d):
    """``Phi[x, S] = chi_S(x)`` on all points (bit order of ``all_cube_points``), and ``|S|``."""
    X = theory.all_cube_points(d)
    S = theory.all_cube_points(d) < 0  # row S: the bitmask as booleans
    Phi = np.prod(np.where(S[None, :, :], X[:, None, :], 1.0), axis=2)
    return X, Phi, S.sum(1)


# ----------------------------------------------------------------------------- spectrum


def test_krawtchouk_is_the_sum_of_characters():
    d = 6
    X, Phi, deg = characters(d)
    K = theory.krawtchouk(d)
    for i, j in [(0, 0), (0, 5), (3, 17), (10, 63), (21, 42)]:
        h = int(np.sum(X[i] != X[j]))
        for l in range(d + 1):
            assert K[l][h] == pytest.approx(np.sum(Phi[i, deg == l] * Phi[j, deg == l]), abs=1e-12)


@pytest.mark.parametrize("arch", ["2nn", "3nn", "3resnet"])
def test_spectrum_rebuilds_the_gram(arch):
    d = 8
    kfn = kernels.kernel_fn(arch, b_std=0.3)
    X, Phi, deg = characters(d)
    grams = kfn(X, None, get=("ntk", "nngp"))
    for get, gram in zip(("ntk", "nngp"), grams):
        s = theory.kernel_spectrum(kfn, d, get)
        rebuilt = (Phi * s.eigenvalues[deg]) @ Phi.T  # sum_S lambda_|S| chi_S(x) chi_S(x')
        np.testing.assert_allclose(rebuilt, gram, rtol=0, atol=1e-13 * np.abs(gram).max())
        np.testing.assert_allclose(s.gram(X), gram, rtol=0, atol=1e-13 * np.abs(gram).max())
        # an independent route: the eigenvalues of the Gram / 2^d, with multiplicities C(d, l)
        eig = np.sort(scipy.linalg.eigvalsh(gram / 2**d))
        want = np.sort(np.repeat(s.eigenvalues, [math.comb(d, l) for l in range(d + 1)]))
        np.testing.assert_allclose(eig, want, rtol=0, atol=1e-14 * s.scale)
        assert s.scale == gram[0, 0] and s.trace == pytest.approx(s.scale, rel=1e-14)
        assert np.all(s.multiplicities == [math.comb(d, l) for l in range(d + 1)])


@pytest.mark.skipif(np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps, reason="no extended precision")
def test_float64_values_and_eigenvalues_within_the_roundoff_bound():
    """A long-double second implementation of the 2nn NTK at d = 30: the float64 kernel values
    are within VALUE_ULPS ulps (of max |k|) and every eigenvalue within its stated bound."""
    LD, d = np.longdouble, 30
    pi = np.arccos(LD(-1))
    sw2, sb2 = LD(2), LD("0.01")
    lin = (d - 2 * np.arange(d + 1).astype(LD)) / d
    q, s1 = sw2 + sb2, sw2 * lin + sb2
    c = s1 / q
    t = np.arccos(c)
    k1, d1 = q / (2 * pi) * (np.sqrt(1 - c * c) + (pi - t) * c), (pi - t) / (2 * pi)
    ntk = sw2 * k1 + sw2 * lin * sw2 * d1 + sb2 * sw2 * d1  # Theta_A + Theta_W + Theta_b1
    s = theory.kernel_spectrum(kernels.kernel_fn("2nn", b_std=0.1), d, "ntk")
    eps = np.finfo(np.float64).eps
    assert np.max(np.abs(s.values.astype(LD) - ntk)) < theory.VALUE_ULPS * eps * float(np.max(ntk))
    lam_ref = np.array([sum(LD(w.numerator) / LD(w.denominator) * v for w, v in zip(row, ntk))
                        for row in theory._transform_weights(d)])  # fmt: skip
    assert np.all(np.abs(s.eigenvalues - lam_ref) <= s.roundoff)
    assert np.all(lam_ref > 0)
    # the degrees that matter for the paper instance (<= 8) are accurate to far better than 1e-6
    assert np.max(np.abs(s.eigenvalues[:9] / lam_ref[:9] - 1)) < 1e-6


def test_spectrum_of_a_foreign_kernel_function_and_exactness():
    d = 12
    # k(x, x') = (1 + x.x'/d)^3: degree-l eigenvalues are known in closed form from the expansion
    kfn = lambda a, b, get: (1.0 + a @ b.T / d) ** 3  # noqa: E731
    s = theory.kernel_spectrum(kfn, d, "ntk")
    X = theory.all_cube_points(d)[::37]
    np.testing.assert_allclose(s.gram(X), kfn(X, X, None), rtol=1e-13)
    assert np.all(s.eigenvalues[4:] <= s.roundoff[4:])  # a cubic has no Walsh degree above 3: 0 up to round-off
    assert np.all(s.roundoff[4:] < 1e-10 * s.eigenvalues[3])
    # (1 + t)^3 with t = x.x'/d: chi_S for |S| = 3 only from t^3: 3!/d^3
    assert s.eigenvalues[3] == pytest.approx(6 / d**3, rel=1e-12)


def test_non_psd_kernel_is_refused():
    d = 6
    bad = np.array([1.0, 1.5, 0.0, 0.0, 0.0, 0.0, 0.0])  # neighbours more similar than the point itself
    with pytest.raises(ValueError, match="not positive semi-definite.*Walsh degree"):
        theory.spectrum_from_values(bad)
    with pytest.raises(ValueError, match="values"):
        theory.spectrum_from_values([1.0])
    with pytest.raises(ValueError, match="finite"):
        theory.spectrum_from_values([1.0, np.nan, 0.0])
    # round-off-sized negatives are clipped, not refused
    ok = theory.spectrum_from_values(np.ones(d + 1) + np.r_[0.0, np.full(d, 1e-17)])
    assert np.all(ok.eigenvalues >= 0)
    with pytest.raises(ValueError, match="get"):
        theory.kernel_spectrum(kernels.kernel_fn("2nn"), 6, "rf")


# ----------------------------------------------------------------------------- target power


def smooth_target(d):
    """A generic (non-parity) member of the concept class: every Walsh degree present."""
    import jax.numpy as jnp

    w = jnp.asarray(np.random.default_rng(1).normal(size=(d, 2)) / math.sqrt(d))
    return targets.concept(lambda x: jnp.tanh(x @ w.astype(x.dtype)) * 2.0, lambda y: jnp.sin(y[:, ::-1] * 2.0),
                           d, 2, alpha=0.5)  # fmt: skip


def brute_power(target, d):
    """Squared Walsh coefficients by degree from the explicit character matrix (no fast transform)."""
    X, Phi, deg = characters(d)
    coef = Phi.T @ theory._evaluate(target, X) / 2**d
    return np.bincount(deg, weights=np.sum(coef**2, 1), minlength=d + 1)


@pytest.mark.parametrize("kw", [dict(d=8, k=4, g_degree=2, alpha=0.4, beta=0.7),
                                dict(d=10, k=5, g_degree=3, alpha=0.3),
                                dict(d=8, k=3, g_degree=1, alpha=0.6, beta=1.2)])  # g = 1: G(F) overlaps F_1
def test_paper_power_matches_brute_force(kw):
    t = targets.paper_instance(**kw)
    p, se = theory.target_power(t)
    np.testing.assert_allclose(p, brute_power(t, kw["d"]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(theory._power_exact(t, kw["d"]), p, rtol=1e-12, atol=1e-12)  # the fast transform
    assert np.all(se == 0)
    assert p.sum() == pytest.approx(np.mean(np.sum(theory._evaluate(t, theory.all_cube_points(kw["d"])) ** 2, 1)))


def test_paper_power_default_instance():
    p, _ = theory.target_power(targets.paper_instance())
    want = np.zeros(31)
    want[2], want[8] = 15 * 1.0**2, 15 * 0.3**2
    np.testing.assert_allclose(p, want, rtol=1e-14)


def test_generic_target_exact_and_monte_carlo():
    import jax

    t = smooth_target(9)
    p, se = theory.target_power(t)  # d <= EXACT_MAX_D: fast Walsh-Hadamard transform
    np.testing.assert_allclose(p, brute_power(t, 9), rtol=1e-9, atol=1e-12)
    assert np.all(se == 0)
    # Monte Carlo (forced) against the exact profile: within 5 standard errors at every degree
    mc, mse = theory._power_monte_carlo(t, 9, jax.random.PRNGKey(0), 16384, 8)
    assert np.all(np.abs(mc - p) <= 5 * mse + 1e-3 * p.sum())
    assert np.all(mse[p > 1e-3] > 0)


def test_walsh_hadamard_and_bad_targets():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(32, 3))
    _, Phi, _ = characters(5)
    np.testing.assert_allclose(theory.walsh_hadamard(v), Phi.T @ v / 32, atol=1e-14)
    with pytest.raises(ValueError, match="power-of-two"):
        theory.walsh_hadamard(np.ones(6))
    big = smooth_target(20)
    with pytest.raises(ValueError, match="key"):
        theory.target_power(big)


# ----------------------------------------------------------------------------- the learning curve


def reference_error(lams, v2, n, delta, noise_var=0.0):
    """The estimate on the ungrouped eigenvalue list: brentq for kappa, the textbook formula."""
    lams = np.asarray(lams)
    f = lambda kap: np.sum(lams / (lams + kap)) + delta / kap - n  # noqa: E731
    kap = scipy.optimize.brentq(f, 1e-14, 1e6, xtol=1e-300, rtol=1e-15, maxiter=500)
    L = lams / (lams + kap)
    e0 = n / (n - np.sum(L**2))
    return e0 * np.sum((1 - L) ** 2 * v2) + noise_var * (e0 - 1)


@pytest.mark.parametrize("arch,get", [("2nn", "ntk"), ("3resnet", "nngp")])
def test_predict_matches_second_implementation(arch, get):
    d = 8
    t = targets.paper_instance(d=8, k=3, g_degree=2, alpha=0.5)
    s = theory.kernel_spectrum(kernels.kernel_fn(arch), d, get)
    X, Phi, deg = characters(d)
    coef = Phi.T @ theory._evaluate(t, X) / 2**d
    v2 = np.sum(coef**2, 1)  # per monomial, summed over outputs
    lams = s.eigenvalues[deg]
    p, _ = theory.target_power(t)
    for n, ridge, nv in itertools.product((3, 40, 200.5), (1e-6, 1e-2, 1.0), (0.0, 0.3)):
        got = theory.predict(s, p, n, ridge, noise_var=nv)["test_error"]
        assert got == pytest.approx(reference_error(lams, v2, n, ridge * s.scale, nv), rel=1e-9)
    # ridgeless below the rank
    assert theory.predict(s, p, 100, 0.0)["test_error"] == pytest.approx(reference_error(lams, v2, 100, 0.0), rel=1e-8)
    # ridgeless at and beyond the rank (256 modes): everything learned, E0 blows up at N = R
    assert theory.predict(s, p, 300, 0.0)["test_error"] == pytest.approx(0.0, abs=1e-12)
    assert theory.predict(s, p, 256, 0.0)["test_error"] == np.inf


def test_predict_matches_actual_kernel_ridge_on_average():
    """The estimate against the mean population error of actual kernel ridge fits at d = 10.

    Training sets of N i.i.d. uniform points (as rbk draws them); the population error is exact
    (all 1024 points). The estimate is asymptotic in the number of modes: measured at d = 10 it
    undershoots by up to ~5% at N = 64 = 2^d / 16 (less at smaller N; see docs/learning_curves.md),
    with a Monte Carlo s.e. of ~0.7% for 100 draws. Tolerance 8%; not learning at all would be
    off by 50-90%.
    """
    d, draws = 10, 100
    t = targets.paper_instance(d=10, k=3, g_degree=2, alpha=0.5)
    X = theory.all_cube_points(d)
    Y = theory._evaluate(t, X)
    p, _ = theory.target_power(t)
    kfn = kernels.kernel_fn("2nn")
    K = kfn(X, None, get="ntk")
    s = theory.kernel_spectrum(kfn, d, "ntk")
    rng = np.random.default_rng(0)
    for n, ridge in [(16, 1e-1), (64, 1e-3)]:
        errs = []
        for _ in range(draws):
            idx = rng.integers(0, 2**d, n)
            c = scipy.linalg.solve(K[np.ix_(idx, idx)] + ridge * s.scale * np.eye(n), Y[idx], assume_a="pos")
            errs.append(np.mean(np.sum((K[:, idx] @ c - Y) ** 2, 1)))
        pred = float(theory.predict(s, p, n, ridge)["test_error"])
        assert pred == pytest.approx(np.mean(errs), rel=0.08)
        assert abs(pred - p.sum()) > 0.1 * p.sum()  # it predicts real learning, not the trivial error


def test_curves_and_n_star():
    t = targets.paper_instance()
    s = theory.kernel_spectrum(kernels.kernel_fn("2nn"), 30, "ntk")
    p, _ = theory.target_power(t)
    ns = np.array([1000, 1e5, 1e7])
    ridges = (1e-3, 1e-1)
    g = theory.grid_curve(s, p, ns, ridges)
    o = theory.optimal_curve(s, p, ns)
    assert g["errors"].shape == (3, 2)
    np.testing.assert_allclose(g["test_error"], g["errors"].min(1))
    assert np.all(o["test_error"] <= g["test_error"] + 1e-12)
    # the optimum against a dense scan of ridges
    scan = np.concatenate([[0.0], np.logspace(-12, 6, 2000)])
    dense = theory.predict(s, p, ns[:, None], scan[None, :])["test_error"].min(1)
    np.testing.assert_allclose(o["test_error"], dense, rtol=1e-6)
    assert np.all(o["test_error"] <= dense + 1e-12)
    assert np.all(np.diff(g["test_error"]) < 0)  # more data, less error
    # n_star on curves with a known crossing
    assert theory.n_star(lambda n: 10.0 / n, 1.0) == pytest.approx(10.0, rel=1e-8)
    assert theory.n_star(lambda n: 0.5 + 0 * n, 1.0) == 1.0
    assert theory.n_star(lambda n: 2.0 + 0 * n, 1.0) is None
    assert theory.n_star(lambda n: 1e10 / n, 1.0, n_max=1e9) is None
    ns_ = theory.n_star(lambda n: theory.grid_curve(s, p, n, ridges)["test_error"], 1.35)
    assert ns_ is not None and 1e4 < ns_ < 1e9
    e = theory.grid_curve(s, p, [ns_ * 0.99, ns_ * 1.01], ridges)["test_error"]
    assert e[0] > 1.35 > e[1]


def test_bad_input_is_refused():
    s = theory.kernel_spectrum(kernels.kernel_fn("2nn"), 8, "ntk")
    p = np.zeros(9)
    p[2] = 1.0
    with pytest.raises(ValueError, match="ridge.*>= 0"):
        theory.predict(s, p, 10, -1e-3)
    with pytest.raises(ValueError, match="n .*>= 1"):
        theory.predict(s, p, 0.5, 1e-3)
    with pytest.raises(ValueError, match="n .*>= 1"):
        theory.grid_curve(s, p, [100, 0], (1e-3,))
    with pytest.raises(ValueError, match="power must have d \\+ 1 = 9"):
        theory.predict(s, np.ones(5), 10, 1e-3)
    with pytest.raises(ValueError, match="power must be >= 0"):
        theory.predict(s, -p, 10, 1e-3)
    with pytest.raises(ValueError, match="noise_var"):
        theory.predict(s, p, 10, 1e-3, noise_var=-1.0)
    with pytest.raises(ValueError, match="spectrum"):
        theory.predict(np.ones(9), p, 10, 1e-3)
    with pytest.raises(ValueError, match="threshold"):
        theory.n_star(lambda n: n, 0.0)


def test_predict_learners_shapes():
    t = targets.paper_instance(d=12, k=4, g_degree=2, alpha=0.4)
    learners = ["3resnet", "ntk-2nn", "nngp-3resnet", "rf-2nn"]
    assert theory.spectral_learners(learners) == ["ntk-2nn", "nngp-3resnet"]
    for bad in (learners, ["rf-2nn"], ["ntk-nosucharch"], []):  # no spectrum: refused, never silently skipped
        with pytest.raises(ValueError, match="learners"):
            theory.predict_learners(bad, t, [100, 300], (1e-3, 1e-1), threshold=4 * 0.4**2)
    out = theory.predict_learners(theory.spectral_learners(learners), t, [100, 300], (1e-3, 1e-1),
                                  threshold=4 * 0.4**2)  # fmt: skip
    assert set(out) == {"ntk-2nn", "nngp-3resnet"}
    for v in out.values():
        assert set(v) >= {"n_star", "curve", "n_star_optimal_ridge"}
        assert v["n_star"] is None or isinstance(v["n_star"], float)
        ns = [int(n) for n in v["curve"]]
        assert ns == sorted(ns) and ns[0] == 100 and 300 in ns and ns[-1] == 10**7
        assert all(isinstance(e, float) and e > 0 for e in v["curve"].values())
