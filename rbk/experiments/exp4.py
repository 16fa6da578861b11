"""Experiment 4: deep hierarchies and backward feature correction (Allen-Zhu & Li 2020).

Target :func:`rbk.targets.hierarchy` (``L`` levels, each a quadratic map of the level below and,
through a skip, of the one before; ``y = sum_l alpha_l s_l``), fixed by ``target_seed``; every
seed draws its own Gaussian data. Learners, all on the same data of a seed (the registry
:data:`LEARNERS`):

* ``deep-joint``        :class:`rbk.models.DeepQuad` (truncated quadratic, skips, a read-out per
                        level), every level trained from the start (``regime_config('joint')``);
* ``deep-layerwise``    the same network, level ``l`` trained only in stage ``l`` (lower levels
                        frozen), the same number of SGD steps;
* ``deep-progressive``  level ``l`` trained from stage ``l`` to the end (optional);
* ``ntk-deep``, ``nngp-deep``  kernel ridge with the exact NTK / NNGP of the same architecture;
* ``2nn``               rbk's ReLU two-layer network, the shallow reference.

A network cell is one (learner, N): every (seed, lr) member in one compiled, vmapped call, each
member recording its test error and the feature quality of every level (held-out ridge R^2 of
the target's ``S_l`` from the network's ``h_l``, ``docs/hierarchy.md``) at the recorded epochs.
A kernel cell is one (learner, N, seed), one row per ridge. Selection is by validation error per
(learner, N, seed).

The summary holds the per-level thresholds (``threshold``: the deepest level's, the error of
the best predictor of degree at most that of the level below), test error against N per learner
with Student-t 95 % CIs over seeds, ``n*`` (bootstrap, censored, as Experiments 1 and 3), the
paired (by seed) ``ntk-deep - deep-joint`` difference per N, and per level the paired
``deep-joint - deep-layerwise`` feature quality at the end of training at the largest N, and
both regimes' quality over training (figure 2).

Profiles
--------
``quick``  (about 700 s of CPU time, user + sys; 17 minutes of wall time on a 2-core machine
           shared with other jobs) ``d = 48``, widths (4, 4, 4), alphas (1, 0.8, 0.6), the
           linear output map (``readout='linear'``; the learner reads ``h_l``), N in {2000,
           4000, 8000}, 5 seeds, 10000 test points; DeepQuad width 64 (truncated quadratic,
           clip 2), 90 epochs (30 per stage; lr/10 halfway through the run or the stage), lr in
           {3e-3, 5e-3}; NTK relative ridges {1e-6, ..., 1e-2}; ``2nn`` of width 192 (as many
           hidden units as the deep net) as the shallow reference, same lrs and epochs.
``paper``  for an accelerator (``--dry-run``): the paper's output map (``readout='square'``),
           ``d = 40``, 4 levels, N up to 50000, 5 seeds, width 256, 120 epochs, an lr grid
           *(our choice: the paper's sizes were not verified)*.

Run ``rbk exp4 --help`` for the options.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import numpy as np

from rbk.sweep import CORE_FIELDS, Study

EXPERIMENT = "exp4"

READOUTS = ("square", "linear")
FIRSTS = ("linear", "quadratic")
ACTIVATIONS = ("square", "hermite", "truncated")

PROFILES = {
    "quick": dict(
        d=48,
        widths=(4, 4, 4),
        alphas=(1.0, 0.8, 0.6),
        readout="linear",
        learners=("deep-joint", "deep-layerwise", "ntk-deep", "2nn"),
        ns=(2000, 4000, 8000),
        seeds=(0, 1, 2, 3, 4),
        width=64,
        epochs=90,
        lrs=(3e-3, 5e-3),
        ridges=(1e-6, 1e-5, 1e-4, 1e-3, 1e-2),
        n_val=2000,
        n_test=10000,
    ),
    "paper": dict(
        d=40,
        widths=(4, 4, 4, 4),
        alphas=(1.0, 0.8, 0.6, 0.4),
        readout="square",
        learners=("deep-joint", "deep-layerwise", "deep-progressive", "ntk-deep", "nngp-deep", "2nn"),
        ns=(2000, 5000, 10000, 20000, 50000),
        seeds=(0, 1, 2, 3, 4),
        width=256,
        epochs=120,
        lrs=(3e-4, 1e-3, 3e-3),
        ridges=(1e-6, 1e-4, 1e-2, 1e-1, 1.0),
        kernel_max_n=20000,
    ),
}


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
    """A registered learner: its kind (``'net'``, ``'ntk'``, ``'nngp'``), whether a cell holds one
    seed (kernels) or all (networks), the function computing a cell's rows ``(spec, cell,
    devices, progress) -> list[dict]`` and the columns it records beyond the common ones."""

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


_NET = ("width", "epochs", "lr", "wd", "record_epochs", "test_over_training", "compile_s", "run_s")
_DEEP = _NET + ("feature_quality",)
_KERNEL = ("ridge",)

LEARNERS = {
    "deep-joint": Learner("net", False, _deep_runner("joint"), _DEEP),
    "deep-layerwise": Learner("net", False, _deep_runner("layerwise"), _DEEP),
    "deep-progressive": Learner("net", False, _deep_runner("progressive"), _DEEP),
    "ntk-deep": Learner("ntk", True, _kernel_runner("ntk"), _KERNEL),
    "nngp-deep": Learner("nngp", True, _kernel_runner("nngp"), _KERNEL),
    "2nn": Learner("net", False, _shallow_runner, _NET),
}

#: The study's own columns (after :data:`rbk.sweep.CORE_FIELDS`).
OWN_FIELDS = ("d", "levels", "widths", "alphas", "readout", "width", "epochs", "lr", "wd", "ridge", "threshold",
              "record_epochs", "test_over_training", "feature_quality", "compile_s", "run_s")  # fmt: skip


# --------------------------------------------------------------------------------------------
# the study
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Exp4Spec(Study):
    """Experiment 4's grid (build it with :func:`make_spec`, which validates every value)."""

    experiment: str = EXPERIMENT
    d: int = 48
    widths: tuple = (4, 4, 4)
    alphas: tuple = (1.0, 0.8, 0.6)
    readout: str = "linear"
    first: str = "linear"
    skip: bool = True
    rank: int | None = None
    paper_regime: bool = True
    target_seed: int = 0
    learners: tuple = ("deep-joint", "deep-layerwise", "ntk-deep")
    ns: tuple = (2000, 4000, 8000)
    seeds: tuple = (0, 1, 2, 3, 4)
    width: int = 64
    activation: str = "truncated"
    clip: float = 2.0
    epochs: int = 90
    batch_size: int = 50
    lrs: tuple = (3e-3, 5e-3)
    wds: tuple = (0.0,)
    record_per_stage: int = 2
    ridges: tuple = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
    n_val: int = 2000
    n_test: int = 10000
    kernel_max_n: int = 20000
    matmul_precision: str = "highest"

    row_fields = CORE_FIELDS + OWN_FIELDS

    @property
    def levels(self) -> int:
        return len(self.widths)

    def config(self) -> dict:
        out = dataclasses.asdict(self)
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        return out

    @classmethod
    def from_config(cls, config: dict, resolved: dict | None = None) -> "Exp4Spec":
        return make_spec(**{k: v for k, v in config.items() if k != "experiment"})

    # -- the target, data and models -------------------------------------------------------

    def target(self):
        return _target(self.d, self.widths, self.alphas, self.readout, self.first, self.skip, self.rank,
                       self.paper_regime, self.target_seed)  # fmt: skip

    def dataset(self, n: int, seed: int):
        from rbk.data import make_dataset, seed_keys

        return make_dataset(seed_keys(seed)[0], self.target(), n, n_val=self.n_val, n_test=self.n_test,
                            distribution="gaussian")  # fmt: skip

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
                                   batch_size=self.batch_size, matmul_precision=self.matmul_precision)  # fmt: skip

    # -- the plan ----------------------------------------------------------------------------

    def plan(self) -> list[Cell]:
        cells = []
        for name in self.learners:
            lr = LEARNERS[name]
            for n in self.ns:
                if lr.per_seed:
                    if n > self.kernel_max_n:
                        continue
                    cells += [Cell(f"{name}_n{n}_s{s}", name, lr.kind, n, s) for s in self.seeds]
                else:
                    cells.append(Cell(f"{name}_n{n}", name, lr.kind, n))
        return cells

    def member_epochs(self, cell) -> int | None:
        if cell.kind != "net":
            return None
        return len(self.seeds) * len(self.lrs) * len(self.wds) * self.epochs

    def run_cell(self, cell, devices=None, progress=None) -> list[dict]:
        return LEARNERS[cell.learner].run(self, cell, devices, progress)

    def memory_problems(self, cells, memory_bytes, n_devices=1, host_bytes=None) -> list[str]:
        from rbk.sweep import kernel_cell_bytes

        ns = [c.n for c in cells if c.kind != "net"]
        if ns and host_bytes is not None and kernel_cell_bytes(max(ns)) > host_bytes:
            return [f"the exact kernels at N = {max(ns)} need about {kernel_cell_bytes(max(ns)) / 2**30:.1f} GiB of "
                    f"host memory; lower --kernel-max-n"]  # fmt: skip
        return []

    def format_plan(self, cells, done=frozenset()) -> str:
        t = self.target()
        head = [f"target: d={self.d} widths={list(self.widths)} alphas={list(self.alphas)} readout={self.readout}; "
                f"E[y^2]={t.info['second_moment']:.4f}; thresholds "
                + ", ".join(f"level {l}: {v:.4g}" for l, v in sorted(t.info["thresholds"].items()) if l >= 2)]  # fmt: skip
        return "\n".join(head + [super().format_plan(cells, done)])

    # -- rows --------------------------------------------------------------------------------

    def base_row(self, cell, seed: int) -> dict:
        return {"experiment": self.experiment, "learner": cell.learner, "kind": cell.kind, "n": cell.n, "seed": seed,
                "cell": cell.id, "d": self.d, "levels": self.levels, "widths": list(self.widths),
                "alphas": list(self.alphas), "readout": self.readout, "width": None, "epochs": None, "lr": None,
                "wd": None, "ridge": None, "threshold": self.target().threshold, "record_epochs": None,
                "test_over_training": None, "feature_quality": None, "compile_s": None, "run_s": None}  # fmt: skip


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


