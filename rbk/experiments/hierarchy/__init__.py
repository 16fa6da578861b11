"""Deep hierarchies and backward feature correction (Allen-Zhu & Li 2020): Experiment 4
(:mod:`.exp4`).

Modules::

    study     Exp4Spec, its cells, the learner registry LEARNERS, the cell runners, make_spec
    summary   summarize (summary.json) and format_table
    figures   plot: test error against N, feature quality over training
    exp4      the registry's module: profiles, command-line options, spec, run
"""

from rbk.experiments.hierarchy.study import LEARNERS, Exp4Spec, make_spec

__all__ = ["Exp4Spec", "LEARNERS", "make_spec"]
