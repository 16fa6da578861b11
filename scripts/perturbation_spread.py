"""How far float-level perturbations move a profile's network test errors (Experiment 1).

A user's machine computes the same recipe with other float roundings: another CPU (other
SIMD kernels, FMA or not), another core count, another JAX/XLA. SGD amplifies such
differences, so one seed's final error can move far. This script re-trains one network
learner of an ``rbk exp1`` profile (default ``3resnet`` at N = 10000 and 3000) under several
such perturbations, each in its own Python process (device counts and XLA flags must be set
before JAX starts), selects each seed's (lr, wd) on validation exactly as the sweep does
(:func:`rbk.stats.select`), and prints, per seed, the min / median / max test error over the
perturbations, and per perturbation the seeds' mean and 95% CI upper bound.

Perturbations (``--perturbations``, default all but ``jax053`` unless ``--python-053`` is given):

``base``        the profile as ``rbk exp1`` runs it (one process, default CPU devices)
``devices1``    ``configure_cpu_devices(1)``: one CPU device (``--cpu-devices 1``)
``devices2``    two CPU devices (members split over them when their count allows)
``noise<i>``    N(0, sigma^2) added to every initial weight, sigma = ``--noise`` (1e-7), noise key i
``fast-math``   ``XLA_FLAGS=--xla_cpu_enable_fast_math=true`` (reassociating float math)
``isa-avx``     ``XLA_FLAGS=--xla_cpu_max_isa=AVX`` (code for a CPU without AVX2 / FMA)
``one-thread``  ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`` (single-threaded matmuls)
``jax053``      the same code under another interpreter, e.g. a venv with jax 0.5.3 (``--python-053``)

Run from a checkout (results are appended to ``--out``; a finished (perturbation, N) is skipped
when the same command runs again)::

    PYTHONPATH=$PWD python scripts/perturbation_spread.py --profile quick --out spread.jsonl
    PYTHONPATH=$PWD python scripts/perturbation_spread.py --profile quick --seeds 5 --lr 0.01 0.02 \
        --python-053 /tmp/jax053/bin/python --out spread-new.jsonl

Profile options (``--width``, ``--epochs``, ``--decay-epoch``, ``--lr``, ``--wd``, ``--seeds``)
override the profile as ``rbk exp1`` options do. ``--report FILE`` prints the tables of a
finished output file again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

FLAG_PERTURBATIONS = {
    "fast-math": "--xla_cpu_enable_fast_math=true",
    "isa-avx": "--xla_cpu_max_isa=AVX",
    "one-thread": "--xla_cpu_multi_thread_eigen=false",
}


def perturbation_names(noise_keys: int, with_053: bool) -> list[str]:
    names = ["base", "devices1", "devices2"] + [f"noise{i}" for i in range(noise_keys)] + list(FLAG_PERTURBATIONS)
    return names + (["jax053"] if with_053 else [])


# --------------------------------------------------------------------------------------------
# worker: one process, one perturbation, one N
# --------------------------------------------------------------------------------------------


def worker(job: dict) -> None:
    import jax

    if job.get("cpu_devices"):
        from rbk.train import configure_cpu_devices

        configure_cpu_devices(job["cpu_devices"])
    import dataclasses

    import jax.numpy as jnp

    from rbk import train
    from rbk.experiments import concept_class
    from rbk.data import seed_keys, stack
    from rbk.experiments import exp1
    from rbk.models import Model, get_model

    spec = exp1.spec(job["profile"], **job["overrides"])
    (cell,) = [c for c in concept_class.plan(spec) if c.learner == job["learner"] and c.n == job["n"]]
    model = get_model(cell.arch, cell.width, spec.d, spec.k)
    sigma = job.get("init_noise", 0.0)
    if sigma:

        @dataclasses.dataclass(frozen=True)
        class NoisyInit(Model):
            """The model, with N(0, sigma^2) added to its initial weights (a key of its own)."""

            init_noise: float = 0.0
            noise_key: int = 0

            def init(self, key):
                params = super().init(key)
                leaves, tree = jax.tree_util.tree_flatten(params)
                keys = jax.random.split(jax.random.PRNGKey(self.noise_key), len(leaves))
                noisy = [p + self.init_noise * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)]
                return jax.tree_util.tree_unflatten(tree, noisy)

        model = NoisyInit(**dataclasses.asdict(model), init_noise=sigma, noise_key=job["noise_key"])
    data = stack([concept_class.dataset(spec, a, b, cell.n, s) for a, b, s in cell.slots])
    keys = jnp.stack([seed_keys(s)[1] for _, _, s in cell.slots])
    cfg = spec.train_config()
    if job.get("curves"):
        cfg = dataclasses.replace(cfg, record_epochs=tuple(range(5, spec.epochs, 5)) + (spec.epochs,))
    t0 = time.perf_counter()
    res = train.train(model, data, keys, list(cell.lrs), list(cell.wds), cfg)
    wall = time.perf_counter() - t0
    for i, (_, _, s) in enumerate(cell.slots):
        for j, lr in enumerate(cell.lrs):
            for m, wd in enumerate(cell.wds):
                row = {
                    "perturbation": job["name"], "experiment": "exp1", "learner": cell.learner, "kind": "net", "n": cell.n,
                    "seed": s, "alpha": spec.instances[0][0], "beta": spec.instances[0][1], "lr": lr, "wd": wd,
                    "threshold": spec.target(*spec.instances[0]).threshold, "width": cell.width, "epochs": spec.epochs, "decay_epoch": cfg.decay_epoch,
                    "diverged": bool(res.diverged[i, j, m]),
                    **{f"{sp}_error": float(res.final(sp)[i, j, m]) for sp in ("train", "val", "test")},
                    "call_wall_s": wall, "members": cell.members, "devices": len(jax.devices()),
                    "jax": jax.__version__, "xla_flags": os.environ.get("XLA_FLAGS", ""),
                }  # fmt: skip
                if job.get("curves"):
                    row["record_epochs"] = list(cfg.record_epochs)
                    row["curves"] = {sp: res.errors[sp][i, j, m].tolist() for sp in ("train", "val", "test")}
                    row["epoch_loss"] = res.epoch_loss[i, j, m].tolist()
                print(json.dumps(row), flush=True)


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------


def _job_command(name: str, args) -> tuple[list[str], dict, dict]:
    job = {"name": name, "profile": args.profile, "learner": args.learner, "overrides": overrides(args),
           "curves": args.curves}  # fmt: skip
    env = dict(os.environ)
    python = sys.executable
    if name.startswith("devices"):
        job["cpu_devices"] = int(name[len("devices"):])
    elif name.startswith("noise"):
        job["init_noise"], job["noise_key"] = args.noise, int(name[len("noise"):])
    elif name in FLAG_PERTURBATIONS:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + FLAG_PERTURBATIONS[name]).strip()
    elif name == "jax053":
        python = args.python_053
    elif name != "base":
        raise SystemExit(f"--perturbations: unknown name {name!r}")
    return [python, os.path.abspath(__file__), "--worker"], job, env


def overrides(args) -> dict:
    out = {}
    for key in ("width", "epochs", "decay_epoch", "lr", "wd"):
        v = getattr(args, key)
        if v is not None:
            out[{"width": "widths", "lr": "lrs", "wd": "wds"}.get(key, key)] = v
    if args.seeds is not None:
        out["seeds"] = tuple(range(args.seeds))
    out["ns"] = tuple(args.n)
    out["learners"] = (args.learner,)
    return out


def load(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def report(rows: list[dict]) -> str:
    """Markdown tables: per (N, seed) min / median / max over perturbations; per perturbation the seeds' CI."""
    from rbk.stats import select, t_ci

    sel = select(rows, keys=("perturbation", "n", "seed"))
    out = []
    for n in sorted({r["n"] for r in sel}, reverse=True):
        at = [r for r in sel if r["n"] == n]
        perts = list(dict.fromkeys(r["perturbation"] for r in at))
        seeds = sorted({r["seed"] for r in at})
        grid = {(r["perturbation"], r["seed"]): r["test_error"] for r in at}
        out.append(f"\nN = {n}: test error of the selected (lr, wd), perturbation x seed\n")
        out.append("| perturbation | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | 95% CI upper |")
        out.append("|---|" + "---|" * (len(seeds) + 2))
        for p in perts:
            vals = [grid.get((p, s)) for s in seeds]
            fin = [v for v in vals if v is not None and v == v and v != float("inf")]
            m, _, hi = t_ci(fin) if fin else (float("nan"),) * 3
            out.append(f"| {p} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in vals) + f" | {m:.3f} | {hi:.3f} |")
        cells = []
        for s in seeds:
            v = sorted(grid[(p, s)] for p in perts if (p, s) in grid)
            cells.append(f"{v[0]:.3f} / {statistics.median(v):.3f} / {v[-1]:.3f}")
        out.append("| **min / median / max** | " + " | ".join(cells) + " | | |")
        his = [t_ci([grid[(p, s)] for s in seeds if (p, s) in grid])[2] for p in perts]
        out.append(f"\nworst single run {max(grid.values()):.3f}, worst CI upper bound {max(his):.3f}")
        if all("curves" in r for r in at):
            out.append(f"\nN = {n}: escape epoch (first recorded epoch with validation error below k alpha^2)\n")
            out.append("| perturbation | " + " | ".join(f"seed {s}" for s in seeds) + " |")
            out.append("|---|" + "---|" * len(seeds))
            esc = {(r["perturbation"], r["seed"]): _escape(r) for r in at}
            for p in perts:
                out.append(f"| {p} | " + " | ".join(str(esc.get((p, s), "-")) for s in seeds) + " |")
    return "\n".join(out)


def _escape(row: dict):
    """First recorded epoch whose validation error is below the threshold (None: never)."""
    hits = [e for e, v in zip(row["record_epochs"], row["curves"]["val"]) if v < row.get("threshold", 1.35)]
    return hits[0] if hits else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--profile", default="quick")
    p.add_argument("--learner", default="3resnet")
    p.add_argument("--n", type=int, nargs="+", default=[10000, 3000])
    p.add_argument("--seeds", type=int, help="number of seeds 0..seeds-1 (default: the profile's)")
    p.add_argument("--width", type=int, nargs="+")
    p.add_argument("--epochs", type=int)
    p.add_argument("--decay-epoch", type=int)
    p.add_argument("--lr", type=float, nargs="+")
    p.add_argument("--wd", type=float, nargs="+")
    p.add_argument("--noise", type=float, default=1e-7, help="sigma of the initial-weight noise (default 1e-7)")
    p.add_argument("--noise-keys", type=int, default=3)
    p.add_argument("--python-053", help="a Python with another JAX (e.g. /tmp/jax053/bin/python) for 'jax053'")
    p.add_argument("--perturbations", nargs="+", help="names to run (default: all)")
    p.add_argument("--curves", action="store_true", help="record errors every 5 epochs (rows get 'curves')")
    p.add_argument("--out", help="JSON-lines file the rows are appended to")
    p.add_argument("--report", help="print the tables of this output file and exit")
    args = p.parse_args(argv)
    if args.worker:
        worker(json.loads(sys.stdin.read()))
        return 0
    if args.report:
        print(report(load(args.report)))
        return 0
    if not args.out:
        p.error("--out is required")
    names = args.perturbations or perturbation_names(args.noise_keys, bool(args.python_053))
    if "jax053" in names and not args.python_053:
        p.error("--perturbations jax053 needs --python-053 PYTHON")
    done = {(r["perturbation"], r["n"]) for r in load(args.out)}
    for n in args.n:
        for name in names:
            if (name, n) in done:
                continue
            cmd, job, env = _job_command(name, args)
            job["n"] = n
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, input=json.dumps(job), env=env, capture_output=True, text=True)
            if proc.returncode:
                sys.stderr.write(proc.stderr[-3000:])
                raise SystemExit(f"perturbation {name} at N={n} failed (exit {proc.returncode})")
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            with open(args.out, "a") as f:
                f.write("".join(line + "\n" for line in lines))
            tests = [json.loads(line)["test_error"] for line in lines]
            print(f"{name:>10} N={n}: {time.perf_counter() - t0:6.1f} s  test " + " ".join(f"{t:.3f}" for t in tests),
                  file=sys.stderr, flush=True)  # fmt: skip
    print(report(load(args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
