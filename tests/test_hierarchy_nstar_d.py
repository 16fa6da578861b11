"""Experiment 4's n*(d) combination on synthetic runs whose crossings and exponents are known in closed form."""

import json
import math

import pytest

from rbk.experiments.hierarchy import nstar_d

INSTANCE = {"widths": [4, 4], "alphas": [1.0, 0.8], "readout": "square", "first": "quadratic", "skip": True,
            "levels": 2}  # fmt: skip
NS = (1000, 4000, 16000, 64000, 256000)
THR = 0.2


def _run(tmp_path, d, *, pred_exp=4.5, seeds=4):
    """A run at ``d``: deep-joint's error ``THR * n0 / n`` with ``n0 = 10 d^2 (1 + 0.05 s)`` (a power
    law, so the log-log interpolation crosses exactly at ``n0``), two-stage's ``n0 = 3 d^3``,
    the NTK's predicted ``n* = d^pred_exp``."""
    rows = []
    for s in range(seeds):
        for lr, n0 in (("deep-joint", 10.0 * d**2 * (1 + 0.05 * s)), ("two-stage", 3.0 * d**3)):
            for n in NS:
                rows.append({"experiment": "exp4", "learner": lr, "kind": "net", "n": n, "labels": n, "seed": s,
                             "d": d, "val_error": 1.0, "test_error": THR * n0 / n})  # fmt: skip
    path = tmp_path / f"d{d}"
    path.mkdir()
    (path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {"experiment": "exp4", "instance": dict(INSTANCE, d=d), "threshold": THR,
               "n_star": {"deep-joint": {"estimate": 10.0 * d**2, "ci95": [1, 2]}, "two-stage": {"estimate": 3.0 * d**3}},
               "predicted": {"ntk-deep": {str(d): {"n_star": float(d) ** pred_exp}}}}  # fmt: skip
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def test_exponents_ratio_and_paired_difference_match_the_closed_form(tmp_path):
    dirs = [_run(tmp_path, d) for d in (16, 24, 32)]
    out = nstar_d.combine(dirs[::-1], n_boot=200)
    assert out["ds"] == [16, 24, 32]
    pts = {(p[0], p[1]): p[2] for p in out["slopes"]["deep-joint"]["bounds"]}
    assert pts[(24, 2)] == pytest.approx(10.0 * 24**2 * 1.1, rel=1e-9)
    assert out["slopes"]["deep-joint"]["slope"] == pytest.approx(2.0, abs=1e-6)
    assert out["slopes"]["two-stage"]["slope"] == pytest.approx(3.0, abs=1e-6)
    assert out["slopes"]["ntk-deep (predicted)"]["slope"] == pytest.approx(4.5, abs=1e-9)
    geo = math.exp(sum(math.log(1 + 0.05 * s) for s in range(4)) / 4)  # the seed-mean log curve crosses at the geometric mean
    assert out["n_star"]["deep-joint"]["32"]["estimate"] == pytest.approx(10.0 * 32**2 * geo, rel=1e-9)
    assert out["ratio_ntk_over_deep"]["32"] == pytest.approx(32**4.5 / (10.0 * 32**2 * geo), rel=1e-9)
    comp = {(c["first"], c["second"]): c for c in out["comparisons"]}
    ntk = comp[("ntk-deep (predicted)", "deep-joint")]
    assert ntk["difference"]["mean"] == pytest.approx(2.5, abs=1e-6)
    lo, hi = ntk["difference"]["ci95"]
    assert 2.0 < lo < 2.5 < hi < 3.0  # the seeds' spread (5 % per seed) moves the resampled slopes a little
    assert comp[("two-stage", "deep-joint")]["difference"]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert out["slopes"]["deep-joint"]["intercept"] == pytest.approx(math.log(10.0 * 1.075), abs=0.02)  # the seeds' mean
    assert "d=32" in nstar_d.format_table(out)
    png, pdf = nstar_d.plot(out, tmp_path / "fig")
    assert png.stat().st_size > 0 and pdf.stat().st_size > 0


def test_a_diverged_seed_is_censored_or_left_out(tmp_path):
    dirs = [_run(tmp_path, d) for d in (16, 24, 32)]
    rows = [json.loads(l) for l in (dirs[1] / "results.jsonl").read_text().splitlines()]
    for r in rows:
        if r["learner"] == "deep-joint" and r["seed"] == 3 and r["n"] == 4000:
            r.update(diverged=True, test_error=None, val_error=None)
    (dirs[1] / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    kept = nstar_d.combine(dirs, n_boot=50)
    assert kept["diverged"]["deep-joint"] == {"24": [3]}
    pts = {(p[0], p[1]): (p[2], p[3]) for p in kept["slopes"]["deep-joint"]["bounds"]}
    assert pts[(24, 3)] == (16000.0, 16000.0)  # above (infinite) at 4000, below at 16000: no interpolation across inf
    assert kept["n_star"]["deep-joint"]["24"]["estimate"] == 16000.0  # the seed mean is infinite at 4000 too
    dropped = nstar_d.combine(dirs, n_boot=50, drop_diverged=True)
    keys = {(p[0], p[1]) for p in dropped["slopes"]["deep-joint"]["bounds"]}
    assert (24, 3) not in keys and len(keys) == 11
    assert dropped["slopes"]["deep-joint"]["slope"] == pytest.approx(2.0, abs=0.01)
    assert "left out" in nstar_d.format_table(dropped)


def test_a_censored_seed_is_an_interval_not_a_value(tmp_path):
    dirs = [_run(tmp_path, d) for d in (16, 24, 48)]  # two-stage at d = 48: n0 = 331776 > 256000
    out = nstar_d.combine(dirs, n_boot=20)
    pts = {(p[0], p[1]): (p[2], p[3]) for p in out["slopes"]["two-stage"]["bounds"]}
    assert pts[(48, 0)] == (256000.0, math.inf)
    assert out["slopes"]["two-stage"]["censored"] == 4


def test_bad_inputs_are_named(tmp_path):
    a = _run(tmp_path, 16)
    with pytest.raises(ValueError, match="two or more d"):
        nstar_d.combine([a])
    with pytest.raises(ValueError, match="one run per d"):
        nstar_d.combine([a, a])
    b = _run(tmp_path, 24)
    s = json.loads((b / "summary.json").read_text())
    s["instance"]["readout"] = "linear"
    (b / "summary.json").write_text(json.dumps(s))
    with pytest.raises(ValueError, match="readout differ"):
        nstar_d.combine([a, b])
    with pytest.raises(ValueError, match="no summary.json"):
        nstar_d.combine([a, tmp_path / "missing"])
