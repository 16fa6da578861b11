"""Experiment grids and the resumable results store.

The engine runs any :class:`Study` (a plug-in: its config, its cells and how one runs, the
columns of its rows): the driver :func:`run`, the :class:`Store` (atomic cells, lock, resume,
provenance) and ``rbk plot`` know nothing else. Experiments 3 and 4 (``rbk.experiments``)
are studies of their own; :class:`SweepSpec` is the study of Experiments 1 and 2.

One concern per module (each imports only those above it; every public name is re-exported
here, so ``from rbk import sweep; sweep.run(...)`` is the way to use them)::

    study       the Study protocol, CORE_FIELDS, the config hash (hash_config)
    errors      SweepInputError, ConfigMismatchError, StoreLockedError
    learners    the learner names of the concept-class sweeps: parse_learner, LEARNERS, NET_KIND,
                KERNEL_KINDS
    spec        SweepSpec (the concept-class study), make_spec and its checks, its row columns
    planner     Cell, plan (run order), the chunking of a call's members
    runners     run_net_cell, run_kernel_cell, the data set of a cell (dataset)
    cost        memory and FLOP estimates: resolve_max_members, memory_problems, format_plan,
                device_memory_bytes
    provenance  versions, device_info, git_info
    store       Store (atomic cells, lock, tables), meta.json (load_meta_file, read_meta,
                spec_from_meta, study_class), extension_parts, load_rows, check_out_dir
    driver      run, run_cell, SweepResult, waiting for the other processes

Rows
----
Every row carries the fixed core :data:`CORE_FIELDS` (``experiment, learner, kind, n, seed,
train_error, val_error, test_error, diverged, call_wall_s, cell``) and then the study's own
columns (``Study.row_fields``). A concept-class row (:data:`ROW_FIELDS`, the columns
:mod:`rbk.stats` reads, then :data:`EXTRA_FIELDS`) adds the learner's ``arch`` and settings
(``width, epochs, lr, wd`` of a network, the relative ``ridge`` of a kernel), the target's
parameters ``alpha, beta, d, k, g_degree`` and its ``threshold`` (``Target.threshold``,
``k * alpha^2``), then the call's bookkeeping (absolute ridge, compile and run seconds,
members, process, kernel solver).

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
"""

from rbk.sweep.study import CORE_FIELDS, Study, hash_config
from rbk.sweep.errors import ConfigMismatchError, StoreLockedError, SweepInputError
from rbk.sweep.learners import KERNEL_KINDS, LEARNERS, NET_KIND, parse_learner
from rbk.sweep.spec import ALL_FIELDS, EXPERIMENTS, EXTRA_FIELDS, ROW_FIELDS, SCHEMA_VERSION, SweepSpec, make_spec
from rbk.sweep.planner import Cell, plan
from rbk.sweep.runners import KERNEL_BLOCK, dataset, run_kernel_cell, run_net_cell
from rbk.sweep.cost import (
    MEMORY_FRACTION, cell_flops, device_memory_bytes, format_plan, kernel_cell_bytes, member_bytes, memory_problems,
    resolve_max_members,
)  # fmt: skip
from rbk.sweep.provenance import device_info, git_info, versions
from rbk.sweep.store import (
    Store, atomic_write, check_out_dir, extension_parts, load_meta_file, load_rows, read_meta, spec_from_meta,
    study_class,
)  # fmt: skip
from rbk.sweep.driver import SweepResult, run, run_cell

__all__ = [
    "CORE_FIELDS",
    "SCHEMA_VERSION",
    "EXPERIMENTS",
    "KERNEL_BLOCK",
    "MEMORY_FRACTION",
    "atomic_write",
    "Study",
    "hash_config",
    "study_class",
    "ROW_FIELDS",
    "EXTRA_FIELDS",
    "ALL_FIELDS",
    "LEARNERS",
    "NET_KIND",
    "KERNEL_KINDS",
    "parse_learner",
    "SweepSpec",
    "Cell",
    "SweepInputError",
    "ConfigMismatchError",
    "StoreLockedError",
    "make_spec",
    "plan",
    "dataset",
    "run_net_cell",
    "run_kernel_cell",
    "format_plan",
    "resolve_max_members",
    "member_bytes",
    "memory_problems",
    "kernel_cell_bytes",
    "cell_flops",
    "device_memory_bytes",
    "check_out_dir",
    "extension_parts",
    "load_meta_file",
    "Store",
    "SweepResult",
    "run",
    "run_cell",
    "load_rows",
    "read_meta",
    "spec_from_meta",
    "versions",
    "device_info",
    "git_info",
]
