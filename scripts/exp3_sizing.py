"""Size Experiment 3 (multi-index targets, Damian-Lee-Soltanolkotabi 2022): n*(d) per learner.

A scratch tool, kept as documentation of how the quick profile was sized. For each input
dimension ``d``, seed and training-set size ``N`` it draws one data set (Gaussian inputs,
labels from a multi-index target whose subspace ``U`` is drawn from the seed) and runs every
requested learner on it:

  two_stage   Algorithm 1 (rbk.train.two_stage): one step on W, ridge read-out; eta from a
              grid of multiples of sqrt(d), ridge and eta chosen on validation.
  sgd         full SGD training of the standard 2nn (rbk.train.train, the paper's recipe).
  ntk, nngp   exact kernels of the 2-layer ReLU net, kernel ridge (rbk.kernels.fit_predict).
  rf          random features of the same width as two_stage (fixed random first layer).

Rows are appended to ``--out`` (JSON lines; a rerun skips rows already there), and
``--report`` prints n*(d) for a threshold of ``--fraction`` times the degree-p energy, with
bootstrap CIs over seeds (rbk.stats.n_star), and the fitted slope of log n* against log d
with a bootstrap CI (one crossing per d per replicate; a censored d contributes its bound).

    PYTHONPATH=$PWD nice -n 5 python scripts/exp3_sizing.py --d 8 12 16 --seeds 0 1 2 \\
        --learners two_stage ntk --ns 250 500 1000 2000 4000 --out /tmp/exp3.jsonl
    PYTHONPATH=$PWD python scripts/exp3_sizing.py --out /tmp/exp3.jsonl --report --fraction 0.5
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np


def make_target(name: str, d: int, seed: int, r: int, p: int):
    import jax

    from rbk import targets

    key = jax.random.fold_in(jax.random.PRNGKey(1000 + seed), d)
    if name == "single_index":
        return targets.single_index(key, d, p)
    if name == "sum_of_products":
        return targets.sum_of_products(key, d, r, p)
    if name == "random":
        return targets.random_multi_index(key, d, r, p)
    raise ValueError(f"--target must be single_index, sum_of_products or random, got {name!r}")


def run(args) -> None:
    import jax
    import jax.numpy as jnp

    from rbk import data, kernels, models, train

    out = Path(args.out)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["learner"], r["d"], r["n"], r["seed"]))
    for d in args.d:
        for n in args.ns:
            for seed in args.seeds:
                todo = [lr for lr in args.learners if (lr, d, n, seed) not in done]
                if not todo:
                    continue
                t = make_target(args.target, d, seed, args.r, args.p)
                k_data, k_train = data.seed_keys(seed)
                ds = data.make_dataset(jax.random.fold_in(k_data, d), t, n, n_test=args.n_test)
                base = {"d": d, "n": n, "seed": seed, "target": args.target, "r": args.r, "p": args.p,
                        "threshold": t.threshold, "width": args.width}
                # rows of different kernel biases must go to different --out files
                for learner in todo:
                    t0 = time.perf_counter()
                    if learner == "two_stage":
                        cfg = train.two_stage_config(args.width, tuple(c * math.sqrt(d) for c in args.eta_mults),
                                                     split=args.split)
                        res = train.two_stage(ds, k_train, cfg)
                        extra = {"eta": res["eta"], "lam": res.get("lam")}
                    elif learner in ("ntk", "nngp"):
                        kfn = kernels.kernel_fn("2nn", b_std=args.b_std)
                        res = kernels.fit_predict(kfn, ds, tuple(args.kernel_ridges), get=learner)
                        extra = {"lam": res["lam"], "b_std": args.b_std}
                    elif learner == "rf":
                        model = models.get_model("2nn", args.width, d, 1, parameterization="ntk", b_std=args.b_std)
                        res = kernels.random_features_fit_predict(model, model.init(k_train), ds, tuple(args.kernel_ridges))
                        extra = {"lam": res["lam"]}
                    elif learner == "sgd":
                        model = models.get_model("2nn", args.sgd_width, d, 1)
                        cfg = train.config(args.epochs, batch_size=min(50, n))
                        r = train.train(model, ds, jnp.asarray(k_train)[None], args.lrs, [0.0], cfg)
                        val, test = r.final("val")[0], r.final("test")[0]
                        val = np.where(r.diverged[0], np.inf, val)
                        i = np.unravel_index(np.argmin(val), val.shape)
                        res = {"test_error": float(test[i]), "val_error": float(val[i])}
                        extra = {"lr": float(r.lrs[i[0]]), "width": args.sgd_width, "epochs": args.epochs}
                    else:
                        raise ValueError(f"unknown learner {learner!r}")
                    row = dict(base, learner=learner, test_error=float(res["test_error"]),
                               val_error=float(res["val_error"]), seconds=time.perf_counter() - t0, **extra)
                    with out.open("a") as fh:
                        fh.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)


def slope_ci(ds, boots, n_boot):
    """Least-squares slope of log n* on log d per bootstrap replicate; ``boots[d]``: crossings
    (a censored replicate at its bound, N_min or N_max)."""
    x = np.log(np.asarray(ds, float))
    slopes = []
    for b in range(n_boot):
        y = np.log([boots[d][b] for d in ds])
        slopes.append(np.polyfit(x, y, 1)[0])
    return np.percentile(slopes, [2.5, 97.5])


def report(args) -> None:
    from rbk import stats

    rows = [json.loads(line) for line in Path(args.out).read_text().splitlines()]
    learners = sorted({r["learner"] for r in rows})
    print(f"threshold = {args.fraction} x E_p")
    for learner in learners:
        lr_rows = [r for r in rows if r["learner"] == learner]
        ds = sorted({r["d"] for r in lr_rows})
        est, boots, bounds, line = {}, {}, {}, []
        for d in ds:
            sel = [dict(r, kind="net", diverged=False) for r in lr_rows if r["d"] == d]
            thr = args.fraction * sel[0]["threshold"]
            ns = sorted({r["n"] for r in sel})
            means = {n: np.mean([r["test_error"] for r in sel if r["n"] == n]) for n in ns}
            s = stats.n_star(sel, thr, n_boot=args.n_boot)
            cr = stats.bootstrap_crossings(sel, thr, n_boot=args.n_boot)
            boots[d] = [v if st == "none" else (ns[0] if st == "below_at_min_n" else ns[-1]) for st, v in cr]
            bounds[d] = s["bound"]  # N_max (never below: n* >= it) or N_min (below at once: n* <= it)
            est[d] = s["estimate"] if s["censored"] == "none" else math.nan
            curve = " ".join(f"{n}:{means[n]:.3f}" for n in ns)
            line.append(f"  d={d:3d} n*={s['estimate']:.0f} ci={[round(v) if np.isfinite(v) else None for v in s['ci95']]}"
                        f" censored={s['censored']} | {curve}")
        print(learner)
        print("\n".join(line))
        ok = [d for d in ds if np.isfinite(est[d])]
        if len(ds) >= 2:
            y = np.log([est[d] if np.isfinite(est[d]) else bounds[d] for d in ds])
            slope = np.polyfit(np.log(ds), y, 1)[0]
            lo, hi = slope_ci(ds, boots, args.n_boot)
            cens = len(ok) < len(ds)
            print(f"  slope={slope:.2f} ci95=[{lo:.2f}, {hi:.2f}] censored={cens}"
                  + (" (a censored d enters at its bound: N_max, or N_min when below at once)" if cens else ""))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--fraction", type=float, default=1.0, help="threshold = fraction * E_p (report)")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--target", default="single_index")
    ap.add_argument("--r", type=int, default=1)
    ap.add_argument("--p", type=int, default=4)
    ap.add_argument("--d", type=int, nargs="+", default=[8, 12, 16, 24])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ns", type=int, nargs="+", default=[250, 500, 1000, 2000, 4000])
    ap.add_argument("--learners", nargs="+", default=["two_stage", "ntk"])
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--eta-mults", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    ap.add_argument("--split", type=float, default=0.5)
    ap.add_argument("--b-std", type=float, default=0.1, help="bias scale of the kernels and random features")
    ap.add_argument("--kernel-ridges", type=float, nargs="+", default=[1e-4, 1e-2, 1e-1])
    ap.add_argument("--sgd-width", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.02])
    ap.add_argument("--n-test", type=int, default=5000)
    args = ap.parse_args(argv)
    if args.report:
        report(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
