"""rbk.stats: selection, Student-t CIs, n_star (interpolation, censoring, bootstrap), separation,
experiment summaries and their JSON form, checked against hand computations."""

import csv
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from rbk import stats
from rbk.experiments import concept_class

# --------------------------------------------------------------------------------------------
# synthetic rows
# --------------------------------------------------------------------------------------------

BASE = dict(
    experiment="exp1", width=64, epochs=10, alpha=0.3, beta=1.0, d=30, k=15, g_degree=4,
    train_error=0.0, diverged=False, call_wall_s=0.1, cell="c",
)  # fmt: skip


def row(learner, n, seed, val, test, *, kind=None, lr=0.01, wd=1e-4, ridge=math.nan, **kw):
    kind = kind or (learner.split("-")[0] if "-" in learner else "net")
    arch = learner.split("-", 1)[1] if "-" in learner else learner
    if kind != "net":
        lr, wd, ridge = math.nan, math.nan, (1e-3 if math.isnan(ridge) else ridge)
    return {**BASE, "learner": learner, "arch": arch, "kind": kind, "n": n, "seed": seed, "lr": lr, "wd": wd,
            "ridge": ridge, "val_error": val, "test_error": test, **kw}  # fmt: skip


def synthetic_rows(seeds=3, ns=(1000, 3000, 10000), rng_seed=0):
    """A small exp1 sweep: 3 networks, 2 kernels, 2 settings each, lognormal seed noise."""
    rng = np.random.default_rng(rng_seed)
    curves = {
        "3resnet": lambda n: 1.35 * (n / 2500) ** -0.9,
        "3nn": lambda n: 1.35 * (n / 8000) ** -0.7,
        "2nn": lambda n: 1.42 + 4 * (n / 1000) ** -1.2,
        "ntk-2nn": lambda n: 1.36 + 5 * (n / 1000) ** -0.6,
        "nngp-3resnet": lambda n: 1.45 + 8 * (n / 1000) ** -0.5,
    }
    rows = []
    for learner, f in curves.items():
        for n in ns:
            for s in range(seeds):
                eff = rng.lognormal(0, 0.08)
                for setting in range(2):
                    v = f(n) * eff * rng.lognormal(0, 0.1)
                    rows.append(row(learner, n, s, v, v * rng.lognormal(0, 0.02), lr=0.01 * (1 + setting)))
    return rows


# --------------------------------------------------------------------------------------------
# Student-t CI
# --------------------------------------------------------------------------------------------


def test_t_ci_hand_computation():
    # x = 1..5: mean 3, sd = sqrt(2.5), t_{0.975, 4} = 2.776 (textbook table value)
    m, lo, hi = stats.t_ci([1, 2, 3, 4, 5])
    half = 2.7764451 * math.sqrt(2.5) / math.sqrt(5)
    assert m == 3.0
    assert lo == pytest.approx(3 - half, rel=1e-7) and hi == pytest.approx(3 + half, rel=1e-7)
    assert (hi - lo) / 2 == pytest.approx(2.776 * math.sqrt(0.5), abs=2e-3)
    # and scipy's own interval
    x = np.array([0.3, 1.7, 0.9, 1.1])
    ref = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    np.testing.assert_allclose(stats.t_ci(x)[1:], ref, rtol=1e-12)
    ref90 = sps.t.interval(0.9, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    np.testing.assert_allclose(stats.t_ci(x, 0.9)[1:], ref90, rtol=1e-12)


def test_t_ci_degenerate_cases():
    assert all(math.isnan(v) for v in stats.t_ci([]))
    m, lo, hi = stats.t_ci([2.5])
    assert m == 2.5 and math.isnan(lo) and math.isnan(hi)
    assert stats.t_ci([1.0, 1.0, 1.0]) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError):
        stats.t_ci([1.0, math.inf])
    with pytest.raises(ValueError):
        stats.t_ci([1.0, 2.0], confidence=1.5)