def _net_rows(spec: Exp4Spec, cell: Cell, res, wall: float, width: int, quality=None) -> list[dict]:
    """One row per (seed, lr, wd) member of a network call."""
    fin = {s: res.final(s) for s in ("train", "val", "test")}
    rows = []
    for i, s in enumerate(spec.seeds):
        for j, lr in enumerate(spec.lrs):
            for m, wd in enumerate(spec.wds):
                r = spec.base_row(cell, s)
                errs = {sp: float(fin[sp][i, j, m]) for sp in fin}
                div = bool(res.diverged[i, j, m]) or not all(math.isfinite(e) for e in errs.values())
                r.update({f"{sp}_error": e for sp, e in errs.items()})
                r.update(width=width, epochs=spec.epochs, lr=float(lr), wd=float(wd), diverged=div, call_wall_s=wall,
                         compile_s=res.compile_s, run_s=res.run_s, record_epochs=list(res.record_epochs),
                         test_over_training=[float(v) for v in res.errors["test"][i, j, m]])  # fmt: skip
                if quality is not None:
                    r["feature_quality"] = [[float(v) for v in q] for q in quality[i, j, m]]
                rows.append(r)
    return rows


def _stacked(spec: Exp4Spec, n: int):
    import jax.numpy as jnp

    from rbk.data import seed_keys, stack

    data = stack([spec.dataset(n, s) for s in spec.seeds])
    keys = jnp.stack([seed_keys(s)[1] for s in spec.seeds])
    return data, keys


