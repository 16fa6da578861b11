"""Statistics of the sweeps' tidy results: selection, seed means, ``n_star``, slopes, separation.

Input is a list of *rows* (dicts), one per (learner, N, seed, hyper-parameter setting), with
the columns of :data:`ROW_FIELDS` (``load_rows`` reads them back from ``results.csv`` or
``results.jsonl``). Errors are mean squared errors summed over the ``k`` outputs; the
threshold of the paper's experiments is ``k * alpha^2`` (1.35 on the paper instance; rows carry it as ``threshold``): a
learner below it has learned part of the composed term ``alpha * G(F(x))``.

Conventions (all of them deliberate choices, documented here once):

* **Selection** (:func:`select`): for each group of :data:`SELECT_KEYS` (learner, N, seed and,
  for experiment 2, alpha and beta) the setting with the lowest *validation* error among the
  settings that did not diverge (``diverged`` false and finite validation error). Ties go to
  the first row in input order. If every setting of a group diverged, the group is kept as one
  row flagged ``diverged=True`` with ``val_error = test_error = +inf``.
* **Seed means** (``rows`` of the summaries): arithmetic mean of the selected test errors over
  the seeds that did not diverge; ``seeds`` counts those seeds, ``diverged_seeds`` the others
  (excluded from the mean, reported beside it). If every seed diverged the mean is ``null``.
* **Confidence intervals**: two-sided Student-t intervals over seeds,
  ``mean +- t_{0.975, s-1} * sd / sqrt(s)`` (:func:`t_ci`). With one seed the interval is
  undefined and written ``[null, null]``; with identical values it is degenerate ``[m, m]``.
  On the error scale the lower end can be negative for very spread seeds; it is not clipped.
* **n_star** (:func:`n_star`): the per-N seed mean of ``log(test error)`` (a geometric mean;
  a diverged seed counts as ``+inf`` error, so any diverged seed keeps that N above the
  threshold) is followed along the N grid; the first crossing from above of
  ``log(threshold)`` is interpolated linearly in ``log N`` between the neighbouring grid
  points. If the point before the crossing is ``+inf`` the crossing is put at the grid point
  after it (the limit of the interpolation). ``censored`` is ``"below_at_min_n"`` when the
  curve is already below at the smallest N (``estimate`` null, ``bound`` = smallest N: n_star
  <= bound) and ``"never_below"`` when it never gets below (``estimate`` null, ``bound`` =
  largest N: n_star > bound). "Below" is strict: ``mean log error < log threshold``.
* **n_star CI**: percentile bootstrap over seeds. Seeds are paired across N (seed ``s`` draws
  the data at every N), so seed *indices* are resampled jointly for the whole grid
  (``n_boot`` resamples, ``numpy.random.default_rng(boot_seed)`` started afresh for every
  learner, so results do not depend on which other learners are present). ``cross_share`` is
  the share of resamples whose curve gets below the threshold somewhere on the grid (a
  resample already below at the smallest N counts, at n_star = smallest N, its upper bound).
  ``ci95`` holds the 2.5 / 97.5 percentiles (taken in log N) of those resamples: it is
  *conditional on reaching the threshold within the grid*; read it with ``cross_share``.
  ``ci95`` is ``[null, null]`` when the estimate itself is censored or fewer than two seeds
  exist (then ``cross_share`` is null too). With 2-4 seeds the bootstrap has few distinct
  resamples and the interval is coarse.
* **Scaling slope** (:func:`scaling_slope`): the least-squares slope of ``log n*`` against
  ``log x`` for a scaling variable ``x`` (the input dimension of Experiment 3), a censored ``x``
  at its grid bound (then the slope is a bound, and the function says which side), with a
  percentile bootstrap CI over seeds resampled jointly for every ``x``.
* **Separation** (:func:`separation`): at each N, the best network (kind ``net``) and the best
  kernel (kinds ``ntk``, ``nngp``, ``rf``) are those with the fewest diverged seeds and, among
  them, the lowest mean *validation* error. The difference kernel minus network of the test
  errors is paired by seed (seeds present in both with finite errors); its mean and Student-t
  CI are reported; ``significant`` means the CI excludes 0 (false when the CI is undefined).
Every summary is plain JSON: NaN / inf become ``null`` (``json.dumps(..., allow_nan=False)``
works); use :func:`write_json`.

Only numpy and scipy are used here.
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from scipy import stats as _sps

ROW_FIELDS = (
    "experiment", "learner", "arch", "kind", "n", "seed", "width", "epochs", "lr", "wd", "ridge",
    "alpha", "beta", "d", "k", "g_degree", "threshold", "train_error", "val_error", "test_error", "diverged",
    "call_wall_s", "cell",
)  # fmt: skip
INT_FIELDS = ("n", "seed", "width", "epochs", "d", "k", "g_degree")
FLOAT_FIELDS = ("lr", "wd", "ridge", "alpha", "beta", "threshold", "train_error", "val_error", "test_error",
                "call_wall_s")
BOOL_FIELDS = ("diverged",)
REQUIRED_FIELDS = ("learner", "kind", "n", "seed", "val_error", "test_error")

NETWORK_KINDS = ("net",)
KERNEL_KINDS = ("ntk", "nngp", "rf")
KINDS = NETWORK_KINDS + KERNEL_KINDS
ARCH_ORDER = ("3resnet", "3nn", "2nn")

#: Keys of one selection group: the best setting is chosen within each group.
SELECT_KEYS = ("experiment", "learner", "n", "seed", "alpha", "beta")
#: Instance fields reported in the summaries.
INSTANCE_FIELDS = ("d", "k", "g_degree", "alpha", "beta")

_TINY = 1e-300  # errors are floored here before taking logs (an exact 0 would give -inf)


# --------------------------------------------------------------------------------------------
# rows: loading and normalising
# --------------------------------------------------------------------------------------------


def _to_float(v) -> float:
    if v is None:
        return math.nan
    if isinstance(v, str):
        v = v.strip()
        if v == "" or v.lower() in ("none", "null"):
            return math.nan
    return float(v)


def _to_int(v):
    if v is None or (isinstance(v, str) and v.strip() in ("", "None", "null")):
        return None
    if isinstance(v, str):
        v = float(v.strip())
    f = float(v)
    if not math.isfinite(f) or f != int(f):
        raise ValueError(f"expected an integer, got {v!r}")
    return int(f)


def _to_bool(v) -> bool:
    if v is None:
        return False
    if isinstance(v, str):
        s = v.strip().lower()
        if s in ("", "0", "false", "no", "f", "none", "null"):
            return False
        if s in ("1", "true", "yes", "t"):
            return True
        raise ValueError(f"expected a boolean, got {v!r}")
    if isinstance(v, float) and math.isnan(v):
        return False
    return bool(v)


def normalize_row(row: Mapping) -> dict:
    """A copy of ``row`` with numeric / boolean columns coerced (CSV strings, JSON nulls).

    Empty or null floats become NaN, empty ints ``None``, a missing ``diverged`` false.
    Columns not in :data:`ROW_FIELDS` are kept as they are.
    """
    out = dict(row)
    missing = [f for f in REQUIRED_FIELDS if f not in out]
    if missing:
        raise ValueError(f"result row lacks required column(s) {missing}: {dict(row)!r}")
    try:
        for f in FLOAT_FIELDS:
            if f in out:
                out[f] = _to_float(out[f])
        for f in INT_FIELDS:
            if f in out:
                out[f] = _to_int(out[f])
        out["diverged"] = _to_bool(out.get("diverged"))
    except (TypeError, ValueError) as e:
        raise ValueError(f"bad value in result row {dict(row)!r}: {e}") from None
    for f in ("experiment", "learner", "arch", "kind", "cell"):
        if f in out and out[f] is not None and not isinstance(out[f], str):
            out[f] = str(out[f])
    if out["kind"] not in KINDS:
        raise ValueError(f"row kind must be one of {list(KINDS)}, got {out['kind']!r}")
    if out["n"] is None or out["seed"] is None:
        raise ValueError(f"result row needs integer n and seed: {dict(row)!r}")
    if not out.get("arch"):
        out["arch"] = _arch_of(out["learner"])
    return out


def _arch_of(learner: str) -> str:
    return learner.split("-", 1)[1] if "-" in learner else learner


def load_rows(source) -> list[dict]:
    """Rows from a list of dicts, or from a path to ``.csv``, ``.jsonl`` or ``.json``.

    A ``.json`` file holds a list of rows (or ``{"rows": [...]}``); a ``.jsonl`` file one row
    per line. Every row goes through :func:`normalize_row`.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        suffix = path.suffix.lower()
        if suffix == ".csv":
            with path.open(newline="") as fh:
                raw = list(csv.DictReader(fh))
        elif suffix == ".jsonl":
            with path.open() as fh:
                raw = [json.loads(line) for line in fh if line.strip()]
        elif suffix == ".json":
            with path.open() as fh:
                raw = json.load(fh)
            if isinstance(raw, Mapping):
                raw = raw["rows"]
        else:
            raise ValueError(f"results file must end in .csv, .jsonl or .json, got {str(path)!r}")
    elif isinstance(source, Iterable) and not isinstance(source, Mapping):
        raw = list(source)
    else:
        raise ValueError(f"rows must be a list of dicts or a path, got {type(source).__name__}")
    for r in raw:
        if not isinstance(r, Mapping):
            raise ValueError(f"every row must be a dict, got {type(r).__name__}")
    return [normalize_row(r) for r in raw]


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def _key(v):
    """Hashable group-key value; NaN / missing become ``None``."""
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def is_finite(x) -> bool:
    return x is not None and isinstance(x, (int, float, np.integer, np.floating)) and math.isfinite(x)


