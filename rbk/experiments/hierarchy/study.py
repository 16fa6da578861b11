"""The study of Experiment 4 (:class:`Exp4Spec`): deep hierarchies of :func:`rbk.targets.hierarchy`,
its cells (one compiled network call per (learner, N), one kernel fit per (learner, N, seed)),
the learner registry (:data:`LEARNERS`), the cell runners and :func:`make_spec`, which validates
every value before anything is computed."""


from __future__ import annotations

import dataclasses
import math
import time
from functools import partial
from typing import Callable

import numpy as np

from rbk._args import integer, option, optional, validate
from rbk._checks import check_bool, check_choice, check_int, check_ints, check_list, check_real, check_reals
from rbk.experiments.common import member_chunking_option
from rbk.sweep import CORE_FIELDS, Study

EXPERIMENT = "exp4"

READOUTS = ("square", "linear")
FIRSTS = ("linear", "quadratic")
ACTIVATIONS = ("square", "hermite", "truncated")
MATMUL_PRECISIONS = ("highest", "high", "default")


# --------------------------------------------------------------------------------------------
# cells and the learner registry
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Cell:
    """One compiled network call (all seeds and lrs of a (learner, N); ``seed = None``) or one
    kernel fit (a (learner, N, seed))."""

    id: str
    learner: str
    kind: str
    n: int
    seed: int | None = None


@dataclasses.dataclass(frozen=True)
class Learner:
    """A learner this study offers: the :data:`rbk.learners.LEARNERS` entry it is (``shared``),
    its rows' kind (``'net'``, ``'ntk'``, ``'nngp'``), whether a cell holds one seed (kernels) or
    all (networks), the function computing a cell's rows ``(spec, cell, devices, progress) ->
    list[dict]`` and the columns it records beyond the common ones."""

    shared: str
    kind: str
    per_seed: bool
    run: Callable
    fields: tuple = ()  # the study's own row columns this learner fills (the others stay None)


def _deep_runner(regime: str) -> Callable:
    def run(spec, cell, devices=None, progress=None):
        return _run_deep(spec, cell, regime, devices, progress)

    return run


def _kernel_runner(get: str) -> Callable:
    def run(spec, cell, devices=None, progress=None):
        return _run_kernel(spec, cell, get)

    return run


def _shallow_runner(spec, cell, devices=None, progress=None):
    return _run_2nn(spec, cell, devices, progress)


def _two_stage_runner(spec, cell, devices=None, progress=None):
    return _run_two_stage(spec, cell)


_NET = ("width", "epochs", "lr", "wd", "record_epochs", "test_over_training", "compile_s", "run_s")
_DEEP = _NET + ("feature_quality", "subspace_quality")
_KERNEL = ("ridge",)
_TWO = ("width", "eta", "ridge")

LEARNERS = {
    **{f"deep-{r}": Learner(f"deep-{r}", "net", False, _deep_runner(r), _DEEP)
       for r in ("joint", "layerwise", "progressive", "stopgrad")},
    "ntk-deep": Learner("ntk", "ntk", True, _kernel_runner("ntk"), _KERNEL),
    "nngp-deep": Learner("nngp", "nngp", True, _kernel_runner("nngp"), _KERNEL),
    "2nn": Learner("sgd", "net", False, _shallow_runner, _NET),
    "two-stage": Learner("two-stage", "net", True, _two_stage_runner, _TWO),
}

#: The kinds of the exact-kernel learners (their N: ``kernel_ns``).
KERNEL_KINDS = ("ntk", "nngp")

#: The study's own columns (after :data:`rbk.sweep.CORE_FIELDS`).
OWN_FIELDS = ("d", "levels", "widths", "alphas", "readout", "labels", "width", "epochs", "lr", "wd", "eta", "ridge",
              "threshold", "test_error_raw", "test_beta", "test_error_cv", "test_error_se", "test_estimator",
              "record_epochs", "test_over_training", "feature_quality", "subspace_quality", "compile_s", "run_s")  # fmt: skip


