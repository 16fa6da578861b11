"""Learners behind one protocol: a registry (:data:`LEARNERS`, :func:`get`, :func:`names`) of
named learners, each with its kind, the grid it selects over, how it runs on a cell's data and
the row fields it records; and the row builders the registry is made of, usable on their own:

* :mod:`rbk.learners.kernel`: any kernel (or random-feature model) as a learner, by ridge
  (:func:`kernel_rows`, :func:`random_features_rows`, :func:`ridge_rows`, :func:`selected_row`), and
  the exact-kernel fits' block size and memory (:data:`KERNEL_BLOCK`, :func:`kernel_cell_bytes`);
* :mod:`rbk.learners.networks`: networks trained by :mod:`rbk.train` (:func:`sgd_rows`,
  :func:`train_rows`, :func:`regime_rows`, :func:`two_stage_rows`);
* :mod:`rbk.learners.crossval`: selection inside the training labels, k-fold cross-validation
  for any of them (:func:`cross_validated`, :func:`fold_dataset`, :func:`fold_bounds`).
"""

from __future__ import annotations

from rbk.learners.crossval import CV_FIELDS, cross_validated, fold_bounds, fold_dataset
from rbk.learners.kernel import (KERNEL_BLOCK, kernel_cell_bytes, kernel_fit, kernel_rows, random_features_fit, random_features_rows, ridge_rows,
                                 selected_row)
from rbk.learners.networks import regime_rows, sgd_rows, train_rows, two_stage_rows
from rbk.learners.registry import ERRORS, KINDS, LEARNERS, Learner, get, names

__all__ = [
    "ERRORS", "KINDS", "LEARNERS", "Learner", "get", "names",
    "KERNEL_BLOCK", "kernel_cell_bytes", "kernel_fit", "kernel_rows", "random_features_fit", "random_features_rows", "ridge_rows", "selected_row",
    "regime_rows", "sgd_rows", "train_rows", "two_stage_rows",
    "CV_FIELDS", "cross_validated", "fold_bounds", "fold_dataset",
]  # fmt: skip
