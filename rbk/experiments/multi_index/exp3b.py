"""Experiment 3b: learned features transfer to a new head (Damian, Lee & Soltanolkotabi 2022).

The claim (COLT 2022, arXiv 2206.15144): the first layer that the two-stage network
(:func:`rbk.train.two_stage`, the paper's Algorithm 1) learns on a multi-index target
``f*(x) = g(U x)`` spans (approximately) the subspace of ``U``, so a *new* head ``g'(U x)``
on the same ``U`` is fitted by a ridge on those fixed features with a number of samples
``n2`` that does not grow with ``d``; a kernel method fitting ``g'`` from scratch still pays
``d^{p'}``-type sample costs (``p'`` the degree it must learn).

Per (``d``, seed): draw ``U`` and the source target ``g`` (``single_index`` by default:
``(h_2 + h_4) / sqrt 2``); learn features with ``two_stage`` on ``N1 = n1_factor * d^2``
source samples (the noise of the one-step gradient outside ``span(U)`` relative to its
signal scales like ``d / sqrt(N1)``, so a fixed ``n1_factor`` gives features of the same
quality at every ``d``; the source test error is in every ``transfer`` row); draw the new
head ``g'`` on the same ``U`` (:func:`transfer_head`: Gaussian coefficients on every
multi-index of each degree in ``head_degrees``, each degree holding an equal share of
``E[g'^2] = 1``; threshold the Target's own, the energy of its top degree ``E'_p``); then for
each ``n2`` fit ``g'`` on the *same* ``n2`` samples (nested prefixes of one pool; one test
set per (``d``, seed)) with

  ``transfer``  ridge on the learned features (:func:`rbk.train.fit_readout`);
  ``ntk-2nn``   exact NTK kernel ridge of the 2-layer ReLU net (``b_std``, default 1);
  ``rf-2nn``    random features of the same width (a fixed random first layer);
  ``scratch``   ``two_stage`` trained on ``g'`` alone with the ``n2`` samples.

Every label is counted in ``n2``: each learner's ridge (and, for ``scratch``, the first-step
learning rate) is chosen by ``min(folds, n2)``-fold cross-validation inside the ``n2`` training
samples, then refitted on all of them (:func:`.transfer.fit_head`; the rows' ``val_error`` is
the CV error, ``cv_folds`` the folds); no validation label of ``g'`` is drawn. The source
features are not part of ``n2``: they keep their own selection on a validation set of the
source (``n_val``, default ``max(1000, N1/5)``).
A cell is one (learner, ``d``, seed) with a row per ``n2``; the ``transfer`` cell learns the
features itself (they are used by no other cell). ``summarize`` gives the seed means per
(learner, ``d``, ``n2``), ``n2*`` per (learner, ``d``) at the threshold with a bootstrap CI
(:func:`rbk.stats.n_star`) and the fitted slope of ``log n2*`` against ``log d`` per learner
with a bootstrap CI (``slopes``; a censored ``d`` enters at its bound).
``predicted["ntk-2nn"]`` is the exact NTK's curve predicted from its Gaussian spectrum (:func:`predictions`:
the mean over the seeds' heads), with its ``n2*`` and slope beside the measured ones.

Profiles
--------
``quick``  ``d in {8, 16, 32}``, seeds 0-2, ``n2`` from 10 to 6400, width 512, ``N1 = 32 d^2``;
           about 30 CPU-minutes with the 5-fold CV (``docs/multi_index.md`` has what it measured).
``paper``  ``d in {8, 16, 32, 64}``, 5 seeds, ``n2`` up to 25600, ``N1 = 64 d^2``, width
           1024: for an accelerator (``--dry-run`` shows the plan).
"""

from __future__ import annotations

import dataclasses
import math
import time
from functools import partial

import numpy as np

from rbk import sweep
from rbk._args import add_options, integer, option, option_values, options_of, optional, validate
from rbk._checks import check_choice, check_int, check_ints, check_list, check_real, check_reals
from rbk.experiments.common import entry_points
from rbk.experiments.multi_index.predicted import draw_curve, predicted_slope, seed_mean_prediction
from rbk.experiments.multi_index.transfer import cv_fits, fit_head, keys, subset, transfer_pool

EXPERIMENT = "exp3b"

#: learner -> row kind (rbk.stats.KINDS)
LEARNERS = {"transfer": "net", "scratch": "net", "ntk-2nn": "ntk", "rf-2nn": "rf"}
SOURCES = ("single_index", "sum_of_products", "random")  # as ``rbk exp3 --target``
#: Earlier names of the source families, still read (config files, ``make_spec``) for one release.
LEGACY_SOURCES = {"random_multi_index": "random"}