# --------------------------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------------------------


def test_select_lowest_validation_not_test():
    rows = [
        row("3resnet", 1000, 0, val=1.0, test=5.0, lr=0.1),
        row("3resnet", 1000, 0, val=2.0, test=0.1, lr=0.2),  # best test, worse val: not chosen
        row("3resnet", 1000, 0, val=0.5, test=0.2, lr=0.5, diverged=True),  # diverged: skipped
        row("3resnet", 1000, 0, val=math.nan, test=0.2, lr=1.0),  # NaN val: skipped
        row("3resnet", 1000, 1, val=3.0, test=3.0),
    ]
    sel = stats.select(rows)
    assert len(sel) == 2
    s0 = next(r for r in sel if r["seed"] == 0)
    assert s0["lr"] == 0.1 and s0["test_error"] == 5.0 and not s0["diverged"]
    assert s0["n_settings"] == 4 and s0["n_diverged_settings"] == 2  # diverged + NaN val
    assert stats.select(sel) == sel  # idempotent


def test_select_all_diverged_and_groups_by_alpha_beta():
    rows = [
        row("3nn", 1000, 0, val=1.0, test=1.0, diverged=True),
        row("3nn", 1000, 0, val=math.inf, test=math.nan, lr=0.1),
    ]
    (s,) = stats.select(rows)
    assert s["diverged"] and s["test_error"] == math.inf and s["val_error"] == math.inf
    rows = [
        row("3resnet", 1000, 0, val=1.0, test=1.0, alpha=0.1, experiment="exp2"),
        row("3resnet", 1000, 0, val=2.0, test=2.0, alpha=0.2, experiment="exp2"),
        row("3resnet", 1000, 0, val=0.5, test=0.5, alpha=0.2, beta=0.5, experiment="exp2"),
    ]
    assert len(stats.select(rows)) == 3


# --------------------------------------------------------------------------------------------
# n_star
# --------------------------------------------------------------------------------------------


def curve_rows(learner, ns, errors_per_seed):
    return [row(learner, n, s, e, e) for s, errs in enumerate(errors_per_seed) for n, e in zip(ns, errs)]


NS = (1000, 3000, 10000)


def test_first_crossing_hand_computed():
    # errors 4, 1, 0.25 and threshold 0.5: log-errors 2L, 0, -2L, log T = -L (L = log 2):
    # the crossing is half-way between 3000 and 10000 in log N, i.e. sqrt(3000 * 10000)
    st_, v = stats.first_crossing(NS, np.log([4, 1, 0.25]), math.log(0.5))
    assert st_ == "none" and v == pytest.approx(math.sqrt(3000 * 10000), rel=1e-12)
    # threshold 2 (log T = L): a quarter of the way from 1000 to 3000
    st_, v = stats.first_crossing(NS, np.log([4, 1, 0.25]), math.log(2))
    assert v == pytest.approx(1000 * 3 ** 0.5, rel=1e-12)
    # first crossing from above, even if the curve goes back up
    st_, v = stats.first_crossing(NS, np.log([4, 0.25, 4]), math.log(1))
    assert v == pytest.approx(1000 * 3 ** 0.5, rel=1e-12)
    # +inf (diverged) before the crossing: crossing at the next grid point; NaN (missing) skipped
    assert stats.first_crossing(NS, [math.inf, -1.0, -2.0], 0.0) == ("none", 3000.0)
    assert stats.first_crossing(NS, [1.0, math.nan, -1.0], 0.0)[1] == pytest.approx(math.sqrt(1000 * 10000))
    assert stats.first_crossing(NS, np.log([0.4, 0.3, 0.2]), math.log(0.5))[0] == "below_at_min_n"
    assert stats.first_crossing(NS, np.log([4, 2, 1]), math.log(0.5))[0] == "never_below"
    # "below" is strict: touching the threshold is not a crossing
    assert stats.first_crossing(NS, [1.0, 0.0, 0.0], 0.0)[0] == "never_below"


