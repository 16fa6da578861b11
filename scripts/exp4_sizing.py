"""Sizing Experiment 4 (deep hierarchies, Allen-Zhu & Li 2020): a small, documented exploration.

For one hierarchy target (``rbk.targets.hierarchy``, fixed target key 0) and a grid of training-set
sizes ``N``, every seed ``s`` draws its own data (``rbk.data.seed_keys(s)``) and each learner is
trained / fitted on the same data:

* ``deep-joint``      DeepQuad (truncated quadratic, skips, one head per level), all levels trained
                      from the start (``regime_config('joint')``), learning rate chosen on validation;
* ``deep-layerwise``  the same network, level ``l`` trained only in stage ``l`` (lower levels frozen);
* ``ntk-deep``        kernel ridge with the exact NTK of the same architecture (``ntk``
                      parameterization), ridge chosen on validation;
* ``2nn``             (optional) rbk's ReLU two-layer net, the shallow reference.

It prints per learner and N the mean test error with a Student-t 95 % CI over seeds, the deepest
level's threshold, the paired (by seed) difference ``ntk-deep - deep-joint`` at the largest N, and
the paired difference of the level-2 feature quality (held-out ridge R^2 of the target's ``S_2`` from
the network's ``h_2``) joint minus layer-wise at the end of training, with its 95 % CI, plus
wall times (measured under load: the machine is shared). Results go to ``--out`` as JSON.

Run from the repository root (nice'd, the machine is shared)::

    PYTHONPATH=$PWD nice -n 5 python scripts/exp4_sizing.py --ns 1000,4000 --seeds 0,1,2 --out /tmp/exp4.json
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from rbk import data, kernels, models, stats, targets, train


def _floats(s):
    return [float(v) for v in s.split(",")]


def _ints(s):
    return [int(v) for v in s.split(",")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d", type=int, default=12)
    ap.add_argument("--widths", type=_ints, default=[3, 3, 3], help="target level widths k_l")
    ap.add_argument("--alphas", type=_floats, default=[1.0, 0.7, 0.5])
    ap.add_argument("--ns", type=_ints, default=[1000, 4000])
    ap.add_argument("--seeds", type=_ints, default=[0, 1, 2])
    ap.add_argument("--width", type=int, default=64, help="learner width per level")
    ap.add_argument("--epochs", type=int, default=30, help="total epochs (a multiple of the number of levels)")
    ap.add_argument("--lrs", type=_floats, default=[5e-4, 1e-3])
    ap.add_argument("--wds", type=_floats, default=[0.0])
    ap.add_argument("--clip", type=float, default=2.0, help="truncation of the learner's quadratic activation")
    ap.add_argument("--readout", default="square", choices=["square", "linear"],
                    help="target read-out (the learner and its kernel read sigma(h_l) for 'square', h_l for 'linear')")
    ap.add_argument("--ridges", type=_floats, default=[1e-4, 1e-2, 1.0], help="relative ridges of ntk-deep")
    ap.add_argument("--n-val", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=4000)
    ap.add_argument("--learners", default="deep-joint,deep-layerwise,ntk-deep")
    ap.add_argument("--out", default="/tmp/exp4_sizing.json")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    target = targets.hierarchy(jax.random.PRNGKey(0), d=args.d, widths=args.widths, alphas=args.alphas,
                               readout=args.readout)
    head = "post" if args.readout == "square" else "pre"
    L = len(args.widths)
    info = target.info
    print(f"target: E[y^2]={info['second_moment']:.4f} thresholds={info['thresholds']} "
          f"degree energy={np.round(info['degree_energy'][:2 ** L + 1], 4).tolist()}", flush=True)
    learners = args.learners.split(",")
    rows, timing = [], {}
    for n in args.ns:
        sets = [data.make_dataset(data.seed_keys(s)[0], target, n, n_val=args.n_val, n_test=args.n_test,
                                  distribution="gaussian") for s in args.seeds]
        batch = data.stack(sets)
        keys = jnp.stack([data.seed_keys(s)[1] for s in args.seeds])
        for regime in ("joint", "layerwise"):
            name = f"deep-{regime}"
            if name not in learners:
                continue
            m = models.get_deepquad(args.width, args.d, levels=L, activation="truncated", clip=args.clip,
                                    readout=head, reference=target)
            cfg = train.regime_config(regime, L, args.epochs, record_per_stage=1)
            tt = time.perf_counter()
            r = train.train(m, batch, keys, args.lrs, args.wds, cfg)
            timing[f"{name}/N={n}"] = {"wall_s": time.perf_counter() - tt, "compile_s": r.compile_s, "run_s": r.run_s}
            q = m.feature_quality_from_stats(r.probes)  # (S, Lr, W, R, L)
            for si, s in enumerate(args.seeds):
                val = np.where(r.diverged[si], np.inf, np.nan_to_num(r.final("val")[si], nan=np.inf))
                li, wi = np.unravel_index(np.argmin(val), val.shape)
                rows.append({"learner": name, "n": n, "seed": s, "lr": float(r.lrs[li]), "wd": float(r.wds[wi]),
                             "diverged": bool(r.diverged[si, li, wi]),
                             "val_error": float(r.final("val")[si, li, wi]),
                             "test_error": float(r.final("test")[si, li, wi]),
                             "test_over_training": r.errors["test"][si, li, wi].tolist(),
                             "record_epochs": list(r.record_epochs),
                             "feature_quality": q[si, li, wi].tolist()})
            print(f"{name} N={n}: {timing[f'{name}/N={n}']}", flush=True)
            for row in rows[-len(args.seeds):]:
                print(f"  seed {row['seed']} lr {row['lr']} test {row['test_error']:.4f} "
                      f"quality {np.round(row['feature_quality'][-1], 3).tolist()}", flush=True)
        if "ntk-deep" in learners:
            mk = models.get_deepquad(args.width, args.d, levels=L, activation="hermite", parameterization="ntk",
                                     readout=head, head_init="random")
            kfn = kernels.model_kernel_fn(mk)
            tt = time.perf_counter()
            for si, s in enumerate(args.seeds):
                res = kernels.fit_predict(kfn, sets[si], ridges=args.ridges)
                rows.append({"learner": "ntk-deep", "n": n, "seed": s, "ridge": res["lam"], "diverged": False,
                             "val_error": res["val_error"], "test_error": res["test_error"]})
            timing[f"ntk-deep/N={n}"] = {"wall_s": time.perf_counter() - tt}
            print(f"ntk-deep N={n}: {timing[f'ntk-deep/N={n}']} test "
                  f"{[round(r['test_error'], 4) for r in rows[-len(args.seeds):]]}", flush=True)
        if "2nn" in learners:
            m2 = models.get_model("2nn", args.width * L, args.d, 1)
            tt = time.perf_counter()
            r = train.train(m2, batch, keys, args.lrs + [1e-2], args.wds, train.config(args.epochs))
            timing[f"2nn/N={n}"] = {"wall_s": time.perf_counter() - tt}
            for si, s in enumerate(args.seeds):
                val = np.where(r.diverged[si], np.inf, np.nan_to_num(r.final("val")[si], nan=np.inf))
                li, wi = np.unravel_index(np.argmin(val), val.shape)
                rows.append({"learner": "2nn", "n": n, "seed": s, "diverged": bool(r.diverged[si, li, wi]),
                             "val_error": float(r.final("val")[si, li, wi]),
                             "test_error": float(r.final("test")[si, li, wi])})

    summary = {"threshold": target.threshold, "thresholds": info["thresholds"], "second_moment": info["second_moment"],
               "config": vars(args), "timing": timing, "rows": [], "wall_s": time.perf_counter() - t0}
    print(f"\nthreshold (deepest level) = {target.threshold:.4f}")
    for name in learners:
        for n in args.ns:
            errs = [r["test_error"] for r in rows if r["learner"] == name and r["n"] == n and np.isfinite(r["test_error"])]
            mean, lo, hi = stats.t_ci(errs)
            summary["rows"].append({"learner": name, "n": n, "test_error_mean": mean, "test_error_ci95": [lo, hi],
                                    "seeds": len(errs)})
            print(f"{name:16s} N={n:6d} test error {mean:.4f} CI95 [{lo:.4f}, {hi:.4f}] ({len(errs)} seeds)")

    def paired(a, b, n, key):
        va = {r["seed"]: r for r in rows if r["learner"] == a and r["n"] == n}
        vb = {r["seed"]: r for r in rows if r["learner"] == b and r["n"] == n}
        diffs = [key(va[s]) - key(vb[s]) for s in va if s in vb and np.isfinite(key(va[s]) - key(vb[s]))]
        mean, lo, hi = stats.t_ci(diffs)
        return {"mean": mean, "ci95": [lo, hi], "seeds": len(diffs)}

    top = max(args.ns)
    if {"deep-joint", "ntk-deep"} <= set(learners):
        summary["ntk_minus_joint_at_max_n"] = paired("ntk-deep", "deep-joint", top, lambda r: r["test_error"])
        print("ntk-deep - deep-joint at N=%d:" % top, summary["ntk_minus_joint_at_max_n"])
    if {"deep-joint", "deep-layerwise"} <= set(learners):
        summary["feature_quality"] = []
        for lvl in range(1, L + 1):
            pq = paired("deep-joint", "deep-layerwise", top, lambda r: r["feature_quality"][-1][lvl - 1])
            summary["feature_quality"].append({"level": lvl, "joint_minus_layerwise": pq})
            print(f"level {lvl} feature quality joint - layerwise at N={top}:", pq)
    summary["per_seed"] = rows
    with open(args.out, "w") as f:
        json.dump(stats.jsonable(summary), f, indent=1)
    print(f"wrote {args.out}; total wall {summary['wall_s']:.0f} s (measured under load)")


if __name__ == "__main__":
    main()
