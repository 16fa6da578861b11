"""The concept-class sweep (Experiments 1 and 2): :class:`SweepSpec`, the study of a grid of
(learner x N x setting x seed) on instances of :func:`rbk.targets.paper_instance`, and
:func:`make_spec`, which validates every value before anything is computed."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import MISSING
from functools import partial
from typing import Sequence

from rbk._args import integer, option, optional, validate
from rbk._checks import check_choice, check_int, check_ints, check_list, check_real, check_reals
from rbk.experiments.concept_class.learners import LEARNERS, NET_KIND, parse_learner
from rbk.sweep.errors import ConfigMismatchError, SweepInputError
from rbk.sweep.study import Study, hash_config

SCHEMA_VERSION = 1

ROW_FIELDS = (
    "experiment", "learner", "arch", "kind", "n", "seed", "width", "epochs", "lr", "wd", "ridge",
    "alpha", "beta", "d", "k", "g_degree", "threshold", "train_error", "val_error", "test_error", "diverged",
    "call_wall_s", "cell",
)  # fmt: skip
#: ``threshold``: the error level of "learned" of the row's target, ``spec.target(alpha, beta).threshold``
#: (``k * alpha^2`` for the concept class); results written before it was recorded lack it.
#: Extra columns: absolute ridge (``ridge`` is relative to the kernel's scale), the cell's compile
#: and run seconds, members of the call, the process that ran it; for exact kernels the solver
#: (``dense`` or ``cg``, :func:`rbk.kernels.choose_solver`) and, for ``cg``, that ridge's iterations
#: and final relative residual.
EXTRA_FIELDS = ("ridge_abs", "compile_s", "run_s", "members", "process", "solver", "iterations", "residual")
ALL_FIELDS = ROW_FIELDS + EXTRA_FIELDS

EXPERIMENTS = ("exp1", "exp2")


def check_distribution(name: str, value) -> str:
    """One of :data:`rbk.data.DISTRIBUTIONS`."""
    from rbk.data import DISTRIBUTIONS

    return check_choice(name, value, DISTRIBUTIONS)


def check_matmul_precision(name: str, value) -> str:
    """One of :data:`rbk.train.MATMUL_PRECISIONS` (its canonical name: ``float32`` is ``highest``)."""
    from rbk.train import MATMUL_PRECISIONS

    return MATMUL_PRECISIONS[check_choice(name, value, MATMUL_PRECISIONS)]


@dataclasses.dataclass(frozen=True)
class SweepSpec(Study):
    """Everything that defines a sweep's results (build it with :func:`make_spec`).

    ``instances`` is a tuple of ``(alpha, beta)`` pairs; ``seeds`` explicit seed numbers;
    ``widths`` the network widths (each its own compiled call; a hyper-parameter selected on
    validation like the learning rate); ``ridges`` relative ridges of the kernel learners;
    ``matmul_precision`` the float32 matrix-product precision of the network training
    (:func:`rbk.train.config`; the kernels run in float64).
    ``max_members_per_call`` (``None``: automatic from the device's memory, see
    :func:`resolve_max_members`) only chunks the calls; it is not part of the config hash.
    ``parts`` (set from ``meta.json``, never by hand) lays out a sweep extended by extra ``ns`` or
    ``seeds`` (:func:`extension_parts`): ``(ns, seeds, tag)`` blocks planned one after another.
    """

    experiment: str
    learners: tuple[str, ...] = option(MISSING, check=check_list, flag="--learners",
                                       help=f"learners among {', '.join(LEARNERS)}", many=True, what="learner names")
    ns: tuple[int, ...] = option(MISSING, check=partial(check_ints, lo=1, order="sorted"), flag="--n",
                                 help="training-set sizes, each >= the batch size 50", conv=integer, many=True,
                                 what="integers >= 50")  # fmt: skip
    seeds: tuple[int, ...] = option(MISSING, check=partial(check_ints, lo=0, scalar=False, order="sorted"),
                                    flag="--seeds")
    instances: tuple[tuple[float, float], ...]
    d: int = option(30, check=partial(check_int, lo=2), flag="--d",
                    help="input dimension, an even integer >= 2 (paper: 30)", conv=integer)
    k: int = option(15, flag="--k", help="outputs = degree-2 parities of F, 1 <= k <= d/2 (paper: 15)", conv=integer)
    g_degree: int = option(4, flag="--g-degree", help="degree of the parity G, 1 <= g <= k (paper: 4)", conv=integer)
    widths: tuple[int, ...] = option((256,), check=partial(check_ints, lo=1, order="sorted"), flag="--width",
                                     help="network width(s)", conv=integer, many=True, what="integers >= 1")
    epochs: int = option(60, check=partial(check_int, lo=1), flag="--epochs", conv=integer,
                         help="training epochs (lr/10 at the profile's fraction of them, unless --decay-epoch)")
    decay_epoch: int | None = option(None, flag="--decay-epoch", help="epoch of the lr/10 step, in [0, epochs]",
                                     conv=integer)  # make_spec: in [0, epochs]
    batch_size: int = option(50, check=partial(check_int, lo=1))
    lrs: tuple[float, ...] = option((0.02,), check=partial(check_reals, lo=0.0, lo_open=True, order="sorted"), flag="--lr",
                                    help="learning rates, each > 0", conv=float, many=True, what="numbers > 0")
    wds: tuple[float, ...] = option((1e-3,), check=partial(check_reals, lo=0.0, order="sorted"), flag="--wd",
                                    help="weight decays, each >= 0", conv=float, many=True, what="numbers >= 0")
    ridges: tuple[float, ...] = option((1e-3, 1e-1), check=partial(check_reals, lo=0.0, order="sorted"),
                                       flag="--kernel-ridges", aliases=("--ridges",),
                                       help="kernel ridges relative to mean(diag K), 1 to 5 values >= 0 (chosen on "
                                       "validation)", conv=float, many=True, what="numbers >= 0")  # fmt: skip
    n_val: int | None = option(None, check=optional(partial(check_int, lo=1)), flag="--n-val",
                               help="validation points (default max(1000, N/5))", conv=integer)
    n_test: int = option(10000, check=partial(check_int, lo=1), flag="--n-test", help="test points (default 10000)",
                         conv=integer)
    distribution: str = option("cube", check=check_distribution)
    noise: float = option(0.0, check=partial(check_real, lo=0.0))
    kernel_max_n: int | None = option(None, check=optional(partial(check_int, lo=1)), flag="--kernel-max-n",
                                      help="run exact kernels only for N up to this", conv=integer)
    W_std: float = option(math.sqrt(2.0), check=partial(check_real, lo=0.0, lo_open=True))
    b_std: float = option(0.1, check=partial(check_real, lo=0.0))
    max_members_per_call: int | None = option(None, check=optional(partial(check_int, lo=1)),
                                              flag="--max-members-per-call", conv=integer,
                                              help="split a network call into chunks of at most this many (seed, lr, "
                                              "wd) members (default: what fits in 40%% of the device's memory, by "
                                              "the estimate of --dry-run)")  # fmt: skip
    matmul_precision: str = option("highest", check=check_matmul_precision, flag="--matmul-precision")
    parts: tuple = ()

    def config(self) -> dict:
        """The JSON config that defines the results (hashed; excludes the chunking and the layout of extensions)."""
        out = dataclasses.asdict(self)
        out.pop("max_members_per_call")
        out.pop("parts")
        out["instances"] = [list(p) for p in self.instances]
        for key, v in list(out.items()):
            if isinstance(v, tuple):
                out[key] = list(v)
        out["decay_epoch"] = self.epochs // 2 if self.decay_epoch is None else self.decay_epoch
        out["n_val"] = "max(1000, n // 5)" if self.n_val is None else self.n_val
        out["schema_version"] = SCHEMA_VERSION
        return out

    def train_config(self):
        from rbk import train

        # only the final errors are stored: record them alone (a shorter program to compile)
        return train.config(self.epochs, batch_size=self.batch_size, decay_epoch=self.decay_epoch,
                            record_epochs=[self.epochs], matmul_precision=self.matmul_precision)

    def target(self, alpha: float, beta: float):
        from rbk.targets import paper_instance

        return paper_instance(self.d, self.k, self.g_degree, alpha, beta)

    def n_val_of(self, n: int) -> int:
        from rbk.data import default_n_val

        return default_n_val(n) if self.n_val is None else self.n_val

    # -- the Study protocol ------------------------------------------------------------------
    # (its parts live in the planner, runners and cost modules, imported on call; they import this one
    # only for annotations: no import cycle)
    row_fields = ALL_FIELDS

    def cell_cost(self, cell) -> tuple:
        """``(training FLOPs, dense FLOPs, kernel entries, compiled program)`` of ``cell`` for the dry
        run's time estimate (:func:`rbk.experiments.concept_class.cost.cell_flops`; a network call
        is one program per shape, a kernel fit one per (learner, N))."""
        from rbk.experiments.concept_class.cost import cell_flops

        if cell.kind == "net":
            return cell_flops(self, cell), 0.0, 0.0, ("train", cell.learner, cell.n, cell.width, cell.members)
        if cell.kind == "rf":
            return 0.0, cell_flops(self, cell), 0.0, (cell.learner, cell.n, cell.width)
        n_eval = cell.n + self.n_val_of(cell.n) + self.n_test
        # the kernel's k outputs share its Gram matrix; they are k right-hand sides of one factorisation
        dense = len(self.ridges) * (cell.n**3 / 3 + 2.0 * cell.n * n_eval * self.k)
        return 0.0, dense, float(cell.n * n_eval), (cell.learner, cell.n)

    def plan(self, max_members_per_call: int | None = None) -> list:
        from rbk.experiments.concept_class.planner import plan

        return plan(self, max_members_per_call)

    def run_cell(self, cell, devices=None, progress=None) -> list[dict]:
        from rbk.experiments.concept_class.runners import run_kernel_cell, run_net_cell

        if cell.kind == NET_KIND:
            return run_net_cell(self, cell, devices, progress)
        return run_kernel_cell(self, cell)

    def memory_problems(self, cells, memory_bytes, n_devices=1, host_bytes=None) -> list[str]:
        from rbk.experiments.concept_class.cost import memory_problems

        return memory_problems(self, cells, memory_bytes, n_devices, host_bytes)

    def member_epochs(self, cell) -> int | None:
        return cell.members * self.epochs if cell.kind == NET_KIND else None

    def format_plan(self, cells, done=(), **kw) -> str:
        from rbk.experiments.concept_class.cost import format_plan

        return format_plan(self, cells, done=done, **kw)

    def extends(self, meta: dict) -> bool:
        return extension_parts(meta, self) is not None

    def resolve(self, meta: dict | None, memory_bytes: int | None = None) -> tuple:
        """Member chunking (the value stored at the first run wins on a resume: automatic chunking
        depends on the machine) and the layout of an extension (extra ``ns``/``seeds``)."""
        from rbk.experiments.concept_class.cost import resolve_max_members

        spec = self
        stored_mm = (meta or {}).get("resolved", {}).get("max_members_per_call")
        same = meta is not None and meta.get("config_hash") == spec.config_hash()
        extend = None if meta is None or same else extension_parts(meta, spec)
        if same and meta.get("parts"):
            spec = dataclasses.replace(spec, parts=SweepSpec.from_meta(meta).parts)
        elif extend is not None:
            spec = dataclasses.replace(spec, parts=extend)
        same = same or extend is not None  # an extension keeps the recorded chunking too
        if spec.max_members_per_call is None and same:
            mm = stored_mm
        else:
            mm = resolve_max_members(spec, memory_bytes)
            if same and stored_mm != mm:
                raise ConfigMismatchError(
                    f"this --out was run with --max-members-per-call {stored_mm}; resume with the same value "
                    f"(or leave it out), not {mm}"
                )
        spec = dataclasses.replace(spec, max_members_per_call=mm)
        ext = None if extend is None else {"parts": [[list(ns), list(seeds), tag] for ns, seeds, tag in extend]}
        return spec, {"max_members_per_call": mm}, ext

    @classmethod
    def study_path(cls) -> str:
        # the public name (stable whichever module of the package defines the class); results written
        # before the concept class had its own package record "rbk.sweep:SweepSpec" (rbk.sweep.store reads both)
        return "rbk.experiments.concept_class:SweepSpec" if cls is SweepSpec else super().study_path()

    @classmethod
    def from_config(cls, config: dict, resolved: dict | None = None) -> "SweepSpec":
        return cls.from_meta({"config": config, "resolved": resolved or {}, "config_hash": hash_config(config)})

    @classmethod
    def from_meta(cls, meta: dict) -> "SweepSpec":
        """The sweep recorded in ``meta.json`` (its config, chunking and extension layout), checked
        against the recorded config hash (:class:`rbk.sweep.SweepInputError` otherwise)."""
        c = dict(meta["config"])
        c.pop("schema_version", None)
        c["instances"] = tuple(tuple(p) for p in c["instances"])
        for key in ("learners", "ns", "seeds", "widths", "lrs", "wds", "ridges"):
            c[key] = tuple(c[key])
        if c.get("n_val") == "max(1000, n // 5)":
            c["n_val"] = None
        mm = meta.get("resolved", {}).get("max_members_per_call")
        try:
            parts = tuple((tuple(ns), tuple(seeds), tag) for ns, seeds, tag in meta.get("parts") or ())
            spec = SweepSpec(**c, max_members_per_call=mm, parts=parts)
            config = spec.config()
            if "matmul_precision" not in meta["config"]:  # written before it was recorded (readable; resuming is refused)
                config.pop("matmul_precision")
            ok = hash_config(config) == meta.get("config_hash")
        except (TypeError, ValueError) as e:
            raise SweepInputError(f"meta.json's config is not one rbk can read ({e}); written by another rbk version?") from None
        if not ok:
            raise SweepInputError("meta.json's config does not reproduce its hash (edited, or written by another rbk version?)")
        return spec


def extension_parts(meta: dict, spec: SweepSpec) -> tuple | None:
    """The ``parts`` of ``spec`` run in a directory whose ``meta.json`` is ``meta``, ``None`` if it is no extension.

    ``spec`` extends the recorded sweep when its config differs only by extra values of ``ns``
    and/or ``seeds``. Every finished cell is kept: extension ``j`` adds the new N for every seed
    and the new seeds for the old N, its network calls tagged ``_ext<j>`` (their ids would
    otherwise clash with the original calls, which hold the old seeds).
    """
    old, new = meta.get("config", {}), spec.config()
    if old == new or any(old.get(k) != new.get(k) for k in set(old) | set(new) if k not in ("ns", "seeds")):
        return None
    if not (set(old.get("ns", ())) <= set(new["ns"]) and set(old.get("seeds", ())) <= set(new["seeds"])):
        return None
    parts = [tuple(p) for p in meta.get("parts") or [(old["ns"], old["seeds"], "")]]
    tag = f"_ext{len({p[2] for p in parts if p[2]}) + 1}"
    add_ns = [n for n in new["ns"] if n not in old["ns"]]
    add_seeds = [s for s in new["seeds"] if s not in old["seeds"]]
    if add_ns:
        parts.append((add_ns, list(new["seeds"]), tag))
    if add_seeds:
        parts.append((list(old["ns"]), add_seeds, tag))
    return tuple((tuple(ns), tuple(seeds), tag) for ns, seeds, tag in parts)


def _alpha(name: str, v) -> float:  # alpha = 0 has no threshold k alpha^2 (nothing to separate): refused in both
    if isinstance(v, (int, float)) and v == 0:
        raise ValueError(f"{name} must be in (0, 1): alpha = 0 would make the threshold k*alpha^2 zero")
    return check_real(name, v, lo=0.0, hi=1.0, lo_open=True, hi_open=True)


def make_spec(experiment: str, *, alphas: Sequence[float] | float = 0.3, betas: Sequence[float] | float = 1.0,
              **kw) -> SweepSpec:
    """Validated :class:`SweepSpec` from its fields' values (``learners``, ``ns`` and ``seeds``
    required); the instances are the grid ``alphas x betas``.

    Every bad value raises ``ValueError`` naming the parameter (and its command-line option)
    and the allowed range, before anything is computed: each field's own check, then those
    across fields.
    """
    from rbk.kernels import MAX_RIDGES

    if experiment not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {list(EXPERIMENTS)}, got {experiment!r}")
    missing = [f for f in ("learners", "ns", "seeds") if f not in kw]
    if missing:
        raise TypeError(f"make_spec() missing keyword argument(s) {missing}")
    v = validate(SweepSpec, kw, what=experiment, skip=("experiment", "instances", "parts"))
    d = v["d"]
    if d % 2:
        raise ValueError(f"d (--d, input dimension) must be an even integer >= 2, got {d}")
    v["k"] = check_int(f"k (--k, outputs) for d = {d}", v["k"], lo=1, hi=d // 2)
    v["g_degree"] = check_int(f"g_degree (--g-degree) for k = {v['k']}", v["g_degree"], lo=1, hi=v["k"])
    for name in v["learners"]:
        parse_learner(name)
    for n in v["ns"]:
        check_int(f"ns (--n, training-set sizes; at least the batch size {v['batch_size']})", n, lo=v["batch_size"])
    alphas = check_list("alpha (--alpha)", alphas, _alpha)
    betas = check_reals("beta (--beta)", betas, lo=0.0, lo_open=True)
    if experiment == "exp1" and (len(alphas) != 1 or len(betas) != 1):
        raise ValueError(f"exp1 takes one alpha (--alpha) and one beta (--beta), got {list(alphas)} and {list(betas)}")
    if v["decay_epoch"] is None:
        v["decay_epoch"] = v["epochs"] // 2
    v["decay_epoch"] = check_int("decay_epoch (--decay-epoch)", v["decay_epoch"], lo=0, hi=v["epochs"])
    if len(v["ridges"]) > MAX_RIDGES:
        raise ValueError(f"ridges (--kernel-ridges) must hold 1 to {MAX_RIDGES} values, got {len(v['ridges'])}")
    instances = tuple((a, b) for a in alphas for b in betas)
    return SweepSpec(experiment=experiment, instances=instances, **v)