def test_n_star_seed_mean_of_log_error():
    # seed factors 2, 1, 0.5 have geometric mean 1: the seed-mean log curve is log(4, 1, 0.25)
    rows = curve_rows("3resnet", NS, [[4 * c, 1 * c, 0.25 * c] for c in (2.0, 1.0, 0.5)])
    out = stats.n_star(rows, 0.5)
    assert out["censored"] == "none" and out["bound"] != out["bound"]  # NaN bound
    assert out["estimate"] == pytest.approx(math.sqrt(3000 * 10000), rel=1e-12)
    lo, hi = out["ci95"]
    assert 3000 * (1 - 1e-9) <= lo <= out["estimate"] <= hi <= 10000 * (1 + 1e-9)
    assert out["final_below"] is True


def test_n_star_censored():
    below = stats.n_star(curve_rows("a", NS, [[0.4, 0.3, 0.2], [0.45, 0.3, 0.1]]), 0.5)
    assert below["censored"] == "below_at_min_n" and math.isnan(below["estimate"]) and below["bound"] == 1000
    assert all(math.isnan(v) for v in below["ci95"]) and below["cross_share"] == 1.0
    never = stats.n_star(curve_rows("a", NS, [[4, 2, 1], [5, 3, 1.1]]), 0.5)
    assert never["censored"] == "never_below" and math.isnan(never["estimate"]) and never["bound"] == 10000
    assert never["cross_share"] == 0.0 and all(math.isnan(v) for v in never["ci95"])
    # a diverged seed counts as +inf: the N where it diverged stays above the threshold
    rows = curve_rows("a", NS, [[4, 0.1, 0.1], [4, 0.1, 0.1]])
    rows[1]["diverged"] = True  # seed 0 at N=3000
    assert stats.n_star(rows, 0.5)["estimate"] == 10000.0
    # one seed: no bootstrap
    one = stats.n_star(curve_rows("a", NS, [[4, 1, 0.25]]), 0.5)
    assert one["estimate"] == pytest.approx(math.sqrt(3e7)) and math.isnan(one["cross_share"])
    assert all(math.isnan(v) for v in one["ci95"])


def test_n_star_bootstrap_share_and_percentiles():
    # seed A crosses, seed B never does. Bootstrap multisets of 2 seeds: {A,A} p=1/4, {A,B} p=1/2,
    # {B,B} p=1/4 (never crosses) -> share 3/4; crossing values n_AA and n_AB by hand.
    A, B = [4.0, 1.0, 0.01], [4.0, 4.0, 4.0]
    rows = curve_rows("a", NS, [A, B])
    out = stats.n_star(rows, 0.5, n_boot=4000, boot_seed=1)
    lt = math.log(0.5)
    f_aa = (0 - lt) / (0 - math.log(0.01))
    f_ab = (math.log(2) - lt) / (math.log(2) - (math.log(0.01) + math.log(4)) / 2)
    n_aa, n_ab = 3000 * (10 / 3) ** f_aa, 3000 * (10 / 3) ** f_ab
    assert out["estimate"] == pytest.approx(n_ab, rel=1e-12)  # the full sample is {A, B}
    assert abs(out["cross_share"] - 0.75) < 4 * math.sqrt(0.75 * 0.25 / 4000)
    assert out["ci95"][0] == pytest.approx(n_aa, rel=1e-9) and out["ci95"][1] == pytest.approx(n_ab, rel=1e-9)
    # deterministic for a fixed seed, and independent of other learners in the rows
    assert stats.n_star(rows, 0.5, n_boot=4000, boot_seed=1) == out
    s1 = concept_class.summarize_exp1(rows, threshold=0.5, n_boot=500)
    s2 = concept_class.summarize_exp1(rows + curve_rows("b", NS, [A, A]), threshold=0.5, n_boot=500)
    assert s1["n_star"]["a"] == s2["n_star"]["a"]


