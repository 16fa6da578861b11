"""Kernel fit: rbk's exact NTK assembly against neural-tangents', and the shared Cholesky solve.

    python benchmarks/kernel_fit.py [--quick] [--ns 1000,5000,20000] [--repeats 5]
                                    [--nt-batch auto] [--ridge 1e-3]
    python benchmarks/kernel_fit.py --arch 3resnet --n 20000,50000,100000     (matrix-free, below)

Instance: the paper's, ``x`` uniform on ``{-1, 1}^30``, labels ``y = F(x) + 0.3 G(F(x))``
(``k = 15``), drawn once per N by rbk and handed to both sides. Kernel: the infinite-width
NTK of ``2nn`` (``W_std = sqrt 2``, ``b_std = 0.1``, no output bias) in float64 on both sides:

* rbk: ``rbk.kernels.kernel_fn('2nn', W_std, b_std)(x, None, get='ntk')`` (this venv);
* neural-tangents 0.6.5 (its own venv, jax 0.5.3, ``jax_enable_x64``):
  ``stax.serial(Dense(512, W_std, b_std), Relu(), Dense(1, W_std, b_std=None))``'s
  ``kernel_fn(x, None, 'ntk')``, batched by ``nt.batch(kernel_fn, batch_size=B,
  store_on_device=False)`` (``--nt-batch``: ``auto`` takes the largest of 5000, 4000, 2500,
  2000, 1000 dividing N, ``0`` no batching).

The nt venv is the one ``scripts/nt_env.sh`` builds or reuses (``RBK_NT_VENV``, default
``~/.cache/rbk/nt-venv``); without that script, ``$RBK_NT_VENV/bin/python`` is used as is,
and without either the nt side is skipped (reported, JSON ``null``).

Each side is its own worker process (this file, ``--worker``), kept alive and driven over a
pipe so that the two alternate: a warm-up assembly (compilation included; reported apart),
then ``--repeats`` rounds, each one assembly per side. The Gram is freed between
assemblies. Then each side runs one fit (assembly + ridge on the diagonal + in-place
``scipy.linalg.cho_factor`` + ``cho_solve`` on the 15 outputs) and reports its peak resident
memory (``VmHWM``) after the assembly rounds and after the fit. Finally the rbk worker times
the shared solve (``cho_factor`` + ``cho_solve`` on a fresh copy of the regularised Gram,
median of ``--repeats``; the copy is not timed). Both sides' Grams and fitted coefficients
are compared (normwise relative difference).

JSON: ``assembly_ratio_20000`` (nt / rbk assembly time at the largest N; > 1: rbk faster),
``rbk_assembly_s``, ``nt_assembly_s``, ``solve_s``, ``rbk_peak_gb``, ``nt_peak_gb`` (fit
peaks), ``memory_ratio`` (nt / rbk fit peak), all at the largest N.

Matrix-free exact kernel ridge (``--n``)::

    python benchmarks/kernel_fit.py --arch 3resnet --n 100000 [--get ntk] [--ridges 1e-3,1e-1]
                                    [--seed 0] [--dense-max 20000] [--blocks 16384]

For each N of ``--n`` (comma-separated), one fit of ``rbk.kernels.fit_predict(..., solver='cg')``
on the paper instance as Experiment 1 draws it (``make_dataset(seed_keys(seed)[0], paper_instance(),
N)``: validation ``max(1000, N/5)``, test 10000), in a fresh worker process whose ``VmHWM`` is
the fit's peak memory. Up to ``--dense-max`` the dense Cholesky path runs on the same data in
another worker, and the predictions are compared (max over test points of the relative
difference, per point over the 15 outputs). Per-iteration cost: the median wall time of the
PCG iterations (each one pass over K for the stacked directions of the ridges still running;
the median leaves out the few that compiled), set against what the pass's float32 block products (``2 N^2 m`` FLOPs,
``m`` = 15 x the ridges still running, averaged over the passes) allow at the machine's fp32
matmul peak measured in the same run
(``_common.matmul_peak``), and against the bytes of its ``(B, C)`` float32 blocks (written
and read once, ``8 N^2``) at the copy bandwidth measured in the same run: ``roofline_ratio`` =
max(FLOP time, byte time) / measured. The JSON line holds the largest N's ``n``, ``fit_s``,
``peak_rss_gb``, ``iterations`` (per ridge), ``test_error``, ``residuals``, ``per_iter_s`` and
``roofline_ratio`` (and, with a dense run, ``dense_fit_s`` and ``max_rel_diff``). ``--blocks N``
first times one pass over K at that N for the block sizes of :data:`BLOCKS`, float32 and
float64, alternating (the table behind ``rbk.kernels.CG_BLOCK``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import _common as C  # noqa: E402

D, K = 30, 15
W_STD, B_STD = math.sqrt(2.0), 0.1
NT_WIDTH = 512  # finite width of the stax layers; the infinite-width kernel_fn ignores it


# ----------------------------------------------------------------------------- the nt environment


def nt_python() -> tuple[str | None, str]:
    """The nt venv's python and how it was found (``scripts/nt_env.sh`` if present)."""
    venv = os.environ.get("RBK_NT_VENV", os.path.expanduser("~/.cache/rbk/nt-venv"))
    script = C.REPO / "scripts" / "nt_env.sh"
    if script.exists():
        r = subprocess.run(["bash", str(script)], capture_output=True, text=True)
        lines = r.stdout.strip().splitlines()
        if r.returncode == 0 and lines and os.access(lines[-1], os.X_OK):
            return lines[-1], f"scripts/nt_env.sh ({lines[0] if len(lines) > 1 else 'ok'})"
        return None, "scripts/nt_env.sh failed: " + (lines[-1] if lines else r.stderr.strip()[-200:])
    py = os.path.join(venv, "bin", "python")
    if os.access(py, os.X_OK):
        return py, f"{venv} (scripts/nt_env.sh not found; used as is)"
    return None, f"no nt environment ({venv} has no python; set RBK_NT_VENV)"


