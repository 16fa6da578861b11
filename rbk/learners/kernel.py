"""Any kernel (or random-feature model) as a learner: fit by ridge on one data set, one row per ridge.

:func:`kernel_fit` and :func:`random_features_fit` run :func:`rbk.kernels.fit_predict` /
:func:`rbk.kernels.random_features_fit_predict` and time the call; :func:`ridge_rows` turns
their result into rows (one per ridge, in the ridges' order), :func:`selected_row` into the one
row of the ridge chosen on validation. :func:`kernel_rows` and :func:`random_features_rows` do
both. What a row records beyond ``ridge`` and the three errors is chosen by ``record``:

* ``'ridge_abs'``: the absolute ridge (``out['ridges'][i]``);
* ``'diverged'``: ``True`` where an error is not finite;
* ``'timing'``: ``call_wall_s`` and ``run_s`` (the call's wall time) and ``compile_s = 0``;
* ``'solver'``: the solver (``'dense'`` / ``'cg'``), and for ``'cg'`` the row's ``iterations``
  and ``residual``.
"""

from __future__ import annotations

import math
import time
from typing import Mapping, Sequence

from rbk._checks import check_list

SPLITS = ("train", "val", "test")
#: What :func:`ridge_rows` may record beyond ``ridge`` and the errors (see the module docstring).
RECORD = ("ridge_abs", "diverged", "timing", "solver")
#: Rows per streamed kernel block in the experiments' exact-kernel fits: on a 2-core CPU 512 is
#: ~1.4-1.9x faster than rbk.kernels' default 2048 (cache-resident blocks); the numbers do not depend on it.
KERNEL_BLOCK = 512


def kernel_cell_bytes(n: int) -> int:
    """Host bytes of an exact-kernel fit at ``n`` with ``block_size=KERNEL_BLOCK`` (:func:`rbk.kernels.fit_bytes`,
    the one estimate), with the solver ``solver='auto'`` picks (:func:`rbk.kernels.choose_solver`)."""
    from rbk.kernels import choose_solver, fit_bytes

    return fit_bytes(n, KERNEL_BLOCK, solver=choose_solver(n))


def kernel_fit(kernel, data, ridges: Sequence[float], *, get: str = "ntk", block_size: int | None = None,
               solver: str | None = None, tol: float | None = None) -> tuple[dict, float]:
    """``(rbk.kernels.fit_predict(kernel, data, ridges, get=get, ...), wall seconds)``.

    ``block_size``, ``solver`` and ``tol`` (the matrix-free solver's relative residual) are passed
    on only when given (else ``fit_predict``'s defaults: ``solver='auto'`` is
    :func:`rbk.kernels.choose_solver`'s choice)."""
    from rbk import kernels

    kw = {k: v for k, v in (("block_size", block_size), ("solver", solver), ("tol", tol)) if v is not None}
    t0 = time.perf_counter()
    out = kernels.fit_predict(kernel, data, ridges, get=get, **kw)
    return out, time.perf_counter() - t0


def random_features_fit(model, params, data, ridges: Sequence[float]) -> tuple[dict, float]:
    """``(rbk.kernels.random_features_fit_predict(model, params, data, ridges), wall seconds)``."""
    from rbk import kernels

    t0 = time.perf_counter()
    out = kernels.random_features_fit_predict(model, params, data, ridges)
    return out, time.perf_counter() - t0


def ridge_rows(out: Mapping, base: Mapping | None = None, *, record: Sequence[str] = (),
               wall: float | None = None) -> list[dict]:
    """One row per ridge of a fit's result ``out``: ``base``'s fields, then ``train_error``,
    ``val_error``, ``test_error``, ``ridge`` (the relative ridge, ``out['lams'][i]``), ``test_cov``
    (the sample covariance over test points of squared error and squared label, where ``out`` has
    ``test_covs``: a control variate's ingredient) and what ``record`` names (``RECORD``; ``'timing'`` needs ``wall``)."""
    record = check_list("record", record, lambda n, v: _check_record(n, v), empty=True)
    if "timing" in record and wall is None:
        raise ValueError("wall (the fit's seconds) is required when record includes 'timing'")
    rows = []
    for i, lam in enumerate(out["lams"]):
        r = dict(base or {})
        errs = {sp: float(out[f"{sp}_errors"][i]) for sp in SPLITS}
        r.update({f"{sp}_error": e for sp, e in errs.items()})
        r["ridge"] = float(lam)
        if "test_covs" in out:  # the control variate's covariance of squared error and squared label
            r["test_cov"] = float(out["test_covs"][i])
        if "ridge_abs" in record:
            r["ridge_abs"] = float(out["ridges"][i])
        if "diverged" in record:
            r["diverged"] = not all(map(math.isfinite, errs.values()))
        if "timing" in record:
            r.update(call_wall_s=wall, compile_s=0.0, run_s=wall)
        if "solver" in record:
            r["solver"] = out.get("solver")
            if out.get("solver") == "cg":
                r.update(iterations=int(out["iterations"][i]), residual=float(out["residuals"][i]))
        rows.append(r)
    return rows


def selected_row(out: Mapping) -> dict:
    """The row of the ridge chosen on validation: ``train_error``, ``val_error``, ``test_error``
    (floats) and ``ridge`` (``out['lam']``, NaN where there is none, e.g. a diverged
    :func:`rbk.train.two_stage`). Works on every result with those keys (``fit_predict``,
    ``random_features_fit_predict``, :func:`rbk.train.fit_readout`, :func:`rbk.train.two_stage`)."""
    return {"train_error": float(out["train_error"]), "val_error": float(out["val_error"]),
            "test_error": float(out["test_error"]), "ridge": float(out.get("lam", math.nan))}


def kernel_rows(kernel, data, ridges: Sequence[float], *, get: str = "ntk", base: Mapping | None = None,
                record: Sequence[str] = (), block_size: int | None = None, solver: str | None = None,
                tol: float | None = None) -> list[dict]:
    """Kernel ridge with ``kernel`` (a kernel function, e.g. :func:`rbk.kernels.kernel_fn`) on
    ``data``: :func:`kernel_fit`, then :func:`ridge_rows`."""
    out, wall = kernel_fit(kernel, data, ridges, get=get, block_size=block_size, solver=solver, tol=tol)
    return ridge_rows(out, base, record=record, wall=wall)


def random_features_rows(model, params, data, ridges: Sequence[float], *, base: Mapping | None = None,
                         record: Sequence[str] = ()) -> list[dict]:
    """The read-out of a drawn network by ridge: :func:`random_features_fit`, then :func:`ridge_rows`."""
    out, wall = random_features_fit(model, params, data, ridges)
    return ridge_rows(out, base, record=record, wall=wall)


def _check_record(name: str, value) -> str:
    if value not in RECORD:
        raise ValueError(f"{name} must be among {list(RECORD)}, got {value!r}")
    return value
