"""Experiment 3b's new-head fits, every label counted: the selection is inside the ``n2`` samples.

``n2*`` is the number of labelled samples of the new head ``g'`` a learner needs, so nothing a
learner uses may come from outside its ``n2`` training points. :func:`fit_head` therefore
selects each learner's setting (its ridge; for ``scratch`` the first step's learning rate and
the ridge) by ``k``-fold cross-validation inside those ``n2`` points
(:func:`rbk.learners.crossval.cross_validated`, ``k = min(folds, n2)`` contiguous blocks),
takes the setting of least cross-validation error and reports that setting refitted on all
``n2`` points; its test error is on the test set (unlabelled for the learner: test labels give
``test_error`` alone). The same rule for every learner (:data:`GRIDS` names each one's grid).

The head's pool (:func:`transfer_pool`) therefore holds a single validation point, which a
:class:`rbk.data.Dataset` must have and nothing reads. The source features (learned once per
(``d``, seed) on ``N1`` source labels, which ``n2`` does not count) keep their own selection on a
validation set of the source (``--n-val``).
"""

from __future__ import annotations

import math

#: learner -> the row fields that name one setting of its grid (selected by cross-validation)
GRIDS = {"transfer": ("ridge",), "ntk-2nn": ("ridge",), "rf-2nn": ("ridge",), "scratch": ("eta", "ridge")}


def keys(d: int, seed: int):
    """Data keys (source, transfer pool) and learner keys (two_stage, random features, scratch) of (d, seed)."""
    import jax

    from rbk import data

    k_data, k_train = data.seed_keys(seed)
    kd, kt = jax.random.fold_in(k_data, d), jax.random.fold_in(k_train, d)
    return jax.random.fold_in(kd, 0), jax.random.fold_in(kd, 1), *jax.random.split(kt, 3)


def transfer_pool(spec, head, d: int, seed: int):
    """One pool of labelled points of ``g'`` per (``d``, seed): the training sets are its prefixes
    (:func:`subset`), so every learner and every ``n2`` sees the same points; ``spec.n_test`` test
    points and one validation point (never read: the selection is inside ``n2``)."""
    from rbk import data

    return data.make_dataset(keys(d, seed)[1], head, max(spec.n2s), n_val=1, n_test=spec.n_test)


def subset(spec, pool, n2: int):
    """The first ``n2`` training points of ``pool``; its (unread) validation point and whole test set."""
    from rbk.data import Dataset

    return Dataset(pool.x_train[:n2], pool.y_train[:n2], pool.x_val, pool.y_val, pool.x_test, pool.y_test)


def head_run(spec, learner: str, d: int, features: dict | None = None):
    """``run(data, key) -> rows``: ``learner`` fitted on ``data``'s training points, one row per
    setting of its grid (:data:`GRIDS`) with ``train_error``, ``val_error``, ``test_error`` (on
    ``data``'s splits), ``ridge`` and, for ``scratch``, ``eta`` (a multiple of ``sqrt(d)``)."""
    from rbk import kernels, models, train
    from rbk.learners import kernel_fit, random_features_fit, ridge_rows, two_stage_rows

    if learner == "transfer":
        return lambda data, key: ridge_rows(train.fit_readout(features, data, spec.ridges))
    if learner == "ntk-2nn":
        kfn = kernels.kernel_fn("2nn", b_std=spec.b_std)
        return lambda data, key: ridge_rows(kernel_fit(kfn, data, spec.kernel_ridges, get="ntk")[0])
    if learner == "rf-2nn":
        model = models.get_model("2nn", spec.width, d, 1, parameterization="ntk", b_std=spec.b_std)
        return lambda data, key: ridge_rows(random_features_fit(model, model.init(key), data, spec.ridges)[0])
    if learner == "scratch":
        cfg = train.two_stage_config(spec.width, tuple(m * math.sqrt(d) for m in spec.eta_mults), ridges=spec.ridges)
        return lambda data, key: two_stage_rows(data, key, cfg, eta_scale=math.sqrt(d))
    raise ValueError(f"learner must be one of {list(GRIDS)}, got {learner!r}")


def least_cv_error(rows) -> dict:
    """The row of least ``val_error`` (the first on ties); a copy of the first row with every error
    ``inf`` and no setting where none is finite (e.g. every step size diverged)."""
    ok = [r for r in rows if math.isfinite(r["val_error"])]
    if ok:
        return min(ok, key=lambda r: r["val_error"])
    return dict(rows[0], train_error=math.inf, val_error=math.inf, test_error=math.inf, ridge=math.nan, eta=math.nan)


def fit_head(spec, learner: str, ds, d: int, seed: int, features: dict | None = None) -> dict:
    """Fit ``g'`` on ``ds``'s ``n2`` training points with ``learner``, the setting chosen by
    ``min(spec.folds, n2)``-fold cross-validation inside them and refitted on all of them:
    ``{train_error, val_error (the CV error), test_error, ridge, eta, cv_folds}`` (``eta``: NaN
    except for ``scratch``)."""
    from rbk.learners.crossval import cross_validated

    _, _, _, k_rf, k_scratch = keys(d, seed)
    folds = min(spec.folds, ds.n)
    rows = cross_validated(head_run(spec, learner, d, features), ds, k_scratch if learner == "scratch" else k_rf,
                           folds=folds, grid=GRIDS[learner])  # fmt: skip
    row = least_cv_error(rows)
    out = {k: float(row[k]) for k in ("train_error", "val_error", "test_error", "ridge")}
    return dict(out, eta=float(row.get("eta", math.nan)), cv_folds=folds)


def cv_fits(n2: int, folds: int, n_test: int) -> list[tuple[int, int]]:
    """``(training points, evaluated points)`` of each fit :func:`fit_head` makes at ``n2`` with
    ``folds`` folds: one per fold (evaluated on its held-out block), then the refit on all ``n2``
    (evaluated on the first block and the ``n_test`` test points); for the dry run's cost."""
    from rbk.learners.crossval import fold_bounds

    bounds = fold_bounds(n2, folds)
    return [(n2 - (b - a), b - a) for a, b in bounds] + [(n2, bounds[0][1] + n_test)]
