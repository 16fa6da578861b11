"""The concept class of Allen-Zhu & Li (2019): Experiments 1 (:mod:`.exp1`, test error against N)
and 2 (:mod:`.exp2`, the (alpha, beta) phase diagram), one study (:class:`SweepSpec`).

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


Rows
----
A concept-class row (:data:`ROW_FIELDS`, the columns :mod:`rbk.stats` reads, then
:data:`EXTRA_FIELDS`) adds to :data:`rbk.sweep.CORE_FIELDS` the learner's ``arch`` and settings
(``width, epochs, lr, wd`` of a network, the relative ``ridge`` of a kernel), the target's
parameters ``alpha, beta, d, k, g_degree`` and its ``threshold`` (``Target.threshold``,
``k * alpha^2``), then the call's bookkeeping (absolute ridge, compile and run seconds,
members, process, kernel solver). A finished sweep is extended by a config that only adds
values to ``ns`` or ``seeds`` (:func:`extension_parts`).

Modules::

    learners   the learner names: parse_learner, LEARNERS, NET_KIND, KERNEL_KINDS
    study      SweepSpec, make_spec and its checks, the row columns, extension_parts
    planner    Cell, plan (run order), the chunking of a call's members
    runners    one cell's rows: a compiled network call or one kernel / random-feature fit
    cost       memory and FLOP estimates: resolve_max_members, memory_problems, format_plan
    profiles   the profiles of both experiments, PAPER_GRID
    summary    summarize_exp1, summarize_exp2, separation_ratio, threshold_of
    figures    plot_exp1 / figure_exp1, plot_exp2 / figure_exp2, format_table
    options    the command-line options and the dry run of both experiments
    exp1, exp2 the registry's modules (rbk.experiments.EXPERIMENTS)
"""

from rbk.experiments.concept_class.learners import KERNEL_KINDS, LEARNERS, NET_KIND, parse_learner
from rbk.experiments.concept_class.study import (
    ALL_FIELDS, EXPERIMENTS, EXTRA_FIELDS, ROW_FIELDS, SCHEMA_VERSION, SweepSpec, extension_parts, make_spec,
)  # fmt: skip
from rbk.experiments.concept_class.planner import Cell, plan
from rbk.experiments.concept_class.cost import (
    MEMORY_FRACTION, cell_flops, format_plan, kernel_cell_bytes, memory_problems, resolve_max_members,
)  # fmt: skip
from rbk.experiments.concept_class.runners import dataset
from rbk.experiments.concept_class.summary import (
    is_exp2_summary, separation_ratio, summarize_exp1, summarize_exp2, threshold_of,
)  # fmt: skip

__all__ = [
    "SweepSpec", "make_spec", "EXPERIMENTS", "SCHEMA_VERSION", "ROW_FIELDS", "EXTRA_FIELDS", "ALL_FIELDS",
    "LEARNERS", "NET_KIND", "KERNEL_KINDS", "parse_learner", "Cell", "plan", "dataset", "extension_parts",
    "MEMORY_FRACTION", "resolve_max_members", "memory_problems", "kernel_cell_bytes", "cell_flops", "format_plan",
    "summarize_exp1", "summarize_exp2", "is_exp2_summary", "separation_ratio", "threshold_of",
    "plot_exp1", "figure_exp1", "plot_exp2", "figure_exp2", "format_table", "print_table",
]  # fmt: skip

_FIGURES = ("plot_exp1", "figure_exp1", "plot_exp2", "figure_exp2", "format_table", "print_table")


def __getattr__(name: str):
    # the figures on use (matplotlib is imported by them only)
    if name in _FIGURES:
        from rbk.experiments.concept_class import figures

        return getattr(figures, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
