"""Write ``tests/golden/kernels_closed_form.npz``: exact NNGP / NTK of the named architectures.

The committed file was written by the hand-written per-architecture closed forms that
``rbk.kernels`` had before the named architectures became descriptions of the one layer
recursion (``rbk/kernels/closed_form.py``); ``tests/test_kernel_golden.py`` checks that the
recursion reproduces them to 1e-12 relative. Rerunning this script now recomputes the same
cases with the current code (and should leave the numbers unchanged).

The cases cover every architecture x every way the NTK could be weighted (all groups, the
output frozen, the theory-faithful ``('W', 'U')`` with rates, random per-group rates, each group
alone) x three ``(W_std, b_std)`` (one with ``b_std = 0`` and a zero input row, the
zero-variance branch) x a Gram ``K(x, x)`` and a cross block ``K(x, x')``; both ``get``\\s.
The case list is stored in the file (JSON), so the test needs nothing from this script.

Usage: ``python scripts/make_kernel_golden.py [out.npz]``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from rbk import kernels

OUT = Path(__file__).resolve().parents[1] / "tests" / "golden" / "kernels_closed_form.npz"
GROUPS = {"2nn": ("W", "b1", "A"), "3nn": ("W", "b1", "U", "b2", "A"), "3resnet": ("W", "b1", "U", "b2", "A")}
SCALES = ((math.sqrt(2.0), 0.1), (1.3, 0.0), (0.8, 1.7))


def cases() -> list[dict]:
    rng = np.random.default_rng(7)
    out = []
    for arch, groups in GROUPS.items():
        variants = [(None, None), (tuple(g for g in groups if g != "A"), None)]
        theory = ("W", "U") if "U" in groups else ("W",)
        variants.append((theory, {g: r for g, r in zip(theory, (0.7, 1.9))}))
        rates = {g: float(r) for g, r in zip(groups, rng.uniform(0.0, 2.0, len(groups)))}
        rates[groups[1]] = 0.0
        variants.append((None, rates))
        variants += [((g,), None) for g in groups]
        for trainable, layer_rates in variants:
            for W_std, b_std in SCALES:
                for same in (True, False):
                    out.append({"arch": arch, "trainable": None if trainable is None else list(trainable),
                                "layer_rates": layer_rates, "W_std": W_std, "b_std": b_std, "same": same})
    return out


def inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2026)
    x1 = rng.normal(size=(9, 6))
    x1[3] = 0.0  # with b_std = 0: zero variance, the clipped branch of the moments
    x1[5] = x1[2]  # a repeated row: an off-diagonal entry at angle exactly 0
    x2 = np.concatenate([rng.normal(size=(4, 6)) * 2.0, x1[:1], np.zeros((1, 6))])
    return x1, x2


def compute(case: dict, x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    kfn = kernels.kernel_fn(case["arch"], W_std=case["W_std"], b_std=case["b_std"],
                            trainable=None if case["trainable"] is None else tuple(case["trainable"]),
                            layer_rates=case["layer_rates"])
    got = kfn(x1, None if case["same"] else x2, get=("nngp", "ntk"))
    return got.nngp, got.ntk


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else OUT
    x1, x2 = inputs()
    arrays = {"x1": x1, "x2": x2}
    all_cases = cases()
    for i, case in enumerate(all_cases):
        arrays[f"nngp_{i}"], arrays[f"ntk_{i}"] = compute(case, x1, x2)
    np.savez_compressed(out, cases=np.array(json.dumps(all_cases)), **arrays)
    print(f"wrote {len(all_cases)} cases to {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