def test_value(row) -> float:
    """Selected test error; ``+inf`` if the row diverged or its error is not finite."""
    if row.get("diverged") or not is_finite(row.get("test_error")):
        return math.inf
    return float(row["test_error"])


def val_value(row) -> float:
    if row.get("diverged") or not is_finite(row.get("val_error")):
        return math.inf
    return float(row["val_error"])


def jsonable(obj):
    """``obj`` with numpy scalars/arrays made Python and non-finite floats made ``None``."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


def write_json(summary: Mapping, path) -> Path:
    """Write ``summary`` as strict JSON (NaN/inf -> null); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(summary), indent=2, allow_nan=False) + "\n")
    return path


def t_ci(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the Student-t interval of the mean of ``values``.

    ``lo, hi = mean -+ t_{(1+confidence)/2, s-1} * sd / sqrt(s)`` with ``sd`` the sample
    standard deviation (ddof=1). Empty input gives ``(nan, nan, nan)``; one value ``(x, nan,
    nan)``; identical values ``(m, m, m)``. Values must be finite.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = np.asarray(list(values), dtype=float)
    if x.size and not np.all(np.isfinite(x)):
        raise ValueError("t_ci needs finite values")
    if x.size == 0:
        return math.nan, math.nan, math.nan
    m = float(np.mean(x))
    if x.size == 1:
        return m, math.nan, math.nan
    sd = float(np.std(x, ddof=1))
    half = float(_sps.t.ppf(0.5 + confidence / 2.0, x.size - 1)) * sd / math.sqrt(x.size)
    return m, m - half, m + half


def _kind_order(row_or_kind) -> int:
    kind = row_or_kind if isinstance(row_or_kind, str) else row_or_kind["kind"]
    return KINDS.index(kind) if kind in KINDS else len(KINDS)


def _arch_order(arch: str) -> int:
    return ARCH_ORDER.index(arch) if arch in ARCH_ORDER else len(ARCH_ORDER)


def learner_sort_key(learner: str, kind: str, arch: str):
    """Networks first (3resnet, 3nn, 2nn), then NTK, NNGP, RF kernels, by architecture."""
    return (_kind_order(kind), _arch_order(arch), arch, learner)


def unique_values(rows, field):
    vals = []
    for r in rows:
        v = _key(r.get(field))
        if v not in vals:
            vals.append(v)
    return vals


def instance_from_rows(rows, fields=INSTANCE_FIELDS) -> dict:
    inst = {}
    for f in fields:
        vals = [v for v in unique_values(rows, f) if v is not None]
        if not vals:
            continue
        inst[f] = vals[0] if len(vals) == 1 else sorted(vals)
    exps = [v for v in unique_values(rows, "experiment") if v is not None]
    if len(exps) == 1:
        inst["experiment"] = exps[0]
    return inst


# --------------------------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------------------------


def select(rows, keys: tuple[str, ...] = SELECT_KEYS) -> list[dict]:
    """One row per group of ``keys``: the non-diverged setting with the lowest validation error.

    Returned rows are copies of the chosen input rows with two extra columns,
    ``n_settings`` (settings in the group) and ``n_diverged_settings``. A group whose settings
    all diverged yields a copy of its first row with ``diverged=True`` and
    ``val_error = test_error = +inf``. Groups keep the order of their first appearance.
    Selecting already-selected rows returns them unchanged (idempotent).
    """
    rows = load_rows(rows)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(_key(r.get(k)) for k in keys), []).append(r)
    out = []
    for members in groups.values():
        ok = [r for r in members if not r["diverged"] and is_finite(r["val_error"])]
        if ok:
            best = min(ok, key=lambda r: r["val_error"])  # first minimum in input order
            sel = dict(best)
        else:
            sel = dict(members[0])
            sel["diverged"] = True
            sel["val_error"] = math.inf
            sel["test_error"] = math.inf
        if len(members) == 1 and "n_settings" in members[0]:  # already a selected row
            sel["n_settings"] = int(members[0]["n_settings"])
            sel["n_diverged_settings"] = int(members[0].get("n_diverged_settings", 0))
        else:
            sel["n_settings"] = len(members)
            sel["n_diverged_settings"] = len(members) - len(ok)
        out.append(sel)
    return out