def test_n_star_bootstrap_resamples_seeds_jointly_across_n():
    # Seed 0 is high at every N, seed 1 low. Resampling whole seeds (paired across N) makes
    # every resample curve the mean of {0,0}, {0,1} or {1,1}: exactly 3 distinct crossings.
    # Resampling each N independently would also mix e.g. seed 1 at N_1 with seed 0 at N_2.
    hi, lo = [8.0, 2.0, 0.4], [2.0, 0.5, 0.1]
    rows = curve_rows("a", NS, [hi, lo])
    expected = {stats.first_crossing(NS, np.mean(np.log(p), axis=0), 0.0) for p in ([hi, hi], [hi, lo], [lo, lo])}
    got = stats.bootstrap_crossings(rows, 1.0, n_boot=2000)
    assert len(got) == 2000 and {(s_, round(v, 6)) for s_, v in got} == {(s_, round(v, 6)) for s_, v in expected}
    out = stats.n_star(rows, 1.0, n_boot=2000)
    values = [v for _, v in expected]
    assert out["cross_share"] == 1.0
    assert min(values) * (1 - 1e-9) <= out["ci95"][0] and out["ci95"][1] <= max(values) * (1 + 1e-9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=2, max_size=6), st.floats(-2, 2))
def test_first_crossing_properties(ys, t):
    ns = 1000 * 2 ** np.arange(len(ys))
    status, v = stats.first_crossing(ns, ys, t)
    if ys[0] < t:
        assert status == "below_at_min_n"
    elif all(y >= t for y in ys):
        assert status == "never_below"
    else:
        j = next(i for i, y in enumerate(ys) if y < t)
        assert status == "none" and ns[j - 1] <= v * (1 + 1e-12) and v <= ns[j] * (1 + 1e-12)
        # the log-linear interpolant passes through the threshold at v
        y_at = np.interp(math.log(v), np.log(ns[j - 1 : j + 1]), ys[j - 1 : j + 1])
        assert y_at == pytest.approx(t, abs=1e-9)


# --------------------------------------------------------------------------------------------
# separation
# --------------------------------------------------------------------------------------------


def test_separation_paired_and_selected_by_validation():
    net = [1.0, 5.0, 9.0]  # very different seeds ...
    diffs = [1.0, 1.1, 0.9]  # ... but a steady paired difference
    rows = []
    for s in range(3):
        rows.append(row("3resnet", 1000, s, val=net[s], test=net[s]))
        rows.append(row("2nn", 1000, s, val=net[s] + 10, test=0.0))  # worse val, great test
        rows.append(row("ntk-2nn", 1000, s, val=net[s] + 0.5, test=net[s] + diffs[s]))
        rows.append(row("nngp-2nn", 1000, s, val=net[s] + 3, test=net[s] - 5))  # worse val
    (sep,) = stats.separation(stats.select(rows))
    assert sep["best_network"] == "3resnet" and sep["best_kernel"] == "ntk-2nn"
    m, lo, hi = stats.t_ci(diffs)
    assert sep["difference_mean"] == pytest.approx(1.0) and sep["pairs"] == 3
    assert sep["difference_ci95"] == [pytest.approx(lo), pytest.approx(hi)]
    assert sep["significant"] is True
    # an unpaired interval would straddle 0; the paired one is tight
    assert hi - lo < 1.0
    # seeds are paired by id: a missing seed drops the pair
    rows2 = [r for r in rows if not (r["learner"] == "ntk-2nn" and r["seed"] == 2)]
    assert stats.separation(stats.select(rows2))[0]["pairs"] == 2
    # differences 1, 2, 3: CI 2 -+ t_{.975,2} / sqrt(3) = [-0.484, 4.484] -> not significant
    rows3 = [row("3resnet", 1000, s, 1, 1) for s in range(3)]
    rows3 += [row("ntk-2nn", 1000, s, 2, 1 + d) for s, d in enumerate([1, 2, 3])]
    sep3 = stats.separation(stats.select(rows3))[0]
    assert sep3["difference_ci95"][0] == pytest.approx(2 - 4.302653 / math.sqrt(3), abs=1e-5)
    assert sep3["significant"] is False


