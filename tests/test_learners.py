"""rbk.learners: the kernel learner's rows against rbk.kernels.fit_predict and a hand-written kernel
ridge; the network adapters against rbk.train's own results; the registry and the shared list
validators of rbk._checks."""

import math

import numpy as np
import pytest

from rbk import _checks, data, kernels, learners, models, targets, train
from rbk.learners import kernel as klearn

RIDGES = (1e-3, 1e-1, 1.0)


@pytest.fixture(scope="module")
def ds():
    kd, _ = data.seed_keys(3)
    return data.make_dataset(kd, targets.paper_instance(d=6, k=2, g_degree=2), 60, n_val=30, n_test=40)


@pytest.fixture(scope="module")
def kfn():
    return kernels.kernel_fn("2nn")


def test_kernel_rows_are_fit_predicts_numbers(ds, kfn):
    out = kernels.fit_predict(kfn, ds, RIDGES, get="ntk")
    rows = learners.kernel_rows(kfn, ds, RIDGES, get="ntk", base={"learner": "ntk-2nn"},
                                record=("ridge_abs", "diverged", "timing", "solver"))
    assert len(rows) == len(RIDGES)
    for i, r in enumerate(rows):
        assert r["learner"] == "ntk-2nn" and r["ridge"] == out["lams"][i] == RIDGES[i]
        for sp in ("train", "val", "test"):
            assert r[f"{sp}_error"] == out[f"{sp}_errors"][i]
        assert r["ridge_abs"] == out["ridges"][i] and r["diverged"] is False and r["solver"] == "dense"
        assert r["compile_s"] == 0.0 and r["call_wall_s"] == r["run_s"] > 0
        assert "iterations" not in r
    plain = learners.kernel_rows(kfn, ds, RIDGES, get="ntk")  # record=(): ridge, the errors and test_cov only
    assert set(plain[0]) == {"ridge", "train_error", "val_error", "test_error", "test_cov"}
    assert [r["test_cov"] for r in plain] == out["test_covs"]
    best = min(plain, key=lambda r: r["val_error"])
    assert learners.selected_row(out) == {k: v for k, v in best.items() if k != "test_cov"}


def test_kernel_rows_pass_the_cg_tolerance_on(ds, kfn):
    """``tol`` reaches the matrix-free solver: a loose one stops it sooner, with a larger residual."""
    rec = ("solver",)
    tight = learners.kernel_rows(kfn, ds, RIDGES[:1], get="ntk", record=rec, solver="cg", tol=1e-8)
    loose = learners.kernel_rows(kfn, ds, RIDGES[:1], get="ntk", record=rec, solver="cg", tol=1e-2)
    assert tight[0]["solver"] == loose[0]["solver"] == "cg"
    assert loose[0]["iterations"] < tight[0]["iterations"]
    assert tight[0]["residual"] <= 1e-8 < loose[0]["residual"] <= 1e-2


def test_kernel_rows_match_a_hand_written_kernel_ridge(ds, kfn):
    """Absolute ridge lam * mean(diag K), float64 solve, error = mean over points of the summed squares."""
    rows = learners.kernel_rows(kfn, ds, RIDGES, get="nngp")
    with kernels.x64():
        xtr, ytr = np.asarray(ds.x_train, np.float64), np.asarray(ds.y_train, np.float64)
        xte, yte = np.asarray(ds.x_test, np.float64), np.asarray(ds.y_test, np.float64)
        K = np.asarray(kfn(xtr, xtr, "nngp"), np.float64)
        Kte = np.asarray(kfn(xte, xtr, "nngp"), np.float64)
    for lam, r in zip(RIDGES, rows):
        alpha = np.linalg.solve(K + lam * np.mean(np.diag(K)) * np.eye(len(K)), ytr)
        want = np.mean(np.sum((Kte @ alpha - yte) ** 2, axis=1))
        assert r["test_error"] == pytest.approx(want, rel=1e-6)