# --------------------------------------------------------------------------------------------
# the study
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Exp4Spec(Study):
    """Experiment 4's grid (build it with :func:`make_spec`, which validates every value)."""

    experiment: str = EXPERIMENT
    d: int = option(48, check=partial(check_int, lo=1), flag="--d", help="input dimension, >= 1", conv=integer)
    widths: tuple = option((4, 4, 4), check=partial(check_ints, lo=1, scalar=False, unique=False),
                           flag="--target-widths", aliases=("--widths",),
                           help="the target's level widths k_1 ... k_L, L >= 2 (k_1 <= --d)", conv=integer, many=True,
                           what="integers")  # fmt: skip
    alphas: tuple = option((1.0, 0.8, 0.6), check=partial(check_reals, lo=0.0, scalar=False, unique=False),
                           flag="--target-alphas", aliases=("--alphas",),
                           help="the target's level weights alpha_1 ... alpha_L, one per level, positive and strictly "
                           "decreasing", conv=float, many=True, what="numbers")  # fmt: skip
    readout: str = option("linear", check=partial(check_choice, choices=READOUTS), flag="--readout",
                          help="the target's output map", choices=READOUTS)
    first: str = option("linear", check=partial(check_choice, choices=FIRSTS))
    skip: bool = option(True, check=check_bool)
    rank: int | None = option(None, check=optional(partial(check_int, lo=1)))
    paper_regime: bool = option(True, check=check_bool)
    target_seed: int = option(0, check=partial(check_int, lo=0))
    learners: tuple = option(("deep-joint", "deep-layerwise", "ntk-deep"),
                             check=partial(check_list, check=partial(check_choice, choices=tuple(LEARNERS))),
                             flag="--learners", help=f"among {list(LEARNERS)}", many=True, what="names")
    ns: tuple = option((2000, 4000, 8000), check=partial(check_ints, lo=1, order="sorted"), flag="--n",
                       help="training-set sizes N, each >= the batch size 50", conv=integer, many=True,
                       what="integers")  # fmt: skip
    seeds: tuple = option((0, 1, 2, 3, 4), check=partial(check_ints, lo=0, order="sorted"))
    width: int = option(64, check=partial(check_int, lo=1), flag="--width",
                        help="the deep network's width per level", conv=integer)
    activation: str = option("truncated", check=partial(check_choice, choices=ACTIVATIONS))
    clip: float = option(2.0, check=partial(check_real, lo=1.0))
    epochs: int = option(90, check=partial(check_int, lo=1), flag="--epochs",
                         help="total epochs, a multiple of the number of levels", conv=integer)
    batch_size: int = option(50, check=partial(check_int, lo=1))
    lrs: tuple = option((3e-3, 5e-3), check=partial(check_reals, lo=0.0, lo_open=True, order="sorted"), flag="--lr",
                        help="learning rates, each > 0 (selected on validation)", conv=float, many=True,
                        what="numbers")  # fmt: skip
    wds: tuple = option((0.0,), check=partial(check_reals, lo=0.0, order="sorted"), flag="--wd",
                        help="weight decays, each >= 0 (selected on validation)", conv=float, many=True,
                        what="numbers")  # fmt: skip
    clip_norm: float | None = option(None, check=optional(partial(check_real, lo=0.0, lo_open=True)),
                                     flag="--clip-norm", help="bound the global norm of each mini-batch gradient of "
                                     "the networks, > 0 (default: none, plain SGD)", conv=float)  # fmt: skip
    record_per_stage: int = option(2, check=partial(check_int, lo=1))
    ridges: tuple = option((1e-6, 1e-5, 1e-4, 1e-3, 1e-2), check=partial(check_reals, lo=0.0, order="sorted"),
                           flag="--kernel-ridges", aliases=("--ridges",),
                           help="kernel ridges relative to mean(diag K), 1 to 5 values >= 0 (chosen on validation)",
                           conv=float, many=True, what="numbers")  # fmt: skip
    n_val: int = option(2000, check=partial(check_int, lo=2), flag="--n-val", help="validation points, >= 2",
                        conv=integer)
    n_test: int = option(10000, check=partial(check_int, lo=1), flag="--n-test", help="test points, >= 1",
                         conv=integer)
    n_test_importance: int = option(0, check=partial(check_int, lo=0), flag="--n-test-importance",
                                    help="importance-sampled test points scoring the networks (0: none; their "
                                    "test error is then the control-variate one), >= 0", conv=integer)  # fmt: skip
    importance_scale: float = option(2.0, check=partial(check_real, lo=1.0, lo_open=True))
    kernel_max_n: int = option(20000, check=partial(check_int, lo=1), flag="--kernel-max-n",
                               help="largest N of the exact kernels", conv=integer)
    kernel_ns: tuple | None = option(None, check=optional(partial(check_ints, lo=1, order="sorted")),
                                     flag="--kernel-n", help="training-set sizes N of the exact kernels (default: "
                                     "those of --n up to --kernel-max-n)", conv=integer, many=True,
                                     what="integers")  # fmt: skip
    kernel_large_seeds: int | None = option(None, check=optional(partial(check_int, lo=1)), flag="--kernel-large-seeds",
                                            help="run the exact kernels above N = 20000 (the matrix-free solver, "
                                            "minutes per fit) for only the first this many seeds, >= 1 (default: "
                                            "every seed)", conv=integer)  # fmt: skip
    kernel_tol: float = option(1e-6, check=partial(check_real, lo=0.0, lo_open=True, hi=0.1),
                               flag="--kernel-tol", help="the matrix-free solver's relative residual (the exact "
                               "kernels above N = 20000), in (0, 0.1]", conv=float)  # fmt: skip
    two_stage_width: int = option(512, check=partial(check_int, lo=2), flag="--two-stage-width",
                                  help="the two-stage control's width, even >= 2", conv=integer)
    etas: tuple = option((0.25, 0.5, 1.0, 2.0), check=partial(check_reals, lo=0.0, lo_open=True, order="sorted"),
                         flag="--etas", help="the two-stage control's step sizes as multiples of sqrt(d), > 0 "
                         "(selected on validation)", conv=float, many=True, what="numbers")  # fmt: skip
    readout_ridges: tuple = option((1e-4, 1e-3, 1e-2, 1e-1, 1.0), check=partial(check_reals, lo=0.0, order="sorted"),
                                   flag="--readout-ridges", help="the two-stage control's read-out ridges (relative), "
                                   "1 to 5 values >= 0", conv=float, many=True, what="numbers")  # fmt: skip
    matmul_precision: str = option("highest", check=partial(check_choice, choices=MATMUL_PRECISIONS))
    max_members_per_call: int | None = member_chunking_option()

    row_fields = CORE_FIELDS + OWN_FIELDS
    resource_fields = ("max_members_per_call",)

    @property
    def levels(self) -> int:
        return len(self.widths)

    def config(self) -> dict:
        """The JSON config that defines the results (hashed; without the ``resource_fields``, which change no number)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in self.resource_fields}
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        return out

    @classmethod
    def from_config(cls, config: dict, resolved: dict | None = None) -> "Exp4Spec":
        res = {f: (resolved or {}).get(f) for f in cls.resource_fields}
        return make_spec(**{k: v for k, v in config.items() if k != "experiment"}, **res)

    # -- the target, data and models -------------------------------------------------------

    def target(self):
        return _target(self.d, self.widths, self.alphas, self.readout, self.first, self.skip, self.rank,
                       self.paper_regime, self.target_seed)  # fmt: skip

    def dataset(self, n: int, seed: int):
        from rbk.data import make_dataset, seed_keys

        return make_dataset(seed_keys(seed)[0], self.target(), n, n_val=self.n_val, n_test=self.n_test,
                            distribution="gaussian")  # fmt: skip

    def kernel_fn(self):
        """The exact kernels (NTK, NNGP) of the deep network's architecture, as the kernel learners use them."""
        from rbk import kernels
        from rbk.models import get_deepquad

        act = "hermite" if self.activation == "truncated" else self.activation  # equal for |u| <= clip
        return kernels.model_kernel_fn(get_deepquad(self.width, self.d, levels=self.levels, activation=act,
                                                    skip=self.skip, readout=self.head, parameterization="ntk",
                                                    head_init="random"))  # fmt: skip

    @property
    def head(self) -> str:
        """The learner's read-out: ``sigma(h_l)`` for the paper's output map, ``h_l`` for the linear one."""
        return "post" if self.readout == "square" else "pre"

    def deep_model(self, reference=None):
        from rbk.models import get_deepquad

        return get_deepquad(self.width, self.d, levels=self.levels, activation=self.activation, clip=self.clip,
                            skip=self.skip, readout=self.head, reference=reference)  # fmt: skip

    def train_config(self, regime: str):
        from rbk import train

        return train.regime_config(regime, self.levels, self.epochs, record_per_stage=self.record_per_stage,
                                   batch_size=self.batch_size, matmul_precision=self.matmul_precision,
                                   clip_norm=self.clip_norm)  # fmt: skip

    # -- the plan ----------------------------------------------------------------------------

    def grid(self, learner: str) -> tuple:
        """The training-set sizes of ``learner``: ``kernel_ns`` (default: the ``ns`` up to
        ``kernel_max_n``) for the exact kernels, ``ns`` for the others."""
        if LEARNERS[learner].kind not in KERNEL_KINDS:
            return self.ns
        return tuple(self.kernel_ns) if self.kernel_ns is not None else tuple(n for n in self.ns if n <= self.kernel_max_n)

    def seeds_at(self, learner: str, n: int) -> tuple:
        """The seeds ``learner`` runs at ``n``: all, but only the first ``kernel_large_seeds`` for an
        exact kernel above ``rbk.kernels.DENSE_MAX_N`` (the matrix-free solver)."""
        from rbk.kernels import DENSE_MAX_N

        big = LEARNERS[learner].kind in KERNEL_KINDS and n > DENSE_MAX_N and self.kernel_large_seeds is not None
        return self.seeds[: self.kernel_large_seeds] if big else self.seeds

    def plan(self) -> list[Cell]:
        cells = []
        for name in self.learners:
            lr = LEARNERS[name]
            for n in self.grid(name):
                if lr.per_seed:
                    cells += [Cell(f"{name}_n{n}_s{s}", name, lr.kind, n, s) for s in self.seeds_at(name, n)]
                else:
                    cells.append(Cell(f"{name}_n{n}", name, lr.kind, n))
        return cells

    def member_epochs(self, cell) -> int | None:
        if cell.kind != "net" or LEARNERS[cell.learner].per_seed:
            return None
        return len(self.seeds) * len(self.lrs) * len(self.wds) * self.epochs

    def run_cell(self, cell, devices=None, progress=None) -> list[dict]:
        return LEARNERS[cell.learner].run(self, cell, devices, progress)

    def cell_cost(self, cell) -> tuple:
        """``(training FLOPs, dense FLOPs, kernel entries, compiled program)`` of ``cell`` for the dry
        run's time estimate (:func:`rbk.sweep.cost.estimate_seconds`): SGD at ``6 x`` the forward
        multiply-adds per example seen (every (seed, lr, wd) member), plus one forward pass over the
        evaluated points per recorded epoch; a kernel cell's fit, its entries weighted by the levels
        of its recursion."""
        from rbk import sweep

        ev = self.n_val + self.n_test
        if cell.learner == "two-stage":  # a gradient of the first layer, then a ridge read-out per step size
            m, pts = self.two_stage_width, cell.n + ev
            fl = len(self.etas) * (6.0 * m * self.d * cell.n + 2.0 * m * self.d * pts + 2.0 * m * m * cell.n)
            return float(fl), float(len(self.etas)) * m**3 / 3.0, 0.0, ("two-stage", cell.n)
        if cell.kind == "net":
            members = len(self.seeds) * len(self.lrs) * len(self.wds)
            if cell.learner == "2nn":
                macs, records = self.d * self.width * self.levels + self.width * self.levels, 2
            else:  # level 1: d -> width; each level above: W_l (and V_l through the skip); a head per level
                macs = self.d * self.width + (self.levels - 1) * self.width**2 * (2 if self.skip else 1)
                macs += self.levels * self.width
                records = self.record_per_stage * self.levels
            fl = 6 * macs * cell.n * self.epochs * members + 2 * macs * (cell.n + ev) * records * members
            return float(fl), 0.0, 0.0, ("train", cell.learner, cell.n)
        from rbk.kernels.solvers.cg import DENSE_MAX_N

        fit = sweep.cost.cg_fit_cost if cell.n > DENSE_MAX_N else sweep.cost.kernel_fit_cost
        dense, entries = fit(cell.n, ev, len(self.ridges))
        return 0.0, dense, entries * self.levels, (cell.learner, cell.n)

    def memory_problems(self, cells, memory_bytes, n_devices=1, host_bytes=None) -> list[str]:
        from rbk.learners import kernel_cell_bytes

        from rbk import sweep

        out = []
        nets = [c for c in cells if c.kind == "net" and not LEARNERS[c.learner].per_seed]
        if nets:  # the floor: every seed's data (vmapped in one call), float32, with d inputs and one level's width
            n = max(c.n for c in nets)
            need = sweep.data_bytes(n + self.n_val + self.n_test, self.d + self.width, copies=len(self.seeds))
            out += sweep.too_big(f"a network call at N = {n} ({len(self.seeds)} seeds' data and one level's "
                                 f"activations, float32)", need, memory_bytes,
                                 "use a smaller --n (or --n-val, --n-test, --width, --seeds)")  # fmt: skip
        ns = [c.n for c in cells if c.kind in KERNEL_KINDS]
        if ns and host_bytes is not None and kernel_cell_bytes(max(ns)) > host_bytes:
            out.append(f"the exact kernels at N = {max(ns)} need about {kernel_cell_bytes(max(ns)) / 2**30:,.1f} GiB "
                       f"of host memory; lower --kernel-max-n")  # fmt: skip
        return out

    def format_plan(self, cells, done=frozenset()) -> str:
        t = self.target()
        head = [f"target: d={self.d} widths={list(self.widths)} alphas={list(self.alphas)} readout={self.readout}; "
                f"E[y^2]={t.info['second_moment']:.4f}; thresholds "
                + ", ".join(f"level {l}: {v:.4g}" for l, v in sorted(t.info["thresholds"].items()) if l >= 2)]  # fmt: skip
        return "\n".join(head + [super().format_plan(cells, done)])

    # -- rows --------------------------------------------------------------------------------

    def settings(self, learner: str) -> int:
        """How many settings ``learner``'s selection chooses among (on the ``n_val`` validation labels)."""
        if learner == "two-stage":
            return len(self.etas) * len(self.readout_ridges)
        if LEARNERS[learner].kind in KERNEL_KINDS:
            return len(self.ridges)
        return len(self.lrs) * len(self.wds)

    def labels(self, cell) -> int:
        """Every label a cell's learner reads: its N training points, and the ``n_val`` validation
        labels when it selects among more than one setting (a network with one learning rate and
        one weight decay reads none of them)."""
        return cell.n + (self.n_val if self.settings(cell.learner) > 1 else 0)

    def base_row(self, cell, seed: int) -> dict:
        return {"experiment": self.experiment, "learner": cell.learner, "kind": cell.kind, "n": cell.n, "seed": seed,
                "cell": cell.id, "d": self.d, "levels": self.levels, "widths": list(self.widths),
                "alphas": list(self.alphas), "readout": self.readout, "labels": self.labels(cell), "width": None,
                "epochs": None, "lr": None, "wd": None, "eta": None, "ridge": None,
                "threshold": self.target().threshold, "test_error_raw": None, "test_beta": None,
                "test_error_cv": None, "test_error_se": None, "test_estimator": None,
                "record_epochs": None, "test_over_training": None, "feature_quality": None,
                "subspace_quality": None, "compile_s": None, "run_s": None}  # fmt: skip