# --------------------------------------------------------------------------------------------
# per-(learner, N) seed statistics
# --------------------------------------------------------------------------------------------


def group_by(rows, *fields) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(_key(r.get(f)) for f in fields), []).append(r)
    return out


def seed_stats(sel_rows, confidence) -> dict:
    """Mean / CI / counts of the selected test errors of one cell (one row per seed)."""
    tests = np.array([test_value(r) for r in sel_rows], dtype=float)
    vals = np.array([val_value(r) for r in sel_rows], dtype=float)
    fin = np.isfinite(tests)
    m, lo, hi = t_ci(tests[fin], confidence)
    return {
        "test_error_mean": m,
        "test_error_ci95": [lo, hi],
        "seeds": int(fin.sum()),
        "diverged_seeds": int((~fin).sum()),
        "test_error_min": float(tests[fin].min()) if fin.any() else math.nan,
        "test_error_max": float(tests[fin].max()) if fin.any() else math.nan,
        "val_error_mean": float(vals[np.isfinite(vals)].mean()) if np.isfinite(vals).any() else math.nan,
    }


def check_one_per_seed(groups: Mapping[tuple, list[dict]], what: str):
    for key, members in groups.items():
        seeds = [r["seed"] for r in members]
        if len(seeds) != len(set(seeds)):
            raise ValueError(
                f"{what} {key}: several selected rows share a seed; the rows mix instances or "
                "experiments (filter them first, or pass rows of one experiment)"
            )


