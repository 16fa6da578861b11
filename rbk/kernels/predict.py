"""Predictors with the ridge chosen on validation: kernel regression (:func:`fit_predict`, dense or
matrix-free), random features and the linearised network; :func:`fit_bytes`, the one memory estimate."""

from __future__ import annotations

import time
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rbk._checks import check_choice, check_int, check_memory, check_real, host_memory_bytes
from rbk.kernels.analytic import ClosedFormKernel
from rbk.kernels.assemble import blocks, bucket, pad_rows
from rbk.kernels.checks import (DEFAULT_BLOCK, GETS, check_block, check_dataset, check_model_params, check_ridges,
                                check_time, x64)
from rbk.kernels.empirical import empirical_kernel_fn
from rbk.kernels.solvers.cg import (CG_BLOCK, CG_MAX_ITER, CG_RANK, CG_TOL, PRECISIONS, cg_fit_predict,
                                    choose_solver)
from rbk.kernels.solvers.dense import coef_path
from rbk.models import Model

#: Default ridge grid, relative to the kernel scale ``mean(diag K_train)``; 0 is the ridgeless limit.
DEFAULT_RIDGES = (1e-6, 1e-4, 1e-2, 1e-1, 1.0)
#: ``solver`` of :func:`fit_predict`.
SOLVERS = ("auto", "dense", "cg")


