"""rbk.sweep: the plan and its chunking, validation, the results store (atomic cells, resume,
config guard, kill -9 at any instant), divergence, paired data across learners."""

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from rbk import stats, sweep

REPO = Path(__file__).resolve().parents[1]

# a kernel-only sweep: every cell is a tiny exact-kernel fit (no XLA training compile)
TINY_KERNELS = dict(
    learners=("nngp-2nn", "ntk-2nn"), ns=(60, 80), seeds=(0, 1), d=8, k=2, g_degree=2,
    n_val=40, n_test=50, ridges=(1e-3, 1e-1),
)  # fmt: skip


def _spec(**kw):
    base = dict(TINY_KERNELS)
    base.update(kw)
    return sweep.make_spec("exp1", **base)


def _key(r):
    return (r["learner"], r["n"], r["seed"], r["width"], r["lr"], r["wd"], r["ridge"], r["alpha"], r["beta"])


# --------------------------------------------------------------------------------------------
# the plan
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_members", [None, 1, 2, 5, 7, 12, 45, 1000])
def test_chunking_covers_every_member_once_within_the_limit(max_members):
    spec = sweep.make_spec(
        "exp2", learners=("3resnet", "ntk-2nn"), ns=(100,), seeds=(0, 1, 2), alphas=(0.1, 0.3), betas=(1.0,),
        lrs=(0.1, 0.01, 0.001), wds=(0.0, 1e-3), max_members_per_call=max_members,
    )  # fmt: skip
    cells = sweep.plan(spec)
    net = [c for c in cells if c.kind == "net"]
    members = [(s, lr, wd) for c in net for s in c.slots for lr in c.lrs for wd in c.wds]
    full = [(s, lr, wd) for s in [(a, 1.0, sd) for a in (0.1, 0.3) for sd in (0, 1, 2)]
            for lr in spec.lrs for wd in spec.wds]  # fmt: skip
    assert sorted(members) == sorted(full)
    assert all(c.members <= (max_members or 10**9) for c in net)
    if max_members is None or max_members >= 36:
        assert len(net) == 1  # one compiled call holds every instance x seed x setting
    kern = [c for c in cells if c.kind != "net"]
    assert len(kern) == 2 * 3  # one fit per (instance, seed)
    assert len({c.id for c in cells}) == len(cells)


def test_plan_orders_by_n_and_puts_networks_first():
    spec = sweep.make_spec("exp1", learners=("ntk-3resnet", "3resnet", "2nn"), ns=(300, 100), seeds=(0, 1))
    cells = sweep.plan(spec)
    assert [c.n for c in cells] == [300] * 4 + [100] * 4
    assert [c.kind for c in cells[:4]] == ["net", "net", "ntk", "ntk"]
    assert cells[0].members == 2 and cells[2].slots == ((0.3, 1.0, 0),)


def test_kernel_max_n_skips_only_exact_kernels():
    spec = sweep.make_spec("exp1", learners=("2nn", "ntk-2nn", "rf-2nn"), ns=(100, 1000), seeds=(0,), kernel_max_n=500)
    ids = [c.id for c in sweep.plan(spec)]
    assert not any(i.startswith("ntk-2nn_n1000") for i in ids)
    assert any(i.startswith("rf-2nn_n1000") for i in ids) and any(i.startswith("ntk-2nn_n100_") for i in ids)


def test_automatic_chunking_follows_the_memory_estimate():
    spec = sweep.make_spec("exp1", learners=("3resnet",), ns=(1000,), seeds=(0, 1, 2, 3, 4), widths=(512,),
                           lrs=[0.1 * 2**-i for i in range(15)], wds=[1e-3 * 2**-i for i in range(15)])  # fmt: skip
    per = sweep.member_bytes(spec, "3resnet", 512, 1000)
    assert 5 * 4 * 286_000 < per < 200 * 2**20
    big = sweep.resolve_max_members(spec, memory_bytes=10**15, n_devices=1)
    assert big >= 1125
    small = sweep.resolve_max_members(spec, memory_bytes=int(100 * per / sweep.MEMORY_FRACTION), n_devices=1)
    assert small == 100
    assert sweep.resolve_max_members(spec, memory_bytes=int(100 * per / sweep.MEMORY_FRACTION), n_devices=4) == 400
    import dataclasses

    cells = sweep.plan(dataclasses.replace(spec, max_members_per_call=small))
    assert all(c.members <= 100 for c in cells) and sum(c.members for c in cells) == 1125


