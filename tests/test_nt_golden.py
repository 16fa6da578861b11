"""rbk.kernels against neural-tangents' golden NNGP / NTK (tests/golden/nt_kernels.npz).

Default lane: needs numpy and rbk only. The golden file holds the inputs as well as
neural-tangents 0.6.5's float64 kernels of ``2nn`` and ``3nn`` (ntk parameterization) for
several ``(W_std, b_std)``; regenerate it with ``scripts/nt_oracle.py`` (docs/oracle.md).
Tolerance: per block, ``max |rbk - golden| / max |golden| <= 1e-6`` (normwise; entrywise
relative error is ill-defined at antipodal pairs, where the true NTK is 0 and the arccos
carries an O(sqrt(eps)) error).

The golden values themselves are also checked against an independent numpy transcription
of the layer-by-layer recursion (arc-cosine kernels), so a wrong golden file cannot pass
silently.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parent / "golden" / "nt_kernels.npz"
RTOL = 1e-6


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = float(np.max(np.abs(b)))
    return float(np.max(np.abs(a - b))) / scale if scale else float(np.max(np.abs(a)))


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as f:
        data = {k: f[k] for k in f.files}
    meta = json.loads(str(data.pop("meta_json")))
    return meta, data


def _groups():
    """One test per (arch, W_std, b_std, inputs, block); read from the file at collection."""
    with np.load(GOLDEN) as f:
        meta = json.loads(str(f["meta_json"]))
    seen = {}
    for c in meta["cases"]:
        sig = (c["arch"], c["W_std"], c["b_std"], c["inputs"], c["block"])
        seen.setdefault(sig, []).append(c)
    return [pytest.param(v, id=f"{s[0]}-W{s[1]:.4g}-b{s[2]:.4g}-{s[3]}-{s[4]}") for s, v in seen.items()]


def _inputs(data, case):
    x1 = data[f"x1__{case['inputs']}"]
    x2 = None if case["block"] == "x1x1" else data[f"x2__{case['inputs']}"]
    return x1, x2


def test_golden_file_is_complete(golden):
    meta, data = golden
    assert meta["versions"]["neural-tangents"] == "0.6.5"
    archs = {c["arch"] for c in meta["cases"]}
    kinds = {s["kind"] for s in meta["inputs"]}
    assert archs == {"2nn", "3nn"} and kinds == {"cube", "gauss"}
    assert len({(c["W_std"], c["b_std"]) for c in meta["cases"]}) >= 3
    for c in meta["cases"]:
        k = data[c["key"]]
        x1, x2 = _inputs(data, c)
        assert k.dtype == np.float64 and k.shape == (x1.shape[0], (x1 if x2 is None else x2).shape[0])
        assert np.all(np.isfinite(k))
    for s in meta["inputs"]:
        x1 = data[f"x1__{s['name']}"]
        if s["kind"] == "cube":
            assert set(np.unique(x1)) == {-1.0, 1.0}


@pytest.mark.parametrize("cases", _groups())
def test_rbk_matches_golden(golden, cases):
    from rbk import kernels

    _, data = golden
    c0 = cases[0]
    x1, x2 = _inputs(data, c0)
    kfn = kernels.kernel_fn(c0["arch"], W_std=c0["W_std"], b_std=c0["b_std"])
    got = kfn(x1, x2, get=("nngp", "ntk"))
    for c in cases:
        want = data[c["key"]]
        have = getattr(got, c["get"])
        assert have.dtype == np.float64
        err = rel_err(have, want)
        assert err <= RTOL, f"{c['key']}: max relative error {err:.3e} > {RTOL:g}"
        if x2 is None:
            assert np.array_equal(have, have.T)


def test_rbk_single_get_matches_golden(golden):
    """A string ``get`` returns one array (neural-tangents' convention)."""
    from rbk import kernels

    meta, data = golden
    c = next(c for c in meta["cases"] if c["arch"] == "3nn" and c["block"] == "x1x2" and c["get"] == "ntk")
    x1, x2 = _inputs(data, c)
    have = kernels.kernel_fn("3nn", W_std=c["W_std"], b_std=c["b_std"])(x1, x2, get="ntk")
    assert isinstance(have, np.ndarray) and rel_err(have, data[c["key"]]) <= RTOL


# ----------------------------------------------------------------------------- the golden file itself


def _relu_moments(qa, qb, s):
    norm = np.sqrt(np.outer(qa, qb))
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.clip(np.where(norm > 0, s / np.where(norm > 0, norm, 1.0), 0.0), -1.0, 1.0)
    t = np.arccos(c)
    k = norm / (2 * math.pi) * (np.sin(t) + (math.pi - t) * c)
    kd = np.where(norm > 0, (math.pi - t) / (2 * math.pi), 0.0)
    return k, kd


def _recursion(arch, W_std, b_std, x1, x2):
    """NNGP / NTK by the generic layer recursion (Dense: S -> sw2 S + sb2, T -> S' + sw2 T;
    ReLU: S -> E[relu relu], T -> T E[relu' relu']), written independently of rbk."""
    sw2, sb2 = W_std**2, b_std**2
    d = x1.shape[1]
    qa, qb = sw2 * np.sum(x1 * x1, 1) / d + sb2, sw2 * np.sum(x2 * x2, 1) / d + sb2
    S = sw2 * (x1 @ x2.T) / d + sb2
    T = S
    for _ in range(1 if arch == "2nn" else 2):
        K, D = _relu_moments(qa, qb, S)
        T = T * D
        qa, qb = sw2 * qa / 2 + sb2, sw2 * qb / 2 + sb2  # E[relu(u)^2] = q / 2
        S = sw2 * K + sb2
        T = S + sw2 * T
    nngp = S - sb2  # the output layer has no bias
    ntk = T - sb2
    return {"nngp": nngp, "ntk": ntk}


def test_golden_matches_numpy_recursion(golden):
    meta, data = golden
    worst = 0.0
    for c in meta["cases"]:
        x1, x2 = _inputs(data, c)
        want = _recursion(c["arch"], c["W_std"], c["b_std"], x1, x1 if x2 is None else x2)[c["get"]]
        err = rel_err(data[c["key"]], want)
        worst = max(worst, err)
        assert err <= RTOL, f"golden {c['key']} vs numpy recursion: {err:.3e}"
    assert worst < 1e-8  # float64 agreement, not just within tolerance