def _run_deep(spec: Exp4Spec, cell: Cell, regime: str, devices=None, progress=None) -> list[dict]:
    from rbk import train

    model = spec.deep_model(reference=spec.target())
    data, keys = _stacked(spec, cell.n)
    t0 = time.perf_counter()
    res = train.train(model, data, keys, list(spec.lrs), list(spec.wds), spec.train_config(regime), devices=devices,
                      progress=progress)  # fmt: skip
    wall = time.perf_counter() - t0
    quality = model.feature_quality_from_stats(res.probes)  # (S, Lr, W, R, levels)
    return _net_rows(spec, cell, res, wall, spec.width, quality)


def _run_2nn(spec: Exp4Spec, cell: Cell, devices=None, progress=None) -> list[dict]:
    """rbk's ReLU two-layer net with as many hidden units as the deep net has in all its levels."""
    from rbk import train
    from rbk.models import get_model

    width = spec.width * spec.levels
    model = get_model("2nn", width, spec.d, 1)
    data, keys = _stacked(spec, cell.n)
    cfg = train.config(spec.epochs, batch_size=spec.batch_size, matmul_precision=spec.matmul_precision)
    t0 = time.perf_counter()
    res = train.train(model, data, keys, list(spec.lrs), list(spec.wds), cfg, devices=devices, progress=progress)
    return _net_rows(spec, cell, res, time.perf_counter() - t0, width)


