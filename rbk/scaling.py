"""Scaling slopes of ``n*`` in ``d`` when some ``n*`` are censored: interval (Tobit) regression.

Experiment 3 measures a sample complexity ``n*(d)`` per (d, seed) and summarises it by the
slope of ``log n*`` in ``log d``. A kernel's ``n*`` is often only a bound ("above the largest N
tried"); putting such a point at its bound and fitting least squares biases the slope towards
the grid (low, when the large d are the censored ones). Here a censored point is what it is, an
interval: the model is ``log n* = a + b log d + e``, ``e ~ N(0, sigma^2)``, fitted by maximum
likelihood with the density for exact points and ``Phi(z_hi) - Phi(z_lo)`` for intervals
(Tobit / interval regression). :func:`paired_slope_difference` compares two learners measured on
the same data by a paired bootstrap over seeds.

Numerics: the log-probabilities use ``scipy.special.log_ndtr`` (what ``scipy.stats.norm.logcdf``
computes, ``logsf(z) = log_ndtr(-z)``, without the distribution wrapper's per-call overhead); the
fit is L-BFGS-B with analytic gradients in (a, b, log sigma), ``log d`` centred, ``log sigma``
bounded below by ``log(min_sigma)``. With no censored point the maximiser is least squares and is
computed directly. BLAS is held to one thread while fitting (``threadpoolctl``): L-BFGS-B's tiny
BLAS calls otherwise stall on a busy machine (10-20x slower). Measured (CPU time, one thread,
numpy 2.4, scipy 1.17, a loaded 2-core machine): ``paired_slope_difference`` with
``n_boot=2000`` takes 4-5 s on 60 points (6 d x 10 seeds) and 4-6 s on 120 points (6 d x 20
seeds), with 28-34% of the first learner's points right-censored; about 1.2 ms per fit.

Only numpy and scipy are used here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_ndtr
from threadpoolctl import threadpool_limits

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_RUNAWAY = 1e3  # |b|, sigma or |centred intercept| beyond this: the optimiser ran off (no maximum)


def _prepare(ds, lo, hi):
    """Validated ``(log d, log lo, log hi)`` (``-inf`` for ``lo = 0``, ``inf`` for ``hi = inf``)."""
    d, l, h = (np.asarray(v, dtype=float) for v in (ds, lo, hi))
    if d.ndim != 1 or l.ndim != 1 or h.ndim != 1 or not d.size == l.size == h.size:
        raise ValueError(f"ds, lo and hi must be 1-d of equal length, got shapes {d.shape}, {l.shape}, {h.shape}")
    if not np.all((d > 0) & np.isfinite(d)):
        raise ValueError(f"ds must be positive and finite (0 < d < inf), got {d[~((d > 0) & np.isfinite(d))]}")
    if not np.all((l >= 0) & np.isfinite(l)):
        raise ValueError(f"lo must be finite and >= 0 (0 <= lo < inf), got {l[~((l >= 0) & np.isfinite(l))]}")
    bad = ~((h >= l) & (h > 0))  # NaN fails too
    if bad.any():
        raise ValueError(f"hi must satisfy lo <= hi <= inf and hi > 0, got lo={l[bad]}, hi={h[bad]}")
    void = (l == 0) & np.isinf(h)
    if void.any():
        raise ValueError(f"lo == 0 with hi == inf carries no information (points {np.flatnonzero(void)}): "
                         "use lo > 0 or a finite hi")
    with np.errstate(divide="ignore"):
        return np.log(d), np.log(l), np.log(h)


def _recedes(u, yl, yh) -> bool:
    """Whether a line direction ``r = (da, db) != 0`` raises the likelihood for ever.

    Moving the line ``a + b u`` along ``r`` changes point ``i`` by ``r . (1, u_i)``: a
    right-censored point (``hi = inf``) gains when that is > 0, a left-censored one when < 0, a
    two-sided one (exact or a finite interval) needs 0. If a nonzero ``r`` breaks none of these
    (with >= 2 distinct u some point then gains strictly), every fit is beaten by one further
    along ``r``: the maximum does not exist (e.g. all points right-censored: a -> inf; an exact
    point at the small d, censored ones above it: b -> inf). The set of such ``r`` is a cone
    cut by the lines ``r . (1, u_i) = 0``; when it is not ``{0}`` one of its edges lies on one of
    them, so the candidates ``+-(-u_k, 1)`` decide it exactly.
    """
    ks = np.unique(u)
    proj = np.concatenate([u[None, :] - ks[:, None], ks[:, None] - u[None, :]])  # (2K, n): r . (1, u_i)
    right, left = np.isinf(yh), np.isinf(yl)
    two = ~(right | left)
    ok = np.all(proj[:, two] == 0, axis=1) & np.all(proj[:, right] >= 0, axis=1) & np.all(proj[:, left] <= 0, axis=1)
    return bool(ok.any())


def _ols(uc, y):
    """``(intercept, slope, sigma)`` of least squares on centred ``uc`` (written out: no LAPACK call,
    whose threads stall on a busy machine), ``sigma = sqrt(RSS / n)``."""
    b = float(np.sum(uc * y) / np.sum(uc * uc))
    a = float(np.mean(y))
    return a, b, math.sqrt(float(np.mean((y - a - b * uc) ** 2)))


def _negloglik(theta, uc, yl, yh, exact):
    """Negative log-likelihood and its gradient in ``theta = (a_c, b, log sigma)``, ``mu = a_c + b uc``."""
    a, b, s = theta
    sig = math.exp(s)
    mu = a + b * uc
    z = (yl[exact] - mu[exact]) / sig
    nll = float(np.sum(s + 0.5 * z * z + _LOG_SQRT_2PI))
    g_mu = np.zeros_like(uc)
    g_mu[exact] = z / sig
    g_s = float(np.sum(z * z - 1.0))
    ce = ~exact
    if ce.any():
        zl, zh = (yl[ce] - mu[ce]) / sig, (yh[ce] - mu[ce]) / sig
        up = zl > 0  # P = sf(z_lo) - sf(z_hi) there, cdf(z_hi) - cdf(z_lo) elsewhere: no 1 - 1 cancels
        big, small = log_ndtr(np.where(up, -zl, zh)), log_ndtr(np.where(up, -zh, zl))
        logp = big + np.log(-np.expm1(small - big))
        nll -= float(np.sum(logp))
        pl = np.exp(-0.5 * zl * zl - _LOG_SQRT_2PI - logp)  # phi(z_lo) / P, 0 at z_lo = -inf
        ph = np.exp(-0.5 * zh * zh - _LOG_SQRT_2PI - logp)
        g_mu[ce] = (pl - ph) / sig
        g_s += float(np.sum(pl * np.where(np.isfinite(zl), zl, 0.0) - ph * np.where(np.isfinite(zh), zh, 0.0)))
    return nll, -np.array([g_mu.sum(), float(np.sum(g_mu * uc)), g_s])


def _fit(u, yl, yh, min_sigma, start=None) -> dict:
    """:func:`interval_slope` on prepared logs; ``start = (a, b, sigma)`` warm-starts the optimiser."""
    exact = yl == yh
    out = {"slope": None, "intercept": None, "sigma": None, "points": int(u.size),
           "censored": int(u.size - exact.sum()), "converged": False}  # fmt: skip
    if np.unique(u).size < 2 or _recedes(u, yl, yh):
        return out
    ubar = float(u.mean())
    uc = u - ubar
    if exact.all():  # the normal linear model: least squares is the maximiser
        a_c, b, sigma = _ols(uc, yl)
        return {**out, "slope": b, "intercept": a_c - b * ubar, "sigma": max(sigma, min_sigma), "converged": True}
    if start is None:  # least squares on the exact values, interval midpoints and the finite bounds
        y0 = np.where(np.isinf(yh), yl, np.where(np.isinf(yl), yh, 0.5 * (yl + yh)))
        a0, b0, s0 = _ols(uc, y0)
        theta0 = [a0, b0, math.log(max(s0, 0.1, min_sigma))]
    else:
        a, b, sigma = start
        theta0 = [a + b * ubar, b, math.log(max(sigma, min_sigma))]
    res = minimize(_negloglik, theta0, args=(uc, yl, yh, exact), jac=True, method="L-BFGS-B",
                   bounds=[(None, None), (None, None), (math.log(min_sigma), None)],
                   options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 1000})  # fmt: skip
    a_c, b, s = (float(v) for v in res.x)
    if not (abs(b) <= _RUNAWAY and s <= math.log(_RUNAWAY) and abs(a_c) <= _RUNAWAY):
        return out
    grad = res.jac.copy()
    grad[2] = 0.0 if s <= math.log(min_sigma) + 1e-12 and grad[2] > 0 else grad[2]  # at the floor
    converged = bool(res.success or np.max(np.abs(grad)) < 1e-6 * max(1.0, u.size))
    return {**out, "slope": b, "intercept": a_c - b * ubar, "sigma": math.exp(s), "converged": converged}


def interval_slope(ds, lo, hi, *, min_sigma: float = 1e-3) -> dict:
    """Maximum-likelihood slope of ``log n*`` in ``log d`` with interval-censored ``n*``.

    Args:
        ds: the scaling variable of each point (positive, finite).
        lo: lower bounds on ``n*`` (not logs), ``0 <= lo < inf``; ``lo == 0``: left-censored.
        hi: upper bounds, ``lo <= hi <= inf``; ``hi == lo``: exact; ``hi == inf``: right-censored
            (``n* > lo``). ``lo == 0`` with ``hi == inf`` is refused (it says nothing).
        min_sigma: floor of the residual scale (a perfect fit of exact points stays finite).

    Returns:
        ``{"slope", "intercept", "sigma", "points", "censored", "converged"}``: ``slope`` is
        ``b`` of ``log n* = a + b log d + N(0, sigma^2)``, ``censored`` the number of non-exact
        points. ``slope``, ``intercept`` and ``sigma`` are None (``converged`` False) when the
        points have fewer than 2 distinct d or the likelihood has no maximum: a direction of
        the line improves every fit (checked exactly, see ``_recedes``; e.g. all points
        right-censored), or the optimiser ran off to ``|b|``, ``sigma`` or the centred
        intercept above 1e3. With no exact point and a line inside every interval, ``sigma``
        ends at ``min_sigma`` and the slope is one of those lines.

    Raises:
        ValueError: unequal lengths, or a value outside the ranges above (named in the message).
    """
    if not (min_sigma > 0 and math.isfinite(min_sigma)):
        raise ValueError(f"min_sigma must be positive and finite, got {min_sigma}")
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit(*_prepare(ds, lo, hi), min_sigma)


def bounds_slope(bounds: Mapping) -> dict | None:
    """:func:`interval_slope` of ``{(d, seed): (lo, hi)}`` bounds (keys in sorted order), or
    ``None`` when they span fewer than two ``d``."""
    if len({k[0] for k in bounds}) < 2:
        return None
    keys = sorted(bounds)
    return interval_slope([k[0] for k in keys], [bounds[k][0] for k in keys], [bounds[k][1] for k in keys])


def _prepared(name, bounds: Mapping, keys, ds):
    try:
        return _prepare(ds, [bounds[k][0] for k in keys], [bounds[k][1] for k in keys])
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


def paired_slope_difference(first: Mapping, second: Mapping, *, n_boot: int = 2000, seed: int = 0,
                            confidence: float = 0.95) -> dict:  # fmt: skip
    """Slopes of two learners on the same (d, seed) data and a paired bootstrap of their difference.

    Only the keys present in both ``first`` and ``second`` are used; the others are ignored. In
    each of ``n_boot`` resamples (``numpy.random.default_rng(seed)``) the seeds of each d are
    drawn with replacement, d by d in increasing order, and the same (d, seed) keys enter both
    fits (shared data stays shared, so noise common to both learners cancels in the
    difference); each fit is warm-started from its full-data estimate. Resamples where either
    slope is None are dropped (``n_boot - n_valid`` of them).

    Args:
        first: ``{(d, seed): (lo, hi)}``, bounds on ``n*`` as in :func:`interval_slope`.
        second: the same for the other learner.
        n_boot: number of bootstrap resamples (>= 1).
        seed: seed of the resampling generator; the result is a function of it.
        confidence: level of the percentile intervals, in (0, 1).

    Returns:
        ``{"slope_first", "slope_second", "difference", "ci95_first", "ci95_second", "n_boot",
        "n_valid", "pairs", "ds"}``; ``difference`` is ``{"mean": slope_first - slope_second,
        "ci95": [lo, hi], "boot_mean"}``. Intervals are percentiles of the valid resamples
        (``ci95_first`` / ``ci95_second`` of the same resamples as the difference), None with
        fewer than 10 valid ones; point values are None where a full-data slope is None.

    Raises:
        ValueError: ``n_boot`` < 1, ``confidence`` outside (0, 1), or invalid bounds.
    """
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 1):
        raise ValueError(f"n_boot must be an integer >= 1, got {n_boot!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    keys = sorted(set(first) & set(second), key=lambda k: (float(k[0]), str(k[1])))
    ds = np.array([float(k[0]) for k in keys])
    data = [_prepared("first", first, keys, ds), _prepared("second", second, keys, ds)]
    with threadpool_limits(limits=1, user_api="blas"):
        reps, fits = _bootstrap(data, ds, n_boot, seed)
    q = 100.0 * (1.0 - confidence) / 2.0

    def ci(x):
        return None if reps.shape[0] < 10 else [float(v) for v in np.percentile(x, [q, 100.0 - q])]

    s1, s2 = fits[0]["slope"], fits[1]["slope"]
    diff = reps[:, 0] - reps[:, 1]
    return {
        "slope_first": s1,
        "slope_second": s2,
        "difference": {"mean": None if s1 is None or s2 is None else s1 - s2, "ci95": ci(diff),
                       "boot_mean": float(diff.mean()) if diff.size else None},  # fmt: skip
        "ci95_first": ci(reps[:, 0]),
        "ci95_second": ci(reps[:, 1]),
        "n_boot": int(n_boot),
        "n_valid": int(reps.shape[0]),
        "pairs": len(keys),
        "ds": sorted({float(d) for d in ds}),
    }


def _bootstrap(data, ds, n_boot, seed):
    """Full-data fits and the ``(n_valid, 2)`` resampled slopes of :func:`paired_slope_difference`."""
    fits = [_fit(*p, 1e-3) for p in data]
    starts = [None if f["slope"] is None else (f["intercept"], f["slope"], f["sigma"]) for f in fits]
    groups = [np.flatnonzero(ds == d) for d in np.unique(ds)]
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot):
        idx = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups]) if groups else np.zeros(0, int)
        sl = [_fit(u[idx], yl[idx], yh[idx], 1e-3, st)["slope"] for (u, yl, yh), st in zip(data, starts)]
        if sl[0] is not None and sl[1] is not None:
            reps.append(sl)
    return np.array(reps, dtype=float).reshape(-1, 2), fits
