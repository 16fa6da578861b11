"""Experiment 4's ``n*(d)``: the deepest threshold's sample complexity of each learner at several
input dimensions ``d``, its exponent, and the paired comparison of exponents.

Input: finished Experiment 4 runs (their results directories), one per ``d``, of the same
hierarchy otherwise (widths, alphas, read-out, first map: checked). From each run it reads the
rows (``results.jsonl``) and ``summary.json`` (the deepest threshold at that ``d``, the NTK's
``n*`` predicted from its Gaussian spectrum). Per learner and ``(d, seed)``, ``n*`` is a bound
(:func:`rbk.stats.seed_bounds`, in labels: every label the learner read, selection included):
exact where the seed's curve crosses inside the grid, an interval where it does not. Then:

* ``n_star``: per learner and ``d`` the seed-mean ``n*`` with its bootstrap CI
  (:func:`rbk.stats.n_star`, as in each run's own summary), and the NTK's predicted ``n*``
  (training points at the best ridge: no selection labels, in the kernel's favour);
* ``ratio``: per ``d``, the NTK's ``n*`` (predicted) over the best deep network's (measured);
* ``slopes``: per learner, the exponent ``b`` of ``log n* = a + b log d`` (``slope``,
  ``intercept``) by interval regression over the seed bounds (``bounds``: ``[d, seed, lo, hi]``;
  :func:`rbk.scaling.bounds_slope`: a censored point is an interval), and the least-squares
  slope of the NTK's predicted ``log n*`` on ``log d``;
* ``comparisons``: ``paired_slope_difference`` of the NTK (predicted; the same value for every
  seed of a ``d``: its spectrum and the target's power do not depend on the seed's data) and of
  the two-stage control against each deep network, the seeds of a ``d`` resampled together.

:func:`combine` builds it, :func:`format_table` prints it; ``scripts/exp4_nstar_d.py`` runs both
on result directories.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

DEEP = ("deep-joint", "deep-progressive")
#: The instance fields every run must share (``d`` is the one that varies).
SHARED = ("widths", "alphas", "readout", "first", "skip", "levels")


def _load(run_dir) -> tuple[dict, list[dict]]:
    from rbk import stats

    run_dir = Path(run_dir)
    for name in ("summary.json", "results.jsonl"):
        if not (run_dir / name).exists():
            raise ValueError(f"run_dirs: {str(run_dir)!r} has no {name} (a finished Experiment 4 run has both)")
    summary = json.loads((run_dir / "summary.json").read_text())
    if summary.get("experiment") != "exp4":
        raise ValueError(f"run_dirs: {str(run_dir)!r} is not an Experiment 4 run ({summary.get('experiment')!r})")
    return summary, stats.load_rows(run_dir / "results.jsonl")


def combine(run_dirs, *, n_boot: int = 2000, seed: int = 0, drop_diverged: bool = False) -> dict:
    """The ``n*(d)`` summary of Experiment 4 runs at different ``d`` (module doc).

    A seed whose training diverged at some N has an infinite test error there: its curve is
    above the threshold at that N (its ``n*`` is at a larger N, or censored above the grid when
    it diverges at the largest), and so is the seed-mean curve (``diverged`` lists them per
    learner and ``d``). ``drop_diverged=True`` leaves those ``(d, seed)`` out of that learner's
    points instead: the sample complexity of the runs that trained, a different (and more
    favourable) quantity, to be reported beside the first.

    Raises:
        ValueError: fewer than two runs, two runs at the same ``d``, runs of different
            hierarchies (a ``SHARED`` field differs), or a directory without a finished run.
    """
    from rbk import scaling, stats

    runs = [_load(p) for p in run_dirs]
    if len(runs) < 2:
        raise ValueError(f"run_dirs: need runs at two or more d, got {len(runs)}")
    ds = [int(s["instance"]["d"]) for s, _ in runs]
    if len(set(ds)) != len(ds):
        raise ValueError(f"run_dirs: one run per d, got d = {ds}")
    ref = runs[0][0]["instance"]
    for s, _ in runs[1:]:
        diff = [k for k in SHARED if s["instance"].get(k) != ref.get(k)]
        if diff:
            raise ValueError(f"run_dirs: the runs are of different hierarchies ({', '.join(diff)} differ)")
    order = sorted(range(len(runs)), key=lambda i: ds[i])
    thr = {ds[i]: float(runs[i][0]["threshold"]) for i in order}
    learners = []
    for i in order:
        learners += [lr for lr in runs[i][0]["n_star"] if lr not in learners]
    bounds, n_star, diverged = {}, {}, {}
    for lr in learners:
        mine = []
        for i in order:
            sel = stats.select([r for r in runs[i][1] if r["learner"] == lr], keys=("experiment", "learner", "n", "seed"))
            mine += [dict(r, n=r.get("labels") or r["n"]) for r in sel]
        bad = {(r["d"], r["seed"]) for r in mine if r["diverged"]}
        diverged[lr] = {str(d): sorted(s_ for d_, s_ in bad if d_ == d) for d in sorted({d for d, _ in bad})}
        if drop_diverged:
            mine = [r for r in mine if (r["d"], r["seed"]) not in bad]
        if mine:
            bounds[lr] = stats.seed_bounds(mine, thr)
            n_star[lr] = {str(d): stats.n_star(rows, thr[d], n_boot=n_boot)
                          for (d,), rows in sorted(stats.group_by(mine, "d").items())}  # fmt: skip
    pred = {}
    for i in order:
        p = runs[i][0].get("predicted", {}).get("ntk-deep", {}).get(str(ds[i]))
        if p is not None and p.get("n_star") is not None:
            pred[ds[i]] = float(p["n_star"])
    n_star["ntk-deep (predicted)"] = {str(d): pred.get(d) for d in sorted(thr)}

    def estimate(lr, d):
        v = (n_star.get(lr) or {}).get(str(d))
        e = None if v is None else v.get("estimate")
        return e if isinstance(e, float) and math.isfinite(e) else None

    ratio = {}
    for d in sorted(thr):
        deep = [e for e in (estimate(lr, d) for lr in DEEP) if e is not None]
        ratio[str(d)] = pred[d] / min(deep) if deep and d in pred else None
    slopes = {}
    for lr, b in bounds.items():
        fit = None if all(math.isinf(hi) for _, hi in b.values()) else scaling.bounds_slope(b)
        if fit is not None:
            slopes[lr] = dict(fit, bounds=[[k[0], k[1], *b[k]] for k in sorted(b)])
    if len(pred) >= 2:
        s, a = stats.loglog_slope(sorted(pred), [pred[d] for d in sorted(pred)])
        slopes["ntk-deep (predicted)"] = {"slope": s, "intercept": a, "ds": sorted(pred)}
    comparisons = []
    for net in [lr for lr in DEEP if lr in bounds]:
        pred_b = {k: (pred[k[0]], pred[k[0]]) for k in bounds[net] if k[0] in pred}
        for other, ob in (("ntk-deep (predicted)", pred_b), ("two-stage", bounds.get("two-stage", {}))):
            shared = sorted(set(ob) & set(bounds[net]))
            if len({k[0] for k in shared}) < 2:
                continue
            res = scaling.paired_slope_difference({k: ob[k] for k in shared}, {k: bounds[net][k] for k in shared},
                                                  n_boot=n_boot, seed=seed)  # fmt: skip
            comparisons.append({"first": other, "second": net, **res})
    return {"experiment": "exp4", "what": "n*(d) at the deepest threshold", "ds": sorted(thr),
            "instance": {k: ref.get(k) for k in SHARED}, "thresholds": {str(d): v for d, v in thr.items()},
            "n_star": n_star, "n_star_counts": "labels (network, two-stage); the NTK's predicted n* in training points",
            "ratio_ntk_over_deep": ratio, "slopes": slopes, "comparisons": comparisons, "diverged": diverged,
            "drop_diverged": bool(drop_diverged),
            "runs": [str(Path(run_dirs[i])) for i in order]}  # fmt: skip


def format_table(out: dict) -> str:
    """The printed table of :func:`combine`'s output."""
    ds = out["ds"]
    lines = ["n*(d) at the deepest threshold (labels; NTK: predicted from its spectrum)",
             f"{'learner':22s}" + "".join(f" | {'d=' + str(d):>30s}" for d in ds) + f" | {'slope':>6s}"]  # fmt: skip
    for lr, by_d in out["n_star"].items():
        cells = []
        for d in ds:
            v = by_d.get(str(d))
            if v is None:
                cells.append("-")
            elif isinstance(v, (int, float)):
                cells.append(f"{v:.3g}")
            elif v.get("censored") in ("never_below", "below_at_min_n"):
                cells.append(f"{'>' if v['censored'] == 'never_below' else '<'} {v.get('bound', math.nan):.3g}")
            else:
                ci = v.get("ci95") or [math.nan, math.nan]
                cells.append(f"{v['estimate']:.3g} [{ci[0]:.3g}, {ci[1]:.3g}]")
        sl = out["slopes"].get(lr, {}).get("slope")
        lines.append(f"{lr:22s}" + "".join(f" | {c:>30s}" for c in cells) + (f" | {sl:6.2f}" if sl is not None else f" | {'-':>6s}"))
    lines.append("NTK / best deep: " + ", ".join(f"d={d}: {v:.1f}x" if v else f"d={d}: -"
                                                 for d, v in out["ratio_ntk_over_deep"].items()))  # fmt: skip
    bad = {lr: v for lr, v in out.get("diverged", {}).items() if v}
    if bad:
        lines.append("diverged (d: seeds): " + "; ".join(f"{lr} " + ", ".join(f"{d}: {s}" for d, s in v.items())
                                                       for lr, v in bad.items())
                     + (" (left out)" if out.get("drop_diverged") else " (their n* censored above the grid)"))
    for c in out["comparisons"]:
        ci = c["difference"]["ci95"] or [math.nan, math.nan]
        if c["difference"]["mean"] is None:
            lines.append(f"slope {c['first']} - {c['second']}: no slope (a learner's points are all censored)")
            continue
        lines.append(f"slope {c['first']} - {c['second']}: {c['difference']['mean']:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"
                     f" ({c['pairs']} (d, seed) pairs)")
    return "\n".join(lines)