def test_random_features_rows_are_its_numbers(ds):
    model = models.get_model("2nn", 32, 6, 2, parameterization="ntk")
    params = model.init(data.seed_keys(0)[1])
    out = kernels.random_features_fit_predict(model, params, ds, RIDGES)
    rows = learners.random_features_rows(model, params, ds, RIDGES, record=("diverged",))
    assert [r["ridge"] for r in rows] == out["lams"]
    assert [r["test_error"] for r in rows] == [float(v) for v in out["test_errors"]]
    assert all(r["diverged"] is False for r in rows)
    got = learners.get("rf").run(ds, data.seed_keys(0)[1], model=model, ridges=RIDGES)  # the key draws params
    assert [r["val_error"] for r in got] == [float(v) for v in out["val_errors"]]


def test_ridge_rows_flags_non_finite_and_cg_fields():
    out = {"lams": [0.1, 1.0], "ridges": [2.0, 20.0], "train_errors": [0.5, math.nan], "val_errors": [0.4, 0.3],
           "test_errors": [0.2, 0.1], "solver": "cg", "iterations": [7, 3], "residuals": [1e-7, 2e-7]}
    rows = learners.ridge_rows(out, {"seed": 4}, record=("diverged", "solver"))
    assert [r["diverged"] for r in rows] == [False, True]
    assert [(r["iterations"], r["residual"]) for r in rows] == [(7, 1e-7), (3, 2e-7)]
    with pytest.raises(ValueError, match=r"record\[0\]|record must be among"):
        learners.ridge_rows(out, record=("bogus",))
    with pytest.raises(ValueError, match="wall"):
        learners.ridge_rows(out, record=("timing",))


def test_sgd_rows_are_train_results_members():
    kd, kt = data.seed_keys(1)
    ds = data.make_dataset(kd, targets.paper_instance(d=6, k=2, g_degree=2), 60, n_val=20, n_test=20)
    model = models.get_model("2nn", 8, 6, 2)
    cfg = train.config(2, batch_size=20)
    res = train.train(model, ds, kt[None], [0.05, 0.01], [0.0], cfg)
    rows = learners.get("sgd").run(ds, kt[None], model=model, lrs=[0.05, 0.01], wds=[0.0], cfg=cfg,
                                   base=lambda i: {"seed_index": i}, record=("curve",))
    assert [(r["lr"], r["wd"], r["seed_index"]) for r in rows] == [(0.05, 0.0, 0), (0.01, 0.0, 0)]
    for j, r in enumerate(rows):
        assert r["test_error"] == float(res.final("test")[0, j, 0])
        assert r["train_error"] == float(res.final("train")[0, j, 0])
        assert r["test_over_training"] == [float(v) for v in res.errors["test"][0, j, 0]]
        assert r["record_epochs"] == list(cfg.record_epochs) and r["diverged"] is False


def test_two_stage_rows_hold_every_eta_and_ridge():
    kd, kt = data.seed_keys(2)
    ds = data.make_dataset(kd, targets.paper_instance(d=6, k=2, g_degree=2), 80, n_val=30, n_test=30)
    cfg = train.two_stage_config(16, [0.5, 2.0], ridges=(1e-2, 1.0))
    res = train.two_stage(ds, kt, cfg)
    rows = learners.two_stage_rows(ds, kt, cfg, base={"width": 16}, eta_scale=2.0)
    assert [(r["eta"], r["ridge"]) for r in rows] == [(0.25, 1e-2), (0.25, 1.0), (1.0, 1e-2), (1.0, 1.0)]
    best = min(rows, key=lambda r: r["val_error"])
    assert best["test_error"] == res["test_error"] and best["eta"] * 2.0 == res["eta"]


def test_registry_lookups_and_bad_names():
    assert learners.get("ntk").kind == "kernel" and learners.get("ntk").grid == ("ridge",)
    assert learners.names("regime") == ("deep-joint", "deep-layerwise", "deep-progressive", "deep-stopgrad")
    assert set(learners.names()) == set(learners.LEARNERS)
    for lr in learners.LEARNERS.values():
        assert lr.kind in learners.KINDS and set(lr.grid) <= set(lr.fields) and set(learners.ERRORS) <= set(lr.fields)
    with pytest.raises(ValueError, match=r"learner must be one of \['ntk', 'nngp', 'rf', 'sgd', .*\], got 'ntk2'"):
        learners.get("ntk2")
    with pytest.raises(ValueError, match=r"kind must be one of \['kernel', .*'regime'\], got 'net'"):
        learners.names("net")
    with pytest.raises(ValueError, match="model must be an rbk.models.DeepQuad"):
        learners.regime_rows("joint", models.get_model("2nn", 8, 6, 1), None, None, [0.1], [0.0], 2)
    assert klearn.RECORD == ("ridge_abs", "diverged", "timing", "solver")


