"""Experiment grids and the resumable results store.

The engine runs any :class:`Study` (a plug-in: its config, its cells and how one runs, the
columns of its rows): the driver :func:`run`, the :class:`Store` (atomic cells, lock, resume,
provenance) and ``rbk plot`` know nothing else. Experiments 3 and 4 (``rbk.experiments``)
are studies of their own; this module's :class:`SweepSpec` is the study of Experiments 1 and 2.

A :class:`SweepSpec` sweep is a grid of (learner x N x setting x seed) on one or more instances
``beta * F + alpha * G(F)`` of :func:`rbk.targets.paper_instance`:

* **network learners** (``2nn``, ``3nn``, ``3resnet``) are trained by :func:`rbk.train.train`:
  one compiled call per (learner, N, width) holds every (instance, seed) x learning rate x
  weight decay member (the instances and seeds ride on the trainer's data axis), split into
  chunks of at most ``max_members_per_call`` members when memory asks for it;
* **kernel learners** (``ntk-<arch>``, ``nngp-<arch>``: the exact infinite-width kernels of
  :mod:`rbk.kernels`, kernel ridge regression; ``rf-<arch>``: random features, the read-out
  of the drawn network at ``width`` fitted by ridge) get one call per (learner, N, instance,
  seed); each ridge of the grid is a setting.

Every seed ``s`` draws its data with ``rbk.data.make_dataset(rbk.data.seed_keys(s)[0], ...)``
for every learner, so networks and kernels see exactly the same train / validation / test
points (paired comparisons), and ``rf-<arch>`` uses the initialisation of the network that
seed trains.

Selection happens downstream (:func:`rbk.stats.select`): for each (learner, N, seed[,
instance]) the setting with the lowest validation error, its test error reported.

Results store (``out_dir``)
---------------------------
``meta.json``            config, its hash, versions, device, git revision, run history
``cells/<cell>.jsonl``   the rows of one finished cell (one compiled call), written to a temporary
                         file, fsynced and renamed: a cell file exists complete or not at all
``results.jsonl/.csv``   the tidy table: every finished cell's rows in plan order, regenerated
                         (temp file + rename) from the cell files after each cell
``.lock``                an ``flock`` held while a run writes (a second run on the same
                         directory is refused)

A cell whose file exists is skipped on a re-run, so a run killed at any instant (``kill -9``
included) resumes with no lost or duplicated rows: an unfinished cell leaves at most a
stray temporary file, removed on the next start. Re-using ``out_dir`` with a different
config is refused (:class:`ConfigMismatchError`), except a config that only adds values to
``ns`` or ``seeds``: it extends the sweep (:func:`extension_parts`), keeping every finished
cell and running only the new ones. Before anything is written, a run whose cells cannot fit
(:func:`memory_problems`), an ``out_dir`` that is a file or cannot be created, and a damaged
``meta.json`` are refused (:class:`SweepInputError`, naming the option that fixes it).

Multi-process (``jax.distributed``): every process runs the same command; cell ``i`` of the
plan is run by process ``i % process_count`` on its own local devices and written to its
cell file (``out_dir`` must be on a filesystem all processes share); only process 0 writes
``meta.json`` and the combined tables, after waiting for every cell file. See
``docs/devices.md``.

Row schema: :data:`ROW_FIELDS` (those of :mod:`rbk.stats`) then :data:`EXTRA_FIELDS`.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import hashlib
import io
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from rbk._checks import check_choice, check_int, check_real, gib, host_memory_bytes
from rbk.models import ARCHS

SCHEMA_VERSION = 1

ROW_FIELDS = (
    "experiment", "learner", "arch", "kind", "n", "seed", "width", "epochs", "lr", "wd", "ridge",
    "alpha", "beta", "d", "k", "g_degree", "train_error", "val_error", "test_error", "diverged",
    "call_wall_s", "cell",
)  # fmt: skip
#: Extra columns: absolute ridge (``ridge`` is relative to the kernel's scale), the cell's compile
#: and run seconds, members of the call, the process that ran it; for exact kernels the solver
#: (``dense`` or ``cg``, :func:`rbk.kernels.choose_solver`) and, for ``cg``, that ridge's iterations
#: and final relative residual.
EXTRA_FIELDS = ("ridge_abs", "compile_s", "run_s", "members", "process", "solver", "iterations", "residual")
ALL_FIELDS = ROW_FIELDS + EXTRA_FIELDS

NET_KIND = "net"
KERNEL_KINDS = ("ntk", "nngp", "rf")
EXPERIMENTS = ("exp1", "exp2")
LEARNERS = ARCHS + tuple(f"{kind}-{arch}" for kind in KERNEL_KINDS for arch in ARCHS)

#: Rows per streamed kernel block in the sweep's kernel fits: on a 2-core CPU 512 is ~1.4-1.9x
#: faster than rbk.kernels' default 2048 (cache-resident blocks); the numbers do not depend on it.
KERNEL_BLOCK = 512

#: Share of a device's memory the automatic member chunking plans to use.
MEMORY_FRACTION = 0.4


class SweepInputError(ValueError):
    """A sweep refused before computing anything (bad ``out_dir``, memory, unreadable ``meta.json``)."""


class ConfigMismatchError(SweepInputError):
    """``out_dir`` holds results of a different config."""


class StoreLockedError(RuntimeError):
    """Another run holds ``out_dir``'s lock."""


# --------------------------------------------------------------------------------------------
# learners
# --------------------------------------------------------------------------------------------


#: The columns every study's rows carry (:class:`Study`); a study appends its own.
CORE_FIELDS = ("experiment", "learner", "kind", "n", "seed", "train_error", "val_error", "test_error", "diverged",
               "call_wall_s", "cell")  # fmt: skip


