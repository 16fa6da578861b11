"""The experiments: one package per experiment family, each holding its study (what a cell is,
how it runs, its rows), its profiles, its summary and its figures; a registry of their modules.

* :mod:`rbk.experiments.concept_class`: the concept class of Allen-Zhu & Li (one study,
  ``SweepSpec``): Experiment 1, test error against the number of samples N
  (:mod:`~rbk.experiments.concept_class.exp1`, profiles ``quick``, ``kernels`` and ``paper``) and
  Experiment 2, the (alpha, beta) phase diagram of ``beta * F + alpha * G(F)``
  (:mod:`~rbk.experiments.concept_class.exp2`, profiles ``quick`` and ``paper``);
* :mod:`rbk.experiments.multi_index`: multi-index targets on Gaussian inputs (Damian, Lee &
  Soltanolkotabi): Experiment 3, test error against N for several d, ``n*(d)`` and the slope of
  ``log n*`` against ``log d`` per learner (:mod:`~rbk.experiments.multi_index.exp3`), and
  Experiment 3b, transfer of the learned features to a new head on the same subspace
  (:mod:`~rbk.experiments.multi_index.exp3b`);
* :mod:`rbk.experiments.hierarchy`: deep hierarchies, joint vs layer-wise training against the
  exact NTK of the same architecture, with per-level feature quality (Experiment 4,
  :mod:`~rbk.experiments.hierarchy.exp4`).

The registry :data:`EXPERIMENTS` maps each experiment's name to its module;
``rbk.experiments.<name>`` is that module too (imported on first use). Each module has
``PROFILES``, ``make_spec(**kw)`` (a validated :class:`rbk.sweep.Study`), ``spec(profile,
**overrides)``, ``run(out_dir, profile=..., **overrides)``, ``summarize(spec, rows,
quiet=False)``, ``plot(summary, out_dir)``, ``format_table(summary)`` and, for the command line,
``add_arguments(parser)`` and ``overrides(args)`` (optional: ``add_resource_arguments(group)``,
``dry_run(...)``); registering it in :data:`EXPERIMENTS` makes it ``rbk <name>``.

The command line is :mod:`rbk.cli` (one subcommand per registered experiment), which imports
this package and never the other way round; the scripts in a clone's ``experiments/`` folder
are thin wrappers of it. :func:`finalize` writes ``summary.json``, the figures and returns the
summary of a results directory; ``rbk plot --out DIR`` calls it.
"""

from __future__ import annotations

#: The registered experiments: name -> module (``rbk <name>``).
EXPERIMENTS = {
    "exp1": "rbk.experiments.concept_class.exp1",
    "exp2": "rbk.experiments.concept_class.exp2",
    "exp3": "rbk.experiments.multi_index.exp3",
    "exp3b": "rbk.experiments.multi_index.exp3b",
    "exp4": "rbk.experiments.hierarchy.exp4",
}
#: The experiment families (subpackages).
FAMILIES = ("concept_class", "multi_index", "hierarchy")


def module(experiment: str):
    """The module of a registered experiment (``ValueError`` naming the registered ones otherwise)."""
    import importlib

    if experiment not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {list(EXPERIMENTS)}, got {experiment!r}")
    return importlib.import_module(EXPERIMENTS[experiment])


def profile_spec(experiment: str, profile: str, **overrides):
    """The study (:class:`rbk.sweep.Study`) of ``experiment``'s profile with ``overrides`` (the module's
    ``make_spec`` keywords; ``None`` values are ignored; :func:`rbk.experiments.common.profile_spec_of`).

    Overriding ``epochs`` alone keeps the profile's learning-rate step at the same fraction of
    the run (``quick`` exp1: 3/4, ``paper``: 1/2), rounded down.
    """
    from rbk.experiments.common import profile_spec_of

    return profile_spec_of(module(experiment), profile, **overrides)


def finalize(out_dir, *, plot: bool = True, quiet: bool = False) -> dict | None:
    """Summarise a results directory: ``summary.json`` and (``plot``) the experiment's figures
    (:func:`rbk.experiments.common.finalize_with` of the module its ``meta.json`` names).

    Returns the summary (``None`` when there are no rows, or the module has nothing to summarise,
    e.g. exp1 with ``alpha = 0``).
    """
    from rbk import sweep
    from rbk.experiments.common import finalize_with

    experiment = sweep.read_meta(out_dir)["config"].get("experiment")
    return finalize_with(module(experiment), out_dir, plot=plot, quiet=quiet)


def format_table(experiment: str, summary: dict) -> str:
    """The printed table of a summary (the module's ``format_table``)."""
    return module(experiment).format_table(summary)


__all__ = ["EXPERIMENTS", "FAMILIES", "module", "profile_spec", "finalize", "format_table", "run"]


def run(experiment: str, out_dir, profile: str = "quick", *, quiet: bool = False, plot: bool = True, **overrides):
    """Run (or resume) ``experiment``'s sweep into ``out_dir``; return its summary (``summary.json``).

    ``None`` on processes other than the writer (multi-process runs) and where
    :func:`finalize` has nothing to summarise.
    """
    from rbk.experiments.common import run_with

    return run_with(module(experiment), out_dir, profile, quiet=quiet, plot=plot, **overrides)


def __getattr__(name: str):
    # rbk.experiments.<experiment> and .<family>, imported on first use
    import importlib

    if name in EXPERIMENTS:
        return importlib.import_module(EXPERIMENTS[name])
    if name in FAMILIES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(EXPERIMENTS) | set(FAMILIES))
