"""The named architectures' exact kernels are unchanged: ``kernel_fn('2nn' | '3nn' | '3resnet')``
against ``tests/golden/kernels_closed_form.npz``, written by the hand-written per-architecture
closed forms that preceded the one layer recursion (``scripts/make_kernel_golden.py``; the file
lists its cases: every architecture x NTK weighting x scale x Gram / cross block)."""

import json
from pathlib import Path

import numpy as np
import pytest

from rbk import kernels

GOLDEN = np.load(Path(__file__).parent / "golden" / "kernels_closed_form.npz")
CASES = json.loads(str(GOLDEN["cases"]))


def test_the_golden_file_covers_every_architecture_group_and_block():
    assert {c["arch"] for c in CASES} == {"2nn", "3nn", "3resnet"}
    for arch, groups in kernels.LAYERS.items():
        alone = {tuple(c["trainable"]) for c in CASES if c["arch"] == arch and c["trainable"] and len(c["trainable"]) == 1}
        assert alone == {(g,) for g in groups}
    assert {c["same"] for c in CASES} == {True, False} and any(c["b_std"] == 0.0 for c in CASES)


@pytest.mark.parametrize("i", range(len(CASES)))
def test_named_architecture_kernels_match_the_hand_written_closed_forms(i):
    case = CASES[i]
    kfn = kernels.kernel_fn(case["arch"], W_std=case["W_std"], b_std=case["b_std"],
                            trainable=None if case["trainable"] is None else tuple(case["trainable"]),
                            layer_rates=case["layer_rates"])
    x2 = None if case["same"] else GOLDEN["x2"]
    got = kfn(GOLDEN["x1"], x2, get=("ntk", "nngp"))
    for name in ("nngp", "ntk"):
        ref = GOLDEN[f"{name}_{i}"]
        np.testing.assert_allclose(getattr(got, name), ref, rtol=1e-12, atol=1e-12 * np.max(np.abs(ref)), err_msg=name)
    np.testing.assert_array_equal(kfn(GOLDEN["x1"], x2, get="nngp"), got.nngp)
