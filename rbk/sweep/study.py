"""The :class:`Study` protocol: what the engine (driver, store, resume, provenance, ``rbk plot``)
knows of an experiment, the columns every row carries (:data:`CORE_FIELDS`) and the config hash."""

from __future__ import annotations

import hashlib
import json
from typing import Iterable

#: The columns every study's rows carry (:class:`Study`); a study appends its own.
CORE_FIELDS = ("experiment", "learner", "kind", "n", "seed", "train_error", "val_error", "test_error", "diverged",
               "call_wall_s", "cell")  # fmt: skip


class Study:
    """A sweep the engine can run: the plug-in protocol of :func:`run`, :class:`Store` and ``rbk plot``.

    An experiment is a frozen dataclass subclassing ``Study`` with a field ``experiment`` (its
    name) and these methods; the engine (driver, store, resume, lock, provenance, multi-process
    split) knows nothing else about it; each experiment family of :mod:`rbk.experiments` defines
    one (the concept class's ``SweepSpec`` among them).

    * ``config()``: the JSON dict that defines the results (hashed; holds ``experiment``);
      ``from_config(config, resolved)`` rebuilds the study from it (``meta.json`` records the
      class as ``module:qualname``, :meth:`study_path`, so ``rbk plot`` and resume find it;
      :meth:`from_meta` checks the hash, and a study with more in ``meta.json`` overrides it);
    * ``plan()``: the cells in run order, objects with ``id`` (unique, a file name), ``learner``
      and ``kind``; ``run_cell(cell, devices, progress)`` computes one and returns its rows,
      dicts with :data:`CORE_FIELDS` and the study's own columns (``row_fields``; a non-finite
      error is a row with ``diverged`` true, never an exception);
    * optional: ``memory_problems`` (refuse up front what cannot fit), ``format_plan`` (the dry
      run), ``cell_cost`` (``(training FLOPs, dense FLOPs, program key)`` of a cell: the dry
      run's wall-time estimate, :func:`rbk.sweep.cost.estimate_seconds`), ``member_epochs`` (the inner progress bar), ``resolve`` (machine-dependent values
      fixed at the first run, and extensions of a finished sweep) and ``extends``;
    * ``resource_fields``: fields that change how the work is laid out but no number (e.g. the
      member chunking of network calls): ``config()`` leaves them out, so they are not hashed and a
      resume may change them; the default :meth:`resolve` records their values (``meta.json``).
    """

    row_fields: tuple[str, ...] = CORE_FIELDS
    resource_fields: tuple[str, ...] = ()

    def config(self) -> dict:
        raise NotImplementedError

    def config_hash(self) -> str:
        return hash_config(self.config())

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
        ``meta.json`` fields of an extension of a finished sweep (``None``: not an extension). By
        default: this study, the values of its ``resource_fields``, no extension."""
        return self, {f: getattr(self, f) for f in self.resource_fields}, None

    def extends(self, meta: dict) -> bool:
        """Whether this study extends the (different) one recorded in ``meta``, keeping its cells."""
        return False

    @classmethod
    def from_config(cls, config: dict, resolved: dict | None = None) -> "Study":
        raise NotImplementedError

    @classmethod
    def from_meta(cls, meta: dict) -> "Study":
        """The study recorded in ``meta.json``: :meth:`from_config` of its config and resolved values,
        checked against the recorded hash (:class:`rbk.sweep.SweepInputError` otherwise)."""
        from rbk.sweep.errors import SweepInputError

        path = cls.study_path()
        try:
            spec = cls.from_config(dict(meta["config"]), dict(meta.get("resolved") or {}))
            ok = spec.config_hash() == meta.get("config_hash")
        except (KeyError, TypeError, ValueError) as e:
            raise SweepInputError(f"meta.json's config is not one {path} can read ({e})") from None
        if not ok:
            raise SweepInputError("meta.json's config does not reproduce its hash (edited, or written by another rbk version?)")
        return spec

    @classmethod
    def study_path(cls) -> str:
        return f"{cls.__module__}:{cls.__qualname__}"


def hash_config(config: dict) -> str:
    """The config hash: the first 16 hex digits of the sha256 of ``config`` as sorted, compact JSON."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
