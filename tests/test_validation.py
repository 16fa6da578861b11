"""Bad input raises ValueError naming the parameter and its range, before anything is compiled."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rbk import data, models, targets, train

T = targets.paper_instance(d=8, k=2, g_degree=2)
M = models.get_model("2nn", 8, 8, 2)


@pytest.fixture(autouse=True)
def no_compile(monkeypatch):
    """Any attempt to build the compiled trainer fails the test: validation must come first."""

    def boom(*a, **k):
        raise AssertionError("compiled before validating")

    monkeypatch.setattr(train.sgd, "_compiled_fn", boom)


def _ds(n=100, **kw):
    kd, kt = data.seed_keys(0)
    return data.make_dataset(kd, T, n, n_val=50, n_test=50, **kw), kt[None]


def _with(ds, **kw):
    return ds._replace(**kw)


CASES = [
    ("d", lambda: targets.paper_instance(d=7)),
    ("d", lambda: targets.paper_instance(d=0)),
    ("k", lambda: targets.paper_instance(d=10, k=6)),
    ("k", lambda: targets.paper_instance(d=10, k=0)),
    ("g_degree", lambda: targets.paper_instance(d=10, k=3, g_degree=4)),
    ("alpha", lambda: targets.paper_instance(alpha=1.0)),
    ("alpha", lambda: targets.paper_instance(alpha=-0.1)),
    ("alpha", lambda: targets.paper_instance(alpha=float("nan"))),
    ("beta", lambda: targets.paper_instance(beta=0.0)),
    ("p", lambda: targets.random_instance(jax.random.PRNGKey(0), d=4, k=2, p=0)),
    ("activations", lambda: targets.random_instance(jax.random.PRNGKey(0), d=4, k=2, activations=("relu",))),
    ("F must map", lambda: targets.concept(lambda x: x, lambda y: y, d=4, k=2, alpha=0.1)),
    ("n", lambda: data.make_dataset(jax.random.PRNGKey(0), T, 0)),
    ("n_test", lambda: data.make_dataset(jax.random.PRNGKey(0), T, 10, n_test=0)),
    ("distribution", lambda: data.sample_inputs(jax.random.PRNGKey(0), 4, 2, "uniform")),
    ("noise", lambda: data.make_dataset(jax.random.PRNGKey(0), T, 10, noise=-1.0)),
    ("arch", lambda: models.get_model("4resnet", 8, 8, 2)),
    ("width", lambda: models.get_model("2nn", 0, 8, 2)),
    ("width", lambda: models.get_model("2nn", 2.5, 8, 2)),
    ("parameterization", lambda: models.get_model("2nn", 8, 8, 2, parameterization="mup")),
    ("variant", lambda: models.get_model("2nn", 8, 8, 2, variant="lazy")),
    ("W_std", lambda: models.get_model("2nn", 8, 8, 2, W_std=0.0)),
    ("b_std", lambda: models.get_model("2nn", 8, 8, 2, b_std=-1.0)),
    ("epochs", lambda: train.config(0)),
    ("momentum", lambda: train.config(2, momentum=1.0)),
    ("decay_epoch", lambda: train.config(10, decay_epoch=11)),
    ("record_epochs", lambda: train.config(10, record_epochs=[0])),
    ("layer_lr", lambda: train.config(10, layer_lr={"V": 1.0})),
    ("layer_wd", lambda: train.config(10, layer_wd={"W": -1.0})),
    ("batch_size", lambda: train.train(M, *_ds(40), [0.1], [0.0], train.config(1))),
    ("lrs", lambda: train.train(M, *_ds(), [-0.1], [0.0], train.config(1))),
    ("lrs", lambda: train.train(M, *_ds(), [], [0.0], train.config(1))),
    ("wds", lambda: train.train(M, *_ds(), [0.1], [-1e-3], train.config(1))),
    ("lrs", lambda: train.train(M, *_ds(), [float("inf")], [0.0], train.config(1))),
    ("data.x_train", lambda: train.train(M, _with(_ds()[0], x_train=_ds()[0].x_train.at[0, 0].set(jnp.nan)), _ds()[1], [0.1], [0.0], train.config(1))),
    ("data.y_train", lambda: train.train(M, _with(_ds()[0], y_train=_ds()[0].y_train[:, :1]), _ds()[1], [0.1], [0.0], train.config(1))),
    ("model expects d", lambda: train.train(models.get_model("2nn", 8, 6, 2), *_ds(), [0.1], [0.0], train.config(1))),
    ("keys", lambda: train.train(M, _ds()[0], jnp.zeros((3, 2), jnp.uint32), [0.1], [0.0], train.config(1))),
    ("model", lambda: train.train("2nn", *_ds(), [0.1], [0.0], train.config(1))),
    ("seeds", lambda: train.fit(M, T, 100, [], [0.1], [0.0], train.config(1))),
    ("batch_size", lambda: train.fit(M, T, 10, [0], [0.1], [0.0], train.config(1))),
]


@pytest.mark.parametrize("param, call", CASES, ids=[f"{i}-{c[0]}" for i, c in enumerate(CASES)])
def test_bad_input_raises_value_error_naming_the_parameter(param, call):
    with pytest.raises(ValueError) as err:
        call()
    assert param in str(err.value)


def test_messages_state_the_allowed_range():
    with pytest.raises(ValueError, match=r"alpha must be a finite number in \[0.0, 1.0\)"):
        targets.paper_instance(alpha=1.5)
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 5\]"):
        targets.paper_instance(d=10, k=6)
    with pytest.raises(ValueError, match=r"batch_size must be in \[1, N=40\]"):
        train.train(M, *_ds(40), [0.1], [0.0], train.config(1))
