"""Experiment 2 of Allen-Zhu & Li (2019): the (alpha, beta) phase diagram.

Target ``beta * F(x) + alpha * G(F(x))`` (:func:`rbk.targets.paper_instance` with ``alpha``,
``beta``) over a grid of ``(alpha, beta)``; each cell's test error is reported relative to
its threshold ``k alpha^2``. The paper's finding: with ``alpha < beta`` the ResNet learns the
composed part (ratio below 1); with ``alpha > beta`` it practically does not.

All instances of a (learner, N, width) share one compiled call: their data sets ride on
the trainer's data axis together with the seeds (each seed's inputs are the same for every
instance; the labels differ).

Profiles
--------
``quick``  (about 10-20 minutes on a 2-core CPU) alpha in {0.1, 0.3, 0.6, 0.9}, beta in
           {0.1, 0.3, 0.6, 1.0}, N = 10000, ``3resnet``, 1 seed, width 256, 60 epochs, lr 0.02,
           weight decay 1e-3. alpha stays in (0, 1) (the concept class; ``paper_instance``
           refuses alpha = 1), so the top alpha of the grid is 0.9 *(our choice)*.
``paper``  for an accelerator: the same (alpha, beta) grid, N = 10000, ``3resnet`` and
           ``ntk-3resnet``, 3 seeds *(our choice)*, width 512, 800 epochs (lr/10 at 400), lr and
           weight decay over ``{1, 2, 5} x 10^-j``, j = 1..5.

Run ``rbk exp2 --help`` for the options (``python experiments/exp2_alpha_beta.py`` in a clone takes the same).
"""

from __future__ import annotations

from rbk.experiments.common import entry_points
from rbk.experiments.concept_class.options import add_resource_arguments, bind, dry_run, format_table  # noqa: F401
from rbk.experiments.concept_class.profiles import ALPHAS, BETAS, PAPER_GRID  # noqa: F401
from rbk.experiments.concept_class.profiles import EXP2_PROFILES as PROFILES

EXPERIMENT = "exp2"

#: ``spec(profile, **overrides)``: the study of a profile; ``run(out_dir, profile, ...)``: run it, summarise it.
spec, run = entry_points(__name__)
#: ``make_spec(**kw)``: the validated study; the options of ``rbk exp2`` and the keywords of the parsed ones;
#: the figure of a summary (:func:`rbk.experiments.concept_class.options.bind`).
make_spec, add_arguments, overrides, plot = bind(EXPERIMENT)


def summarize(spec, rows, *, quiet: bool = False) -> dict:
    """``summary.json`` of Experiment 2 (:func:`rbk.experiments.concept_class.summarize_exp2`)."""
    from rbk.experiments.concept_class.summary import summarize_exp2

    return summarize_exp2(rows)
