"""Experiment 3 (multi-index targets): the slope of log n* against log d, the study end to end
on a tiny grid, its data and rows against direct library calls, resume and bad input."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from rbk import stats

# --------------------------------------------------------------------------------------------
# rbk.stats: the slope of log n* against log d
# --------------------------------------------------------------------------------------------


def test_loglog_slope_hand_computed():
    # u = ln2 (1, 2, 3), v = ln10 + ln2 (0, 2, 3): slope = ln2 * 3 ln2 / (2 ln2^2) = 3/2,
    # intercept = mean v - 3/2 mean u = ln10 + 5/3 ln2 - 3 ln2 = ln10 - 4/3 ln2
    slope, icpt = stats.loglog_slope([2, 4, 8], [10, 40, 80])
    assert slope == pytest.approx(1.5, rel=1e-12)
    assert icpt == pytest.approx(math.log(10) - 4 / 3 * math.log(2), rel=1e-12)
    with pytest.raises(ValueError, match="distinct"):
        stats.loglog_slope([3, 3], [1, 2])


NS = (100, 200, 400, 800, 1600, 3200, 6400, 12800)


def _rows(ds, factors, thr=0.5, gamma=1.0):
    """Power-law curves err = thr (c d^2 / n)^gamma: the seed-mean log curve crosses thr exactly at
    n* = d^2 * geometric mean of the seeds' c (log error is linear in log n, so is the interpolation)."""
    rows = {}
    for d in ds:
        rows[d] = [{"learner": "x", "kind": "net", "n": n, "seed": s, "val_error": 0.0, "diverged": False,
                    "test_error": thr * (c(d) * d**2 / n) ** gamma}
                   for s, c in enumerate(factors) for n in NS]  # fmt: skip
    return rows


def test_scaling_slope_exact_power_law_and_joint_bootstrap():
    # seed s has c_s at every d: a joint resample of seeds moves every n*(d) by the same factor,
    # so every bootstrap slope is exactly 2 (an independent resample per d would spread it)
    groups = _rows((4, 8, 16), [lambda d: 20.0, lambda d: 30.0, lambda d: 50.0])
    res = stats.scaling_slope(groups, 0.5, n_boot=300)
    assert res["slope"] == pytest.approx(2.0, abs=1e-9)
    assert res["ci95"] == pytest.approx([2.0, 2.0], abs=1e-9)
    assert res["n_star"] == pytest.approx([d**2 * 30000 ** (1 / 3) for d in (4, 8, 16)], rel=1e-9)
    assert not res["censored"] and res["bound"] is None
    assert math.exp(res["intercept"]) == pytest.approx(30000 ** (1 / 3), rel=1e-9)


def test_scaling_slope_bootstrap_matches_a_direct_resampling():
    # seed factors that differ per d: the CI is the percentile of slopes over joint resamples
    fac = {4: [10.0, 20.0, 40.0], 8: [30.0, 10.0, 20.0], 16: [20.0, 40.0, 10.0]}
    groups = _rows((4, 8, 16), [lambda d, s=s: fac[d][s] for s in range(3)])
    n_boot = 400
    res = stats.scaling_slope(groups, 0.5, n_boot=n_boot, boot_seed=7)
    idx = np.random.default_rng(7).integers(0, 3, size=(n_boot, 3))  # the resamples of rbk.stats.n_star
    u = np.log([4, 8, 16])
    slopes = []
    for b in idx:
        y = [math.log(d**2) + np.mean(np.log(np.asarray(fac[d])[b])) for d in (4, 8, 16)]
        slopes.append(np.polyfit(u, y, 1)[0])
    assert res["ci95"] == pytest.approx(np.percentile(slopes, [2.5, 97.5]), rel=1e-9)
    y0 = [math.log(d**2) + np.mean(np.log(fac[d])) for d in (4, 8, 16)]
    assert res["slope"] == pytest.approx(np.polyfit(u, y0, 1)[0], rel=1e-9)