_TARGETS: dict = {}


def _target(d, widths, alphas, readout, first, skip, rank, paper_regime, target_seed):
    """The hierarchy target (cached: its exact moments are computed once per process)."""
    key = (d, tuple(widths), tuple(alphas), readout, first, skip, rank, paper_regime, target_seed)
    if key not in _TARGETS:
        import jax

        from rbk.targets import hierarchy

        _TARGETS[key] = hierarchy(jax.random.PRNGKey(target_seed), d=d, widths=widths, alphas=alphas, skip=skip,
                                  readout=readout, first=first, rank=rank, paper_regime=paper_regime)  # fmt: skip
    return _TARGETS[key]


# --------------------------------------------------------------------------------------------
# cell runners
# --------------------------------------------------------------------------------------------


def _control_variate(spec: Exp4Spec, row: dict, y_test, cov) -> dict:
    """``row`` with its test error variance-reduced by the exact ``E[y^2]``: the plain test MSE
    (kept as ``test_error_raw``) minus ``beta`` times the test set's own error in ``E[y^2]``, with
    the least-variance ``beta = cov(r^2, y^2) / var(y^2)`` estimated on the test points (``beta =
    1`` would be the identity ``E(f - y)^2 = E f^2 - 2 E f y + E y^2``; Experiment 3 does the
    same). A diverged row, or one without ``cov``, keeps its plain error with ``beta = 0``."""
    y2 = np.sum(np.square(np.asarray(y_test, np.float64)), axis=-1)
    shift, var_y2 = float(y2.mean()) - float(spec.target().info["second_moment"]), float(y2.var())
    ok = cov is not None and math.isfinite(cov) and var_y2 > 0 and math.isfinite(row.get("test_error") or math.nan)
    beta = cov / var_y2 if ok else 0.0
    raw = row.get("test_error")
    est = raw - beta * shift if ok else raw
    return dict(row, test_error_raw=raw, test_beta=beta, test_error=est, test_error_cv=est,
                test_estimator="control-variate")