class Study:
    """A sweep the engine can run: the plug-in protocol of :func:`run`, :class:`Store` and ``rbk plot``.

    An experiment is a frozen dataclass subclassing ``Study`` with a field ``experiment`` (its
    name) and these methods; the engine (driver, store, resume, lock, provenance, multi-process
    split) knows nothing else about it. :class:`SweepSpec` (the concept class of Allen-Zhu & Li,
    Experiments 1 and 2) is one; ``rbk.experiments.exp3``/``exp4`` define others.

    * ``config()``: the JSON dict that defines the results (hashed; holds ``experiment``);
      ``from_config(config, resolved)`` rebuilds the study from it (``meta.json`` records the
      class as ``module:qualname``, :meth:`study_path`, so ``rbk plot`` and resume find it);
    * ``plan()``: the cells in run order, objects with ``id`` (unique, a file name), ``learner``
      and ``kind``; ``run_cell(cell, devices, progress)`` computes one and returns its rows,
      dicts with :data:`CORE_FIELDS` and the study's own columns (``row_fields``; a non-finite
      error is a row with ``diverged`` true, never an exception);
    * optional: ``memory_problems`` (refuse up front what cannot fit), ``format_plan`` (the dry
      run), ``member_epochs`` (the inner progress bar), ``resolve`` (machine-dependent values
      fixed at the first run, and extensions of a finished sweep) and ``extends``.
    """

    row_fields: tuple[str, ...] = CORE_FIELDS

    def config(self) -> dict:
        raise NotImplementedError

    def config_hash(self) -> str:
        return _hash(self.config())

    def plan(self) -> list:
        raise NotImplementedError

    def run_cell(self, cell, devices=None, progress=None) -> list[dict]:
        raise NotImplementedError

    def memory_problems(self, cells, memory_bytes: int | None, n_devices: int = 1,
                        host_bytes: int | None = None) -> list[str]:  # fmt: skip
        """Why ``cells`` would not fit (one message per problem, naming the option that fixes it)."""
        return []

    def member_epochs(self, cell) -> int | None:
        """Units of the inner progress bar of ``cell`` (``None``: no inner bar)."""
        return None

    def format_plan(self, cells, done: Iterable[str] = ()) -> str:
        """The dry run: the config and one line per cell."""
        done = set(done)
        lines = [f"experiment {self.experiment}: config hash {self.config_hash()}"]
        lines += [f"  {k}: {v}" for k, v in self.config().items() if k != "experiment"]
        lines += ["", f"cells: {len(cells)}" + (f"; {len(done & {c.id for c in cells})} already finished" if done else "")]
        lines += [f"  {c.id}" + ("  [done]" if c.id in done else "") for c in cells]
        return "\n".join(lines)

    def resolve(self, meta: dict | None, memory_bytes: int | None = None) -> tuple:
        """``(study, resolved, extension)`` for a run into a directory whose ``meta.json`` is ``meta``:
        the study to run, the machine-dependent values to record (``meta['resolved']``) and the
        ``meta.json`` fields of an extension of a finished sweep (``None``: not an extension)."""
        return self, {}, None

    def extends(self, meta: dict) -> bool:
        """Whether this study extends the (different) one recorded in ``meta``, keeping its cells."""
        return False

    @classmethod
    def from_config(cls, config: dict, resolved: dict | None = None) -> "Study":
        raise NotImplementedError

    @classmethod
    def study_path(cls) -> str:
        return f"{cls.__module__}:{cls.__qualname__}"


def parse_learner(name: str) -> tuple[str, str]:
    """``'3resnet' -> ('net', '3resnet')``, ``'ntk-2nn' -> ('ntk', '2nn')``."""
    if not isinstance(name, str) or name not in LEARNERS:
        raise ValueError(f"learners (--learners) must be among {list(LEARNERS)}, got {name!r}")
    if "-" in name:
        kind, arch = name.split("-", 1)
        return kind, arch
    return NET_KIND, name


# --------------------------------------------------------------------------------------------
# the config
# --------------------------------------------------------------------------------------------


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
    learners: tuple[str, ...]
    ns: tuple[int, ...]
    seeds: tuple[int, ...]
    instances: tuple[tuple[float, float], ...]
    d: int = 30
    k: int = 15
    g_degree: int = 4
    widths: tuple[int, ...] = (256,)
    epochs: int = 60
    decay_epoch: int | None = None
    batch_size: int = 50
    lrs: tuple[float, ...] = (0.02,)
    wds: tuple[float, ...] = (1e-3,)
    ridges: tuple[float, ...] = (1e-3, 1e-1)
    n_val: int | None = None
    n_test: int = 10000
    distribution: str = "cube"
    noise: float = 0.0
    kernel_max_n: int | None = None
    W_std: float = math.sqrt(2.0)
    b_std: float = 0.1
    max_members_per_call: int | None = None
    matmul_precision: str = "highest"
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

    def config_hash(self) -> str:
        return _hash(self.config())

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
    row_fields = ALL_FIELDS

    def plan(self, max_members_per_call: int | None = None) -> list["Cell"]:
        return plan(self, max_members_per_call)

    def run_cell(self, cell, devices=None, progress=None) -> list[dict]:
        if cell.kind == NET_KIND:
            return run_net_cell(self, cell, devices, progress)
        return run_kernel_cell(self, cell)

    def memory_problems(self, cells, memory_bytes, n_devices=1, host_bytes=None) -> list[str]:
        return memory_problems(self, cells, memory_bytes, n_devices, host_bytes)

    def member_epochs(self, cell) -> int | None:
        return cell.members * self.epochs if cell.kind == NET_KIND else None

    def format_plan(self, cells, done=(), **kw) -> str:
        return format_plan(self, cells, done=done, **kw)

    def extends(self, meta: dict) -> bool:
        return extension_parts(meta, self) is not None

    def resolve(self, meta: dict | None, memory_bytes: int | None = None) -> tuple:
        """Member chunking (the value stored at the first run wins on a resume: automatic chunking
        depends on the machine) and the layout of an extension (extra ``ns``/``seeds``)."""
        spec = self
        stored_mm = (meta or {}).get("resolved", {}).get("max_members_per_call")
        same = meta is not None and meta.get("config_hash") == spec.config_hash()
        extend = None if meta is None or same else extension_parts(meta, spec)
        if same and meta.get("parts"):
            spec = dataclasses.replace(spec, parts=spec_from_meta(meta).parts)
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
    def from_config(cls, config: dict, resolved: dict | None = None) -> "SweepSpec":
        return spec_from_meta({"config": config, "resolved": resolved or {}, "config_hash": _hash(config)})


def _hash(config: dict) -> str:
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _unique_list(name: str, values, conv) -> tuple:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        values = [values]
    out = tuple(conv(v) for v in values)
    if not out:
        raise ValueError(f"{name} must not be empty")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat a value, got {list(out)}")
    return out


