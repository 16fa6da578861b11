"""What every experiment module does the same way, given the module itself: its profiles with
overrides (:func:`profile_spec_of`), the summary and figures of a results directory
(:func:`finalize_with`) and a run (:func:`run_with`). The registry (:mod:`rbk.experiments`) finds
the module by name; an experiment module calls these with itself, never the registry."""

from __future__ import annotations

import numbers
from functools import partial
from pathlib import Path

from rbk._args import add_options, integer, option, optional, options_of
from rbk._checks import check_int


def member_chunking_option():
    """The ``max_members_per_call`` field of a study whose network cells train all their (seed, lr,
    wd) members in one call unless told otherwise (Experiments 3 and 4; :func:`rbk.train.train`'s
    ``max_members``). List it in the study's ``resource_fields``: it changes no number."""
    return option(None, check=optional(partial(check_int, lo=1)), flag="--max-members-per-call", conv=integer,
                  help="train at most this many (seed, lr, wd) members in one compiled call, >= 1 (default: all of "
                       "a cell's in one call); bounds the memory of the members trained side by side")  # fmt: skip


def add_resource_arguments_of(study, group) -> None:
    """The command-line options of ``study``'s ``resource_fields``, in the command's "resources" ``group``."""
    add_options(group, [o for o in options_of(study) if o.field in study.resource_fields])


def profile_spec_of(mod, profile: str, **overrides):
    """The study (:class:`rbk.sweep.Study`) of ``mod``'s profile with ``overrides`` (the module's
    ``make_spec`` keywords; ``None`` values are ignored).

    Overriding ``epochs`` alone keeps the profile's learning-rate step at the same fraction of
    the run (``quick`` exp1: 3/4, ``paper``: 1/2), rounded down.
    """
    if profile not in mod.PROFILES:
        raise ValueError(f"profile must be one of {sorted(mod.PROFILES)}, got {profile!r}")
    kw = dict(mod.PROFILES[profile])
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "epochs" in overrides and "decay_epoch" not in overrides and kw.get("decay_epoch") is not None:
        epochs = overrides["epochs"]
        if isinstance(epochs, numbers.Integral) and epochs >= 1:  # else make_spec names the bad value
            kw["decay_epoch"] = kw["decay_epoch"] * int(epochs) // kw["epochs"]
    kw.update(overrides)
    return mod.make_spec(**kw)


def finalize_with(mod, out_dir, *, plot: bool = True, quiet: bool = False) -> dict | None:
    """Summarise a results directory of ``mod``'s experiment: ``summary.json`` and (``plot``) its figures.

    The module's ``summarize(spec, rows, quiet=)`` makes the summary and its ``plot(summary,
    out_dir)`` the figures. Returns the summary (``None`` when there are no rows, or the module
    has nothing to summarise, e.g. exp1 with ``alpha = 0``).
    """
    import sys

    from rbk import stats, sweep

    out_dir = Path(out_dir)
    meta = sweep.read_meta(out_dir)
    spec = sweep.spec_from_meta(meta)
    store = sweep.Store(out_dir, spec, spec.plan())
    try:  # regenerate results.jsonl/.csv from the cell files (a torn table is repaired) unless a run is writing
        store.lock()
    except sweep.StoreLockedError:
        rows = store.rows()
    else:
        try:
            rows = store.rebuild()
        finally:
            store.unlock()
    if not rows:
        if not quiet:
            print(f"[rbk] {out_dir}: no finished cells yet, nothing to summarise", file=sys.stderr)
        return None
    summary = mod.summarize(spec, rows, quiet=quiet)
    if summary is None:
        return None
    done, total = len(store.done()), len(store.cells)
    summary["complete"] = done == total
    summary["cells"] = {"done": done, "total": total}
    stats.write_json(summary, out_dir / "summary.json")
    if plot:
        mod.plot(summary, out_dir)
    return summary


def run_with(mod, out_dir, profile: str = "quick", *, quiet: bool = False, plot: bool = True, **overrides):
    """Run (or resume) ``mod``'s sweep into ``out_dir``; return its summary (``summary.json``).

    ``None`` on processes other than the writer (multi-process runs) and where
    :func:`finalize_with` has nothing to summarise.
    """
    from rbk import sweep

    res = sweep.run(profile_spec_of(mod, profile, **overrides), out_dir, quiet=quiet)
    if not res.is_writer:
        return None
    return finalize_with(mod, out_dir, plot=plot, quiet=quiet)


def entry_points(module_name: str):
    """``(spec, run)`` of the experiment module ``module_name``: its profiles with overrides
    (:func:`profile_spec_of`) and a run into a results directory (:func:`run_with`)."""
    import sys

    def spec(profile: str = "quick", **overrides):
        """The study of ``profile`` with ``make_spec`` overrides (``None`` values are ignored)."""
        return profile_spec_of(sys.modules[module_name], profile, **overrides)

    def run(out_dir, profile: str = "quick", *, quiet: bool = False, plot: bool = True, **overrides) -> dict | None:
        """Run (or resume) the study into ``out_dir`` and return its summary (``summary.json``)."""
        return run_with(sys.modules[module_name], out_dir, profile, quiet=quiet, plot=plot, **overrides)

    spec.__module__ = run.__module__ = module_name
    return spec, run