PROFILES = {
    "quick": dict(
        learners=("transfer", "ntk-2nn", "rf-2nn", "scratch"),
        ds=(8, 16, 32),
        seeds=(0, 1, 2),
        n2s=(10, 20, 40, 100, 200, 400, 800, 1600, 3200, 6400),
    ),
    "paper": dict(
        learners=("transfer", "ntk-2nn", "rf-2nn", "scratch"),
        ds=(8, 16, 32, 64),
        seeds=(0, 1, 2, 3, 4),
        n2s=(10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 25600),
        n1_factor=64.0,
        width=1024,
        ridges=(1e-6, 1e-4, 1e-3, 1e-2, 1e-1),
        kernel_ridges=(1e-4, 1e-3, 1e-2, 1e-1),
    ),
}


@dataclasses.dataclass(frozen=True)
class Cell:
    """One (learner, d, seed): a row per ``n2``."""

    id: str
    learner: str
    kind: str
    d: int
    seed: int


def _ridges(name: str, values) -> tuple[float, ...]:
    """1 to 5 relative ridges >= 0 (:func:`rbk.kernels.check_ridges`), sorted, a repeat refused, the
    message naming ``name``."""
    from rbk.kernels import check_ridges

    values = check_reals(name, values, lo=0.0, order="sorted")
    try:
        return check_ridges(values)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


def _source(name: str, value) -> str:
    """A source family of :data:`SOURCES` (an earlier name of :data:`LEGACY_SOURCES` is read as today's)."""
    return check_choice(name, LEGACY_SOURCES.get(value, value), SOURCES)


