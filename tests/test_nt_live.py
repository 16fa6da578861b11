"""Live comparison of rbk.kernels with neural-tangents (``pytest -m nt``; the nt CI lane).

Needs the nt environment (``bash scripts/nt_env.sh``; run with ``PYTHONPATH=<repo root>``);
elsewhere every test skips. Fresh inputs and ``(W_std, b_std)`` pairs that are not in the
golden file, rbk's blocked assembly, and the golden file against live neural-tangents.
Tolerance as in docs/oracle.md: per block ``max |rbk - nt| / max |nt| <= 1e-6``.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.nt

REPO = Path(__file__).resolve().parents[1]
RTOL = 1e-6


@pytest.fixture(scope="module")
def oracle():
    """scripts/nt_oracle.py as a module, once neural_tangents is known to import."""
    pytest.importorskip("neural_tangents", reason="needs the nt environment (bash scripts/nt_env.sh)")
    spec = importlib.util.spec_from_file_location("nt_oracle", REPO / "scripts" / "nt_oracle.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fresh(kind, n1, n2, d, seed):
    rng = np.random.default_rng(seed)
    if kind == "cube":
        return rng.choice([-1.0, 1.0], (n1, d)), rng.choice([-1.0, 1.0], (n2, d))
    if kind == "gauss":
        return rng.standard_normal((n1, d)), rng.standard_normal((n2, d))
    if kind == "scaled":  # norms spread over two orders of magnitude
        s1 = np.exp(rng.uniform(-2, 2.5, (n1, 1)))
        s2 = np.exp(rng.uniform(-2, 2.5, (n2, 1)))
        return s1 * rng.standard_normal((n1, d)), s2 * rng.standard_normal((n2, d))
    raise ValueError(kind)


INPUTS = [("cube", 11, 6, 12, 101), ("gauss", 9, 5, 5, 102), ("scaled", 10, 7, 17, 103), ("gauss", 6, 4, 1, 104)]
PARAMS = [(1.0, 0.0), (0.8, 0.3), (2.0, 0.05), (math.sqrt(2.0), 1.7)]


@pytest.mark.parametrize("arch", ["2nn", "3nn"])
@pytest.mark.parametrize("W_std,b_std", PARAMS)
@pytest.mark.parametrize("inputs", INPUTS, ids=lambda t: f"{t[0]}-d{t[3]}")
def test_rbk_matches_live_nt(oracle, arch, W_std, b_std, inputs):
    kind, n1, n2, d, seed = inputs
    x1, x2 = _fresh(kind, n1, n2, d, seed)
    for xb in (None, x2):
        ref = oracle.nt_kernels(arch, W_std, b_std, x1, xb)
        got = oracle.rbk_kernels(arch, W_std, b_std, x1, xb)
        for g in ("nngp", "ntk"):
            assert ref[g].dtype == np.float64 and got[g].dtype == np.float64
            err = oracle.rel_err(got[g], ref[g])
            assert err <= RTOL, f"{arch} W={W_std} b={b_std} {kind} d={d} {g} x2={xb is not None}: {err:.3e}"


@pytest.mark.parametrize("arch", ["2nn", "3nn"])
def test_blocked_assembly_matches_live_nt(oracle, arch):
    """rbk's block-by-block Gram (ragged last blocks, mirrored upper blocks) against nt."""
    from rbk import kernels

    x1, x2 = _fresh("gauss", 23, 10, 7, 105)
    kfn = kernels.kernel_fn(arch, W_std=1.3, b_std=0.2)
    for xb in (None, x2):
        ref = oracle.nt_kernels(arch, 1.3, 0.2, x1, xb)
        got = kfn(x1, xb, get=("nngp", "ntk"), block_size=6)
        for g in ("nngp", "ntk"):
            assert oracle.rel_err(getattr(got, g), ref[g]) <= RTOL


def test_golden_file_matches_live_nt(oracle):
    """The committed golden values are what this neural-tangents computes (no stale file)."""
    with np.load(oracle.GOLDEN) as f:
        data = {k: f[k] for k in f.files}
    meta = json.loads(str(data.pop("meta_json")))
    done = {}
    for c in meta["cases"]:
        sig = (c["arch"], c["W_std"], c["b_std"], c["inputs"], c["block"])
        if sig not in done:
            x1 = data[f"x1__{c['inputs']}"]
            x2 = None if c["block"] == "x1x1" else data[f"x2__{c['inputs']}"]
            done[sig] = oracle.nt_kernels(c["arch"], c["W_std"], c["b_std"], x1, x2)
        err = oracle.rel_err(data[c["key"]], done[sig][c["get"]])
        assert err <= RTOL, f"golden {c['key']} is stale: {err:.3e} from live neural-tangents"


def test_nt_cannot_express_3resnet(oracle):
    """The README's claim: a post-ReLU skip (sum of two non-Gaussian branches) is refused by
    neural-tangents' FanInSum, so rbk's 3resnet kernel has no nt oracle."""
    msg = oracle.resnet_probe()
    assert msg.startswith("NotImplementedError") and "FanInSum" in msg, msg