def importance_test_set(spec: Exp4Spec, seed: int):
    """``(x, y, w)``: ``spec.n_test_importance`` test points whose projection ``z`` on the span the
    target reads is drawn ``N(0, scale^2 I_r)`` (the rest of ``x`` from ``N(0, I)``), with weights
    ``w`` = the density ratio of ``N(0, I_r)`` to it, so ``mean(w (f - y)^2)`` estimates the test
    error without bias. The squared error of a degree-8 target is dominated by rare points of large
    ``|z|``: a plain 10 000-point test MSE is heavy-tailed and its control-variate correction is
    biased low (``scripts/exp4_test_error_check.py`` measured 0.090 and 0.125 where 400 000 points
    and this estimator gave 0.153 and 0.175); this one has a standard error of about 1 % here.
    The span is that of the linear level 1 (``first='linear'``), recovered from the target."""
    import jax.numpy as jnp

    t = spec.target()
    s1 = np.asarray(t.parts["levels"](jnp.eye(spec.d + 1, spec.d, -1, jnp.float32))[0], np.float64)
    basis = np.linalg.qr(s1[1:] - s1[0])[0]
    r, scale, n = basis.shape[1], spec.importance_scale, spec.n_test_importance
    rng = np.random.default_rng([seed, 20261203])
    g = rng.standard_normal((n, spec.d))
    z = rng.standard_normal((n, r)) * scale
    x = (g - (g @ basis) @ basis.T + z @ basis.T).astype(np.float32)
    w = np.exp(r * math.log(scale) - 0.5 * np.sum(z * z, -1) * (1 - 1 / scale**2))
    y = np.concatenate([np.asarray(t(jnp.asarray(x[i : i + 50000])), np.float64) for i in range(0, n, 50000)])
    return x, y, w