@dataclasses.dataclass(frozen=True)
class Exp3bSpec(sweep.Study):
    """Everything that defines Experiment 3b's results (build it with :func:`make_spec`).

    ``net_max_n`` / ``kernel_max_n`` (``None``: no limit) skip the ``n2`` above them for the
    feature learners (``transfer``, ``rf-2nn``, ``scratch``) / the exact kernel.
    """

    experiment: str = EXPERIMENT
    learners: tuple[str, ...] = option(("transfer", "ntk-2nn", "rf-2nn", "scratch"), flag="--learners",
                                       check=partial(check_list, check=partial(check_choice, choices=tuple(LEARNERS))),
                                       help=f"among {', '.join(LEARNERS)}", many=True, what="learner names")
    ds: tuple[int, ...] = option((8, 16, 32), check=partial(check_ints, lo=2, order="sorted"), flag="--d",
                                 help="input dimensions, integers >= 2", conv=integer, many=True, what="integers >= 2")
    seeds: tuple[int, ...] = option((0, 1, 2), check=partial(check_ints, lo=0, order="sorted"), flag="--seeds")
    n2s: tuple[int, ...] = option((10, 20, 40, 80, 160, 320, 640, 1280, 3200), flag="--n2",
                                  check=partial(check_ints, lo=2, order="sorted"),
                                  help="labelled samples n2 of the new head g' (the source's N1 is --n1-factor's), "
                                  "integers >= 2", conv=integer, many=True, what="integers >= 2")  # fmt: skip
    source: str = option("single_index", check=_source, flag="--target", aliases=("--source",),
                         help=f"family of the source target g, one of {', '.join(SOURCES)} (as rbk exp3 --target; "
                         "default single_index)")  # fmt: skip
    r: int = option(1, flag="--r", help="directions of U, 1 <= r <= min(d) (single_index: 1)", conv=integer)
    p: int = option(4, flag="--p", help="degree of the source g, >= 3 (random: >= 2)", conv=integer)
    head_degrees: tuple[int, ...] = option((2, 3), check=partial(check_ints, lo=1, order="sorted"),
                                           flag="--head-degrees", help="Hermite degrees of g', >= 2 of "
                                           "them (equal energy each; threshold: the top one's)", conv=integer,
                                           many=True, what="integers >= 1")  # fmt: skip
    n1_factor: float = option(32.0, check=partial(check_real, lo=0.0, lo_open=True), flag="--n1-factor",
                              help="source samples N1 = n1_factor * d^2, > 0", conv=float)
    width: int = option(512, check=partial(check_int, lo=2), flag="--width",
                        help="hidden units of the two-stage net and the random features, even", conv=integer)
    eta_mults: tuple[float, ...] = option((0.5, 1.0, 2.0), check=partial(check_reals, lo=0.0, lo_open=True,
                                          order="sorted"), flag="--etas", aliases=("--eta-mults",),
                                          help="two-stage step sizes as multiples of sqrt(d), > 0 (the source's "
                                          "chosen on --n-val, scratch's by --folds)", conv=float, many=True,
                                          what="numbers > 0")  # fmt: skip
    ridges: tuple[float, ...] = option((1e-4, 1e-3, 1e-2, 1e-1, 1.0), check=_ridges, flag="--readout-ridges",
                                       aliases=("--ridges",),
                                       help="relative ridges of the read-outs (transfer, rf, scratch), 1 to 5",
                                       conv=float, many=True, what="numbers >= 0")
    kernel_ridges: tuple[float, ...] = option((1e-3, 1e-1), check=_ridges, flag="--kernel-ridges",
                                              help="relative ridges of the exact NTK, 1 to 5", conv=float, many=True,
                                              what="numbers >= 0")
    b_std: float = option(1.0, check=partial(check_real, lo=0.0), flag="--b-std",
                          help="bias scale of the NTK and random features, >= 0 (default 1)", conv=float)
    n_val: int | None = option(None, check=optional(partial(check_int, lo=1)), flag="--n-val",
                               help="validation points of the source features' two-stage fit on N1 (default "
                               "max(1000, N1/5)); the new head's fits read none (they select by --folds' CV inside n2)",
                               conv=integer)  # fmt: skip
    folds: int = option(5, check=partial(check_int, lo=2), flag="--folds",
                        help="k of the k-fold cross-validation inside the n2 samples that selects every learner's "
                        "ridge (and scratch's step size) before a refit on all n2, integer >= 2; a cell at n2 uses "
                        "min(folds, n2) folds (default 5)", conv=integer)  # fmt: skip
    n_test: int = option(10000, check=partial(check_int, lo=1), flag="--n-test", help="test points (default 10000)",
                         conv=integer)
    net_max_n: int | None = option(None, flag="--net-max-n", help="largest n2 of transfer, rf-2nn and scratch",
                                   conv=integer)  # make_spec: >= n2s[0]
    kernel_max_n: int | None = option(None, flag="--kernel-max-n", help="largest n2 of the exact NTK",
                                      conv=integer)  # make_spec: >= n2s[0]

    row_fields = sweep.CORE_FIELDS + ("d", "n1", "n2", "width", "ridge", "eta", "source_test_error",
                                      "threshold", "r", "p", "cv_folds")  # fmt: skip

    # ------------------------------------------------------------------ protocol
    def config(self) -> dict:
        out = {"experiment": self.experiment}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_config(cls, config: dict, resolved: dict | None = None) -> "Exp3bSpec":
        kw = {k: v for k, v in config.items() if k != "experiment"}
        return make_spec(**kw)

    def plan(self) -> list[Cell]:
        return [Cell(f"{lr}_d{d}_s{s}", lr, LEARNERS[lr], d, s)
                for d in self.ds for s in self.seeds for lr in self.learners]  # fmt: skip

    def n1(self, d: int) -> int:
        """Source samples at ``d``: ``round(n1_factor * d^2)``."""
        return int(round(self.n1_factor * d * d))

    def learner_n2s(self, learner: str) -> tuple[int, ...]:
        cap = self.kernel_max_n if LEARNERS[learner] == "ntk" else self.net_max_n
        return tuple(n for n in self.n2s if cap is None or n <= cap)

    def member_epochs(self, cell) -> int | None:
        return len(self.learner_n2s(cell.learner))

    def cell_cost(self, cell) -> tuple:
        """``(training FLOPs, dense FLOPs, kernel entries, compiled program)`` of ``cell`` (every n2 of its
        learner) for the dry run's time estimate (:func:`rbk.sweep.cost.estimate_seconds`): a kernel
        fit per n2; a ridge read-out on ``width`` features per n2; the two-stage first step (the
        gradient on half the points, a read-out per eta) on the source's N1 (``transfer``, once)
        or on each n2 (``scratch``); at each n2 one fit per fold (:func:`.transfer.cv_fits`) and the refit."""
        cost = sweep.cost
        d, w, etas = cell.d, self.width, len(self.eta_mults)
        dense = entries = 0.0

        def two_stage(n, ev):
            return etas * (6 * n * d * w / 2 + cost.readout_flops(n, ev, d, w, len(self.ridges)))

        if cell.learner == "transfer":
            dense += two_stage(self.n1(d), _n_val(self, self.n1(d)) + self.n_test)
        for n2 in self.learner_n2s(cell.learner):
            for n, ev in cv_fits(n2, min(self.folds, n2), self.n_test):  # each fold's fit, then the refit
                if cell.kind == "ntk":
                    f, e = cost.kernel_fit_cost(n, ev, len(self.kernel_ridges))
                    dense, entries = dense + f, entries + e
                elif cell.learner == "scratch":
                    dense += two_stage(n, ev)
                else:
                    dense += cost.readout_flops(n, ev, d, w, len(self.ridges))
        return 0.0, dense, entries, (cell.learner, d)

    def memory_problems(self, cells, memory_bytes, n_devices=1, host_bytes=None) -> list[str]:
        from rbk import kernels

        out = []
        nets = [c for c in cells if c.kind != "ntk" and self.learner_n2s(c.learner)]
        if nets:  # the floor: the largest n2 (or the source's N1) points with d inputs and the width's features
            c = max(nets, key=lambda c: (max(self.n1(c.d), max(self.learner_n2s(c.learner))), c.d))
            n = max(self.n1(c.d), max(self.learner_n2s(c.learner)))
            need = sweep.data_bytes(n + _n_val(self, n) + self.n_test, c.d + self.width)
            out += sweep.too_big(f"the {c.learner} cell at d = {c.d} ({n} training points, its data and features, "
                                 f"float32)", need, memory_bytes,
                                 "use a smaller --n2 (or --net-max-n, --n1-factor, --n-test, --width)")  # fmt: skip
        ns = [max(self.learner_n2s(c.learner)) for c in cells if c.kind == "ntk" and self.learner_n2s(c.learner)]
        if ns and host_bytes is not None:
            need = kernels.fit_bytes(max(ns))
            if need > 0.8 * host_bytes:
                out.append(f"the exact NTK at n2 = {max(ns)} needs about {need / 2**30:,.1f} GiB of host memory, "
                           f"more than 80% of the {host_bytes / 2**30:.1f} GiB here; lower --kernel-max-n")
        return out

    def run_cell(self, cell, devices=None, progress=None) -> list[dict]:
        return run_cell(self, cell, progress)


