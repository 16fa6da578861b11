"""Experiment 4 (deep hierarchies): the study's validation, its summary statistics against an
independent computation, and a tiny profile end to end through the engine (store, resume, figures)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from scipy import stats as sps

from rbk import experiments
from rbk.experiments import exp4
from rbk.experiments.hierarchy import study

TINY = dict(d=6, widths=(2, 2), alphas=(1.0, 0.5), readout="linear", ns=(60, 120), seeds=(0, 1, 2), width=8,
            epochs=2, lrs=(3e-3,), ridges=(1e-2,), n_val=40, n_test=50, batch_size=20, record_per_stage=1)  # fmt: skip


@pytest.mark.parametrize(
    "kw, name",
    [
        (dict(widths=()), "widths"),
        (dict(widths=(4,)), "widths (--target-widths; the target's level widths k_l) must list L >= 2"),
        (dict(widths=(4, 0, 4)), "widths (--target-widths) must be an integer >= 1, got 0"),
        (dict(alphas=(1.0, 0.5)), "alphas"),  # 3 levels, 2 weights: mismatched
        (dict(alphas=(1.0, 1.0, 0.5)), "strictly decreasing"),
        (dict(alphas=(0.5, 0.8, 1.0)), "strictly decreasing"),
        (dict(learners=("deep-joint", "rf-deep")), "learners"),
        (dict(learners=()), "learners (--learners) must not be empty"),
        (dict(epochs=91), "epochs (--epochs) must be a multiple"),
        (dict(readout="cube"), "readout (--readout) must be one of"),
        (dict(ns=()), "ns (--n) must not be empty"),
        (dict(lrs=(-1e-3,)), "lrs (--lr) must be a finite number > 0.0"),
        (dict(lrs=(0.0,)), "lrs (--lr) must be a finite number > 0.0"),
        (dict(d=4, widths=(8, 8, 8)), "widths (--target-widths): the first level's width k_1 must be <= the input dimension d (--d) = 4, got 8"),
        (dict(ns=(10, 100)), "ns (--n, training-set sizes) must each be >= the batch size 50, got N = 10"),
        (dict(d=40, rank=41), "rank"),
        (dict(widths=(9, 4, 4, 4), alphas=(1, 0.8, 0.6, 0.4), readout="square", epochs=32), "quadrature"),
        (dict(bogus=1), "unknown option"),
        (dict(skip=1), "skip must be True or False"),
        (dict(rank=0), "rank must be an integer >= 1"),
        (dict(seeds=(0, 0)), "seeds must not repeat"),
        (dict(clip_norm=0.0), "clip_norm (--clip-norm) must be a finite number > 0.0"),
        (dict(kernel_tol=0.0), "kernel_tol (--kernel-tol) must be a finite number in (0.0, 0.1]"),
    ],
)
def test_bad_input_names_the_option(kw, name):
    with pytest.raises(ValueError, match=re.escape(name)):
        exp4.make_spec(**kw)


def test_non_paper_regime_allows_increasing_alphas_and_config_round_trips():
    spec = exp4.make_spec(alphas=(0.5, 0.8, 1.0), paper_regime=False)
    back = exp4.Exp4Spec.from_config(json.loads(json.dumps(spec.config())))
    assert back == spec and back.config_hash() == spec.config_hash()
    cells = spec.plan()
    assert len({c.id for c in cells}) == len(cells)
    nets = [c for c in cells if c.kind == "net"]
    kern = [c for c in cells if c.kind == "ntk"]
    assert len(nets) == 2 * len(spec.ns) and len(kern) == len(spec.ns) * len(spec.seeds)  # networks: seeds vmapped


def test_profiles_build_and_kernel_max_n_drops_kernel_cells():
    for prof in exp4.PROFILES:
        experiments.profile_spec("exp4", prof)
    spec = exp4.make_spec(ns=(100, 5000), kernel_max_n=1000)
    assert {c.n for c in spec.plan() if c.kind == "ntk"} == {100}


@pytest.mark.slow  # ~4 s cold; tests/test_stopgrad.py keeps the ablation's own checks in the default lane
def test_deep_stopgrad_cell_trains_the_stop_gradient_network(monkeypatch):
    """deep-stopgrad is offered (the registry's learner) and its cell trains rbk.train.regime_model's
    network on the progressive schedule (the call is intercepted: nothing compiles)."""
    from rbk import learners, train

    assert exp4.LEARNERS["deep-stopgrad"].shared == "deep-stopgrad" and learners.get("deep-stopgrad").kind == "regime"
    spec = exp4.make_spec(**{**TINY, "learners": ("deep-stopgrad", "deep-progressive")})
    seen = {}

    class Seen(Exception):
        pass

    def fake_train(model, data, keys, lrs, wds, cfg, **kw):
        seen.update(model=model, cfg=cfg)
        raise Seen

    monkeypatch.setattr(train, "train", fake_train)
    for name, stop in (("deep-stopgrad", (1,)), ("deep-progressive", ())):
        with pytest.raises(Seen):
            spec.run_cell(next(c for c in spec.plan() if c.learner == name))
        assert seen["model"].stop_gradient == stop and seen["cfg"] == spec.train_config("progressive")
        assert seen["model"].reference is spec.target()


def _rows(spec, rng):
    """Synthetic rows: two lrs per network seed, two ridges per kernel seed."""
    rows = []
    L = spec.levels
    for cell in spec.plan():
        seeds = spec.seeds if cell.seed is None else (cell.seed,)
        for s in seeds:
            for setting in (0, 1):
                r = spec.base_row(cell, s)
                r.update(train_error=0.0, val_error=float(rng.uniform()), test_error=float(rng.uniform(0.01, 0.2)),
                         diverged=False, call_wall_s=1.0)  # fmt: skip
                if cell.kind == "net":
                    r.update(lr=spec.lrs[setting], record_epochs=[1, 2],
                             feature_quality=rng.uniform(size=(2, L)).tolist())  # fmt: skip
                else:
                    r["ridge"] = spec.ridges[setting]
                rows.append(r)
    return rows


def test_summary_pairs_by_seed_after_selection():
    spec = exp4.make_spec(**{**TINY, "lrs": (1e-3, 3e-3), "ridges": (1e-3, 1e-1)})
    rows = _rows(spec, np.random.default_rng(0))
    s = exp4.summarize(spec, rows)

    def best(learner, n):  # independent selection: lowest val_error per seed
        out = {}
        for r in rows:
            if r["learner"] == learner and r["n"] == n and (r["seed"] not in out or r["val_error"] < out[r["seed"]]["val_error"]):
                out[r["seed"]] = r
        return out

    def tci(x):
        x = np.asarray(x)
        h = sps.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
        return x.mean(), x.mean() - h, x.mean() + h

    n = max(spec.ns)
    j, k, lw = best("deep-joint", n), best("ntk-deep", n), best("deep-layerwise", n)
    m, lo, hi = tci([k[s]["test_error"] - j[s]["test_error"] for s in spec.seeds])
    p = s["ntk_minus_joint_at_largest_n"]
    assert p["mean"] == pytest.approx(m) and p["ci95"] == pytest.approx([lo, hi])
    m, lo, hi = tci([j[s]["feature_quality"][-1][1] - lw[s]["feature_quality"][-1][1] for s in spec.seeds])
    fq = next(f for f in s["feature_quality"] if f["level"] == 2)
    assert fq["joint_minus_layerwise"]["mean"] == pytest.approx(m)
    assert fq["joint_minus_layerwise"]["ci95"] == pytest.approx([lo, hi])
    row = next(r for r in s["rows"] if r["learner"] == "deep-joint" and r["n"] == n)
    assert row["test_error_mean"] == pytest.approx(np.mean([j[s_]["test_error"] for s_ in spec.seeds]))
    assert s["threshold"] == pytest.approx(spec.target().threshold)
    assert set(s["bar"]) >= {"joint_below_threshold", "ntk_above_threshold", "level2_quality_ci_above_zero"}
    text = exp4.format_table(s)
    assert "deep-layerwise" in text and "ntk-deep - deep-joint" in text


def test_summary_predicted_block_matches_rbk_theory():
    from rbk import theory

    spec = exp4.make_spec(**{**TINY, "learners": ("deep-joint",), "lrs": (1e-3, 3e-3), "ridges": (1e-3, 1e-1)})  # a net: NTK too
    s = exp4.summarize(spec, _rows(spec, np.random.default_rng(0)))
    t = spec.target()
    levels = {str(l): v for l, v in t.info["thresholds"].items() if l >= 2}
    direct = theory.predicted_curves(spec.kernel_fn(), [t], [6], [60, 120], (1e-3, 1e-1), threshold=t.threshold,
                                     more_thresholds=levels)["6"]  # fmt: skip
    got = s["predicted"]["ntk-deep"]["6"]
    assert set(s["predicted"]) == {"ntk-deep"} and got["ns"][0] == 60 and got["ns"][-1] == 10**7 and 120 in got["ns"]
    assert got["test_error"] == pytest.approx(direct["test_error"], rel=1e-12)
    assert got["n_star"] == pytest.approx(direct["n_star"], rel=1e-12)
    assert got["n_star_by_level"] == pytest.approx(direct["n_star_by_threshold"], rel=1e-12)
    assert set(got["n_star_by_level"]) == set(s["thresholds"])  # every level's threshold
    assert got["n_star"] == pytest.approx(got["n_star_by_level"][str(spec.levels)], rel=1e-12)  # the deepest


def test_figures_from_a_summary(tmp_path):
    spec = exp4.make_spec(**{**TINY, "lrs": (1e-3, 3e-3), "ridges": (1e-3, 1e-1)})
    s = exp4.summarize(spec, _rows(spec, np.random.default_rng(1)))
    paths = exp4.plot(json.loads(json.dumps(s)), tmp_path)
    assert {p.name for p in paths} == {"exp4.png", "exp4.pdf", "exp4_features.png", "exp4_features.pdf"}


def test_tiny_profile_end_to_end_and_resume(tmp_path, monkeypatch):
    """Default lane: one network learner (one compile) and the kernel through the engine."""
    monkeypatch.setitem(exp4.PROFILES, "tiny", {**TINY, "ns": (60,), "learners": ("deep-joint", "ntk-deep")})
    out = tmp_path / "exp4"
    s = exp4.run(out, "tiny", quiet=True)
    assert s["complete"] and s["cells"] == {"done": 4, "total": 4}
    assert [(r["learner"], r["seeds"]) for r in s["rows"]] == [("deep-joint", 3), ("ntk-deep", 3)]
    assert "feature_quality" not in s and s["ntk_minus_joint_at_largest_n"]["seeds"] == 3
    for name in ("exp4.png", "exp4.pdf", "summary.json", "results.csv"):
        assert (out / name).exists(), name
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 3 + 3  # one row per (net, seed, lr) and per (kernel, seed, ridge)
    net = [r for r in lines if r["kind"] == "net"]
    assert all(len(r["feature_quality"]) == 2 and len(r["feature_quality"][0]) == 2 for r in net)  # (epochs, levels)
    assert all(r["threshold"] == pytest.approx(s["threshold"]) for r in lines)
    for r in lines:  # each learner fills the columns its registry entry names
        assert all(r[f] is not None for f in exp4.LEARNERS[r["learner"]].fields), r["learner"]
    mtime = (out / "cells" / "deep-joint_n60.jsonl").stat().st_mtime_ns
    s2 = exp4.run(out, "tiny", quiet=True)  # resume: nothing recomputed, same summary
    assert (out / "cells" / "deep-joint_n60.jsonl").stat().st_mtime_ns == mtime
    assert s2["rows"] == s["rows"]
    # the member chunking is a resource, not part of the config: a resume may set it (recorded in meta.json)
    exp4.run(out, "tiny", quiet=True, plot=False, max_members_per_call=2)
    assert (out / "cells" / "deep-joint_n60.jsonl").stat().st_mtime_ns == mtime
    meta = json.loads((out / "meta.json").read_text())
    assert meta["resolved"]["max_members_per_call"] is None and meta["runs"][-1]["resolved"]["max_members_per_call"] == 2
    # and in calls of at most 2 members (seeds 0-1, then 2) the network's rows are the same numbers
    chunked = tmp_path / "chunked"
    exp4.run(chunked, "tiny", quiet=True, plot=False, max_members_per_call=2, learners=("deep-joint",))
    again = [json.loads(x) for x in (chunked / "results.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in again] == [r["seed"] for r in net]
    for a, b in zip(again, net):
        assert a["test_error"] == pytest.approx(b["test_error"], rel=1e-5)
        assert np.allclose(a["feature_quality"], b["feature_quality"], rtol=1e-5)


def test_summary_leaves_out_a_seed_whose_every_member_diverged():
    """A seed whose learning rates all diverged (its selected row: diverged, nulls in the feature
    quality, as the store writes them) drops out of the feature-quality statistics instead of
    stopping the summary (it did, on `rbk exp4 --profile quick --readout square`)."""
    spec = exp4.make_spec(**{**TINY, "lrs": (1e-3, 3e-3), "ridges": (1e-3, 1e-1)})
    rows = _rows(spec, np.random.default_rng(0))
    n = max(spec.ns)
    for r in rows:
        if r["learner"] == "deep-joint" and r["n"] == n and r["seed"] == 0:
            r.update(diverged=True, val_error=None, test_error=None,
                     feature_quality=[[None] * spec.levels for _ in r["feature_quality"]])
    s = exp4.summarize(spec, rows)
    fq = next(f for f in s["feature_quality"] if f["level"] == 2)
    best = {}
    for r in rows:
        if r["learner"] == "deep-joint" and r["n"] == n and r["seed"] != 0:
            if r["seed"] not in best or r["val_error"] < best[r["seed"]]["val_error"]:
                best[r["seed"]] = r
    assert fq["joint"]["mean"] == pytest.approx(np.mean([b["feature_quality"][-1][1] for b in best.values()]))
    from rbk import stats

    json.dumps(stats.jsonable(s), allow_nan=False)  # as summary.json is written


def test_a_diverging_member_is_recorded_and_the_sweep_finishes(tmp_path, monkeypatch):
    """A learning rate that blows up (NaN/inf inside the per-epoch curve and the per-level feature
    quality): the sweep completes, that member's row says diverged with nulls, the other member
    of the same call is finite, the summary is strict JSON."""
    monkeypatch.setitem(exp4.PROFILES, "tiny", {**TINY, "ns": (60,), "seeds": (0,), "lrs": (3e-3, 1e6),
                                                 "learners": ("deep-joint",)})
    out = tmp_path / "exp4"
    s = exp4.run(out, "tiny", quiet=True, plot=False)
    assert s["complete"]
    rows = {r["lr"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    bad, good = rows[1e6], rows[3e-3]
    assert bad["diverged"] is True and bad["test_error"] is None
    assert None in bad["test_over_training"] and None in sum(bad["feature_quality"], [])
    assert good["diverged"] is False and math.isfinite(good["test_error"])
    json.loads((out / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in summary.json"))


@pytest.mark.slow
def test_tiny_profile_both_regimes_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setitem(exp4.PROFILES, "tiny", TINY)
    out = tmp_path / "exp4"
    s = exp4.run(out, "tiny", quiet=True)
    assert s["complete"] and s["cells"] == {"done": 10, "total": 10}
    assert {r["learner"] for r in s["rows"]} == {"deep-joint", "deep-layerwise", "ntk-deep"}
    fq = next(f for f in s["feature_quality"] if f["level"] == 2)
    assert math.isfinite(fq["joint_minus_layerwise"]["mean"]) and fq["joint_minus_layerwise"]["seeds"] == 3
    assert fq["over_training"]["joint"]["epochs"] == [1, 2]
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    for name in ("exp4.png", "exp4_features.png", "exp4_features.pdf"):
        assert (out / name).exists(), name
    assert len(rows) == 2 * 2 * 3 + 2 * 3


def test_cli_help_dry_run_and_bad_option(capsys, tmp_path):
    from rbk import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["exp4", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--target-widths", "--target-alphas", "--readout", "--learners", "--n", "--epochs", "--lr", "--wd",
                "--kernel-ridges", "--n-val", "--n-test", "--dry-run"):
        assert opt in out
    assert cli.main(["exp4", "--profile", "paper", "--dry-run", "--cpu-devices", "1", "--out", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert "thresholds level 2" in out and "deep-joint_n50000" in out and not (tmp_path / "p").exists()
    with pytest.raises(SystemExit) as e:
        cli.main(["exp4", "--target-alphas", "1", "1", "0.5", "--out", str(tmp_path / "never")])
    assert e.value.code == 2 and "alphas" in capsys.readouterr().err and not (tmp_path / "never").exists()


def test_correction_is_the_gain_after_the_next_level_starts_minus_the_ablations():
    """summary['correction'] against a hand computation on synthetic rows: per level l < L, regime
    and measure, the quality at the end minus at the end of stage l (epoch E l / L), the same for
    deep-stopgrad, and their difference paired by seed (each regime's own selected row); n* counts
    the n_val selection labels."""
    spec = exp4.make_spec(**{**TINY, "widths": (2, 2, 2), "alphas": (1.0, 0.5, 0.25), "epochs": 6, "lrs": (1e-3, 3e-3),
                             "learners": ("deep-joint", "deep-progressive", "deep-stopgrad")})  # fmt: skip
    rng = np.random.default_rng(2)
    rows = _rows(spec, rng)
    for r in rows:  # three stages of 2 epochs, recorded at 2, 4, 6
        r.update(record_epochs=[2, 4, 6], feature_quality=rng.uniform(size=(3, 3)).tolist(),
                 subspace_quality=rng.uniform(size=(3, 3)).tolist())  # fmt: skip
    s = exp4.summarize(spec, rows)
    n = max(spec.ns)

    def best(learner):
        out = {}
        for r in rows:
            if r["learner"] == learner and r["n"] == n and (r["seed"] not in out or r["val_error"] < out[r["seed"]]["val_error"]):
                out[r["seed"]] = r
        return out

    abl = best("deep-stopgrad")
    got = {(c["level"], c["regime"], c["measure"]): c for c in s["correction"]}
    assert len(got) == 2 * 2 * 2 and all(c["n"] == n for c in s["correction"])
    for (lvl, regime, measure), c in got.items():
        field = {"subspace": "subspace_quality", "ridge_r2": "feature_quality"}[measure]
        reg = best(f"deep-{regime}")
        start = lvl  # the end of stage l is the l-th record here (epochs 2, 4)
        gain = {sd: r[field][-1][lvl - 1] - r[field][start - 1][lvl - 1] for sd, r in reg.items()}
        ab = {sd: r[field][-1][lvl - 1] - r[field][start - 1][lvl - 1] for sd, r in abl.items()}
        diff = [gain[sd] - ab[sd] for sd in spec.seeds]
        h = sps.t.ppf(0.975, len(diff) - 1) * np.std(diff, ddof=1) / math.sqrt(len(diff))
        assert c["from_epoch"] == 2 * lvl and c["gain"]["mean"] == pytest.approx(np.mean(list(gain.values())))
        assert c["ablation_gain"]["mean"] == pytest.approx(np.mean(list(ab.values())))
        assert c["difference"]["ci95"] == pytest.approx([np.mean(diff) - h, np.mean(diff) + h])
    # n* in labels (two learning rates: a selection on the n_val labels): its censoring bound is a grid point N + n_val
    assert s["n_star"]["deep-joint"]["bound"] in {n_ + spec.n_val for n_ in spec.ns}
    assert set(s["quality_over_training"]) == {"joint", "progressive", "stopgrad"}
    assert "backward correction" in exp4.format_table(s)


def test_kernel_grid_two_stage_control_and_variance_reduced_errors(tmp_path, monkeypatch):
    """--kernel-n sets the kernels' N apart from the networks'; the two-stage control (one row per
    (eta, ridge), eta as a multiple of sqrt(d)) and the kernel run through the engine; every row's
    test error is its plain MSE minus beta times the test set's error in the exact E[y^2]."""
    spec = exp4.make_spec(**{**TINY, "learners": ("two-stage", "ntk-deep"), "kernel_ns": (80,), "etas": (0.5, 1.0),
                             "readout_ridges": (1e-2, 1.0), "two_stage_width": 16})  # fmt: skip
    assert [(c.learner, c.n) for c in spec.plan()] == [("two-stage", n) for n in spec.ns for _ in spec.seeds] + [
        ("ntk-deep", 80)] * 3
    monkeypatch.setitem(exp4.PROFILES, "tiny", {k: v for k, v in spec.config().items() if k != "experiment"})
    s = exp4.run(tmp_path / "e", "tiny", quiet=True, plot=False)
    assert s["complete"] and {(r["learner"], r["n"]) for r in s["rows"]} == {("two-stage", 60), ("two-stage", 120),
                                                                              ("ntk-deep", 80)}  # fmt: skip
    rows = [json.loads(x) for x in (tmp_path / "e" / "results.jsonl").read_text().splitlines()]
    two = [r for r in rows if r["learner"] == "two-stage"]
    assert len(two) == 2 * 3 * 2 * 2 and {r["eta"] for r in two} == {0.5, 1.0}
    m2 = spec.target().info["second_moment"]
    for r in rows:
        y2 = np.sum(np.square(np.asarray(spec.dataset(r["n"], r["seed"]).y_test, np.float64)), axis=-1)
        # two-stage selects among 2 x 2 settings on the n_val labels; the kernel has one ridge, no selection
        assert r["labels"] == r["n"] + (spec.n_val if r["learner"] == "two-stage" else 0) and r["test_beta"] != 0.0
        assert r["test_error"] == pytest.approx(r["test_error_raw"] - r["test_beta"] * (y2.mean() - m2), rel=1e-9)
    assert s["comparison"]["two-stage"] is not None and "ntk-deep (predicted)" in s["comparison"]


def _one_cell_keeping_the_result(spec, monkeypatch):
    """The single row of ``spec``'s first cell and ``{"res": the TrainResult it was computed from}``."""
    from rbk import train

    kept = {}
    real = train.train

    def keep(*a, **kw):
        kept["res"] = real(*a, **kw)
        return kept["res"]

    monkeypatch.setattr(train, "train", keep)
    (row,) = spec.run_cell(spec.plan()[0])
    return row, kept


@pytest.mark.slow
def test_network_rows_beta_from_the_final_parameters(monkeypatch):
    """A network row's control variate: the raw error is the trainer's final test MSE, and beta is
    cov(r^2, y^2) / var(y^2) of the final parameters' test predictions, recomputed here."""
    from rbk import train
    from rbk.data import seed_keys

    spec = exp4.make_spec(**{**TINY, "ns": (60,), "seeds": (0,), "learners": ("deep-joint",)})
    row, kept = _one_cell_keeping_the_result(spec, monkeypatch)
    assert kept["res"].params is not None
    data = spec.dataset(60, 0)
    model = train.regime_model("joint", spec.deep_model(reference=spec.target()))
    p = {k: v[0, 0, 0] for k, v in kept["res"].params.items()}
    pred = np.asarray(model.apply(p, data.x_test), np.float64)
    y = np.asarray(data.y_test, np.float64)
    r2, y2 = np.sum((pred - y) ** 2, -1), np.sum(y * y, -1)
    assert row["test_error_raw"] == pytest.approx(r2.mean(), rel=1e-4)
    assert row["test_beta"] == pytest.approx(np.cov(r2, y2, bias=True)[0, 1] / y2.var(), rel=1e-4)
    assert seed_keys(0)  # the same seed's keys drive both


def test_importance_sampled_test_set_is_unbiased():
    """The importance-sampled test set: its weights integrate to 1 and its weighted mean of y^2 is
    the exact E[y^2] (within 5 standard errors), for the linear and the paper's output map."""
    for readout in ("linear", "square"):
        spec = exp4.make_spec(**{**TINY, "readout": readout, "n_test_importance": 40000})
        x, y, w = study.importance_test_set(spec, 0)
        assert x.shape == (40000, spec.d) and np.mean(w) == pytest.approx(1.0, abs=5 * np.std(w) / math.sqrt(w.size))
        v = w * np.sum(y * y, -1)
        assert np.mean(v) == pytest.approx(spec.target().info["second_moment"], abs=5 * np.std(v) / math.sqrt(v.size))


@pytest.mark.slow
def test_a_network_row_takes_the_importance_sampled_error(monkeypatch):
    """With n_test_importance, a network row's test error is the weighted mean of its final
    parameters' squared errors on the importance-sampled points (recomputed here), the
    control-variate one kept in test_error_cv."""
    from rbk import train

    spec = exp4.make_spec(**{**TINY, "ns": (60,), "seeds": (0,), "learners": ("deep-joint",), "n_test_importance": 5000})
    row, kept = _one_cell_keeping_the_result(spec, monkeypatch)
    x, y, w = study.importance_test_set(spec, 0)
    model = train.regime_model("joint", spec.deep_model(reference=spec.target()))
    p = {k: v[0, 0, 0] for k, v in kept["res"].params.items()}
    v = w * np.sum((np.asarray(model.apply(p, x), np.float64) - y) ** 2, -1)
    assert row["test_estimator"] == "importance" and row["test_error"] == pytest.approx(v.mean(), rel=1e-4)
    assert row["test_error_se"] == pytest.approx(v.std() / math.sqrt(v.size), rel=1e-3)
    assert math.isfinite(row["test_error_cv"]) and row["test_error_cv"] != row["test_error"]