# --------------------------------------------------------------------------------------------
# n_star
# --------------------------------------------------------------------------------------------


def first_crossing(ns, log_err, log_threshold) -> tuple[str, float]:
    """First crossing from above of ``log_threshold`` by the curve ``(ns, log_err)``.

    ``ns`` ascending; NaN entries of ``log_err`` (no data at that N) are skipped; ``+inf``
    entries (diverged) are above. Returns ``("none", n_star)`` with ``n_star`` interpolated
    linearly in ``log N``, ``("below_at_min_n", nan)`` or ``("never_below", nan)``.
    """
    ns = np.asarray(ns, dtype=float)
    y = np.asarray(log_err, dtype=float)
    keep = ~np.isnan(y)
    ns, y = ns[keep], y[keep]
    if ns.size == 0:
        return "never_below", math.nan
    if y[0] < log_threshold:
        return "below_at_min_n", math.nan
    for j in range(1, ns.size):
        if y[j] < log_threshold:
            a, b = y[j - 1], y[j]
            if math.isinf(a):
                return "none", float(ns[j])
            frac = (a - log_threshold) / (a - b)
            ln = math.log(ns[j - 1]) + frac * (math.log(ns[j]) - math.log(ns[j - 1]))
            return "none", float(math.exp(ln))
    return "never_below", math.nan


