"""The summaries of Experiments 1 and 2 (``summary.json``): per (learner, N) seed statistics,
``n*`` and the network-kernel separation (Experiment 1), the (alpha, beta) table of error over
threshold (Experiment 2). The statistics themselves (selection, CIs, ``n*``, bootstrap) are
:mod:`rbk.stats`'; its conventions hold here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from rbk import stats
from rbk.stats import jsonable, learner_sort_key, load_rows, n_star, select, separation




def threshold_of(rows) -> float:
    """The threshold of rows of one target: their ``threshold`` column (the target's
    ``Target.threshold``, recorded in every row by the sweep), else ``k * alpha^2`` from rows with
    one ``k`` and one ``alpha``."""
    recorded = [v for v in stats.unique_values(rows, "threshold") if v is not None]
    if recorded and all(stats.is_finite(r.get("threshold")) for r in rows):
        if len(recorded) != 1:
            raise ValueError(f"threshold needs rows of one target, got thresholds {recorded}; pass threshold=")
        return float(recorded[0])
    # rows without it (result files written before rows recorded the threshold): the concept
    # class's k * alpha^2, the one family those files can hold
    ks = [v for v in stats.unique_values(rows, "k") if v is not None]
    alphas = [v for v in stats.unique_values(rows, "alpha") if v is not None]
    if len(ks) != 1 or len(alphas) != 1:
        raise ValueError(f"threshold needs rows with one k and one alpha, got k={ks}, alpha={alphas}; pass threshold=")
    return float(ks[0]) * float(alphas[0]) ** 2


def separation_ratio(nstar: Mapping[str, Mapping], kinds: Mapping[str, str], predicted: Mapping | None = None,
                     network: str = "3resnet") -> dict:
    """``n*(best kernel) / n*(network)`` with its basis (see :func:`summarize_exp1`).

    Each kernel learner's ``n*`` is its measured estimate where the measured curve crosses the
    threshold within the grid (basis ``"measured"``), else its predicted ``n_star`` from
    ``predicted`` (basis ``"predicted"``); the best kernel has the smallest. ``value`` is null
    (with a ``note``) when the network has no measured crossing or no kernel has an ``n*``;
    ``lower_bound`` then bounds the ratio from below where the censoring allows it.
    """
    predicted = predicted or {}
    out = {"value": None, "basis": None, "kernel": None, "kernel_n_star": None, "network": network,
           "network_n_star": None, "lower_bound": None, "note": None}  # fmt: skip
    cands = []
    for lr, kind in kinds.items():
        if kind not in ("ntk", "nngp"):
            continue
        m = nstar.get(lr) or {}
        if m.get("censored") == "none" and stats.is_finite(m.get("estimate")):
            cands.append((float(m["estimate"]), lr, "measured"))
        elif stats.is_finite((predicted.get(lr) or {}).get("n_star")):
            cands.append((float(predicted[lr]["n_star"]), lr, "predicted"))
    net = nstar.get(network) or {}
    if cands:
        out["kernel_n_star"], out["kernel"], out["basis"] = min(cands)
    if network not in nstar:
        out["note"] = f"no {network} learner in the sweep"
    elif net.get("censored") == "none" and stats.is_finite(net.get("estimate")):
        out["network_n_star"] = float(net["estimate"])
        if cands:
            out["value"] = out["kernel_n_star"] / out["network_n_star"]
        else:
            out["note"] = "no kernel learner crosses the threshold (measured, or predicted up to N = 1e9)"
            if predicted:
                out["lower_bound"] = 1e9 / out["network_n_star"]
    elif net.get("censored") == "below_at_min_n":
        out["note"] = f"{network} is below the threshold already at the smallest N ({net.get('bound'):g})"
        if cands:
            out["lower_bound"] = out["kernel_n_star"] / float(net["bound"])
    else:
        out["note"] = f"{network} does not get below the threshold within the sweep"
    return out


def summarize_exp1(
    rows,
    threshold: float | None = None,
    instance: Mapping | None = None,
    *,
    predicted: Mapping | None = None,
    confidence: float = 0.95,
    n_boot: int = 2000,
    boot_seed: int = 0,
) -> dict:
    """Experiment 1 summary (test error against N), ready for ``summary.json``.

    ``rows``: all rows of the sweep (every setting; :func:`select` is applied here) or a path.
    ``threshold`` defaults to the rows' (:func:`threshold_of`), ``instance`` to their
    ``d, k, g_degree, alpha, beta`` (and ``experiment`` if unique).

    ``predicted``: per exact-kernel learner ``{"n_star": float or None, "curve": {N: error}, ...}``
    (:func:`rbk.theory.predict_learners`), carried as is.

    Returns ``{"threshold", "instance", "rows", "n_star", "separation", "predicted",
    "separation_ratio"}``:
    ``rows``: per (learner, N) ``learner, kind, arch, n, test_error_mean, test_error_ci95,
    seeds, diverged_seeds, test_error_min, test_error_max, val_error_mean``; ``n_star``: per
    learner ``estimate, ci95, censored, cross_share, bound, final_below``; ``separation``: see
    :func:`separation`; ``predicted`` as given (``{}`` if none); ``separation_ratio``:
    ``{"value", "basis", "kernel", "kernel_n_star", "network", "network_n_star", "lower_bound",
    "note"}`` from :func:`separation_ratio` (``basis`` ``"measured"`` or ``"predicted"``: where
    the best kernel's ``n*`` comes from). Non-finite numbers are ``None``.
    """
    rows = load_rows(rows)
    if not rows:
        raise ValueError("summarize_exp1 needs at least one row")
    if predicted is not None and not isinstance(predicted, Mapping):
        raise ValueError(f"predicted must be a mapping learner -> {{'n_star', 'curve'}}, got {type(predicted).__name__}")
    sel = select(rows)
    if threshold is None:
        threshold = threshold_of(sel)
    threshold = float(threshold)
    if not (threshold > 0 and math.isfinite(threshold)):
        raise ValueError(f"threshold must be a finite positive number, got {threshold}")
    inst = dict(instance) if instance is not None else stats.instance_from_rows(sel)

    cells = stats.group_by(sel, "learner", "n")
    stats.check_one_per_seed(cells, "learner, n")
    learners = sorted(
        {(r["learner"], r["kind"], r["arch"]) for r in sel}, key=lambda t: learner_sort_key(*t)
    )
    out_rows, nstar = [], {}
    for learner, kind, arch in learners:
        mine = [r for r in sel if r["learner"] == learner]
        for n in sorted({r["n"] for r in mine}):
            st = stats.seed_stats(cells[(learner, n)], confidence)
            out_rows.append({"learner": learner, "kind": kind, "arch": arch, "n": int(n), **st})
        nstar[learner] = n_star(mine, threshold, n_boot=n_boot, boot_seed=boot_seed, confidence=confidence)
    summary = {
        "threshold": threshold,
        "instance": inst,
        "rows": out_rows,
        "n_star": nstar,
        "separation": separation(sel, confidence),
        "predicted": dict(predicted or {}),
        "separation_ratio": separation_ratio(nstar, {lr: kind for lr, kind, _ in learners}, predicted),
    }
    return jsonable(summary)


def summarize_exp2(rows, instance: Mapping | None = None, *, confidence: float = 0.95) -> dict:
    """Experiment 2 summary: one entry per (learner, N, alpha, beta) of the selected rows.

    Entries: ``learner, kind, arch, n, alpha, beta, k, threshold`` (the rows', :func:`threshold_of`: ``k alpha^2``),
    ``
    test_error_mean, test_error_ci95, seeds, diverged_seeds, ratio (= mean / threshold),
    ratio_ci95``. ``ratio`` is null when ``alpha = 0`` (threshold 0) or every seed diverged.
    ``instance`` defaults to the rows' ``d, k, g_degree`` plus the grids ``alphas, betas, ns``.
    """
    rows = load_rows(rows)
    if not rows:
        raise ValueError("summarize_exp2 needs at least one row")
    sel = select(rows)
    for r in sel:
        if not stats.is_finite(r.get("alpha")) or not stats.is_finite(r.get("beta")) or r.get("k") is None:
            raise ValueError(f"exp2 rows need finite alpha, beta and k: {r!r}")
    if instance is None:
        inst = stats.instance_from_rows(sel, ("d", "k", "g_degree"))
        inst["alphas"] = sorted({float(r["alpha"]) for r in sel})
        inst["betas"] = sorted({float(r["beta"]) for r in sel})
        inst["ns"] = sorted({int(r["n"]) for r in sel})
    else:
        inst = dict(instance)
    cells = stats.group_by(sel, "learner", "n", "alpha", "beta")
    stats.check_one_per_seed(cells, "learner, n, alpha, beta")
    entries = []
    for (learner, n, alpha, beta), rs in cells.items():
        ks = {r["k"] for r in rs}
        if len(ks) != 1:
            raise ValueError(f"cell {(learner, n, alpha, beta)} mixes k values {sorted(ks)}")
        k = ks.pop()
        thr = threshold_of(rs)
        st = stats.seed_stats(rs, confidence)
        lo, hi = st["test_error_ci95"]
        ok = thr > 0
        entries.append(
            {
                "learner": learner,
                "kind": rs[0]["kind"],
                "arch": rs[0]["arch"],
                "n": int(n),
                "alpha": float(alpha),
                "beta": float(beta),
                "k": int(k),
                "threshold": thr,
                "test_error_mean": st["test_error_mean"],
                "test_error_ci95": [lo, hi],
                "seeds": st["seeds"],
                "diverged_seeds": st["diverged_seeds"],
                "ratio": st["test_error_mean"] / thr if ok else math.nan,
                "ratio_ci95": [lo / thr, hi / thr] if ok else [math.nan, math.nan],
            }
        )
    entries.sort(key=lambda e: (learner_sort_key(e["learner"], e["kind"], e["arch"]), e["n"], e["alpha"], e["beta"]))
    return jsonable({"instance": inst, "rows": entries})


def is_exp2_summary(summary: Mapping) -> bool:
    """True for :func:`summarize_exp2` output, false for :func:`summarize_exp1` output."""
    return isinstance(summary, Mapping) and "rows" in summary and "n_star" not in summary