BAD = [
    (dict(d=7), "d (--d"),
    (dict(d=8, k=5), "k (--k"),
    (dict(d=8, k=2, g_degree=3), "g_degree (--g-degree"),
    (dict(ns=(0,)), "n (--n"),
    (dict(ns=(49,)), "n (--n"),
    (dict(ns=(100, 100)), "must not repeat"),
    (dict(seeds=()), "seeds (--seeds) must not be empty"),
    (dict(seeds=(-1,)), "seeds (--seeds)"),
    (dict(learners=("4resnet",)), "learners (--learners) must be among"),
    (dict(alphas=1.0), "alpha (--alpha)"),
    (dict(alphas=-0.1), "alpha (--alpha)"),
    (dict(alphas=float("nan")), "alpha (--alpha)"),
    (dict(betas=0.0), "beta (--beta)"),
    (dict(alphas=(0.1, 0.2)), "exp1 takes one alpha"),
    (dict(widths=(0,)), "width (--width)"),
    (dict(epochs=0), "epochs (--epochs)"),
    (dict(lrs=(0.0,)), "lr (--lr"),
    (dict(wds=(-1.0,)), "wd (--wd"),
    (dict(ridges=(1, 2, 3, 4, 5, 6)), "ridges (--ridges)"),
    (dict(ridges=(-1.0,)), "ridges (--ridges)"),
    (dict(max_members_per_call=0), "max_members_per_call"),
]