# ---------------------------------------------------------------------- validation


def make_spec(**kw) -> Exp3bSpec:
    """The validated :class:`Exp3bSpec`; a bad value raises ``ValueError`` naming it and its range
    (each field's own check, then those across fields)."""
    v = validate(Exp3bSpec, kw, what="exp3b", skip=())
    if v["experiment"] != EXPERIMENT:
        raise ValueError(f"experiment must be {EXPERIMENT!r}, got {v['experiment']!r}")
    ds, n2s = v["ds"], v["n2s"]
    v["r"] = check_int("r (--r)", v["r"], lo=1, hi=min(ds))
    if v["source"] == "single_index" and v["r"] != 1:
        raise ValueError(f"r (--r) must be 1 for target 'single_index', got r={v['r']}")
    v["p"] = check_int("p (--p)", v["p"], lo=2 if v["source"] == "random" else 3)
    if len(v["head_degrees"]) < 2:
        raise ValueError(f"head_degrees (--head-degrees) must hold at least 2 degrees (the threshold is the top "
                         f"degree's energy share, 1 / len(head_degrees)), got {list(v['head_degrees'])}")  # fmt: skip
    if round(v["n1_factor"] * ds[0] ** 2) < 4:
        raise ValueError(f"n1_factor (--n1-factor) must give N1 = n1_factor * d^2 >= 4 source samples at d = "
                         f"{ds[0]}, got {v['n1_factor']}")  # fmt: skip
    if v["width"] % 2:
        raise ValueError(f"width (--width) must be an even integer >= 2 (two_stage's neurons come in pairs), "
                         f"got {v['width']}")  # fmt: skip
    for name in ("net_max_n", "kernel_max_n"):
        if v[name] is not None:
            v[name] = check_int(f"{name} (--{name.replace('_', '-')})", v[name], lo=n2s[0])
    if "scratch" in v["learners"]:  # its two stages need a training point each in every fold
        from rbk.learners.crossval import fold_bounds

        for n in n2s:
            k = min(v["folds"], n)
            if n - max(b - a for a, b in fold_bounds(n, k)) < 2:
                raise ValueError(f"n2s (--n2) must be >= 4 with learner scratch: at n2 = {n} a fold of the "
                                 f"{k}-fold cross-validation (--folds) leaves its two stages one point")  # fmt: skip
    return Exp3bSpec(**v)


# ---------------------------------------------------------------------- the science (pure functions)


def _target_key(d: int, seed: int):
    import jax

    return jax.random.fold_in(jax.random.PRNGKey(1000 + seed), d)


def source_target(spec: Exp3bSpec, d: int, seed: int):
    """The source target ``g(U x)`` of (``d``, seed); ``U`` drawn from the seed."""
    from rbk import targets

    key = _target_key(d, seed)
    if spec.source == "single_index":
        return targets.single_index(key, d, spec.p)
    if spec.source == "sum_of_products":
        return targets.sum_of_products(key, d, spec.r, spec.p)
    return targets.random_multi_index(key, d, spec.r, spec.p)


