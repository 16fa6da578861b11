"""Roofline: the machine's fp32 matmul rate and the fraction of it each SGD trainer reaches.

    python benchmarks/roofline.py [--quick] [--widths 256,512,1024] [--repeats 5]

Peak: large square fp32 matmuls, sizes 1024, 2048, 3072, 4096 (quick: 1024, 2048), with numpy
(its BLAS) and with jax (XLA:CPU); each size's rate is the median of >= 5 repeats after a
warm-up, and the peak is the best over sizes of each library (both reported) and overall.

Step-shape rate: the same libraries on exactly the matrix products of one SGD step of
``3resnet`` at batch 50 (forward ``x W``, ``a1 U``, ``h A``; backward ``g A^T``, ``h^T g``,
``g2 U^T``, ``a1^T g2``, ``x^T g1``), chained so nothing is hoisted: what a batch-50 trainer
could reach if it did nothing but its matmuls. The gap between this and the square peak is
the cost of batch 50 on this CPU, not of any trainer.

Trainers: rbk S=1, rbk S=16 (aggregate) and the PyTorch loop of ``sgd_throughput.py``
(same measurement: paired difference, competitors alternating), counting
``6 (d m + m m + m k)`` FLOPs per example (``rbk.models.flops_per_example``).

JSON: ``peak_gflops`` (best), ``peak_numpy``, ``peak_jax``, ``peak_one_thread`` (numpy, one
BLAS thread, in a subprocess), ``step_dots_gflops_512`` (best of
numpy/jax on the step's products at width 512), ``rbk_fraction_512`` (S=1),
``rbk16_fraction_512`` (S=16 aggregate), ``torch_fraction_512`` (the faster of PyTorch with
every core and with one thread, as in ``sgd_throughput.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
import sgd_throughput as T  # noqa: E402

D, K, BATCH = T.D, T.K, T.BATCH


_ONE_THREAD = r"""
import sys, time, statistics, numpy as np
rng = np.random.default_rng(0)
best = 0.0
for n in map(int, sys.argv[1:]):
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    ts = []
    for _ in range(5):
        t0 = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t0)
    best = max(best, 2.0 * n**3 / statistics.median(ts) / 1e9)
print(best)
"""


def one_thread_peak(sizes=(1024, 2048)) -> float | None:
    """numpy's fp32 square-matmul GFLOP/s on one thread (a subprocess with the BLAS limited to 1)."""
    import os
    import subprocess

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", _ONE_THREAD, *map(str, sizes)], capture_output=True, text=True, env=env)
    try:
        return float(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def step_shapes(width: int, d: int = D, k: int = K, b: int = BATCH):
    """The (m, k, n) of every matrix product of one SGD step of 3resnet (forward, then backward)."""
    m = width
    return [(b, d, m), (b, m, m), (b, m, k),            # x W, a1 U, h A
            (b, k, m), (m, b, k),                       # g A^T, h^T g
            (b, m, m), (m, b, m), (d, b, m)]            # g2 U^T, a1^T g2, x^T g1


def step_dots_rate(width: int, repeats: int = C.MIN_REPEATS, steps: int = 200) -> dict:
    """GFLOP/s of numpy and jax on the step's products (``steps`` chained steps per timing)."""
    import jax
    import jax.numpy as jnp

    shapes = step_shapes(width)
    rng = np.random.default_rng(1)
    mats = [(rng.standard_normal((m, kk), dtype=np.float32) * 0.01, rng.standard_normal((kk, n), dtype=np.float32) * 0.01)
            for m, kk, n in shapes]
    flops = steps * sum(2 * m * kk * n for m, kk, n in shapes)

    def np_loop():
        s = np.float32(0)
        for _ in range(steps):
            for a, bb in mats:
                s += (a @ bb)[0, 0]  # numpy cannot hoist; the scalar read is negligible
        return s

    jm = [(jnp.asarray(a), jnp.asarray(bb)) for a, bb in mats]

    @jax.jit
    def jx_loop(ms):
        def body(i, c):  # every product depends on the carry: nothing is loop-invariant
            return c + sum(jnp.sum((a + c * 1e-30) @ bb) for a, bb in ms) * 1e-30
        return jax.lax.fori_loop(0, steps, body, jnp.float32(0))

    times, _ = C.alternate({"numpy": np_loop, "jax": lambda: jx_loop(jm)}, repeats)
    out = {lib: flops / C.median(ts) / 1e9 for lib, ts in times.items()}
    out["best"] = max(out.values())
    return out


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="peak on 1024/2048 only, trainers at width 512, N=2000")
    ap.add_argument("--widths", default=None, help="trainer widths (default 256,512,1024; quick 512)")
    ap.add_argument("--n", type=int, default=None, help="training-set size (default 10000; quick 2000)")
    ap.add_argument("--repeats", type=int, default=C.MIN_REPEATS)
    ap.add_argument("--no-results", action="store_true")
    C.add_cpu_devices_option(ap)
    a = ap.parse_args(argv)
    a.widths = [int(w) for w in (a.widths or ("512" if a.quick else "256,512,1024")).split(",")]
    a.n = a.n or (2000 if a.quick else 10000)
    return a