def nt_batch_size(n: int, spec: str) -> int:
    if spec != "auto":
        return int(spec)
    return next((b for b in (5000, 4000, 2500, 2000, 1000) if n % b == 0 and b < n), 0)


# ----------------------------------------------------------------------------- the workers


class Worker:
    """A kernel worker process driven by JSON lines."""

    def __init__(self, python: str, side: str, data: str, nt_batch: int, ridge: float, env=None):
        cmd = [python, os.path.abspath(__file__), "--worker", side, data, str(nt_batch), repr(ridge)]
        env = dict(os.environ if env is None else env)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        env.setdefault("JAX_PLATFORMS", "cpu")
        env["PYTHONPATH"] = str(C.REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self.side = side
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env)
        self.hello = self.ask(None)

    def ask(self, cmd: str | None) -> dict:
        if cmd is not None:
            self.proc.stdin.write(cmd + "\n")
            self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.side} worker died (exit {self.proc.wait()})")
            if line.startswith("{"):
                return json.loads(line)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=120)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


def worker(side: str, data_path: str, nt_batch: str, ridge: str) -> None:
    """``side`` in {'rbk', 'nt'}: assemble / fit / solve on command, one JSON line per answer."""
    import scipy.linalg

    z = np.load(data_path)
    x, y = z["x"].astype(np.float64), z["y"].astype(np.float64)
    n = x.shape[0]
    ridge = float(ridge)
    if side == "rbk":
        from rbk import kernels

        kfn = kernels.kernel_fn("2nn", W_std=W_STD, b_std=B_STD)

        def assemble():
            return kfn(x, None, get="ntk")

        import jax
        versions = {"jax": jax.__version__}
    else:
        import jax

        jax.config.update("jax_enable_x64", True)
        import neural_tangents as nt
        from neural_tangents import stax

        _, _, nt_kfn = stax.serial(stax.Dense(NT_WIDTH, W_std=W_STD, b_std=B_STD), stax.Relu(),
                                   stax.Dense(1, W_std=W_STD, b_std=None))
        b = int(nt_batch)
        kf = nt.batch(nt_kfn, batch_size=b, store_on_device=False) if b else jax.jit(nt_kfn, static_argnames="get")

        def assemble():
            k = kf(x, None, "ntk") if b else kf(x, None, get="ntk")
            k = np.asarray(k)
            if k.dtype != np.float64:
                raise RuntimeError(f"neural-tangents returned {k.dtype}")
            return k

        versions = {"jax": jax.__version__, "neural-tangents": nt.__version__}

    def say(**kw):
        print(json.dumps(kw), flush=True)

    say(ready=True, side=side, n=n, versions=versions, rss_mb=C.peak_rss_mb())
    sample = np.linspace(0, n - 1, min(n, 200)).astype(int)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "assemble":
            t0 = time.perf_counter()
            k = assemble()
            t = time.perf_counter() - t0
            if len(cmd) > 1:  # keep a strided sample of the Gram for the comparison
                np.save(cmd[1], k[np.ix_(sample, sample)])
            del k
            say(t=t, peak_mb=C.peak_rss_mb())
        elif cmd[0] == "fit":  # the pipeline as a user runs it, for the peak memory: K consumed in place
            t0 = time.perf_counter()
            k = assemble()
            if not k.flags.writeable:  # a read-only view of a jax buffer: scipy in place needs a copy
                k = np.array(k)
            t1 = time.perf_counter()
            scale = float(np.mean(np.diag(k)))
            k[np.diag_indices(n)] += ridge * scale
            # K is symmetric: its transpose is a Fortran-ordered view, which LAPACK factors in
            # place (a C-ordered array would be copied first: one more Gram in memory)
            c = scipy.linalg.cho_factor(k.T, lower=True, overwrite_a=True, check_finite=False)
            alpha = scipy.linalg.cho_solve(c, y, check_finite=False)
            t2 = time.perf_counter()
            if len(cmd) > 1:
                np.save(cmd[1], alpha)
            del k, c
            say(assemble_s=t1 - t0, solve_s=t2 - t1, peak_mb=C.peak_rss_mb())
        elif cmd[0] == "solve":  # the shared solve, timed on fresh copies of one regularised Gram
            reps = int(cmd[1])
            k = np.array(assemble())
            k[np.diag_indices(n)] += ridge * float(np.mean(np.diag(k)))
            work = np.empty_like(k, order="F")
            ts = []
            for _ in range(reps + 1):  # + warm-up
                np.copyto(work, k)
                t0 = time.perf_counter()
                c = scipy.linalg.cho_factor(work, lower=True, overwrite_a=True, check_finite=False)
                scipy.linalg.cho_solve(c, y, check_finite=False)
                ts.append(time.perf_counter() - t0)
            del k, work, c
            say(first=ts[0], ts=ts[1:])


