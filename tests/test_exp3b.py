"""Experiment 3b (transfer of learned features to a new head): the study end to end on a tiny
grid, transfer on perfect features against the kernel, the slope fit on a closed-form case,
and bad input."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest

from rbk import cli, data, experiments, kernels, stats, sweep, targets, train
from rbk.experiments import exp3b

TINY = dict(ds=(4,), seeds=(0, 1), n2s=(8, 32), width=16, n_test=100, n_val=100, n1_factor=8.0,
            eta_mults=(1.0,), ridges=(1e-3, 1e-1), kernel_ridges=(1e-2,))  # fmt: skip


# one d and two learners keep the default lane fast (JAX compiles every new shape: ~15 CPU-s per d);
# the slow lane runs every learner at two d (a slope)
@pytest.mark.parametrize("ds, learners", [((4,), ("transfer", "ntk-2nn")),
                                          pytest.param((4, 6), tuple(exp3b.LEARNERS), marks=pytest.mark.slow)])
def test_tiny_profile_end_to_end(tmp_path, ds, learners):
    tiny = dict(TINY, ds=ds, learners=learners)
    summary = experiments.run("exp3b", tmp_path, "quick", quiet=True, plot=True, **tiny)
    spec = exp3b.spec("quick", **tiny)
    rows = sweep.load_rows(tmp_path)
    assert len(rows) == len(spec.learners) * len(ds) * 2 * 2  # learners x d x seeds x n2
    assert {r["learner"] for r in rows} == set(learners)
    for r in rows:
        assert set(r) == set(exp3b.Exp3bSpec.row_fields) and r["n"] == r["n2"]
        assert r["cv_folds"] == min(spec.folds, r["n2"]) == 5  # the selection is 5-fold CV inside n2
        assert r["threshold"] == pytest.approx(0.5)  # two head degrees of equal energy: the top one holds 1/2
        assert not r["diverged"] and 0 < r["test_error"] < 50
        assert (r["learner"] == "transfer") == (r["source_test_error"] is not None)  # NaN is written as null
    # the same head data for every learner: the training points are prefixes of one pool
    src, head = exp3b.instance(spec, ds[-1], 1)
    pool = exp3b.transfer_pool(spec, head, ds[-1], 1)
    small = exp3b.subset(spec, pool, 8)
    assert np.array_equal(np.asarray(small.x_train), np.asarray(pool.x_train)[:8])
    ntk = kernels.fit_predict(kernels.kernel_fn("2nn", b_std=1.0), small, (1e-2,))
    row = next(r for r in rows if (r["learner"], r["d"], r["seed"], r["n"]) == ("ntk-2nn", ds[-1], 1, 8))
    assert row["test_error"] == pytest.approx(ntk["test_error"], rel=1e-9)
    # the summary: seed means, n2* per (learner, d), slopes in exp3's format
    assert summary["complete"] and set(summary["slopes"]) == set(learners)
    for lr, s in summary["slopes"].items():  # the NTK's predicted slope beside its measured one (two d or more)
        assert set(s) - {"predicted"} == {"slope", "ci95", "censored"} and len(s["ci95"]) == 2
        assert ("predicted" in s) == (lr == "ntk-2nn" and len(ds) > 1)
    assert set(summary["predicted"]) == {"ntk-2nn"} and set(summary["predicted"]["ntk-2nn"]) == {str(d) for d in ds}
    mean = next(r for r in summary["rows"] if (r["learner"], r["d"], r["n"]) == ("ntk-2nn", ds[-1], 8))
    seeds = [r["test_error"] for r in rows if (r["learner"], r["d"], r["n"]) == ("ntk-2nn", ds[-1], 8)]
    assert mean["test_error_mean"] == pytest.approx(np.mean(seeds), rel=1e-12)
    assert len(summary["n_star"]) == len(learners) * len(ds)
    assert all((s["slope"] is not None) == (len(ds) > 1) for s in summary["slopes"].values())
    assert json.loads((tmp_path / "summary.json").read_text())["slopes"] == summary["slopes"]
    for name in ("exp3b_curves", "exp3b_nstar"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0 and (tmp_path / f"{name}.pdf").exists()
    assert "slope of log n2*" in exp3b.format_table(summary)
    # a second run resumes: nothing recomputed, the same rows
    again = experiments.run("exp3b", tmp_path, "quick", quiet=True, plot=False, **tiny)
    assert sweep.load_rows(tmp_path) == rows and again["n_star"] == summary["n_star"]


def test_transfer_on_perfect_features_beats_the_kernel_at_small_n2():
    """Features relu(a_j u.x + b_j) that span U exactly fit g' = (h_2 + h_3)/sqrt 2 from 100 samples
    at d = 24 far below the threshold 1/2; the exact NTK on the same samples stays above it."""
    d, m, n2 = 24, 256, 100
    spec = exp3b.make_spec(ds=(d,), head_degrees=(2, 3))
    src, head = exp3b.instance(spec, d, 0)
    u = np.asarray(src.info["U"])[0]
    ka, kb = jax.random.split(jax.random.PRNGKey(7))
    a = np.asarray(jax.random.normal(ka, (m,)), np.float64)
    feats = {"W": np.outer(u, a).astype(np.float32), "b1": np.asarray(jax.random.normal(kb, (m,)))}
    ds = data.make_dataset(jax.random.PRNGKey(3), head, n2, n_val=500, n_test=3000)
    transfer = train.fit_readout(feats, ds)["test_error"]
    ntk = kernels.fit_predict(kernels.kernel_fn("2nn", b_std=1.0), ds, (1e-3, 1e-1))["test_error"]
    assert head.threshold == pytest.approx(0.5)
    assert transfer < 0.25 < 0.5 < ntk


def test_transfer_head_is_on_the_source_subspace_with_equal_energy_per_degree():
    spec = exp3b.make_spec(ds=(10,), source="sum_of_products", r=2, p=4, head_degrees=(1, 2, 3))
    src, head = exp3b.instance(spec, 10, 0)
    assert np.array_equal(np.asarray(head.info["U"]), np.asarray(src.info["U"]))
    assert head.info["degree_energy"] == pytest.approx([0.0, 1 / 3, 1 / 3, 1 / 3], abs=1e-12)
    assert head.threshold == pytest.approx(1 / 3)
    x = np.asarray(data.sample_inputs(jax.random.PRNGKey(1), 200000, 10, "gaussian"))
    assert float(np.mean(np.asarray(head(x)) ** 2)) == pytest.approx(1.0, abs=0.03)  # Monte Carlo E[g'^2] = 1


def _power_law_rows(exponents: dict, ds=(4, 8, 16), ns=(10, 100, 1000, 10000, 100000), thr=0.5):
    """Rows whose seed curves are exactly ``thr * (c d^k / n)``: every seed crosses at n2* = c d^k."""
    rows = []
    for lr, (c, k) in exponents.items():
        for d in ds:
            for seed in (0, 1, 2):
                for n in ns:
                    e = thr * (c * d**k / n) * (1.0 + 0.0 * seed)
                    rows.append({"experiment": "exp3b", "learner": lr, "kind": exp3b.LEARNERS[lr], "n": n,
                                 "seed": seed, "val_error": e, "test_error": e, "train_error": e,
                                 "diverged": False, "d": d, "threshold": thr, "source_test_error": 0.1})  # fmt: skip
    return rows


def test_slopes_recover_the_exponent_of_a_power_law():
    spec = exp3b.make_spec(ds=(4, 8, 16))
    rows = _power_law_rows({"transfer": (50.0, 0.0), "ntk-2nn": (3.0, 2.0), "rf-2nn": (1.0, 3.0)})
    summary = exp3b.summarize(spec, rows)
    s = summary["slopes"]
    assert s["transfer"]["slope"] == pytest.approx(0.0, abs=1e-9) and not s["transfer"]["censored"]
    assert s["ntk-2nn"]["slope"] == pytest.approx(2.0, abs=1e-9)
    assert s["ntk-2nn"]["ci95"] == pytest.approx([2.0, 2.0], abs=1e-9)  # identical seeds: every resample is exact
    # rf: n2* = d^3 = 64, 512, 4096, all inside the grid: slope 3
    assert s["rf-2nn"]["slope"] == pytest.approx(3.0, abs=1e-9)
    ns = {(r["learner"], r["d"]): r["estimate"] for r in summary["n_star"]}
    assert ns[("ntk-2nn", 8)] == pytest.approx(3.0 * 64, rel=1e-9)
    # a censored d enters at its bound: cap the grid below the kernel's n2* at d = 16 (768)
    capped = [r for r in rows if not (r["learner"] == "ntk-2nn" and r["d"] == 16 and r["n"] > 100)]
    sc = exp3b.summarize(spec, capped)["slopes"]["ntk-2nn"]
    assert sc["censored"] and sc["slope"] == pytest.approx(np.polyfit(np.log([4, 8, 16]), np.log([48, 192, 100]), 1)[0])


# ---------------------------------------------------------------------- every label counted in n2

#: 4 folds: equal blocks of 2 (n2 = 8) and 8 (n2 = 32) points
CV = dict(TINY, seeds=(0,), folds=4, ridges=(1e-3, 1.0), kernel_ridges=(1e-3, 1e-1), eta_mults=(0.5, 2.0))


def _cell_rows(spec, learner, monkeypatch=None, spoil=None):
    """The rows of ``learner``'s cell at d = 4, seed 0; ``spoil(pool) -> pool`` replaces the head's pool."""
    if spoil is not None:
        real = exp3b.transfer_pool
        monkeypatch.setattr(exp3b, "transfer_pool", lambda *a: spoil(real(*a)))
    cell = next(c for c in spec.plan() if c.learner == learner)
    rows = exp3b.run_cell(spec, cell)
    if spoil is not None:
        monkeypatch.setattr(exp3b, "transfer_pool", real)
    return [{k: v for k, v in r.items() if k != "call_wall_s"} for r in rows]


def _nan(a):
    return np.full(np.shape(a), np.nan, np.float32)


def _chosen(rows) -> str:
    """What a selection decides, per row, exactly (NaN-aware)."""
    return json.dumps([{k: r[k] for k in ("ridge", "eta", "val_error", "train_error", "cv_folds")} for r in rows])


@pytest.mark.parametrize("learner", tuple(exp3b.LEARNERS))
def test_no_selection_reads_a_label_outside_the_n2_training_samples(learner, monkeypatch):
    """Every learner's ridge (and scratch's step size) is chosen inside its n2 samples: with the
    pool's validation labels NaN the rows are finite and identical; with its test labels shifted
    every selection (setting, CV error, training error) is the same and only test_error moves."""
    spec = exp3b.make_spec(**dict(CV, learners=(learner,)))
    rows = _cell_rows(spec, learner)
    assert all(math.isfinite(r[f"{s}_error"]) for r in rows for s in ("train", "val", "test"))
    assert [r["cv_folds"] for r in rows] == [4, 4] and not any(r["diverged"] for r in rows)
    no_val = _cell_rows(spec, learner, monkeypatch, lambda p: p._replace(y_val=_nan(p.y_val)))
    assert json.dumps(no_val, sort_keys=True) == json.dumps(rows, sort_keys=True)  # NaN-aware, exact
    shifted = _cell_rows(spec, learner, monkeypatch, lambda p: p._replace(y_test=p.y_test + 10.0))
    assert _chosen(shifted) == _chosen(rows)
    assert all(s["test_error"] > r["test_error"] + 50 for s, r in zip(shifted, rows))  # the test labels give it alone


def test_the_kernels_cv_row_is_a_brute_force_k_fold_on_the_n2_samples():
    """The exact NTK's row at each n2: the 4-fold CV error of each ridge computed here with
    rbk.kernels.fit_predict on the folds themselves (trained on 3 blocks, errors on the 4th), the
    ridge of least mean error, refitted on all n2 for the test error."""
    spec = exp3b.make_spec(**dict(CV, learners=("ntk-2nn",)))
    rows = _cell_rows(spec, "ntk-2nn")
    pool = exp3b.transfer_pool(spec, exp3b.instance(spec, 4, 0)[1], 4, 0)
    kfn = kernels.kernel_fn("2nn", b_std=1.0)
    for row in rows:
        n2 = row["n2"]
        x, y = np.asarray(pool.x_train)[:n2], np.asarray(pool.y_train)[:n2]
        blocks = np.split(np.arange(n2), 4)
        cv = np.zeros(len(spec.kernel_ridges))
        for held in blocks:
            keep = np.setdiff1d(np.arange(n2), held)
            fold = data.Dataset(x[keep], y[keep], x[held], y[held], x[held], y[held])
            cv += np.asarray(kernels.fit_predict(kfn, fold, spec.kernel_ridges)["val_errors"]) / 4
        best = int(np.argmin(cv))
        full = kernels.fit_predict(kfn, data.Dataset(x, y, x[:1], y[:1], pool.x_test, pool.y_test), spec.kernel_ridges)
        assert row["ridge"] == spec.kernel_ridges[best] and row["cv_folds"] == 4
        assert row["val_error"] == pytest.approx(cv[best], rel=1e-9)
        assert row["test_error"] == pytest.approx(full["test_errors"][best], rel=1e-9)
        assert row["train_error"] == pytest.approx(full["train_errors"][best], rel=1e-9)
        assert len({round(v, 9) for v in cv}) == 2  # the ridges differ in CV error: the choice is a real one


BAD = [
    (dict(folds=1), "--folds"),
    (dict(folds=0), "--folds"),
    (dict(n2s=(2, 10)), "--n2"),  # scratch (a default learner): a fold of 2-fold CV at n2 = 2 trains on 1 point
    (dict(ds=(8, 8)), "--d"),
    (dict(ds=(1, 4)), "--d"),
    (dict(n2s=(40, 40)), "--n2"),
    (dict(n2s=(1, 10)), "--n2"),
    (dict(learners=("transfer", "cnn")), "--learners"),
    (dict(source="parity"), "--target"),
    (dict(source="sum_of_products", r=5, ds=(4, 8)), "--r"),
    (dict(r=2), "--r"),
    (dict(p=2), "--p"),
    (dict(head_degrees=(3,)), "--head-degrees"),
    (dict(head_degrees=(3, 3)), "--head-degrees"),
    (dict(head_degrees=(0, 2)), "--head-degrees"),
    (dict(n1_factor=0.0), "--n1-factor"),
    (dict(width=15), "--width"),
    (dict(eta_mults=(1.0, -1.0)), "--etas"),
    (dict(ridges=(-1.0,)), "--readout-ridges"),
    (dict(kernel_ridges=(1, 2, 3, 4, 5, 6)), "--kernel-ridges"),
    (dict(b_std=-1.0), "--b-std"),
    (dict(kernel_max_n=5), "--kernel-max-n"),
]


@pytest.mark.parametrize("kw, option", BAD)
def test_bad_input_is_a_clear_error(kw, option):
    with pytest.raises(ValueError, match=option):
        exp3b.make_spec(**kw)


def test_bad_command_line_exits_before_any_compute(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sweep, "run", lambda *a, **k: pytest.fail("computed before validating"))
    with pytest.raises(SystemExit) as e:
        cli.main(["exp3b", "--d", "16", "16", "--cpu-devices", "1", "--out", str(tmp_path / "never")])
    assert e.value.code == 2 and "--d" in capsys.readouterr().err and not (tmp_path / "never").exists()


def test_paper_profile_dry_run(capsys, tmp_path):
    assert cli.main(["exp3b", "--profile", "paper", "--dry-run", "--cpu-devices", "1", "--out", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert "cells: 80" in out and "transfer_d64_s4" in out and not (tmp_path / "p").exists()


def test_spec_round_trips_through_its_config():
    spec = exp3b.spec("paper")
    assert exp3b.Exp3bSpec.from_config(spec.config()) == spec
    assert sweep.spec_from_meta({"study": spec.study_path(), "config": spec.config(),
                                 "config_hash": spec.config_hash()}) == spec  # fmt: skip


def test_predicted_block_is_the_seed_mean_of_each_heads_curve():
    """``summary["predicted"]["ntk-2nn"]``: per d, the mean over seeds of rbk.theory's curve for
    each seed's own head (their coefficients, even relative signs, differ), and ``n_star`` where
    that mean curve crosses the head's threshold, each checked with rbk.theory called per seed."""
    from rbk import theory

    spec = exp3b.make_spec(**dict(TINY, ds=(4, 6), head_degrees=(2, 3), learners=("ntk-2nn",)))
    pred = exp3b.predictions(spec)["ntk-2nn"]
    kfn = kernels.kernel_fn("2nn", b_std=1.0)
    for d in (4, 6):
        heads = [exp3b.instance(spec, d, s)[1] for s in spec.seeds]
        per_seed = [theory.predicted_curves(kfn, [h], [d], list(spec.n2s), spec.kernel_ridges)[str(d)] for h in heads]
        got = pred[str(d)]
        assert got["ns"] == per_seed[0]["ns"] and got["ns"][-1] == 10**7 and got["seeds"] == [0, 1]
        assert got["test_error"] == pytest.approx(np.mean([c["test_error"] for c in per_seed], axis=0), rel=1e-10)
        assert got["threshold"] == pytest.approx(0.5)
        n = got["n_star"]
        assert n is not None and n > 1
        around = [theory.learning_curves(kfn, [h], [d], [0.99 * n, 1.01 * n], spec.kernel_ridges,
                                         optimal_n_star=False)[0]["grid"]["test_error"] for h in heads]
        lo, hi = np.mean(around, axis=0)
        assert lo > 0.5 > hi
    assert exp3b.predictions(exp3b.make_spec(**dict(TINY, learners=("rf-2nn",)))) == {}  # no kernel, no network


def test_a_diverged_source_is_recorded_and_the_sweep_finishes(tmp_path, monkeypatch):
    """Transfer's source step cannot diverge at any eta here (a relative-ridge read-out on ReLU
    features is scale-free), so the source's result is made non-finite, as a diverged two-stage
    returns it: every transfer row says diverged, its errors are null on disk, and the other
    learner's cells are written as usual."""
    import json
    import math

    monkeypatch.setattr(exp3b, "learn_features", lambda *a, **k: {"features": None, "test_error": math.nan,
                                                                    "eta": math.nan})  # fmt: skip
    spec = exp3b.make_spec(**dict(TINY, learners=("transfer", "rf-2nn")))
    res = sweep.run(spec, tmp_path / "run", quiet=True)
    assert len(res.ran) == len(spec.plan())
    transfer = [r for r in res.rows if r["learner"] == "transfer"]
    assert len(transfer) == len(spec.seeds) * len(spec.n2s) and all(r["diverged"] for r in transfer)
    assert all(not r["diverged"] for r in res.rows if r["learner"] == "rf-2nn")
    on_disk = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert all(r["test_error"] is None and r["source_test_error"] is None for r in on_disk if r["learner"] == "transfer")