def seed_bounds(sel_rows, thresholds: Mapping) -> dict:
    """``{(d, seed): (lo, hi)}``: each seed's ``n*`` at ``thresholds[d]`` as a bound for interval
    regression (:mod:`rbk.scaling`): the first crossing of that seed's curve
    (:func:`first_crossing`) as ``(n, n)``, ``(N_max, inf)`` where it never crosses, ``(0, N_min)``
    where it is below at once. ``sel_rows``: one selected row per (d, seed, n), with ``n`` in the
    unit ``n*`` is counted in (labels, where selection read some)."""
    out = {}
    for (d, seed), rows in group_by(sel_rows, "d", "seed").items():
        ns = sorted(r["n"] for r in rows)
        err = {r["n"]: test_value(r) for r in rows}
        log_err = [math.inf if math.isinf(err[n]) else math.log(max(err[n], 1e-300)) if math.isfinite(err[n])
                   else math.nan for n in ns]  # fmt: skip
        status, v = first_crossing(ns, log_err, math.log(thresholds[d]))
        out[(d, seed)] = {"none": (v, v), "never_below": (float(ns[-1]), math.inf),
                          "below_at_min_n": (0.0, float(ns[0]))}[status]
    return out


def _log_error_matrix(sel_rows) -> tuple[np.ndarray, list, np.ndarray]:
    """``(ns, seeds, L)`` with ``L[s, j]`` the log test error of seed s at N_j (NaN: missing)."""
    ns = sorted({r["n"] for r in sel_rows})
    seeds = sorted({r["seed"] for r in sel_rows})
    L = np.full((len(seeds), len(ns)), np.nan)
    if len({(r["n"], r["seed"]) for r in sel_rows}) != len(sel_rows):
        raise ValueError("n_star needs one selected row per (n, seed) of a single learner")
    for r in sel_rows:
        t = test_value(r)
        L[seeds.index(r["seed"]), ns.index(r["n"])] = math.inf if math.isinf(t) else math.log(max(t, _TINY))
    return np.asarray(ns, dtype=float), seeds, L