# ----------------------------------------------------------------------------- driver


def fit_worker(n: str, arch: str, get: str, ridges: str, seed: str, solver: str, pred_path: str) -> None:
    """One exact kernel ridge fit (``solver`` 'cg' or 'dense') on Experiment 1's data; one JSON line."""
    from rbk import data, kernels, targets

    ds = data.make_dataset(data.seed_keys(int(seed))[0], targets.paper_instance(), int(n))
    kfn = kernels.kernel_fn(arch, W_std=W_STD, b_std=B_STD)
    lams = tuple(float(v) for v in ridges.split(","))
    base = C.peak_rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    out = kernels.fit_predict(kfn, ds, ridges=lams, get=get, solver=solver, return_predictions=True)
    fit_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    np.save(pred_path, out["pred_test"])
    keep = ("test_error", "val_error", "lam", "test_errors", "val_errors", "iterations", "residuals", "cg")
    print(json.dumps({"n": int(n), "solver": solver, "fit_s": fit_s, "cpu_s": cpu_s, "peak_rss_gb": C.peak_rss_mb() / 1024,
                      "rss_before_gb": base / 1024, **{k: out[k] for k in keep if k in out}}), flush=True)


def bandwidth_gbs(mb: int = 512, repeats: int = C.MIN_REPEATS) -> float:
    """Copy bandwidth (bytes read + written per second, GB/s) of a ``mb`` MiB numpy array."""
    a = np.ones(mb * 2**18, np.float32)
    b = np.empty_like(a)
    times, _ = C.alternate({"copy": lambda: np.copyto(b, a)}, repeats)
    return 2 * a.nbytes / C.median(times["copy"]) / 1e9


