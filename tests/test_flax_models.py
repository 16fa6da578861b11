"""rbk.flax_models: the Flax modules against rbk's own ``apply`` (outputs, gradients, an optax loop).

Skipped where flax is not installed (it is the optional extra ``rbk[flax]``; CI installs it
in its own lane). Matrix products run at full float32 precision, so the comparisons hold on
accelerators whose default float32 product is TF32.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("flax")

from rbk import data, flax_models, models, targets  # noqa: E402

CASES = [(a, p, v) for a in models.ARCHS for p in models.PARAMETERIZATIONS for v in models.VARIANTS]


def _model(arch, par, variant, **kw):
    return models.get_model(arch, 16, 6, 3, parameterization=par, variant=variant, W_std=1.3, b_std=0.4, **kw)


def _params(model, seed=0):
    """rbk parameters with non-zero biases and offsets, so every path of the forward pass counts."""
    p = model.init(jax.random.PRNGKey(seed))
    keys = iter(jax.random.split(jax.random.PRNGKey(seed + 100), len(p)))
    return {k: v + 0.3 * jax.random.normal(next(keys), v.shape) if k[0] in "bd" else v for k, v in p.items()}


@pytest.mark.parametrize("arch,par,variant", CASES)
def test_outputs_and_gradients_match_rbk(arch, par, variant):
    model = _model(arch, par, variant)
    module = flax_models.Learner(model)
    p = _params(model)
    x = jax.random.normal(jax.random.PRNGKey(1), (7, 6))
    y = jax.random.normal(jax.random.PRNGKey(2), (7, 3))

    def loss_rbk(p):
        return jnp.sum((model.apply(p, x) - y) ** 2)

    def loss_flax(v):
        return jnp.sum((module.apply(v, x) - y) ** 2)

    with jax.default_matmul_precision("highest"):
        v = flax_models.to_flax_params(model, p)
        np.testing.assert_allclose(module.apply(v, x), model.apply(p, x), rtol=1e-5, atol=1e-6)
        g_rbk = jax.grad(loss_rbk)(p)
        g_flax = flax_models.from_flax_params(model, jax.grad(loss_flax)(v))  # every leaf, frozen ones too
    assert set(g_flax) == set(g_rbk)
    for name in g_rbk:
        scale = float(jnp.max(jnp.abs(g_rbk[name]))) + 1e-12
        np.testing.assert_allclose(g_flax[name], g_rbk[name], rtol=1e-5, atol=1e-6 * scale, err_msg=name)


@pytest.mark.parametrize("arch,par,variant", CASES)
def test_parameter_map_round_trips_exactly_and_splits_by_label(arch, par, variant):
    model = _model(arch, par, variant)
    p = _params(model)
    v = flax_models.to_flax_params(model, p)
    back = flax_models.from_flax_params(model, v)
    assert set(back) == set(p) and all(back[k] is p[k] for k in p)  # the same arrays, nothing copied or cast
    x = jnp.ones((2, 6))
    v0 = flax_models.Learner(model).init(jax.random.PRNGKey(3), x)
    assert jax.tree.map(jnp.shape, v0) == jax.tree.map(jnp.shape, v)
    again = flax_models.to_flax_params(model, flax_models.from_flax_params(model, v0))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), again, v0))
    # 'params' holds exactly the leaves rbk's trainer moves
    trained = {k for k, lab in model.labels(p).items() if lab != models.FROZEN}
    n_trained = len(jax.tree.leaves(v["params"]))
    assert n_trained == len(trained) and len(jax.tree.leaves(v)) == len(p)


def test_frozen_output_layer_lives_outside_params():
    model = _model("3resnet", "standard", "practical", train_output=False)
    v = flax_models.to_flax_params(model, _params(model))
    assert set(v["frozen"]) == {"readout"} and "readout" not in v["params"]


def test_flax_init_draws_rbk_initial_distribution():
    model = models.get_model("3resnet", 256, 32, 8)
    v = flax_models.Learner(model).init(jax.random.PRNGKey(0), jnp.ones((1, 32)))
    p = flax_models.from_flax_params(model, v)
    assert np.var(p["W"]) == pytest.approx(2 / 32, rel=0.08)
    assert np.var(p["U"]) == pytest.approx(0.01 * 2 / 256, rel=0.05)
    assert np.var(p["A"]) == pytest.approx(1 / 256, rel=0.12)
    assert np.all(p["b1"] == 0) and np.all(p["b2"] == 0)
    theory = models.get_model("3resnet", 32, 6, 3, variant="theory")
    pt = flax_models.from_flax_params(theory, flax_models.Learner(theory).init(jax.random.PRNGKey(0), jnp.ones((1, 6))))
    assert np.all(pt["dW"] == 0) and np.all(pt["dU"] == 0) and np.var(pt["W0"]) > 0


def test_bad_input_names_the_parameter():
    model = _model("3nn", "standard", "practical")
    p = _params(model)
    with pytest.raises(ValueError, match=r"leaves \['A', 'U', 'W', 'b1', 'b2'\]"):
        flax_models.to_flax_params(model, {k: v for k, v in p.items() if k != "U"})
    with pytest.raises(ValueError, match=r"params\['W'\] must have shape \(6, 16\)"):
        flax_models.to_flax_params(model, {**p, "W": p["W"].T})
    v = flax_models.to_flax_params(model, p)
    with pytest.raises(ValueError, match="missing \\['params/layer2/bias'\\]"):
        flax_models.from_flax_params(model, {"params": {**v["params"], "layer2": {"kernel": p["U"]}}})
    with pytest.raises(ValueError, match=r"variables\['params'\]\['readout'\]\['kernel'\] must have shape"):
        flax_models.from_flax_params(model, {"params": {**v["params"], "readout": {"kernel": p["A"].T}}})
    with pytest.raises(ValueError, match="model must be an rbk.models.Model"):
        flax_models.to_flax_params("3nn", p)
    with pytest.raises(ValueError, match="x must have d=6"):
        flax_models.Learner(model).apply(v, jnp.ones((2, 5)))


def test_optax_loop_on_an_rbk_target():
    """The README's example at small size: a user's optax loop trains the Flax learner; the
    same loop written over rbk's pytree with rbk's ``apply`` follows the same trajectory."""
    import optax

    target = targets.paper_instance(d=8, k=4, g_degree=2, alpha=0.3)
    net = models.get_model("3resnet", width=32, d=8, k=4)
    module = flax_models.Learner(net)
    variables = flax_models.to_flax_params(net, net.init(jax.random.PRNGKey(0)))
    ds = data.make_dataset(data.seed_keys(0)[0], target, 500, n_test=500)
    opt = optax.chain(  # the README's recipe: 6 epochs of 10 steps, lr/10 after 3
        optax.add_decayed_weights(1e-3), optax.sgd(optax.piecewise_constant_schedule(0.05, {30: 0.1}), momentum=0.9)
    )

    def make_step(apply):
        def step(params, state, x, y):
            loss, g = jax.value_and_grad(lambda q: 0.5 * jnp.mean(jnp.sum((apply(q, x) - y) ** 2, -1)))(params)
            upd, state = opt.update(g, state, params)
            return optax.apply_updates(params, upd), state, loss

        return jax.jit(step)

    flax_step = make_step(lambda q, x: module.apply({**variables, "params": q}, x))
    rbk_step = make_step(net.apply)
    params, rparams = variables["params"], net.init(jax.random.PRNGKey(0))
    state, rstate = opt.init(params), opt.init(rparams)
    losses, rlosses = [], []
    with jax.default_matmul_precision("highest"):
        for epoch in range(6):
            for idx in jax.random.permutation(jax.random.PRNGKey(epoch), 500).reshape(10, 50):
                x, y = ds.x_train[idx], ds.y_train[idx]
                params, state, loss = flax_step(params, state, x, y)
                rparams, rstate, rloss = rbk_step(rparams, rstate, x, y)
                losses.append(float(loss))
                rlosses.append(float(rloss))
        trained = flax_models.from_flax_params(net, {**variables, "params": params})
        out_flax = module.apply({**variables, "params": params}, ds.x_test)
        out_rbk = net.apply(trained, ds.x_test)
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    np.testing.assert_allclose(out_flax, out_rbk, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(losses, rlosses, rtol=1e-4, atol=1e-6)
    for name in trained:
        np.testing.assert_allclose(trained[name], rparams[name], rtol=1e-4, atol=1e-5, err_msg=name)
