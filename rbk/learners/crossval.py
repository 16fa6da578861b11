"""Selection inside the training samples: k-fold cross-validation for any registered learner.

A sample complexity counts every label a learner uses, selection included. :func:`cross_validated`
therefore never reads a label outside the ``N`` training points of ``data``: it splits them into
``folds`` contiguous blocks (the points are i.i.d., so contiguous blocks are random ones), runs the
learner ``folds`` times, each time trained on all blocks but one and validated on the one left
out, averages each setting's held-out error over the blocks (weighted by block size: every point
is held out once), then runs the learner once more on all ``N`` points. Its rows are those of the
final run, one per setting of the learner's grid, with ``val_error`` replaced by the setting's
cross-validation error, so selection by ``val_error`` (:func:`rbk.stats.select`) picks the
cross-validated setting and reports that setting's test error when trained on all ``N``.

The data's own validation split is never read (nor passed on): the final run validates on the
first block (inside ``N``), a value that is then overwritten. The test split is passed only to
the final run, whose test labels give ``test_error`` alone.

The learner's key is the same in every run (the same initialisation, drawn network, ...), so the
only thing that changes between the runs is which labelled points are seen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from rbk._checks import check_int

#: Row fields :func:`cross_validated` adds: the folds and each setting's held-out errors per fold.
CV_FIELDS = ("cv_folds", "cv_errors")


def fold_bounds(n: int, folds: int) -> list[tuple[int, int]]:
    """``folds`` contiguous ``(start, stop)`` blocks covering ``range(n)``, sizes differing by at most 1."""
    n = check_int("n", n, lo=2)
    folds = check_int("folds", folds, lo=2, hi=n)
    edges = [round(i * n / folds) for i in range(folds + 1)]
    return [(edges[i], edges[i + 1]) for i in range(folds)]


def _take(a, idx):
    import jax.numpy as jnp

    return jnp.take(a, jnp.asarray(idx), axis=-2)


def fold_dataset(data, start: int, stop: int, *, test: bool = False):
    """The :class:`rbk.data.Dataset` trained on ``data``'s training points outside ``[start, stop)``
    and validated on those inside; its test split is ``data``'s (``test=True``) or the held-out block
    again (no test label is read)."""
    from rbk.data import Dataset

    n = data.x_train.shape[-2]
    keep = np.r_[0:start, stop:n]
    held = np.arange(start, stop)
    xv, yv = _take(data.x_train, held), _take(data.y_train, held)
    xt, yt = (data.x_test, data.y_test) if test else (xv, yv)
    return Dataset(_take(data.x_train, keep), _take(data.y_train, keep), xv, yv, xt, yt)


def _setting(row, grid: Sequence[str]) -> tuple:
    return tuple(None if row.get(g) is None else round(float(row[g]), 12) for g in grid)


def cross_validated(run: Callable, data, key, *, folds: int, grid: Sequence[str], **settings) -> list[dict]:
    """The rows of ``run(data, key, **settings)`` trained on all ``N`` training points of ``data``,
    each with ``val_error`` its setting's ``folds``-fold cross-validation error inside those points.

    Args:
      run: a learner's ``run`` (:data:`rbk.learners.LEARNERS`), one row per setting of its grid.
      data: an :class:`rbk.data.Dataset`; its validation split is ignored.
      key: the learner's key (the same in every run).
      folds: blocks, ``2 <= folds <= N``.
      grid: the row fields naming a setting (the learner's ``grid``, e.g. ``('eta', 'ridge')``).
      settings: passed to every run.

    Returns:
      The final run's rows, each with ``val_error`` (the mean held-out error, ``inf`` if any
      block's is not finite), ``cv_folds`` and ``cv_errors`` (per block) added.
    """
    n = data.x_train.shape[-2]
    bounds = fold_bounds(n, folds)
    errs: dict[tuple, list[float]] = {}
    for start, stop in bounds:
        for row in run(fold_dataset(data, start, stop), key, **settings):
            errs.setdefault(_setting(row, grid), []).append(float(row["val_error"]))
    start, stop = bounds[0]
    first = np.arange(start, stop)  # the final run validates on the first block (inside N)
    final = data._replace(x_val=_take(data.x_train, first), y_val=_take(data.y_train, first))
    sizes = np.array([b - a for a, b in bounds], float)
    rows = []
    for row in run(final, key, **settings):
        per = errs.get(_setting(row, grid))
        if per is None or len(per) != len(bounds):
            raise RuntimeError(f"setting {dict(zip(grid, _setting(row, grid)))} is not in every fold's rows")
        cv = float(np.dot(per, sizes) / sizes.sum()) if all(map(math.isfinite, per)) else math.inf
        rows.append(dict(row, val_error=cv, cv_folds=len(bounds), cv_errors=per))
    return rows