def _nanmean_cols(L: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(L, axis=axis)


def _bootstrap(ns, L, log_threshold, n_boot, boot_seed) -> list[tuple[str, float]]:
    """First crossings of ``n_boot`` curves, each the seed mean of a resample of L's rows."""
    rng = np.random.default_rng(boot_seed)
    idx = rng.integers(0, L.shape[0], size=(n_boot, L.shape[0]))  # whole seeds: paired across N
    curves = _nanmean_cols(L[idx], 1)  # (n_boot, len(ns))
    return [first_crossing(ns, c, log_threshold) for c in curves]


def bootstrap_crossings(sel_rows, threshold: float, *, n_boot: int = 2000, boot_seed: int = 0):
    """The ``(status, n_star)`` of every bootstrap resample used by :func:`n_star`."""
    ns, _, L = _log_error_matrix(sel_rows)
    return _bootstrap(ns, L, math.log(threshold), n_boot, boot_seed)


def n_star(
    sel_rows,
    threshold: float,
    *,
    n_boot: int = 2000,
    boot_seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """``n_star`` of one learner from its selected rows (one per (N, seed)); see the module doc.

    Returns ``{"estimate", "ci95", "censored", "cross_share", "bound", "final_below"}`` (NaN
    for undefined numbers; :func:`jsonable` turns them into null). ``final_below``: the
    seed-mean curve is below the threshold at the largest N (false after a first crossing
    means the curve went back above: the estimate is the *first* crossing).
    """
    if not (threshold > 0 and math.isfinite(threshold)):
        raise ValueError(f"threshold must be a finite positive number, got {threshold}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    ns, seeds, L = _log_error_matrix(sel_rows)
    lt = math.log(threshold)
    curve = _nanmean_cols(L, 0)
    status, est = first_crossing(ns, curve, lt)
    bound = {"none": math.nan, "below_at_min_n": float(ns[0]), "never_below": float(ns[-1])}[status]
    last = curve[~np.isnan(curve)]
    out = {
        "estimate": est,
        "ci95": [math.nan, math.nan],
        "censored": status,
        "cross_share": math.nan,
        "bound": bound,
        "final_below": bool(last.size and last[-1] < lt),
    }
    if len(seeds) < 2:
        return out
    reached = []
    for st, v in _bootstrap(ns, L, lt, n_boot, boot_seed):
        if st == "none":
            reached.append(v)
        elif st == "below_at_min_n":
            reached.append(float(ns[0]))
    out["cross_share"] = len(reached) / n_boot
    if status == "none" and reached:
        q = 100.0 * (1.0 - confidence) / 2.0
        lo, hi = np.exp(np.percentile(np.log(reached), [q, 100.0 - q]))
        out["ci95"] = [float(lo), float(hi)]
    return out


def loglog_slope(xs, ys) -> tuple[float, float]:
    """``(slope, intercept)`` of the least-squares line ``log y = intercept + slope * log x``.

    With ``u = log x``, ``v = log y``: ``slope = sum (u - mean u)(v - mean v) / sum (u - mean u)^2``.
    Needs at least two distinct positive ``xs`` and positive ``ys``.
    """
    u = np.log(np.asarray(xs, dtype=float))
    v = np.log(np.asarray(ys, dtype=float))
    if u.shape != v.shape or u.ndim != 1 or np.unique(u).size < 2 or not np.all(np.isfinite(v)):
        raise ValueError(f"loglog_slope needs >= 2 distinct positive xs and positive ys of the same length, "
                         f"got xs={list(xs)}, ys={list(ys)}")
    du = u - u.mean()
    slope = float(np.sum(du * (v - v.mean())) / np.sum(du * du))
    return slope, float(v.mean() - slope * u.mean())


def _at_bound(status: str, value: float, ns) -> float:
    """A crossing, or the grid bound of a censored one (N_min below at once, N_max never below)."""
    return {"none": value, "below_at_min_n": float(ns[0]), "never_below": float(ns[-1])}[status]


def scaling_slope(
    groups: Mapping,
    threshold: float | Mapping,
    *,
    n_boot: int = 2000,
    boot_seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """The exponent of ``n*`` in a scaling variable ``x`` (e.g. the input dimension ``d``).

    ``groups`` maps each ``x > 0`` to the selected rows of one learner at that ``x`` (one row per
    (N, seed), as :func:`n_star`); ``threshold`` is one number or a mapping ``x -> threshold``.
    The slope is the least-squares fit (:func:`loglog_slope`) of ``log n*(x)`` on ``log x``
    with ``n*(x)`` of :func:`n_star`; a censored ``x`` enters at its grid bound (``N_max`` when
    never below: the true ``n*`` is larger; ``N_min`` when below at once: it is smaller).

    CI: percentile bootstrap over seeds. In each replicate the seed *indices* are resampled
    jointly for every ``x`` (a seed is one replicate of the whole experiment; where the ``x``
    have different seed counts each is resampled with the same generator state), ``n*(x)`` is
    recomputed (:func:`bootstrap_crossings`, the same resamples as :func:`n_star`'s CI) with
    censored replicates at their bound, and the line refitted.

    Returns ``{"slope", "intercept", "ci95", "censored", "bound", "x", "n_star", "n_boot"}``:
    ``censored`` true when any ``x``'s estimate is censored; ``bound`` then says what the slope
    is: ``"lower"`` when every censored point can only move the slope up if its true ``n*`` were
    known (never below at an ``x`` above the mean of ``log x``, or below at once at one under
    it), ``"upper"`` for the reverse, ``"neither"`` for a mix, ``"exact"`` when the censored points
    sit at the mean of ``log x`` (they do not move the slope), ``None`` when nothing is censored.
    The CI is that of the bounded fit (its replicates are censored the same way).
    """
    xs = sorted(groups)
    if len(xs) < 2:
        raise ValueError(f"scaling_slope needs rows at >= 2 values of the scaling variable, got {xs}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    thr = {x: float(threshold[x] if isinstance(threshold, Mapping) else threshold) for x in xs}
    ys, stars, boots = [], [], []
    for x in xs:
        rows = groups[x]
        ns = sorted({r["n"] for r in rows})
        s = n_star(rows, thr[x], n_boot=n_boot, boot_seed=boot_seed, confidence=confidence)
        stars.append(s)
        ys.append(_at_bound(s["censored"], s["estimate"], ns))
        boots.append([_at_bound(st, v, ns) for st, v in bootstrap_crossings(rows, thr[x], n_boot=n_boot,
                                                                             boot_seed=boot_seed)])
    slope, intercept = loglog_slope(xs, ys)
    reps = np.array([loglog_slope(xs, b)[0] for b in zip(*boots)])
    q = 100.0 * (1.0 - confidence) / 2.0
    lo, hi = np.percentile(reps, [q, 100.0 - q])
    u = np.log(np.asarray(xs, dtype=float))
    pushes = set()  # +1: the true point is higher and that would raise the slope; -1: lower it
    for ui, s in zip(u, stars):
        if s["censored"] != "none":
            up = 1 if s["censored"] == "never_below" else -1
            side = float(np.sign(ui - u.mean()))
            if side != 0:
                pushes.add(int(up * side))
    censored = any(s["censored"] != "none" for s in stars)
    bound = None if not censored else {frozenset(): "exact", frozenset({1}): "lower",
                                         frozenset({-1}): "upper"}.get(frozenset(pushes), "neither")
    return {
        "slope": slope,
        "intercept": intercept,
        "ci95": [float(lo), float(hi)],
        "censored": censored,
        "bound": bound,
        "x": [float(x) for x in xs],
        "n_star": [float(y) for y in ys],
        "n_boot": int(n_boot),
    }


# --------------------------------------------------------------------------------------------
# separation
# --------------------------------------------------------------------------------------------


def _best(cells: Mapping[str, list[dict]]) -> str | None:
    """Learner with the fewest diverged seeds, then the lowest mean validation error."""

    def score(item):
        name, rs = item
        vals = np.array([val_value(r) for r in rs])
        fin = np.isfinite(vals)
        return (int((~fin).sum()), float(vals[fin].mean()) if fin.any() else math.inf)

    if not cells:
        return None
    return min(cells.items(), key=score)[0]


def separation(sel_rows, confidence: float = 0.95) -> list[dict]:
    """Per N: best network vs best kernel (by validation), paired test-error difference.

    ``difference = kernel test error - network test error`` per seed present in both with
    finite errors; entries ``n, best_network, best_kernel, difference_mean, difference_ci95,
    significant, pairs``. N without both a network and a kernel are skipped.
    """
    out = []
    for (n,), rows_n in sorted(group_by(sel_rows, "n").items()):
        cells = group_by(rows_n, "learner")
        nets = {lr: rs for (lr,), rs in cells.items() if rs[0]["kind"] in NETWORK_KINDS}
        kers = {lr: rs for (lr,), rs in cells.items() if rs[0]["kind"] in KERNEL_KINDS}
        bn, bk = _best(nets), _best(kers)
        if bn is None or bk is None:
            continue
        tn = {r["seed"]: test_value(r) for r in nets[bn]}
        tk = {r["seed"]: test_value(r) for r in kers[bk]}
        diffs = [tk[s] - tn[s] for s in sorted(set(tn) & set(tk)) if math.isfinite(tk[s]) and math.isfinite(tn[s])]
        m, lo, hi = t_ci(diffs, confidence)
        sig = bool(math.isfinite(lo) and math.isfinite(hi) and (lo > 0 or hi < 0))
        out.append(
            {
                "n": int(n),
                "best_network": bn,
                "best_kernel": bk,
                "difference_mean": m,
                "difference_ci95": [lo, hi],
                "significant": sig,
                "pairs": len(diffs),
            }
        )
    return out
