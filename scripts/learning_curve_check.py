"""Check the spectral learning-curve prediction (rbk.theory) against measured kernel ridge.

    PYTHONPATH=. python scripts/learning_curve_check.py [--archs 2nn,3resnet] [--kind ntk]
        [--ns 1000,3000,10000] [--seeds 0,1,2] [--ridges 1e-6,1e-4,1e-2,1e-1,1]
        [--results docs/learning_curves.jsonl] [--table docs/learning_curves_table.md]

Instance: the paper's (``d = 30``, ``k = 15``, degree-4 ``G``, ``alpha = 0.3``). For every
``(arch, N, seed)`` the data are those of an Experiment 1 sweep (``make_dataset(seed_keys(seed)[0],
...)``: ``n_val = max(1000, N // 5)``, ``n_test = 10000``) and the measurement is
``rbk.kernels.fit_predict`` (its automatic solver: dense Cholesky up to N = 20000, matrix-free
conjugate gradients above; ridge selected on validation among ``--ridges``).
The prediction is ``rbk.theory.grid_curve`` over the same ridge grid (and, for reference,
``optimal_curve``: the best ridge of all). Measured rows are appended to ``--results`` as
they finish (a rerun skips rows already there), so the script can be stopped and resumed.
The table (markdown) compares the mean over seeds with the prediction: ``rel`` = predicted /
measured - 1, and the seeds' standard error of the mean (``s.e.``), relative.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np


def _list(conv):
    return lambda s: [conv(v) for v in s.split(",") if v]


def measure(arch, kind, n, seed, ridges):
    from rbk import data, kernels, targets

    target = targets.paper_instance()
    ds = data.make_dataset(data.seed_keys(seed)[0], target, n)
    out = kernels.fit_predict(kernels.kernel_fn(arch), ds, ridges=ridges, get=kind)
    return {"arch": arch, "kind": kind, "n": n, "seed": seed, "ridges": list(ridges),
            "test_error": out["test_error"], "val_error": out["val_error"], "lam": out["lam"],
            "test_errors": out["test_errors"], "val_errors": out["val_errors"], "seconds": out["seconds"],
            "solver": out.get("solver"), "iterations": out.get("iterations")}  # fmt: skip


def predictions(arch, kind, ns, ridges):
    from rbk import kernels, targets, theory

    target = targets.paper_instance()
    power, _ = theory.target_power(target)
    spec = theory.kernel_spectrum(kernels.kernel_fn(arch), target.d, kind)
    g = theory.grid_curve(spec, power, ns, ridges)
    o = theory.optimal_curve(spec, power, ns)
    return {int(n): (float(e), float(r), float(eo), float(ro), list(map(float, ge)))
            for n, e, r, eo, ro, ge in zip(ns, g["test_error"], g["ridge"], o["test_error"], o["ridge"], g["errors"])}  # fmt: skip


def table(rows, ridges, kind) -> str:
    lines = [
        "| learner | N | seeds | measured (mean) | s.e. | predicted, grid | rel | predicted, best ridge | "
        "ridge picked (measured / predicted) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups = {}
    for r in rows:
        if r["kind"] == kind and r["ridges"] == list(ridges):
            groups.setdefault((r["arch"], r["n"]), []).append(r)
    for arch in sorted({a for a, _ in groups}, key=lambda a: ("3resnet", "3nn", "2nn").index(a)):
        ns = sorted(n for a, n in groups if a == arch)
        pred = predictions(arch, kind, ns, ridges)
        for n in ns:
            rs = groups[(arch, n)]
            m = np.array([r["test_error"] for r in rs])
            mean = float(m.mean())
            se = float(m.std(ddof=1) / math.sqrt(m.size)) if m.size > 1 else math.nan
            e, r, eo, ro, _ = pred[n]
            picked = "/".join(sorted({f"{x['lam']:g}" for x in rs}))
            lines.append(
                f"| {kind}-{arch} | {n:,} | {m.size} | {mean:.4f} | {100 * se / mean:.2f}% | {e:.4f} | "
                f"{100 * (e / mean - 1):+.2f}% | {eo:.4f} (ridge {ro:.3g}) | {picked} / {r:g} |"
            )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", type=_list(str), default=["2nn", "3resnet"])
    p.add_argument("--kind", default="ntk", choices=["ntk", "nngp"])
    p.add_argument("--ns", type=_list(int), default=[1000, 3000, 10000])
    p.add_argument("--seeds", type=_list(int), default=[0, 1, 2])
    p.add_argument("--ridges", type=_list(float), default=[1e-6, 1e-4, 1e-2, 1e-1, 1.0])
    p.add_argument("--results", type=Path, default=Path("docs/learning_curves.jsonl"))
    p.add_argument("--table", type=Path, default=None, help="also write the markdown table here")
    p.add_argument("--table-only", action="store_true", help="no new measurements: tabulate --results")
    a = p.parse_args(argv)
    rows = [json.loads(x) for x in a.results.read_text().splitlines() if x.strip()] if a.results.exists() else []
    done = {(r["arch"], r["kind"], r["n"], r["seed"], tuple(r["ridges"])) for r in rows}
    if not a.table_only:
        for n in a.ns:
            for arch in a.archs:
                for seed in a.seeds:
                    if (arch, a.kind, n, seed, tuple(a.ridges)) in done:
                        continue
                    t0 = time.time()
                    r = measure(arch, a.kind, n, seed, a.ridges)
                    rows.append(r)
                    a.results.parent.mkdir(parents=True, exist_ok=True)
                    with a.results.open("a") as fh:
                        fh.write(json.dumps(r) + "\n")
                    print(f"[{a.kind}-{arch} N={n} seed={seed}] test {r['test_error']:.4f} lam {r['lam']:g} "
                          f"({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
    txt = table(rows, a.ridges, a.kind)
    print(txt)
    if a.table:
        a.table.write_text(txt + "\n")


if __name__ == "__main__":
    main()