def _member_predictions(model, res, x, seeds=None) -> np.ndarray:
    """``(S, L, W, n, k)``: the final-parameter predictions of every member of the seed indices
    ``seeds`` (default all) on the points ``x``, or, with ``x`` of shape ``(S, n, d)``, each seed's
    on its own points."""
    import jax

    apply = jax.jit(jax.vmap(jax.vmap(model.apply, in_axes=(0, None)), in_axes=(0, None)))
    out = []
    for i in range(np.shape(res.diverged)[0]) if seeds is None else seeds:
        p = jax.tree.map(lambda a: a[i], res.params)
        xi = x[i] if np.ndim(x) == 3 else x
        out.append(np.concatenate([np.asarray(apply(p, xi[j : j + 20000]), np.float64)
                                   for j in range(0, xi.shape[0], 20000)], axis=2))  # fmt: skip
    return np.stack(out)


def _members(spec: Exp4Spec) -> list[tuple]:
    """``(seed, lr, wd)`` indices of a network call's members, in its rows' (seed-major) order."""
    return [(i, j, m) for i in range(len(spec.seeds)) for j in range(len(spec.lrs)) for m in range(len(spec.wds))]


def _net_rows(spec: Exp4Spec, cell: Cell, model, res, data, wall: float, width: int) -> list[dict]:
    """One row per (seed, lr, wd) member of a network call (:func:`rbk.learners.train_rows`), its
    test error variance-reduced (:func:`_control_variate`) and, with ``n_test_importance``,
    replaced by the importance-sampled one (:func:`importance_test_set`; the control-variate
    estimate stays in ``test_error_cv``)."""
    from rbk.kernels.predict import error_label_covariance  # the kernels' control-variate ingredient, the same for networks
    from rbk.learners import train_rows

    rows = train_rows(res, lrs=spec.lrs, wds=spec.wds,
                      base=lambda i: dict(spec.base_row(cell, spec.seeds[i]), width=width, epochs=spec.epochs),
                      record=("timing", "curve"), wall=wall)  # fmt: skip
    pred = _member_predictions(model, res, np.asarray(data.x_test))
    members = _members(spec)
    out = []
    for r, (i, j, m) in zip(rows, members):
        cov = None if r["diverged"] else error_label_covariance(pred[i, j, m], np.asarray(data.y_test[i], np.float64))
        out.append(_control_variate(spec, r, data.y_test[i], cov))
    if spec.n_test_importance and spec.first == "linear":
        for i, seed in enumerate(spec.seeds):
            x, y, w = importance_test_set(spec, seed)
            p = _member_predictions(model, res, x, seeds=[i])[0]  # (L, W, n, k)
            for r, (i2, j, m) in zip(out, members):
                if i2 != i or r["diverged"]:
                    continue
                v = w * np.sum((p[j, m] - y) ** 2, axis=-1)
                if np.all(np.isfinite(v)):
                    r.update(test_error=float(v.mean()), test_error_se=float(v.std() / math.sqrt(v.size)),
                             test_estimator="importance")  # fmt: skip
    return out


