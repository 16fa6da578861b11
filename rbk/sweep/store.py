"""The results directory of a sweep (:class:`Store`): atomic cell files, the lock, ``meta.json``
(reading it, rebuilding the recorded study: :func:`spec_from_meta`) and the combined tables."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import socket
from pathlib import Path
from typing import Sequence

import numpy as np

from rbk.sweep.errors import ConfigMismatchError, StoreLockedError, SweepInputError
from rbk.sweep.study import Study


def _clean(v):
    """JSON-ready value: numpy scalars and arrays made Python, non-finite floats ``None``, at any
    depth (a row's per-epoch curves and per-level lists included), so that a diverged member's
    NaN or inf never stops a sweep at the write."""
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.ndarray):
        return _clean(v.tolist())
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
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
    """The results directory of one sweep (its layout: :mod:`rbk.sweep`)."""

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
        rows, _ = self._read_cell(cell_id)
        return rows

    def cell_problem(self, cell_id: str) -> str | None:
        """Why a cell file that exists cannot be read as a finished cell (``None``: it reads, or
        there is no file: the cell has not run)."""
        return self._read_cell(cell_id)[1]

    def _read_cell(self, cell_id: str) -> tuple[list[dict] | None, str | None]:
        p = self.cell_path(cell_id)
        try:
            lines = p.read_text().splitlines()
        except FileNotFoundError:
            return None, None
        except (OSError, UnicodeDecodeError) as e:
            return None, f"cannot be read ({getattr(e, 'strerror', None) or e})"
        recs = []
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                recs.append(json.loads(line))
            except json.JSONDecodeError as e:
                return None, f"line {i} is not valid JSON ({e.msg}): corrupt or cut short"
        if not recs or not isinstance(recs[-1], dict) or recs[-1].get("_complete") != cell_id:
            return None, "has no completion line for this cell: cut short or not written by rbk"
        if recs[-1].get("rows") != len(recs) - 1:
            return None, f"its completion line counts {recs[-1].get('rows')} rows, the file holds {len(recs) - 1}"
        return recs[:-1], None

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
    if p.is_dir() and not is_results_dir(p):
        theirs = sorted(e.name + ("/" if e.is_dir() else "") for e in p.iterdir())
        if theirs:  # an existing directory of someone else's files: rbk would write among them
            shown = ", ".join(theirs[:5]) + (f" and {len(theirs) - 5} more" if len(theirs) > 5 else "")
            raise SweepInputError(f"--out {p} is a directory with files that are not rbk results ({shown}); "
                                  "nothing was written: give a new or empty directory, or an rbk results directory")
    return p


def is_results_dir(path) -> bool:
    """``path`` holds an rbk run: its ``meta.json``, or the ``cells/`` and lock a run creates first."""
    p = Path(path)
    return (p / "meta.json").is_file() or (p / "cells").is_dir() or (p / ".lock").is_file()


def read_meta(out_dir) -> dict:
    meta = load_meta_file(Path(out_dir) / "meta.json")
    if meta is None:
        raise SweepInputError(f"{out_dir} is not an rbk results directory (no meta.json)")
    return meta


#: Study paths written by earlier versions of rbk, and where those classes live now.
MOVED_STUDIES = {"rbk.sweep:SweepSpec": "rbk.experiments.concept_class:SweepSpec"}
#: The study of a ``meta.json`` that names none (written before studies were plug-ins).
DEFAULT_STUDY = "rbk.sweep:SweepSpec"


def _resolve(path: str):
    """The object named ``module:qualname``; a module that is no file of its own (a package's lazy
    attribute, such as ``rbk.experiments.<name>``) is reached as an attribute of its package."""
    import importlib

    mod, _, qual = str(path).partition(":")
    try:
        obj = importlib.import_module(mod)
    except ModuleNotFoundError:
        parent, _, leaf = mod.rpartition(".")
        if not parent:
            raise
        obj = getattr(importlib.import_module(parent), leaf)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def study_class(path: str) -> type:
    """The :class:`Study` subclass named ``module:qualname`` (as ``meta.json`` records it;
    :data:`MOVED_STUDIES` maps the names of earlier versions)."""
    try:
        obj = _resolve(MOVED_STUDIES.get(str(path), path))
    except (ImportError, AttributeError, ValueError) as e:
        raise SweepInputError(f"meta.json names the study {path!r}, which this rbk cannot import ({e})") from None
    if not (isinstance(obj, type) and issubclass(obj, Study)):
        raise SweepInputError(f"meta.json names the study {path!r}, which is not an rbk.sweep.Study")
    return obj


def spec_from_meta(meta: dict) -> Study:
    """Rebuild the study recorded in ``meta.json`` (its class from ``meta['study']``, else
    :data:`DEFAULT_STUDY`; :meth:`Study.from_meta`), checked against the recorded config hash."""
    return study_class(meta.get("study") or DEFAULT_STUDY).from_meta(meta)


def load_rows(out_dir) -> list[dict]:
    """All finished rows of a results directory (from its cell files, in plan order)."""
    meta = read_meta(out_dir)
    spec = spec_from_meta(meta)
    return Store(out_dir, spec, spec.plan()).rows()
