"""Members split over several devices give the numbers of one device.

A subprocess gets four host devices (``XLA_FLAGS=--xla_force_host_platform_device_count=4``);
its sweep cell (6 members: split over 3 of the CPU devices, 2 each) must match, to 1e-5
relative, the same cell on one CPU device (another subprocess), and record the four devices in
``meta.json``. Direct ``train`` calls split evenly, padded, or with the CPU split by
:func:`rbk.train.configure_cpu_devices` must give each member's numbers bit for bit (on CPU
devices each member runs alone, as on one device).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from rbk import sweep, train
from rbk.experiments import concept_class
from rbk.train import devices_used as _devices_used

SPEC = dict(learners=("2nn",), ns=(100,), seeds=(0, 1, 2), d=8, k=2, g_degree=2, widths=(8,), epochs=2,
            lrs=(0.05, 0.02), wds=(0.0,), n_val=50, n_test=60)  # fmt: skip

def test_four_devices_match_one(children):
    one, four = children["one"], children["four"]
    assert (one["devices"], four["devices"]) == (1, 4)
    a, b = np.array(one["sweep"]), np.array(four["sweep"])
    assert a.shape == b.shape == (6, 5)
    np.testing.assert_array_equal(a[:, :2], b[:, :2])
    np.testing.assert_allclose(b[:, 2:], a[:, 2:], rtol=1e-5)
    meta = json.loads((Path(four["out"]) / "meta.json").read_text())
    assert meta["device"]["local_device_count"] == 4 and len(meta["device"]["devices"]) == 4


_PROC = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
    from rbk import sweep
    from rbk.experiments import concept_class
    spec = concept_class.make_spec("exp1", **json.loads(sys.argv[3]))
    res = sweep.run(spec, sys.argv[4], quiet=True, wait_timeout_s=float(sys.argv[5]))
    print(json.dumps({"index": jax.process_index(), "ran": res.ran, "writer": res.is_writer}))
    """
)


#: Last-resort limit (s) of a process's wait on the other's files (a healthy run needs seconds).
LAST_RESORT_S = 600


@pytest.mark.slow
def test_two_processes_with_jax_distributed_split_the_cells(tmp_path):
    """Two CPU processes joined by ``jax.distributed``: cells alternate between them, process 0
    alone writes meta.json and the table, and the rows equal a one-process run's."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = dict(SPEC, learners=("2nn", "nngp-2nn"), ns=(100, 150), lrs=(0.05,), ridges=(1e-2,))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    out = tmp_path / "two"
    procs = [
        subprocess.Popen([sys.executable, "-c", _PROC, f"127.0.0.1:{port}", str(i), json.dumps(spec), str(out),
                          str(LAST_RESORT_S)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
        for i in range(2)
    ]
    try:  # the processes wait on each other's files; these limits only turn a stalled run into a failure
        outs = [p.communicate(timeout=2 * LAST_RESORT_S) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        raise AssertionError(f"the two processes did not finish in {2 * LAST_RESORT_S} s (stalled?): "
                             + " | ".join(p.communicate()[1][-1500:] for p in procs)) from None  # fmt: skip
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-3000:]
    got = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    cells = [c.id for c in concept_class.plan(concept_class.make_spec("exp1", **spec))]
    assert got[0]["ran"] == cells[0::2] and got[1]["ran"] == cells[1::2]
    assert got[0]["writer"] and not got[1]["writer"]
    one = sweep.run(concept_class.make_spec("exp1", **spec), tmp_path / "one", quiet=True)
    two = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["cell"] for r in two] == [r["cell"] for r in one.rows]
    assert {r["process"] for r in two} == {0, 1}
    for a, b in zip(one.rows, two):
        np.testing.assert_allclose([b["train_error"], b["test_error"]], [a["train_error"], a["test_error"]], rtol=1e-5)


_CHILD = textwrap.dedent(
    """
    import json, sys, warnings
    import jax
    from rbk import models, targets, train
    job = json.loads(sys.argv[1])
    if job["configure"] is not None:
        got = train.configure_cpu_devices(job["configure"])
        assert got == job["configure"], got
    out = {"devices": len(jax.local_devices()), "out": job["sweep_out"]}
    if job["sweep_out"] is not None:  # the sweep cell of SPEC
        from rbk import sweep
        from rbk.experiments import concept_class
        res = sweep.run(concept_class.make_spec("exp1", **job["spec"]), job["sweep_out"], quiet=True)
        out["sweep"] = [[r["seed"], r["lr"], r["train_error"], r["val_error"], r["test_error"]] for r in res.rows]
    for seeds, lrs in job["calls"]:  # direct train calls
        r = train.fit(models.get_model("3resnet", 16, 8, 2), targets.paper_instance(8, 2, 2), 100, seeds, lrs,
                      [0.0], train.config(epochs=2), n_val=50, n_test=50, return_params=True)
        out[f"{len(seeds)}x{len(lrs)}"] = [r.errors["test"].tolist(), r.epoch_loss.tolist(), r.params["U"].tolist()]
    if job["late_configure"]:  # JAX has started: configure_cpu_devices must warn and change nothing
        have = len(jax.devices("cpu"))
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            got = train.configure_cpu_devices(have + 3)
        out["late_configure"] = [got, have, len(jax.devices("cpu")), [str(x.message) for x in w]]
    print(json.dumps(out))
    """
)
CALLS = [[[0, 1, 2], [0.05, 0.02]], [[0, 1, 2, 3, 4, 5, 6], [0.05]], [[0, 1], [0.05]], [[0], [0.05]]]
#: The ``train`` calls of the default lane's variant, per process: 6 members on 4 devices (3 devices,
#: 2 each) and 7 on 4 (padded to 8); 2 on the 2 devices of ``configure_cpu_devices`` (one each).
SMALL_CALLS = {"one": CALLS[:3], "four": CALLS[:2], "two": CALLS[2:3]}


def _job(calls, *, configure=None, sweep_out=None, late_configure=False) -> str:
    return json.dumps({"calls": calls, "configure": configure, "sweep_out": None if sweep_out is None else str(sweep_out),
                       "spec": SPEC, "late_configure": late_configure})  # fmt: skip


def _base_env() -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    env.pop("JAX_NUM_CPU_DEVICES", None)
    return env


def _children(jobs: dict) -> dict:
    """``_CHILD`` in one fresh subprocess per ``name: (job, env)``, all started at once (they are independent)."""
    procs = {name: subprocess.Popen([sys.executable, "-c", _CHILD, job], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=env) for name, (job, env) in jobs.items()}  # fmt: skip
    outs = {name: p.communicate(timeout=600) for name, p in procs.items()}
    for name, p in procs.items():
        assert p.returncode == 0, outs[name][1][-3000:]
    return {name: json.loads(out.strip().splitlines()[-1]) for name, (out, _) in outs.items()}


def _split_jobs(calls, tmp=None) -> dict:
    """One, four (forced host devices) and two (``configure_cpu_devices``, as the rbk command
    does) CPU devices, with ``calls[name]`` as that process's ``train`` calls; with ``tmp``, the
    one- and four-device processes also run the sweep of ``SPEC`` there and the one-device
    process ends by calling ``configure_cpu_devices`` after JAX has started."""
    base = _base_env()
    four_env = dict(base, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    return {"one": (_job(calls["one"], sweep_out=tmp and tmp / "one", late_configure=tmp is not None), base),
            "four": (_job(calls["four"], sweep_out=tmp and tmp / "four"), four_env),
            "two": (_job(calls["two"], configure=2), base)}  # fmt: skip


@pytest.fixture(scope="module")
def children(tmp_path_factory):
    """The default lane's three processes, started once for every test of this file that reads them."""
    return _children(_split_jobs(SMALL_CALLS, tmp_path_factory.mktemp("sweeps")))