def transfer_head(source, degrees, key):
    """A new head ``g'`` on ``source``'s ``U`` (:func:`rbk.targets.with_head`): Gaussian coefficients on
    every multi-index of each degree in ``degrees``, rescaled so that each degree holds ``1 /
    len(degrees)`` of ``E[g'^2] = 1``; its threshold (the Target's) is the top degree's share.

    ``g'`` need not satisfy the Hessian condition (nothing learns features from it except the
    ``scratch`` baseline), so a head without a degree-2 part is allowed."""
    import jax
    import jax.numpy as jnp

    from rbk import targets

    r = int(source.info["r"])
    terms = {}
    for l in degrees:
        alphas = targets.multi_indices(r, l)
        c = np.asarray(jax.random.normal(jax.random.fold_in(key, l), (len(alphas),), jnp.float32), np.float64)
        terms.update(zip(alphas, (c / np.linalg.norm(c) / math.sqrt(len(degrees))).tolist()))
    return targets.with_head(source, terms, allow_degenerate=True)


def instance(spec: Exp3bSpec, d: int, seed: int):
    """``(source, head)`` targets of (``d``, seed): the same ``U``."""
    import jax

    src = source_target(spec, d, seed)
    return src, transfer_head(src, spec.head_degrees, jax.random.fold_in(_target_key(d, seed), 1))


def learn_features(spec: Exp3bSpec, d: int, seed: int, source=None) -> dict:
    """``two_stage`` on ``N1 = n1(d)`` samples of the source: its result (``features``, errors, eta)."""
    from rbk import data, train

    source = source_target(spec, d, seed) if source is None else source
    k_src, _, k_ts, _, _ = keys(d, seed)
    ds = data.make_dataset(k_src, source, spec.n1(d), n_val=_n_val(spec, spec.n1(d)), n_test=spec.n_test)
    cfg = train.two_stage_config(spec.width, tuple(m * math.sqrt(d) for m in spec.eta_mults), ridges=spec.ridges)
    return train.two_stage(ds, k_ts, cfg)


def _n_val(spec: Exp3bSpec, n: int) -> int:
    """Validation points of the source's two-stage fit on ``n`` points (the head has none)."""
    from rbk import data

    return data.default_n_val(n) if spec.n_val is None else spec.n_val


def run_cell(spec: Exp3bSpec, cell: Cell, progress=None) -> list[dict]:
    """The rows of one (learner, d, seed): one per ``n2`` of the learner."""
    d, seed = cell.d, cell.seed
    src, head = instance(spec, d, seed)
    features, src_err, src_eta = None, math.nan, math.nan
    if cell.learner == "transfer":
        feat = learn_features(spec, d, seed, src)
        features, src_err, src_eta = feat.get("features"), float(feat["test_error"]), feat["eta"] / math.sqrt(d)
    pool = transfer_pool(spec, head, d, seed)
    rows = []
    for n2 in spec.learner_n2s(cell.learner):
        t1 = time.perf_counter()
        if cell.learner == "transfer" and features is None:  # the source's two_stage diverged
            fit = {"train_error": math.inf, "val_error": math.inf, "test_error": math.inf, "ridge": math.nan,
                   "eta": math.nan, "cv_folds": min(spec.folds, n2)}
        else:
            fit = fit_head(spec, cell.learner, subset(spec, pool, n2), d, seed, features)
            if cell.learner == "transfer":
                fit["eta"] = src_eta  # the first step's learning rate / sqrt(d), chosen on the source
        errs = (fit["train_error"], fit["val_error"], fit["test_error"])
        rows.append({
            "experiment": spec.experiment, "learner": cell.learner, "kind": cell.kind, "n": n2, "seed": seed,
            **{k: fit[k] for k in ("train_error", "val_error", "test_error")},
            "diverged": not all(map(math.isfinite, errs)), "call_wall_s": time.perf_counter() - t1, "cell": cell.id,
            "d": d, "n1": spec.n1(d), "n2": n2, "width": spec.width,
            "ridge": fit["ridge"], "eta": fit["eta"], "source_test_error": src_err, "threshold": head.threshold,
            "r": spec.r, "p": spec.p, "cv_folds": fit["cv_folds"],
        })  # fmt: skip
        if progress is not None:
            progress(1)
    return rows


# ---------------------------------------------------------------------- summary


def _select(rows) -> list[dict]:
    from rbk import stats

    return stats.select(rows, keys=("experiment", "learner", "d", "n", "seed"))


