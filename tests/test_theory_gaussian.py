"""rbk.theory on the sphere and on Gaussian inputs: spectra against Monte Carlo Grams, direct
quadrature and closed forms (Funk-Hecke); the target's exact harmonic power against its second
moment and a Monte Carlo projection; the learning curves; bad input refused."""

import math

import jax
import numpy as np
import pytest
import scipy.integrate
import scipy.special

from rbk import kernels, targets, theory

FAST = dict(radial_nodes=16, angle_nodes=160)  # small rules: each spectrum well under a second


def sphere_weight(t, d):
    """Density of ``t = s.s'`` for uniform ``s, s'`` on ``S^{d-1}``."""
    return math.gamma(d / 2) / (math.sqrt(math.pi) * math.gamma((d - 1) / 2)) * (1 - t * t) ** ((d - 3) / 2)


def legendre_d(l, d, t):
    """``P_l`` of dimension ``d`` from scipy's Gegenbauer polynomials, normalised ``P_l(1) = 1``."""
    lam = (d - 2) / 2
    if d == 2:
        return np.cos(l * np.arccos(t))
    return scipy.special.eval_gegenbauer(l, lam, t) / scipy.special.eval_gegenbauer(l, lam, 1.0)


def relu_ntk_2nn(t, sw2=2.0, sb2=0.01):
    """A second implementation of the 2nn NTK on the sphere of radius sqrt(d) (x.x'/d = t)."""
    q, s1 = sw2 + sb2, sw2 * t + sb2
    c = np.clip(s1 / q, -1.0, 1.0)
    th = np.arccos(c)
    k1, d1 = q / (2 * np.pi) * (np.sqrt(1 - c * c) + (np.pi - th) * c), (np.pi - th) / (2 * np.pi)
    return sw2 * k1 + sw2 * t * sw2 * d1 + sb2 * sw2 * d1


