"""The stop-gradient ablation of the deep regimes (``DeepQuad.stop_gradient``, the regime
``'stopgrad'``, the learner ``deep-stopgrad``) and the span comparison of levels against the
teacher (:func:`rbk.models.subspace_angles`, :func:`rbk.models.span_overlap`,
``DeepQuad.level_angles`` / ``subspace_quality`` / ``input_angles``)."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from rbk import data, kernels, learners, models, targets, train

KEY = jax.random.PRNGKey(7)


# ----------------------------------------------------------------------------- stop-gradient


def _nets(readout="post", skip=True, levels=3):
    """The same network with and without stop-gradient, random heads (so every path carries gradient)."""
    base = models.get_deepquad(6, 5, levels=levels, readout=readout, skip=skip, head_init="random", b_std=0.1)
    return base, train.regime_model("stopgrad", base)


def _term(model, params, x, level):
    """Level ``level``'s read-out term ``sigma(h_l) A_l`` (``h_l A_l`` for the 'pre' read-out)."""
    h = model.level_features(params, x)[level - 1]
    return (model.sigma(h) if model.readout == "post" else h) @ params[f"A{level}"]


def _of_levels(tree, levels):
    return [v for n, v in tree.items() if int(n[1:]) in levels]


@pytest.mark.parametrize("readout, skip", [("post", True), pytest.param("pre", True, marks=pytest.mark.slow),
                                           pytest.param("post", False, marks=pytest.mark.slow)])
def test_no_gradient_from_a_level_reaches_the_levels_below(readout, skip):
    """(a) the loss of level l+1's term alone gives exactly 0 to every parameter of levels <= l
    with stop-gradient, not without; (c) level l's own term gives level l the same gradient."""
    plain, stop = _nets(readout, skip)
    assert stop.stop_gradient == (1, 2) and plain.stop_gradient == ()
    params = plain.init(KEY)
    x = jax.random.normal(jax.random.PRNGKey(1), (16, 5))
    y = jax.random.normal(jax.random.PRNGKey(2), (16, 1))
    for lvl in (1, 2, 3):
        def loss(p, m, lvl=lvl):
            return 0.5 * jnp.mean((_term(m, p, x, lvl) - y) ** 2)

        g_plain, g_stop = jax.grad(loss)(params, plain), jax.grad(loss)(params, stop)
        below = set(range(1, lvl))
        for v in _of_levels(g_stop, below):
            np.testing.assert_array_equal(v, 0.0)  # (a) exactly zero
        if below:
            assert sum(float(jnp.sum(v * v)) for v in _of_levels(g_plain, below)) > 1e-6  # the path exists
        for n in g_plain:  # (c) the level's own parameters: unchanged (levels above get nothing either way)
            if int(n[1:]) >= lvl:
                np.testing.assert_allclose(g_stop[n], g_plain[n], rtol=1e-6, atol=1e-7)


def test_full_loss_gradient_is_each_levels_own_term_under_the_residual():
    """With stop-gradient, level l's gradient of the training loss is the residual times d(term_l)
    only: exactly the backward path from the levels above removed, nothing else."""
    plain, stop = _nets()
    rng = np.random.default_rng(3)
    with kernels.x64():  # float64: the two sides sum the same products in different orders
        params = {n: jnp.asarray(v, jnp.float64) for n, v in plain.init(KEY).items()}
        x, y = jnp.asarray(rng.standard_normal((20, 5))), jnp.asarray(rng.standard_normal((20, 1)))

        @jax.jit
        def grads(p):
            r = jax.lax.stop_gradient(plain.apply(p, x) - y)
            own = [jax.grad(lambda q, lvl=lvl: jnp.mean(jnp.sum(r * _term(plain, q, x, lvl), -1)))(p)
                   for lvl in (1, 2, 3)]
            return (jax.grad(lambda q: train.batch_loss(stop, q, x, y))(p), own,
                    jax.grad(lambda q: train.batch_loss(plain, q, x, y))(p))

        g, own, g_plain = grads(params)
        for n in g:
            np.testing.assert_allclose(g[n], own[int(n[1:]) - 1][n], rtol=1e-10, atol=1e-12)
        assert not np.allclose(g["W1"], g_plain["W1"])  # the plain network's level 1 hears the levels above