def _threshold(rows, d: int) -> float:
    vals = {round(float(r["threshold"]), 12) for r in rows if r["d"] == d}
    if len(vals) != 1:
        raise ValueError(f"rows at d = {d} carry different thresholds {sorted(vals)}; they mix instances")
    return vals.pop()


def _slope_fit(groups: dict, thresholds: dict, n_boot: int) -> dict:
    """``{"slope", "ci95", "censored"}`` of ``log n2*`` against ``log d`` (:func:`rbk.stats.scaling_slope`:
    least squares, percentile bootstrap over seeds resampled jointly at every ``d``, a censored ``d``
    at its bound); NaN with fewer than two ``d``."""
    from rbk import stats

    if len(groups) < 2:
        return {"slope": math.nan, "ci95": [math.nan, math.nan], "censored": False}
    s = stats.scaling_slope(groups, {d: thresholds[d] for d in groups}, n_boot=n_boot)
    return {"slope": s["slope"], "ci95": s["ci95"], "censored": s["censored"]}


def summarize(spec: Exp3bSpec, rows, *, quiet: bool = False, n_boot: int = 2000) -> dict | None:
    """``summary.json``: per (learner, d, n2) the seed-mean test error and 95% t-CI (``rows``), the
    source's test error per d, ``n_star`` per (learner, d) at the head's threshold (bootstrap
    CI over seeds) and ``slopes`` ``{learner: {"slope", "ci95", "censored"}}`` of ``log n2*``
    against ``log d``."""
    from rbk import stats

    sel = _select(rows)
    if not sel:
        return None
    out_rows = []
    for (learner, d, n), rs in sorted(stats.group_by(sel, "learner", "d", "n").items(),
                                      key=lambda kv: (list(LEARNERS).index(kv[0][0]), kv[0][1], kv[0][2])):
        tests = [r["test_error"] for r in rs if not r["diverged"] and math.isfinite(r["test_error"])]
        m, lo, hi = stats.t_ci(tests)
        out_rows.append({"learner": learner, "kind": LEARNERS[learner], "d": d, "n": n,
                         "test_error_mean": m if tests else None, "test_error_ci95": [lo, hi],
                         "test_error_min": min(tests, default=None), "test_error_max": max(tests, default=None),
                         "seeds": len(tests), "diverged_seeds": len(rs) - len(tests)})
    ds = sorted({r["d"] for r in sel})
    thresholds = {d: _threshold(sel, d) for d in ds}
    nstar, slopes = [], {}
    for learner in [lr for lr in LEARNERS if any(r["learner"] == lr for r in sel)]:
        groups = {}
        for d in ds:
            lr_rows = [r for r in sel if r["learner"] == learner and r["d"] == d]
            if not lr_rows:
                continue
            groups[d] = lr_rows
            nstar.append({"learner": learner, "d": d, "threshold": thresholds[d],
                          **stats.n_star(lr_rows, thresholds[d], n_boot=n_boot)})
        slopes[learner] = _slope_fit(groups, thresholds, n_boot)
    source = []
    per_seed = {(r["d"], r["seed"]): r["source_test_error"] for r in sel if r["learner"] == "transfer"}
    for d in ds:
        errs = [e for (dd, _), e in per_seed.items() if dd == d and e is not None and math.isfinite(e)]
        if errs:
            m, lo, hi = stats.t_ci(errs)
            source.append({"d": d, "n1": spec.n1(d), "test_error_mean": m, "test_error_ci95": [lo, hi]})
    predicted = predictions(spec)
    for lr, by_d in predicted.items():
        s = predicted_slope(by_d, float(max(spec.head_degrees)))
        if s is not None:  # beside the measured slope (alone if the kernel was not run)
            slopes[lr] = dict(slopes[lr], predicted=s) if lr in slopes else dict(s, ci95=[None, None])
    return stats.jsonable({
        "experiment": EXPERIMENT, "config": spec.config(), "thresholds": {str(d): t for d, t in thresholds.items()},
        "rows": out_rows, "n_star": nstar, "slopes": slopes, "source": source, "predicted": predicted,
    })  # fmt: skip


