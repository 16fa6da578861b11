"""Dense float64 solvers on a stored kernel matrix: Cholesky kernel ridge (eigh pseudo-inverse with a
warning only on failure) and gradient flow on the MSE through one ``eigh``."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from rbk._checks import check_array, check_real
from rbk.kernels.checks import check_square, check_targets


class KernelSolveWarning(RuntimeWarning):
    """Cholesky failed (matrix not numerically positive definite; eigh pseudo-inverse used), or
    conjugate gradients missed their tolerance (the message gives the residuals)."""


def _fortran_view(a: np.ndarray) -> np.ndarray:
    """A Fortran-ordered view of the symmetric ``a`` (its transpose if C-ordered): LAPACK then works in place."""
    return a if a.flags.f_contiguous else a.T


def _restore_lower(af: np.ndarray, diag: np.ndarray, block: int = 1024) -> None:
    """Rebuild the lower triangle of the Fortran-ordered ``af`` from its (intact) strict upper one."""
    n = af.shape[0]
    for j0 in range(0, n, block):
        j1 = min(j0 + block, n)
        blk = af[j0:j1, j0:j1]
        blk[...] = np.triu(blk) + np.triu(blk, 1).T
        if j1 < n:
            af[j1:, j0:j1] = af[j0:j1, j1:].T
    af[np.diag_indices(n)] = diag


#: Above this size the Cholesky factorisation runs on one BLAS thread. The multithreaded
#: ``dpotrf`` of the OpenBLAS that numpy and scipy wheels bundle (0.3.30 / 0.3.31, scipy 1.17)
#: crashes the process (segmentation fault) at n = 16000 and 20000 on a 2-core AMD EPYC here, where
#: n = 12000 and one thread at 20000 are fine (reproduced with numpy.linalg.cholesky too). One
#: thread costs about 1.7x at n = 20000 (50 s against 29 s) and changes no number's meaning
#: (LAPACK's result does not depend on its thread count beyond rounding).
SINGLE_THREAD_CHOLESKY_N = 12000


#: Below this size too one BLAS thread: a thread team costs more than it saves on small
#: factorisations, and on a busy machine far more (measured on the 2-core CI machine beside two busy
#: processes: n = 400, 11 ms on one thread against 237 ms on two; n = 1000, 32 against 184 ms).
SMALL_CHOLESKY_N = 2048
_CONTROLLER = []


def _blas_threads_for_cholesky(n: int):
    """A context that limits BLAS to one thread when ``n > SINGLE_THREAD_CHOLESKY_N`` or ``n <=
    SMALL_CHOLESKY_N`` (threadpoolctl, the maintained way to reach a bundled OpenBLAS; one
    controller, made on first use), else does nothing."""
    import contextlib

    if SMALL_CHOLESKY_N < n <= SINGLE_THREAD_CHOLESKY_N:
        return contextlib.nullcontext()
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # an environment without it (the neural-tangents oracle's pin): small sizes as they are
            if n <= SMALL_CHOLESKY_N:
                return contextlib.nullcontext()
            raise
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")


def solve_inplace(a: np.ndarray, y: np.ndarray, diag: np.ndarray) -> tuple[np.ndarray, str]:
    """Solve ``a alpha = y`` for the symmetric float64 ``a``, destroying ``a``.

    ``diag`` is ``a``'s diagonal (used to rebuild ``a`` if the Cholesky factorisation fails,
    since LAPACK only overwrites one triangle). Cholesky first; on failure a
    :class:`KernelSolveWarning` and the eigh pseudo-inverse (eigenvalues below
    ``n * eps * max`` dropped).
    """
    n = a.shape[0]
    af = _fortran_view(a)
    try:
        with _blas_threads_for_cholesky(n):
            c = scipy.linalg.cho_factor(af, lower=True, overwrite_a=True, check_finite=False)
        return scipy.linalg.cho_solve(c, y, check_finite=False), "cholesky"
    except np.linalg.LinAlgError:
        pass
    warnings.warn(
        "Cholesky failed (kernel matrix not numerically positive definite); using the eigh "
        "pseudo-inverse instead. A larger ridge avoids this.",
        KernelSolveWarning,
        stacklevel=3,
    )
    _restore_lower(af, diag)
    w, v = scipy.linalg.eigh(af, lower=True, overwrite_a=True, check_finite=False)
    keep = w > max(float(w[-1]), 0.0) * n * np.finfo(np.float64).eps
    coef = (v[:, keep].T @ y) / w[keep][:, None]
    return v[:, keep] @ coef, "eigh"


def ridge_solve(k_train_train, y_train, ridge: float = 0.0, *, overwrite: bool = False) -> np.ndarray:
    """``alpha = (K + ridge I)^{-1} y`` in float64, one factorisation for all outputs.

    Cholesky (scipy, in place on a working copy, or on ``k_train_train`` itself when
    ``overwrite=True`` and it is a contiguous writeable float64 numpy array, whose content is
    then destroyed). If the factorisation fails, a :class:`KernelSolveWarning` is issued and
    the eigh pseudo-inverse is used, so ``ridge=0`` gives the ridgeless (minimum-norm
    interpolating) solution.

    Args:
      k_train_train: ``(n, n)`` symmetric PSD kernel.
      y_train: ``(n,)`` or ``(n, k)`` targets.
      ridge: absolute ridge ``>= 0``.
      overwrite: allow destroying ``k_train_train``.

    Returns:
      ``alpha`` with the shape of ``y_train``.
    """
    K = check_square("k_train_train", k_train_train)
    n = K.shape[0]
    y, vec = check_targets("y_train", y_train, n)
    ridge = check_real("ridge", ridge, lo=0.0)
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite must be True or False, got {overwrite!r}")
    inplace = (
        overwrite
        and isinstance(k_train_train, np.ndarray)
        and K.dtype == np.float64
        and (K.flags.c_contiguous or K.flags.f_contiguous)
        and K.flags.writeable
    )
    work = K if inplace else np.array(K, np.float64, order="C")
    diag = work.diagonal() + ridge
    work[np.diag_indices(n)] = diag
    alpha, _ = solve_inplace(work, y, diag)
    return alpha[:, 0] if vec else alpha


def _gf_factors(w: np.ndarray, r: float, t: float, norm: float) -> np.ndarray:
    """Spectral factor of ``Kr^{-1} (I - exp(-t Kr / norm))`` for eigenvalues ``w`` of ``K``, ``Kr = K + r``."""
    lam = np.maximum(w + r, 0.0)
    if np.isinf(t):
        keep = lam > max(float(lam.max()), 0.0) * lam.size * np.finfo(np.float64).eps
        return np.where(keep, 1.0 / np.where(keep, lam, 1.0), 0.0)
    e = -np.expm1(-lam * t / norm)
    return np.where(lam > 0, e / np.where(lam > 0, lam, 1.0), t / norm)


def gradient_flow_predict(
    k_train_train,
    y_train,
    t,
    *,
    k_test_train=None,
    fx_train_0=0.0,
    fx_test_0=0.0,
    learning_rate: float = 1.0,
    ridge: float = 0.0,
):
    r"""Outputs of gradient flow on the MSE at time ``t`` (``nt.predict.gradient_descent_mse``).

    Convention (neural-tangents'): loss ``L = 1/(2 N) sum_{i,a} (f_a(x_i) - y_ia)^2`` with
    ``N = y_train.size`` (``n k``), ``dtheta/dt = -learning_rate * grad L``; in function space,
    with ``Kr = K + ridge I`` and ``E(t) = exp(-learning_rate t Kr / N)``::

        f_train(t) = f_train(0) + K Kr^{-1} (I - E(t)) (y - f_train(0))
        f_test(t)  = f_test(0) + K_test,train Kr^{-1} (I - E(t)) (y - f_train(0))

    (for ``ridge = 0``: ``f_train(t) = y + E(t) (f_train(0) - y)``). ``t = inf`` (or ``None``) is
    kernel ridge (Cholesky); finite ``t`` uses ``eigh`` of ``K`` (eigenvalues clipped at 0; a
    zero eigenvalue contributes its limit ``t / N``).

    Args:
      k_train_train: ``(n, n)``.
      y_train: ``(n,)`` or ``(n, k)``.
      t: ``None``, a scalar or a 1-d array of times ``>= 0`` (``inf`` allowed), in units of the
        learning rate, as in neural-tangents.
      k_test_train: ``(n_test, n)`` or ``None``.
      fx_train_0, fx_test_0: outputs at ``t = 0`` (scalars, or arrays shaped like the
        predictions); 0 for the infinite-width mean predictor.
      learning_rate: ``> 0``.
      ridge: absolute diagonal regulariser ``>= 0``.

    Returns:
      ``(fx_train_t, fx_test_t)``, ``fx_test_t`` is ``None`` without ``k_test_train``; for an
      array ``t`` both have a leading time axis.
    """
    K = check_square("k_train_train", k_train_train)
    n = K.shape[0]
    y, vec = check_targets("y_train", y_train, n)
    learning_rate = check_real("learning_rate", learning_rate, lo=0.0, lo_open=True)
    ridge = check_real("ridge", ridge, lo=0.0)
    t_arr = np.asarray(np.inf if t is None else t, np.float64)
    if t_arr.ndim > 1 or t_arr.size < 1 or np.any(np.isnan(t_arr)) or np.any(t_arr < 0):
        raise ValueError(f"t must be None, a time >= 0 or a 1-d array of them, got {t!r}")
    Kt = None
    if k_test_train is not None:
        Kt = check_array("k_test_train", k_test_train, ndim=2)
        if Kt.shape[1] != n:
            raise ValueError(f"k_test_train must have shape (n_test, {n}), got {Kt.shape}")
    f0 = _offset("fx_train_0", fx_train_0, y.shape, np.shape(y_train))
    ft0 = None if Kt is None else _offset("fx_test_0", fx_test_0, (Kt.shape[0], y.shape[1]), (Kt.shape[0],) + np.shape(y_train)[1:])
    r = y - f0
    ts = np.atleast_1d(t_arr) * learning_rate
    norm = float(y.size)
    coefs = []
    if np.all(np.isinf(ts)):
        coefs = [ridge_solve(K, r, ridge)] * ts.size
    else:
        w, v = scipy.linalg.eigh(np.asarray(K, np.float64), check_finite=False)
        vr = v.T @ r
        coefs = [v @ (_gf_factors(w, ridge, float(tt), norm)[:, None] * vr) for tt in ts]
    Kf = np.asarray(K, np.float64)
    train = np.stack([f0 + Kf @ c for c in coefs])
    test = None if Kt is None else np.stack([ft0 + np.asarray(Kt, np.float64) @ c for c in coefs])
    if vec:
        train = train[..., 0]
        test = None if test is None else test[..., 0]
    if t_arr.ndim == 0:
        train = train[0]
        test = None if test is None else test[0]
    return train, test


def _offset(name: str, value, shape2d: tuple[int, int], shape_user: tuple) -> np.ndarray:
    arr = check_array(name, value)
    if arr.ndim == 0:
        return np.full(shape2d, float(arr))
    if arr.shape not in (tuple(shape_user), tuple(shape2d)):
        raise ValueError(f"{name} must be a scalar or have shape {tuple(shape_user)}, got {arr.shape}")
    return np.asarray(arr, np.float64).reshape(shape2d)


def coef_path(K: np.ndarray, R: np.ndarray, ridges, t, learning_rate, norm):
    """Coefficients ``Kr^{-1} R`` (or ``Kr^{-1} (I - E(t)) R``) for each absolute ridge; ``K`` intact.

    Returns ``(coefs (L, N, c), solvers)``. Kernel ridge (``t is None``): one working copy of
    ``K``, one in-place Cholesky per ridge. Gradient flow: one ``eigh``.
    """
    N = K.shape[0]
    coefs, solvers = [], []
    if t is None:
        work = np.empty_like(K, order="C")
        for r in ridges:
            np.copyto(work, K)
            diag = np.diagonal(K) + r
            work[np.diag_indices(N)] = diag
            c, how = solve_inplace(work, R, diag)
            coefs.append(c)
            solvers.append(how)
        del work
    else:
        w, v = scipy.linalg.eigh(K, check_finite=False)
        vr = v.T @ R
        for r in ridges:
            coefs.append(v @ (_gf_factors(w, r, t * learning_rate, norm)[:, None] * vr))
            solvers.append("eigh")
        del v
    return np.stack(coefs), solvers