def _stacked(spec: Exp4Spec, n: int):
    import jax.numpy as jnp

    from rbk.data import seed_keys, stack

    data = stack([spec.dataset(n, s) for s in spec.seeds])
    keys = jnp.stack([seed_keys(s)[1] for s in spec.seeds])
    return data, keys


def _nested(values) -> list:
    return [[float(v) for v in q] for q in values]


def _run_deep(spec: Exp4Spec, cell: Cell, regime: str, devices=None, progress=None) -> list[dict]:
    """A deep regime (rbk.learners' ``deep-<regime>``, run here to keep the call's probes: each row
    also records, per recorded epoch and level, its ``feature_quality`` (ridge R^2 of ``S_l`` from
    ``h_l``) and ``subspace_quality`` (the span of ``h_l``'s top ``k_l`` components against the
    teacher's); ``'stopgrad'`` trains :func:`rbk.train.regime_model`'s stop-gradient network)."""
    from rbk import train

    model = train.regime_model(regime, spec.deep_model(reference=spec.target()))
    data, keys = _stacked(spec, cell.n)
    t0 = time.perf_counter()
    res = train.train(model, data, keys, list(spec.lrs), list(spec.wds), spec.train_config(regime), devices=devices,
                      progress=progress, max_members=spec.max_members_per_call, return_params=True)  # fmt: skip
    wall = time.perf_counter() - t0
    quality = model.feature_quality_from_stats(res.probes)  # (S, Lr, W, R, levels)
    span = model.subspace_quality_from_stats(res.probes)
    rows = _net_rows(spec, cell, model, res, data, wall, spec.width)
    members = _members(spec)
    for r, (i, j, m) in zip(rows, members):
        r["feature_quality"] = _nested(quality[i, j, m])
        r["subspace_quality"] = _nested(span[i, j, m])
    return rows