def _run_kernel(spec: Exp4Spec, cell: Cell, get: str) -> list[dict]:
    """Kernel ridge with the exact kernel of the deep network's architecture; one row per ridge."""
    from rbk import kernels
    from rbk.models import get_deepquad
    from rbk.sweep import KERNEL_BLOCK

    act = "hermite" if spec.activation == "truncated" else spec.activation  # equal for |u| <= clip
    kfn = kernels.model_kernel_fn(get_deepquad(spec.width, spec.d, levels=spec.levels, activation=act, skip=spec.skip,
                                               readout=spec.head, parameterization="ntk", head_init="random"))  # fmt: skip
    ds = spec.dataset(cell.n, cell.seed)
    t0 = time.perf_counter()
    out = kernels.fit_predict(kfn, ds, ridges=spec.ridges, get=get, block_size=KERNEL_BLOCK,
                              solver=kernels.choose_solver(cell.n, kfn))  # fmt: skip
    wall = time.perf_counter() - t0
    rows = []
    for i, lam in enumerate(out["lams"]):
        r = spec.base_row(cell, cell.seed)
        errs = {sp: float(out[f"{sp}_errors"][i]) for sp in ("train", "val", "test")}
        r.update({f"{sp}_error": e for sp, e in errs.items()})
        r.update(ridge=float(lam), diverged=not all(map(math.isfinite, errs.values())), call_wall_s=wall,
                 compile_s=0.0, run_s=wall)  # fmt: skip
        rows.append(r)
    return rows


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _tuple(name: str, value, conv, *, lo=None, allow_empty=False) -> tuple:
    if isinstance(value, (str, bytes)) or np.isscalar(value):
        value = (value,)
    try:
        vals = tuple(value)
    except TypeError:
        raise ValueError(f"{name} must be a list, got {value!r}") from None
    if not vals and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    out = tuple(conv(f"{name}[{i}]", v, lo=lo) for i, v in enumerate(vals))
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat a value, got {list(out)}")
    return out


def make_spec(**kw) -> Exp4Spec:
    """The validated :class:`Exp4Spec` (``ValueError`` naming the option and its range, before any
    compute). Unknown keywords are refused."""
    from rbk._checks import check_choice, check_int, check_real

    fields = {f.name for f in dataclasses.fields(Exp4Spec)} - {"experiment"}
    bad = sorted(set(kw) - fields)
    if bad:
        raise ValueError(f"unknown option(s) {bad}; Experiment 4 takes {sorted(fields)}")
    base = dataclasses.asdict(Exp4Spec())
    base.pop("experiment")
    base.update(kw)
    v = base
    widths = v["widths"]
    if isinstance(widths, (str, bytes)) or np.isscalar(widths) or len(tuple(widths)) < 2:
        raise ValueError(f"widths (the target's level widths k_l) must list L >= 2 levels, got {widths!r}")
    widths = tuple(check_int(f"widths[{i}]", k, lo=1) for i, k in enumerate(widths))
    alphas = v["alphas"]
    if isinstance(alphas, (str, bytes)) or np.isscalar(alphas) or len(tuple(alphas)) != len(widths):
        raise ValueError(f"alphas must have one weight per level (L = {len(widths)}, from widths), got {alphas!r}")
    alphas = tuple(check_real(f"alphas[{i}]", a, lo=0.0) for i, a in enumerate(alphas))
    if not isinstance(v["paper_regime"], bool) or not isinstance(v["skip"], bool):
        raise ValueError("paper_regime and skip must be True or False")
    if v["paper_regime"] and (alphas[0] <= 0 or any(b >= a for a, b in zip(alphas, alphas[1:]))):
        raise ValueError(f"alphas must be positive and strictly decreasing in the paper's regime (paper_regime=True; "
                         f"pass paper_regime=False for others), got {list(alphas)}")  # fmt: skip
    learners = v["learners"]
    learners = (learners,) if isinstance(learners, str) else tuple(learners)
    if not learners:
        raise ValueError("learners must not be empty")
    for name in learners:
        if name not in LEARNERS:
            raise ValueError(f"learners must be among {list(LEARNERS)}, got {name!r}")
    if len(set(learners)) != len(learners):
        raise ValueError(f"learners must not repeat a name, got {list(learners)}")
    spec = Exp4Spec(
        d=check_int("d", v["d"], lo=1),
        widths=widths,
        alphas=alphas,
        readout=check_choice("readout", v["readout"], READOUTS),
        first=check_choice("first", v["first"], FIRSTS),
        skip=v["skip"],
        rank=None if v["rank"] is None else check_int("rank", v["rank"], lo=1),
        paper_regime=v["paper_regime"],
        target_seed=check_int("target_seed", v["target_seed"], lo=0),
        learners=learners,
        ns=tuple(sorted(_tuple("ns", v["ns"], check_int, lo=1))),
        seeds=_tuple("seeds", v["seeds"], check_int, lo=0),
        width=check_int("width", v["width"], lo=1),
        activation=check_choice("activation", v["activation"], ACTIVATIONS),
        clip=check_real("clip", v["clip"], lo=1.0),
        epochs=check_int("epochs", v["epochs"], lo=len(widths)),
        batch_size=check_int("batch_size", v["batch_size"], lo=1),
        lrs=_tuple("lrs", v["lrs"], check_real, lo=0.0),
        wds=_tuple("wds", v["wds"], check_real, lo=0.0),
        record_per_stage=check_int("record_per_stage", v["record_per_stage"], lo=1),
        ridges=_tuple("ridges", v["ridges"], check_real, lo=0.0),
        n_val=check_int("n_val", v["n_val"], lo=2),
        n_test=check_int("n_test", v["n_test"], lo=1),
        kernel_max_n=check_int("kernel_max_n", v["kernel_max_n"], lo=1),
        matmul_precision=check_choice("matmul_precision", v["matmul_precision"], ("highest", "high", "default")),
    )
    if spec.epochs % spec.levels:
        raise ValueError(f"epochs must be a multiple of the number of levels L = {spec.levels} (equal stages), "
                         f"got {spec.epochs}")  # fmt: skip
    if len(spec.ridges) > 5:
        raise ValueError(f"ridges: at most 5 relative ridges, got {len(spec.ridges)}")
    if spec.batch_size > min(spec.ns):
        raise ValueError(f"batch_size must be at most the smallest N = {min(spec.ns)}, got {spec.batch_size}")
    _check_moments(spec)
    return spec


