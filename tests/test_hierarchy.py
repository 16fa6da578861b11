"""Deep hierarchies: the target family's exact moments (hand-computed and Monte Carlo), the deep
quadratic learner, its stage schedules (layer-wise freezing is bit-exact), the feature-quality
probe, and the exact kernels of described architectures (closed forms of rbk.kernels and Monte
Carlo of wide finite networks)."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rbk import data, kernels, models, targets, train

KEY = jax.random.PRNGKey(3)


def _f64(fn, x):
    with kernels.x64():
        return np.asarray(fn(jnp.asarray(x, jnp.float64)), np.float64)


# ----------------------------------------------------------------------------- the target family


def test_two_level_closed_form():
    """widths (1, 1): s_1 = (z^2 - 1)/sqrt 2, s_2 = (z^4 - 2 z^2 - 1)/(2 sqrt 14) by hand (Gaussian moments)."""
    a1, a2 = 0.9, 0.4
    t = targets.hierarchy(KEY, d=5, widths=(1, 1), alphas=(a1, a2))
    c12 = 4 / math.sqrt(28)  # E[s_1 s_2] = (E[(z^2-1)^3]/2) / sqrt(28), E[(z^2-1)^3] = 8
    np.testing.assert_allclose(t.info["level_gram"], [[1, c12], [c12, 1]], atol=1e-12)
    assert t.info["second_moment"] == pytest.approx(a1**2 + a2**2 + 2 * a1 * a2 * c12, rel=1e-12)
    # the part above degree 2 is s_2's He_4 component: energy 24 / 56
    assert t.threshold == pytest.approx(a2**2 * 3 / 7, rel=1e-12)
    assert t.info["tails"][2] == pytest.approx(a2**2, rel=1e-12)
    # the function itself: y = a1 s_1 + a2 s_2 of z = u.x
    U = np.linalg.qr(np.random.default_rng([int(v) for v in np.asarray(KEY)]).standard_normal((5, 1)))[0].T
    x = np.random.default_rng(0).standard_normal((7, 5))
    z = (x @ U.T)[:, 0]
    want = a1 * (z**2 - 1) / math.sqrt(2) + a2 * (z**4 - 2 * z**2 - 1) / (2 * math.sqrt(14))
    np.testing.assert_allclose(_f64(t, x)[:, 0], want, rtol=1e-10, atol=1e-10)


def test_degree_profile_parseval_and_thresholds_ordered():
    t = targets.hierarchy(KEY, d=10, widths=(3, 3, 2), alphas=(1.0, 0.6, 0.3))
    i = t.info
    assert sum(i["degree_energy"]) == pytest.approx(i["second_moment"], rel=1e-10)
    assert i["readout_degrees"] == [2, 4, 8] and i["level_degrees"] == [1, 2, 4]
    th = [i["thresholds"][l] for l in (1, 2, 3)]
    assert th[0] > th[1] > th[2] > 0 and t.threshold == th[2]
    for l in (2, 3):  # the best low-degree predictor beats the naive "lower levels only" one
        assert i["thresholds"][l] <= i["tails"][l] + 1e-12
    assert i["tails"][3] == pytest.approx(0.3**2, rel=1e-12)


def test_normalisation_and_thresholds_monte_carlo():
    """Unit means 0 and variances 1, E[y^2], the level Gram and the deepest threshold (the residual
    of a least-squares fit on every polynomial of degree <= 4 in z = U x) against Monte Carlo."""
    t = targets.hierarchy(KEY, d=6, widths=(2, 3, 2), alphas=(1.0, 0.7, 0.5))
    n = 400_000
    x = np.random.default_rng(1).standard_normal((n, 6))
    with kernels.x64():
        xs = jnp.asarray(x)
        levels = [np.asarray(s) for s in t.parts["levels"](xs)]
        reads = np.stack([np.asarray(t.parts[f"level{l}"](xs))[:, 0] / t.info["alphas"][l - 1] for l in (1, 2, 3)], 1)
        y = np.asarray(t(xs))[:, 0]

    def close(est, samples, want, k=5):
        se = samples.std() / math.sqrt(n)
        assert abs(est - want) < k * se + 1e-9, (est, want, se)

    for S in levels:
        for u in S.T:
            close(u.mean(), u, 0.0)
            close((u * u).mean(), u * u, 1.0)
    gram = np.asarray(t.info["level_gram"])
    for a in range(3):
        for b in range(3):
            close((reads[:, a] * reads[:, b]).mean(), reads[:, a] * reads[:, b], gram[a, b])
    close((y * y).mean(), y * y, t.info["second_moment"])
    U = np.linalg.qr(np.random.default_rng([int(v) for v in np.asarray(KEY)]).standard_normal((6, 2)))[0].T
    z = x @ U.T
    cols = [np.ones(n)] + [z[:, 0] ** i * z[:, 1] ** j for i in range(5) for j in range(5) if 1 <= i + j <= 4]
    P = np.stack(cols, 1)
    coef = np.linalg.lstsq(P, y, rcond=None)[0]
    r2 = (y - P @ coef) ** 2
    close(r2.mean(), r2, t.threshold)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"widths": ()}, "widths"),
        ({"widths": (3,), "alphas": (1.0,)}, "widths"),
        ({"widths": (3, 0), "alphas": (1.0, 0.5)}, r"widths\[1\]"),
        ({"widths": (3, 3), "alphas": (1.0, 0.5, 0.2)}, "alphas"),
        ({"widths": (3, 3), "alphas": (0.5, 0.5)}, "strictly decreasing"),
        ({"widths": (3, 3), "alphas": (0.2, 0.5)}, "strictly decreasing"),
        ({"widths": (3, 3), "alphas": (1.0, -0.5), "paper_regime": False}, r"alphas\[1\]"),
        ({"widths": (3, 3), "alphas": (1.0, 0.5), "distribution": "cube"}, "distribution"),
        ({"widths": (3, 3), "alphas": (1.0, 0.5), "rank": 9}, "rank"),
        ({"widths": (8, 3, 3, 3), "alphas": (1.0, 0.5, 0.2, 0.1)}, "quadrature"),
        ({"widths": (3, 3), "alphas": (1.0, 0.5), "readout": "cube"}, "readout"),
    ],
)
def test_bad_hierarchies_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        targets.hierarchy(KEY, d=8, **kwargs)


def test_non_paper_regime_allows_increasing_alphas():
    t = targets.hierarchy(KEY, d=8, widths=(2, 2), alphas=(0.2, 0.5), paper_regime=False)
    assert t.info["alphas"] == [0.2, 0.5]


# ----------------------------------------------------------------------------- the learner


def _deep(width=16, d=8, **kw):
    return models.get_deepquad(width, d, levels=3, **kw)


def test_deepquad_structure_and_forward_by_hand():
    m = _deep(activation="square", parameterization="standard", head_init="random")
    p = m.init(KEY)
    assert set(m.labels(p).values()) == {"L1", "L2", "L3"}
    assert p["W1"].shape == (8, 16) and p["V3"].shape == (16, 16) and p["A2"].shape == (16, 1)
    x = np.random.default_rng(2).standard_normal((5, 8)).astype(np.float32)
    P = {k: np.asarray(v, np.float64) for k, v in p.items()}
    h1 = x @ P["W1"] + P["b1"]
    h2 = h1**2 @ P["W2"] + P["b2"]
    h3 = (h2**2 @ P["W3"] + h1**2 @ P["V3"]) / math.sqrt(2) + P["b3"]
    want = h1**2 @ P["A1"] + h2**2 @ P["A2"] + h3**2 @ P["A3"]
    np.testing.assert_allclose(np.asarray(m.apply(p, x)), want, rtol=2e-4)
    np.testing.assert_allclose(_deep(head_init="zero").init(KEY)["A3"], 0.0)


def test_deepquad_validation():
    t = targets.hierarchy(KEY, d=8, widths=(2, 2), alphas=(1.0, 0.5))
    with pytest.raises(ValueError, match="levels=3"):
        _deep(reference=t)
    with pytest.raises(ValueError, match="activation"):
        _deep(activation="relu")
    with pytest.raises(ValueError, match="reference"):
        _deep(reference=targets.paper_instance(d=8, k=4))


class _WatchLevels(models.DeepQuad):
    """Records the parameters of levels 1 and 2 at each recorded epoch (through the probe hook)."""

    def probe(self, params, data):
        return jnp.concatenate([params[n].ravel() for n in ("W1", "b1", "A1", "W2", "b2", "A2")])


def test_layerwise_freezing_is_bit_exact():
    base = models.get_deepquad(6, 8, levels=2)
    m = _WatchLevels(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)})
    t = targets.hierarchy(KEY, d=8, widths=(2, 2), alphas=(1.0, 0.5))
    cfg = train.regime_config("layerwise", 2, 4, record_per_stage=1, batch_size=25)
    r = train.fit(m, t, 100, [0], [0.01], [1e-3], cfg, distribution="gaussian", n_test=50)
    assert r.record_epochs == (2, 4) and not r.diverged.any()
    w = r.probes[0, 0, 0]  # (2 records, P)
    n1 = 8 * 6 + 6 + 6
    init = jax.jit(m.init)(jax.random.split(data.seed_keys(0)[1])[0])
    init1 = np.concatenate([np.ravel(init[n]) for n in ("W1", "b1", "A1")])
    init2 = np.concatenate([np.ravel(init[n]) for n in ("W2", "b2", "A2")])
    np.testing.assert_array_equal(w[1, :n1], w[0, :n1])  # level 1 frozen after its stage ...
    np.testing.assert_array_equal(w[0, n1:], init2)  # ... level 2 untouched before its own
    assert not np.array_equal(w[0, :n1], init1) and not np.array_equal(w[1, n1:], init2)


@pytest.mark.slow
def test_joint_regime_is_the_plain_recipe():
    m = _deep(width=8)
    t = targets.hierarchy(KEY, d=8, widths=(2, 2, 2), alphas=(1.0, 0.5, 0.25))
    # lr 3e-3 (Experiment 4's): at 0.01 this training diverges (test error 5e11, then NaN), and two
    # programs' rounding, amplified by the blow-up, differed by 5e-5 relative on one machine
    a = train.fit(m, t, 100, [0], [3e-3], [0.0], train.config(4, batch_size=25, record_epochs=[2, 4]),
                  distribution="gaussian", n_test=50)
    b = train.fit(m, t, 100, [0], [3e-3], [0.0], train.config(4, batch_size=25, record_epochs=[2, 4],
                  phases={"L1": (0, 4), "L2": (0, 4), "L3": (0, 4)}), distribution="gaussian", n_test=50)
    assert np.all(np.isfinite(a.errors["test"])) and a.errors["test"][..., -1] < a.errors["test"][..., 0]  # it trains
    np.testing.assert_allclose(a.errors["test"], b.errors["test"], rtol=1e-5)


def test_phase_and_regime_validation():
    with pytest.raises(ValueError, match="stop"):
        train.config(4, phases={"L1": (2, 2)})
    with pytest.raises(ValueError, match="start"):
        train.config(4, phases={"L1": (4, 5)})
    with pytest.raises(ValueError, match="multiple of levels"):
        train.regime_config("layerwise", 3, 7)
    with pytest.raises(ValueError, match="regime"):
        train.regime_config("greedy", 3, 6)
    t = targets.hierarchy(KEY, d=8, widths=(2, 2, 2), alphas=(1.0, 0.5, 0.25))
    with pytest.raises(ValueError, match="L9"):
        train.fit(_deep(width=4), t, 50, [0], [0.01], [0.0], train.config(2, batch_size=25, phases={"L9": (0, 1)}),
                  distribution="gaussian", n_test=20)


# ----------------------------------------------------------------------------- feature quality


def test_feature_quality_matches_direct_ridge_and_oracle():
    t = targets.hierarchy(KEY, d=8, widths=(2, 3, 2), alphas=(1.0, 0.5, 0.25))
    m = _deep(width=12, reference=t, activation="square", head_init="random")
    p = m.init(jax.random.PRNGKey(1))
    x = np.random.default_rng(4).standard_normal((600, 8)).astype(np.float32)
    q = m.feature_quality(p, x)
    hs = [np.asarray(h, np.float64) for h in m.level_features(p, x)]
    ss = [np.asarray(s, np.float64) for s in t.parts["levels"](x)]
    for l in range(3):  # second implementation: explicit centred ridge and held-out R^2
        h, s = hs[l], ss[l]
        hm, sm = h[:300].mean(0), s[:300].mean(0)
        H = h[:300] - hm
        G = H.T @ H
        B = np.linalg.solve(G + m.probe_ridge * np.trace(G) / 12 * np.eye(12), H.T @ (s[:300] - sm))
        pred = (h[300:] - hm) @ B + sm
        want = 1 - np.sum((s[300:] - pred) ** 2) / np.sum((s[300:] - sm) ** 2)
        assert q[l] == pytest.approx(want, abs=2e-4)
    # level-1 weights spanning U: perfect level-1 features
    U = np.linalg.qr(np.random.default_rng([int(v) for v in np.asarray(KEY)]).standard_normal((8, 2)))[0]
    p1 = dict(p, W1=jnp.asarray(np.concatenate([U, np.zeros((8, 10))], 1), jnp.float32))
    assert m.feature_quality(p1, x)[0] == pytest.approx(1.0, abs=1e-4)


# ----------------------------------------------------------------------------- exact kernels


@pytest.mark.parametrize("arch", models.ARCHS)
def test_described_equals_closed_forms(arch):
    x = np.random.default_rng(5).standard_normal((9, 7))
    x[2] = -x[0]  # (no repeated distinct rows: arccos near 1 amplifies rounding, see test_kernels)
    a = kernels.kernel_fn(arch, W_std=1.3, b_std=0.4)(x)
    b = kernels.described_kernel_fn(kernels.describe_arch(arch), W_std=1.3, b_std=0.4)(x)
    np.testing.assert_allclose(b.nngp, a.nngp, rtol=1e-12)
    np.testing.assert_allclose(b.ntk, a.ntk, rtol=1e-12)


def test_quadratic_moments_by_hand():
    """One level (h_1 = x W_1, head sigma(h_1)): NNGP = E[sigma(u) sigma(v)], NTK adds x.x'/d E[sigma' sigma']."""
    x = np.random.default_rng(6).standard_normal((4, 5))
    q = np.sum(x * x, 1) / 5
    s = x @ x.T / 5
    for act, want_k, want_d in (
        ("square", np.outer(q, q) + 2 * s * s, 4 * s),
        ("hermite", (np.outer(q, q) + 2 * s * s - q[:, None] - q[None, :] + 1) / 2, 2 * s),
    ):
        kf = kernels.described_kernel_fn(kernels.deepquad_description(1, activation=act))
        k = kf(x)
        np.testing.assert_allclose(k.nngp, want_k, rtol=1e-12)
        np.testing.assert_allclose(k.ntk, want_k + s * want_d, rtol=1e-12)
        frozen = kernels.described_kernel_fn(kernels.deepquad_description(1, activation=act), head_rates=(0.0,))
        np.testing.assert_allclose(frozen(x, get="ntk"), s * want_d, rtol=1e-12)