def test_forward_is_unchanged():
    """(b) predictions, features and the initialisation are those of the plain network."""
    plain, stop = _nets()
    params = plain.init(KEY)
    x = jax.random.normal(jax.random.PRNGKey(5), (32, 5))
    np.testing.assert_array_equal(jax.jit(stop.apply)(params, x), jax.jit(plain.apply)(params, x))
    np.testing.assert_array_equal(stop.apply(params, x), plain.apply(params, x))
    np.testing.assert_array_equal(stop.features(params, x), plain.features(params, x))
    for n, v in stop.init(KEY).items():
        np.testing.assert_array_equal(v, params[n])


def test_stop_gradient_validation_and_regime():
    assert models.get_deepquad(4, 3, levels=3, stop_gradient=True).stop_gradient == (1, 2)
    assert models.get_deepquad(4, 3, levels=3, stop_gradient=[2]).stop_gradient == (2,)
    assert models.get_deepquad(4, 3, levels=3).stop_gradient == ()
    for bad in ([3], [0], [1, 1], "1", 1, [1.5]):
        with pytest.raises(ValueError, match="stop_gradient must be"):
            models.get_deepquad(4, 3, levels=3, stop_gradient=bad)
    m = models.get_deepquad(4, 3, levels=3)
    assert train.regime_model("progressive", m) is m and "stopgrad" in train.REGIMES
    with pytest.raises(ValueError, match="model must be an rbk.models.DeepQuad"):
        train.regime_model("stopgrad", models.get_model("2nn", 4, 3, 1))
    with pytest.raises(ValueError, match="regime"):
        train.regime_model("greedy", m)
    a, b = train.regime_config("stopgrad", 3, 6), train.regime_config(train.STOPGRAD_SCHEDULE, 3, 6)
    assert a == b and train.STOPGRAD_SCHEDULE == "progressive"


class _WatchLevel1(models.DeepQuad):
    """Records level 1's parameters at each recorded epoch (through the probe hook)."""

    def probe(self, params, data):
        return jnp.concatenate([params[n].ravel() for n in ("W1", "b1", "A1")])


@pytest.mark.slow  # ~10 s cold (two trainings compiled): the default lane keeps the gradient and forward checks
def test_deep_stopgrad_through_the_registry():
    """(d) the registry's deep-stopgrad trains the stop-gradient network on the progressive schedule
    (finite rows); until level 2 starts it follows deep-progressive step for step (zero heads: no
    gradient comes down yet), after it departs from it."""
    t = targets.hierarchy(KEY, d=5, widths=(2, 2), alphas=(1.0, 0.5))
    kd, kt = data.seed_keys(1)
    ds = data.make_dataset(kd, t, 60, n_val=20, n_test=20, distribution="gaussian")
    model = models.get_deepquad(6, 5, levels=2)
    watch = _WatchLevel1(**{f.name: getattr(model, f.name) for f in dataclasses.fields(model)})
    rows = learners.get("deep-stopgrad").run(ds, kt[None], model=watch, lrs=[0.02], wds=[0.0], epochs=2,
                                             batch_size=20, record_per_stage=1)
    assert len(rows) == 1 and rows[0]["regime"] == "stopgrad" and not rows[0]["diverged"]
    assert all(math.isfinite(rows[0][f"{s}_error"]) for s in ("train", "val", "test"))
    assert rows[0]["record_epochs"] == [1, 2]

    cfg = train.regime_config("stopgrad", 2, 2, record_per_stage=1, batch_size=20)  # the same program as above
    prog = train.train(watch, ds, kt[None], [0.02], [0.0], cfg)
    stop = train.train(train.regime_model("stopgrad", watch), ds, kt[None], [0.02], [0.0], cfg)
    assert float(stop.final("test")[0, 0, 0]) == rows[0]["test_error"]
    a, b = prog.probes[0, 0, 0], stop.probes[0, 0, 0]  # (2 records, P)
    np.testing.assert_allclose(b[0], a[0], rtol=1e-6, atol=1e-7)  # stage 1: the same trajectory
    assert not np.allclose(b[1], a[1], rtol=1e-6, atol=1e-7)  # stage 2: level 2 no longer corrects level 1