def _sq_error(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean over points of the squared error summed over outputs."""
    return float(np.mean(np.sum((pred - y) ** 2, axis=-1)))



def _scale(K: np.ndarray) -> float:
    """Kernel scale: ``mean(diag K)`` (neural-tangents' ``trace(K) / n``)."""
    return float(np.mean(np.diagonal(K)))


def _apply_coefs(K_rows: np.ndarray, coefs: np.ndarray) -> np.ndarray:
    """``(rows, N) x (L, N, c) -> (L, rows, c)`` with one matrix product."""
    L, N, c = coefs.shape
    flat = coefs.transpose(1, 0, 2).reshape(N, L * c)
    return (K_rows @ flat).reshape(K_rows.shape[0], L, c).transpose(1, 0, 2)


def error_label_covariance(pred: np.ndarray, y: np.ndarray) -> float:
    """Sample covariance over test points of the squared error and the squared label (each summed
    over outputs): a control variate's ingredient (with an exact ``E y^2``, the test error
    ``mean r^2 - beta (mean y^2 - E y^2)``, ``beta = cov / var(y^2)``, has the least variance)."""
    r2 = np.sum((pred - y) ** 2, axis=-1)
    y2 = np.sum(y * y, axis=-1)
    return float(np.mean((r2 - r2.mean()) * (y2 - y2.mean()))) if r2.size > 1 else float("nan")


def _select(lams, ridges, scale, solvers, pred, ys, t, learning_rate, extra) -> dict:
    errs = {s: [_sq_error(p, ys[s]) for p in pred[s]] for s in ("train", "val", "test")}
    best = int(np.argmin(errs["val"]))
    out = {
        "val_error": errs["val"][best],
        "test_error": errs["test"][best],
        "train_error": errs["train"][best],
        "ridge": ridges[best],
        "lam": lams[best],
        "kernel_scale": scale,
        "lams": list(lams),
        "ridges": list(ridges),
        "val_errors": errs["val"],
        "test_errors": errs["test"],
        "train_errors": errs["train"],
        "test_covs": [error_label_covariance(p, ys["test"]) for p in pred["test"]],
        "solvers": list(solvers),
        "n_train": int(ys["train"].shape[0]),
        "n_val": int(ys["val"].shape[0]),
        "n_test": int(ys["test"].shape[0]),
        "t": t,
        "learning_rate": learning_rate,
    }
    out.update(extra)
    return out


def fit_bytes(n: int, block_size: int | None = None, *, gradient_flow: bool = False, solver: str = "dense") -> int:
    """Estimated host bytes of :func:`fit_predict` with ``n`` training points (the one place this is estimated).

    Dense: the float64 ``(n, n)`` training Gram and one working copy (kernel ridge) or the
    eigenvectors and a working copy (gradient flow, ``t`` given), plus two streamed
    ``block_size x n`` blocks. Matrix-free (``solver='cg'``): four ``n x rank`` float64 arrays of
    the Nystrom preconditioner (rank :data:`CG_RANK`) and 1 GiB for the blocks and iterates.
    """
    if solver == "cg":
        return 4 * 8 * n * min(n, CG_RANK) + 2**30
    block = DEFAULT_BLOCK if block_size is None else block_size
    return (3 if gradient_flow else 2) * 8 * n * n + 2 * 8 * block * max(n, block)


def _kernel_rows(kfn, x, x_train, get, block):
    """Row blocks ``(i0, i1, K(x[i0:i1], x_train))`` of a (possibly foreign) kernel function."""
    for i0, i1 in blocks(x.shape[0], block):
        if isinstance(kfn, ClosedFormKernel):
            kb = kfn(x[i0:i1], x_train, get=get, block_size=block)
        else:
            kb = kfn(x[i0:i1], x_train, get)
        yield i0, i1, np.asarray(kb, np.float64)


def fit_predict(
    kernel_fn: Callable,
    dataset,
    ridges: Sequence[float] = DEFAULT_RIDGES,
    *,
    get: str = "ntk",
    t: float | None = None,
    learning_rate: float = 1.0,
    block_size: int | None = None,
    return_predictions: bool = False,
    solver: str = "auto",
    tol: float = CG_TOL,
    rank: int = CG_RANK,
    max_iter: int = CG_MAX_ITER,
    precision: str = "mixed",
) -> dict:
    """Kernel regression on ``dataset`` with the ridge chosen on the validation split.

    The absolute ridge is ``lam * mean(diag K_train)`` for each relative ``lam`` in ``ridges``
    (at most 5; ``lam = 0`` is the ridgeless limit, min-norm interpolation through the
    pseudo-inverse if Cholesky fails). The ``k`` outputs share one factorisation. The
    selected ``lam`` minimises the validation error; test error is reported for it (and, as
    diagnostics only, for every ``lam``). Error = mean over points of the squared error
    summed over the ``k`` outputs.

    With ``t`` (a time, in units of ``learning_rate``) the predictor is instead gradient flow
    from zero output for time ``t`` (:func:`gradient_flow_predict`'s convention), one ``eigh``.

    Memory: the ``(n, n)`` float64 training Gram plus one working copy; validation and test
    kernels are streamed in ``block_size`` rows (N = 20000: about 6.4 GB + blocks).

    Args:
      kernel_fn: an exact kernel (:class:`KernelFn`, :class:`DescribedKernelFn`), or any
        ``kfn(x1, x2, get) -> (n1, n2)`` (e.g. neural-tangents' ``kernel_fn``).
      dataset: an :class:`rbk.data.Dataset` (2-d arrays, no seed axis).
      ridges: relative ridges (1 to 5 values ``>= 0``).
      get: ``'ntk'`` or ``'nngp'``.
      t, learning_rate: gradient-flow time (``None``: converged / kernel ridge) and rate.
      block_size: rows per streamed block (default 2048).
      return_predictions: also return ``'pred_val'`` and ``'pred_test'`` of the selected ridge.
      solver: ``'dense'`` (Cholesky of the stored Gram), ``'cg'`` (matrix-free preconditioned
        conjugate gradients, the same problem without storing the Gram: an exact kernel and
        kernel ridge only) or ``'auto'`` (:func:`choose_solver`: ``'cg'``
        above ``DENSE_MAX_N = 20000`` points or when two Grams would take half the memory).
      tol, rank, max_iter, precision: the ``'cg'`` solver's relative residual ``> 0`` (each
        ridge, checked in float64), Nystrom preconditioner rank, iteration budget per ridge,
        and ``'mixed'`` (float32 kernel blocks in the iterations, float64 refinement) or
        ``'float64'``. A run that misses ``tol`` warns (:class:`KernelSolveWarning`).

    Returns:
      dict with ``val_error, test_error, train_error, ridge, lam, kernel_scale`` and the
      per-``lam`` lists ``lams, ridges, val_errors, test_errors, train_errors, solvers``, plus
      sizes, ``get``, ``kernel`` (description), ``solver`` and ``seconds``; with ``'cg'`` also
      the per-``lam`` lists ``iterations`` and ``residuals`` and the details ``cg``.
    """
    t0 = time.perf_counter()
    if not callable(kernel_fn):
        raise ValueError(f"kernel_fn must be callable (e.g. rbk.kernels.kernel_fn(...)), got {kernel_fn!r}")
    check_choice("get", get, GETS)
    lams = check_ridges(ridges)
    t, learning_rate = check_time(t, learning_rate)
    block = check_block(block_size)
    check_choice("solver", solver, SOLVERS)
    tol = check_real("tol", tol, lo=0.0, lo_open=True)
    rank = check_int("rank", rank, lo=1)
    max_iter = check_int("max_iter", max_iter, lo=1)
    check_choice("precision", precision, PRECISIONS)
    ds = check_dataset(dataset)
    xtr, ytr = ds["x_train"], ds["y_train"]
    n = xtr.shape[0]
    if solver == "auto":
        solver = choose_solver(n, kernel_fn, t)
    need = fit_bytes(n, block, gradient_flow=t is not None, solver=solver)
    check_memory(f"a kernel fit with N = {n} training points (dataset.x_train)", need, host_memory_bytes(),
                 "fit on fewer training points")
    if solver == "cg":
        if not isinstance(kernel_fn, ClosedFormKernel):
            raise ValueError("solver='cg' needs an exact rbk kernel as kernel_fn (rbk.kernels.kernel_fn, described_kernel_fn "
                             "or model_kernel_fn: it assembles blocks itself)")
        if t is not None:
            raise ValueError("solver='cg' solves kernel ridge only: t must be None (gradient flow needs solver='dense')")
        pred, ridge_abs, scale, info = cg_fit_predict(kernel_fn, ds, lams, get, tol=tol, rank=rank, max_iter=max_iter,
                                                       precision=precision, block=CG_BLOCK)
        ys = {s: ds[f"y_{s}"] for s in ("train", "val", "test")}
        out = _select(lams, ridge_abs, scale, ["cg"] * len(lams), pred, ys, t, learning_rate,
                      {"get": get, "kernel": kernel_fn.describe(), "method": "kernel", "solver": "cg",
                       "iterations": info["iterations"], "residuals": info["residuals"], "cg": info})
        if return_predictions:
            best = out["lams"].index(out["lam"])
            out["pred_val"], out["pred_test"] = pred["val"][best], pred["test"][best]
        out["seconds"] = time.perf_counter() - t0
        return out
    if isinstance(kernel_fn, ClosedFormKernel):
        K = kernel_fn(xtr, None, get=get, block_size=block)
    else:
        K = np.array(kernel_fn(xtr, None, get), np.float64)
    scale = _scale(K)
    ridge_abs = [lam * scale for lam in lams]
    coefs, solvers = coef_path(K, ytr, ridge_abs, t, learning_rate, float(ytr.size))
    pred = {"train": _apply_coefs(K, coefs)}
    del K
    for split in ("val", "test"):
        x = ds[f"x_{split}"]
        p = np.empty((len(lams), x.shape[0], ytr.shape[1]))
        for i0, i1, kb in _kernel_rows(kernel_fn, x, xtr, get, block):
            p[:, i0:i1] = _apply_coefs(kb, coefs)
        pred[split] = p
    ys = {s: ds[f"y_{s}"] for s in ("train", "val", "test")}
    desc = kernel_fn.describe() if hasattr(kernel_fn, "describe") else repr(kernel_fn)
    out = _select(lams, ridge_abs, scale, solvers, pred, ys, t, learning_rate,
                  {"get": get, "kernel": desc, "method": "kernel", "solver": "dense"})
    if return_predictions:
        best = out["lams"].index(out["lam"])
        out["pred_val"], out["pred_test"] = pred["val"][best], pred["test"][best]
    out["seconds"] = time.perf_counter() - t0
    return out


_features_jit = jax.jit(lambda model, p, x: model.features(p, x), static_argnums=0)
_apply_jit = jax.jit(lambda model, p, x: model.apply(p, x), static_argnums=0)


def _rows_f64(fn, model, params, x, block=4096) -> np.ndarray:
    """``fn(model, params, x)`` in float64, by bucketed row blocks."""
    b = bucket(x.shape[0], block)
    with x64():
        p64 = {n: jnp.asarray(v, jnp.float64) for n, v in params.items()}
        parts = [np.asarray(fn(model, p64, jnp.asarray(pad_rows(x[i0:i1], b))), np.float64)[: i1 - i0]
                 for i0, i1 in blocks(x.shape[0], b)]
    return np.concatenate(parts, axis=0)


def random_features_fit_predict(model: Model, params, dataset, ridges: Sequence[float] = DEFAULT_RIDGES,
                                *, return_predictions: bool = False) -> dict:
    """Random features: train only the read-out ``A`` of a drawn network, by ridge regression.

    Features ``phi = model.features(params, x)`` (float64); the read-out is fitted from zero
    (not from the initial ``A``): ``min_w |phi w - y|^2 + ridge |w|^2``, ``ridge = lam *
    mean_i |phi(x_i)|^2`` (relative to the feature kernel's scale, so the read-out's fixed
    prefactor does not matter). Primal (``m x m``) when the width is below ``n``, dual
    (``n x n``) otherwise; both give the same predictor, ``lam = 0`` the minimum-norm
    least-squares one. Same selection and return dict as :func:`fit_predict`.
    """
    t0 = time.perf_counter()
    params = check_model_params(model, params)
    lams = check_ridges(ridges)
    ds = check_dataset(dataset)
    if ds["x_train"].shape[1] != model.d or ds["y_train"].shape[1] != model.k:
        raise ValueError(f"dataset must have d = {model.d} inputs and k = {model.k} outputs (the model's)")
    phi = {s: _rows_f64(_features_jit, model, params, ds[f"x_{s}"]) for s in ("train", "val", "test")}
    P, Y = phi["train"], ds["y_train"]
    n, m = P.shape
    scale = float(np.sum(P * P) / n)  # mean diag of the feature kernel P P^T
    ridge_abs = [lam * scale for lam in lams]
    if m < n:  # primal: (P^T P + ridge I) w = P^T y
        weights, solvers = coef_path(P.T @ P, P.T @ Y, ridge_abs, None, 1.0, 1.0)
    else:  # dual: w = P^T (P P^T + ridge I)^{-1} y
        coefs, solvers = coef_path(P @ P.T, Y, ridge_abs, None, 1.0, 1.0)
        weights = np.stack([P.T @ c for c in coefs])
    pred = {s: _apply_coefs(phi[s], weights) for s in phi}
    ys = {s: ds[f"y_{s}"] for s in ("train", "val", "test")}
    out = _select(lams, ridge_abs, scale, solvers, pred, ys, None, None,
                  {"method": "random_features", "model": model.describe(), "primal": bool(m < n)})
    if return_predictions:
        best = out["lams"].index(out["lam"])
        out["pred_val"], out["pred_test"] = pred["val"][best], pred["test"][best]
    out["seconds"] = time.perf_counter() - t0
    return out


def linearized_fit_predict(
    model: Model,
    params,
    dataset,
    ridges: Sequence[float] = DEFAULT_RIDGES,
    *,
    t: float | None = None,
    learning_rate: float = 1.0,
    outputs: str = "trace",
    trainable: Sequence[str] | None = None,
    layer_rates: Mapping[str, float] | None = None,
    return_predictions: bool = False,
) -> dict:
    """Lazy training: the first-order Taylor model of the drawn network around ``params``.

    ``f_lin(x) = f(x; params) + J(x) (theta - params)`` trained on the MSE is kernel regression
    with the empirical NTK ``Theta`` and offset ``f_0``: ``f_0(x*) + Theta(x*, X) (Theta + ridge
    I)^{-1} (y - f_0(X))`` (``ridge``: weight decay towards the initialisation; ``ridge -> 0``:
    gradient flow to convergence), or at time ``t`` the gradient-flow solution of
    :func:`gradient_flow_predict`. ``outputs='full'`` uses the exact ``(n k) x (n k)`` NTK
    (the linearised net exactly); ``'trace'`` (default) shares the output-averaged ``(n, n)``
    NTK across outputs, as neural-tangents' ``trace_axes=(-1,)`` (exact as width -> inf).

    Cost: ``(n + n_val + n_test) * k`` Jacobian-vector products over the training set, so this
    is for small ``n`` (a few thousand) and moderate width. ``trainable`` / ``layer_rates``:
    as in :func:`empirical_kernel_fn` (default: what the model trains).
    """
    t0 = time.perf_counter()
    params = check_model_params(model, params)
    lams = check_ridges(ridges)
    t, learning_rate = check_time(t, learning_rate)
    ds = check_dataset(dataset)
    if ds["x_train"].shape[1] != model.d or ds["y_train"].shape[1] != model.k:
        raise ValueError(f"dataset must have d = {model.d} inputs and k = {model.k} outputs (the model's)")
    ekf = empirical_kernel_fn(model, trainable=trainable, layer_rates=layer_rates, outputs=outputs)
    f0 = {s: _rows_f64(_apply_jit, model, params, ds[f"x_{s}"]) for s in ("train", "val", "test")}
    xtr = ds["x_train"]
    n, k = ds["y_train"].shape
    K = ekf(xtr, None, "ntk", params)
    R = ds["y_train"] - f0["train"]
    if outputs == "full":
        K = K.transpose(0, 2, 1, 3).reshape(n * k, n * k)
        R = R.reshape(n * k, 1)
    scale = _scale(K)
    ridge_abs = [lam * scale for lam in lams]
    coefs, solvers = coef_path(K, R, ridge_abs, t, learning_rate, float(n * k))

    def predict(x, base):
        kx = ekf(x, xtr, "ntk", params)
        if outputs == "full":
            kx = kx.transpose(0, 2, 1, 3).reshape(x.shape[0] * k, n * k)
            return base[None] + _apply_coefs(kx, coefs).reshape(len(lams), x.shape[0], k)
        return base[None] + _apply_coefs(kx, coefs)

    if outputs == "full":
        pred = {"train": f0["train"][None] + _apply_coefs(K, coefs).reshape(len(lams), n, k)}
    else:
        pred = {"train": f0["train"][None] + _apply_coefs(K, coefs)}
    del K
    for s in ("val", "test"):
        pred[s] = predict(ds[f"x_{s}"], f0[s])
    ys = {s: ds[f"y_{s}"] for s in ("train", "val", "test")}
    out = _select(lams, ridge_abs, scale, solvers, pred, ys, t, learning_rate,
                  {"method": "linearized", "model": model.describe(), "outputs": outputs,
                   "kernel": ekf.describe()})
    if return_predictions:
        best = out["lams"].index(out["lam"])
        out["pred_val"], out["pred_test"] = pred["val"][best], pred["test"][best]
    out["seconds"] = time.perf_counter() - t0
    return out
