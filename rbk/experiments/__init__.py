"""The experiments as importable modules: profiles, runs and summaries.

Each experiment is a module with ``PROFILES``, ``make_spec(**kw)`` (a validated
:class:`rbk.sweep.Study`), ``summarize(spec, rows, quiet=False)``, ``plot(summary, out_dir)``,
``format_table(summary)`` and, for the command line, ``add_arguments(parser)`` and
``overrides(args)`` (exp1 and exp2 share :mod:`rbk.cli`'s options for the concept class);
registering it in :data:`EXPERIMENTS` makes it ``rbk <name>``.

The scripts in a clone's ``experiments/`` folder are thin command-line wrappers of these.

* :mod:`rbk.experiments.exp1`: test error against the number of samples N
  (Experiment 1), profiles ``quick`` and ``paper``;
* :mod:`rbk.experiments.exp2`: the (alpha, beta) phase diagram of the target
  ``beta * F + alpha * G(F)`` (Experiment 2), profiles ``quick`` and ``paper``.
* :mod:`rbk.experiments.exp3`: multi-index targets on Gaussian inputs (Damian, Lee &
  Soltanolkotabi): test error against N for several d, ``n*(d)`` and the slope of ``log n*``
  against ``log d`` per learner (Experiment 3), profiles ``quick`` and ``paper``.
* :mod:`rbk.experiments.exp3b`: transfer of features learned on a multi-index target to a
  new head on the same subspace (Experiment 3b, a :class:`rbk.sweep.Study`).
* :mod:`rbk.experiments.exp4`: deep hierarchies, joint vs layer-wise training against the exact
  NTK of the same architecture, with per-level feature quality (Experiment 4), profiles
  ``quick`` and ``paper``.

Each has ``PROFILES``, ``spec(profile, **overrides)`` and ``run(out_dir, profile=...,
**overrides)``; the command line is :mod:`rbk.cli` (``rbk exp1``, ``rbk exp2``), which imports
this package and never the other way round. :func:`finalize` writes ``summary.json``
(:mod:`rbk.stats`; for exp1 with each exact kernel's learning curve predicted from its spectrum,
:mod:`rbk.theory`), the figure (:mod:`rbk.plots`) and returns the summary of a results
directory; ``rbk plot --out DIR`` calls it.
"""

from __future__ import annotations

import numbers
from pathlib import Path

EXPERIMENTS = {
    "exp1": "rbk.experiments.exp1",
    "exp2": "rbk.experiments.exp2",
    "exp3": "rbk.experiments.exp3",
    "exp3b": "rbk.experiments.exp3b",
    "exp4": "rbk.experiments.exp4",
}


def module(experiment: str):
    import importlib

    if experiment not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {list(EXPERIMENTS)}, got {experiment!r}")
    return importlib.import_module(EXPERIMENTS[experiment])


def profile_spec(experiment: str, profile: str, **overrides):
    """The study (:class:`rbk.sweep.Study`) of a profile with ``overrides`` (the module's
    ``make_spec`` keywords; ``None`` values are ignored).

    Overriding ``epochs`` alone keeps the profile's learning-rate step at the same fraction of
    the run (``quick`` exp1: 3/4, ``paper``: 1/2), rounded down.
    """
    mod = module(experiment)
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


def finalize(out_dir, *, plot: bool = True, quiet: bool = False) -> dict | None:
    """Summarise a results directory: ``summary.json`` and (``plot``) the experiment's figures.

    The experiment module's ``summarize(spec, rows, quiet=)`` makes the summary and its
    ``plot(summary, out_dir)`` the figures. Returns the summary (``None`` when there are no rows,
    or the module has nothing to summarise, e.g. exp1 with ``alpha = 0``).
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
    mod = module(spec.experiment)
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


def format_table(experiment: str, summary: dict) -> str:
    """The printed table of a summary (the module's ``format_table``)."""
    return module(experiment).format_table(summary)


__all__ = ["EXPERIMENTS", "module", "profile_spec", "finalize", "format_table", "run"]


def run(experiment: str, out_dir, profile: str = "quick", *, quiet: bool = False, plot: bool = True, **overrides):
    """Run (or resume) ``experiment``'s sweep into ``out_dir``; return its summary (``summary.json``).

    ``None`` on processes other than the writer (multi-process runs) and where
    :func:`finalize` has nothing to summarise.
    """
    from rbk import sweep

    res = sweep.run(profile_spec(experiment, profile, **overrides), out_dir, quiet=quiet)
    if not res.is_writer:
        return None
    return finalize(out_dir, plot=plot, quiet=quiet)