def test_scaling_slope_censored_point_enters_at_its_bound():
    groups = _rows((4, 8, 16), [lambda d: 20.0, lambda d: 30.0])
    # at d = 16 the curve never gets below within the grid: n* > 12800, enters at 12800 -> a lower bound
    groups[16] = [dict(r, test_error=r["test_error"] * 100) for r in groups[16]]
    res = stats.scaling_slope(groups, 0.5, n_boot=200)
    y = [16 * math.sqrt(600), 64 * math.sqrt(600), 12800]
    assert res["n_star"] == pytest.approx(y, rel=1e-9)
    assert res["slope"] == pytest.approx(stats.loglog_slope([4, 8, 16], y)[0], rel=1e-12)
    assert res["censored"] and res["bound"] == "lower"
    # never below at the smallest d instead: the true point is higher there, the slope lower: an upper bound
    groups = _rows((4, 8, 16), [lambda d: 20.0, lambda d: 30.0])
    groups[4] = [dict(r, test_error=r["test_error"] * 1e4) for r in groups[4]]
    assert stats.scaling_slope(groups, 0.5, n_boot=50)["bound"] == "upper"


# --------------------------------------------------------------------------------------------
# the study
# --------------------------------------------------------------------------------------------

TINY = dict(ds=(4, 6), seeds=(0, 1), learners=("two-stage", "ntk-2nn"), ns=(60, 120), kernel_ns=(60, 120), width=16,
            etas=(0.5, 1.0), ridges=(1e-3, 1e-1), kernel_ridges=(1e-3, 1e-1), n_val=200, n_test=300,
            folds=0, theta=1.0, thetas=())  # fmt: skip  (the direct-call checks select on the validation split; folds: below)