def _run_2nn(spec: Exp4Spec, cell: Cell, devices=None, progress=None) -> list[dict]:
    """rbk's ReLU two-layer net with as many hidden units as the deep net has in all its levels."""
    from rbk import train
    from rbk.models import get_model

    width = spec.width * spec.levels
    model = get_model("2nn", width, spec.d, 1)
    data, keys = _stacked(spec, cell.n)
    cfg = train.config(spec.epochs, batch_size=spec.batch_size, matmul_precision=spec.matmul_precision,
                       clip_norm=spec.clip_norm)
    t0 = time.perf_counter()
    res = train.train(model, data, keys, list(spec.lrs), list(spec.wds), cfg, devices=devices, progress=progress,
                      max_members=spec.max_members_per_call, return_params=True)  # fmt: skip
    return _net_rows(spec, cell, model, res, data, time.perf_counter() - t0, width)


def _run_kernel(spec: Exp4Spec, cell: Cell, get: str) -> list[dict]:
    """Kernel ridge with the exact kernel of the deep network's architecture; one row per ridge."""
    from rbk import kernels, learners

    kfn = spec.kernel_fn()
    data = spec.dataset(cell.n, cell.seed)
    rows = learners.get(get).run(data, kernel=kfn, ridges=spec.ridges, base=spec.base_row(cell, cell.seed),
                                 record=("diverged", "timing"), block_size=learners.KERNEL_BLOCK,
                                 solver=kernels.choose_solver(cell.n, kfn), tol=spec.kernel_tol)  # fmt: skip
    return [_control_variate(spec, r, data.y_test, r.pop("test_cov", None)) for r in rows]