# ----------------------------------------------------------------------------- principal angles


def test_subspace_angles_match_scipy_on_random_matrices():
    rng = np.random.default_rng(0)
    for n, p, q in [(8, 3, 3), (10, 2, 5), (12, 6, 4), (5, 5, 5), (20, 1, 7)]:
        a, b = rng.standard_normal((n, p)), rng.standard_normal((n, q)) @ rng.standard_normal((q, q))
        got = models.subspace_angles(a, b)
        want = np.sort(scipy.linalg.subspace_angles(a, b))
        assert got.shape == (min(p, q),) and np.all(np.diff(got) >= 0)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    # rank-deficient spanning sets: the span, not the columns, counts
    a = rng.standard_normal((7, 2))
    np.testing.assert_allclose(models.subspace_angles(np.hstack([a, a @ [[1.0], [2.0]]]), a), [0.0, 0.0], atol=1e-7)


def test_subspace_angles_known_cases():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((9, 3))
    np.testing.assert_allclose(models.subspace_angles(a, a @ rng.standard_normal((3, 3))), 0.0, atol=1e-7)
    e = np.eye(6)
    np.testing.assert_allclose(models.subspace_angles(e[:, :2], e[:, 2:5]), [np.pi / 2] * 2, rtol=1e-12)
    for t in (1e-7, 0.3, 1.0, np.pi / 2 - 1e-3):  # a rotation by t in the plane (e_1, e_3), e_2 shared
        b = np.stack([np.cos(t) * e[:, 0] + np.sin(t) * e[:, 2], 3.0 * e[:, 1]], axis=1)
        np.testing.assert_allclose(models.subspace_angles(e[:, :2], b), [0.0, t], rtol=1e-9, atol=1e-12)
        assert models.span_overlap(e[:, :2], b) == pytest.approx((1 + np.cos(t) ** 2) / 2, rel=1e-12)
    assert models.span_overlap(e[:, :2], e[:, :4]) == 1.0  # containment
    with pytest.raises(ValueError, match="same space"):
        models.subspace_angles(e[:, :2], np.eye(5)[:, :2])


def test_span_overlap_of_random_subspaces_monte_carlo():
    """For a fixed p-dim span and an independent uniformly random q-dim span of R^n,
    E[sum cos^2] = E tr(P_a P_b) = tr(P_a (q/n) I) = p q / n (rotation invariance: E[P_b] = (q/n) I),
    so E[span_overlap] = p q / (n min(p, q)) = max(p, q) / n. Spans of Gaussian matrices are
    uniformly random (their law is invariant under rotations)."""
    rng = np.random.default_rng(2)
    for n, p, q in [(10, 3, 3), (12, 2, 4)]:
        a = rng.standard_normal((n, p))
        v = np.array([models.span_overlap(a, rng.standard_normal((n, q))) for _ in range(2000)])
        assert abs(v.mean() - max(p, q) / n) < 5 * v.std() / math.sqrt(v.size)