BLOCKS = ((128, 4096), (256, 2048), (256, 4096), (256, 8192), (512, 4096), (1024, 1024), (2048, 2048))


def block_table(n: int, m: int, repeats: int) -> list[list]:
    """One pass over K (``n`` cube points, ``m`` columns) at each ``(B, C)`` of :data:`BLOCKS`, float32
    (the iterations) and float64 (refinement / predictions): ns per kernel entry, competitors alternating."""
    import jax
    import jax.numpy as jnp

    from rbk import kernels

    x = np.random.default_rng(0).choice([-1.0, 1.0], (n, D))
    kf = kernels.kernel_fn("3resnet", W_std=W_STD, b_std=B_STD)
    calls = {}
    with kernels.x64():
        v = jnp.asarray(np.random.default_rng(1).standard_normal((n, m)))
        for bc in BLOCKS:
            op = kernels.KernelOperator(kf, "ntk", x, bc)  # blocks larger than n shrink to n's power of two
            for f32 in (True, False):
                calls.setdefault(((op.B, op.C), f32), lambda op=op, f32=f32: op.matvec(v, f32=f32))
        times, first = C.alternate(calls, repeats)
    jax.clear_caches()
    return [[f"{b} x {c}", "float32" if f32 else "float64", f"{C.median(ts) * 1e3:.0f}",
             f"{C.median(ts) / n / n * 1e9:.2f}", f"{C.median(ts) / (n * n / (b * c)) * 1e3:.2f}"]
            for ((b, c), f32), ts in times.items()]


