"""Running one cell of a concept-class sweep: a compiled network training call
(:func:`run_net_cell`) or one kernel / random-feature fit (:func:`run_kernel_cell`), on the data
set every learner of a seed shares (:func:`dataset`)."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from rbk.experiments.concept_class.learners import NET_KIND
from rbk.experiments.concept_class.planner import Cell

if TYPE_CHECKING:  # annotations only (the study imports this module)
    from rbk.experiments.concept_class.study import SweepSpec

#: Rows per streamed kernel block in the sweep's kernel fits: on a 2-core CPU 512 is ~1.4-1.9x
#: faster than rbk.kernels' default 2048 (cache-resident blocks); the numbers do not depend on it.
KERNEL_BLOCK = 512


def dataset(spec: SweepSpec, alpha: float, beta: float, n: int, seed: int):
    """The data set of instance ``(alpha, beta)``, size ``n`` and seed ``seed``: the same for every learner."""
    from rbk.data import make_dataset, seed_keys

    return make_dataset(
        seed_keys(seed)[0], spec.target(alpha, beta), n, n_val=spec.n_val, n_test=spec.n_test,
        distribution=spec.distribution, noise=spec.noise,
    )  # fmt: skip


def _base_row(spec: SweepSpec, cell: Cell, alpha: float, beta: float, seed: int, threshold: float) -> dict:
    return {
        "experiment": spec.experiment,
        "learner": cell.learner,
        "arch": cell.arch,
        "kind": cell.kind,
        "n": cell.n,
        "seed": seed,
        "width": cell.width,
        "epochs": spec.epochs if cell.kind == NET_KIND else None,
        "lr": None,
        "wd": None,
        "ridge": None,
        "alpha": alpha,
        "beta": beta,
        "d": spec.d,
        "k": spec.k,
        "g_degree": spec.g_degree,
        "threshold": threshold,
        "cell": cell.id,
        "members": cell.members,
    }


def run_net_cell(spec: SweepSpec, cell: Cell, devices=None, progress=None) -> list[dict]:
    """Train every member of a network cell in one compiled call; one row per member.

    ``progress``: a host function given counts of finished member-epochs (:func:`rbk.train.train`).
    """
    import jax.numpy as jnp

    from rbk import train
    from rbk.data import seed_keys, stack
    from rbk.models import get_model

    model = get_model(cell.arch, cell.width, spec.d, spec.k)
    data = stack([dataset(spec, a, b, cell.n, s) for a, b, s in cell.slots])
    thresholds = {(a, b): spec.target(a, b).threshold for a, b, _ in cell.slots}
    keys = jnp.stack([seed_keys(s)[1] for _, _, s in cell.slots])
    t0 = time.perf_counter()
    res = train.train(model, data, keys, list(cell.lrs), list(cell.wds), spec.train_config(), devices=devices,
                      progress=progress)
    wall = time.perf_counter() - t0
    fin = {s: res.final(s) for s in ("train", "val", "test")}
    rows = []
    for i, (a, b, s) in enumerate(cell.slots):
        for j, lr in enumerate(cell.lrs):
            for m, wd in enumerate(cell.wds):
                r = _base_row(spec, cell, a, b, s, thresholds[a, b])
                errs = {sp: float(fin[sp][i, j, m]) for sp in fin}
                div = bool(res.diverged[i, j, m]) or not all(math.isfinite(e) for e in errs.values())
                r.update(lr=lr, wd=wd, diverged=div, call_wall_s=wall, compile_s=res.compile_s, run_s=res.run_s)
                r.update({f"{sp}_error": e for sp, e in errs.items()})
                rows.append(r)
    return rows


def run_kernel_cell(spec: SweepSpec, cell: Cell) -> list[dict]:
    """Fit a kernel (or random-feature) learner on one data set; one row per ridge."""
    from rbk import kernels

    (a, b, s), = cell.slots
    ds = dataset(spec, a, b, cell.n, s)
    threshold = spec.target(a, b).threshold
    t0 = time.perf_counter()
    if cell.kind == "rf":
        import jax

        from rbk.data import seed_keys
        from rbk.models import get_model

        model = get_model(cell.arch, cell.width, spec.d, spec.k)
        params = model.init(jax.random.split(seed_keys(s)[1])[0])  # the trained network's initialisation
        out = kernels.random_features_fit_predict(model, params, ds, ridges=spec.ridges)
    else:
        kfn = kernels.kernel_fn(cell.arch, W_std=spec.W_std, b_std=spec.b_std)
        solver = kernels.choose_solver(cell.n, kfn)  # dense up to N = 20000, matrix-free above
        out = kernels.fit_predict(kfn, ds, ridges=spec.ridges, get=cell.kind, block_size=KERNEL_BLOCK, solver=solver)
    wall = time.perf_counter() - t0
    rows = []
    for i, lam in enumerate(out["lams"]):
        r = _base_row(spec, cell, a, b, s, threshold)
        errs = {sp: float(out[f"{sp}_errors"][i]) for sp in ("train", "val", "test")}
        r.update({f"{sp}_error": e for sp, e in errs.items()})
        r.update(ridge=float(lam), ridge_abs=float(out["ridges"][i]), diverged=not all(map(math.isfinite, errs.values())),
                 call_wall_s=wall, compile_s=0.0, run_s=wall, solver=out.get("solver"))  # fmt: skip
        if out.get("solver") == "cg":
            r.update(iterations=int(out["iterations"][i]), residual=float(out["residuals"][i]))
        rows.append(r)
    return rows
