"""SGD throughput: rbk's compiled trainer against a PyTorch reference loop of the same recipe.

    python benchmarks/sgd_throughput.py [--quick] [--widths 256,512,1024] [--S 1,4,16]
                                        [--n 10000] [--repeats 5] [--torch-compile]

What is timed
-------------
rbk: the executable that ``rbk.train.train(model, data, keys, lrs, wds, cfg)`` compiles and runs
(obtained through ``rbk.train.prepare``, the first half of ``train``), for ``S`` members per
compiled call (one seed x a small learning-rate x weight-decay grid, as a sweep calls it). The
errors on the splits are evaluated only at the last epoch (``record_epochs=[E]``), and that
evaluation, the initialisation and the dispatch are removed by a paired difference: each round
runs the ``E_lo``- and ``E_hi``-epoch programs back to back and the time of one epoch is
``(t_hi - t_lo) / (E_hi - E_lo)`` (each epoch includes its permutation). Compilation is timed
apart (``TrainResult.compile_s`` of a real ``train`` call, the warm-up).

PyTorch: ``nn.Linear`` layers holding rbk's own initial weights (same init scales), loss
``0.5 * mean_batch sum_k (f - y)^2``, ``torch.optim.SGD(lr, momentum=0.9, weight_decay=wd)``
(coupled L2, as rbk), ``MultiStepLR`` at ``decay_epoch``, a ``torch.randperm`` shuffle every
epoch with the last partial batch dropped, batches by ``index_select`` on in-memory tensors
(faster than a ``DataLoader``), ``torch.set_num_threads(<cores>)``. One repeat is
``E_hi - E_lo`` epochs. PyTorch is also timed with one thread (OpenMP with every core
can be several times slower on a busy machine); the reference for the ratio is the faster of
the two. ``--torch-compile`` adds a ``torch.compile``-d model as a separate
competitor (its compile time reported apart).

All competitors at one width alternate within each round (``_common.alternate``); each
figure is the median over >= 5 rounds after a warm-up. Throughput is examples per second per
model and, for S members, aggregate model-examples per second. ``roofline_fraction`` divides
the FLOP rate ``6 (d m + m m + m k)`` per example by the machine's fp32 matmul peak measured
in the same run (``_common.matmul_peak``: best of numpy and jax, square 1024-4096).

Devices: like the ``rbk`` command, the script first splits the CPU into one JAX device per
core (``rbk.train.configure_cpu_devices``; ``--cpu-devices 1`` keeps one device). A call's
members are then split over the devices as ``rbk.train.train`` does (S=1 runs on one device,
using every core); with several devices the largest S is also timed held on one device
(``rbk S=16 one device``), in the same rounds.

JSON (last line): ``ratio_vs_torch`` (rbk / best PyTorch examples/s at width 512, S=1),
``roofline_fraction`` (rbk at width 512, S=1), ``vmap_16_over_1`` (aggregate S=16 / S=1 at 512),
and with several devices ``vmap_16_over_1_one_device`` (the same, S=16 held on one device).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

D, K, BATCH = 30, 15, 50
LRS_GRID = (0.01, 0.005, 0.02, 0.002)  # S=1 is the first entry: lr 0.01, wd 1e-4 (PyTorch's too)
WDS_GRID = (1e-4, 0.0, 5e-4, 1e-3)


def member_grid(S: int) -> tuple[list[float], list[float]]:
    """``S`` members as an ``L x W`` learning-rate x weight-decay grid (1x1, 2x2, 4x4, else S x 1)."""
    r = int(round(math.sqrt(S)))
    if r * r == S and r <= len(LRS_GRID):
        return list(LRS_GRID[:r]), list(WDS_GRID[:r])
    return [LRS_GRID[i % len(LRS_GRID)] * (1 + i // len(LRS_GRID)) for i in range(S)], [1e-4]


def make_dataset(n: int, seed: int = 0, n_eval: int = 100):
    """The paper instance (d=30, k=15, Boolean cube), one seed; tiny val/test (eval is subtracted)."""
    from rbk import data, targets

    kd, kt = data.seed_keys(seed)
    ds = data.make_dataset(kd, targets.paper_instance(), n, n_val=n_eval, n_test=n_eval)
    return ds, kt


class RbkRunner:
    """rbk's trainer for one (width, S): the E_lo and E_hi executables of ``train``."""

    def __init__(self, width: int, S: int, n: int, e_lo: int, e_hi: int, arch: str = "3resnet", devices=None):
        import jax.numpy as jnp

        from rbk import data, models, train

        self.width, self.S, self.n, self.e_lo, self.e_hi, self.devices = width, S, n, e_lo, e_hi, devices
        self.model = models.get_model(arch, width, D, K)
        ds, kt = make_dataset(n)
        self.data, self.keys = data.stack([ds]), jnp.stack([kt])
        self.lrs, self.wds = member_grid(S)
        self.examples = (n // BATCH) * BATCH
        # the real call, once: compilation time, first run, the loss of the last epoch
        res = train.train(self.model, self.data, self.keys, self.lrs, self.wds, train.config(e_hi, record_epochs=[e_hi]),
                          devices=devices)
        self.compile_s, self.first_run_s = res.compile_s, res.run_s
        self.final_loss = float(res.epoch_loss[..., -1].mean())
        self.diverged = int(res.diverged.sum())
        self.exe = {}
        for e in (e_lo, e_hi):  # the executables train() runs, compiled once for the repeats
            cfg = train.config(e, record_epochs=[e])
            fn, args, *_ = train.prepare(self.model, self.data, self.keys, self.lrs, self.wds, cfg, devices)
            self.exe[e] = (fn.lower(*args).compile(), args)
            self.run(e)  # warm-up

    def run(self, e: int):
        compiled, args = self.exe[e]
        return C.block(compiled(*args))

    def epoch_time(self, _call=None) -> float:
        """One paired measurement: seconds per epoch, evaluation and set-up subtracted."""
        t_lo = C.timed(lambda: self.run(self.e_lo))
        t_hi = C.timed(lambda: self.run(self.e_hi))
        self.overhead = t_lo - self.e_lo * (t_hi - t_lo) / (self.e_hi - self.e_lo)
        return (t_hi - t_lo) / (self.e_hi - self.e_lo)


class TorchRunner:
    """A PyTorch reference loop of the same model and recipe, from rbk's initial weights.

    It runs in its own worker process (``--torch-worker``; this file), driven over a pipe:
    PyTorch's OpenMP threads and XLA's thread pool in one process disturb each other (we
    measured PyTorch 10x slower next to JAX on a busy machine), and a separate process is what a
    user would have. The worker reads the data and the initial weights from an ``.npz`` and
    never imports JAX; each ``run`` trains ``epochs`` epochs and reports its own wall time.
    """

    def __init__(self, width: int, n: int, epochs: int, lr: float = LRS_GRID[0], wd: float = WDS_GRID[0],
                 compile: bool = False, warm_epochs: int = 2, threads: int | None = None):
        import subprocess
        import tempfile

        import numpy as np

        from rbk import models

        self.examples, self.epochs, self.S = (n // BATCH) * BATCH, epochs, 1
        ds, kt = make_dataset(n)
        p = models.get_model("3resnet", width, D, K).init(kt)
        self._dir = tempfile.TemporaryDirectory(prefix="rbk-torch-")
        path = os.path.join(self._dir.name, "init.npz")
        np.savez(path, x=np.asarray(ds.x_train, np.float32), y=np.asarray(ds.y_train, np.float32),
                 **{k: np.asarray(v, np.float32) for k, v in p.items()})
        cmd = [sys.executable, os.path.abspath(__file__), "--torch-worker", path, str(epochs), str(lr), str(wd),
               str(int(compile)), str(warm_epochs), str(threads or C.cores())]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        ready = self._read()  # "ready <compile_s> <loss after warm_epochs>"
        self.compile_s = float(ready[1]) if compile else None
        self.final_loss = float(ready[2])

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"torch worker died (exit {self.proc.wait()})")
        return line.split()

    def epoch_time(self, call=None) -> float:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        out = self._read()
        self.last_loss = float(out[2])
        return float(out[1]) / self.epochs

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)
        self._dir.cleanup()