def relu_ntk_numpy(a, b, get=None, sw2=2.0, sb2=0.01):
    """The 2nn NTK on any inputs, in numpy (rbk's closed form, written out again): no compilation."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = a.shape[1]
    lin = a @ b.T / d
    qa, qb = sw2 * np.sum(a * a, 1)[:, None] / d + sb2, sw2 * np.sum(b * b, 1)[None, :] / d + sb2
    c = np.clip((sw2 * lin + sb2) / np.sqrt(qa * qb), -1.0, 1.0)
    th = np.arccos(c)
    k1, d1 = np.sqrt(qa * qb) / (2 * np.pi) * (np.sqrt(1 - c * c) + (np.pi - th) * c), (np.pi - th) / (2 * np.pi)
    return sw2 * k1 + sw2 * lin * sw2 * d1 + sb2 * sw2 * d1


def dot_kernel(phi):
    """The dot-product kernel ``phi(x.x' / d)`` as an rbk-style kernel function."""
    return lambda a, b, get: phi(np.asarray(a) @ np.asarray(b).T / a.shape[1])


# ----------------------------------------------------------------------------- harmonic analysis


def test_harmonic_dimension_and_gegenbauer():
    for d in (2, 3, 5, 8):
        for l in range(6):  # N(d, l): the number of harmonic monomials of degree l, from the polynomial dimensions
            assert theory.harmonic_dimension(d, l) == math.comb(l + d - 1, d - 1) - (math.comb(l + d - 3, d - 1) if l >= 2 else 0)
        t = np.linspace(-1, 1, 7)
        P = theory.gegenbauer(t, 6, d)
        for l in range(7):
            np.testing.assert_allclose(P[:, l], legendre_d(l, d, t), atol=1e-12)
        tq, w = theory.angle_rule(d, 40)  # orthogonality: E[P_l P_m] = delta_lm / N(d, l)
        G = (theory.gegenbauer(tq, 6, d) * w[:, None]).T @ theory.gegenbauer(tq, 6, d)
        np.testing.assert_allclose(G, np.diag([1 / theory.harmonic_dimension(d, l) for l in range(7)]), atol=1e-13)


def test_chi_rule_moments():
    for d in (2, 7, 300):
        r, w = theory.chi_rule(d, 12)
        for k in range(0, 23, 2):  # E[r^k] = 2^(k/2) Gamma((d + k)/2) / Gamma(d/2): exact up to degree 2n - 1 in r^2
            want = math.exp(k / 2 * math.log(2) + math.lgamma((d + k) / 2) - math.lgamma(d / 2))
            assert w @ r**k == pytest.approx(want, rel=1e-10)


# ----------------------------------------------------------------------------- spectra


def test_sphere_coefficients_of_the_2nn_ntk_against_direct_quadrature():
    d = 5
    kfn = kernels.kernel_fn("2nn", b_std=0.1)
    s = theory.sphere_spectrum(relu_ntk_numpy, d, "ntk", max_degree=8)  # rbk's kernel, uncompiled (checked below)
    x = np.zeros((1, d))
    x[0, 0] = math.sqrt(d)
    t = np.linspace(-1, 1, 9)
    y = np.sqrt(d) * np.c_[t, np.sqrt(1 - t * t), np.zeros((9, d - 2))]
    np.testing.assert_allclose(kfn(x, y, get="ntk")[0], relu_ntk_2nn(t), rtol=1e-12)  # the same kernel
    z = np.random.default_rng(0).standard_normal((6, d)) * [[0.5], [1], [2], [1], [3], [0.1]]
    np.testing.assert_allclose(relu_ntk_numpy(z, z[::-1]), kfn(z, z[::-1], get="ntk"), rtol=1e-8)  # arccos near c = 1
    for l in range(9):
        want, _ = scipy.integrate.quad(lambda u: relu_ntk_2nn(u) * legendre_d(l, d, u) * sphere_weight(u, d), -1, 1,
                                       epsabs=1e-13, epsrel=1e-12, limit=200)  # fmt: skip
        assert s.degree_eigenvalues(l)[0] == pytest.approx(want, abs=1e-10 * s.scale)
    assert s.scale == pytest.approx(relu_ntk_2nn(1.0), rel=1e-14)
    assert s.mass_beyond == pytest.approx(s.scale - s.trace, rel=1e-12)
    assert 0 < s.mass_beyond < 0.05 * s.scale and s.multiplicities[3] == theory.harmonic_dimension(d, 3)


@pytest.mark.parametrize("d", [3, 6])
def test_funk_hecke_exp_kernel(d):
    """exp(x.x'/d) on the sphere of radius sqrt(d): k_l = Gamma(d/2) 2^(d/2-1) I_{l+d/2-1}(1); on Gaussian
    inputs the radial operator's trace at degree l is E_r[Gamma(d/2) (2/b)^(d/2-1) I_{l+d/2-1}(b)], b = r^2/d."""
    kfn = dot_kernel(np.exp)
    s = theory.sphere_spectrum(kfn, d, "ntk", max_degree=10, angle_nodes=64)
    want = [math.gamma(d / 2) * 2 ** (d / 2 - 1) * scipy.special.iv(l + d / 2 - 1, 1.0) for l in range(11)]
    np.testing.assert_allclose(s.eigenvalues, want, rtol=1e-12, atol=s.roundoff[0])
    assert s.roundoff[0] < 1e-13
    g = theory.gaussian_spectrum(kfn, d, "ntk", max_degree=6, **FAST)
    r, w = theory.chi_rule(d, FAST["radial_nodes"])
    b = r * r / d
    for l in range(7):
        trace_l = w @ (math.gamma(d / 2) * (2 / b) ** (d / 2 - 1) * scipy.special.iv(l + d / 2 - 1, b))
        zeroed = FAST["radial_nodes"] * g.roundoff[l]  # eigenvalues below the round-off bound are set to 0
        assert abs(g.degree_eigenvalues(l).sum() - trace_l) <= 1e-10 * trace_l + zeroed


def test_gaussian_spectrum_of_a_quadratic_kernel_in_closed_form():
    """(1 + x.x'/d)^2 under N(0, I_d): degree 1 has 2/d (mult d), degree 2 has 2/d^2 (mult N(d, 2)),
    degree 0 the eigenvalues of T on span{1, |x|^2}: [[1, d], [1/d^2, (d + 2)/d^2]]; nothing else."""
    d = 5
    s = theory.gaussian_spectrum(dot_kernel(lambda u: (1 + u) ** 2), d, "nngp", max_degree=4, **FAST)
    top = [s.degree_eigenvalues(l) for l in range(5)]
    np.testing.assert_allclose(np.sort(top[0][:2]), np.sort(np.linalg.eigvals([[1, d], [1 / d**2, (d + 2) / d**2]])),
                               rtol=1e-12)  # fmt: skip
    assert top[1][0] == pytest.approx(2 / d, rel=1e-12) and top[2][0] == pytest.approx(2 / d**2, rel=1e-12)
    assert np.all(top[0][2:] == 0) and np.all(top[1][1:] == 0) and np.all(top[2][1:] == 0)
    assert np.all(top[3] == 0) and np.all(top[4] == 0)
    assert s.scale == pytest.approx(1 + 2 + (d + 2) / d, rel=1e-12)  # E[(1 + |x|^2/d)^2]
    assert abs(s.mass_beyond) < 1e-12


def test_gaussian_eigenvalues_against_a_monte_carlo_gram():
    """The eigenvalues of K(X, X) / M for M Gaussian points converge to the operator's. Per degree the
    mean of the N(d, l) empirical eigenvalues of a cluster fluctuates by ~1/sqrt(M) relative (measured
    0.3-1.6% at M = 1200-3000 in d = 3-4); tolerance 4/sqrt(M) ~ 14%. Not using the radial part
    (sphere coefficients at r = sqrt(d)) is off by 10-25% here, so the check can fail."""
    d, M = 3, 800
    kfn = relu_ntk_numpy  # rbk's 2nn NTK (checked against kernels.kernel_fn('2nn') in the sphere test), uncompiled
    s = theory.gaussian_spectrum(kfn, d, "ntk", max_degree=8, **FAST)
    x = np.random.default_rng(0).standard_normal((M, d))
    K = kfn(x, x)
    emp = np.sort(np.linalg.eigvalsh(K / M))[::-1]
    lam = np.sort(np.repeat(s.eigenvalues, s.multiplicities.astype(int)))[::-1]
    i = 0
    for size in (1, d, theory.harmonic_dimension(d, 2)):  # the top clusters: degrees 0, 1, 2 (radial index 0)
        assert emp[i:i + size].mean() == pytest.approx(lam[i:i + size].mean(), rel=4 / math.sqrt(M))
        assert np.ptp(lam[i:i + size]) == 0
        i += size
    se = np.std(np.diag(K)) / math.sqrt(M)
    assert abs(np.mean(np.diag(K)) - s.scale) < 5 * se  # the ridge unit: mean(diag K) -> E[k(x, x)]
    assert np.sum(lam) == pytest.approx(s.trace)


@pytest.mark.slow  # ~10 s: compiles rbk's kernel for the quadrature's shapes
@pytest.mark.parametrize("arch", ["2nn", "3resnet"])
def test_rbk_kernels_directly(arch):
    """rbk's kernel functions go in as they are (a KernelFn, a DescribedKernelFn): the 2nn NTK's spectrum
    equals the numpy implementation's, and a described 3resnet's equals kernel_fn('3resnet')'s."""
    d = 4
    kfn = kernels.kernel_fn(arch, b_std=0.1)
    g = theory.gaussian_spectrum(kfn, d, "ntk", max_degree=6, **FAST)
    if arch == "2nn":
        ref = theory.gaussian_spectrum(relu_ntk_numpy, d, "ntk", max_degree=6, **FAST)
    else:
        ref = theory.gaussian_spectrum(kernels.described_kernel_fn(kernels.describe_arch("3resnet"), W_std=math.sqrt(2),
                                                                   b_std=0.1), d, "ntk", max_degree=6, **FAST)
    np.testing.assert_allclose(g.eigenvalues, ref.eigenvalues, rtol=1e-9, atol=1e-12 * g.scale)
    assert g.description["arch"] == arch


# ----------------------------------------------------------------------------- the target's power


def single(d, seed=0):
    """``single_index``'s target (``(h_2 + h_4)(u.x) / sqrt(2)``) on a numpy-drawn direction: nothing to compile."""
    u = np.random.default_rng(seed).standard_normal((1, d))
    return targets.multi_index(u / np.linalg.norm(u), {(2,): 1.0, (4,): 1.0})


@pytest.mark.parametrize("make", [
    lambda d: targets.single_index(jax.random.PRNGKey(1), d, 4),
    lambda d: targets.sum_of_products(jax.random.PRNGKey(2), d, 2, 4),
    pytest.param(lambda d: targets.random_multi_index(jax.random.PRNGKey(3), d, 3, 5), marks=pytest.mark.slow),  # ~5 s to draw
    lambda d: targets.with_head(targets.sum_of_products(jax.random.PRNGKey(2), d, 2, 4), {(3, 0): 1.0, (1, 1): 0.5, (2, 0): 1.0}),
])  # fmt: skip
def test_multi_index_power_sums_to_one(make):
    d = 6
    t = make(d)
    g = theory.gaussian_spectrum(relu_ntk_numpy, d, "ntk", max_degree=6, **FAST)
    p = theory.harmonic_power(t, g)
    assert p.shape == g.eigenvalues.shape and np.all(p >= 0)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    per_degree = p.reshape(7, -1).sum(1)
    parity = {sum(a) % 2 for a, _ in t.info["terms"]}
    for l in range(7):
        if l % 2 not in parity:
            assert per_degree[l] < 1e-14  # z^a has harmonic parts of degrees |a|, |a| - 2, ... only


def monte_carlo_degree_power(fn, d, l, n, seed, sphere=False):
    """``E[f(r s) f(r s') N(d, l) P_l(s.s')]`` (same r, independent s, s'): the power of degree l; mean and s.e."""
    rng = np.random.default_rng(seed)

    def unit():
        v = rng.standard_normal((n, d))
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    s1, s2 = unit(), unit()
    r = np.full((n, 1), math.sqrt(d)) if sphere else np.linalg.norm(rng.standard_normal((n, d)), axis=1, keepdims=True)
    v = fn(r * s1) * fn(r * s2) * theory.harmonic_dimension(d, l) * theory.gegenbauer(np.sum(s1 * s2, 1), l, d)[:, l]
    return v.mean(), v.std() / math.sqrt(n)


@pytest.mark.parametrize("sphere", [False, True])
def test_power_matches_a_monte_carlo_projection(sphere):
    d = 4
    t = targets.sum_of_products(jax.random.PRNGKey(2), d, 2, 4)
    kfn = relu_ntk_numpy
    spec = (theory.sphere_spectrum(kfn, d, "ntk", max_degree=4, angle_nodes=64) if sphere
            else theory.gaussian_spectrum(kfn, d, "ntk", max_degree=4, **FAST))  # fmt: skip
    p = theory.harmonic_power(t, spec).reshape(5, -1).sum(1)
    Q, (g,) = theory.target_polynomial(t)
    fn = lambda x: sum(c * np.prod((x @ Q.T) ** np.array(a), axis=1) for a, c in g.items())  # noqa: E731
    x = np.random.default_rng(9).standard_normal((1000, d))
    np.testing.assert_allclose(fn(x), np.asarray(t(x.astype(np.float32)))[:, 0], rtol=1e-4, atol=1e-4)  # the polynomial
    for l in range(5):
        mc, se = monte_carlo_degree_power(fn, d, l, 100_000, l, sphere=sphere)
        assert abs(mc - p[l]) < 5 * se + 1e-12
    if sphere:  # sum = E_sphere[f^2], by Monte Carlo
        s = np.random.default_rng(7).standard_normal((200_000, d))
        s = s / np.linalg.norm(s, axis=1, keepdims=True) * math.sqrt(d)
        f2 = fn(s) ** 2
        assert abs(p.sum() - f2.mean()) < 5 * f2.std() / math.sqrt(f2.size)


def test_fischer_decomposition_is_harmonic_and_complete():
    """z^a = sum_l |x|^(|a| - l) h_l with h_l harmonic: on the sphere the parts of different degree are
    orthogonal (exact moments) and their powers add up to E[u^(2a)]."""
    d = 7
    for a in [(4,), (2, 2), (3, 1, 1), (5, 0)]:
        parts = theory.fischer_decomposition(a, d)
        assert sum(a) in parts and set(parts) <= set(range(sum(a) % 2, sum(a) + 1, 2))
        B = theory.power_matrices({a: 1.0}, d)[:, sum(a), sum(a)]
        assert B.sum() == pytest.approx(theory.sphere_moment(tuple(2 * i for i in a), d), rel=1e-12)
        # h_l evaluated at random points: its Laplacian (finite differences) vanishes
        rng = np.random.default_rng(0)
        x0 = rng.standard_normal(d)
        for l, h in parts.items():
            f = lambda x: sum(c * np.prod(x[: len(a)] ** np.array(b)) * (x @ x) ** m for (b, m), c in h.items())  # noqa: E731
            eps = 1e-3
            lap = sum(f(x0 + eps * e) + f(x0 - eps * e) - 2 * f(x0) for e in np.eye(d)) / eps**2
            assert abs(lap) < 1e-4 * max(1.0, abs(f(x0)))


@pytest.mark.slow  # ~10 s: the hierarchy's construction and its gradients compile
def test_hierarchy_power_sums_to_its_second_moment():
    d = 6
    t = targets.hierarchy(jax.random.PRNGKey(4), d, widths=(2, 2), alphas=(1.0, 0.5))
    g = theory.gaussian_spectrum(relu_ntk_numpy, d, "ntk", max_degree=4, **FAST)
    p = theory.harmonic_power(t, g)
    assert p.sum() == pytest.approx(t.info["second_moment"], rel=1e-10)


# ----------------------------------------------------------------------------- learning curves


def test_learning_curves_over_d_and_the_solver_on_any_spectrum():
    out = theory.learning_curves(relu_ntk_numpy, single, [4, 6], [10, 100, 1000], (1e-3, 1e-1),
                                 max_degree=8, radial_nodes=12, angle_nodes=96, more_thresholds={"a": 0.7})  # fmt: skip
    assert [o["d"] for o in out] == [4, 6]
    g = theory.gaussian_spectrum(relu_ntk_numpy, 4, max_degree=8, radial_nodes=12, angle_nodes=96)
    pw = theory.harmonic_power(single(4), g)
    direct = theory.n_star(lambda n: theory.grid_curve(g, pw, n, (1e-3, 1e-1))["test_error"], 0.7)
    assert out[0]["n_star_by_threshold"]["a"] == pytest.approx(direct, rel=1e-12)
    for o in out:
        assert o["power_total"] == pytest.approx(1.0, abs=1e-12) and o["threshold"] == pytest.approx(0.5)
        assert np.all(np.diff(o["grid"]["test_error"]) < 0) and np.all(o["optimal"]["test_error"] <= o["grid"]["test_error"] + 1e-12)
        assert o["grid"]["test_error"][-1] < 0.9 and o["precision"]["radial_nodes"] == 12
        assert o["n_star"] is None or o["n_star"] >= o["n_star_optimal_ridge"] - 1e-6
    # the solver on a plain Eigensystem equals it on the cube's Spectrum
    s = theory.kernel_spectrum(kernels.kernel_fn("2nn"), 8, "ntk")
    p = np.zeros(9)
    p[2] = 1.0
    e = theory.Eigensystem(s.eigenvalues, s.multiplicities, s.scale)
    assert theory.predict(e, p, 50, 1e-2)["test_error"] == theory.predict(s, p, 50, 1e-2)["test_error"]


def test_the_lost_tail_acts_as_a_ridge():
    """A truncated spectrum's ``mass_beyond`` enters the estimate as a ridge (``tail='ridge'``, the
    default). Against the full spectrum: a plain Eigensystem with three learnable levels and a
    tail of 10^8 modes of eigenvalue 1e-10 (trace 0.01, none of the target) predicts the same as
    the three levels with the tail's trace added to the ridge, to the order of ``lambda / kappa``
    of the tail; dropping the tail does not."""
    from rbk.theory.solver import Eigensystem

    full = Eigensystem(np.array([1.0, 0.1, 0.01, 1e-10]), np.array([1.0, 10.0, 100.0, 1e8]), 1.0)
    kept = Eigensystem(full.eigenvalues[:3], full.multiplicities[:3], 1.0)
    p_full, p_kept = np.array([0.3, 0.3, 0.4, 0.0]), np.array([0.3, 0.3, 0.4])
    ns, ridge = np.array([20.0, 100.0, 500.0, 5000.0]), 1e-4
    ref = theory.predict(full, p_full, ns, ridge)["test_error"]
    as_ridge = theory.predict(kept, p_kept, ns, ridge + 0.01)["test_error"]
    np.testing.assert_allclose(as_ridge, ref, rtol=2e-4)  # lambda_tail / kappa is 5e-5 at N = 5000
    dropped = theory.predict(kept, p_kept, ns, ridge)["test_error"]
    assert np.all(dropped[1:] < 0.9 * ref[1:])  # once kappa is near the tail's trace / N, dropping it predicts too low
    # a HarmonicSpectrum does this by itself; with_tail('drop') leaves the mass out
    g = theory.gaussian_spectrum(relu_ntk_numpy, 4, max_degree=6, **FAST)
    pw = theory.harmonic_power(single(4), g)
    assert g.tail == "ridge" and g.implicit_ridge == pytest.approx(g.mass_beyond) and g.mass_beyond > 0
    drop = g.with_tail("drop")
    assert drop.implicit_ridge == 0.0 and drop.precision()["tail"] == "drop"
    np.testing.assert_allclose(theory.predict(g, pw, ns, ridge)["test_error"],
                               theory.predict(drop, pw, ns, ridge + g.mass_beyond / g.scale)["test_error"], rtol=1e-12)
    with pytest.raises(ValueError, match="tail must be one of"):
        g.with_tail("keep")


# ----------------------------------------------------------------------------- bad input


def test_bad_input_is_refused():
    kfn = relu_ntk_numpy
    with pytest.raises(ValueError, match="d must be an integer"):
        theory.gaussian_spectrum(kfn, 1)
    with pytest.raises(ValueError, match="get"):
        theory.sphere_spectrum(kfn, 4, "rf")
    with pytest.raises(ValueError, match="rotation-invariant"):
        theory.gaussian_spectrum(lambda a, b, get: np.exp(a[:, :1] @ b[:, :1].T), 4, **FAST)
    with pytest.raises(ValueError, match="kfn must be a kernel function"):
        theory.gaussian_spectrum("2nn", 4)
    with pytest.raises(ValueError, match="radial_nodes"):
        theory.gaussian_spectrum(kfn, 4, radial_nodes=1)
    with pytest.raises(ValueError, match="angle_nodes"):
        theory.gaussian_spectrum(kfn, 4, max_degree=10, angle_nodes=8)
    with pytest.raises(ValueError, match="not positive semi-definite"):
        theory.sphere_spectrum(dot_kernel(lambda u: -u), 4, max_degree=3, angle_nodes=32)
    g = theory.gaussian_spectrum(kfn, 4, max_degree=3, **FAST)
    with pytest.raises(ValueError, match="degree p = 4, beyond the spectrum's max_degree = 3"):
        theory.harmonic_power(single(4), g)
    with pytest.raises(ValueError, match="target.d = 5 must equal"):
        theory.harmonic_power(single(5), g)
    with pytest.raises(ValueError, match="family 'concept'"):
        theory.harmonic_power(targets.concept(lambda x: x[:, :1], lambda y: y, 4, 1, alpha=0.5), g)
    with pytest.raises(ValueError, match="power must have 64 entries"):
        theory.predict(g, np.ones(5), 10, 1e-3)
    with pytest.raises(ValueError, match="l must be an integer in \\[0, 3\\]"):
        g.degree_eigenvalues(4)
    with pytest.raises(ValueError, match="targets"):
        theory.learning_curves(kfn, [single(4)], [4, 6], [10])
    with pytest.raises(ValueError, match="target.d == 6"):
        theory.learning_curves(kfn, [single(4), single(4)], [4, 6], [10])
    with pytest.raises(ValueError, match="ds"):
        theory.learning_curves(kfn, single, [1], [10])
    with pytest.raises(ValueError, match="more_thresholds"):
        theory.learning_curves(kfn, single, [4], [10], (1e-3,), more_thresholds={"a": 0.0})