def test_data_are_nested_in_n_and_fixed_per_d_and_seed():
    from rbk.experiments import exp3

    spec = exp3.make_spec(**TINY)
    t, a = exp3.dataset(spec, 6, 1, 1100)  # spans two chunks of the training stream
    _, b = exp3.dataset(spec, 6, 1, 600)
    np.testing.assert_array_equal(np.asarray(a.x_train)[:600], np.asarray(b.x_train))
    for f in ("x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(np.asarray(getattr(a, f)), np.asarray(getattr(b, f)))
    np.testing.assert_allclose(np.asarray(a.y_train), np.asarray(t(a.x_train)))
    U = np.asarray(t.info["U"])
    assert U.shape == (1, 6)
    assert not np.allclose(np.abs(U), np.abs(np.asarray(exp3.dataset(spec, 6, 0, 10)[0].info["U"])))
    assert t.threshold == pytest.approx(0.5)


def test_max_members_per_call_reaches_the_sgd_call_and_is_not_hashed(monkeypatch):
    from rbk import train
    from rbk.experiments import exp3

    calls = []
    real = train.train
    monkeypatch.setattr(train, "train", lambda *a, **kw: calls.append(kw.get("max_members")) or real(*a, **kw))
    kw = dict(TINY, learners=("2nn",), ds=(4,), seeds=(0,), ns=(60,), sgd_width=8, epochs=1, lrs=(0.01, 0.02))
    spec, chunked = exp3.make_spec(**kw), exp3.make_spec(**kw, max_members_per_call=1)
    assert chunked.config_hash() == spec.config_hash()
    assert exp3.Exp3Spec.from_config(chunked.config(), chunked.resolve(None)[1]) == chunked
    (cell,) = spec.plan()
    rows, rows1 = spec.run_cell(cell), chunked.run_cell(cell)
    assert calls[0] is None and calls[1] == 1  # then one call per member
    assert [r["lr"] for r in rows1] == [r["lr"] for r in rows] == [0.01, 0.02]
    for a, b in zip(rows, rows1):
        assert a["test_error"] == pytest.approx(b["test_error"], rel=1e-5) and np.isfinite(a["test_error"])


def test_summary_predicted_block_matches_rbk_theory(monkeypatch):
    # summarize on synthetic measured rows: the predicted block (kernel learner, every d of the grid
    # and the extra ones) is rbk.theory.predicted_curves itself; the predicted slope sits next to
    # the measured one; the figures draw it
    from rbk import kernels, theory
    from rbk.experiments import exp3

    monkeypatch.setattr(exp3, "EXTRA_DS", (8,))
    spec = exp3.make_spec(**dict(TINY, learners=("ntk-2nn",)))
    rows = [dict(r, learner="ntk-2nn", kind="ntk", d=d, threshold=0.5, ridge=1e-3, cell=f"c{d}_{r['n']}_{r['seed']}")
            for d, rs in _rows((4, 6), [lambda d: 1.0, lambda d: 1.5]).items() for r in rs]  # fmt: skip
    summary = exp3.summarize(spec, rows, quiet=True, n_boot=20)
    pred = summary["predicted"]
    assert set(pred) == {"ntk-2nn"} and set(pred["ntk-2nn"]) == {"4", "6", "8"}
    direct = theory.predicted_curves(kernels.kernel_fn("2nn", b_std=1.0), lambda d: exp3.dataset(spec, d, 0, 1)[0],
                                     [6], [60, 120], (1e-3, 1e-1))["6"]  # fmt: skip
    got = pred["ntk-2nn"]["6"]
    assert got["ns"] == direct["ns"] and {60, 120} <= set(got["ns"]) and got["ns"][-1] == 10**7
    assert got["test_error"] == pytest.approx(direct["test_error"], rel=1e-12)
    assert got["n_star"] == pytest.approx(direct["n_star"], rel=1e-12)
    s = summary["slopes"]["ntk-2nn"]
    assert s["basis"] == "measured" and s["predicted"]["basis"] == "predicted" and s["predicted"]["censored"] is False
    ys = [pred["ntk-2nn"][d]["n_star"] for d in ("4", "6", "8")]
    assert s["predicted"]["slope"] == pytest.approx(stats.loglog_slope([4, 6, 8], ys)[0], rel=1e-12)
    assert "predicted from the spectrum (d = 4, 6, 8)" in exp3.format_table(summary)


@pytest.mark.slow  # ~30 s: the default lane keeps the resume test and the per-learner checks against direct calls
def test_tiny_profile_end_to_end(tmp_path, monkeypatch):
    from rbk import experiments, kernels, sweep, train
    from rbk.experiments import exp3

    monkeypatch.setattr(exp3, "EXTRA_DS", (8,))  # one predicted d beyond the grid (the real list takes ~1 min)
    tiny = dict(TINY, kernel_ds=(4, 6))  # (the quick profile measures its kernels at d = 8, 12)
    summary = experiments.run("exp3", tmp_path, "quick", quiet=True, **tiny)
    rows = sweep.load_rows(tmp_path)
    spec = exp3.make_spec(**tiny)
    assert len({r["cell"] for r in rows}) == len(spec.plan()) == 2 * 2 * 2 * 2
    assert all(set(r) == set(exp3.ROW_FIELDS) for r in rows)
    # one row per setting: eta x ridge for two-stage, ridge for the kernels
    assert len([r for r in rows if r["cell"] == "two-stage_d4_n60_s0"]) == 4
    assert {r["n"] for r in rows if r["learner"] == "ntk-2nn"} == {60, 120}

    # the rows against direct library calls on the same data
    t, ds = exp3.dataset(spec, 6, 1, 120)
    key = exp3._keys(1, 6)[2]
    ts = train.two_stage(ds, key, train.two_stage_config(16, [m * math.sqrt(6) for m in (0.5, 1.0)],
                                                          ridges=(1e-3, 1e-1)))
    best = stats.select([r for r in rows if r["cell"] == "two-stage_d6_n120_s1"], keys=("learner",))[0]
    assert best["test_error_raw"] == pytest.approx(ts["test_error"], rel=1e-6)
    assert best["eta"] == pytest.approx(ts["eta"]) and best["ridge"] == pytest.approx(ts["lam"])
    _, ds = exp3.dataset(spec, 4, 0, 120)
    kr = kernels.fit_predict(kernels.kernel_fn("2nn", b_std=1.0), ds, (1e-3, 1e-1), get="ntk")
    got = sorted((r["ridge"], r["test_error_raw"]) for r in rows if r["cell"] == "ntk-2nn_d4_n120_s0")
    assert [e for _, e in got] == pytest.approx(kr["test_errors"], rel=1e-9)

    # summary.json
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["complete"] and on_disk["threshold"] == pytest.approx(0.5)
    for e in on_disk["rows"]:
        assert {"learner", "d", "n", "test_error_mean", "test_error_ci95", "seeds"} <= set(e)
    assert set(on_disk["slopes"]) == set(TINY["learners"])
    for lr, s in on_disk["slopes"].items():
        assert {"slope", "ci95", "censored", "theory"} <= set(s) and len(s["ci95"]) == 2 and s["basis"] == "measured"
        assert s["theory"] == (2.0 if lr == "two-stage" else 4.0)
    sel = stats.select(rows, keys=("learner", "d", "n", "seed"))
    m = np.mean([r["test_error"] for r in sel if (r["learner"], r["d"], r["n"]) == ("two-stage", 6, 120)])
    entry = next(e for e in on_disk["rows"] if (e["learner"], e["d"], e["n"]) == ("two-stage", 6, 120))
    assert entry["test_error_mean"] == pytest.approx(m, rel=1e-12)
    groups = {d: [r for r in sel if r["learner"] == "ntk-2nn" and r["d"] == d] for d in (4, 6)}
    assert on_disk["slopes"]["ntk-2nn"]["slope"] == pytest.approx(stats.scaling_slope(groups, 0.5)["slope"], abs=1e-9)
    assert summary["slopes"] == on_disk["slopes"]
    assert set(on_disk["predicted"]["ntk-2nn"]) == {"4", "6", "8"}  # checked against rbk.theory in the test above
    assert {"exp3_error_vs_n.png", "exp3_nstar_vs_d.png", "exp3_nstar_vs_d.pdf"} <= {p.name for p in tmp_path.iterdir()}
    assert on_disk["by_theta"]["1"]["theory"] == {"two-stage": 2.0, "ntk-2nn": 3.0}
    if on_disk["separations"]:  # (whether the tiny grid's n* reach two d depends on the draws)
        assert "exp3_separations.png" in {p.name for p in tmp_path.iterdir()}
    text = exp3.format_table(on_disk)
    assert "slope of log n*" in text and "ntk-2nn" in text and "predicted from the spectrum" in text


def test_nngp_and_random_feature_cells_against_direct_calls():
    from rbk import kernels, models
    from rbk.experiments import exp3

    spec = exp3.make_spec(**{**TINY, "learners": ("nngp-2nn", "rf-2nn")})
    cells = {c.id: c for c in spec.plan()}
    _, ds = exp3.dataset(spec, 4, 1, 60)
    rows = spec.run_cell(cells["nngp-2nn_d4_n60_s1"])
    kr = kernels.fit_predict(kernels.kernel_fn("2nn", b_std=1.0), ds, (1e-3, 1e-1), get="nngp")
    assert [r["test_error_raw"] for r in rows] == pytest.approx(kr["test_errors"], rel=1e-9)
    assert all(r["kind"] == "nngp" and r["b_std"] == 1.0 for r in rows)
    rows = spec.run_cell(cells["rf-2nn_d4_n60_s1"])
    model = models.get_model("2nn", 16, 4, 1, parameterization="ntk", b_std=1.0)
    rf = kernels.random_features_fit_predict(model, model.init(exp3._keys(1, 4)[2]), ds, (1e-3, 1e-1))
    assert [r["test_error_raw"] for r in rows] == pytest.approx(rf["test_errors"], rel=1e-9)
    assert all(r["kind"] == "rf" and r["width"] == 16 for r in rows)


def test_sgd_cell_rows_one_per_lr_and_wd():
    from rbk.experiments import exp3

    spec = exp3.make_spec(**{**TINY, "learners": ("2nn",), "sgd_width": 8, "epochs": 1, "lrs": (0.01, 0.02),
                             "wds": (0.0,)})  # fmt: skip
    cell = next(c for c in spec.plan() if c.id == "2nn_d4_n60_s0")
    rows = spec.run_cell(cell)
    assert [(r["lr"], r["wd"]) for r in rows] == [(0.01, 0.0), (0.02, 0.0)]  # one row per setting
    assert all(r["kind"] == "net" and r["width"] == 8 and r["epochs"] == 1 for r in rows)
    assert all(math.isfinite(r["test_error"]) and not r["diverged"] for r in rows)


def test_resume_after_a_finished_cell(tmp_path):
    from rbk import sweep
    from rbk.experiments import exp3

    spec = exp3.make_spec(**{**TINY, "ds": (4, 5), "seeds": (0,), "learners": ("nngp-2nn",), "kernel_ns": (40, 80)})
    res = sweep.run(spec, tmp_path, quiet=True)
    first = (tmp_path / "cells" / "nngp-2nn_d4_n40_s0.jsonl").read_bytes()
    (tmp_path / "cells" / "nngp-2nn_d5_n80_s0.jsonl").unlink()  # as if killed after the other cells
    started = []
    again = sweep.run(spec, tmp_path, quiet=True, on_start=lambda c: started.append(c.id))
    assert started == ["nngp-2nn_d5_n80_s0"] and len(again.skipped) == 3
    strip = lambda rows: sorted(({k: v for k, v in r.items() if k != "call_wall_s"} for r in rows),  # noqa: E731
                                key=lambda r: (r["cell"], r["ridge"]))
    assert strip(again.rows) == strip(res.rows)  # the recomputed cell reproduces its numbers
    assert (tmp_path / "cells" / "nngp-2nn_d4_n40_s0.jsonl").read_bytes() == first
    assert sweep.spec_from_meta(sweep.read_meta(tmp_path)) == spec


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(ds=(1, 4)), r"ds \(--d\)"),
        (dict(ds=()), r"ds \(--d\)"),
        (dict(learners=("ntk-3nn",)), r"learners \(--learners\)"),
        (dict(target="sum_of_products", r=5, ds=(4, 8)), r"r \(--r\) must be <= every d"),
        (dict(r=2), r"r \(--r\) must be 1 for target 'single_index'"),
        (dict(p=2), r"p \(--p\)"),
        (dict(width=15), r"width \(--width\) must be an even"),
        (dict(kernel_ridges=(1e-4,) * 6), r"kernel_ridges \(--kernel-ridges\)"),
        (dict(etas=(0.0,)), r"etas \(--etas\)"),
        (dict(kernel_ns=(1,)), r"kernel_ns \(--kernel-n\)"),
        (dict(target="cube"), r"target \(--target\)"),
        (dict(colour="red"), r"unknown option\(s\) \['colour'\]; exp3 takes"),
    ],
)
def test_bad_input_names_the_option(kw, words):
    from rbk.experiments import exp3

    with pytest.raises(ValueError, match=words):
        exp3.make_spec(**{**TINY, **kw})