def test_separation_best_prefers_fewer_diverged_seeds():
    rows = [row("3resnet", 1000, s, val=0.1, test=0.1, diverged=(s == 0)) for s in range(3)]
    rows += [row("3nn", 1000, s, val=1.0, test=1.0) for s in range(3)]
    rows += [row("ntk-2nn", 1000, s, val=2.0, test=2.0) for s in range(3)]
    (sep,) = stats.separation(stats.select(rows))
    assert sep["best_network"] == "3nn" and sep["difference_mean"] == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# summaries and JSON
# --------------------------------------------------------------------------------------------


def test_summarize_exp1_shape_and_values():
    rows = synthetic_rows()
    s = concept_class.summarize_exp1(rows, 1.35, {"d": 30, "k": 15, "g_degree": 4, "alpha": 0.3})
    assert set(s) == {"threshold", "instance", "rows", "n_star", "separation", "predicted", "separation_ratio"}
    assert s["threshold"] == 1.35 and s["instance"]["alpha"] == 0.3
    assert len(s["rows"]) == 5 * 3
    assert [r["learner"] for r in s["rows"][::3]] == ["3resnet", "3nn", "2nn", "ntk-2nn", "nngp-3resnet"]
    for r in s["rows"]:
        assert {"learner", "n", "test_error_mean", "test_error_ci95", "seeds"} <= set(r)
        assert r["seeds"] == 3 and len(r["test_error_ci95"]) == 2
    # recompute one cell by hand: select by validation, then mean and t-CI of test errors
    cell = [r for r in rows if r["learner"] == "3nn" and r["n"] == 3000]
    tests = [min((r for r in cell if r["seed"] == sd), key=lambda r: r["val_error"])["test_error"] for sd in range(3)]
    m, lo, hi = stats.t_ci(tests)
    got = next(r for r in s["rows"] if r["learner"] == "3nn" and r["n"] == 3000)
    assert got["test_error_mean"] == pytest.approx(m)
    assert got["test_error_ci95"] == [pytest.approx(lo), pytest.approx(hi)]
    for ns in s["n_star"].values():
        assert {"estimate", "ci95", "censored", "cross_share"} <= set(ns)
        assert ns["censored"] in ("none", "below_at_min_n", "never_below")
    assert s["n_star"]["3resnet"]["censored"] == "none"
    assert s["n_star"]["nngp-3resnet"]["censored"] == "never_below"
    assert [e["n"] for e in s["separation"]] == list(NS)
    # defaults: threshold and instance from the rows
    s_def = concept_class.summarize_exp1(rows)
    assert s_def["threshold"] == pytest.approx(15 * 0.3**2)
    assert s_def["instance"] == {"d": 30, "k": 15, "g_degree": 4, "alpha": 0.3, "beta": 1.0, "experiment": "exp1"}


def test_summary_json_valid_with_nan_and_diverged():
    rows = curve_rows("3resnet", NS, [[4, 1, 0.25]]) + curve_rows("ntk-2nn", NS, [[5, 3, 2]])
    rows.append(row("2nn", 1000, 0, 1.0, 1.0, diverged=True))
    s = concept_class.summarize_exp1(rows)
    text = json.dumps(s, allow_nan=False)  # no bare NaN / Infinity tokens
    assert json.loads(text) == s
    r2nn = next(r for r in s["rows"] if r["learner"] == "2nn")
    assert r2nn["test_error_mean"] is None and r2nn["seeds"] == 0 and r2nn["diverged_seeds"] == 1
    r = next(r for r in s["rows"] if r["learner"] == "3resnet")
    assert r["test_error_ci95"] == [None, None] and r["seeds"] == 1
    assert s["separation"][0]["difference_ci95"] == [None, None] and s["separation"][0]["significant"] is False