def _run_two_stage(spec: Exp4Spec, cell: Cell) -> list[dict]:
    """The control of Experiment 3 (:func:`rbk.train.two_stage`, Damian, Lee & Soltanolkotabi's
    Algorithm 1: one gradient step on a ReLU layer, then a ridge read-out) on the same data: the
    target is a polynomial of ``z = U x``, a multi-index function, so this asks what depth buys
    over one step. One row per (step size, ridge), selected on validation like every learner."""
    from rbk import learners, train
    from rbk.data import seed_keys

    data = spec.dataset(cell.n, cell.seed)
    cfg = train.two_stage_config(spec.two_stage_width, tuple(e * math.sqrt(spec.d) for e in spec.etas),
                                 ridges=spec.readout_ridges)  # fmt: skip
    t0 = time.perf_counter()
    rows = learners.get("two-stage").run(data, seed_keys(cell.seed)[1], cfg=cfg, eta_scale=math.sqrt(spec.d),
                                         base=dict(spec.base_row(cell, cell.seed), width=spec.two_stage_width))  # fmt: skip
    wall = time.perf_counter() - t0
    out = []
    for r in rows:
        r = _control_variate(spec, r, data.y_test, r.pop("test_cov", None))
        r["diverged"] = not all(math.isfinite(r[f"{sp}_error"]) for sp in ("train", "val", "test"))
        out.append(dict(r, call_wall_s=wall))
    return out


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def make_spec(**kw) -> Exp4Spec:
    """The validated :class:`Exp4Spec` (``ValueError`` naming the option and its range, before any
    compute): each field's own check (:func:`rbk._args.validate`), then those across fields.
    Unknown keywords are refused."""
    v = validate(Exp4Spec, kw, what="Experiment 4")
    widths, alphas = v["widths"], v["alphas"]
    if len(widths) < 2:
        raise ValueError(f"widths (--target-widths; the target's level widths k_l) must list L >= 2 levels, "
                         f"got {list(widths)}")  # fmt: skip
    if len(alphas) != len(widths):
        raise ValueError(f"alphas (--target-alphas) must have one weight per level (L = {len(widths)} levels in "
                         f"--target-widths), got {list(alphas)}")  # fmt: skip
    if v["paper_regime"] and (alphas[0] <= 0 or any(b >= a for a, b in zip(alphas, alphas[1:]))):
        raise ValueError(f"alphas (--target-alphas) must be positive and strictly decreasing (the paper's regime), "
                         f"got {list(alphas)}")  # fmt: skip
    spec = Exp4Spec(**v)
    if spec.epochs % spec.levels:
        raise ValueError(f"epochs (--epochs) must be a multiple of the number of levels L = {spec.levels} (equal "
                         f"stages), got {spec.epochs}")  # fmt: skip
    if len(spec.ridges) > 5:
        raise ValueError(f"ridges (--kernel-ridges) must hold 1 to 5 values >= 0, got {list(spec.ridges)}")
    if spec.two_stage_width % 2:
        raise ValueError(f"two_stage_width (--two-stage-width) must be an even integer >= 2 (the two-stage neurons "
                         f"come in pairs), got {spec.two_stage_width}")  # fmt: skip
    if len(spec.readout_ridges) > 5:
        raise ValueError(f"readout_ridges (--readout-ridges) must hold 1 to 5 values >= 0, got "
                         f"{list(spec.readout_ridges)}")  # fmt: skip
    if spec.batch_size > min(spec.ns):
        raise ValueError(f"ns (--n, training-set sizes) must each be >= the batch size {spec.batch_size}, "
                         f"got N = {min(spec.ns)}")  # fmt: skip
    _check_moments(spec)
    return spec


def _check_moments(spec: Exp4Spec) -> None:
    """The hierarchy's exact-moment grid must fit (:func:`rbk.targets.hierarchy` refuses it too, but
    building the target initialises JAX, which the command line must not do before it splits the CPU)."""
    from rbk.targets import MAX_QUADRATURE_NODES, hierarchy_degrees

    rank = spec.widths[0] if spec.rank is None else spec.rank
    what = ("widths (--target-widths): the first level's width k_1" if spec.rank is None
            else "rank (the dimension of the subspace the target depends on)")  # fmt: skip
    if rank > spec.d:
        raise ValueError(f"{what} must be <= the input dimension d (--d) = {spec.d}, got {rank}")
    _, out_deg = hierarchy_degrees(spec.levels, spec.first, spec.readout)
    if (max(out_deg) + 1) ** rank > MAX_QUADRATURE_NODES:
        raise ValueError(f"{what} = {rank} with L = {spec.levels} levels needs {max(out_deg) + 1}^{rank} quadrature "
                         f"nodes for the exact moments (at most {MAX_QUADRATURE_NODES}): give fewer levels or a "
                         f"smaller first width in --target-widths")  # fmt: skip