def plot(out: dict, out_dir) -> tuple:
    """``exp4_nstar_d.png/.pdf``: ``n*`` against ``d`` (log-log), per learner its per-seed points
    (censored ones drawn at their bound, open, with an arrow up) and its fitted line; the NTK's
    predicted ``n*`` dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from rbk.plots import save

    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    colors = {"deep-joint": "C0", "deep-progressive": "C4", "two-stage": "C7", "ntk-deep": "C3"}
    ds = np.array(out["ds"], float)
    for i, (lr, fit) in enumerate(out["slopes"].items()):
        c = colors.get(lr.split(" ")[0], f"C{i}")
        if "bounds" in fit:
            pts = np.array(fit["bounds"], float)  # d, seed, lo, hi
            exact = pts[:, 2] == pts[:, 3]
            jit = 1 + 0.01 * (pts[:, 1] - pts[:, 1].mean())
            ax.scatter(pts[exact, 0] * jit[exact], pts[exact, 2], color=c, s=12, alpha=0.6)
            cens = ~exact & np.isinf(pts[:, 3])
            ax.scatter(pts[cens, 0] * jit[cens], pts[cens, 2], facecolors="none", edgecolors=c, s=20, marker="^")
        if fit.get("slope") is not None:
            ax.plot(ds, np.exp(fit["intercept"]) * ds ** fit["slope"], color=c, ls="--" if "predicted" in lr else "-",
                    label=f"{lr}: slope {fit['slope']:.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("input dimension d")
    ax.set_ylabel("n* at the deepest threshold (labels)")
    ax.set_title("Experiment 4: n*(d)")
    ax.legend(fontsize=7)
    paths = save(fig, out_dir, "exp4_nstar_d")
    plt.close(fig)
    return paths