def _empirical(model, params, x):
    """Finite-width NTK (all parameters) and NNGP analogue (read-outs only) from the full Jacobian."""
    def f(p):
        return model.apply(p, x)[:, 0]

    J = jax.jacrev(f)(params)
    flat = lambda names: jnp.concatenate([J[n].reshape(x.shape[0], -1) for n in names], 1)  # noqa: E731
    Ja = flat([n for n in params if n[0] == "A"])
    Jall = flat(list(params))
    return Ja @ Ja.T, Jall @ Jall.T


def _deepquad_monte_carlo(width, draws, levels=3, skip=True):
    d = 6
    m = models.get_deepquad(width, d, levels=levels, skip=skip, parameterization="ntk", W_std=1.0, b_std=0.2,
                            activation="hermite", head_init="random")
    x = np.random.default_rng(7).standard_normal((4, d))
    x[1] = 0.6 * x[0] + 0.8 * x[1]
    x *= math.sqrt(d) / np.linalg.norm(x, axis=1, keepdims=True)  # |x|^2 = d: polynomial growth in |x| stays tame
    exact = kernels.model_kernel_fn(m)(x)
    with kernels.x64():
        xs = jnp.asarray(x)
        emp = jax.jit(lambda k: _empirical(m, jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), m.init(k)), xs))
        draws_ = [emp(jax.random.PRNGKey(100 + i)) for i in range(draws)]
    iu = np.triu_indices(4)
    for g, i in (("nngp", 0), ("ntk", 1)):
        S = np.stack([np.asarray(dr[i]) for dr in draws_])
        mu, se = S.mean(0), S.std(0, ddof=1) / math.sqrt(draws)
        z = (mu - getattr(exact, g)) / se
        assert np.all(np.abs(z[iu]) < 4), (g, z, mu, getattr(exact, g))
        assert np.all(se[iu] < 0.12 * np.abs(getattr(exact, g)).max()), (g, se)  # heavy-tailed draws


def test_deepquad_kernels_monte_carlo():
    """Mean over draws of the finite-width kernels within 4 standard errors of the closed form."""
    _deepquad_monte_carlo(512, 40)
    _deepquad_monte_carlo(256, 40, levels=2, skip=False)


@pytest.mark.slow
def test_deepquad_kernels_monte_carlo_wide():
    _deepquad_monte_carlo(1024, 64)
    _deepquad_monte_carlo(1024, 64, levels=4)
