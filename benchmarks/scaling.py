"""Scaling: time against N for the kernel fit (assembly ~N^2, solve ~N^3) and for SGD (~N x epochs).

    python benchmarks/scaling.py [--quick] [--repeats 5]

Kernel fit (rbk, this process): the exact ``2nn`` NTK of the paper instance (d=30, Boolean
cube, float64) assembled by ``rbk.kernels.kernel_fn('2nn')(x, None, get='ntk')``, and the
Cholesky solve of the regularised Gram (``scipy.linalg.cho_factor`` + ``cho_solve`` on a fresh
copy, the copy not timed), N in {1000, 2000, 4000, 8000, 16000} (quick: 500 ... 4000).

SGD (rbk's trainer, as ``sgd_throughput.py`` times it): ``3resnet`` width 256, S=1;
seconds per epoch (paired difference of the 1- and 3-epoch programs, evaluation excluded)
for N in {2000, 4000, 8000, 16000} (quick: 1000 ... 8000); and the whole call (evaluation
at the last epoch included, compilation excluded) for E in {1, 2, 4, 8} epochs at N=4000
(quick: N=2000).

Every point is the median of >= 5 repeats after a warm-up; the points of one series
alternate round-robin. Exponents: least squares on log-log over all points of a series
(small sizes carry fixed costs, so the exponents of the largest three points are printed
too).

JSON: ``kernel_assembly_exponent``, ``kernel_solve_exponent``, ``sgd_n_exponent``,
``sgd_epochs_exponent`` (all points).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import _common as C  # noqa: E402


def kernel_series(ns, repeats):
    import jax
    import scipy.linalg

    from rbk import data, kernels

    kfn = kernels.kernel_fn("2nn", W_std=math.sqrt(2.0), b_std=0.1)
    xs = {n: np.asarray(data.sample_inputs(jax.random.PRNGKey(n), n, 30, "cube"), np.float64) for n in ns}
    ys = {n: np.asarray(np.random.default_rng(n).standard_normal((n, 15))) for n in ns}
    asm, _ = C.alternate({n: (lambda n=n: kfn(xs[n], None, get="ntk")) for n in ns}, repeats)

    def solve_time(n):
        def measure(_call):
            k = kfn(xs[n], None, get="ntk")
            k[np.diag_indices(n)] += 1e-3 * float(np.mean(np.diag(k)))
            work = np.array(k, order="F")
            del k
            t0 = time.perf_counter()
            c = scipy.linalg.cho_factor(work, lower=True, overwrite_a=True, check_finite=False)
            scipy.linalg.cho_solve(c, ys[n], check_finite=False)
            return time.perf_counter() - t0
        return measure

    solve, _ = C.alternate({n: (lambda: None) for n in ns}, repeats, measure={n: solve_time(n) for n in ns})
    return asm, solve


def sgd_series(ns, epochs, n_fixed, repeats, width=256):
    import sgd_throughput as T

    runners = {n: T.RbkRunner(width, 1, n, 1, 3) for n in ns}
    per_epoch, _ = C.alternate({n: (lambda: None) for n in ns}, repeats, warmup=False,
                               measure={n: r.epoch_time for n, r in runners.items()})
    # whole calls for E epochs: the executables train() runs (compiled before the repeats)
    import jax
    import jax.numpy as jnp

    from rbk import data, models, train

    model = models.get_model("3resnet", width, T.D, T.K)
    ds, kt = T.make_dataset(n_fixed)
    dsb, keys = data.stack([ds]), jnp.stack([kt])
    exes = {}
    for e in epochs:
        cfg = train.config(e, record_epochs=[e])
        fn, args, *_ = train.prepare(model, dsb, keys, [T.LRS_GRID[0]], [T.WDS_GRID[0]], cfg)
        exes[e] = (fn.lower(*args).compile(), args)
    calls = {e: (lambda e=e: jax.block_until_ready(exes[e][0](*exes[e][1]))) for e in epochs}
    per_call, _ = C.alternate(calls, repeats)
    return per_epoch, per_call


def fit_rows(name, xs, times, unit):
    med = [C.median(times[x]) for x in xs]
    slope, pre = C.fit_exponent(xs, med)
    tail = C.fit_exponent(xs[-3:], med[-3:])[0] if len(xs) > 3 else slope
    rows = [[name, x, C.spread(times[x]), f"{m / med[0]:.3g}"] for x, m in zip(xs, med)]
    print(f"  {name}: exponent {slope:.2f} (all {len(xs)} points), {tail:.2f} (largest 3); "
          + ", ".join(f"{x}{unit}: {m:.3g}s" for x, m in zip(xs, med)), flush=True)
    return rows, slope, tail


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=C.MIN_REPEATS)
    ap.add_argument("--no-results", action="store_true")
    return ap.parse_args(argv)


def main(argv=None):
    a = parse(argv)
    info = C.machine_info()
    q = a.quick
    k_ns = [500, 1000, 2000, 4000] if q else [1000, 2000, 4000, 8000, 16000]
    s_ns = [1000, 2000, 4000, 8000] if q else [2000, 4000, 8000, 16000]
    epochs, n_fixed = [1, 2, 4, 8], (2000 if q else 4000)
    print(f"# scaling: {C.load_note(C.finish_info(dict(info)))}", flush=True)
    asm, solve = kernel_series(k_ns, a.repeats)
    per_epoch, per_call = sgd_series(s_ns, epochs, n_fixed, a.repeats)
    rows, fits = [], {}
    for key, name, xs, ts, unit in (
        ("kernel_assembly_exponent", "kernel assembly vs N", k_ns, asm, ""),
        ("kernel_solve_exponent", "Cholesky solve vs N", k_ns, solve, ""),
        ("sgd_n_exponent", "SGD s/epoch vs N (3resnet 256)", s_ns, per_epoch, ""),
        ("sgd_epochs_exponent", f"SGD whole call vs epochs (N={n_fixed})", epochs, per_call, " ep"),
    ):
        r, slope, tail = fit_rows(name, xs, ts, unit)
        rows += r
        fits[key] = (slope, tail)
    headline = {k: C.rounded(v[0], 3) for k, v in fits.items()}
    expect = {"kernel_assembly_exponent": 2, "kernel_solve_exponent": 3, "sgd_n_exponent": 1, "sgd_epochs_exponent": 1}
    fit_tab = C.md_table(["series", "exponent (all points)", "exponent (largest 3)", "expected"],
                         [[k, f"{s:.3f}", f"{t:.3f}", expect[k]] for k, (s, t) in fits.items()])
    body = "\n".join([
        f"Median of {a.repeats} alternating repeats after a warm-up; exponents: least squares on log-log.",
        "",
        C.md_table(["series", "size", "s median [min-max]", "relative to the first"], rows),
        "",
        fit_tab,
    ])
    if not a.no_results:
        C.append_results("scaling" + (" --quick" if q else ""), info, body, headline)
    print(body)
    C.emit(headline)
    return headline


if __name__ == "__main__":
    main()