def _check_moments(spec: Exp4Spec) -> None:
    """The hierarchy's exact-moment grid must fit (:func:`rbk.targets.hierarchy` refuses it too, but
    building the target initialises JAX, which the command line must not do before it splits the CPU)."""
    from rbk.targets import MAX_QUADRATURE_NODES, _hierarchy_degrees

    rank = spec.widths[0] if spec.rank is None else spec.rank
    if rank > spec.d:
        raise ValueError(f"rank (the dimension of the subspace the target depends on, default widths[0]) must be "
                         f"in [1, d={spec.d}], got {rank}")  # fmt: skip
    _, out_deg = _hierarchy_degrees(spec.levels, spec.first, spec.readout)
    if (max(out_deg) + 1) ** rank > MAX_QUADRATURE_NODES:
        raise ValueError(f"widths: rank={rank} with L={spec.levels} levels needs {max(out_deg) + 1}^{rank} quadrature "
                         f"nodes for the exact moments (at most {MAX_QUADRATURE_NODES}); use fewer levels or a "
                         f"smaller widths[0] / rank")  # fmt: skip


# --------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------


def _paired(a: dict, b: dict) -> dict:
    """Paired (by seed) ``a - b`` of two ``{seed: value}`` maps, with its Student-t 95 % CI."""
    from rbk import stats

    seeds = sorted(s for s in a if s in b and math.isfinite(a[s] - b[s]))
    diffs = [a[s] - b[s] for s in seeds]
    m, lo, hi = stats.t_ci(diffs)
    return {"mean": m, "ci95": [lo, hi], "seeds": len(seeds), "per_seed": dict(zip(seeds, diffs))}


def _ci(values) -> dict:
    from rbk import stats

    vals = [v for v in values if math.isfinite(v)]
    m, lo, hi = stats.t_ci(vals)
    return {"mean": m, "ci95": [lo, hi], "seeds": len(vals)}