def torch_worker(path: str, epochs: str, lr: str, wd: str, compile: str, warm: str, threads: str) -> None:
    """The PyTorch side (no JAX here): ``ready``, then one ``time <s> <loss>`` line per ``run``."""
    import numpy as np
    import torch

    torch.set_num_threads(int(threads))
    z = np.load(path)
    x, y = torch.from_numpy(z["x"].copy()), torch.from_numpy(z["y"].copy())
    d, width, k = z["W"].shape[0], z["W"].shape[1], z["A"].shape[1]

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1 = torch.nn.Linear(d, width)
            self.l2 = torch.nn.Linear(width, width)
            self.out = torch.nn.Linear(width, k, bias=False)

        def forward(self, xb):
            a1 = torch.relu(self.l1(xb))
            return self.out(a1 + torch.relu(self.l2(a1)))

    net = Net()
    with torch.no_grad():  # rbk's init: same scales, same numbers (nn.Linear stores W^T)
        for lin, w, b in ((net.l1, "W", "b1"), (net.l2, "U", "b2"), (net.out, "A", None)):
            lin.weight.copy_(torch.from_numpy(z[w].T.copy()))
            if b:
                lin.bias.copy_(torch.from_numpy(z[b].copy()))
    opt = torch.optim.SGD(net.parameters(), lr=float(lr), momentum=0.9, weight_decay=float(wd))
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[10**6], gamma=0.1)  # lr/10 at decay_epoch
    gen = torch.Generator().manual_seed(0)
    model = torch.compile(net) if int(compile) else net
    n = x.shape[0]
    steps = n // BATCH

    def epoch() -> float:
        perm = torch.randperm(n, generator=gen)[: steps * BATCH].view(steps, BATCH)  # drop the partial batch
        total = torch.zeros(())
        for idx in perm:
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
            loss = 0.5 * ((model(xb) - yb) ** 2).sum(-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        sched.step()
        return float(total) / steps

    t0 = time.perf_counter()
    loss = float("nan")
    for _ in range(int(warm)):  # warm-up (and torch.compile's compilation): from the init
        loss = epoch()
    print(f"ready {time.perf_counter() - t0:.6f} {loss:.6g}", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t0 = time.perf_counter()
        for _ in range(int(epochs)):
            loss = epoch()
        print(f"time {time.perf_counter() - t0:.6f} {loss:.6g}", flush=True)


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="width 512 only, N=4000: a few minutes")
    ap.add_argument("--widths", default=None, help="comma-separated widths (default 256,512,1024; quick 512)")
    ap.add_argument("--S", default="1,4,16", help="members per compiled call (default 1,4,16)")
    ap.add_argument("--n", type=int, default=None, help="training-set size (default 10000; quick 4000)")
    ap.add_argument("--epochs", default="1,3", help="E_lo,E_hi of the paired difference (default 1,3)")
    ap.add_argument("--repeats", type=int, default=C.MIN_REPEATS, help="rounds (>= 5)")
    ap.add_argument("--torch-compile", action="store_true", help="also time a torch.compile-d model (separately)")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch (ratio not computed)")
    ap.add_argument("--no-results", action="store_true", help="do not append to benchmarks/RESULTS.md")
    C.add_cpu_devices_option(ap)
    a = ap.parse_args(argv)
    a.widths = [int(w) for w in (a.widths or ("512" if a.quick else "256,512,1024")).split(",")]
    a.S = [int(s) for s in a.S.split(",")]
    a.n = a.n or (4000 if a.quick else 10000)
    a.e_lo, a.e_hi = (int(e) for e in a.epochs.split(","))
    if not 1 <= a.e_lo < a.e_hi:
        ap.error("--epochs must be E_lo,E_hi with 1 <= E_lo < E_hi")
    return a


def main(argv=None):
    a = parse(argv)
    C.use_cpu_devices(a.cpu_devices)  # before any JAX computation, as the rbk command
    info = C.machine_info()
    import jax
    from rbk import models

    print(f"# sgd_throughput: widths {a.widths}, S {a.S}, N {a.n}, epochs {a.e_lo}->{a.e_hi}, {a.repeats} rounds; {C.load_note(C.finish_info(dict(info)))}", flush=True)
    rows, res = [], {}
    for width in a.widths:
        fpe = models.flops_per_example(models.get_model("3resnet", width, D, K))
        runners, calls, measure = {}, {}, {}
        for S in a.S:
            r = RbkRunner(width, S, a.n, a.e_lo, a.e_hi)
            runners[f"rbk S={S}"] = r
            print(f"  width {width} S={S}: compile {r.compile_s:.2f}s, first run {r.first_run_s:.2f}s", flush=True)
        if len(jax.local_devices()) > 1 and max(a.S) > 1:  # the same call held on one device, for comparison
            S = max(a.S)
            runners[f"rbk S={S} one device"] = RbkRunner(width, S, a.n, a.e_lo, a.e_hi, devices=jax.local_devices()[:1])
        if not a.no_torch:
            runners["torch"] = TorchRunner(width, a.n, a.e_hi - a.e_lo, warm_epochs=a.e_hi)
            if C.cores() > 1:  # OpenMP on a busy machine can be far slower than one thread: keep both
                runners["torch 1 thread"] = TorchRunner(width, a.n, a.e_hi - a.e_lo, warm_epochs=a.e_hi, threads=1)
            if a.torch_compile:
                try:
                    runners["torch.compile"] = TorchRunner(width, a.n, a.e_hi - a.e_lo, compile=True, warm_epochs=a.e_hi)
                    print(f"  torch.compile: compiled in {runners['torch.compile'].compile_s:.1f}s", flush=True)
                except Exception as e:  # noqa: BLE001 - optional competitor
                    print(f"  torch.compile unavailable: {type(e).__name__}: {str(e)[:200]}", flush=True)
        for name, r in runners.items():
            calls[name] = (lambda r=r: None)
            measure[name] = r.epoch_time
        times, _ = C.alternate(calls, a.repeats, warmup=False, measure=measure)  # warm-ups were done above
        for name, ts in times.items():
            r = runners[name]
            S = getattr(r, "S", 1)
            per_epoch = C.median(ts)
            ex_s = r.examples / per_epoch
            agg = S * ex_s
            res[(width, name)] = dict(S=S, per_epoch=per_epoch, ex_s=ex_s, agg=agg, gflops=agg * fpe / 1e9, ts=ts, r=r)
        peak = C.matmul_peak(quick=a.quick)  # measured between the widths' rounds, same load
        # the reference: the faster of PyTorch with <cores> threads and with one thread (a fair shake)
        torch_ex = max((res[(width, t)]["ex_s"] for t in ("torch", "torch 1 thread") if (width, t) in res), default=None)
        for name in runners:
            e = res[(width, name)]
            e["roof"] = e["gflops"] / peak["best"]
            e["vs_torch"] = e["ex_s"] / torch_ex if torch_ex else float("nan")
            r = e["r"]
            comp = r.compile_s
            rows.append([width, name, e["S"], C.spread(e["ts"]), round(e["ex_s"]), round(e["agg"]), e["gflops"],
                         e["roof"], e["vs_torch"], "-" if comp is None else f"{comp:.2f}",
                         f"{getattr(r, 'overhead', float('nan')):.3f}" if name.startswith("rbk") else "-",
                         f"{r.final_loss:.3g}"])
            print(f"  width {width:5d} {name:14s} {C.spread(e['ts'])} s/epoch  {e['ex_s']:9.0f} ex/s/model  "
                  f"{e['agg']:9.0f} agg  {e['gflops']:6.1f} GFLOP/s  {e['roof']:.2f} of peak  x{e['vs_torch']:.2f} vs torch", flush=True)
        res[(width, "peak")] = peak
        for r in runners.values():
            if isinstance(r, TorchRunner):
                r.close()

    def get(width, name, key):
        return res.get((width, name), {}).get(key, float("nan"))

    w0 = 512 if 512 in a.widths else a.widths[0]
    s_hi = max(a.S)
    headline = {
        "ratio_vs_torch": C.rounded(get(w0, "rbk S=1", "vs_torch"), 3),
        "roofline_fraction": C.rounded(get(w0, "rbk S=1", "roof"), 3),
        "vmap_16_over_1": C.rounded(get(w0, f"rbk S={s_hi}", "agg") / get(w0, "rbk S=1", "agg"), 3),
    }
    if (w0, f"rbk S={s_hi} one device") in res:
        headline["vmap_16_over_1_one_device"] = C.rounded(get(w0, f"rbk S={s_hi} one device", "agg") / get(w0, "rbk S=1", "agg"), 3)
    peaks = ", ".join(f"width {w}: {res[(w, 'peak')]['best']:.1f} (numpy {res[(w, 'peak')]['numpy']:.1f}, jax {res[(w, 'peak')]['jax']:.1f})" for w in a.widths)
    body = "\n".join([
        f"JAX devices: {len(jax.local_devices())} (the members of a call are split over them as rbk.train does; 'one device' holds the same call on one device).",
        f"3resnet, d={D}, k={K}, batch {BATCH}, N={a.n}; one epoch = the paired difference of the {a.e_lo}- and {a.e_hi}-epoch programs"
        f" (evaluation at the last epoch and set-up subtracted; 'overhead' = that subtracted part, s). PyTorch runs in its own process (lr 0.01, wd 1e-4, as rbk S=1); 'loss, epoch E' is the mean training loss of epoch E from the common init (rbk: mean over the members). {a.repeats} rounds, competitors alternating.",
        f"fp32 matmul peak measured in the run, GFLOP/s: {peaks}.",
        "",
        C.md_table(["width", "trainer", "S", "s/epoch median [min-max]", "ex/s per model", "aggregate ex/s", "GFLOP/s",
                    "fraction of peak", "x best PyTorch (per model)", "compile s", "overhead s", f"loss, epoch {a.e_hi}"], rows),
    ])
    if s_hi != 16:
        body += f"\n\n(vmap_16_over_1 computed with S={s_hi})"
    if not a.no_results:
        C.append_results("sgd_throughput" + (" --quick" if a.quick else ""), info, body, headline)
    print(body)
    C.emit(headline)
    return headline


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--torch-worker":
        torch_worker(*sys.argv[2:])
    else:
        main()