@pytest.mark.slow  # ~4 s cold: the default lane keeps the angles against scipy and the known cases
def test_level_spans_against_the_teacher():
    """A network whose W_1 spans the teacher's level-1 directions scores 1 exactly at level 1; a
    random one near k_1 / d (exact expectation at a Gaussian initialisation); the sample version of
    level 1 agrees with the exact one on many Gaussian points; the quality is not saturated by a
    width >= d (unlike the ridge R^2, which is 1 there)."""
    d, m = 12, 16
    t = targets.hierarchy(KEY, d=d, widths=(2, 2, 2), alphas=(1.0, 0.5, 0.25))
    model = models.get_deepquad(m, d, levels=3, reference=t)
    x = np.random.default_rng(9).standard_normal((3000, d)).astype(np.float32)
    rng = np.random.default_rng(10)  # W_1 at the standard initialisation: iid N(0, W_std^2 / d) entries
    q = np.array([np.mean(np.cos(model.input_angles({"W1": rng.standard_normal((d, m)) / math.sqrt(d)})) ** 2)
                  for _ in range(200)])
    assert abs(q.mean() - 2 / d) < 5 * q.std() / math.sqrt(q.size)
    params = jax.jit(model.init)(KEY)
    fq = model.feature_quality(params, x)
    sq = model.subspace_quality(params, x)
    assert sq.shape == (3,) and np.all((sq >= 0) & (sq <= 1)) and fq[0] > 0.99 and sq[0] < 0.9
    exact = np.mean(np.cos(model.input_angles(params)) ** 2)
    assert sq[0] == pytest.approx(exact, abs=0.05)
    # plant the teacher's level-1 directions (span U^T: S_1 = z / scale with z = U x, W_1 = I since
    # k_1 = rank; U drawn as rbk.targets.hierarchy draws it) as W_1's dominant ones
    U = np.linalg.qr(np.random.default_rng([int(v) for v in np.asarray(KEY)]).standard_normal((d, 2)))[0]
    planted = dict(params, W1=params["W1"] * 1e-3 + jnp.asarray(np.hstack([U, np.zeros((d, m - 2))]), jnp.float32))
    np.testing.assert_allclose(model.input_angles(planted), 0.0, atol=1e-2)
    assert model.subspace_quality(planted, x)[0] > 0.999
    ang = model.level_angles(planted, x)
    assert [a.shape for a in ang] == [(2,), (2,), (2,)] and all(np.all(np.diff(a) >= 0) for a in ang)
    with pytest.raises(ValueError, match="reference"):
        models.get_deepquad(m, d, levels=3).subspace_quality(params, x)


def test_span_quality_from_the_training_probes_equals_the_direct_one():
    """The span quality Experiment 4 records over training (from the probe's Gram blocks, no points
    kept) equals DeepQuad.subspace_quality on the probe's evaluation half, for a trained-looking
    (planted) and a random network; the ridge quality read from the longer stats is unchanged."""
    d, m = 10, 12
    t = targets.hierarchy(KEY, d=d, widths=(3, 2, 2), alphas=(1.0, 0.6, 0.3), readout="square")
    model = models.get_deepquad(m, d, levels=3, activation="truncated", reference=t, head_init="random")
    x = np.random.default_rng(3).standard_normal((1600, d)).astype(np.float32)
    params = jax.jit(model.init)(KEY)
    U = np.linalg.qr(np.random.default_rng(4).standard_normal((d, 3)))[0]
    planted = dict(params, W1=params["W1"] * 1e-2 + jnp.asarray(np.hstack([U, np.zeros((d, m - 3))]), jnp.float32))
    for p in (params, planted):
        stats = jax.jit(model.probe_stats)(p, jnp.asarray(x))
        np.testing.assert_allclose(model.subspace_quality_from_stats(stats), model.subspace_quality(p, x[800:]),
                                   rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(model.feature_quality_from_stats(stats[None, None]),
                                   model.feature_quality(p, x)[None, None], rtol=1e-6)
    with pytest.raises(ValueError, match="probe_stats"):
        model.subspace_quality_from_stats(np.zeros(7))