def test_check_list_validators_name_the_parameter():
    assert _checks.check_ints("seeds", [2, 0, 1], lo=0, order="sorted") == (0, 1, 2)
    assert _checks.check_ints("seeds", 3, lo=0) == (3,)
    assert _checks.check_reals("lrs", [0.1, 0.2], lo=0.0, lo_open=True) == (0.1, 0.2)
    assert _checks.check_list("learners", (), empty=True) == ()
    cases = [
        (lambda: _checks.check_ints("seeds", [0, 0]), r"seeds must not repeat a value, got \[0, 0\]"),
        (lambda: _checks.check_ints("ns", [20, 10], order="ascending"), r"ns must be ascending, got \[20, 10\]"),
        (lambda: _checks.check_ints("ns", []), "ns must not be empty"),
        (lambda: _checks.check_ints("ns", 5, scalar=False), "ns must be a list, got 5"),
        (lambda: _checks.check_ints("ds", [1, 4], lo=2), r"ds must be an integer >= 2, got 1"),
        (lambda: _checks.check_ints("ds", [4, 1], lo=2, index_names=True), r"ds\[1\] must be an integer >= 2"),
        (lambda: _checks.check_reals("wds", [-1.0], lo=0.0), r"wds must be a finite number >= 0.0, got -1.0"),
        (lambda: _checks.check_list("x", [1], order="up"), "order must be None, 'sorted' or 'ascending'"),
    ]
    for call, msg in cases:
        with pytest.raises(ValueError, match=msg):
            call()


def test_regime_rows_are_regime_config_training():
    """deep-layerwise through the registry == rbk.train.train with regime_config('layerwise')."""
    kd, kt = data.seed_keys(5)
    ds = data.make_dataset(kd, targets.paper_instance(d=6, k=1, g_degree=1), 40, n_val=20, n_test=20)
    model = models.get_deepquad(8, 6, levels=2)
    cfg = train.regime_config("layerwise", 2, 4, batch_size=20)
    res = train.train(model, ds, kt[None], [0.02], [0.0], cfg)
    rows = learners.get("deep-layerwise").run(ds, kt[None], model=model, lrs=[0.02], wds=[0.0], epochs=4,
                                              batch_size=20)
    assert len(rows) == 1 and rows[0]["regime"] == "layerwise"
    assert rows[0]["test_error"] == float(res.final("test")[0, 0, 0])
    assert rows[0]["record_epochs"] == list(cfg.record_epochs)


def test_every_studys_learner_is_a_registered_learner_of_its_kind():
    """The experiments' learner names are views of rbk.learners.LEARNERS: each names a registered
    learner whose kind fits the rows' kind (kernels are 'kernel', random features
    'random-features', networks a trainer)."""
    from rbk.experiments.concept_class import learners as cc
    from rbk.experiments.hierarchy import study as hier
    from rbk.experiments.multi_index import exp3

    fits = {"ntk": {"kernel"}, "nngp": {"kernel"}, "rf": {"random-features"}, "net": {"sgd", "two-stage", "regime"}}
    offered = [(name, cc.parse_learner(name)[0], cc.learner(name)) for name in cc.LEARNERS]
    offered += [(name, lr.kind, learners.get(lr.shared)) for reg in (exp3.LEARNERS, hier.LEARNERS)
                for name, lr in reg.items()]  # fmt: skip
    assert len(offered) == len(cc.LEARNERS) + 6 + 8  # exp3: two-stage, giant-step, 2nn, ntk, nngp, rf; exp4: 4 deep, 2 kernels, 2nn, two-stage
    for name, kind, shared in offered:
        assert shared.kind in fits[kind], (name, kind, shared.name)
    assert cc.learner("ntk-3resnet") is learners.LEARNERS["ntk"] and cc.learner("3nn") is learners.LEARNERS["sgd"]
    assert hier.LEARNERS["deep-progressive"].shared == "deep-progressive" and exp3.LEARNERS["2nn"].shared == "sgd"
    assert exp3.LEARNERS["giant-step"].shared == "two-stage" and hier.LEARNERS["two-stage"].shared == "two-stage"