def predictions(spec: Exp3bSpec) -> dict:
    """``summary["predicted"]``: the exact NTK's predicted curve against ``n2`` per ``d``, the mean
    over the seeds' heads (:func:`.predicted.seed_mean_prediction`: each seed draws its own ``g'``),
    on the ``n2`` grid and out to ``N = 1e7``, its ``n_star`` at the head's threshold; whenever the
    NTK or a network learner runs (``{}`` otherwise)."""
    from rbk import kernels

    if "ntk-2nn" not in spec.learners and not any(LEARNERS[lr] == "net" for lr in spec.learners):
        return {}
    heads = {d: {s: instance(spec, d, s)[1] for s in spec.seeds} for d in spec.ds}
    kfn = kernels.kernel_fn("2nn", b_std=spec.b_std)
    return {"ntk-2nn": seed_mean_prediction(kfn, "ntk", heads, spec.n2s, spec.kernel_ridges)}


# ---------------------------------------------------------------------- table and figures


def _fmt_nstar(s: dict) -> str:
    c = s.get("censored")
    if c == "below_at_min_n":
        return f"<= {s['bound']:,.0f}"
    if c == "never_below":
        return f"> {s['bound']:,.0f}"
    lo, hi = (s.get("ci95") or [None, None])[:2]
    txt = f"{s['estimate']:,.0f}"
    return txt + (f" [{lo:,.0f}, {hi:,.0f}]" if lo is not None and hi is not None else "")


def format_table(summary) -> str:
    """Mean test error per (learner, d) x n2 (``*``: below the threshold), n2* per (learner, d), slopes."""
    from rbk import plots

    thr = {int(d): t for d, t in summary["thresholds"].items()}
    cfg = summary["config"]
    lines = [f"Experiment 3b (transfer): source {cfg['source']} (r={cfg['r']}, p={cfg['p']}), "
             f"head degrees {cfg['head_degrees']}, N1 = {cfg['n1_factor']:g} d^2; "
             f"threshold {', '.join(f'{t:.3g}' for t in sorted(set(thr.values())))} (the head's top-degree energy)"]
    if summary.get("source"):
        lines.append("source two-stage test error: " + ", ".join(
            f"d={s['d']} (N1={s['n1']}): {plots.fmt_num(s['test_error_mean'])}" for s in summary["source"]))
    ns = sorted({r["n"] for r in summary["rows"]})
    cells, labels = {}, []
    for r in summary["rows"]:
        lab = f"{r['learner']} d={r['d']}"
        if lab not in labels:
            labels.append(lab)
        m = r["test_error_mean"]
        cells[(lab, str(n := r["n"]))] = "-" if m is None else plots.fmt_num(m) + ("*" if m < thr[r["d"]] else "")
    lines += ["", "mean test error (seed mean; * below the threshold)"]
    lines += plots.grid_table(labels, [str(n) for n in ns], cells, corner="learner d \\ n2")
    lines += ["", "n2* per d (first crossing of the seed-mean log error; 95% bootstrap CI over seeds)"]
    ds = sorted(thr)
    nc = {(s["learner"], str(s["d"])): _fmt_nstar(s) for s in summary["n_star"]}
    learners = list(dict.fromkeys(s["learner"] for s in summary["n_star"]))
    lines += plots.grid_table(learners, [str(d) for d in ds], nc, corner="learner \\ d")
    lines += ["", "slope of log n2* against log d [95% bootstrap CI]"]
    for lr, s in summary["slopes"].items():
        p = s if s.get("basis") == "predicted" else s.get("predicted")
        if s.get("basis") != "predicted":
            lo, hi = s["ci95"]
            ci = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
            sl = "-" if s["slope"] is None else f"{s['slope']:.2f}"
            lines.append(f"  {lr:10s} {sl}{ci}" + ("  (censored: a d enters at its bound)" if s["censored"] else ""))
        if p is not None:
            lines.append(f"  {lr:10s} {p['slope']:.2f}  predicted from the spectrum (d = "
                         f"{', '.join(str(d) for d in p['x'])}; theory {p['theory']:g})")
    pred = summary.get("predicted", {})
    for lr, by_d in pred.items():
        lines.append(f"  {lr} predicted n2* (seed mean of the heads' curves): " + ", ".join(
            f"d={d}: " + ("> 1e9" if v["n_star"] is None else f"{v['n_star']:,.0f}") for d, v in by_d.items()))
    return "\n".join(lines)


_STYLE = {"transfer": ("#1f77b4", "-", "o"), "scratch": ("#9467bd", "-", "^"),
          "ntk-2nn": ("#2ca02c", "--", "s"), "rf-2nn": ("#d62728", ":", "D")}  # fmt: skip


