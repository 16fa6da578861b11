"""Matrix-free kernel ridge: preconditioned conjugate gradients on ``(K + r I) A = Y``, ``K`` never stored.

Every product with ``K`` assembles it block by block on JAX's default device (``docs/kernels.md``,
section 10): on the cube ``{-1, 1}^d`` by a table of the kernel per Hamming distance (popcounts of
bit words), elsewhere by the closed form (:mod:`rbk.kernels.closed_form`). The preconditioner is a
Nystrom approximation; iterations run in float32 blocks with float64 iterative refinement
(``precision='mixed'``) or in float64.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rbk._checks import check_int, host_memory_bytes
from rbk.kernels.analytic import ClosedFormKernel
from rbk.kernels.assemble import bucket
from rbk.kernels.checks import GETS, x64
from rbk.kernels.closed_form import closed_form
from rbk.kernels.solvers.dense import KernelSolveWarning

#: ``precision`` of the iterations: float32 kernel blocks with float64 refinement, or float64 throughout.
PRECISIONS = ("mixed", "float64")
#: ``solver='auto'`` keeps the dense Cholesky path up to this N (and while its two Grams fit).
DENSE_MAX_N = 20000
#: Relative residual ``|Y - (K + r I) A|_F / |Y|_F`` each ridge must reach (checked in float64).
CG_TOL = 1e-6
#: Nystrom rank of the preconditioner (landmarks; capped at N).
CG_RANK = 2000
CG_MAX_ITER = 400
CG_BLOCK = (256, 4096)  # rows x columns of one kernel block in the products
_F32_FLOOR = 1e-5  # inner float32 iterations stop here; float64 refinement takes over
#: With ``precision='mixed'``, the float32 Gram (``4 N^2`` bytes) is computed once and kept when it
#: takes at most this fraction of the physical memory: the float32 iterations then multiply by it
#: instead of assembling ``K`` again (the float64 passes still assemble it on the fly).
CG_STORE_FRACTION = 0.4
_STORE_ROWS = 2048  # rows of K assembled per call while storing it
_MAX_REFINE = 4


def cube_words(x: np.ndarray) -> np.ndarray | None:
    """Rows of ``x`` as bit words ``(n, ceil(d/32))`` uint32 if every entry is exactly +-1, else None.

    On the cube every kernel of rbk depends on ``x . x' = d - 2 hamming(x, x')`` alone (the norms
    are all ``sqrt d``), and the Hamming distance is a popcount of the xor of the words.
    """
    if not np.all(np.abs(x) == 1.0):
        return None
    n, d = x.shape
    w = -(-d // 32)
    bits = np.zeros((n, w * 32), np.uint32)
    bits[:, :d] = x > 0
    return np.sum(bits.reshape(n, w, 32) << np.arange(32, dtype=np.uint32), axis=-1, dtype=np.uint32)


def cube_table(kfn: "ClosedFormKernel", d: int, get: str) -> np.ndarray:
    """The kernel at Hamming distance ``h = 0..d`` on ``{-1, 1}^d`` (float64, through the closed form;
    ``h = 0`` is a diagonal entry of the Gram, computed as such)."""
    z = np.ones((d + 1, d))
    z[np.tril_indices(d + 1, -1, d)] = -1.0  # row h: its first h entries are -1
    return np.asarray(kfn(z, None, get=get), np.float64)[0]


def _cube_block(rows, cols, table, ri, cj, row_diag):
    """Cube block: the Hamming distances (popcount of the xor'ed words) looked up in ``table``."""
    h = sum(jax.lax.population_count(rows[:, None, w] ^ cols[None, :, w]).astype(jnp.int32)
            for w in range(rows.shape[1]))
    return table[h]


@functools.lru_cache(maxsize=64)
def _closed_block(kfn: "ClosedFormKernel", get: str):
    """Closed-form block ``(rows, cols, table, ri, cj, row_diag)`` -> float64 ``(B, C)`` of ``kfn``;
    with ``row_diag``, the entries whose global row index equals the column index (``ri, cj``)
    are set to it (the diagonal of the Gram, computed apart)."""
    desc, rates = kfn.description, kfn.engine_rates

    def block(rows, cols, table, ri, cj, row_diag):
        wr, br, hr = (jnp.asarray(r, jnp.float64) for r in rates)
        nngp, ntk = closed_form(rows, cols, kfn.W_std, kfn.b_std, wr, br, hr, desc=desc, diag=False)
        kb = ntk if get == "ntk" else nngp
        return kb if row_diag is None else jnp.where(ri[:, None] == cj[None, :], row_diag[:, None], kb)

    return block


@functools.partial(jax.jit, static_argnames=("block", "f32", "same"))
def _kmv(rows, cols, v, table, row_diag, *, block, f32, same):
    """``K(rows, cols) @ v`` without storing K: ``rows (nb, B, .)``, ``cols (nc, C, .)``, ``v (nc, C, m)``.

    Each ``(B, C)`` block is built and multiplied at once; the sum over column blocks is float64.
    ``f32``: the block and its product in float32 (the sum stays float64).
    """
    nb, B = rows.shape[:2]
    nc, C = cols.shape[:2]
    vv = v.astype(jnp.float32) if f32 else v
    tab = table.astype(jnp.float32) if f32 else table

    def row(i):
        ri = i * B + jnp.arange(B)

        def body(j, acc):
            kb = block(rows[i], cols[j], tab, ri, j * C + jnp.arange(C), row_diag[i] if same else None)
            return acc + (kb @ vv[j]).astype(jnp.float64)

        return jax.lax.fori_loop(0, nc, body, jnp.zeros((B, v.shape[-1]), jnp.float64))

    return jax.lax.map(row, jnp.arange(nb)).reshape(nb * B, v.shape[-1])


@functools.partial(jax.jit, static_argnames=("block",))
def _krows(rows, cols, table, *, block):
    """The kernel ``K(rows, cols)`` itself, ``(nb * B, n_cols)`` (the Nystrom columns)."""
    B = rows.shape[1]
    return jax.lax.map(lambda r: block(r, cols, table, None, None, None), rows).reshape(rows.shape[0] * B, cols.shape[0])


def _pad_to(x, size: int):
    return jnp.concatenate([x, jnp.zeros((size - x.shape[0],) + x.shape[1:], x.dtype)]) if x.shape[0] < size else x


class KernelOperator:
    """Products with the training kernel ``K`` (``n x n``) and with ``K(x_eval, x_train)``, by blocks.

    Cube inputs (every entry exactly +-1, checked) use the popcount / table blocks, others the
    closed form. Arrays live on JAX's default device.
    """

    def __init__(self, kfn: "ClosedFormKernel", get: str, xtr: np.ndarray, block: tuple[int, int], *,
                 store_f32: bool = False):
        self.n, d = xtr.shape
        words = cube_words(xtr)
        self.cube = words is not None
        self.B, self.C = (bucket(self.n, block[0]), bucket(self.n, block[1]))
        self.table = jnp.asarray(cube_table(kfn, d, get) if self.cube else np.zeros(1))
        self.closed = _closed_block(kfn, get)
        self.block = _cube_block if self.cube else self.closed
        self.x = jnp.asarray(xtr)
        self.data = jnp.asarray(words) if self.cube else self.x
        self.cols = self._split(self.data, self.C)
        self.rows = self._split(self.data, self.B)
        if self.cube:
            self.diag = jnp.full(self.n, self.table[0])
        else:
            wr, br, hr = (jnp.asarray(r, jnp.float64) for r in kfn.engine_rates)
            one = lambda z: closed_form(z[None], z[None], kfn.W_std, kfn.b_std, wr, br, hr, desc=kfn.description,
                                        diag=True)
            self.diag = jax.jit(jax.vmap(lambda z: one(z)[GETS.index(get)][0, 0]))(self.x)
        self.row_diag = self._split(self.diag, self.B)
        self.k32 = self._stored() if store_f32 else None

    def _stored(self) -> np.ndarray:
        """The float32 Gram (diagonal set exactly), assembled in float64 ``_STORE_ROWS`` rows at a time."""
        out = np.empty((self.n, self.n), np.float32)
        step = max(1, _STORE_ROWS // self.B)
        for i in range(0, self.rows.shape[0], step):
            block = np.asarray(_krows(self.rows[i : i + step], self.data, self.table, block=self.block))
            lo = i * self.B
            hi = min(self.n, lo + block.shape[0])
            out[lo:hi] = block[: hi - lo]
        if not self.cube:
            out[np.arange(self.n), np.arange(self.n)] = np.asarray(self.diag, np.float32)
        return out

    @staticmethod
    def _split(a, b: int):
        m = -(-a.shape[0] // b) * b
        return _pad_to(a, m).reshape((m // b, b) + a.shape[1:])

    def matvec(self, v, *, f32: bool = False):
        """``K @ v`` for ``v (n, m)`` float64 (``f32``: float32 blocks and block products, or the
        stored float32 Gram's product)."""
        if f32 and self.k32 is not None:
            return jnp.asarray(self.k32 @ np.asarray(v, np.float32), jnp.float64)
        out = _kmv(self.rows, self.cols, self._split(v, self.C), self.table, self.row_diag, block=self.block,
                   f32=f32, same=not self.cube)
        return out[: self.n]

    def cross(self, x: np.ndarray, v):
        """``K(x, x_train) @ v`` in float64 (no diagonal: ``x`` is another sample)."""
        words = cube_words(x) if self.cube else None
        block, data, cols = (self.block, jnp.asarray(words), self.cols) if words is not None else \
            (self.closed, jnp.asarray(x), self._split(self.x, self.C))
        out = _kmv(self._split(data, self.B), cols, self._split(v, self.C), self.table, self.row_diag, block=block,
                   f32=False, same=False)
        return out[: x.shape[0]]

    def columns(self, idx: np.ndarray):
        """``K[:, idx]`` (float64, ``(n, len(idx))``)."""
        out = _krows(self.rows, self.data[idx], self.table, block=self.block)[: self.n]
        if not self.cube:  # the landmarks' own entries are diagonal entries
            out = out.at[jnp.asarray(idx), jnp.arange(len(idx))].set(self.diag[idx])
        return out


class _Nystrom:
    """Nystrom preconditioner of rank ``M`` (uniform landmarks, as Falkon): ``K ~ U diag(lam) U^T``.

    ``K_nm = K[:, S]``, ``K_mm = K[S, S]`` (``|S| = M``, drawn without replacement by a fixed
    seed); ``B = K_nm chol(K_mm + nu I)^{-T}``, ``B = U diag(sqrt(lam + nu)) V^T`` through the
    eigendecomposition of ``B^T B`` (stable form of Frangella, Tropp & Udell 2023, shift ``nu``).
    For ridge ``r``: ``P^{-1} = (lam_min + r) U (diag(lam) + r)^{-1} U^T + (I - U U^T)`` (a
    multiple of the inverse of ``U diag(lam) U^T + (lam_min + r)`` on the complement).
    """

    def __init__(self, op: "KernelOperator", rank: int, seed: int = 0):
        n = op.n
        m = min(rank, n)
        idx = np.sort(np.random.default_rng(seed).choice(n, m, replace=False))
        c = op.columns(idx)
        self.u, self.lam = _nystrom_factor(c, jnp.asarray(idx))
        self.rank = int(self.lam.shape[0])

    def apply(self, r, ridges):
        """``P^{-1} r`` for ``r (n, L, k)`` with one ridge per ``L``."""
        return _nystrom_apply(self.u, self.lam, r, ridges)


@jax.jit
def _nystrom_factor(c, idx):
    w = c[idx]
    w = 0.5 * (w + w.T)
    nu = jnp.finfo(jnp.float64).eps * w.shape[0] * jnp.trace(w)
    low = jnp.linalg.cholesky(w + nu * jnp.eye(w.shape[0]))
    b = jax.scipy.linalg.solve_triangular(low, c.T, lower=True).T  # K_nm L^{-T}
    s2, v = jnp.linalg.eigh(b.T @ b)
    keep = s2 > 1e3 * nu  # directions the landmarks resolve
    s = jnp.sqrt(jnp.where(keep, s2, 1.0))
    u = jnp.where(keep[None, :], (b @ v) / s[None, :], 0.0)
    lam = jnp.where(keep, jnp.maximum(s2 - nu, 0.0), 0.0)
    return u, lam


@jax.jit
def _nystrom_apply(u, lam, r, ridges):
    lam_min = jnp.min(jnp.where(lam > 0, lam, jnp.inf))
    f = jnp.where(lam[:, None] > 0, (lam_min + ridges[None, :]) / (lam[:, None] + ridges[None, :]) - 1.0, 0.0)
    ur = jnp.einsum("nm,nlk->mlk", u, r)
    return r + jnp.einsum("nm,mlk->nlk", u, f[:, :, None] * ur)


@jax.jit
def _cg_update(x, r, p, q, rz, ridges, u, lam):
    """One PCG step for every column (each column its own scalar CG); ``(n, L, k)`` arrays."""
    pq = jnp.sum(p * q, axis=0)
    bad = jnp.any((pq <= 0) & (jnp.sum(p * p, axis=0) > 0))
    alpha = jnp.where(pq > 0, rz / jnp.where(pq > 0, pq, 1.0), 0.0)
    x = x + alpha * p
    r = r - alpha * q
    z = _nystrom_apply(u, lam, r, ridges)
    rz_new = jnp.sum(r * z, axis=0)
    beta = jnp.where(rz > 0, rz_new / jnp.where(rz > 0, rz, 1.0), 0.0)
    return x, r, z + beta * p, rz_new, jnp.sqrt(jnp.sum(r * r, axis=(0, 2))), bad


def _pcg(op: KernelOperator, pre: _Nystrom, rhs, ridges: np.ndarray, tol: np.ndarray, max_iter: np.ndarray, f32: bool):
    """PCG from zero on ``(K + r_l I) X_l = rhs_l`` for all ridges at once; ``rhs (n, L, k)``.

    Each iteration is one pass over K for the stacked search directions of the ridges still
    running (a ridge stops at relative residual ``tol[l]`` or after ``max_iter[l]`` steps).
    Returns ``(X, iterations per ridge, seconds of each iteration)``.
    """
    n, L, k = rhs.shape
    rj = jnp.asarray(ridges)
    x, r = jnp.zeros_like(rhs), rhs
    z = pre.apply(r, rj)
    p, rz = z, jnp.sum(r * z, axis=0)
    norm0 = np.sqrt(np.asarray(jnp.sum(rhs * rhs, axis=(0, 2))))
    res = np.ones(L)
    its = np.zeros(L, int)
    times = []
    while True:
        act = np.flatnonzero((res > tol) & (its < max_iter) & (norm0 > 0))
        if act.size == 0:
            return x, its, times
        t0 = time.perf_counter()
        a = jnp.asarray(act)
        pa = p[:, a]
        q = op.matvec(pa.reshape(n, -1), f32=f32).reshape(n, act.size, k) + rj[a][None, :, None] * pa
        xa, ra, pa, rza, resa, bad = _cg_update(x[:, a], r[:, a], pa, q, rz[a], rj[a], pre.u, pre.lam)
        if bool(bad):
            raise ValueError("kernel_fn: conjugate gradients broke down (p^T (K + ridge I) p <= 0), so the kernel "
                             "matrix is not positive semi-definite; check the kernel, or use a ridge > 0")
        x, r, p, rz = x.at[:, a].set(xa), r.at[:, a].set(ra), p.at[:, a].set(pa), rz.at[a].set(rza)
        res[act] = np.asarray(resa) / norm0[act]
        its[act] += 1
        times.append(time.perf_counter() - t0)


def _cg_solve(op: KernelOperator, y: np.ndarray, ridges: Sequence[float], *, tol: float, rank: int, max_iter: int,
              precision: str):
    """``A_l = (K + r_l I)^{-1} Y`` for every ridge, and ``K A_l``; float64 iterative refinement.

    Each round runs PCG (float32 blocks for ``precision='mixed'``) on the current residual,
    then one float64 pass computes ``K A`` and the true residual ``Y - (K + r I) A``; rounds
    repeat until every ridge meets ``tol`` (relative, Frobenius over the ``k`` outputs), the
    iterations run out or a round stops gaining. Returns ``(A, KA, info)``, ``(n, L, k)`` arrays.
    """
    t0 = time.perf_counter()
    n, k = y.shape
    L = len(ridges)
    rid = np.asarray(ridges, np.float64)
    pre = _Nystrom(op, rank)
    t_pre = time.perf_counter() - t0
    rhs = jnp.broadcast_to(jnp.asarray(y)[:, None, :], (n, L, k))
    ynorm = float(np.linalg.norm(y))
    A, KA, R = jnp.zeros((n, L, k)), jnp.zeros((n, L, k)), rhs
    res = np.ones(L) if ynorm > 0 else np.zeros(L)
    its, rounds, passes, iter_s = np.zeros(L, int), 0, 0, []
    f32 = precision == "mixed"
    while rounds < _MAX_REFINE:
        todo = np.flatnonzero((res > tol) & (its < max_iter))
        if todo.size == 0:
            break
        rounds += 1
        a = jnp.asarray(todo)
        inner = np.maximum(0.3 * tol / res[todo], _F32_FLOOR if f32 else 0.0)  # margin: one round usually does
        D, got, secs = _pcg(op, pre, R[:, a], rid[todo], inner, max_iter - its[todo], f32)
        its[todo] += got
        passes, iter_s = passes + len(secs), iter_s + secs
        A = A.at[:, a].add(D)
        KA = KA.at[:, a].set(op.matvec(A[:, a].reshape(n, -1)).reshape(n, todo.size, k))
        R = rhs - KA - jnp.asarray(rid)[None, :, None] * A
        new = np.sqrt(np.asarray(jnp.sum(R * R, axis=(0, 2)))) / max(ynorm, 1e-300)
        stalled = new[todo] > 0.5 * res[todo]
        res = new
        if np.all(stalled | (res[todo] <= tol)) and np.any(stalled & (res[todo] > tol)):
            break
    info = {"iterations": its.tolist(), "residuals": res.tolist(), "tol": tol, "converged": bool(np.all(res <= tol)),
            "rounds": rounds, "rank": pre.rank, "precision": precision, "cube": op.cube, "block": [op.B, op.C],
            "stored_gram": op.k32 is not None,
            "max_iter": max_iter, "passes": passes, "float64_passes": rounds, "preconditioner_s": t_pre,
            "iterations_s": float(np.sum(iter_s)), "iteration_s_median": float(np.median(iter_s)) if iter_s else 0.0,
            "solve_s": time.perf_counter() - t0}
    if not info["converged"]:
        warnings.warn(
            f"conjugate gradients did not reach the relative residual tol={tol:g}: residuals "
            f"{', '.join(f'{v:.3g}' for v in res)} for the ridges {', '.join(f'{v:.3g}' for v in rid)} after "
            f"{', '.join(map(str, its))} iterations (max_iter={max_iter}); raise max_iter or rank, or use solver='dense'",
            KernelSolveWarning, stacklevel=3)
    return A, KA, info


def _phys_bytes() -> float:
    mem = host_memory_bytes()
    return math.inf if mem is None else float(mem)


def store_gram(n: int) -> bool:
    """Whether the mixed-precision iterations keep the float32 Gram of ``n`` points
    (:data:`CG_STORE_FRACTION` of the physical memory)."""
    return 4.0 * n * n <= CG_STORE_FRACTION * _phys_bytes()


def choose_solver(n: int, kernel_fn=None, t=None) -> str:
    """What ``solver='auto'`` picks for ``n`` training points: ``'cg'`` (matrix-free) for an exact
    kernel (:class:`KernelFn`, :class:`DescribedKernelFn`) in kernel ridge (``t is None``) when
    ``n > DENSE_MAX_N`` or the dense path's two float64 Grams (``16 n^2`` bytes) exceed half the
    physical memory; else ``'dense'``."""
    n = check_int("n", n, lo=1)
    big = n > DENSE_MAX_N or 16.0 * n * n > 0.5 * _phys_bytes()
    return "cg" if big and t is None and (kernel_fn is None or isinstance(kernel_fn, ClosedFormKernel)) else "dense"


def cg_fit_predict(kfn: ClosedFormKernel, ds: dict, lams, get: str, *, tol, rank, max_iter, precision, block):
    """Kernel ridge on the checked splits ``ds`` for each relative ridge in ``lams``, matrix-free.

    Returns ``(pred, ridge_abs, scale, info)``: predictions ``{split: (L, n_split, k)}``, the absolute
    ridges ``lam * mean(diag K_train)``, that scale, and the solver's details (iterations, residuals).
    """
    xtr, ytr = ds["x_train"], ds["y_train"]
    with x64():
        op = KernelOperator(kfn, get, xtr, block, store_f32=precision == "mixed" and store_gram(xtr.shape[0]))
        diag = np.asarray(op.diag, np.float64)
        if np.any(diag < 0):
            raise ValueError(f"kernel_fn has a negative diagonal entry ({diag.min():.3g}): not positive semi-definite")
        scale = float(np.mean(diag))
        ridge_abs = [lam * scale for lam in lams]
        A, KA, info = _cg_solve(op, ytr, ridge_abs, tol=tol, rank=rank, max_iter=max_iter, precision=precision)
        n, L, k = A.shape
        pred = {"train": np.asarray(KA, np.float64).transpose(1, 0, 2)}
        nv = ds["x_val"].shape[0]
        both = np.asarray(op.cross(np.concatenate([ds["x_val"], ds["x_test"]]), A.reshape(n, L * k)), np.float64)
        both = both.reshape(-1, L, k).transpose(1, 0, 2)
        pred["val"], pred["test"] = both[:, :nv], both[:, nv:]
    return pred, ridge_abs, scale, info
