"""rbk.train: the recipe against a hand-written PyTorch-semantics SGD, vmap == one-by-one,
learning on a toy, divergence handling, frozen leaves."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rbk import data, models, targets, train

TOY = targets.paper_instance(d=8, k=2, g_degree=2, alpha=0.3)


def _toy_data(seeds, n=400):
    pairs = [data.seed_keys(s) for s in seeds]
    ds = data.stack([data.make_dataset(kd, TOY, n, n_val=200, n_test=500) for kd, _ in pairs])
    return ds, jnp.stack([kt for _, kt in pairs])


def test_optimizer_is_pytorch_sgd_with_coupled_l2_and_step_decay():
    """Three hand-written steps of torch.optim.SGD(momentum=0.9, weight_decay=wd), lr/10 at the boundary."""
    m = models.get_model("2nn", 3, 2, 1)
    params = {"W": jnp.array([[0.5, -1.0, 2.0], [1.5, 0.2, -0.3]]), "b1": jnp.zeros(3), "A": jnp.ones((3, 1))}
    cfg = train.config(2, decay_epoch=1)  # steps_per_epoch = 2 below: decay from step 2 on
    lr, wd, mom = 0.1, 0.01, 0.9
    opt = train.optimizer(m, params, lr, wd, cfg, steps_per_epoch=2)
    state = opt.init(params)
    grads = [jax.tree_util.tree_map(lambda a, s=s: jnp.full_like(a, 0.1 * (s + 1)), params) for s in range(3)]
    p_ref = {k: np.asarray(v, np.float64) for k, v in params.items()}
    buf = {k: np.zeros_like(v) for k, v in p_ref.items()}
    p = params
    for step, g in enumerate(grads):
        upd, state = opt.update(g, state, p)
        p = optax.apply_updates(p, upd)
        step_lr = lr if step < 2 else lr * 0.1
        for k in p_ref:  # torch: d_p = g + wd * p; buf = mom * buf + d_p; p -= lr * buf
            d_p = np.asarray(g[k], np.float64) + wd * p_ref[k]
            buf[k] = mom * buf[k] + d_p if step else d_p
            p_ref[k] = p_ref[k] - step_lr * buf[k]
    for k in p_ref:
        np.testing.assert_allclose(np.asarray(p[k]), p_ref[k], rtol=1e-6, atol=1e-7)


def test_clip_norm_bounds_the_gradient_before_momentum_and_decay():
    """``clip_norm``: torch's ``clip_grad_norm_`` then SGD, written out; a bound above every gradient
    changes nothing; a bad bound is named."""
    m = models.get_model("2nn", 3, 2, 1)
    params = {"W": jnp.array([[0.5, -1.0, 2.0], [1.5, 0.2, -0.3]]), "b1": jnp.zeros(3), "A": jnp.ones((3, 1))}
    lr, wd, mom, c = 0.1, 0.01, 0.9, 0.5
    grads = [jax.tree_util.tree_map(lambda a, s=s: jnp.full_like(a, 3.0 * (s + 1) * (-1) ** s), params) for s in range(3)]
    opt = train.optimizer(m, params, lr, wd, train.config(2, clip_norm=c), steps_per_epoch=10)
    plain = train.optimizer(m, params, lr, wd, train.config(2, clip_norm=1e9), steps_per_epoch=10)
    ref = train.optimizer(m, params, lr, wd, train.config(2), steps_per_epoch=10)
    state, s_plain, s_ref = opt.init(params), plain.init(params), ref.init(params)
    p = q = r = params
    p_ref = {k: np.asarray(v, np.float64) for k, v in params.items()}
    buf = {k: np.zeros_like(v) for k, v in p_ref.items()}
    for step, g in enumerate(grads):
        upd, state = opt.update(g, state, p)
        p = optax.apply_updates(p, upd)
        u2, s_plain = plain.update(g, s_plain, q)
        q = optax.apply_updates(q, u2)
        u3, s_ref = ref.update(g, s_ref, r)
        r = optax.apply_updates(r, u3)
        norm = np.sqrt(sum(np.sum(np.asarray(v, np.float64) ** 2) for v in g.values()))
        for k in p_ref:  # torch: clip_grad_norm_(c), then d_p = g + wd * p; buf = mom * buf + d_p; p -= lr * buf
            d_p = np.asarray(g[k], np.float64) * min(1.0, c / norm) + wd * p_ref[k]
            buf[k] = mom * buf[k] + d_p if step else d_p
            p_ref[k] = p_ref[k] - lr * buf[k]
    for k in p_ref:
        np.testing.assert_allclose(np.asarray(p[k]), p_ref[k], rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(np.asarray(q[k]), np.asarray(r[k]))
    assert not np.allclose(np.asarray(p["W"]), np.asarray(r["W"]))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="clip_norm"):
            train.config(2, clip_norm=bad)


@pytest.fixture(scope="module")
def members():
    """One vmapped training shared by the tests below (one compilation): 2 seeds x 3 learning
    rates (the last diverges) x 2 weight decays of a 3resnet, recorded after epochs 1 and 2."""
    m = models.get_model("3resnet", 16, 8, 2)
    cfg = train.config(2, batch_size=20, record_epochs=[1])
    ds, keys = _toy_data([0, 1])
    lrs, wds = [0.05, 0.02, 1e4], [0.0, 1e-3]
    return m, cfg, ds, keys, lrs, wds, train.train(m, ds, keys, lrs, wds, cfg)


def test_vmapped_members_match_one_by_one(members):
    m, cfg, ds, keys, lrs, wds, full = members
    assert full.errors["test"].shape == (2, 3, 2, 2) and full.record_epochs == (1, 2)
    for s in range(2):
        one_ds = jax.tree_util.tree_map(lambda a: a[s : s + 1], ds)
        for i, lr in enumerate(lrs[:2]):  # the diverging one: test_divergence_is_flagged_and_isolated
            for j, wd in enumerate(wds):
                single = train.train(m, one_ds, keys[s : s + 1], [lr], [wd], cfg)
                for split in train.SPLITS:
                    np.testing.assert_allclose(single.errors[split][0, 0, 0], full.errors[split][s, i, j], rtol=1e-5)
                np.testing.assert_allclose(single.epoch_loss[0, 0, 0], full.epoch_loss[s, i, j], rtol=1e-5)


def test_max_members_splits_the_call_and_changes_no_member(members):
    """12 members (2 seeds x 3 lrs x 2 wds) in calls of one member (the split by seed, then by lr,
    then by wd: every level of it; whole seeds per call are checked in test_exp4's resume test):
    the same results, assembled in member order. (One member per call: one more compiled program.)"""
    m, cfg, ds, keys, lrs, wds, full = members
    ticks = []
    split = train.train(m, ds, keys, lrs, wds, cfg, max_members=1, progress=ticks.append, return_params=True)
    assert sum(ticks) == 2 * 3 * 2 * 2
    assert split.diverged.tolist() == full.diverged.tolist()
    np.testing.assert_array_equal(split.lrs, full.lrs)
    np.testing.assert_array_equal(split.wds, full.wds)
    ok = ~full.diverged
    for sp in train.SPLITS:
        assert split.errors[sp].shape == full.errors[sp].shape
        np.testing.assert_allclose(split.errors[sp][ok], full.errors[sp][ok], rtol=1e-5)
    assert split.params["W"].shape[:3] == (2, 3, 2)
    with pytest.raises(ValueError, match="max_members"):
        train.train(m, ds, keys, lrs, wds, cfg, max_members=0)


def test_same_seed_same_numbers():
    m = models.get_model("2nn", 16, 8, 2)
    cfg = train.config(2, batch_size=20)
    a = train.fit(m, TOY, 200, [3], [0.05], [0.0], cfg, n_test=100)
    b = train.fit(m, TOY, 200, [3], [0.05], [0.0], cfg, n_test=100)
    np.testing.assert_array_equal(a.errors["test"], b.errors["test"])


@pytest.mark.parametrize("arch", models.ARCHS)
def test_training_learns_a_toy(arch):
    m = models.get_model(arch, 64, 8, 2)
    cfg = train.config(30, batch_size=20)
    r = train.fit(m, TOY, 1000, [0], [0.05], [0.0], cfg, n_val=200, n_test=1000)
    initial = float(np.mean(np.sum(np.asarray(TOY(data.make_dataset(data.seed_keys(0)[0], TOY, 1000, n_val=200).x_test)) ** 2, -1)))
    final = r.final("test")[0, 0, 0]
    assert final < 0.2 * initial, (final, initial)
    assert r.errors["train"][0, 0, 0, -1] < r.errors["train"][0, 0, 0, 0]


def test_divergence_is_flagged_and_isolated(members):
    m, cfg, ds, keys, lrs, wds, r = members
    assert r.diverged.tolist() == [[[False, False], [False, False], [True, True]]] * 2
    alone = train.train(m, jax.tree_util.tree_map(lambda a: a[:1], ds), keys[:1], [0.05], [0.0], cfg)
    np.testing.assert_allclose(alone.final("test")[0, 0, 0], r.final("test")[0, 0, 0], rtol=1e-5)


def test_frozen_leaves_do_not_move():
    ds, keys = _toy_data([0])
    cfg = train.config(2, batch_size=20)
    frozen_out = models.get_model("2nn", 16, 8, 2, train_output=False)
    r = train.train(frozen_out, ds, keys, [0.05], [1e-2], cfg, return_params=True)
    init = frozen_out.init(jax.random.split(keys[0])[0])
    # equal up to the rounding of the init recomputed outside the compiled call
    np.testing.assert_allclose(r.params["A"][0, 0, 0], init["A"], rtol=1e-6, atol=1e-7)
    assert not np.allclose(r.params["W"][0, 0, 0], init["W"])

    theory = models.get_model("3resnet", 16, 8, 2, variant="theory")
    cfg_t = train.config(2, batch_size=20, layer_lr={"W": 1.0, "U": 0.5}, layer_wd={"U": 2.0})
    r = train.train(theory, ds, keys, [0.05], [1e-2], cfg_t, return_params=True)
    init = theory.init(jax.random.split(keys[0])[0])
    for name in ("W0", "U0", "A", "b1", "b2"):
        np.testing.assert_allclose(r.params[name][0, 0, 0], init[name], rtol=1e-6, atol=1e-7)
    assert np.abs(r.params["dW"]).max() > 0 and np.abs(r.params["dU"]).max() > 0


def test_layer_lr_zero_freezes_a_layer():
    ds, keys = _toy_data([0])
    m = models.get_model("3nn", 16, 8, 2)
    cfg = train.config(2, batch_size=20, layer_lr={"U": 0.0}, layer_wd={"U": 0.0})
    r = train.train(m, ds, keys, [0.05], [1e-2], cfg, return_params=True)
    init = m.init(jax.random.split(keys[0])[0])
    np.testing.assert_allclose(r.params["U"][0, 0, 0], init["U"], rtol=1e-6, atol=1e-7)


def test_epoch_progress_counts_member_epochs_and_changes_no_number(members):
    m, cfg, ds, keys, lrs, wds, plain = members
    ticks = []
    with_bar = train.train(m, ds, keys, lrs, wds, cfg, progress=ticks.append)
    assert sum(ticks) == 2 * 3 * 2 * 2  # members x epochs
    np.testing.assert_array_equal(with_bar.final("test"), plain.final("test"))  # the diverged: nan in both
    np.testing.assert_array_equal(with_bar.epoch_loss, plain.epoch_loss)
    assert not train.progress_sinks()  # the sink is gone after the call


def test_matmul_precision_is_validated_recorded_and_set_on_every_product():
    """The option reaches every dot of the compiled call, whatever the caller's own setting."""
    assert train.config(2).matmul_precision == "highest"
    assert train.config(2, matmul_precision="tensorfloat32").matmul_precision == "high"
    assert train.config(2, matmul_precision="bfloat16").describe()["matmul_precision"] == "default"
    with pytest.raises(ValueError, match=r"matmul_precision must be one of \[.*'highest'.*\], got 'tf32'"):
        train.config(2, matmul_precision="tf32")
    m = models.get_model("3resnet", 8, 8, 2)
    ds, keys = _toy_data([0], n=100)
    for prec, name in (("highest", "HIGHEST"), ("tensorfloat32", "HIGH"), ("default", "DEFAULT")):
        cfg = train.config(2, batch_size=20, matmul_precision=prec)
        fn, args, *_ = train.prepare(m, ds, keys, [0.05], [0.0], cfg)
        with jax.default_matmul_precision("bfloat16" if name == "HIGHEST" else "highest"):
            text = fn.lower(*args).as_text()
        dots = [line for line in text.splitlines() if "dot_general" in line]
        assert len(dots) >= 6 and all(f"precision = [{name}, {name}]" in line for line in dots), (prec, dots[:2])