def test_write_json_and_jsonable(tmp_path):
    obj = {"a": [np.float32(1.5), np.nan, np.inf], "b": np.int64(3), "c": np.bool_(True)}
    p = stats.write_json(obj, tmp_path / "s.json")
    assert json.loads(p.read_text()) == {"a": [1.5, None, None], "b": 3, "c": True}


def test_load_rows_csv_and_jsonl_round_trip(tmp_path):
    rows = synthetic_rows(seeds=2)
    rows[0]["diverged"] = True
    ref = concept_class.summarize_exp1(rows, n_boot=300)
    fields = list(rows[0])
    with open(tmp_path / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:  # NaN written as an empty cell, as a CSV writer of the sweep might
            w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
    with open(tmp_path / "results.jsonl", "w") as fh:
        for r in rows:
            fh.write(json.dumps(stats.jsonable(r), allow_nan=False) + "\n")
    for name in ("results.csv", "results.jsonl"):
        loaded = stats.load_rows(tmp_path / name)
        assert loaded[0]["diverged"] is True and isinstance(loaded[0]["n"], int)
        assert math.isnan(loaded[-1]["lr"]) or loaded[-1]["kind"] == "net"
        assert concept_class.summarize_exp1(tmp_path / name, n_boot=300) == ref
    with pytest.raises(ValueError):
        stats.load_rows(tmp_path / "results.txt")
    with pytest.raises(ValueError, match="val_error"):
        stats.load_rows([{"learner": "x", "kind": "net", "n": 1, "seed": 0, "test_error": 1.0}])
    with pytest.raises(ValueError, match="kind"):
        stats.load_rows([row("x", 1, 0, 1.0, 1.0, kind="svm")])


def test_mixed_instances_are_rejected():
    rows = synthetic_rows(seeds=1) + [dict(r, alpha=0.5) for r in synthetic_rows(seeds=1)]
    with pytest.raises(ValueError):
        concept_class.summarize_exp1(rows)  # two alphas: no single threshold
    with pytest.raises(ValueError, match="share a seed"):
        concept_class.summarize_exp1(rows, threshold=1.35)


def test_summarize_exp2_ratio():
    rows = []
    for a, b, errs in ((0.3, 1.0, [0.1, 0.2]), (0.5, 0.2, [4.0, 4.2]), (0.0, 0.5, [0.01, 0.02])):
        for s, e in enumerate(errs):
            rows.append(row("3resnet", 5000, s, e, e, alpha=a, beta=b, experiment="exp2"))
            rows.append(row("3resnet", 5000, s, e + 1, e / 10, alpha=a, beta=b, experiment="exp2", lr=0.5))
    s = concept_class.summarize_exp2(rows)
    assert json.loads(json.dumps(s, allow_nan=False)) == s
    assert s["instance"]["alphas"] == [0.0, 0.3, 0.5] and s["instance"]["betas"] == [0.2, 0.5, 1.0]
    by = {(e["alpha"], e["beta"]): e for e in s["rows"]}
    e = by[(0.3, 1.0)]
    assert e["threshold"] == pytest.approx(15 * 0.09) and e["test_error_mean"] == pytest.approx(0.15)
    assert e["ratio"] == pytest.approx(0.15 / 1.35)
    m, lo, hi = stats.t_ci([0.1, 0.2])
    assert e["ratio_ci95"] == [pytest.approx(lo / 1.35), pytest.approx(hi / 1.35)]
    assert by[(0.5, 0.2)]["ratio"] == pytest.approx(4.1 / (15 * 0.25))
    assert by[(0.0, 0.5)]["ratio"] is None and by[(0.0, 0.5)]["threshold"] == 0.0


def test_threshold_comes_from_the_rows_threshold_column():
    # a recorded threshold wins over k * alpha^2 (a family other than the concept class may
    # record any level); rows without one (older result files) fall back to k * alpha^2
    rows = [dict(r, threshold=0.5) for r in synthetic_rows(seeds=2)]
    assert concept_class.threshold_of(rows) == 0.5 and concept_class.summarize_exp1(rows)["threshold"] == 0.5
    assert concept_class.threshold_of(synthetic_rows(seeds=2)) == 15 * 0.3**2
    mixed = rows[:3] + synthetic_rows(seeds=2)[3:]  # a resumed old directory: partly recorded
    assert concept_class.threshold_of(mixed) == 15 * 0.3**2
    with pytest.raises(ValueError, match="one target"):
        concept_class.threshold_of(rows[:3] + [dict(r, threshold=0.7) for r in rows[3:]])
    e2 = [row("3resnet", 500, s, 0.1, 0.1, alpha=0.3, experiment="exp2", threshold=0.2) for s in range(2)]
    assert concept_class.summarize_exp2(e2)["rows"][0]["threshold"] == 0.2
    assert stats.normalize_row({**rows[0], "threshold": "0.5"})["threshold"] == 0.5  # as read from a CSV


# --------------------------------------------------------------------------------------------
# predicted curves and the separation ratio
# --------------------------------------------------------------------------------------------


def test_summary_carries_predicted_and_separation_ratio():
    rows = synthetic_rows()
    predicted = {
        "ntk-2nn": {"n_star": 2.5e6, "curve": {"1000": 3.0, "3000": 1.7, "10000000": 1.2}},
        "nngp-3resnet": {"n_star": None, "curve": {"1000": 2.7, "10000000": 1.4}},
    }
    s = concept_class.summarize_exp1(rows, predicted=predicted)
    json.dumps(s, allow_nan=False)
    assert s["predicted"] == predicted
    res = s["n_star"]["3resnet"]
    assert res["censored"] == "none"
    assert s["n_star"]["ntk-2nn"]["censored"] == "never_below"  # so the kernel's n* is the predicted one
    sr = s["separation_ratio"]
    assert sr["basis"] == "predicted" and sr["kernel"] == "ntk-2nn" and sr["network"] == "3resnet"
    assert sr["value"] == pytest.approx(2.5e6 / res["estimate"], rel=1e-12)
    assert isinstance(sr["value"], float)

    # a kernel whose measured curve crosses: its measured n* is used (and it is the best kernel)
    fast = [dict(r, test_error=r["test_error"] * 0.25) if r["learner"] == "nngp-3resnet" else r for r in rows]
    s2 = concept_class.summarize_exp1(fast, predicted=predicted)
    est = s2["n_star"]["nngp-3resnet"]["estimate"]
    assert s2["n_star"]["nngp-3resnet"]["censored"] == "none"
    assert s2["separation_ratio"]["basis"] == "measured" and s2["separation_ratio"]["kernel"] == "nngp-3resnet"
    assert s2["separation_ratio"]["value"] == pytest.approx(est / s2["n_star"]["3resnet"]["estimate"])

    # no kernel crosses, measured or predicted: no value, a lower bound from N = 1e9
    none = {k: dict(v, n_star=None) for k, v in predicted.items()}
    s3 = concept_class.summarize_exp1(rows, predicted=none)
    assert s3["separation_ratio"]["value"] is None and s3["separation_ratio"]["basis"] is None
    assert s3["separation_ratio"]["lower_bound"] == pytest.approx(1e9 / res["estimate"])
    assert "no kernel" in s3["separation_ratio"]["note"]

    # without predictions: both keys still there
    s4 = concept_class.summarize_exp1(rows)
    assert s4["predicted"] == {} and s4["separation_ratio"]["value"] is None
    with pytest.raises(ValueError, match="predicted"):
        concept_class.summarize_exp1(rows, predicted=[1, 2])
