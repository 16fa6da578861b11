"""Running one cell of a concept-class sweep: a compiled network training call
(:func:`run_net_cell`) or one kernel / random-feature fit (:func:`run_kernel_cell`), on the data
set every learner of a seed shares (:func:`dataset`). The rows are built by :mod:`rbk.learners`
(:func:`rbk.learners.sgd_rows`, :func:`rbk.learners.ridge_rows`), from :func:`base_row`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rbk.experiments.concept_class.learners import NET_KIND, learner
from rbk.experiments.concept_class.planner import Cell
from rbk.learners import KERNEL_BLOCK, kernel_fit, random_features_fit, ridge_rows

if TYPE_CHECKING:  # annotations only (the study imports this module)
    from rbk.experiments.concept_class.study import SweepSpec

def dataset(spec: SweepSpec, alpha: float, beta: float, n: int, seed: int):
    """The data set of instance ``(alpha, beta)``, size ``n`` and seed ``seed``: the same for every learner."""
    from rbk.data import make_dataset, seed_keys

    return make_dataset(
        seed_keys(seed)[0], spec.target(alpha, beta), n, n_val=spec.n_val, n_test=spec.n_test,
        distribution=spec.distribution, noise=spec.noise,
    )  # fmt: skip


def base_row(spec: SweepSpec, cell: Cell, alpha: float, beta: float, seed: int, threshold: float) -> dict:
    """The fields every row of ``cell`` on instance ``(alpha, beta)`` and seed ``seed`` starts from
    (the learner's own fields, ``lr``, ``wd``, ``ridge``, still ``None``)."""
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

    from rbk.data import seed_keys, stack
    from rbk.models import get_model

    model = get_model(cell.arch, cell.width, spec.d, spec.k)
    data = stack([dataset(spec, a, b, cell.n, s) for a, b, s in cell.slots])
    thresholds = {(a, b): spec.target(a, b).threshold for a, b, _ in cell.slots}
    keys = jnp.stack([seed_keys(s)[1] for _, _, s in cell.slots])

    def base(i: int) -> dict:
        a, b, s = cell.slots[i]
        return base_row(spec, cell, a, b, s, thresholds[a, b])

    return learner(cell.learner).run(data, keys, model=model, lrs=list(cell.lrs), wds=list(cell.wds),
                                     cfg=spec.train_config(), base=base, record=("timing",), devices=devices,
                                     progress=progress)  # fmt: skip


def run_kernel_cell(spec: SweepSpec, cell: Cell) -> list[dict]:
    """Fit a kernel (or random-feature) learner on one data set; one row per ridge. The rows' wall
    time counts building the kernel (or drawing the network) and the fit."""
    from rbk import kernels

    (a, b, s), = cell.slots
    ds = dataset(spec, a, b, cell.n, s)
    base = base_row(spec, cell, a, b, s, spec.target(a, b).threshold)
    record = ("ridge_abs", "diverged", "timing", "solver")
    t0 = time.perf_counter()
    if cell.kind == "rf":
        import jax

        from rbk.data import seed_keys
        from rbk.models import get_model

        model = get_model(cell.arch, cell.width, spec.d, spec.k)
        key = jax.random.split(seed_keys(s)[1])[0]  # the trained network's initialisation
        out, _ = random_features_fit(model, model.init(key), ds, spec.ridges)
    else:
        kfn = kernels.kernel_fn(cell.arch, W_std=spec.W_std, b_std=spec.b_std)
        solver = kernels.choose_solver(cell.n, kfn)  # dense up to N = 20000, matrix-free above
        out, _ = kernel_fit(kfn, ds, spec.ridges, get=cell.kind, block_size=KERNEL_BLOCK, solver=solver)
    return ridge_rows(out, base, record=record, wall=time.perf_counter() - t0)