_NOT_CALLS = ("devices", "out", "sweep", "late_configure")  # a child's other outputs


def _check_device_splits(got):
    """Each ``train`` call that two of the processes ``got`` share gives the same bits."""
    one, four, two = got["one"], got["four"], got["two"]
    assert (one["devices"], four["devices"], two["devices"]) == (1, 4, 2)
    names = [f"{len(seeds)}x{len(lrs)}" for seeds, lrs in CALLS]
    for other in (four, two):
        shared = [name for name in names if name in other]
        assert shared and all(name in one for name in shared)
        for name in shared:
            for a, b in zip(one[name], other[name]):
                np.testing.assert_array_equal(np.array(b), np.array(a), err_msg=name)
    return one, four, two


@pytest.mark.slow
def test_cpu_device_splits_give_each_member_the_same_bits():
    # 6 members on 4 devices: 3 devices, 2 each; 7 on 4: padded to 8; 2 on 2: one each; 1: one device
    _, four, two = _check_device_splits(_children(_split_jobs({"one": CALLS, "four": CALLS, "two": CALLS})))
    names = [f"{len(seeds)}x{len(lrs)}" for seeds, lrs in CALLS]
    assert all(name in four and name in two for name in names)


def test_cpu_device_splits_give_each_member_the_same_bits_small(children):
    """The default lane's variant of the test above: the same code paths (an even split over some
    of the devices, a padded split, ``configure_cpu_devices``) with half the compilations."""
    _, four, two = _check_device_splits(children)
    assert sorted(k for k in four if k not in _NOT_CALLS) == ["3x2", "7x1"]
    assert sorted(k for k in two if k not in _NOT_CALLS) == ["2x1"]


class _Dev:
    def __init__(self, platform):
        self.platform = platform


@pytest.mark.parametrize("members, n, cpu, gpu", [
    (1, 2, 1, 1), (2, 2, 2, 2), (3, 2, 1, 2), (4, 2, 2, 2), (5, 2, 1, 2), (7, 2, 2, 2), (16, 2, 2, 2),
    (3, 4, 3, 3), (5, 4, 1, 4), (6, 4, 3, 4), (7, 4, 4, 4), (24, 16, 12, 16), (17, 16, 1, 16),
])  # fmt: skip
def test_devices_used_never_pads_a_cpu_much(members, n, cpu, gpu):
    """CPU: the largest divisor of the members, or all devices when padding wastes <= 1/8;
    accelerators: all devices up to the member count (padding is cheap there)."""
    assert _devices_used(members, [_Dev("cpu")] * n) == cpu
    assert _devices_used(members, [_Dev("gpu")] * n) == gpu
    used = cpu
    assert members % used == 0 or (-members) % used * 8 <= members + (-members) % used


def test_configure_cpu_devices_after_jax_started_warns_and_changes_nothing(children):
    # in a fresh process (the one-device child, which never configured devices before JAX started)
    got, have, after, messages = children["one"]["late_configure"]
    assert got == have == after == 1, (got, have, after)
    assert any("already initialised" in m for m in messages), messages
    with pytest.raises(ValueError, match="n must be"):
        train.configure_cpu_devices(0)
