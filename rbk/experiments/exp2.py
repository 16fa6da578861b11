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

from rbk.experiments.exp1 import PAPER_GRID, format_table  # noqa: F401 (the same table)

EXPERIMENT = "exp2"

ALPHAS = (0.1, 0.3, 0.6, 0.9)
BETAS = (0.1, 0.3, 0.6, 1.0)

PROFILES = {
    "quick": dict(
        learners=("3resnet",),
        ns=(10000,),
        seeds=(0,),
        alphas=ALPHAS,
        betas=BETAS,
        widths=(256,),
        epochs=60,
        lrs=(0.02,),
        wds=(1e-3,),
        ridges=(1e-3, 1e-1),
    ),
    "paper": dict(
        learners=("3resnet", "ntk-3resnet"),
        ns=(10000,),
        seeds=(0, 1, 2),
        alphas=ALPHAS,
        betas=BETAS,
        widths=(512,),
        epochs=800,
        decay_epoch=400,
        lrs=PAPER_GRID,
        wds=PAPER_GRID,
        ridges=(1e-6, 1e-4, 1e-2, 1e-1, 1.0),
    ),
}


def spec(profile: str = "quick", **overrides):
    """The :class:`rbk.sweep.SweepSpec` of ``profile`` with ``make_spec`` overrides."""
    from rbk.experiments import profile_spec

    return profile_spec("exp2", profile, **overrides)


def run(out_dir, profile: str = "quick", *, quiet: bool = False, plot: bool = True, **overrides) -> dict | None:
    """Run (or resume) the sweep into ``out_dir`` and return its summary (``summary.json``)."""
    from rbk import experiments

    return experiments.run("exp2", out_dir, profile, quiet=quiet, plot=plot, **overrides)



def make_spec(**kw):
    """The validated :class:`rbk.sweep.SweepSpec` of this experiment (``rbk.sweep.make_spec``)."""
    from rbk import sweep

    return sweep.make_spec(EXPERIMENT, **kw)


def summarize(spec, rows, *, quiet: bool = False) -> dict:
    """``summary.json`` of Experiment 2 (:func:`rbk.stats.summarize_exp2`)."""
    from rbk import stats

    return stats.summarize_exp2(rows)


def plot(summary, out_dir):
    from rbk import plots

    return plots.plot_exp2(summary, out_dir, name=EXPERIMENT)
