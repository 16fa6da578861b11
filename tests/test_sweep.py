"""rbk.sweep: the plan and its chunking, validation, the results store (atomic cells, resume,
config guard, kill -9 at any instant), divergence, paired data across learners."""

import csv
import json
import math
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from rbk import stats, sweep
from rbk.experiments import concept_class

REPO = Path(__file__).resolve().parents[1]

# a kernel-only sweep: every cell is a tiny exact-kernel fit (no XLA training compile)
TINY_KERNELS = dict(
    learners=("nngp-2nn", "ntk-2nn"), ns=(60, 80), seeds=(0, 1), d=8, k=2, g_degree=2,
    n_val=40, n_test=50, ridges=(1e-3, 1e-1),
)  # fmt: skip


def _spec(**kw):
    base = dict(TINY_KERNELS)
    base.update(kw)
    return concept_class.make_spec("exp1", **base)


def _key(r):
    return (r["learner"], r["n"], r["seed"], r["width"], r["lr"], r["wd"], r["ridge"], r["alpha"], r["beta"])


# --------------------------------------------------------------------------------------------
# the plan
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_members", [None, 1, 2, 5, 7, 12, 45, 1000])
def test_chunking_covers_every_member_once_within_the_limit(max_members):
    spec = concept_class.make_spec(
        "exp2", learners=("3resnet", "ntk-2nn"), ns=(100,), seeds=(0, 1, 2), alphas=(0.1, 0.3), betas=(1.0,),
        lrs=(0.1, 0.01, 0.001), wds=(0.0, 1e-3), max_members_per_call=max_members,
    )  # fmt: skip
    cells = concept_class.plan(spec)
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
    spec = concept_class.make_spec("exp1", learners=("ntk-3resnet", "3resnet", "2nn"), ns=(300, 100), seeds=(0, 1))
    cells = concept_class.plan(spec)
    assert spec.ns == (100, 300)  # every grid is sorted
    assert [c.n for c in cells] == [100] * 4 + [300] * 4
    assert [c.kind for c in cells[:4]] == ["net", "net", "ntk", "ntk"]
    assert cells[0].members == 2 and cells[2].slots == ((0.3, 1.0, 0),)


def test_kernel_max_n_skips_only_exact_kernels():
    spec = concept_class.make_spec("exp1", learners=("2nn", "ntk-2nn", "rf-2nn"), ns=(100, 1000), seeds=(0,), kernel_max_n=500)
    ids = [c.id for c in concept_class.plan(spec)]
    assert not any(i.startswith("ntk-2nn_n1000") for i in ids)
    assert any(i.startswith("rf-2nn_n1000") for i in ids) and any(i.startswith("ntk-2nn_n100_") for i in ids)


def test_automatic_chunking_follows_the_memory_estimate():
    spec = concept_class.make_spec("exp1", learners=("3resnet",), ns=(1000,), seeds=(0, 1, 2, 3, 4), widths=(512,),
                           lrs=[0.1 * 2**-i for i in range(15)], wds=[1e-3 * 2**-i for i in range(15)])  # fmt: skip
    per = concept_class.cost.member_bytes(spec, "3resnet", 512, 1000)
    assert 5 * 4 * 286_000 < per < 200 * 2**20
    big = concept_class.resolve_max_members(spec, memory_bytes=10**15, n_devices=1)
    assert big >= 1125
    small = concept_class.resolve_max_members(spec, memory_bytes=int(100 * per / concept_class.MEMORY_FRACTION), n_devices=1)
    assert small == 100
    assert concept_class.resolve_max_members(spec, memory_bytes=int(100 * per / concept_class.MEMORY_FRACTION), n_devices=4) == 400
    import dataclasses

    cells = concept_class.plan(dataclasses.replace(spec, max_members_per_call=small))
    assert all(c.members <= 100 for c in cells) and sum(c.members for c in cells) == 1125