def run_fit(n: int, a, solver: str, pred_path: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(C.REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    cmd = [sys.executable, os.path.abspath(__file__), "--fit-worker", str(n), a.arch, a.get, a.ridges, str(a.seed),
           solver, pred_path]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        raise RuntimeError(f"{solver} fit at N={n} failed (exit {r.returncode}): {r.stderr.strip()[-2000:]}")
    return json.loads(lines[-1])


def matrix_free(a) -> dict:
    """The ``--n`` runs: matrix-free fits, the dense path up to ``--dense-max``, per-iteration roofline."""
    info = C.machine_info()
    print(f"# kernel_fit matrix-free: {a.arch} {a.get}, N {a.ns}, ridges {a.ridges}; {C.load_note(info)}", flush=True)
    peak = C.matmul_peak(quick=True)["best"]
    bw = bandwidth_gbs()
    print(f"  fp32 matmul peak {peak:.1f} GFLOP/s, copy bandwidth {bw:.1f} GB/s (this run)", flush=True)
    blocks = block_table(a.blocks, len(a.ridges.split(",")) * K, a.repeats) if a.blocks else []
    for r in blocks:
        print(f"  pass at N={a.blocks}, B x C = {r[0]}, {r[1]}: {r[2]} ms, {r[3]} ns per entry, {r[4]} ms per block", flush=True)
    tmp = tempfile.TemporaryDirectory(prefix="rbk-cg-")
    rows, head = [], {}
    for n in a.ns:
        cg = run_fit(n, a, "cg", os.path.join(tmp.name, f"cg{n}.npy"))
        info_cg = cg["cg"]
        passes = max(info_cg["passes"], 1)
        per_iter = info_cg["iteration_s_median"]  # the median leaves out the iterations that compiled
        # a pass carries the directions of the ridges still running: FLOPs from the column-passes
        t_flop = 2.0 * n * n * K * sum(info_cg["iterations"]) / (peak * 1e9) / passes
        t_byte = 8.0 * n * n / (bw * 1e9)
        ratio = max(t_flop, t_byte) / per_iter
        head = {"n": n, "fit_s": C.rounded(cg["fit_s"]), "cpu_s": C.rounded(cg.get("cpu_s")),
                "peak_rss_gb": C.rounded(cg["peak_rss_gb"], 3),
                "iterations": info_cg["iterations"], "test_error": C.rounded(cg["test_error"], 6),
                "residuals": [C.rounded(v, 3) for v in info_cg["residuals"]], "lam": cg["lam"],
                "per_iter_s": C.rounded(per_iter), "roofline_ratio": C.rounded(ratio, 3),
                "preconditioner_s": C.rounded(info_cg["preconditioner_s"]), "rank": info_cg["rank"]}
        row = [n, "cg", f"{cg['fit_s']:.1f}", f"{cg['peak_rss_gb']:.2f}", str(info_cg["iterations"]),
               f"{info_cg['passes']} + {info_cg['float64_passes']} f64", f"{per_iter:.2f}", f"{ratio:.2f}",
               f"{cg['test_error']:.4f}", "-"]
        print(f"  N={n:6d} cg: fit {cg['fit_s']:.1f}s, peak {cg['peak_rss_gb']:.2f} GB, iterations {info_cg['iterations']},"
              f" residuals {info_cg['residuals']}, per iteration {per_iter:.2f}s (FLOP bound {t_flop:.2f}s, byte bound"
              f" {t_byte:.2f}s), test error {cg['test_error']:.5f}", flush=True)
        if n <= a.dense_max:
            dn = run_fit(n, a, "dense", os.path.join(tmp.name, f"dense{n}.npy"))
            p, q = np.load(os.path.join(tmp.name, f"cg{n}.npy")), np.load(os.path.join(tmp.name, f"dense{n}.npy"))
            diff = float(np.max(np.linalg.norm(p - q, axis=1) / np.linalg.norm(q, axis=1)))
            head.update(dense_fit_s=C.rounded(dn["fit_s"]), dense_peak_rss_gb=C.rounded(dn["peak_rss_gb"], 3),
                        max_rel_diff=C.rounded(diff, 3), dense_test_error=C.rounded(dn["test_error"], 6))
            row[-1] = f"{diff:.2g}"
            rows.append(row)
            rows.append([n, "dense (Cholesky)", f"{dn['fit_s']:.1f}", f"{dn['peak_rss_gb']:.2f}", "-", "-", "-", "-",
                         f"{dn['test_error']:.4f}", "-"])
            print(f"  N={n:6d} dense: fit {dn['fit_s']:.1f}s, peak {dn['peak_rss_gb']:.2f} GB, test error"
                  f" {dn['test_error']:.5f}; max relative difference of the test predictions {diff:.2e}", flush=True)
        else:
            rows.append(row)
    tmp.cleanup()
    body = "\n".join([
        f"Exact kernel ridge, {a.get}-{a.arch} (W_std=sqrt2, b_std=0.1), paper instance (d={D}, k={K}), seed {a.seed},"
        f" validation max(1000, N/5), test 10000; relative ridges {a.ridges} chosen on validation. Matrix-free: PCG,"
        " Nystrom preconditioner, cube popcount/table blocks, float32 blocks with float64 refinement"
        " (rbk.kernels.fit_predict(solver='cg')); each fit in its own process (peak = its VmHWM).",
        f"Roofline: fp32 matmul peak {peak:.1f} GFLOP/s and copy bandwidth {bw:.1f} GB/s measured in this run;"
        " ratio = max(2 N^2 m / peak, 8 N^2 / bandwidth) / measured time per iteration (1 = at the bound;"
        " m = 15 x ridges still running, averaged over the passes).",
        "",
        C.md_table(["N", "solver", "fit s", "peak GB", "iterations per ridge", "passes over K", "s per iteration",
                    "roofline ratio", "test error", "max rel. diff vs dense"], rows),
    ] + ([
        "",
        f"One pass over K at N = {a.blocks} (cube points, {len(a.ridges.split(',')) * K} columns), by block size"
        f" (median of {a.repeats}, block sizes alternating):",
        "",
        C.md_table(["B x C", "precision", "pass ms", "ns per entry", "ms per block"], blocks),
    ] if blocks else []))
    if not a.no_results:
        C.append_results(f"kernel_fit --arch {a.arch} --n {','.join(map(str, a.ns))}", info, body, head)
    print(body)
    C.emit(head)
    return head


def paper_data(n: int, seed: int, path: str) -> None:
    import jax

    from rbk import data, targets

    x = data.sample_inputs(jax.random.PRNGKey(seed), n, D, "cube")
    y = targets.paper_instance()(x)
    np.savez(path, x=np.asarray(x, np.float64), y=np.asarray(y, np.float64))


def rel(a, b) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="N in {1000, 5000}")
    ap.add_argument("--ns", default=None, help="comma-separated N (default 1000,5000,20000; quick 1000,5000)")
    ap.add_argument("--repeats", type=int, default=C.MIN_REPEATS)
    ap.add_argument("--nt-batch", default="auto", help="nt.batch batch_size: auto, 0 (none) or a divisor of every N")
    ap.add_argument("--ridge", type=float, default=1e-3, help="ridge, relative to mean(diag K)")
    ap.add_argument("--no-nt", action="store_true")
    ap.add_argument("--no-results", action="store_true")
    ap.add_argument("--n", default=None, help="matrix-free kernel ridge at these N (comma-separated), see the docstring")
    ap.add_argument("--arch", default="3resnet", choices=("2nn", "3nn", "3resnet"), help="with --n: the architecture")
    ap.add_argument("--get", default="ntk", choices=("ntk", "nngp"), help="with --n: the kernel")
    ap.add_argument("--ridges", default="1e-3,1e-1", help="with --n: relative ridges (Experiment 1's quick grid)")
    ap.add_argument("--seed", type=int, default=0, help="with --n: the data seed")
    ap.add_argument("--dense-max", type=int, default=20000, help="with --n: also run the dense path up to this N")
    ap.add_argument("--blocks", type=int, default=0,
                    help="with --n: first time one pass over K at this N for several block sizes B x C (0: skip)")
    a = ap.parse_args(argv)
    if a.n is not None:
        a.ns = [int(v) for v in a.n.split(",")]
        return a
    a.ns = [int(v) for v in (a.ns or ("1000,5000" if a.quick else "1000,5000,20000")).split(",")]
    a.repeats = max(a.repeats, C.MIN_REPEATS)
    return a


def main(argv=None):
    a = parse(argv)
    if a.n is not None:
        return matrix_free(a)
    info = C.machine_info()
    py_nt, how = (None, "skipped (--no-nt)") if a.no_nt else nt_python()
    print(f"# kernel_fit: N {a.ns}; nt: {py_nt or '-'} via {how}; {C.load_note(C.finish_info(dict(info)))}", flush=True)
    rows, out = [], {}
    tmp = tempfile.TemporaryDirectory(prefix="rbk-kernel-")
    for n in a.ns:
        path = os.path.join(tmp.name, f"data{n}.npz")
        paper_data(n, n, path)
        nb = nt_batch_size(n, a.nt_batch)
        workers = {"rbk": Worker(sys.executable, "rbk", path, 0, a.ridge)}
        if py_nt:
            workers["nt"] = Worker(py_nt, "nt", path, nb, a.ridge)
        first, times, samples = {}, {s: [] for s in workers}, {}
        for s, w in workers.items():  # warm-up: compilation included
            samples[s] = os.path.join(tmp.name, f"{s}{n}.npy")
            first[s] = w.ask(f"assemble {samples[s]}")["t"]
        for r in range(a.repeats):  # alternate, the order rotated each round
            order = list(workers) if r % 2 == 0 else list(workers)[::-1]
            for s in order:
                times[s].append(workers[s].ask("assemble")["t"])
        peak_asm = {s: w.ask("assemble")["peak_mb"] for s, w in workers.items()}
        fits = {}
        for s, w in workers.items():
            fits[s] = w.ask(f"fit {os.path.join(tmp.name, f'alpha-{s}{n}.npy')}")
        solve = workers["rbk"].ask(f"solve {a.repeats}")
        for w in workers.values():
            w.close()
        solve_s = C.median(solve["ts"])
        agree_k = rel(np.load(samples["rbk"]), np.load(samples["nt"])) if "nt" in workers else float("nan")
        agree_a = (rel(np.load(os.path.join(tmp.name, f"alpha-rbk{n}.npy")), np.load(os.path.join(tmp.name, f"alpha-nt{n}.npy")))
                   if "nt" in workers else float("nan"))
        for s in workers:
            asm = C.median(times[s])
            out[(n, s)] = dict(asm=asm, peak=fits[s]["peak_mb"], peak_asm=peak_asm[s])
            rows.append([n, s, f"{first[s]:.3g}", C.spread(times[s]), f"{asm + solve_s:.4g}",
                         f"{peak_asm[s] / 1024:.2f}", f"{fits[s]['peak_mb'] / 1024:.2f}",
                         f"B={nb}" if s == "nt" else "block 2048, upper half"])
            print(f"  N={n:6d} {s:4s}: first {first[s]:.2f}s, assembly {C.spread(times[s])}s, + solve {solve_s:.2f}s = {asm + solve_s:.2f}s;"
                  f" peak {peak_asm[s] / 1024:.2f} GB (assembly), {fits[s]['peak_mb'] / 1024:.2f} GB (fit)", flush=True)
        out[(n, "solve")] = solve_s
        rows.append([n, "shared solve (cho_factor + cho_solve)", f"{solve['first']:.3g}", C.spread(solve["ts"]), "-", "-", "-",
                     f"ridge {a.ridge:g} x mean diag"])
        print(f"  N={n:6d} solve: {C.spread(solve['ts'])}s; rbk vs nt: Gram {agree_k:.2e}, coefficients {agree_a:.2e} (normwise rel.)", flush=True)
        out[(n, "agree")] = (agree_k, agree_a)
    tmp.cleanup()
    n0 = max(a.ns)
    have_nt = (n0, "nt") in out

    def g(s, key):
        return out[(n0, s)][key] if (n0, s) in out else None

    headline = {
        f"assembly_ratio_{n0}": C.rounded(g("nt", "asm") / g("rbk", "asm"), 3) if have_nt else None,
        "rbk_assembly_s": C.rounded(g("rbk", "asm")),
        "nt_assembly_s": C.rounded(g("nt", "asm")) if have_nt else None,
        "solve_s": C.rounded(out[(n0, "solve")]),
        "rbk_peak_gb": C.rounded(g("rbk", "peak") / 1024, 3),
        "nt_peak_gb": C.rounded(g("nt", "peak") / 1024, 3) if have_nt else None,
        "memory_ratio": C.rounded(g("nt", "peak") / g("rbk", "peak"), 3) if have_nt else None,
    }
    agree = "; ".join(f"N={n}: Gram {out[(n, 'agree')][0]:.1e}, coefficients {out[(n, 'agree')][1]:.1e}" for n in a.ns)
    body = "\n".join([
        f"2nn NTK (W_std=sqrt2, b_std=0.1), paper instance (d={D}, Boolean cube, k={K}), float64 both sides; nt via {how}.",
        f"Assembly: median of {a.repeats} alternating rounds after a warm-up ('first' includes compilation); the solve is shared"
        f" (scipy cho_factor + cho_solve, ridge {a.ridge:g} x mean diag) and timed once per N in the rbk worker."
        " Peaks: VmHWM of each side's process after its assembly rounds and after one full fit (ridge added and the Gram factored in place, as a Fortran view;"
        " neural-tangents returns a read-only view of a jax buffer, which the fit must copy first).",
        "",
        C.md_table(["N", "side", "first call s", "assembly s median [min-max]", "assembly + solve s", "peak GB (assembly)",
                    "peak GB (fit)", "batching"], rows),
        "",
        f"rbk vs neural-tangents (normwise relative difference): {agree}.",
    ])
    if not a.no_results:
        C.append_results("kernel_fit" + (" --quick" if a.quick else ""), info, body, headline)
    print(body)
    C.emit(headline)
    return headline


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(*sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--fit-worker":
        fit_worker(*sys.argv[2:])
    else:
        main()
