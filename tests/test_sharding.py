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

import numpy as np
import pytest

from rbk import sweep, train
from rbk.experiments import concept_class
from rbk.train import devices_used as _devices_used

SPEC = dict(learners=("2nn",), ns=(100,), seeds=(0, 1, 2), d=8, k=2, g_degree=2, widths=(8,), epochs=2,
            lrs=(0.05, 0.02), wds=(0.0,), n_val=50, n_test=60)  # fmt: skip

_CHILD = textwrap.dedent(
    """
    import json, sys
    import jax
    from rbk import sweep
    from rbk.experiments import concept_class
    spec = concept_class.make_spec("exp1", **json.loads(sys.argv[1]))
    res = sweep.run(spec, sys.argv[2], quiet=True)
    print(json.dumps({"devices": len(jax.local_devices()),
                      "rows": [[r["seed"], r["lr"], r["train_error"], r["val_error"], r["test_error"]] for r in res.rows]}))
    """
)


def _child_sweep(out, devices: int) -> dict:
    """The sweep of ``SPEC`` in a subprocess on ``devices`` CPU devices (whatever this process runs on)."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    env.pop("JAX_NUM_CPU_DEVICES", None)
    child = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(SPEC), str(out)], capture_output=True, text=True,
                           env=env, timeout=600)  # fmt: skip
    assert child.returncode == 0, child.stderr[-3000:]
    got = json.loads(child.stdout.strip().splitlines()[-1])
    assert got["devices"] == devices
    return got


def test_four_devices_match_one(tmp_path):
    got, one = _child_sweep(tmp_path / "four", 4), _child_sweep(tmp_path / "one", 1)
    a, b = np.array(one["rows"]), np.array(got["rows"])
    assert a.shape == b.shape == (6, 5)
    np.testing.assert_array_equal(a[:, :2], b[:, :2])
    np.testing.assert_allclose(b[:, 2:], a[:, 2:], rtol=1e-5)
    meta = json.loads((tmp_path / "four" / "meta.json").read_text())
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


_TRAIN = textwrap.dedent(
    """
    import json, sys
    import jax
    from rbk import models, targets, train
    if sys.argv[1] != "-":
        got = train.configure_cpu_devices(int(sys.argv[1]))
        assert got == int(sys.argv[1]), got
    out = {"devices": len(jax.local_devices())}
    for seeds, lrs in json.loads(sys.argv[2]):
        r = train.fit(models.get_model("3resnet", 16, 8, 2), targets.paper_instance(8, 2, 2), 100, seeds, lrs,
                      [0.0], train.config(epochs=2), n_val=50, n_test=50, return_params=True)
        out[f"{len(seeds)}x{len(lrs)}"] = [r.errors["test"].tolist(), r.epoch_loss.tolist(), r.params["U"].tolist()]
    print(json.dumps(out))
    """
)
CALLS = [[[0, 1, 2], [0.05, 0.02]], [[0, 1, 2, 3, 4, 5, 6], [0.05]], [[0, 1], [0.05]], [[0], [0.05]]]
#: The ``train`` calls of the default lane's variant, per process: 6 members on 4 devices (3 devices,
#: 2 each) and 7 on 4 (padded to 8); 2 on the 2 devices of ``configure_cpu_devices`` (one each).
SMALL_CALLS = {"one": CALLS[:3], "four": CALLS[:2], "two": CALLS[2:3]}


def _children_train(*runs):
    """``_TRAIN`` in one subprocess per ``(arg, env, calls)``, all started at once (they are independent)."""
    procs = [subprocess.Popen([sys.executable, "-c", _TRAIN, arg, json.dumps(calls)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for arg, env, calls in runs]  # fmt: skip
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]


def _check_device_splits(calls):
    """One, four (forced host devices) and two (``configure_cpu_devices``, as the rbk command
    does) CPU devices, with ``calls[name]`` as that process's ``train`` calls: each call that two
    processes share gives the same bits."""
    base = dict(os.environ, JAX_PLATFORMS="cpu")
    base.pop("XLA_FLAGS", None)
    base.pop("JAX_NUM_CPU_DEVICES", None)
    one, four, two = _children_train(("-", base, calls["one"]),
                                     ("-", dict(base, XLA_FLAGS="--xla_force_host_platform_device_count=4"), calls["four"]),
                                     ("2", base, calls["two"]))  # fmt: skip
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
    _, four, two = _check_device_splits({"one": CALLS, "four": CALLS, "two": CALLS})
    names = [f"{len(seeds)}x{len(lrs)}" for seeds, lrs in CALLS]
    assert all(name in four and name in two for name in names)


def test_cpu_device_splits_give_each_member_the_same_bits_small():
    """The default lane's variant of the test above: the same code paths (an even split over some
    of the devices, a padded split, ``configure_cpu_devices``) with half the compilations."""
    _, four, two = _check_device_splits(SMALL_CALLS)
    assert sorted(k for k in four if k != "devices") == ["3x2", "7x1"]
    assert sorted(k for k in two if k != "devices") == ["2x1"]


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


_STARTED = textwrap.dedent(
    """
    import warnings
    import jax
    from rbk import train
    jax.numpy.zeros(1).block_until_ready()  # backends initialised
    have = len(jax.devices("cpu"))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        got = train.configure_cpu_devices(have + 3)
    assert got == have == len(jax.devices("cpu")), (got, have)
    assert any("already initialised" in str(x.message) for x in w), [str(x.message) for x in w]
    print("ok")
    """
)


def test_configure_cpu_devices_after_jax_started_warns_and_changes_nothing():
    # in a fresh process: in this one an earlier test may have set the count before JAX started
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    for var in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES"):
        env.pop(var, None)
    r = subprocess.run([sys.executable, "-c", _STARTED], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]
    with pytest.raises(ValueError, match="n must be"):
        train.configure_cpu_devices(0)
