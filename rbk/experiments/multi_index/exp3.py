"""Experiment 3 (Damian, Lee & Soltanolkotabi, COLT 2022): test error against N for several d.

Target ``f*(x) = g(U x)`` with ``x ~ N(0, I_d)`` (:mod:`rbk.targets`: ``single_index``,
``sum_of_products`` or ``random_multi_index``), ``U`` drawn from ``(seed, d)``; thresholds
``theta E_p`` (``E_p`` the target's exact degree-``p`` energy: the error of a learner that has
learned everything but the degree-``p`` part; ``theta`` and ``thetas``). For every ``d`` the
learners run on the same data of each seed (the training set of size N is the first N points of
one stream, so the sets are nested in N; the test set is fixed per ``(d, seed)``):

``two-stage``  Algorithm 1 (:func:`rbk.train.two_stage`): symmetric init, one gradient step on
               the first layer with weight decay ``1/eta``, re-drawn biases, ridge read-out on
               the other half of the points; ``eta = m sqrt(d)`` for ``m`` in ``etas``.
``giant-step`` the one giant step of Dandi et al. 2023 (:func:`rbk.train.giant_step`: Gaussian
               init kept, ``eta = 10 sqrt(N m)``, both stages on the same N points, one absolute
               ridge 1; nothing is selected).
``2nn``        rbk's SGD training of the standard two-layer ReLU net (:func:`rbk.train.train`).
``ntk-2nn``, ``nngp-2nn``  the exact kernels of the same net (:func:`rbk.kernels.kernel_fn`, valid
               for Gaussian inputs), kernel ridge (:func:`rbk.kernels.fit_predict`).
``rf-2nn``     random features of a drawn net of the two-stage width (only its read-out fitted).

A row per hyper-parameter setting (eta x ridge, lr x wd, ridge). Every label is counted: with
``folds = k`` each setting's ``val_error`` is its k-fold cross-validation error *inside* the N
training points and its test error that of the run on all N (:func:`rbk.learners.cross_validated`;
``folds = 0``: selection on ``n_val`` extra labels that N does not count). ``test_error`` removes the
test set's own error in ``E f*^2 = 1`` as a control variate (``test_error_raw`` the plain MSE). The
summary selects per ``(learner, d, n, seed)`` (:func:`rbk.stats.select`), then gives ``n*(d)`` per
learner, the slope of ``log n*`` against ``log d`` next to the theory's, per threshold the
exponents by interval regression, and ``separations``: kernel minus network exponent with a paired
bootstrap CI (:mod:`.separations`).

Profiles
--------
``quick``  (about 20 minutes on a 2-core CPU) ``single_index(d, p=4)`` (``g = (h_2 + h_4)/sqrt 2``,
           ``E_4 = 0.5``), headline threshold ``0.5 E_4`` (and 0.25, 1), ``d`` in {8, 12, 16, 24, 32,
           48}, 10 seeds, 5-fold selection inside N; ``two-stage`` (width 512, eta in {0.5, 1, 2}
           sqrt(d), five read-out ridges) at N in {125, ..., 16000} within ``[0.5 d^2, 16 d^2]``;
           ``ntk-2nn`` (``b_std = 1``, ridges {1e-4, 1e-2}) measured at d = 8, 12 for N in {250, ...,
           4000} and predicted from its spectrum at every d (and 32 ... 128).
``sgd``    the SGD ``2nn`` (width 256, 30 epochs, 2 lr x 2 wd) beside them, d in {8, 12, 16, 24}.
``paper``  every learner, ``d`` up to 64, 10 seeds, N up to 64000 (networks) and 32000 (kernels;
           16 GiB of host memory at the largest); for a large machine (see ``rbk exp3 --profile paper
           --dry-run``).

Run ``rbk exp3 --help`` for the options (``python experiments/exp3_multi_index.py`` in a clone takes the
same).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from functools import partial

import numpy as np

from rbk import sweep
from rbk._args import add_options, integer, option, option_values, options_of, validate
from rbk._checks import check_choice, check_int, check_ints, check_list, check_real, check_reals
from rbk.experiments.multi_index.figures import plot
from rbk.experiments.multi_index.predicted import EXTRA_DS, kernel_predictions, predicted_slope
from rbk.experiments.multi_index.separations import by_threshold, rse
from rbk.experiments.multi_index.table import format_table
from rbk.experiments.common import add_resource_arguments_of, entry_points, member_chunking_option

EXPERIMENT = "exp3"
TARGETS = ("single_index", "sum_of_products", "random")
#: Training points per chunk of the per-(d, seed) stream (the set of size N is its first N points).
CHUNK = 1000
ROW_FIELDS = sweep.CORE_FIELDS + ("d", "r", "p", "target", "threshold", "width", "eta", "lr", "wd", "epochs",
                                  "ridge", "b_std", "n_val", "n_test", "folds", "cv_folds", "test_error_raw", "test_beta")  # fmt: skip

PROFILES = {
    "quick": dict(
        target="single_index",
        p=4,
        ds=(8, 12, 16, 24, 32, 48),
        seeds=tuple(range(10)),
        learners=("two-stage", "ntk-2nn"),
        ns=(125, 250, 500, 1000, 2000, 4000, 8000, 16000),
        n_window=(0.5, 16.0),
        kernel_ns=(250, 500, 1000, 2000, 4000),
        kernel_ds=(8, 12),
        width=512,
        etas=(0.5, 1.0, 2.0),
        ridges=(1e-4, 1e-3, 1e-2, 1e-1, 1.0),
        kernel_ridges=(1e-4, 1e-2),
        b_std=1.0,
        sgd_width=256,
        epochs=20,
        lrs=(0.02,),
        wds=(0.0,),
        folds=5,
        theta=0.5,
        thetas=(0.25, 1.0),
        n_val=2000,
        n_test=10000,
    ),
    "paper": dict(
        target="single_index",
        p=4,
        ds=(8, 12, 16, 24, 32, 48, 64),
        seeds=tuple(range(10)),
        learners=("two-stage", "2nn", "ntk-2nn", "nngp-2nn", "rf-2nn"),
        ns=(125, 250, 500, 1000, 2000, 4000, 8000, 16000, 32000, 64000),
        n_window=(0.5, 16.0),
        kernel_ns=(250, 500, 1000, 2000, 4000, 8000, 16000, 32000),
        width=1024,
        etas=(0.25, 0.5, 1.0, 2.0, 4.0),
        ridges=(1e-4, 1e-3, 1e-2, 1e-1, 1.0),
        kernel_ridges=(1e-6, 1e-4, 1e-2, 1e-1, 1.0),
        b_std=1.0,
        sgd_width=1024,
        epochs=200,
        lrs=(0.005, 0.01, 0.02, 0.05),
        wds=(0.0, 1e-4, 1e-3),
        folds=5,
        theta=0.5,
        thetas=(0.25, 1.0),
        n_val=4000,
        n_test=20000,
    ),
}

#: The SGD-trained 2nn beside the two-stage learner and its NTK (under an hour on 2 cores): the quick profile
#: at d up to 24, N from d^2 to 16 d^2 (at most 8000), 2 learning rates x 2 weight decays, 30 epochs.
PROFILES["sgd"] = dict(PROFILES["quick"], ds=(8, 12, 16, 24), learners=("two-stage", "2nn", "ntk-2nn"),
                       ns=(125, 250, 500, 1000, 2000, 4000, 8000), n_window=(1.0, 16.0), epochs=30,
                       lrs=(0.01, 0.03), wds=(0.0, 1e-3))  # fmt: skip


# --------------------------------------------------------------------------------------------
# the learners
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Learner:
    """A learner this study offers: the :data:`rbk.learners.LEARNERS` entry that runs it
    (``shared``), the rows' ``kind`` (``'net'``, ``'ntk'``, ``'nngp'``, ``'rf'``), the spec field
    holding its N grid (``grid``: ``'ns'`` or ``'kernel_ns'``), the theory's slope (``theory``:
    ``'two'``, networks: d^2, or ``'p'``, kernels: d^p) and ``settings(spec, data, key, d) ->
    (key, settings)``: the entry's PRNG key(s) and settings on a cell. :meth:`run` gives one dict per
    hyper-parameter setting (its row fields plus ``train_error``, ``val_error``, ``test_error``)."""

    shared: str
    kind: str
    grid: str
    settings: Callable
    theory: str

    def run(self, spec, data, key, d, devices=None, progress=None) -> list[dict]:
        """The rows of every setting; with ``spec.folds``, each ``val_error`` is the setting's
        cross-validation error inside the N training points (:func:`rbk.learners.cross_validated`)."""
        from rbk import learners

        key, settings = self.settings(spec, data, key, d)
        shared = learners.get(self.shared)
        if shared.kind == "sgd":
            settings.update(devices=devices, progress=progress)
        if not spec.folds:
            return shared.run(data, key, **settings)
        return learners.cross_validated(shared.run, data, key, folds=min(spec.folds, data.n), grid=shared.grid,
                                        **settings)  # fmt: skip


def _two_stage(spec, data, key, d):
    from rbk import train

    etas = tuple(m * math.sqrt(d) for m in spec.etas)
    return key, {"cfg": train.two_stage_config(spec.width, etas, split=spec.split, ridges=spec.ridges),
                 "base": {"width": spec.width}}


def _giant_step(spec, data, key, d):
    from rbk import train

    return key, {"cfg": train.giant_step(spec.width), "base": {"width": spec.width}}


def _sgd(spec, data, key, d):
    import jax.numpy as jnp

    from rbk import models, train

    model = models.get_model("2nn", spec.sgd_width, d, 1)
    cfg = train.config(spec.epochs, batch_size=min(50, data.n))
    return jnp.asarray(key)[None], {"model": model, "lrs": spec.lrs, "wds": spec.wds, "cfg": cfg,  # one seed
                                    "inf_if_diverged": True, "max_members": spec.max_members_per_call,
                                    "base": {"width": spec.sgd_width, "epochs": spec.epochs}}


def _kernel(spec, data, key, d):
    from rbk import kernels

    return key, {"kernel": kernels.kernel_fn("2nn", W_std=spec.W_std, b_std=spec.b_std),
                 "ridges": spec.kernel_ridges, "base": {"b_std": spec.b_std}}


def _rf(spec, data, key, d):
    from rbk import models

    model = models.get_model("2nn", spec.width, d, 1, parameterization="ntk", W_std=spec.W_std, b_std=spec.b_std)
    return key, {"model": model, "ridges": spec.kernel_ridges, "base": {"width": spec.width, "b_std": spec.b_std}}


LEARNERS: dict[str, Learner] = {
    "two-stage": Learner("two-stage", "net", "ns", _two_stage, "two"),
    "giant-step": Learner("two-stage", "net", "ns", _giant_step, "two"),
    "2nn": Learner("sgd", "net", "ns", _sgd, "two"),
    "ntk-2nn": Learner("ntk", "ntk", "kernel_ns", _kernel, "p"),
    "nngp-2nn": Learner("nngp", "nngp", "kernel_ns", _kernel, "p"),
    "rf-2nn": Learner("rf", "rf", "ns", _rf, "p"),
}


# --------------------------------------------------------------------------------------------
# target and data of one (d, seed)
# --------------------------------------------------------------------------------------------


def _keys(seed: int, d: int):
    """``(target, data, learner)`` keys of one ``(d, seed)``: ``U`` and all randomness from ``(seed, d)``."""
    import jax

    return jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), d), 3)


def make_target(target: str, d: int, r: int, p: int, key):
    """The target of one ``(d, seed)`` (``key`` from the seed and ``d``)."""
    from rbk import targets

    if target == "single_index":
        return targets.single_index(key, d, p)
    if target == "sum_of_products":
        return targets.sum_of_products(key, d, r, p)
    return targets.random_multi_index(key, d, r, p)


def dataset(spec, d: int, seed: int, n: int):
    """``(target, Dataset)`` of one cell: the first ``n`` points of the ``(d, seed)`` training
    stream (chunks of :data:`CHUNK` points, each from its own key, so smaller sets are prefixes
    of larger ones whatever the grid), ``n_val`` validation and ``n_test`` test points."""
    import jax
    import jax.numpy as jnp

    from rbk.data import Dataset

    k_target, k_data, _ = _keys(seed, d)
    t = make_target(spec.target, d, spec.r, spec.p, k_target)
    k_tr, k_va, k_te = jax.random.split(k_data, 3)
    x = jnp.concatenate([jax.random.normal(jax.random.fold_in(k_tr, c), (CHUNK, d), jnp.float32)
                         for c in range(-(-n // CHUNK))])[:n]  # fmt: skip
    # with cross-validation no validation label exists: one placeholder point, never read
    xv = jax.random.normal(k_va, (spec.n_val if not spec.folds else 1, d), jnp.float32)
    xt = jax.random.normal(k_te, (spec.n_test, d), jnp.float32)
    return t, Dataset(x, t(x), xv, t(xv), xt, t(xt))


# --------------------------------------------------------------------------------------------
# the study
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Cell:
    id: str
    learner: str
    kind: str
    d: int
    n: int
    seed: int


_LIST = dict(scalar=False, order="sorted")  # a list of numbers: sorted, a repeated value refused


def _folds(name: str, value) -> int:
    v = check_int(name, value, lo=0)
    if v == 1:
        raise ValueError(f"{name} must be 0 (selection on extra validation labels) or an integer >= 2, got 1")
    return v


def in_window(n: int, d: int, window: tuple) -> bool:
    """Whether ``n`` lies in ``[a d^2, b d^2]`` for ``window = (a, b)`` (``--n-window``)."""
    return window[0] * d * d <= n <= window[1] * d * d


def _window(name: str, value) -> tuple:
    v = check_reals(name, value, lo=0.0, lo_open=True, scalar=False, order="sorted")
    if len(v) != 2:
        raise ValueError(f"{name} must be two numbers 0 < a < b, got {list(v)}")
    return v


@dataclasses.dataclass(frozen=True)
class Exp3Spec(sweep.Study):
    """Everything that defines an Experiment 3 sweep (build it with :func:`make_spec`).

    ``etas`` are multiples of ``sqrt(d)``; ``ridges`` the two-stage read-out's relative ridges,
    ``kernel_ridges`` those of the kernels and random features (at most 5 each); ``ns`` the N
    grid of the networks and random features, ``kernel_ns`` that of the exact kernels.
    """

    experiment: str = EXPERIMENT
    target: str = option("single_index", check=partial(check_choice, choices=TARGETS), flag="--target",
                         help="target family (default single_index)", choices=TARGETS)
    r: int = option(1, flag="--r", help="directions r, 1 <= r <= d (single_index: 1)", conv=integer)  # make_spec
    p: int = option(4, flag="--p", help="degree of g, >= 3 (random: >= 2; default 4)", conv=integer)  # make_spec
    ds: tuple = option((8, 12, 16, 24), check=partial(check_ints, lo=2, scalar=False, order="sorted"), flag="--d",
                       help="input dimensions, integers >= 2", conv=integer, many=True, what="integers")
    seeds: tuple = option((0, 1, 2), check=partial(check_ints, lo=0, scalar=False, order="sorted"), flag="--seeds")
    learners: tuple = option(("two-stage", "ntk-2nn"), flag="--learners", help=f"learners among {', '.join(LEARNERS)}",
                             check=partial(check_list, check=partial(check_choice, choices=tuple(LEARNERS))),
                             many=True, what="names")  # fmt: skip
    ns: tuple = option((125, 250, 500, 1000, 2000, 4000), check=partial(check_ints, lo=2, scalar=False, order="sorted"),
                       flag="--n", help="N grid of the networks and random features, integers >= 2", conv=integer,
                       many=True, what="integers")  # fmt: skip
    kernel_ns: tuple = option((250, 500, 1000, 2000, 4000, 8000), flag="--kernel-n",
                              check=partial(check_ints, lo=2, scalar=False, order="sorted"),
                              help="N grid of the exact kernels, integers >= 2", conv=integer, many=True,
                              what="integers")  # fmt: skip
    width: int = option(512, check=partial(check_int, lo=2), flag="--width",
                        help="two-stage and random-feature width, even >= 2", conv=integer)
    etas: tuple = option((0.5, 1.0, 2.0), check=partial(check_reals, lo=0.0, lo_open=True, **_LIST), flag="--etas",
                         help="two-stage step sizes as multiples of sqrt(d), > 0", conv=float, many=True,
                         what="numbers")  # fmt: skip
    split: float = option(0.5, check=partial(check_real, lo=0.0, hi=1.0, lo_open=True, hi_open=True))
    ridges: tuple = option((1e-4, 1e-3, 1e-2, 1e-1, 1.0), check=partial(check_reals, lo=0.0, **_LIST),
                           flag="--readout-ridges", aliases=("--ridges",),
                           help="two-stage read-out relative ridges, 1-5 values >= 0", conv=float,
                           many=True, what="numbers")  # fmt: skip
    kernel_ridges: tuple = option((1e-4, 1e-2), check=partial(check_reals, lo=0.0, **_LIST), flag="--kernel-ridges",
                                  help="kernel / RF relative ridges, 1-5 values >= 0", conv=float, many=True,
                                  what="numbers")  # fmt: skip
    W_std: float = option(math.sqrt(2.0), check=partial(check_real, lo=0.0, lo_open=True))
    b_std: float = option(1.0, check=partial(check_real, lo=0.0), flag="--b-std",
                          help="bias scale of the kernels and random features, >= 0 (default 1)", conv=float)
    sgd_width: int = option(256, check=partial(check_int, lo=1), flag="--sgd-width",
                            help="width of the SGD-trained 2nn, >= 1", conv=integer)
    epochs: int = option(20, check=partial(check_int, lo=1), flag="--epochs", help="SGD epochs, >= 1", conv=integer)
    lrs: tuple = option((0.02,), check=partial(check_reals, lo=0.0, lo_open=True, **_LIST), flag="--lr",
                        help="SGD learning rates, > 0", conv=float, many=True, what="numbers")
    wds: tuple = option((0.0,), check=partial(check_reals, lo=0.0, **_LIST), flag="--wd",
                        help="SGD weight decays, >= 0", conv=float, many=True, what="numbers")
    n_val: int = option(2000, check=partial(check_int, lo=1), flag="--n-val", help="validation points, >= 1",
                        conv=integer)
    n_test: int = option(10000, check=partial(check_int, lo=1), flag="--n-test", help="test points, >= 1",
                         conv=integer)
    folds: int = option(5, check=_folds, flag="--folds",
                        help="selection by k-fold cross-validation inside the N training labels (every label counted), "
                             "k >= 2 (default 5); 0: on n_val extra validation labels that n* does not count",
                        conv=integer)  # fmt: skip
    theta: float = option(1.0, check=partial(check_real, lo=0.0, lo_open=True), flag="--theta",
                          help="the threshold theta E_p of n*, slopes and separations, theta > 0 (default 1)", conv=float)
    thetas: tuple = option((), check=partial(check_reals, lo=0.0, lo_open=True, scalar=False, order="sorted",
                                             empty=True),
                           flag="--thetas", help="more thresholds theta E_p reported (n*, slopes, separations)",
                           conv=float, many=True, what="numbers")  # fmt: skip
    n_window: tuple | None = option(None, check=lambda n, v: v if v is None else _window(n, v), flag="--n-window",
                                    help="two numbers a < b: at each d the networks run the N of --n within "
                                         "[a d^2, b d^2] (default: all)", conv=float, many=True, what="numbers")
    kernel_ds: tuple | None = option(None, check=lambda n, v: v if v is None else check_ints(
                                         n, v, lo=2, scalar=False, order="sorted"), flag="--kernel-d",
                                     help="the d at which the exact kernels are measured, those among --d (default: every "
                                          "--d; predicted at every d)", conv=integer, many=True, what="integers")
    max_members_per_call: int | None = member_chunking_option()  # of the SGD 2nn
    row_fields = ROW_FIELDS
    resource_fields = ("max_members_per_call",)

    def config(self) -> dict:
        """The JSON config that defines the results (hashed; without the ``resource_fields``, which change no number)."""
        return jsonable_config({k: v for k, v in dataclasses.asdict(self).items() if k not in self.resource_fields})

    @classmethod
    def from_config(cls, config: dict, resolved: dict | None = None) -> "Exp3Spec":
        res = {f: (resolved or {}).get(f) for f in cls.resource_fields}
        return make_spec(**{k: v for k, v in config.items() if k != "experiment"}, **res)

    def grid(self, learner: str, d: int | None = None) -> tuple:
        """The N grid of ``learner`` (at ``d``: the networks' within ``n_window``, scaled by ``d^2``)."""
        ns = getattr(self, LEARNERS[learner].grid)
        if d is None or self.n_window is None or LEARNERS[learner].grid != "ns":
            return ns
        return tuple(n for n in ns if in_window(n, d, self.n_window))

    def learner_ds(self, learner: str) -> tuple:
        """The ``d`` at which ``learner`` is measured (the kernels: ``kernel_ds`` when given)."""
        if self.kernel_ds is not None and LEARNERS[learner].kind in ("ntk", "nngp"):
            return tuple(d for d in self.ds if d in self.kernel_ds)
        return self.ds

    def plan(self) -> list[Cell]:
        return [Cell(f"{lr}_d{d}_n{n}_s{s}", lr, LEARNERS[lr].kind, d, n, s)
                for d in self.ds for s in self.seeds for lr in self.learners if d in self.learner_ds(lr)
                for n in self.grid(lr, d)]  # fmt: skip

    def run_cell(self, cell: Cell, devices=None, progress=None) -> list[dict]:
        import time

        t, data = dataset(self, cell.d, cell.seed, cell.n)
        key = _keys(cell.seed, cell.d)[2]
        t0 = time.perf_counter()
        settings = LEARNERS[cell.learner].run(self, data, key, cell.d, devices=devices, progress=progress)
        wall = time.perf_counter() - t0
        # the test error with E f*^2 exact: the plain test MSE minus beta times the test set's own error in
        # E f*^2 (a control variate; beta = 1 is the identity E(f - f*)^2 = E f^2 - 2 E f f* + E f*^2, the
        # least-variance beta = cov(r^2, f*^2) / var(f*^2) is estimated on the test points)
        y2 = np.sum(np.square(np.asarray(data.y_test, np.float64)), axis=-1)
        shift, var_y2 = float(y2.mean()) - float(t.info["second_moment"]), float(y2.var())
        base = {f: None for f in ROW_FIELDS}
        base.update(experiment=self.experiment, learner=cell.learner, kind=cell.kind, n=cell.n, seed=cell.seed,
                    call_wall_s=wall, cell=cell.id, d=cell.d, r=self.r, p=self.p, folds=self.folds,
                    target=self.target, threshold=float(t.threshold), n_val=self.n_val if not self.folds else 0,
                    n_test=self.n_test)  # fmt: skip
        rows = []
        for s in settings:
            row = dict(base, **s)
            cov = row.pop("test_cov", None)
            row["test_beta"] = cov / var_y2 if cov is not None and math.isfinite(cov) and var_y2 > 0 else 0.0
            row["test_error_raw"] = row["test_error"]
            row["test_error"] = row["test_error"] - row["test_beta"] * shift
            row.pop("cv_errors", None)
            errs = (row["train_error"], row["val_error"], row["test_error"])
            row["diverged"] = not all(math.isfinite(e) for e in errs)
            rows.append(row)
        return rows

    def cell_cost(self, cell) -> tuple:
        """``(training FLOPs, dense FLOPs, kernel entries, compiled program)`` of ``cell`` (the dry run's time estimate,
        :func:`rbk.sweep.cost.estimate_seconds`); a rough model of each learner's dominant work. With
        ``folds = k`` a cell is k runs on ``(k - 1) / k`` of its points and one on all of them: the
        work linear in N counts ``k`` times, the kernels' cubic algebra ``1 + k ((k - 1) / k)^3`` times."""
        k = self.folds
        n, d, ev = cell.n, cell.d, (self.n_val if not k else 0) + self.n_test
        program = (cell.learner, d, n)  # the seeds of a (learner, d, N) share one compiled program
        shared = LEARNERS[cell.learner].shared
        train, dense, entries, program = self._unfolded(cell, n, d, ev, shared, program)
        if not k:
            return train, dense, entries, program
        if shared in ("ntk", "nngp"):  # the run on all N, then k fits on (k - 1) N / k points
            fold_dense, fold_entries = sweep.cost.kernel_fit_cost(n * (k - 1) // k, n // k, len(self.kernel_ridges))
            return train, dense + k * fold_dense, entries + k * fold_entries, program
        return train * k, dense * k, entries, program

    def _unfolded(self, cell, n, d, ev, shared, program) -> tuple:
        if shared in ("ntk", "nngp"):
            return (0.0, *sweep.cost.kernel_fit_cost(n, ev, len(self.kernel_ridges)), program)
        if shared == "sgd":
            members = len(self.lrs) * len(self.wds)
            per_example = 6 * (d * self.sgd_width + self.sgd_width)
            return (float(per_example * n * self.epochs * members + per_example / 3 * ev * members), 0.0, 0.0,
                    ("train", *program))
        if shared == "rf":
            return 0.0, sweep.cost.readout_flops(n, ev, d, self.width, len(self.kernel_ridges)), 0.0, program
        steps = len(self.etas) if cell.learner == "two-stage" else 1  # the one-step learners: a step per eta
        first = 6 * n * d * self.width  # the gradient step on the first half of the points
        return 0.0, steps * (first + sweep.cost.readout_flops(n, ev, d, self.width, len(self.ridges))), 0.0, program

    def memory_problems(self, cells, memory_bytes, n_devices=1, host_bytes=None) -> list[str]:
        from rbk import kernels

        out = []
        nets = [c for c in cells if c.kind not in ("ntk", "nngp")]
        if nets:  # the floor: the cell's points, float32, with d inputs and a hidden layer's activations on them
            c = max(nets, key=lambda c: (c.n, c.d))
            hidden = self.sgd_width if LEARNERS[c.learner].shared == "sgd" else self.width
            need = sweep.data_bytes(c.n + self.n_val + self.n_test, c.d + hidden)
            out += sweep.too_big(f"the {c.learner} cell at N = {c.n}, d = {c.d} (its data and one hidden layer's "
                                 f"activations, float32)", need, memory_bytes,
                                 "use a smaller --n (or --n-val, --n-test, --width, --sgd-width)")  # fmt: skip
        kern = [c.n for c in cells if c.kind in ("ntk", "nngp")]
        if kern and host_bytes is not None:
            need = kernels.fit_bytes(max(kern))
            if need > host_bytes:
                out.append(f"exact kernel ridge at N = {max(kern)} needs about {need / 2**30:,.1f} GiB of host "
                           f"memory, {host_bytes / 2**30:.1f} GiB available: lower --kernel-n")  # fmt: skip
        return out

    def format_plan(self, cells, done=frozenset()) -> str:
        done = set(done)
        lines = [f"experiment {self.experiment}: config hash {self.config_hash()}"]
        lines += [f"  {k}: {v}" for k, v in self.config().items() if k != "experiment"]
        lines += ["", f"cells: {len(cells)}" + (f"; {len(done & {c.id for c in cells})} already finished" if done else "")]
        for lr in self.learners:
            mine = [c for c in cells if c.learner == lr]
            left = [c for c in mine if c.id not in done]
            window = (f" within [{self.n_window[0]:g} d^2, {self.n_window[1]:g} d^2]"
                      if self.n_window and LEARNERS[lr].grid == "ns" else "")
            lines.append(f"  {lr:10s} ({LEARNERS[lr].kind}): {len(mine)} cells ({len(left)} to run), "
                         f"d in {list(self.learner_ds(lr))}, N in {list(self.grid(lr))}{window}, seeds {list(self.seeds)}")
        kern = [c.n for c in cells if c.kind in ("ntk", "nngp")]
        if kern:
            from rbk import kernels

            lines.append(f"  largest exact-kernel fit: N = {max(kern)}, about "
                         f"{kernels.fit_bytes(max(kern)) / 2**30:.1f} GiB of host memory")
        return "\n".join(lines)


def jsonable_config(cfg: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}


def make_spec(**kw) -> Exp3Spec:
    """The validated :class:`Exp3Spec`: every bad value raises ``ValueError`` naming the option
    and its allowed range, before anything is computed (each field's own check, then those
    across fields)."""
    kw = validate(Exp3Spec, kw, what="exp3", skip=())
    if kw["experiment"] != EXPERIMENT:
        raise ValueError(f"experiment must be {EXPERIMENT!r}, got {kw['experiment']!r}")
    kw["p"] = check_int("p (--p)", kw["p"], lo=2 if kw["target"] == "random" else 3)  # the constructors' ranges
    if kw["target"] == "single_index":
        if kw["r"] != 1:
            raise ValueError(f"r (--r) must be 1 for target 'single_index' (one direction), got {kw['r']!r}")
    else:
        kw["r"] = check_int("r (--r)", kw["r"], lo=1)
        if kw["r"] > min(kw["ds"]):
            raise ValueError(f"r (--r) must be <= every d (r <= {min(kw['ds'])}), got r = {kw['r']}")
    if kw["width"] % 2:
        raise ValueError(f"width (--width) must be an even integer >= 2 (the two-stage neurons come in pairs), "
                         f"got {kw['width']}")  # fmt: skip
    if kw["n_window"] is not None:  # every N of --n must be run at some d
        lo, hi = kw["n_window"]
        outside = [n for n in kw["ns"] if not any(in_window(n, d, kw["n_window"]) for d in kw["ds"])]
        if outside:
            raise ValueError(f"ns (--n) values {outside} lie outside --n-window [{lo:g} d^2, {hi:g} d^2] at every d "
                             f"of {list(kw['ds'])}: widen --n-window or drop them")
    kernels_run = any(LEARNERS[lr].kind in ("ntk", "nngp") for lr in kw["learners"])
    if kernels_run and kw["kernel_ds"] is not None and not set(kw["kernel_ds"]) & set(kw["ds"]):
        raise ValueError(f"kernel_ds (--kernel-d) {list(kw['kernel_ds'])}: the exact kernels are measured at the d of "
                         f"--d {list(kw['ds'])} among them, and there are none: give --kernel-d among --d")
    for name, flag in (("ridges", "--readout-ridges"), ("kernel_ridges", "--kernel-ridges")):
        if len(kw[name]) > 5:
            raise ValueError(f"{name} ({flag}) must hold 1 to 5 numbers >= 0.0, got {list(kw[name])}")
    return Exp3Spec(**kw)


#: ``spec(profile, **overrides)``: the study of a profile; ``run(out_dir, profile, ...)``: run it, summarise it.
spec, run = entry_points(__name__)



# --------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------


def summarize(spec, rows, *, quiet: bool = False, n_boot: int = 2000) -> dict | None:
    """``summary.json`` of Experiment 3.

    ``rows``: per (learner, d, N) the seed mean and Student-t CI of the selected test error
    (selection on validation per (learner, d, N, seed)); ``n_star``: per learner and ``d``
    (:func:`rbk.stats.n_star` at the target's threshold); ``slopes``: per learner with at least
    two ``d``, :func:`rbk.stats.scaling_slope` plus the theory's exponent; ``separation``: the
    better network learner (lowest mean log ``n*``) against each kernel learner: the kernel's
    slope (a lower bound where censored) against the network's upper CI limit (``holds``), and
    the kernel's whole CI against it (``holds_ci``); see :func:`separation`.
    """
    from rbk import stats

    sel = stats.select(rows, keys=("learner", "d", "n", "seed"))
    if not sel:
        return None
    thr_by_d = {}
    for r in sel:
        thr_by_d.setdefault(r["d"], set()).add(round(float(r["threshold"]), 12))
    bad = {d: sorted(v) for d, v in thr_by_d.items() if len(v) > 1}
    if bad:
        raise ValueError(f"rows mix thresholds at one d: {bad}")
    thr_by_d = {d: spec.theta * v.pop() for d, v in thr_by_d.items()}  # theta E_p
    learners = [lr for lr in LEARNERS if any(r["learner"] == lr for r in sel)]
    entries, nstar, slopes = [], {}, {}
    for lr in learners:
        mine = [r for r in sel if r["learner"] == lr]
        groups = {}
        for r in mine:
            groups.setdefault(r["d"], []).append(r)
        nstar[lr] = {}
        for d in sorted(groups):
            for n in sorted({r["n"] for r in groups[d]}):
                cell = [r for r in groups[d] if r["n"] == n]
                tests = [stats.test_value(r) for r in cell]
                fin = [t for t in tests if math.isfinite(t)]
                m, lo, hi = stats.t_ci(fin)
                entries.append({"learner": lr, "kind": LEARNERS[lr].kind, "d": d, "n": n, "threshold": thr_by_d[d],
                                "test_error_mean": m, "test_error_ci95": [lo, hi], "test_error_rse": rse(fin),
                                "test_error_raw_rse": rse([r.get("test_error_raw", math.nan) for r in cell]),
                                "seeds": len(fin),
                                "diverged_seeds": len(tests) - len(fin), "test_error_min": min(fin, default=None),
                                "test_error_max": max(fin, default=None),
                                "selected": [{k: r.get(k) for k in ("seed", "eta", "lr", "ridge")} for r in cell]})
            nstar[lr][str(d)] = dict(stats.n_star(groups[d], thr_by_d[d], n_boot=n_boot),
                                     ns=sorted({r["n"] for r in groups[d]}))
        if len(groups) >= 2:
            s = stats.scaling_slope(groups, thr_by_d, n_boot=n_boot)
            slopes[lr] = dict(s, theory=2.0 if LEARNERS[lr].theory == "two" else float(spec.p), basis="measured")
    predicted = predictions(spec)
    for lr, s in ((lr, predicted_slope(by_d, float(spec.p))) for lr, by_d in predicted.items()):
        if s is not None:  # the predicted slope next to the measured one (alone if none)
            slopes[lr] = dict(slopes[lr], predicted=s) if lr in slopes else s
    thresholds = sorted(set(thr_by_d.values()))
    by_theta, seps = by_threshold(spec, sel, {lr: LEARNERS[lr].kind for lr in learners}, predicted, n_boot=n_boot)
    return stats.jsonable({
        "experiment": EXPERIMENT,
        "threshold": thresholds[0] if len(thresholds) == 1 else None,
        "thresholds": {str(d): v for d, v in sorted(thr_by_d.items())},
        "instance": {"target": spec.target, "r": spec.r, "p": spec.p, "ds": list(spec.ds), "b_std": spec.b_std,
                     "width": spec.width, "seeds": list(spec.seeds), "n_test": spec.n_test},
        "rows": entries,
        "n_star": nstar,
        "slopes": slopes,
        "predicted": predicted,
        "separation": separation({lr: s for lr, s in slopes.items() if s["basis"] == "measured"}, nstar),
        "theta": spec.theta,
        "by_theta": by_theta,
        "separations": seps,
        "selection": f"{spec.folds}-fold cross-validation inside the N training labels" if spec.folds else
                     f"on {spec.n_val} extra validation labels (not counted in N)",
    })  # fmt: skip


def predictions(spec) -> dict:
    """``summary["predicted"]`` (:mod:`.predicted`): every kernel learner run, and the NTK whenever a
    network is, at every ``d`` of the profile and :data:`EXTRA_DS`, over every N of the grids."""
    names = {lr: LEARNERS[lr].kind for lr in spec.learners if LEARNERS[lr].kind in ("ntk", "nngp")}
    if any(LEARNERS[lr].kind == "net" for lr in spec.learners):
        names.setdefault("ntk-2nn", "ntk")
    target = lambda d: make_target(spec.target, d, spec.r, spec.p, _keys(spec.seeds[0], d)[0])  # noqa: E731
    return kernel_predictions(names, tuple(spec.ds) + EXTRA_DS, sorted(set(spec.ns) | set(spec.kernel_ns)),
                              spec.kernel_ridges, target, W_std=spec.W_std, b_std=spec.b_std, theta=spec.theta,
                              thetas=spec.thetas)  # fmt: skip


def separation(slopes: dict, nstar: dict) -> dict | None:
    """The Bar of Experiment 3: the better network learner (lowest mean ``log n*`` over ``d``,
    censored ``d`` at their bound) against each kernel learner with a slope.

    ``holds``: the kernel's fitted slope is above the network's upper 95 % limit, where a kernel
    whose ``n*`` is censored at the largest N counts with its slope's lower bound (censoring at
    the largest ``d`` makes the fitted slope a lower bound, ``slope_bound`` ``"lower"``; a slope
    that censoring makes an *upper* bound never counts). ``holds_ci``: the stricter reading, the
    kernel's whole bootstrap CI above that limit.
    """
    nets = [lr for lr in slopes if LEARNERS[lr].kind == "net"]
    kers = [lr for lr in slopes if LEARNERS[lr].kind != "net"]
    if not nets:
        return None
    best = min(nets, key=lambda lr: float(np.mean(np.log(slopes[lr]["n_star"]))))
    upper = slopes[best]["ci95"][1]
    out = {"network": best, "network_slope": slopes[best]["slope"], "network_ci95_upper": upper, "kernels": {}}
    for k in kers:
        s = slopes[k]
        point_ok = s["bound"] in (None, "lower", "exact")
        out["kernels"][k] = {"slope": s["slope"], "slope_bound": s["bound"], "ci95": s["ci95"],
                             "holds": bool(point_ok and s["slope"] > upper), "holds_ci": bool(s["ci95"][0] > upper)}
    return out


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


#: The command-line options of ``rbk exp3``: those of :class:`Exp3Spec`'s fields with a flag (the
#: command adds ``--profile``, ``--out``, ``--seeds`` as a count, ...).
OPTIONS = tuple(o for o in options_of(Exp3Spec) if o.field != "seeds" and o.field not in Exp3Spec.resource_fields)


def add_resource_arguments(r) -> None:
    """``--max-members-per-call``, in the command's "resources" group ``r``."""
    add_resource_arguments_of(Exp3Spec, r)


def add_arguments(parser) -> None:
    """The options of ``rbk exp3`` (:data:`OPTIONS`)."""
    add_options(parser.add_argument_group("target: f*(x) = g(U x), x ~ N(0, I_d), U with r orthonormal rows"),
                OPTIONS[:4])
    add_options(parser.add_argument_group("grid"), OPTIONS[4:])


def overrides(args) -> dict:
    """``make_spec`` keywords of the parsed options (``None``: not given; the resources too)."""
    return option_values(args, tuple(o for o in options_of(Exp3Spec) if o.field != "seeds"))