def make_spec(
    experiment: str,
    *,
    learners: Sequence[str],
    ns: Sequence[int],
    seeds: Sequence[int],
    alphas: Sequence[float] | float = 0.3,
    betas: Sequence[float] | float = 1.0,
    d: int = 30,
    k: int = 15,
    g_degree: int = 4,
    widths: Sequence[int] | int = (256,),
    epochs: int = 60,
    decay_epoch: int | None = None,
    batch_size: int = 50,
    lrs: Sequence[float] = (0.02,),
    wds: Sequence[float] = (1e-3,),
    ridges: Sequence[float] = (1e-3, 1e-1),
    n_val: int | None = None,
    n_test: int = 10000,
    distribution: str = "cube",
    noise: float = 0.0,
    kernel_max_n: int | None = None,
    W_std: float = math.sqrt(2.0),
    b_std: float = 0.1,
    max_members_per_call: int | None = None,
    matmul_precision: str = "highest",
) -> SweepSpec:
    """Validated :class:`SweepSpec`; the instances are the grid ``alphas x betas``.

    Every bad value raises ``ValueError`` naming the parameter (and its command-line option)
    and the allowed range, before anything is computed.
    """
    from rbk.data import DISTRIBUTIONS
    from rbk.kernels import MAX_RIDGES

    if experiment not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {list(EXPERIMENTS)}, got {experiment!r}")
    d = check_int("d (--d, input dimension)", d, lo=2)
    if d % 2:
        raise ValueError(f"d (--d, input dimension) must be an even integer >= 2, got {d}")
    k = check_int(f"k (--k, outputs) for d = {d}", k, lo=1, hi=d // 2)
    g_degree = check_int(f"g_degree (--g-degree) for k = {k}", g_degree, lo=1, hi=k)
    batch_size = check_int("batch_size", batch_size, lo=1)
    learners = _unique_list("learners (--learners)", learners, lambda v: v)
    for name in learners:
        parse_learner(name)
    ns = _unique_list("n (--n, training-set sizes)", ns, lambda v: v)
    ns = tuple(
        check_int(f"n (--n, training-set sizes; at least the batch size {batch_size})", v, lo=batch_size)
        for v in ns
    )
    if not isinstance(seeds, Iterable) or isinstance(seeds, (str, bytes)):
        raise ValueError(f"seeds must be a sequence of seed numbers >= 0 (e.g. range(3)), got {seeds!r}")
    seeds = _unique_list("seeds (--seeds)", seeds, lambda v: check_int("seeds (--seeds)", v, lo=0))
    def alpha_ok(v):  # alpha = 0 has no threshold k alpha^2 (nothing to separate): refused in both experiments
        if isinstance(v, (int, float)) and v == 0:
            raise ValueError("alpha (--alpha) must be in (0, 1): alpha = 0 would make the threshold k*alpha^2 zero")
        return check_real("alpha (--alpha)", v, lo=0.0, hi=1.0, lo_open=True, hi_open=True)

    alphas = _unique_list("alpha (--alpha)", alphas, alpha_ok)
    betas = _unique_list("beta (--beta)", betas, lambda v: check_real("beta (--beta)", v, lo=0.0, lo_open=True))
    if experiment == "exp1" and (len(alphas) != 1 or len(betas) != 1):
        raise ValueError(f"exp1 takes one alpha (--alpha) and one beta (--beta), got {list(alphas)} and {list(betas)}")
    widths = _unique_list("width (--width)", widths, lambda v: check_int("width (--width)", v, lo=1))
    epochs = check_int("epochs (--epochs)", epochs, lo=1)
    if decay_epoch is None:
        decay_epoch = epochs // 2
    decay_epoch = check_int("decay_epoch (--decay-epoch)", decay_epoch, lo=0, hi=epochs)
    lrs = _unique_list("lr (--lr)", lrs, lambda v: check_real("lr (--lr, learning rates)", v, lo=0.0, lo_open=True))
    wds = _unique_list("wd (--wd)", wds, lambda v: check_real("wd (--wd, weight decays)", v, lo=0.0))
    ridges = _unique_list("ridges (--ridges)", ridges, lambda v: check_real("ridges (--ridges)", v, lo=0.0))
    if len(ridges) > MAX_RIDGES:
        raise ValueError(f"ridges (--ridges) must hold 1 to {MAX_RIDGES} values, got {len(ridges)}")
    if n_val is not None:
        n_val = check_int("n_val (--n-val)", n_val, lo=1)
    n_test = check_int("n_test (--n-test)", n_test, lo=1)
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {list(DISTRIBUTIONS)}, got {distribution!r}")
    noise = check_real("noise", noise, lo=0.0)
    if kernel_max_n is not None:
        kernel_max_n = check_int("kernel_max_n (--kernel-max-n)", kernel_max_n, lo=1)
    W_std = check_real("W_std", W_std, lo=0.0, lo_open=True)
    b_std = check_real("b_std", b_std, lo=0.0)
    if max_members_per_call is not None:
        max_members_per_call = check_int("max_members_per_call (--max-members-per-call)", max_members_per_call, lo=1)
    from rbk.train import MATMUL_PRECISIONS

    matmul_precision = MATMUL_PRECISIONS[check_choice("matmul_precision (--matmul-precision)", matmul_precision,
                                                      MATMUL_PRECISIONS)]  # fmt: skip
    instances = tuple((a, b) for a in alphas for b in betas)
    return SweepSpec(
        experiment, learners, ns, seeds, instances, d, k, g_degree, widths, epochs, decay_epoch, batch_size,
        lrs, wds, ridges, n_val, n_test, distribution, noise, kernel_max_n, W_std, b_std, max_members_per_call,
        matmul_precision,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# the plan
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Cell:
    """One call: a network training call, or one kernel / random-feature fit.

    ``slots`` are the ``(alpha, beta, seed)`` data sets of the call (networks: all of them
    ride on the trainer's data axis; kernels: exactly one); ``lrs``/``wds`` the network
    settings of the call (the full product is trained).
    """

    id: str
    learner: str
    kind: str
    arch: str
    n: int
    width: int | None
    slots: tuple[tuple[float, float, int], ...]
    lrs: tuple[float, ...] = ()
    wds: tuple[float, ...] = ()

    @property
    def members(self) -> int:
        return len(self.slots) * max(1, len(self.lrs)) * max(1, len(self.wds))


def _fmt(v: float) -> str:
    return f"{v:g}"


def _chunks(seq: Sequence, size: int) -> list[tuple]:
    """``seq`` split into ``ceil(len / size)`` near-equal consecutive groups (fewer distinct shapes)."""
    parts = math.ceil(len(seq) / size)
    bounds = np.linspace(0, len(seq), parts + 1).round().astype(int)
    return [tuple(seq[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def _split_members(slots, lrs, wds, max_members: int | None):
    """Groups ``(slots, lrs, wds)`` each with at most ``max_members`` members (slots split first)."""
    if max_members is None or len(slots) * len(lrs) * len(wds) <= max_members:
        return [(tuple(slots), tuple(lrs), tuple(wds))]
    lw = len(lrs) * len(wds)
    if lw <= max_members:
        return [(s, tuple(lrs), tuple(wds)) for s in _chunks(slots, max_members // lw)]
    if len(wds) <= max_members:
        return [((s,), lg, tuple(wds)) for s in slots for lg in _chunks(lrs, max_members // len(wds))]
    return [((s,), (lr,), wg) for s in slots for lr in lrs for wg in _chunks(wds, max_members)]


def plan(spec: SweepSpec, max_members_per_call: int | None = None) -> list[Cell]:
    """The cells of a sweep, in run order: by N, then learner (networks first), then the rest.

    ``max_members_per_call`` (default ``spec.max_members_per_call``; ``None``: no chunking)
    splits a network call's members.
    """
    mm = spec.max_members_per_call if max_members_per_call is None else max_members_per_call
    if spec.parts:  # an extended sweep: the original cells keep their ids, each extension's network calls are tagged
        cells = []
        for ns, seeds, tag in spec.parts:
            sub = dataclasses.replace(spec, ns=tuple(ns), seeds=tuple(seeds), parts=())
            cells += [dataclasses.replace(c, id=c.id + tag) if c.kind == NET_KIND else c for c in plan(sub, mm)]
        assert len({c.id for c in cells}) == len(cells), "cell ids must be unique"
        return cells
    exp2 = spec.experiment == "exp2"
    cells: list[Cell] = []
    for n in spec.ns:
        for learner in spec.learners:
            kind, arch = parse_learner(learner)
            if kind != NET_KIND:
                continue
            slots = [(a, b, s) for (a, b) in spec.instances for s in spec.seeds]
            for width in spec.widths:
                base = f"{learner}_n{n}_w{width}"
                if not exp2:
                    a, b = spec.instances[0]
                    base += f"_a{_fmt(a)}_b{_fmt(b)}"
                groups = _split_members(slots, spec.lrs, spec.wds, mm)
                for j, (sl, lg, wg) in enumerate(groups):
                    cid = base if len(groups) == 1 else f"{base}_part{j + 1}of{len(groups)}"
                    cells.append(Cell(cid, learner, kind, arch, n, width, sl, lg, wg))
        for learner in spec.learners:
            kind, arch = parse_learner(learner)
            if kind == NET_KIND or (spec.kernel_max_n is not None and n > spec.kernel_max_n and kind != "rf"):
                continue
            widths = spec.widths if kind == "rf" else (None,)
            for width in widths:
                for a, b in spec.instances:
                    for s in spec.seeds:
                        cid = f"{learner}_n{n}" + (f"_w{width}" if width else "") + f"_a{_fmt(a)}_b{_fmt(b)}_s{s}"
                        cells.append(Cell(cid, learner, kind, arch, n, width, ((a, b, s),)))
    ids = [c.id for c in cells]
    assert len(set(ids)) == len(ids), "cell ids must be unique"
    return cells


# --------------------------------------------------------------------------------------------
# memory and cost estimates
# --------------------------------------------------------------------------------------------


def member_bytes(spec: SweepSpec, arch: str, width: int, n: int) -> int:
    """Estimated device bytes of one network member of a call (float32), conservatively.

    ``5 P`` for parameters, momentum, gradient, update and a temporary (``P`` parameters);
    the step's activations (``batch x width x 8``); the chunked evaluation (``eval_chunk x
    width x 4``: hidden layers and output of a 4096-point chunk); and a private copy of the
    member's data set (``(n + n_val + n_test) x (d + k)``), which XLA may materialise when it
    gathers a member's seed out of the stacked data.
    """
    from rbk.models import get_model, param_count

    p = param_count(get_model(arch, width, spec.d, spec.k))
    cfg = spec.train_config()
    floats = 5 * p + spec.batch_size * width * 8 + min(cfg.eval_chunk, max(n, spec.n_test)) * (width * 4 + spec.k)
    floats += (n + spec.n_val_of(n) + spec.n_test) * (spec.d + spec.k)
    return 4 * int(floats)


def device_memory_bytes() -> tuple[int | None, str]:
    """Memory of one local device: ``bytes_limit`` of accelerators, total RAM for the CPU."""
    import jax

    dev = jax.local_devices()[0]
    try:
        st = dev.memory_stats() or {}
        if st.get("bytes_limit"):
            return int(st["bytes_limit"]), f"{dev.device_kind} bytes_limit"
    except Exception:  # noqa: BLE001 - CPU devices may not implement memory_stats
        pass
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return int(total) // max(1, jax.local_device_count()), "host RAM / local devices"
    except (ValueError, OSError, AttributeError):
        return None, "unknown"


def resolve_max_members(spec: SweepSpec, memory_bytes: int | None = None, n_devices: int | None = None) -> int | None:
    """``spec.max_members_per_call`` or, if ``None``, what fits in :data:`MEMORY_FRACTION` of a device.

    The largest network call of the spec sets the limit: ``n_devices x floor(fraction x memory
    / member_bytes)`` (the members are sharded over the local devices).
    """
    if spec.max_members_per_call is not None:
        return spec.max_members_per_call
    nets = [parse_learner(lr)[1] for lr in spec.learners if parse_learner(lr)[0] == NET_KIND]
    if not nets:
        return None
    if memory_bytes is None or n_devices is None:
        import jax

        mem, _ = device_memory_bytes()
        memory_bytes = mem if memory_bytes is None else memory_bytes
        n_devices = jax.local_device_count() if n_devices is None else n_devices
    if memory_bytes is None:
        return None
    worst = max(member_bytes(spec, a, w, n) for a in nets for w in spec.widths for n in spec.ns)
    return max(1, int(MEMORY_FRACTION * memory_bytes) // worst) * n_devices


def cell_flops(spec: SweepSpec, cell: Cell) -> float:
    """Rough FLOPs of a cell: network training (``rbk.train.total_flops``) plus evaluation; for
    kernels the Gram entries (~60 flops each) and one Cholesky per ridge (``n^3 / 3``)."""
    n = cell.n
    if cell.kind == NET_KIND:
        from rbk import train
        from rbk.models import flops_per_example, get_model

        model = get_model(cell.arch, cell.width, spec.d, spec.k)
        cfg = spec.train_config()
        fl = train.total_flops(model, n, cfg, cell.members)
        fl += flops_per_example(model) / 3 * (n + spec.n_val_of(n) + spec.n_test) * len(cfg.record_epochs) * cell.members
        return float(fl)
    n_eval = n + spec.n_val_of(n) + spec.n_test
    if cell.kind == "rf":
        m = cell.width
        feats = 2 * n_eval * m * (spec.d + (m if cell.arch != "2nn" else 0))
        solve = len(spec.ridges) * (min(n, m) ** 3 / 3 + 2 * n * m * min(n, m))
        return float(feats + solve + 2 * n_eval * m * spec.k * len(spec.ridges))
    gram = 60.0 * n * n_eval + 2.0 * n * n_eval * spec.k * len(spec.ridges)
    from rbk import kernels

    if kernels.choose_solver(n) == "cg":  # ~30 float32 passes over K plus two float64 ones
        return float(gram + 32 * 2.0 * n * n * spec.k * len(spec.ridges))
    return float(gram + len(spec.ridges) * n**3 / 3)


def kernel_cell_bytes(n: int) -> int:
    """Host bytes of the sweep's exact-kernel fit at ``n`` (:func:`rbk.kernels.fit_bytes`, the one
    estimate), with the solver ``solver='auto'`` picks (:func:`rbk.kernels.choose_solver`)."""
    from rbk.kernels import choose_solver, fit_bytes

    return fit_bytes(n, KERNEL_BLOCK, solver=choose_solver(n))


def memory_problems(spec: SweepSpec, cells: Sequence[Cell], memory_bytes: int | None, n_devices: int = 1,
                    host_bytes: int | None = None) -> list[str]:
    """Why ``cells`` would not fit: one message per problem, with the estimate and the option that fixes it.

    A network call puts on each device (``memory_bytes`` each; ``None``: unchecked) the stacked
    data sets of its slots (replicated) and ``member_bytes x ceil(members / devices)``; an
    exact-kernel fit needs :func:`kernel_cell_bytes` of host RAM (``host_bytes``). Random-feature
    fits are small and not checked.
    """
    out = []

    def data_bytes(n):  # one (instance, seed) data set, float32
        return 4 * (n + spec.n_val_of(n) + spec.n_test) * (spec.d + spec.k)

    def call_bytes(c):
        per_dev = math.ceil(c.members / min(n_devices, c.members))
        return len(c.slots) * data_bytes(c.n) + per_dev * member_bytes(spec, c.arch, c.width, c.n)

    net = [c for c in cells if c.kind == NET_KIND]
    if net and memory_bytes:
        worst = max(net, key=call_bytes)
        one = data_bytes(worst.n) + member_bytes(spec, worst.arch, worst.width, worst.n)
        if one > memory_bytes:
            out.append(f"one {worst.arch} member (width {worst.width}, N = {worst.n}, plus {spec.n_val_of(worst.n)} "
                       f"validation and {spec.n_test} test points) needs about {gib(one)} but a device has "
                       f"{gib(memory_bytes)}: use a smaller --n, --width or --n-test (or --device-memory-gb if the "
                       "detected memory is wrong)")
        elif call_bytes(worst) > memory_bytes:
            fit = max(1, memory_bytes // one) * n_devices
            out.append(f"a call of {worst.members} {worst.arch} members (width {worst.width}, N = {worst.n}) needs "
                       f"about {gib(call_bytes(worst))} per device but a device has {gib(memory_bytes)}: use "
                       f"--max-members-per-call {fit} or less (or leave it out: chosen to fit)")
    exact = [c.n for c in cells if c.kind in ("ntk", "nngp")]
    if exact and host_bytes and kernel_cell_bytes(max(exact)) > host_bytes:
        ok = [n for n in spec.ns if kernel_cell_bytes(n) <= host_bytes]
        fix = (f"use --kernel-max-n {max(ok)} (exact kernels only up to that N)" if ok
               else "leave the exact kernels (ntk-*, nngp-*) out of --learners")
        out.append(f"the exact kernel fit at N = {max(exact)} needs about {gib(kernel_cell_bytes(max(exact)))} of "
                   f"host RAM (float64 Gram matrices) but this machine has {gib(host_bytes)}: {fix}")
    return out


def format_plan(spec: SweepSpec, cells: Sequence[Cell], *, memory_bytes: int | None = None,
                memory_source: str = "", n_devices: int = 1, done: Iterable[str] = ()) -> str:
    """Human-readable plan: cells, compiled calls, members, memory and FLOP estimates."""
    done = set(done)
    net = [c for c in cells if c.kind == NET_KIND]
    ker = [c for c in cells if c.kind != NET_KIND]
    lines = [
        f"experiment {spec.experiment}: d={spec.d}, k={spec.k}, g_degree={spec.g_degree}, "
        f"(alpha, beta) in {[tuple(p) for p in spec.instances]}",
        f"learners: {', '.join(spec.learners)}",
        f"N: {', '.join(map(str, spec.ns))}; seeds: {len(spec.seeds)} ({', '.join(map(str, spec.seeds))})",
        f"networks: width {', '.join(map(str, spec.widths))}, {spec.epochs} epochs (lr/10 at "
        f"{spec.config()['decay_epoch']}), batch {spec.batch_size}, lr x wd = {len(spec.lrs)} x {len(spec.wds)} "
        f"settings (lr {', '.join(map(_fmt, spec.lrs))}; wd {', '.join(map(_fmt, spec.wds))})",
        f"kernels: relative ridges {', '.join(map(_fmt, spec.ridges))}"
        + (f"; exact kernels only up to N = {spec.kernel_max_n}" if spec.kernel_max_n else ""),
        f"config hash {spec.config_hash()}",
        "",
        f"cells: {len(cells)} ({len(net)} compiled network calls, {len(ker)} kernel / random-feature fits)"
        + (f"; {len(done & {c.id for c in cells})} already finished" if done else ""),
    ]
    if net:
        shapes = {(c.arch, c.width, c.n, c.members) for c in net}
        lines.append(
            f"network calls: {len(shapes)} distinct compiled shapes; members per call "
            f"{min(c.members for c in net)}..{max(c.members for c in net)}; "
            f"max members per call: {spec.max_members_per_call or 'no limit'}"
        )
        worst = max(net, key=lambda c: member_bytes(spec, c.arch, c.width, c.n) * c.members)
        mb = member_bytes(spec, worst.arch, worst.width, worst.n)
        per_dev = mb * math.ceil(worst.members / n_devices)
        mem_txt = f"{memory_bytes / 2**30:.1f} GiB per device ({memory_source})" if memory_bytes else "unknown"
        lines.append(
            f"memory estimate: {mb / 2**20:.1f} MiB per member ({worst.arch}, width {worst.width}, N={worst.n}); "
            f"largest call {worst.members} members = {per_dev / 2**30:.2f} GiB on each of {n_devices} device(s); "
            f"device memory {mem_txt}"
        )
    if ker:
        nmax = max(c.n for c in ker if c.kind != "rf") if any(c.kind != "rf" for c in ker) else None
        if nmax:
            lines.append(f"kernel fits: largest N = {nmax} needs ~{kernel_cell_bytes(nmax) / 2**30:.1f} GiB host RAM (float64)")
    fl_net = sum(cell_flops(spec, c) for c in net)
    fl_ker = sum(cell_flops(spec, c) for c in ker)
    lines.append(f"FLOPs: networks {fl_net:.3g} (training + evaluation), kernels {fl_ker:.3g}, total {fl_net + fl_ker:.3g}")
    for tf in (1e11, 1e13):
        lines.append(f"  at {tf:.0e} FLOP/s sustained: {(fl_net + fl_ker) / tf / 3600:.3g} h")
    lines.append("")
    if len(cells) <= 40:
        lines.append("cells (id: members, estimated FLOPs):")
        for c in cells:
            mark = "  [done]" if c.id in done else ""
            lines.append(f"  {c.id}: {c.members} member(s), {cell_flops(spec, c):.3g} FLOPs{mark}")
    else:
        lines.append("cells per (learner, N): count, members, estimated FLOPs:")
        groups: dict[tuple, list[Cell]] = {}
        for c in cells:
            groups.setdefault((c.learner, c.n), []).append(c)
        for (learner, n), cs in groups.items():
            nd = sum(c.id in done for c in cs)
            mark = f"  [{nd} done]" if nd else ""
            lines.append(f"  {learner:>13s} N={n:<6d} {len(cs):3d} cell(s), {sum(c.members for c in cs):5d} member(s), "
                         f"{sum(cell_flops(spec, c) for c in cs):.3g} FLOPs{mark}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# environment description
# --------------------------------------------------------------------------------------------


def _version(pkg: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(pkg)
    except Exception:  # noqa: BLE001
        return None


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("rbk", "jax", "jaxlib", "optax", "numpy", "scipy", "matplotlib"):
        out[pkg] = _version(pkg)
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info() -> dict:
    import jax

    devs = jax.devices()
    return {
        "platform": jax.default_backend(),
        "devices": [str(d) for d in devs],
        "device_kind": devs[0].device_kind if devs else None,
        "device_count": len(devs),
        "local_device_count": jax.local_device_count(),
        "process_count": jax.process_count(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "hostname": socket.gethostname(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def git_info(path: str | os.PathLike | None = None) -> dict:
    """``{'revision', 'dirty'}`` of the git checkout holding rbk's source (``None`` outside one)."""
    path = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return {"revision": None, "dirty": None}
        st = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                            capture_output=True, text=True, timeout=30)  # fmt: skip
        dirty = bool(st.stdout.strip()) if st.returncode == 0 else None
        return {"revision": rev.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"revision": None, "dirty": None}


# --------------------------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------------------------


def _clean(v):
    """JSON-ready value: numpy scalars made Python, non-finite floats ``None``."""
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    return v


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory, fsync and rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _csv_value(field: str, v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


class Store:
    """The results directory of one sweep (see the module docstring)."""

    def __init__(self, out_dir, spec: Study, cells: Sequence, *, process_index: int = 0):
        self.dir = Path(out_dir)
        self.spec = spec
        self.cells = list(cells)
        self.cells_dir = self.dir / "cells"
        self.process_index = process_index
        self._lock_fh = None

    # -- locking -------------------------------------------------------------------------
    def lock(self) -> None:
        import fcntl

        self.cells_dir.mkdir(parents=True, exist_ok=True)
        name = ".lock" if self.process_index == 0 else f".lock.p{self.process_index}"
        fh = open(self.dir / name, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise StoreLockedError(
                f"another rbk run is writing to {self.dir} (lock {self.dir / name} is held); "
                "wait for it to finish or use another --out"
            ) from None
        self._lock_fh = fh

    def unlock(self) -> None:
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    def clean_tmp(self) -> None:
        """Remove temporary files left by killed runs of this host (only under the lock)."""
        host = socket.gethostname()
        for folder in (self.dir, self.cells_dir):
            for p in folder.glob(f".*.{host}.*.tmp"):
                with contextlib.suppress(OSError):
                    p.unlink()

    # -- meta ------------------------------------------------------------------------------
    @property
    def meta_path(self) -> Path:
        return self.dir / "meta.json"

    def read_meta(self) -> dict | None:
        return load_meta_file(self.meta_path)

    def check_config(self, meta: dict | None) -> None:
        if meta is None:
            stray = [p.name for p in self.cells_dir.glob("*.jsonl")] if self.cells_dir.exists() else []
            if stray:
                raise ConfigMismatchError(
                    f"{self.dir} holds cell files but no meta.json; refusing to mix results "
                    "(use another --out or remove the directory)"
                )
            return
        old = meta.get("config", {})
        if old.get("experiment") != self.spec.experiment:
            raise ConfigMismatchError(
                f"--out {self.dir} holds results of {old.get('experiment')}, not {self.spec.experiment}: run "
                f"`rbk {old.get('experiment')}` there (or `rbk plot --out {self.dir}`), or use another --out"
            )
        if meta.get("config_hash") != self.spec.config_hash() and not self.spec.extends(meta):
            new = self.spec.config()
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            detail = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:8])
            raise ConfigMismatchError(
                f"{self.dir} holds results of a different config (hash {meta.get('config_hash')} vs "
                f"{self.spec.config_hash()}; differs in {detail or 'schema'}). Use another --out for this "
                "config, or the original options to resume (only extra --n or --seeds values extend a sweep)."
            )

    def write_meta(self, meta: dict) -> None:
        atomic_write(self.meta_path, json.dumps(meta, indent=2, default=str) + "\n")

    # -- cells -----------------------------------------------------------------------------
    def cell_path(self, cell_id: str) -> Path:
        return self.cells_dir / f"{cell_id}.jsonl"

    def read_cell(self, cell_id: str) -> list[dict] | None:
        """The rows of a finished cell, ``None`` if it is missing or incomplete."""
        p = self.cell_path(cell_id)
        try:
            lines = p.read_text().splitlines()
        except OSError:
            return None
        try:
            recs = [json.loads(line) for line in lines if line.strip()]
        except json.JSONDecodeError:
            return None
        if not recs or recs[-1].get("_complete") != cell_id or recs[-1].get("rows") != len(recs) - 1:
            return None
        return recs[:-1]

    def done(self) -> set[str]:
        return {c.id for c in self.cells if self.read_cell(c.id) is not None}

    def write_cell(self, cell_id: str, rows: Sequence[dict]) -> None:
        out = io.StringIO()
        for r in rows:
            out.write(json.dumps({k: _clean(r.get(k)) for k in self.spec.row_fields}, allow_nan=False) + "\n")
        out.write(json.dumps({"_complete": cell_id, "rows": len(rows)}) + "\n")
        atomic_write(self.cell_path(cell_id), out.getvalue())

    def rows(self) -> list[dict]:
        """Every finished cell's rows, in plan order."""
        out = []
        for c in self.cells:
            r = self.read_cell(c.id)
            if r is not None:
                out.extend(r)
        return out

    def rebuild(self) -> list[dict]:
        """Regenerate ``results.jsonl`` and ``results.csv`` from the cell files."""
        rows = self.rows()
        jl = "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows)
        atomic_write(self.dir / "results.jsonl", jl)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        fields = self.spec.row_fields
        w.writerow(fields)
        for r in rows:
            w.writerow([_csv_value(f, r.get(f)) for f in fields])
        atomic_write(self.dir / "results.csv", buf.getvalue())
        return rows


def load_meta_file(path) -> dict | None:
    """A ``meta.json`` as a dict, ``None`` if absent; :class:`SweepInputError` if empty, truncated or corrupt.

    Nothing is changed on disk: a damaged ``meta.json`` is never overwritten by a run.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise SweepInputError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    why = "empty"
    meta = None
    if text.strip():
        try:
            meta = json.loads(text)
            why = "not an rbk meta.json (no config and config_hash)"
        except json.JSONDecodeError as e:
            why = f"not valid JSON ({e.msg} at line {e.lineno}: truncated or corrupt)"
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or "config_hash" not in meta:
        raise SweepInputError(f"{path} is {why}; nothing was changed: restore it from a backup, or use another "
                              "--out (the cell files in cells/ are the results)")
    return meta


def check_out_dir(out_dir) -> Path:
    """``out_dir`` must be a directory, or creatable as one, and writable (:class:`SweepInputError` naming ``--out``)."""
    p = Path(out_dir)
    if p.exists() and not p.is_dir():
        raise SweepInputError(f"--out {p} is an existing file; give a directory (a new one, or an rbk results directory)")
    parent = p
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise SweepInputError(f"--out {p} cannot be created: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SweepInputError(f"--out {p}: {parent} is not writable; give a directory you can write to")
    return p


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


def read_meta(out_dir) -> dict:
    meta = load_meta_file(Path(out_dir) / "meta.json")
    if meta is None:
        raise SweepInputError(f"{out_dir} is not an rbk results directory (no meta.json)")
    return meta


def study_class(path: str) -> type:
    """The :class:`Study` subclass named ``module:qualname`` (as ``meta.json`` records it)."""
    import importlib

    mod, _, qual = str(path).partition(":")
    try:
        obj = importlib.import_module(mod)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as e:
        raise SweepInputError(f"meta.json names the study {path!r}, which this rbk cannot import ({e})") from None
    if not (isinstance(obj, type) and issubclass(obj, Study)):
        raise SweepInputError(f"meta.json names the study {path!r}, which is not an rbk.sweep.Study")
    return obj


def spec_from_meta(meta: dict) -> Study:
    """Rebuild the study recorded in ``meta.json`` (its class from ``meta['study']``; written
    without one: a :class:`SweepSpec`), checked against the recorded config hash."""
    path = meta.get("study")
    if path and path != SweepSpec.study_path():
        cls = study_class(path)
        try:
            spec = cls.from_config(dict(meta["config"]), dict(meta.get("resolved") or {}))
            ok = spec.config_hash() == meta.get("config_hash")
        except (KeyError, TypeError, ValueError) as e:
            raise SweepInputError(f"meta.json's config is not one {path} can read ({e})") from None
        if not ok:
            raise SweepInputError("meta.json's config does not reproduce its hash (edited, or written by another rbk version?)")
        return spec
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
        ok = _hash(config) == meta.get("config_hash")
    except (TypeError, ValueError) as e:
        raise SweepInputError(f"meta.json's config is not one rbk can read ({e}); written by another rbk version?") from None
    if not ok:
        raise SweepInputError("meta.json's config does not reproduce its hash (edited, or written by another rbk version?)")
    return spec


def load_rows(out_dir) -> list[dict]:
    """All finished rows of a results directory (from its cell files, in plan order)."""
    meta = read_meta(out_dir)
    spec = spec_from_meta(meta)
    return Store(out_dir, spec, spec.plan()).rows()


# --------------------------------------------------------------------------------------------
# running cells
# --------------------------------------------------------------------------------------------


def _dataset(spec: SweepSpec, alpha: float, beta: float, n: int, seed: int):
    from rbk.data import make_dataset, seed_keys

    return make_dataset(
        seed_keys(seed)[0], spec.target(alpha, beta), n, n_val=spec.n_val, n_test=spec.n_test,
        distribution=spec.distribution, noise=spec.noise,
    )  # fmt: skip


def _base_row(spec: SweepSpec, cell: Cell, alpha: float, beta: float, seed: int) -> dict:
    return {
        "experiment": spec.experiment,
        "learner": cell.learner,
        "arch": cell.arch,
        "kind": cell.kind,
        "n": cell.n,
        "seed": seed,
        "width": cell.width,
        "epochs": spec.epochs if cell.kind == NET_KIND else None,
        "lr": None,
        "wd": None,
        "ridge": None,
        "alpha": alpha,
        "beta": beta,
        "d": spec.d,
        "k": spec.k,
        "g_degree": spec.g_degree,
        "cell": cell.id,
        "members": cell.members,
    }


def run_net_cell(spec: SweepSpec, cell: Cell, devices=None, progress=None) -> list[dict]:
    """Train every member of a network cell in one compiled call; one row per member.

    ``progress``: a host function given counts of finished member-epochs (:func:`rbk.train.train`).
    """
    import jax.numpy as jnp

    from rbk import train
    from rbk.data import seed_keys, stack
    from rbk.models import get_model

    model = get_model(cell.arch, cell.width, spec.d, spec.k)
    data = stack([_dataset(spec, a, b, cell.n, s) for a, b, s in cell.slots])
    keys = jnp.stack([seed_keys(s)[1] for _, _, s in cell.slots])
    t0 = time.perf_counter()
    res = train.train(model, data, keys, list(cell.lrs), list(cell.wds), spec.train_config(), devices=devices,
                      progress=progress)
    wall = time.perf_counter() - t0
    fin = {s: res.final(s) for s in ("train", "val", "test")}
    rows = []
    for i, (a, b, s) in enumerate(cell.slots):
        for j, lr in enumerate(cell.lrs):
            for m, wd in enumerate(cell.wds):
                r = _base_row(spec, cell, a, b, s)
                errs = {sp: float(fin[sp][i, j, m]) for sp in fin}
                div = bool(res.diverged[i, j, m]) or not all(math.isfinite(e) for e in errs.values())
                r.update(lr=lr, wd=wd, diverged=div, call_wall_s=wall, compile_s=res.compile_s, run_s=res.run_s)
                r.update({f"{sp}_error": e for sp, e in errs.items()})
                rows.append(r)
    return rows


def run_kernel_cell(spec: SweepSpec, cell: Cell) -> list[dict]:
    """Fit a kernel (or random-feature) learner on one data set; one row per ridge."""
    from rbk import kernels

    (a, b, s), = cell.slots
    ds = _dataset(spec, a, b, cell.n, s)
    t0 = time.perf_counter()
    if cell.kind == "rf":
        import jax

        from rbk.data import seed_keys
        from rbk.models import get_model

        model = get_model(cell.arch, cell.width, spec.d, spec.k)
        params = model.init(jax.random.split(seed_keys(s)[1])[0])  # the trained network's initialisation
        out = kernels.random_features_fit_predict(model, params, ds, ridges=spec.ridges)
    else:
        kfn = kernels.kernel_fn(cell.arch, W_std=spec.W_std, b_std=spec.b_std)
        solver = kernels.choose_solver(cell.n, kfn)  # dense up to N = 20000, matrix-free above
        out = kernels.fit_predict(kfn, ds, ridges=spec.ridges, get=cell.kind, block_size=KERNEL_BLOCK, solver=solver)
    wall = time.perf_counter() - t0
    rows = []
    for i, lam in enumerate(out["lams"]):
        r = _base_row(spec, cell, a, b, s)
        errs = {sp: float(out[f"{sp}_errors"][i]) for sp in ("train", "val", "test")}
        r.update({f"{sp}_error": e for sp, e in errs.items()})
        r.update(ridge=float(lam), ridge_abs=float(out["ridges"][i]), diverged=not all(map(math.isfinite, errs.values())),
                 call_wall_s=wall, compile_s=0.0, run_s=wall, solver=out.get("solver"))  # fmt: skip
        if out.get("solver") == "cg":
            r.update(iterations=int(out["iterations"][i]), residual=float(out["residuals"][i]))
        rows.append(r)
    return rows


def run_cell(spec: Study, cell, devices=None, progress=None) -> list[dict]:
    """``spec.run_cell`` with the process that ran it recorded in each row."""
    rows = spec.run_cell(cell, devices, progress)
    import jax

    for r in rows:
        r["process"] = jax.process_index()
    return rows


# --------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class SweepResult:
    out_dir: Path
    rows: list[dict]
    cells: list
    ran: list[str]
    skipped: list[str]
    wall_s: float
    complete: bool
    is_writer: bool


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        from tqdm.auto import tqdm

        tqdm.write(msg, file=sys.stderr)


def run(
    spec: Study,
    out_dir,
    *,
    quiet: bool = False,
    argv: Sequence[str] | None = None,
    memory_bytes: int | None = None,
    wait_timeout_s: float = 7 * 24 * 3600.0,
    on_cell: Callable[[Cell, list[dict]], None] | None = None,
    epoch_progress: bool = False,
    on_start: Callable[[Cell], None] | None = None,
) -> SweepResult:
    """Run (or resume) a sweep into ``out_dir``; see the module docstring.

    Finished cells are skipped; each new cell's rows are written atomically when its call
    returns, then the combined tables are regenerated. Progress (tqdm, ETA over cells) and one
    line per cell go to stderr unless ``quiet``. Returns every row of the directory.
    ``memory_bytes`` overrides the device memory used for automatic member chunking.
    ``epoch_progress`` adds a second bar inside each network call, advanced per member-epoch by
    a host callback (opt-in: about 2 ms per member-epoch on a CPU, 9% of a 3resnet width-128
    call at N = 2000; the numbers are unchanged).
    ``on_start(cell)`` is called just before a cell starts to run, ``on_cell(cell, rows)`` once
    its rows are written and the tables regenerated (progress signals: the tests kill a
    driver at random points after it reports a started cell).
    """
    import jax
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    out_dir = check_out_dir(out_dir)
    rank, nproc = jax.process_index(), jax.process_count()
    writer = rank == 0

    # machine-dependent values (chunking) and extensions: the values stored at the first run win on a resume
    meta_before = load_meta_file(out_dir / "meta.json")
    spec, resolved, extension = spec.resolve(meta_before, memory_bytes)
    cells = spec.plan()
    store = Store(out_dir, spec, cells, process_index=rank)
    if meta_before is not None:
        store.check_config(meta_before)
    # refuse what cannot fit before writing anything (only the cells still to run count)
    done = store.done() if out_dir.exists() else set()
    dev_mem = memory_bytes if memory_bytes is not None else device_memory_bytes()[0]
    problems = spec.memory_problems([c for c in cells if c.id not in done], dev_mem, jax.local_device_count(),
                                    host_memory_bytes())  # fmt: skip
    if problems:
        raise SweepInputError("not enough memory: " + "; ".join(problems))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SweepInputError(f"--out {out_dir} cannot be created: {e.strerror}") from None
    store.lock()
    try:
        if writer:
            store.check_config(store.read_meta())
            if nproc == 1:
                store.clean_tmp()
            meta = store.read_meta() or {
                "config": spec.config(),
                "config_hash": spec.config_hash(),
                "resolved": resolved,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "runs": [],
            }
            run_rec = {
                "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "argv": list(argv) if argv is not None else sys.argv,
                "versions": versions(),
                "device": device_info(),
                "git": git_info(),
                "process_count": nproc,
            }
            meta.update({k: run_rec[k] for k in ("versions", "device", "git")})
            meta["study"] = spec.study_path()
            if extension is not None and meta.get("config_hash") != spec.config_hash():
                run_rec["extended_from"] = meta["config_hash"]
                meta.update(config=spec.config(), config_hash=spec.config_hash(), **extension)
            meta["cells"] = len(cells)
            meta["runs"] = list(meta.get("runs", [])) + [run_rec]
            store.write_meta(meta)
        else:
            _wait_for(lambda: store.meta_path.exists(), wait_timeout_s, "meta.json from process 0")
            store.check_config(store.read_meta())

        done = store.done()
        mine = [c for i, c in enumerate(cells) if i % nproc == rank]
        todo = [c for c in mine if c.id not in done]
        skipped = [c.id for c in mine if c.id in done]
        if skipped:
            _say(f"[rbk] {out_dir}: {len(skipped)} of {len(mine)} cells already finished, skipped", quiet)
        ran = []
        bar = tqdm(total=len(mine), initial=len(skipped), unit="cell", file=sys.stderr, disable=quiet,
                   dynamic_ncols=True, desc=spec.experiment)  # fmt: skip
        try:
            for cell in todo:
                bar.set_postfix_str(cell.id, refresh=True)
                if on_start is not None:
                    on_start(cell)
                inner_total = None if quiet or not epoch_progress else spec.member_epochs(cell)
                if inner_total is None:
                    rows = run_cell(spec, cell)
                else:  # a second bar inside the cell: member-epochs of the compiled call
                    with tqdm(total=inner_total, unit="epoch", file=sys.stderr, leave=False,
                              dynamic_ncols=True, desc="  member-epochs") as inner:  # fmt: skip
                        rows = run_cell(spec, cell, progress=inner.update)
                store.write_cell(cell.id, rows)
                ran.append(cell.id)
                if writer:
                    store.rebuild()
                bar.update(1)
                best = min((r for r in rows if not r["diverged"]), key=lambda r: r["val_error"], default=None)
                ndiv = sum(r["diverged"] for r in rows)
                msg = f"[rbk] {cell.id}: {len(rows)} rows"
                if rows and rows[0].get("call_wall_s") is not None:
                    msg += f" in {rows[0]['call_wall_s']:.1f} s"
                if rows and rows[0].get("compile_s"):
                    msg += f" (compile {rows[0]['compile_s']:.1f} s)"
                if best is not None:
                    msg += f"; best val {best['val_error']:.4g} -> test {best['test_error']:.4g}"
                if ndiv:
                    msg += f"; {ndiv} diverged"
                _say(msg, quiet)
                if on_cell is not None:
                    on_cell(cell, rows)
        finally:
            bar.close()
        complete = True
        if writer and nproc > 1:
            all_ids = {c.id for c in cells}
            _wait_for(lambda: store.done() >= all_ids, wait_timeout_s, "the cells of the other processes")
        if writer:
            rows = store.rebuild()
            complete = store.done() >= {c.id for c in cells}
        else:
            rows = store.rows()
    finally:
        store.unlock()
    return SweepResult(out_dir, rows, cells, ran, skipped, time.perf_counter() - t_start, complete, writer)


def _wait_for(cond: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 2.0) -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


__all__ = [
    "CORE_FIELDS",
    "Study",
    "study_class",
    "ROW_FIELDS",
    "EXTRA_FIELDS",
    "LEARNERS",
    "SweepSpec",
    "Cell",
    "SweepInputError",
    "ConfigMismatchError",
    "StoreLockedError",
    "make_spec",
    "plan",
    "format_plan",
    "resolve_max_members",
    "member_bytes",
    "memory_problems",
    "kernel_cell_bytes",
    "device_memory_bytes",
    "check_out_dir",
    "extension_parts",
    "load_meta_file",
    "Store",
    "run",
    "run_cell",
    "load_rows",
    "read_meta",
    "spec_from_meta",
    "versions",
    "device_info",
    "git_info",
]