@pytest.mark.filterwarnings("ignore:configure_cpu_devices")  # JAX is already up in the test process
def test_cli_bad_option_and_dry_run(tmp_path, capsys):
    from rbk import cli

    with pytest.raises(SystemExit):
        cli.main(["exp3", "--d", "1", "8", "--out", str(tmp_path / "x"), "--dry-run"])
    assert "ds (--d)" in capsys.readouterr().err
    assert cli.main(["exp3", "--profile", "paper", "--out", str(tmp_path / "p"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "nngp-2nn" in out and "rf-2nn" in out and "largest exact-kernel fit: N = 32000" in out
    assert not (tmp_path / "p").exists()


def test_profiles_are_valid_and_round_trip():
    from rbk.experiments import exp3

    for name in exp3.PROFILES:
        spec = exp3.spec(name)
        assert exp3.Exp3Spec.from_config(spec.config()).config_hash() == spec.config_hash()
    q = exp3.spec("quick")
    assert len(q.ds) >= 3 and len(q.seeds) >= 3 and dataclasses.replace(q).learners[0] == "two-stage"
    # issue 18's quick profile: >= 10 seeds, the network measured at d = 8 and d >= 48, selection inside N
    assert len(q.seeds) >= 10 and min(q.learner_ds("two-stage")) == 8 and max(q.learner_ds("two-stage")) >= 48
    assert q.folds >= 2 and q.theta <= 0.5 and "2nn" in exp3.spec("sgd").learners


def test_cost_model_counts_the_folds():
    """A cell with ``folds = k``: k runs on ``(k - 1) N / k`` points and one on all N (the kernels'
    fold fits predicting their held-out block only); without folds the old single fit."""
    from rbk import sweep
    from rbk.experiments import exp3

    spec = exp3.make_spec(**dict(TINY, folds=4, kernel_ns=(120,)))
    cell = next(c for c in spec.plan() if c.id == "ntk-2nn_d4_n120_s0")
    full = sweep.cost.kernel_fit_cost(120, 300, 2)
    fold = sweep.cost.kernel_fit_cost(90, 30, 2)
    assert spec.cell_cost(cell)[1:3] == pytest.approx((full[0] + 4 * fold[0], full[1] + 4 * fold[1]))
    plain = exp3.make_spec(**dict(TINY, kernel_ns=(120,)))  # folds = 0: validation on n_val = 200 more points
    assert plain.cell_cost(cell)[1:3] == pytest.approx(sweep.cost.kernel_fit_cost(120, 500, 2))
    net = next(c for c in spec.plan() if c.id == "two-stage_d4_n120_s0")
    one = 2 * (6 * 120 * 4 * 16 + sweep.cost.readout_flops(120, 300, 4, 16, 2))  # 2 etas: a step and a read-out each
    assert spec.cell_cost(net)[1] == pytest.approx(4 * one)


def test_giant_step_cell_is_the_direct_call():
    """The ``giant-step`` learner's cell: one row (one step size, one ridge: nothing selected),
    equal to :func:`rbk.train.two_stage` with :func:`rbk.train.giant_step` on the same data and key."""
    from rbk import train
    from rbk.experiments import exp3

    spec = exp3.make_spec(**{**TINY, "learners": ("giant-step",)})
    cell = next(c for c in spec.plan() if c.id == "giant-step_d4_n60_s1")
    rows = spec.run_cell(cell)
    _, ds = exp3.dataset(spec, 4, 1, 60)
    res = train.two_stage(ds, exp3._keys(1, 4)[2], train.giant_step(16))
    (path,) = res["ridge_paths"]
    assert len(rows) == 1 and rows[0]["eta"] == 10.0 and rows[0]["ridge"] == 1.0 and rows[0]["width"] == 16
    assert rows[0]["test_error_raw"] == pytest.approx(float(path["test_errors"][0]), rel=1e-9)
    assert rows[0]["val_error"] == pytest.approx(float(path["val_errors"][0]), rel=1e-9)


def test_a_diverging_member_is_recorded_and_the_sweep_finishes(tmp_path):
    """An SGD member with a learning rate far past stability: its rows say diverged (errors null on
    disk, not NaN), the stable member's rows are finite, and every cell of the sweep is written."""
    import json

    from rbk import sweep
    from rbk.experiments import exp3

    spec = exp3.make_spec(**{**TINY, "ds": (4,), "learners": ("2nn",), "ns": (60,), "sgd_width": 8, "epochs": 2,
                             "lrs": (0.01, 1e6), "wds": (0.0,)})  # fmt: skip
    res = sweep.run(spec, tmp_path / "run", quiet=True)
    assert len(res.ran) == len(spec.plan()) and len(res.rows) == 2 * len(spec.seeds)
    assert all(r["diverged"] for r in res.rows if r["lr"] == 1e6)
    assert all(not r["diverged"] and math.isfinite(r["test_error"]) for r in res.rows if r["lr"] == 0.01)
    on_disk = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert len(on_disk) == len(res.rows) and any(r["diverged"] and r["test_error"] is None for r in on_disk)


# --------------------------------------------------------------------------------------------
# every label counted: selection by cross-validation inside N; the test error's exact identity
# --------------------------------------------------------------------------------------------


def test_no_selection_reads_a_label_outside_the_n_training_samples(monkeypatch):
    """With ``folds``, every run of a learner sees labelled points only among the cell's N training
    points (its training and validation splits both inside them) and the test split only in the
    final run; the rows' ``val_error`` is the cross-validation error, each setting's test error that
    of the run on all N, and ``test_error`` the exact identity's (plain MSE minus the test set's own
    error in ``E f*^2 = 1``)."""
    from rbk import learners
    from rbk.experiments import exp3

    spec = exp3.make_spec(**dict(TINY, folds=3, learners=("two-stage", "ntk-2nn")))
    seen = []
    for name in ("two-stage", "ntk"):
        real = learners.get(name)
        monkeypatch.setitem(learners.LEARNERS, name, dataclasses.replace(
            real, run=lambda data, key, _r=real.run, **kw: seen.append(data) or _r(data, key, **kw)))
    for cell_id in ("two-stage_d6_n120_s1", "ntk-2nn_d6_n120_s1"):
        seen.clear()
        cell = next(c for c in spec.plan() if c.id == cell_id)
        rows = spec.run_cell(cell)
        t, data = exp3.dataset(spec, 6, 1, 120)
        train_x = {tuple(np.round(np.asarray(x, np.float64), 6)) for x in np.asarray(data.x_train)}
        assert len(seen) == 4  # 3 folds, then all N
        for i, ds in enumerate(seen):
            for split in (ds.x_train, ds.x_val) + ((ds.x_test,) if i < 3 else ()):
                assert {tuple(np.round(np.asarray(x, np.float64), 6)) for x in np.asarray(split)} <= train_x
        assert seen[-1].x_train.shape[0] == 120 and np.array_equal(np.asarray(seen[-1].x_test), np.asarray(data.x_test))
        assert all(r["cv_folds"] == 3 and r["folds"] == 3 and r["n_val"] == 0 for r in rows)
        shift = float(np.mean(np.asarray(data.y_test, np.float64) ** 2)) - 1.0
        for r in rows:
            assert r["test_error"] == pytest.approx(r["test_error_raw"] - r["test_beta"] * shift, rel=1e-12)


def test_cross_validated_kernel_rows_equal_a_brute_force_k_fold():
    """The CV error of each ridge against fits by :func:`rbk.kernels.fit_predict` on the folds built
    here by hand, and the final rows against the fit on all N."""
    from rbk import kernels
    from rbk.data import Dataset
    from rbk.experiments import exp3

    spec = exp3.make_spec(**dict(TINY, folds=4, learners=("ntk-2nn",)))
    rows = spec.run_cell(next(c for c in spec.plan() if c.id == "ntk-2nn_d4_n120_s0"))
    _, data = exp3.dataset(spec, 4, 0, 120)
    x, y = np.asarray(data.x_train), np.asarray(data.y_train)
    kfn = kernels.kernel_fn("2nn", b_std=1.0)
    errs = []
    for j in range(4):
        held = np.arange(30 * j, 30 * (j + 1))
        keep = np.setdiff1d(np.arange(120), held)
        ds = Dataset(x[keep], y[keep], x[held], y[held], x[held], y[held])
        errs.append(kernels.fit_predict(kfn, ds, (1e-3, 1e-1))["val_errors"])
    full = Dataset(x, y, x[:1], y[:1], data.x_test, data.y_test)
    yt = np.asarray(data.y_test, np.float64)[:, 0]
    for i, r in enumerate(sorted(rows, key=lambda r: r["ridge"])):
        assert r["val_error"] == pytest.approx(np.mean([e[i] for e in errs]), rel=1e-9)
        fit = kernels.fit_predict(kfn, full, (r["ridge"],), return_predictions=True)
        assert r["test_error_raw"] == pytest.approx(fit["test_error"], rel=1e-9)
        # the control variate by hand: mean r^2 - beta (mean y^2 - 1), beta = cov(r^2, y^2) / var(y^2)
        r2 = (np.asarray(fit["pred_test"])[:, 0] - yt) ** 2
        beta = np.cov(r2, yt**2, bias=True)[0, 1] / np.var(yt**2)
        assert r["test_beta"] == pytest.approx(beta, rel=1e-9)
        assert r["test_error"] == pytest.approx(r2.mean() - beta * (np.mean(yt**2) - 1.0), rel=1e-9)


def test_separations_recover_a_known_exponent_gap():
    """Synthetic rows: a network with ``n* ~ d^2`` and a kernel with ``n* ~ d^3.5`` (per-seed factors
    shared by the two, as shared data would make them): the separation's difference is 1.5 with a
    narrow paired interval around it; a kernel censored at the grid's top enters as intervals
    (``censored`` counted), and the predicted basis uses the predicted ``n*``."""
    from rbk.experiments import exp3
    from rbk.experiments.multi_index import separations as sp

    rng = np.random.default_rng(0)
    ds, seeds, ns = (8, 16, 32), range(6), [2.0**k for k in range(6, 21)]
    rows = []
    for d in ds:
        for s in seeds:
            f = math.exp(rng.normal(0, 0.2))
            for lr, kind, nstar in (("two-stage", "net", 3 * d**2 * f), ("ntk-2nn", "ntk", 0.5 * d**3.5 * f)):
                for n in ns:
                    if kind == "ntk" and n > 4e4:
                        continue  # the kernel's grid stops at N = 32768: censored at d = 32
                    rows.append({"learner": lr, "d": d, "seed": s, "n": n, "threshold": 0.5,
                                 "test_error": 0.5 * (nstar / n) ** 0.7, "val_error": 0.0})
    spec = exp3.make_spec(**dict(TINY, ds=ds, seeds=tuple(seeds), theta=1.0))
    pred = {"ntk-2nn": {str(d): {"n_star": 0.5 * d**3.5} for d in ds}}
    by, seps = sp.by_threshold(spec, rows, {"two-stage": "net", "ntk-2nn": "ntk"}, pred, n_boot=200)
    net = by["1"]["slopes"]["two-stage"]
    assert net["slope"] == pytest.approx(2.0, abs=0.3) and net["censored"] == 0  # 0.2 noise on 18 points: s.e. 0.08
    got = {e["basis"]: e for e in seps}
    assert set(got) == {"measured", "predicted", "mixed"}
    assert got["measured"]["censored"]["kernel"] == 6  # every seed at d = 32: above the grid
    for basis in ("measured", "mixed"):
        e = got[basis]
        assert e["difference"]["mean"] == pytest.approx(1.5, abs=0.25)
        lo, hi = e["difference"]["ci95"]
        assert lo - 0.1 <= 1.5 <= hi + 0.1 and hi - lo < 0.6  # (censoring at one d biases a little)
    e = got["predicted"]  # a kernel exact per d: the difference's CI is the network's, mirrored
    assert e["difference"]["ci95"] == pytest.approx([3.5 - e["ci95_network"][1], 3.5 - e["ci95_network"][0]], abs=1e-6)
    assert got["predicted"]["slope_kernel"] == pytest.approx(3.5, abs=1e-6)
    assert by["1"]["predicted_slopes"]["ntk-2nn"]["profile"]["slope"] == pytest.approx(3.5, abs=1e-9)
    assert by["1"]["theory"] == {"two-stage": 2.0, "ntk-2nn": 3.0}  # (2 + p) / 2 at E_p
    assert sp.theory_exponent("ntk", 0.5, 4) == 4.0 and sp.theory_exponent("net", 0.5, 4) == 2.0


@pytest.mark.slow  # ~15 s: two exp3 runs
def test_r_sweep_collects_each_runs_n_star_beside_the_theory(tmp_path, monkeypatch):
    """``r_sweep.run``: one exp3 results directory per r, and ``r_sweep.json`` holding each run's
    own seed-mean n* per threshold, the theory's ``d^2 r + d r^p`` (by hand) and their ratio."""
    from rbk.experiments import exp3
    from rbk.experiments.multi_index import r_sweep

    monkeypatch.setattr(exp3, "EXTRA_DS", ())
    kw = dict(ds=(4,), seeds=(0, 1), ns=(30, 60, 120), width=16, etas=(1.0,), ridges=(1e-2,), n_test=300, folds=2,
              theta=1.0, thetas=(0.5,))  # fmt: skip
    out = r_sweep.run(tmp_path, (2, 1), quiet=True, **kw)
    assert out["rs"] == [1, 2] and out["theory"] == {"1": 4 * 4 * 1 + 4 * 1, "2": 4 * 4 * 2 + 4 * 2**4}
    assert json.loads((tmp_path / "r_sweep.json").read_text()) == out
    for r in (1, 2):
        sub = json.loads((tmp_path / f"r{r}" / "summary.json").read_text())
        assert sub["instance"]["r"] == r and sub["instance"]["target"] == "sum_of_products"
        for key in ("0.5", "1"):
            assert out["by_theta"][key]["n_star"]["two-stage"][str(r)] == sub["by_theta"][key]["n_star"]["two-stage"]["4"]
            v, q = sub["by_theta"][key]["n_star"]["two-stage"]["4"], out["by_theta"][key]["ratio_to_theory"]["two-stage"]
            assert q[str(r)] == (v["estimate"] / out["theory"][str(r)] if v["censored"] == "none" else None)
    assert "theory d^2 r + d r^p" in r_sweep.format_table(out)
    with pytest.raises(ValueError, match="ds must hold one d"):
        r_sweep.run(tmp_path / "x", (1,), quiet=True, **dict(kw, ds=(4, 6)))