BAD = [
    (dict(d=7), "d (--d"),
    (dict(d=8, k=5), "k (--k"),
    (dict(d=8, k=2, g_degree=3), "g_degree (--g-degree"),
    (dict(ns=(0,)), "ns (--n) must be an integer >= 1"),
    (dict(ns=(49,)), "ns (--n, training-set sizes; at least the batch size 50)"),
    (dict(ns=(100, 100)), "must not repeat"),
    (dict(seeds=()), "seeds (--seeds) must not be empty"),
    (dict(seeds=(-1,)), "seeds (--seeds)"),
    (dict(learners=("4resnet",)), "learners (--learners) must be among"),
    (dict(alphas=1.0), "alpha (--alpha)"),
    (dict(alphas=-0.1), "alpha (--alpha)"),
    (dict(alphas=float("nan")), "alpha (--alpha)"),
    (dict(betas=0.0), "beta (--beta)"),
    (dict(alphas=(0.1, 0.2)), "exp1 takes one alpha"),
    (dict(widths=(0,)), "widths (--width)"),
    (dict(epochs=0), "epochs (--epochs)"),
    (dict(lrs=(0.0,)), "lrs (--lr) must be a finite number > 0.0"),
    (dict(wds=(-1.0,)), "wds (--wd)"),
    (dict(ridges=(1, 2, 3, 4, 5, 6)), "ridges (--kernel-ridges)"),
    (dict(ridges=(-1.0,)), "ridges (--kernel-ridges)"),
    (dict(max_members_per_call=0), "max_members_per_call"),
    (dict(matmul_precision="tf32"), "matmul_precision (--matmul-precision) must be one of"),
]


