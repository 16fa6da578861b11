"""The experiment engine: a study's cells run, stored and resumed.

The engine runs any :class:`Study` (a plug-in: its config, its cells and how one runs, the
columns of its rows): the driver :func:`run`, the :class:`Store` (atomic cells, lock, resume,
provenance) and ``rbk plot`` know nothing else. Each experiment family of
:mod:`rbk.experiments` is a study of its own; this package imports none of them.

One concern per module (each imports only those above it; the public names are re-exported
here, so ``from rbk import sweep; sweep.run(...)`` is the way to use them)::

    study       the Study protocol, CORE_FIELDS, the config hash (hash_config)
    errors      SweepInputError, ConfigMismatchError, StoreLockedError
    planner     the planner interface: PlannedCell (what the engine reads of a cell), check_plan
    cost        the machine a run plans for: device_memory_bytes; data_bytes, too_big (a study's memory floor);
                calibrate, estimate_seconds, format_estimate (the dry run's wall time from a study's cell_cost)
    provenance  versions, device_info, git_info
    store       Store (atomic cells, lock, tables), meta.json (load_meta_file, read_meta,
                spec_from_meta, study_class), load_rows, check_out_dir, is_results_dir, atomic_write
    driver      run, run_cell, SweepResult, waiting for the other processes

Rows
----
Every row carries the fixed core :data:`CORE_FIELDS` (``experiment, learner, kind, n, seed,
train_error, val_error, test_error, diverged, call_wall_s, cell``) and then the study's own
columns (``Study.row_fields``).

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
config is refused (:class:`ConfigMismatchError`), except where the study says the new config
extends the recorded one (``Study.extends``; the concept class: extra ``ns`` or ``seeds``),
keeping every finished cell and running only the new ones. Before anything is written, a run
whose cells cannot fit (``Study.memory_problems``), an ``out_dir`` that is a file or cannot be
created, and a damaged ``meta.json`` are refused (:class:`SweepInputError`, naming the option
that fixes it).

Multi-process (``jax.distributed``): every process runs the same command; cell ``i`` of the
plan is run by process ``i % process_count`` on its own local devices and written to its
cell file (``out_dir`` must be on a filesystem all processes share); only process 0 writes
``meta.json`` and the combined tables, after waiting for every cell file. See
``docs/devices.md``.
"""

from rbk.sweep.study import CORE_FIELDS, Study, hash_config
from rbk.sweep.errors import ConfigMismatchError, StoreLockedError, SweepInputError
from rbk.sweep.planner import PlannedCell, check_plan
from rbk.sweep.cost import data_bytes, device_memory_bytes, too_big
from rbk.sweep.provenance import device_info, git_info, versions
from rbk.sweep.store import (
    Store, atomic_write, check_out_dir, is_results_dir, load_meta_file, load_rows, read_meta, spec_from_meta, study_class,
)  # fmt: skip
from rbk.sweep.driver import SweepResult, run, run_cell

__all__ = [
    "CORE_FIELDS",
    "Study",
    "hash_config",
    "SweepInputError",
    "ConfigMismatchError",
    "StoreLockedError",
    "PlannedCell",
    "check_plan",
    "data_bytes",
    "device_memory_bytes",
    "too_big",
    "versions",
    "device_info",
    "git_info",
    "Store",
    "atomic_write",
    "check_out_dir",
    "is_results_dir",
    "load_meta_file",
    "read_meta",
    "spec_from_meta",
    "study_class",
    "load_rows",
    "SweepResult",
    "run",
    "run_cell",
]
