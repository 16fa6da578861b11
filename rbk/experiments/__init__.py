"""The experiments as importable modules: profiles, runs and summaries.

The scripts in a clone's ``experiments/`` folder are thin command-line wrappers of these.

* :mod:`rbk.experiments.exp1`: test error against the number of samples N
  (Experiment 1), profiles ``quick`` and ``paper``;
* :mod:`rbk.experiments.exp2`: the (alpha, beta) phase diagram of the target
  ``beta * F + alpha * G(F)`` (Experiment 2), profiles ``quick`` and ``paper``.

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

EXPERIMENTS = {"exp1": "rbk.experiments.exp1", "exp2": "rbk.experiments.exp2"}


def module(experiment: str):
    import importlib

    if experiment not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {list(EXPERIMENTS)}, got {experiment!r}")
    return importlib.import_module(EXPERIMENTS[experiment])


def profile_spec(experiment: str, profile: str, **overrides):
    """The :class:`rbk.sweep.SweepSpec` of a profile with ``overrides`` (``make_spec`` keywords;
    ``None`` values are ignored).

    Overriding ``epochs`` alone keeps the profile's learning-rate step at the same fraction of
    the run (``quick`` exp1: 3/4, ``paper``: 1/2), rounded down.
    """
    from rbk import sweep

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
    return sweep.make_spec(experiment, **kw)


def finalize(out_dir, *, plot: bool = True, quiet: bool = False) -> dict | None:
    """Summarise a results directory: ``summary.json`` and (``plot``) ``<exp>.png/.pdf``.

    Returns the summary (``None`` when there are no rows, or exp1 with ``alpha = 0``, which
    has no threshold ``k alpha^2``).
    """
    import sys

    from rbk import stats, sweep

    out_dir = Path(out_dir)
    meta = sweep.read_meta(out_dir)
    spec = sweep.spec_from_meta(meta)
    store = sweep.Store(out_dir, spec, sweep.plan(spec))
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
    inst = {"d": spec.d, "k": spec.k, "g_degree": spec.g_degree, "experiment": spec.experiment}
    if spec.experiment == "exp1":
        alpha, beta = spec.instances[0]
        threshold = spec.k * alpha**2
        if not threshold > 0:
            if not quiet:
                print("[rbk] alpha = 0: no threshold k*alpha^2, summary and figure skipped", file=sys.stderr)
            return None
        inst.update(alpha=alpha, beta=beta)
        summary = stats.summarize_exp1(rows, threshold=threshold, instance=inst, predicted=_predicted(spec, threshold))
    else:
        summary = stats.summarize_exp2(rows)
    done, total = len(store.done()), len(store.cells)
    summary["complete"] = done == total
    summary["cells"] = {"done": done, "total": total}
    stats.write_json(summary, out_dir / "summary.json")
    if plot:
        from rbk import plots

        fn = plots.plot_exp1 if spec.experiment == "exp1" else plots.plot_exp2
        fn(summary, out_dir, name=spec.experiment)
    return summary


def _predicted(spec, threshold: float) -> dict:
    """Spectral learning-curve predictions of the sweep's exact-kernel learners (:mod:`rbk.theory`);
    ``{}`` off the uniform cube, where the Walsh spectrum does not apply."""
    from rbk import theory

    if spec.distribution != "cube":
        return {}
    alpha, beta = spec.instances[0]
    return theory.predict_learners(spec.learners, spec.target(alpha, beta), spec.ns, spec.ridges, threshold,
                                   W_std=spec.W_std, b_std=spec.b_std, noise=spec.noise)  # fmt: skip


__all__ = ["EXPERIMENTS", "module", "profile_spec", "finalize"]


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