@pytest.mark.parametrize("kw, msg", BAD)
def test_bad_values_name_the_parameter(kw, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        _spec(**kw)


def test_exp2_alpha_is_open_at_zero():
    with pytest.raises(ValueError, match=r"alpha \(--alpha\) must be in \(0, 1\): alpha = 0 would make the threshold"):
        concept_class.make_spec("exp2", learners=("3resnet",), ns=(100,), seeds=(0,), alphas=(0.0, 0.3), betas=(1.0,))
    with pytest.raises(ValueError, match=r"alpha \(--alpha\) must be in \(0, 1\): alpha = 0 would make the threshold"):
        concept_class.make_spec("exp1", learners=("3resnet",), ns=(100,), seeds=(0,), alphas=0.0)


def test_config_hash_ignores_chunking_and_tracks_results():
    a = _spec()
    assert a.config_hash() == _spec(max_members_per_call=3).config_hash()
    assert a.config_hash() != _spec(seeds=(0, 1, 2)).config_hash()
    assert a.config_hash() == _spec(decay_epoch=30).config_hash()  # the default, written out
    assert sweep.spec_from_meta({"config": a.config(), "config_hash": a.config_hash()}) == a
    assert a.config_hash() == _spec(matmul_precision="float32").config_hash() != _spec(matmul_precision="high").config_hash()


def test_meta_written_before_the_precision_was_recorded_is_read_but_not_resumed(tmp_path):
    spec = _spec(ns=(60,), learners=("nngp-2nn",))
    sweep.run(spec, tmp_path, quiet=True)
    meta = json.loads((tmp_path / "meta.json").read_text())
    del meta["config"]["matmul_precision"]
    meta["config_hash"] = sweep.hash_config(meta["config"])
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    assert sweep.spec_from_meta(meta) == spec and len(sweep.load_rows(tmp_path)) == 2 * 2
    with pytest.raises(sweep.ConfigMismatchError, match=r"matmul_precision: None -> 'highest'"):
        sweep.run(spec, tmp_path, quiet=True)


# --------------------------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------------------------


def _check_table(out: Path, spec):
    """Every planned row exactly once, in the cells, results.jsonl and results.csv alike."""
    cells = concept_class.plan(spec)
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
    assert set(rows[0]) == set(concept_class.ALL_FIELDS)
    thr = spec.target(*spec.instances[0]).threshold
    assert thr == spec.k * spec.instances[0][0] ** 2 and all(r["threshold"] == thr for r in rows)
    r = rows[0]
    assert r["kind"] == "nngp" and r["lr"] is None and r["wd"] is None and r["epochs"] is None
    assert r["ridge"] in spec.ridges and r["ridge_abs"] > 0 and r["call_wall_s"] > 0 and r["diverged"] is False
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["config_hash"] == spec.config_hash() and meta["config"]["ns"] == [60, 80]
    for key in ("jax", "jaxlib", "optax", "numpy", "python"):
        assert meta["versions"][key]
    assert meta["device"]["platform"] == jax.default_backend() and meta["device"]["devices"] and meta["device"]["cpu_model"]
    assert meta["config"]["matmul_precision"] == "highest"
    assert meta["study"] == "rbk.experiments.concept_class:SweepSpec"  # written before the move: rbk.sweep:SweepSpec
    assert sweep.study_class(meta["study"]) is concept_class.SweepSpec is sweep.study_class("rbk.sweep:SweepSpec")
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
    store = sweep.Store(tmp_path, spec, concept_class.plan(spec))
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
    cells = concept_class.plan(spec)
    p = tmp_path / "cells" / f"{cells[0].id}.jsonl"
    p.write_text("\n".join(p.read_text().splitlines()[:-1]) + "\n")  # footer gone: not finished
    (tmp_path / "cells" / f".{cells[1].id}.jsonl.host.1.tmp").write_text('{"half": ')
    store = sweep.Store(tmp_path, spec, cells)
    assert store.done() == {cells[1].id}
    res = sweep.run(spec, tmp_path, quiet=True)
    assert res.ran == [cells[0].id]
    _check_table(tmp_path, spec)


# A sweep in a subprocess that reports on stdout each cell it starts and finishes, and holds
# (waits on stdin, until killed) once it has finished ``hold`` cells: a kill after its k-th
# start (k <= hold) lands in the middle of the sweep however fast or busy the machine is.
_DRIVER = textwrap.dedent(
    """
    import json, sys
    from rbk import sweep
    from rbk.experiments import concept_class
    spec = concept_class.make_spec("exp1", **json.loads(sys.argv[2]))
    hold, finished = int(sys.argv[3]), []

    def on_start(cell):
        print("started", cell.id, flush=True)

    def on_cell(cell, rows):
        finished.append(cell.id)
        print("finished", cell.id, flush=True)
        if len(finished) == hold:
            sys.stdin.readline()  # until killed (or the test's end closes stdin)

    sweep.run(spec, sys.argv[1], quiet=True, on_start=on_start, on_cell=on_cell)
    """
)
DRIVER_SPEC = dict(TINY_KERNELS, ns=(60, 80, 100))
#: Last-resort limit on the wait for one line of the driver (a healthy one reports within
#: seconds, JAX's start-up included): only turns a stalled driver into a clear failure.
DRIVER_LINE_TIMEOUT_S = 600


class _Driver:
    def __init__(self, tmp_path, out, hold):
        script = tmp_path / "driver.py"
        script.write_text(_DRIVER)
        self.err = tmp_path / "driver.err"
        env = dict(os.environ, JAX_PLATFORMS="cpu")
        with open(self.err, "w") as err:
            self.proc = subprocess.Popen([sys.executable, str(script), str(out), json.dumps(DRIVER_SPEC), str(hold)],
                                         env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)  # fmt: skip
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.split())
        self.lines.put(None)

    def wait_for(self, word: str) -> str:
        """The cell id of the driver's next ``word`` ('started' or 'finished') line."""
        while True:
            try:
                got = self.lines.get(timeout=DRIVER_LINE_TIMEOUT_S)
            except queue.Empty:
                self.kill()
                raise AssertionError(f"the driver printed nothing for {DRIVER_LINE_TIMEOUT_S} s while the test waited "
                                     f"for {word!r} (stalled?); its stderr: {self.err.read_text()[-2000:]}") from None  # fmt: skip
            if got is None:
                raise AssertionError(f"the driver ended (exit {self.proc.wait()}) before {word!r}; "
                                     f"its stderr: {self.err.read_text()[-2000:]}")  # fmt: skip
            if got[0] == word:
                return got[1]

    def kill(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc.stdin.close()
        assert self.proc.returncode == -signal.SIGKILL, self.err.read_text()[-2000:]


def test_kill_9_after_the_first_cell_then_resume_gives_every_row_once(tmp_path):
    out = tmp_path / "res"
    spec = concept_class.make_spec("exp1", **DRIVER_SPEC)
    cells = concept_class.plan(spec)
    drv = _Driver(tmp_path, out, hold=1)
    assert drv.wait_for("finished") == cells[0].id
    drv.kill()
    assert sweep.Store(out, spec, cells).done() == {cells[0].id}
    res = sweep.run(spec, out, quiet=True)
    assert res.complete and res.skipped == [cells[0].id] and res.ran == [c.id for c in cells[1:]]
    _check_table(out, spec)
    assert not list(out.glob(".*.tmp")) and not list((out / "cells").glob(".*.tmp"))


@pytest.mark.slow
def test_kill_9_at_random_instants(tmp_path):
    """Each round kills a driver at a random point of its k-th cell: a random delay after it
    reports the start, so the kill lands in the computation, in writing the cell file, in
    regenerating the tables, or after (where the driver holds). The delay only moves the
    instant; what is asserted holds at any instant."""
    out = tmp_path / "res"
    spec = concept_class.make_spec("exp1", **DRIVER_SPEC)
    cells = concept_class.plan(spec)
    rng = np.random.default_rng(0)
    done, kills = set(), 0
    while kills < 8 and len(cells) - len(done) >= 2:
        hold = int(rng.integers(1, min(len(cells) - len(done) - 1, 3) + 1))  # the sweep cannot finish
        k = int(rng.integers(1, hold + 1))
        drv = _Driver(tmp_path, out, hold)
        for _ in range(k):
            drv.wait_for("started")
        time.sleep(float(rng.uniform(0.0, 0.5)))
        drv.kill()
        kills += 1
        now = sweep.Store(out, spec, cells).done()
        # whole cells only: the k-1 cells before the one killed in are there, at most `hold` new ones
        assert done <= now and len(done) + k - 1 <= len(now) <= len(done) + hold < len(cells)
        if (out / "results.jsonl").exists():  # the table may lag the cells by one, never duplicate or tear
            keys = [_key(json.loads(line)) for line in (out / "results.jsonl").read_text().splitlines()]
            assert len(keys) == len(set(keys))
        done = now
    assert kills >= 4
    res = sweep.run(spec, out, quiet=True)
    assert res.complete and set(res.skipped) == done
    _check_table(out, spec)


# --------------------------------------------------------------------------------------------
# networks: divergence, paired data
# --------------------------------------------------------------------------------------------


def test_diverging_members_are_recorded_and_data_are_paired(tmp_path, monkeypatch):
    seen = []
    real = concept_class.runners.dataset

    def spy(spec, alpha, beta, n, seed):
        ds = real(spec, alpha, beta, n, seed)
        seen.append(((n, seed), np.asarray(ds.x_train).tobytes() + np.asarray(ds.y_test).tobytes()))
        return ds

    monkeypatch.setattr(concept_class.runners, "dataset", spy)  # where run_*_cell look it up
    spec = concept_class.make_spec(
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
    summary = concept_class.summarize_exp1(rows)
    assert {r["learner"] for r in summary["rows"]} == {"2nn", "nngp-2nn", "rf-2nn"}
    # every learner drew the same data for a seed
    by_seed = {}
    for key, blob in seen:
        by_seed.setdefault(key, set()).add(blob)
    assert sorted(by_seed) == [(100, 0), (100, 1)] and all(len(v) == 1 for v in by_seed.values())
    assert len({next(iter(v)) for v in by_seed.values()}) == 2  # and seeds differ


def test_row_schema_is_the_one_stats_reads():
    assert concept_class.ROW_FIELDS == stats.ROW_FIELDS
    assert concept_class.ALL_FIELDS[: len(stats.ROW_FIELDS)] == stats.ROW_FIELDS


def test_git_info_outside_a_checkout(tmp_path):
    assert sweep.git_info(tmp_path) == {"revision": None, "dirty": None}
    info = sweep.git_info()
    assert info["revision"] is None or len(info["revision"]) == 40


def test_non_finite_values_at_any_depth_are_written_as_null(tmp_path):
    """A diverged member's row holds NaN / inf inside lists (per-epoch curves, per-level
    qualities) and numpy arrays: the cell is still written, as strict JSON, with ``null`` there
    and every finite value kept (this once stopped ``rbk exp4 --readout square``)."""
    from types import SimpleNamespace

    spec = SimpleNamespace(row_fields=("learner", "test_error", "curve", "quality", "arr", "diverged"))
    store = sweep.Store(tmp_path, spec, [SimpleNamespace(id="c0")])
    store.cells_dir.mkdir(parents=True)
    row = {
        "learner": "deep-joint", "test_error": np.float32("nan"), "curve": [0.5, float("inf"), np.float64(0.25)],
        "quality": [[1.0, float("-inf")], (np.nan, 2)], "arr": np.array([1.5, np.nan]), "diverged": np.bool_(True),
    }
    store.write_cell("c0", [row])
    text = store.cell_path("c0").read_text()
    assert "NaN" not in text and "Infinity" not in text
    (got,) = store.read_cell("c0")
    assert got == {"learner": "deep-joint", "test_error": None, "curve": [0.5, None, 0.25],
                   "quality": [[1.0, None], [None, 2]], "arr": [1.5, None], "diverged": True}
    assert store.rebuild() == [got]