def main(argv=None):
    a = parse(argv)
    C.use_cpu_devices(a.cpu_devices)  # before any JAX computation, as the rbk command
    info = C.machine_info()
    from rbk import models

    print(f"# roofline: {C.load_note(C.finish_info(dict(info)))}", flush=True)
    peak = C.matmul_peak(a.quick, a.repeats)
    for (lib, n), v in sorted(peak["table"].items()):
        print(f"  {lib:6s} {n:5d}^3 fp32: {v:7.1f} GFLOP/s", flush=True)
    print(f"  peak: numpy {peak['numpy']:.1f}, jax {peak['jax']:.1f} -> {peak['best']:.1f} GFLOP/s", flush=True)
    one = one_thread_peak()
    print(f"  one thread (numpy): {one:.1f} GFLOP/s" if one else "  one thread: not measured", flush=True)
    rows, fr = [], {}
    for width in a.widths:
        sd = step_dots_rate(width, a.repeats)
        fpe = models.flops_per_example(models.get_model("3resnet", width, D, K))
        runners = {"rbk S=1": T.RbkRunner(width, 1, a.n, 1, 3), "rbk S=16": T.RbkRunner(width, 16, a.n, 1, 3),
                   "torch": T.TorchRunner(width, a.n, 2)}
        if C.cores() > 1:
            runners["torch 1 thread"] = T.TorchRunner(width, a.n, 2, threads=1)
        times, _ = C.alternate({k: (lambda: None) for k in runners}, a.repeats, warmup=False,
                               measure={k: r.epoch_time for k, r in runners.items()})
        print(f"  width {width}: step products numpy {sd['numpy']:.1f}, jax {sd['jax']:.1f} GFLOP/s", flush=True)
        for name, ts in times.items():
            r = runners[name]
            S = getattr(r, "S", 1)
            gf = S * r.examples / C.median(ts) * fpe / 1e9
            fr[(width, name)] = gf / peak["best"]
            rows.append([width, name, round(S * r.examples / C.median(ts)), gf, gf / peak["best"], gf / sd["best"]])
            print(f"  width {width} {name:9s} {gf:6.1f} GFLOP/s = {gf / peak['best']:.2f} of peak, {gf / sd['best']:.2f} of the step-products rate", flush=True)
        for r in runners.values():
            if isinstance(r, T.TorchRunner):
                r.close()
        fr[(width, "torch best")] = max(fr[(width, t)] for t in ("torch", "torch 1 thread") if (width, t) in fr)
        rows.append([width, "step products only (numpy / jax)", "-", sd["best"], sd["best"] / peak["best"], 1.0])
        rows[-1][1] = f"step products only (numpy {sd['numpy']:.1f} / jax {sd['jax']:.1f})"
        fr[(width, "dots")] = sd["best"]
    w0 = 512 if 512 in a.widths else a.widths[0]
    headline = {
        "peak_gflops": C.rounded(peak["best"]),
        "peak_numpy": C.rounded(peak["numpy"]),
        "peak_jax": C.rounded(peak["jax"]),
        "peak_one_thread": C.rounded(one) if one else None,
        "step_dots_gflops_512": C.rounded(fr[(w0, "dots")]),
        "rbk_fraction_512": C.rounded(fr[(w0, "rbk S=1")], 3),
        "rbk16_fraction_512": C.rounded(fr[(w0, "rbk S=16")], 3),
        "torch_fraction_512": C.rounded(fr[(w0, "torch best")], 3),
    }
    peak_rows = [[lib, n, v] for (lib, n), v in sorted(peak["table"].items())]
    body = "\n".join([
        "fp32 square matmul, GFLOP/s (median of repeats, numpy and jax alternating):",
        "",
        C.md_table(["library", "n", "GFLOP/s"], peak_rows),
        "",
        f"Peak: numpy {peak['numpy']:.1f}, jax {peak['jax']:.1f}, best {peak['best']:.1f} GFLOP/s"
        + (f"; numpy on one thread {one:.1f} GFLOP/s (for scale: a trainer whose step runs on one core at a time is capped near it)." if one else "."),
        "",
        f"Trainers (3resnet, batch {BATCH}, N={a.n}, FLOPs 6(dm+mm+mk) per example; S=16 aggregate):",
        "",
        C.md_table(["width", "trainer", "ex/s (aggregate)", "GFLOP/s", "fraction of peak", "fraction of step-products rate"], rows),
    ])
    if not a.no_results:
        C.append_results("roofline" + (" --quick" if a.quick else ""), info, body, headline)
    print(body)
    C.emit(headline)
    return headline


if __name__ == "__main__":
    main()