def plot(summary, out_dir) -> list:
    """``exp3b_curves`` (test error against n2, one panel per d) and ``exp3b_nstar`` (n2* against d,
    log-log, with the fitted lines), png and pdf each."""
    from rbk import plots

    plt = plots.plt
    thr = {int(d): t for d, t in summary["thresholds"].items()}
    ds = sorted(thr)
    fig, axes = plt.subplots(1, len(ds), figsize=(4.2 * len(ds), 3.6), sharey=True, squeeze=False)
    for ax, d in zip(axes[0], ds):
        for lr, (col, ls, mk) in _STYLE.items():
            rs = [r for r in summary["rows"] if r["learner"] == lr and r["d"] == d and r["test_error_mean"] is not None]
            if not rs:
                continue
            n = [r["n"] for r in rs]
            ax.plot(n, [r["test_error_mean"] for r in rs], ls=ls, marker=mk, color=col, label=lr, ms=4)
            ax.fill_between(n, [r["test_error_min"] for r in rs], [r["test_error_max"] for r in rs], color=col,
                            alpha=0.12, lw=0)  # the seeds' range
        for lr, by_d in summary.get("predicted", {}).items():
            if str(d) in by_d:  # the spectrum's prediction, dashed, over the measured n2 range
                draw_curve(ax, by_d[str(d)], _STYLE.get(lr, ("k",))[0], max(r["n"] for r in summary["rows"]))
        ax.axhline(thr[d], color="k", lw=0.8, ls="-.")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"d = {d}")
        ax.set_xlabel("n2 (samples of the new head)")
    axes[0][0].set_ylabel("test error / E[g'^2]")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Transfer to a new head g'(Ux): learned features vs kernels (band: seeds' range; dash-dot: "
                 "threshold; dashed: predicted from the spectrum)", fontsize=9)
    paths = list(plots.save(fig, out_dir, "exp3b_curves"))

    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    x = np.log(ds)
    for lr, (col, ls, mk) in _STYLE.items():
        ss = sorted((s for s in summary["n_star"] if s["learner"] == lr), key=lambda s: s["d"])
        if not ss:
            continue
        for s in ss:
            if s["censored"] == "none":
                lo, hi = s["ci95"]
                yerr = None if lo is None else [[s["estimate"] - lo], [hi - s["estimate"]]]
                ax.errorbar([s["d"]], [s["estimate"]], yerr=yerr, color=col, marker=mk, ms=5, capsize=3)
            else:  # censored: an open marker at the bound, pointing the way n2* lies
                ax.plot([s["d"]], [s["bound"]], color=col, marker="^" if s["censored"] == "never_below" else "v",
                        mfc="none", ms=8)
        sl = summary["slopes"].get(lr, {})
        ys = [s["estimate"] if s["censored"] == "none" else s["bound"] for s in ss]
        if sl.get("slope") is not None and len(ss) >= 2:
            b = np.mean(np.log(ys)) - sl["slope"] * np.mean(np.log([s["d"] for s in ss]))
            ci = sl["ci95"]
            txt = f"{lr}: slope {sl['slope']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci[0] is not None else "")
            ax.plot(ds, np.exp(b + sl["slope"] * x), color=col, ls=ls, lw=1, label=txt + (" (censored)" if sl["censored"] else ""))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(plots.FixedLocator(ds))
    ax.xaxis.set_major_formatter(plots.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(plots.NullFormatter())
    ax.set_xlabel("d")
    ax.set_ylabel("n2* (samples of g' to reach the threshold)")
    if ax.get_legend_handles_labels()[0]:  # the fitted lines (two d or more)
        ax.legend(fontsize=7)
    ax.set_title("n2* against d (open triangles: censored bounds)")
    paths += list(plots.save(fig, out_dir, "exp3b_nstar"))
    return paths


# ---------------------------------------------------------------------- command line


#: ``rbk exp3b``'s own options: those of :class:`Exp3bSpec`'s fields with a flag (the command adds
#: ``--profile``, ``--out``, ``--seeds`` as a count, ...).
OPTIONS = tuple(o for o in options_of(Exp3bSpec) if o.field != "seeds")
_TARGET_OPTIONS = ("source", "r", "p", "head_degrees")


def add_arguments(parser) -> None:
    """``rbk exp3b``'s own options (:data:`OPTIONS`)."""
    add_options(parser.add_argument_group("targets: source g(Ux) on x ~ N(0, I_d), new head g'(Ux) on the same U"),
                [o for o in OPTIONS if o.field in _TARGET_OPTIONS])
    add_options(parser.add_argument_group("grid"), [o for o in OPTIONS if o.field not in _TARGET_OPTIONS])


def overrides(args) -> dict:
    """``make_spec`` keywords of the parsed options (``None``: not given)."""
    return option_values(args, OPTIONS)


#: ``spec(profile, **overrides)``: the study of a profile; ``run(out_dir, profile, ...)``: run it, summarise it.
spec, run = entry_points(__name__)