def summarize(spec: Exp4Spec, rows, *, quiet: bool = False) -> dict:
    """``summary.json`` of Experiment 4 (see the module doc)."""
    from rbk import stats

    target = spec.target()
    thr = float(target.threshold)
    sel = stats.select(rows, keys=("experiment", "learner", "n", "seed"))
    by = {}
    for r in sel:
        by.setdefault((r["learner"], r["n"]), {})[r["seed"]] = r
    out_rows, nstar = [], {}
    for name in [l for l in spec.learners if any(k[0] == l for k in by)]:
        for n in sorted(k[1] for k in by if k[0] == name):
            cell = by[(name, n)]
            tests = [cell[s]["test_error"] for s in sorted(cell)]
            fin = [t for t in tests if math.isfinite(t)]
            m, lo, hi = stats.t_ci(fin)
            chosen = [cell[s].get("lr") if LEARNERS[name].kind == "net" else cell[s].get("ridge") for s in sorted(cell)]
            out_rows.append({"learner": name, "kind": LEARNERS[name].kind, "n": n, "test_error_mean": m,
                             "test_error_ci95": [lo, hi], "seeds": len(fin), "diverged_seeds": len(tests) - len(fin),
                             "per_seed": tests, "chosen": chosen,
                             "below_threshold": bool(math.isfinite(hi) and hi < thr),
                             "above_threshold": bool(math.isfinite(lo) and lo > thr)})  # fmt: skip
        nstar[name] = stats.n_star([r for r in sel if r["learner"] == name], thr)
    summary = {
        "experiment": spec.experiment,
        "instance": {"d": spec.d, "widths": list(spec.widths), "alphas": list(spec.alphas), "readout": spec.readout,
                     "first": spec.first, "skip": spec.skip, "levels": spec.levels,
                     "second_moment": float(target.info["second_moment"])},  # fmt: skip
        "threshold": thr,
        "thresholds": {str(l): float(v) for l, v in sorted(target.info["thresholds"].items()) if l >= 2},
        "degree_energy": [float(v) for v in np.asarray(target.info["degree_energy"])],
        "rows": out_rows,
        "n_star": nstar,
        "stage_epochs": [spec.epochs * l // spec.levels for l in range(1, spec.levels)],
    }
    nmax = max(r["n"] for r in sel)
    summary["largest_n"] = nmax

    def test_of(name, n):
        return {s: r["test_error"] for s, r in by.get((name, n), {}).items()}

    if "deep-joint" in spec.learners and "ntk-deep" in spec.learners:
        summary["ntk_minus_joint"] = [
            {"n": n, **_paired(test_of("ntk-deep", n), test_of("deep-joint", n))}
            for n in spec.ns if (("ntk-deep", n) in by and ("deep-joint", n) in by)
        ]  # fmt: skip
        at = [p for p in summary["ntk_minus_joint"] if p["n"] == nmax]
        summary["ntk_minus_joint_at_largest_n"] = at[0] if at else None
    if "deep-joint" in spec.learners and "deep-layerwise" in spec.learners:
        summary["feature_quality"] = _feature_quality(spec, by, nmax)
    summary["bar"] = _bar(summary)
    return summary


def _quality_curves(cell: dict) -> tuple[list, np.ndarray]:
    """``(record_epochs, (seeds, R, levels) array)`` of one (learner, N)'s selected rows."""
    seeds = sorted(s for s in cell if cell[s].get("feature_quality") is not None)
    if not seeds:
        return [], np.zeros((0, 0, 0))
    return list(cell[seeds[0]]["record_epochs"]), np.array([cell[s]["feature_quality"] for s in seeds], dtype=float)


def _feature_quality(spec: Exp4Spec, by: dict, n: int) -> list[dict]:
    """Per level: paired joint - layer-wise quality at the end of training at ``n``, and both
    regimes' mean curves over training with CI bands."""
    joint, layer = by.get(("deep-joint", n), {}), by.get(("deep-layerwise", n), {})
    out = []
    for lvl in range(1, spec.levels + 1):

        def end(cell):
            return {s: float(r["feature_quality"][-1][lvl - 1]) for s, r in cell.items()
                    if r.get("feature_quality") is not None}  # fmt: skip

        entry = {"level": lvl, "n": n, "joint": _ci(end(joint).values()), "layerwise": _ci(end(layer).values()),
                 "joint_minus_layerwise": _paired(end(joint), end(layer))}  # fmt: skip
        curves = {}
        for name, cell in (("joint", joint), ("layerwise", layer)):
            epochs, q = _quality_curves(cell)
            if q.size == 0:
                continue
            stats_ = [_ci(q[:, i, lvl - 1]) for i in range(q.shape[1])]
            curves[name] = {"epochs": epochs, "mean": [c["mean"] for c in stats_], "ci95": [c["ci95"] for c in stats_]}
        entry["over_training"] = curves
        out.append(entry)
    return out


def _bar(summary: dict) -> dict:
    """The issue's three checks, as read from the summary (at the largest N)."""
    n = summary["largest_n"]
    thr = summary["threshold"]
    rows = {r["learner"]: r for r in summary["rows"] if r["n"] == n}
    out = {}
    if "deep-joint" in rows:
        out["joint_below_threshold"] = rows["deep-joint"]["below_threshold"]
    if "ntk-deep" in rows:
        out["ntk_above_threshold"] = rows["ntk-deep"]["above_threshold"]
    p = summary.get("ntk_minus_joint_at_largest_n")
    if p:
        out["ntk_minus_joint_ci_above_zero"] = bool(math.isfinite(p["ci95"][0]) and p["ci95"][0] > 0)
    for fq in summary.get("feature_quality", []):
        if fq["level"] == 2:
            lo = fq["joint_minus_layerwise"]["ci95"][0]
            out["level2_quality_ci_above_zero"] = bool(math.isfinite(lo) and lo > 0)
    out["threshold"] = thr
    return out


# --------------------------------------------------------------------------------------------
# table and figures
# --------------------------------------------------------------------------------------------


def _fmt_ci(m, ci) -> str:
    lo, hi = ci
    if not math.isfinite(m):
        return "-"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{m:.4f}"
    return f"{m:.4f} [{lo:.4f}, {hi:.4f}]"


def format_table(summary) -> str:
    """The printed summary: test error per learner and N, thresholds, paired differences, feature quality."""
    inst = summary["instance"]
    lines = [f"Experiment 4: d={inst['d']} widths={inst['widths']} alphas={inst['alphas']} readout={inst['readout']} "
             f"E[y^2]={inst['second_moment']:.4f}",
             "thresholds: " + ", ".join(f"level {l}: {v:.4f}" for l, v in summary["thresholds"].items())
             + f"  (deepest: {summary['threshold']:.4f})", ""]  # fmt: skip
    ns = sorted({r["n"] for r in summary["rows"]})
    names = list(dict.fromkeys(r["learner"] for r in summary["rows"]))
    cells = {(r["learner"], r["n"]): r for r in summary["rows"]}
    lines.append("| learner | " + " | ".join(f"N={n}" for n in ns) + " | n* |")
    lines.append("|---" * (len(ns) + 2) + "|")
    for name in names:
        vals = []
        for n in ns:
            r = cells.get((name, n))
            vals.append("-" if r is None else _fmt_ci(r["test_error_mean"], r["test_error_ci95"])
                        + (" *" if r["below_threshold"] else ""))  # fmt: skip
        ns_ = summary["n_star"].get(name, {})
        est = ns_.get("estimate")
        nst = (f"{est:.0f}" if isinstance(est, float) and math.isfinite(est) else ns_.get("censored", "-"))
        lines.append(f"| {name} | " + " | ".join(vals) + f" | {nst} |")
    lines.append("(* : the 95 % CI lies below the deepest threshold)")
    p = summary.get("ntk_minus_joint_at_largest_n")
    if p:
        lines.append(f"\nntk-deep - deep-joint at N={summary['largest_n']} (paired by seed): "
                     f"{_fmt_ci(p['mean'], p['ci95'])}")  # fmt: skip
    if summary.get("feature_quality"):
        lines.append(f"\nfeature quality at the end of training, N={summary['largest_n']} (held-out R^2 of S_l from h_l):")
        lines.append("| level | joint | layer-wise | joint - layer-wise (paired) |")
        lines.append("|---|---|---|---|")
        for fq in summary["feature_quality"]:
            lines.append(f"| {fq['level']} | {_fmt_ci(fq['joint']['mean'], fq['joint']['ci95'])} | "
                         f"{_fmt_ci(fq['layerwise']['mean'], fq['layerwise']['ci95'])} | "
                         f"{_fmt_ci(fq['joint_minus_layerwise']['mean'], fq['joint_minus_layerwise']['ci95'])} |")  # fmt: skip
    lines.append("\nbar: " + ", ".join(f"{k}={v}" for k, v in summary.get("bar", {}).items() if k != "threshold"))
    return "\n".join(lines)


def plot(summary, out_dir) -> list:
    """Figure 1 ``exp4.png/.pdf``: test error against N per learner, each level's threshold drawn;
    figure 2 ``exp4_features.png/.pdf``: feature quality over training per level, joint vs
    layer-wise (mean over seeds, 95 % CI band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rbk.plots import _save

    paths = []
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    names = list(dict.fromkeys(r["learner"] for r in summary["rows"]))
    styles = {"deep-joint": ("C0", "o", "-"), "deep-layerwise": ("C1", "s", "-"), "deep-progressive": ("C4", "v", "-"),
              "ntk-deep": ("C3", "^", "--"), "nngp-deep": ("C5", "D", "--"), "2nn": ("C2", "x", ":")}  # fmt: skip
    for name in names:
        rs = sorted((r for r in summary["rows"] if r["learner"] == name), key=lambda r: r["n"])
        n = np.array([r["n"] for r in rs], float)
        m = np.array([r["test_error_mean"] for r in rs], float)
        lo = np.array([r["test_error_ci95"][0] for r in rs], float)
        hi = np.array([r["test_error_ci95"][1] for r in rs], float)
        c, mk, ls = styles.get(name, ("0.3", "o", "-"))
        ax.plot(n, m, marker=mk, ls=ls, color=c, label=name)
        ok = np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            ax.fill_between(n[ok], np.maximum(lo[ok], 1e-6), hi[ok], color=c, alpha=0.15, lw=0)
    for i, (lvl, thr) in enumerate(summary["thresholds"].items()):
        ax.axhline(thr, color="0.2", lw=0.9, ls=(0, (1 + i, 2)))
        ax.annotate(f"level {lvl} threshold {thr:.3g}", xy=(0.01, thr), xycoords=("axes fraction", "data"),
                    xytext=(0, 2), textcoords="offset points", fontsize=8, color="0.2")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training samples N")
    ax.set_ylabel("test error (mean over seeds, 95 % CI)")
    inst = summary["instance"]
    ax.set_title(f"Experiment 4: d={inst['d']}, widths {inst['widths']}, readout {inst['readout']}", fontsize=10)
    ax.legend(fontsize=8)
    paths += list(_save(fig, out_dir, EXPERIMENT))
    fqs = [fq for fq in summary.get("feature_quality", []) if fq["level"] >= 2 and fq["over_training"]]
    if fqs:
        fig, axes = plt.subplots(1, len(fqs), figsize=(4.0 * len(fqs), 3.4), squeeze=False)
        for ax, fq in zip(axes[0], fqs):
            for name, c in (("joint", "C0"), ("layerwise", "C1")):
                cur = fq["over_training"].get(name)
                if not cur:
                    continue
                e = np.array(cur["epochs"], float)
                m = np.array(cur["mean"], float)
                lo = np.array([v[0] for v in cur["ci95"]], float)
                hi = np.array([v[1] for v in cur["ci95"]], float)
                ax.plot(e, m, marker="o", color=c, label=f"deep-{name}")
                ok = np.isfinite(lo) & np.isfinite(hi)
                ax.fill_between(e[ok], lo[ok], hi[ok], color=c, alpha=0.2, lw=0)
            for e in summary.get("stage_epochs", []):
                ax.axvline(e, color="0.6", lw=0.8, ls=":")
            d = fq["joint_minus_layerwise"]
            ax.set_title(f"level {fq['level']}: joint - layer-wise {_fmt_ci(d['mean'], d['ci95'])}", fontsize=8.5)
            ax.set_xlabel("epoch")
            ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.02)
        axes[0][0].set_ylabel(f"feature quality (held-out R², N={fqs[0]['n']})")
        axes[0][0].legend(fontsize=8)
        paths += list(_save(fig, out_dir, f"{EXPERIMENT}_features"))
    return paths


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def add_arguments(parser) -> None:
    """Experiment 4's own options (each overrides the profile's value)."""
    from rbk._args import integer as _int, list_of as _list_of

    g = parser.add_argument_group("the hierarchy and its learners")
    g.add_argument("--d", type=_int, help="input dimension, >= 1")
    g.add_argument("--widths", type=_list_of(_int, "integers"), nargs="+", help="target level widths k_l (L >= 2)")
    g.add_argument("--alphas", type=_list_of(float, "numbers"), nargs="+",
                   help="level weights, one per level (strictly decreasing in the paper's regime)")
    g.add_argument("--readout", choices=READOUTS, help="the target's output map")
    g.add_argument("--learners", type=_list_of(str, "names"), nargs="+", help=f"among {list(LEARNERS)}")
    g.add_argument("--n", type=_list_of(_int, "integers"), nargs="+", help="training-set sizes N")
    g.add_argument("--width", type=_int, help="the deep network's width per level")
    g.add_argument("--epochs", type=_int, help="total epochs, a multiple of the number of levels")
    g.add_argument("--lr", type=_list_of(float, "numbers"), nargs="+", help="learning-rate grid")
    g.add_argument("--ridges", type=_list_of(float, "numbers"), nargs="+", help="relative ridges of the kernels")
    g.add_argument("--kernel-max-n", type=_int, help="largest N of the exact kernels")


def overrides(args) -> dict:
    from rbk._args import flat as _flat

    return dict(d=args.d, widths=_flat(args.widths), alphas=_flat(args.alphas), readout=args.readout,
                learners=_flat(args.learners), ns=_flat(args.n), width=args.width, epochs=args.epochs,
                lrs=_flat(args.lr), ridges=_flat(args.ridges), kernel_max_n=args.kernel_max_n,
                matmul_precision=args.matmul_precision)  # fmt: skip


def spec(profile: str = "quick", **overrides_):
    """The :class:`Exp4Spec` of ``profile`` with ``make_spec`` overrides."""
    from rbk.experiments import profile_spec

    return profile_spec(EXPERIMENT, profile, **overrides_)


def run(out_dir, profile: str = "quick", *, quiet: bool = False, plot: bool = True, **overrides_) -> dict | None:
    """Run (or resume) the study into ``out_dir`` and return its summary (``summary.json``)."""
    from rbk import experiments

    return experiments.run(EXPERIMENT, out_dir, profile, quiet=quiet, plot=plot, **overrides_)