@pytest.mark.parametrize("kw, msg", BAD)
def test_bad_values_name_the_parameter(kw, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        _spec(**kw)


def test_exp2_alpha_is_open_at_zero():
    with pytest.raises(ValueError, match=r"alpha \(--alpha\) must be in \(0, 1\): alpha = 0 would make the threshold"):
        sweep.make_spec("exp2", learners=("3resnet",), ns=(100,), seeds=(0,), alphas=(0.0, 0.3), betas=(1.0,))
    with pytest.raises(ValueError, match=r"alpha \(--alpha\) must be in \(0, 1\): alpha = 0 would make the threshold"):
        sweep.make_spec("exp1", learners=("3resnet",), ns=(100,), seeds=(0,), alphas=0.0)


def test_config_hash_ignores_chunking_and_tracks_results():
    a = _spec()
    assert a.config_hash() == _spec(max_members_per_call=3).config_hash()
    assert a.config_hash() != _spec(seeds=(0, 1, 2)).config_hash()
    assert a.config_hash() == _spec(decay_epoch=30).config_hash()  # the default, written out
    assert sweep.spec_from_meta({"config": a.config(), "config_hash": a.config_hash()}) == a


# --------------------------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------------------------


def _check_table(out: Path, spec):
    """Every planned row exactly once, in the cells, results.jsonl and results.csv alike."""
    cells = sweep.plan(spec)
    jl = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    with open(out / "results.csv", newline="") as fh:
        rows_csv = list(csv.DictReader(fh))
    n_expected = sum(c.members * (len(spec.ridges) if c.kind != "net" else 1) for c in cells)
    assert len(jl) == len(rows_csv) == n_expected
    keys = [_key(r) for r in jl]
    assert len(set(keys)) == len(keys)
    assert [r["cell"] for r in rows_csv] == [r["cell"] for r in jl]
    assert {r["cell"] for r in jl} == {c.id for c in cells}
    loaded = stats.load_rows(out / "results.csv")
    assert [(r["learner"], r["n"], r["seed"]) for r in loaded] == [(r["learner"], r["n"], r["seed"]) for r in jl]
    return jl


def test_run_writes_tidy_rows_meta_and_resumes(tmp_path):
    spec = _spec()
    res = sweep.run(spec, tmp_path, quiet=True)
    assert res.complete and len(res.ran) == len(res.cells) == 8 and not res.skipped
    rows = _check_table(tmp_path, spec)
    assert set(rows[0]) == set(sweep.ALL_FIELDS)
    r = rows[0]
    assert r["kind"] == "nngp" and r["lr"] is None and r["wd"] is None and r["epochs"] is None
    assert r["ridge"] in spec.ridges and r["ridge_abs"] > 0 and r["call_wall_s"] > 0 and r["diverged"] is False
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["config_hash"] == spec.config_hash() and meta["config"]["ns"] == [60, 80]
    for key in ("jax", "jaxlib", "optax", "numpy", "python"):
        assert meta["versions"][key]
    assert meta["device"]["platform"] == "cpu" and meta["device"]["devices"] and meta["device"]["cpu_model"]
    assert set(meta["git"]) == {"revision", "dirty"}
    # selection: one row per (learner, n, seed), the lowest validation error
    sel = stats.select(rows)
    assert len(sel) == 2 * 2 * 2
    for s in sel:
        group = [x for x in rows if (x["learner"], x["n"], x["seed"]) == (s["learner"], s["n"], s["seed"])]
        assert s["val_error"] == min(x["val_error"] for x in group)
    # a second run skips everything and leaves the table unchanged
    before = (tmp_path / "results.csv").read_text()
    res2 = sweep.run(spec, tmp_path, quiet=True)
    assert res2.ran == [] and len(res2.skipped) == 8
    assert (tmp_path / "results.csv").read_text() == before
    assert len(json.loads((tmp_path / "meta.json").read_text())["runs"]) == 2


def test_other_config_in_the_same_directory_is_refused(tmp_path):
    sweep.run(_spec(ns=(60,), learners=("nngp-2nn",)), tmp_path, quiet=True)
    with pytest.raises(sweep.ConfigMismatchError, match=r"different config.*seeds"):
        sweep.run(_spec(ns=(60,), learners=("nngp-2nn",), seeds=(1,)), tmp_path, quiet=True)
    other = tmp_path / "x"
    (other / "cells").mkdir(parents=True)
    (other / "cells" / "a.jsonl").write_text("{}\n")
    with pytest.raises(sweep.ConfigMismatchError, match="no meta.json"):
        sweep.run(_spec(ns=(60,)), other, quiet=True)


def test_a_second_writer_is_refused_while_the_lock_is_held(tmp_path):
    spec = _spec(ns=(60,), learners=("nngp-2nn",))
    store = sweep.Store(tmp_path, spec, sweep.plan(spec))
    store.lock()
    try:
        with pytest.raises(sweep.StoreLockedError, match="another rbk run"):
            sweep.run(spec, tmp_path, quiet=True)
    finally:
        store.unlock()
    assert sweep.run(spec, tmp_path, quiet=True).complete


def test_incomplete_or_stray_files_are_not_rows(tmp_path):
    spec = _spec(ns=(60,), learners=("nngp-2nn",))
    sweep.run(spec, tmp_path, quiet=True)
    cells = sweep.plan(spec)
    p = tmp_path / "cells" / f"{cells[0].id}.jsonl"
    p.write_text("\n".join(p.read_text().splitlines()[:-1]) + "\n")  # footer gone: not finished
    (tmp_path / "cells" / f".{cells[1].id}.jsonl.host.1.tmp").write_text('{"half": ')
    store = sweep.Store(tmp_path, spec, cells)
    assert store.done() == {cells[1].id}
    res = sweep.run(spec, tmp_path, quiet=True)
    assert res.ran == [cells[0].id]
    _check_table(tmp_path, spec)


_DRIVER = textwrap.dedent(
    """
    import sys, time
    from rbk import sweep
    spec = sweep.make_spec("exp1", learners=("nngp-2nn", "ntk-2nn"), ns=(60, 80, 100), seeds=(0, 1), d=8, k=2,
                           g_degree=2, n_val=40, n_test=50, ridges=(1e-3, 1e-1))
    pause = float(sys.argv[2])
    sweep.run(spec, sys.argv[1], quiet=True, on_cell=lambda c, r: time.sleep(pause))
    """
)


def _driver(tmp_path, out, pause):
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.Popen([sys.executable, str(script), str(out), str(pause)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def _driver_spec():
    ns = {}
    exec(_DRIVER.split("pause =")[0].replace("import sys, time", ""), ns)
    return ns["spec"]


def _kill_after_first_cell(proc, cells_dir, timeout=120):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cells_dir.exists() and any(cells_dir.glob("*.jsonl")):
            break
        if proc.poll() is not None:
            raise AssertionError(f"driver ended early: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    else:
        raise AssertionError("no cell landed")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_kill_9_after_the_first_cell_then_resume_gives_every_row_once(tmp_path):
    out = tmp_path / "res"
    spec = _driver_spec()
    proc = _driver(tmp_path, out, pause=2.0)
    _kill_after_first_cell(proc, out / "cells")
    assert proc.returncode == -signal.SIGKILL
    done = sweep.Store(out, spec, sweep.plan(spec)).done()
    assert 1 <= len(done) < len(sweep.plan(spec))
    res = sweep.run(spec, out, quiet=True)
    assert res.complete and set(res.skipped) == done and len(res.ran) == len(res.cells) - len(done)
    _check_table(out, spec)
    assert not list(out.glob(".*.tmp")) and not list((out / "cells").glob(".*.tmp"))


@pytest.mark.slow
def test_kill_9_at_random_instants(tmp_path):
    out = tmp_path / "res"
    spec = _driver_spec()
    cells = sweep.plan(spec)
    rng = np.random.default_rng(0)
    mid = 0
    for _ in range(8):
        proc = _driver(tmp_path, out, pause=0.0)
        time.sleep(float(rng.uniform(1.0, 5.0)))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done = sweep.Store(out, spec, cells).done()
        mid += 0 < len(done) < len(cells)
        if (out / "results.jsonl").exists():  # the table may lag the cells by one, never duplicate or tear
            keys = [_key(json.loads(line)) for line in (out / "results.jsonl").read_text().splitlines()]
            assert len(keys) == len(set(keys))
        if len(done) == len(cells):
            break
    assert mid >= 1, "no kill landed in the middle of the sweep"
    res = sweep.run(spec, out, quiet=True)
    assert res.complete
    _check_table(out, spec)


# --------------------------------------------------------------------------------------------
# networks: divergence, paired data
# --------------------------------------------------------------------------------------------


def test_diverging_members_are_recorded_and_data_are_paired(tmp_path, monkeypatch):
    seen = []
    real = sweep._dataset

    def spy(spec, alpha, beta, n, seed):
        ds = real(spec, alpha, beta, n, seed)
        seen.append(((n, seed), np.asarray(ds.x_train).tobytes() + np.asarray(ds.y_test).tobytes()))
        return ds

    monkeypatch.setattr(sweep, "_dataset", spy)
    spec = sweep.make_spec(
        "exp1", learners=("2nn", "nngp-2nn", "rf-2nn"), ns=(100,), seeds=(0, 1), d=8, k=2, g_degree=2, widths=(8,),
        epochs=2, lrs=(0.05, 1e4), wds=(0.0,), n_val=50, n_test=60, ridges=(1e-2,),
    )  # fmt: skip
    res = sweep.run(spec, tmp_path, quiet=True)
    assert res.complete
    rows = _check_table(tmp_path, spec)
    net = [r for r in rows if r["kind"] == "net"]
    assert len(net) == 4 and net[0]["epochs"] == 2 and net[0]["ridge"] is None and net[0]["width"] == 8
    big = [r for r in net if r["lr"] == 1e4]
    assert all(r["diverged"] for r in big) and not any(r["diverged"] for r in net if r["lr"] == 0.05)
    assert all(r["compile_s"] > 0 and r["call_wall_s"] >= r["run_s"] for r in net)
    sel = [r for r in stats.select(rows) if r["kind"] == "net"]
    assert all(r["lr"] == 0.05 and math.isfinite(r["test_error"]) for r in sel)
    summary = stats.summarize_exp1(rows)
    assert {r["learner"] for r in summary["rows"]} == {"2nn", "nngp-2nn", "rf-2nn"}
    # every learner drew the same data for a seed
    by_seed = {}
    for key, blob in seen:
        by_seed.setdefault(key, set()).add(blob)
    assert sorted(by_seed) == [(100, 0), (100, 1)] and all(len(v) == 1 for v in by_seed.values())
    assert len({next(iter(v)) for v in by_seed.values()}) == 2  # and seeds differ


def test_row_schema_is_the_one_stats_reads():
    assert sweep.ROW_FIELDS == stats.ROW_FIELDS
    assert sweep.ALL_FIELDS[: len(stats.ROW_FIELDS)] == stats.ROW_FIELDS


def test_git_info_outside_a_checkout(tmp_path):
    assert sweep.git_info(tmp_path) == {"revision": None, "dirty": None}
    info = sweep.git_info()
    assert info["revision"] is None or len(info["revision"]) == 40
