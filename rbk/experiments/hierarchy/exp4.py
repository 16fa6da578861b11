"""Experiment 4: deep hierarchies and backward feature correction (Allen-Zhu & Li 2020).

Target :func:`rbk.targets.hierarchy` (``L`` levels, each a quadratic map of the level below and,
through a skip, of the one before; ``y = sum_l alpha_l s_l``), fixed by ``target_seed``; every
seed draws its own Gaussian data. Learners, all on the same data of a seed (the registry
:data:`LEARNERS`):

* ``deep-joint``        :class:`rbk.models.DeepQuad` (truncated quadratic, skips, a read-out per
                        level), every level trained from the start (``regime_config('joint')``);
* ``deep-layerwise``    the same network, level ``l`` trained only in stage ``l`` (lower levels
                        frozen), the same number of SGD steps;
* ``deep-progressive``  level ``l`` trained from stage ``l`` to the end (optional);
* ``deep-stopgrad``     the stop-gradient ablation of ``deep-progressive`` (optional): the same
                        schedule, but no gradient from a level reaches the levels below
                        (``rbk.train.regime_model('stopgrad', ...)``; predictions unchanged);
* ``ntk-deep``, ``nngp-deep``  kernel ridge with the exact NTK / NNGP of the same architecture;
* ``2nn``               rbk's ReLU two-layer network, the shallow reference.

A network cell is one (learner, N): every (seed, lr) member in one compiled, vmapped call, each
member recording its test error and the feature quality of every level (held-out ridge R^2 of
the target's ``S_l`` from the network's ``h_l``, ``docs/hierarchy.md``) at the recorded epochs.
A kernel cell is one (learner, N, seed), one row per ridge. Selection is by validation error per
(learner, N, seed).

The summary holds the per-level thresholds (``threshold``: the deepest level's, the error of
the best predictor of degree at most that of the level below), test error against N per learner
with Student-t 95 % CIs over seeds, ``n*`` (bootstrap, censored, as Experiments 1 and 3), the
paired (by seed) ``ntk-deep - deep-joint`` difference per N, and per level the paired
``deep-joint - deep-layerwise`` feature quality at the end of training at the largest N, and
both regimes' quality over training (figure 2).

Profiles
--------
``quick``  (17 minutes of wall time on a 2-core machine shared with other jobs, about 700 s of
           CPU; on a quiet one, 2026-12-02: 3.8 minutes, 340 s of user CPU) ``d = 48``, widths (4, 4, 4), alphas (1, 0.8, 0.6), the
           linear output map (``readout='linear'``; the learner reads ``h_l``), N in {2000,
           4000, 8000}, 5 seeds, 10000 test points; DeepQuad width 64 (truncated quadratic,
           clip 2), 90 epochs (30 per stage; lr/10 halfway through the run or the stage), lr in
           {3e-3, 5e-3}; NTK relative ridges {1e-6, ..., 1e-2}; ``2nn`` of width 192 (as many
           hidden units as the deep net) as the shallow reference, same lrs and epochs.
``paper``  for an accelerator (``--dry-run``): the paper's output map (``readout='square'``),
           ``d = 40``, 4 levels, N up to 50000, 5 seeds, width 256, 120 epochs, an lr grid
           *(our choice: the paper's sizes were not verified)*.

Run ``rbk exp4 --help`` for the options (``python experiments/exp4_hierarchy.py`` in a clone takes the
same).
"""

from __future__ import annotations


from rbk.experiments.hierarchy.figures import plot  # noqa: F401 (the registry's interface)
from rbk.experiments.hierarchy.study import (  # noqa: F401
    ACTIVATIONS, EXPERIMENT, FIRSTS, LEARNERS, OWN_FIELDS, READOUTS, Cell, Exp4Spec, Learner, make_spec,
)  # fmt: skip
from rbk.experiments.hierarchy.summary import format_table, summarize  # noqa: F401
from rbk._args import add_options, option_values, options_of
from rbk.experiments.common import add_resource_arguments_of, entry_points

PROFILES = {
    "quick": dict(
        d=48,
        widths=(4, 4, 4),
        alphas=(1.0, 0.8, 0.6),
        readout="linear",
        learners=("deep-joint", "deep-layerwise", "ntk-deep", "2nn"),
        ns=(2000, 4000, 8000),
        seeds=(0, 1, 2, 3, 4),
        width=64,
        epochs=90,
        lrs=(3e-3, 5e-3),
        ridges=(1e-6, 1e-5, 1e-4, 1e-3, 1e-2),
        n_val=2000,
        n_test=10000,
    ),
    "paper": dict(
        d=40,
        widths=(4, 4, 4, 4),
        alphas=(1.0, 0.8, 0.6, 0.4),
        readout="square",
        learners=("deep-joint", "deep-layerwise", "deep-progressive", "ntk-deep", "nngp-deep", "2nn"),
        ns=(2000, 5000, 10000, 20000, 50000),
        seeds=(0, 1, 2, 3, 4),
        width=256,
        epochs=120,
        lrs=(3e-4, 1e-3, 3e-3),
        ridges=(1e-6, 1e-4, 1e-2, 1e-1, 1.0),
        kernel_max_n=20000,
    ),
}


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


#: Experiment 4's command-line options: those of :class:`Exp4Spec`'s fields with a flag (each
#: overrides the profile's value; ``make_spec`` checks them).
OPTIONS = tuple(o for o in options_of(Exp4Spec) if o.field not in Exp4Spec.resource_fields)


def add_resource_arguments(r) -> None:
    """``--max-members-per-call``, in the command's "resources" group ``r``."""
    add_resource_arguments_of(Exp4Spec, r)


def add_arguments(parser) -> None:
    """Experiment 4's own options (:data:`OPTIONS`)."""
    add_options(parser.add_argument_group("the hierarchy and its learners"), OPTIONS)


def overrides(args) -> dict:
    """``make_spec`` keywords of the parsed options (``None``: not given), the command's
    ``--matmul-precision`` included."""
    return dict(option_values(args, options_of(Exp4Spec)), matmul_precision=args.matmul_precision)  # resources too


#: ``spec(profile, **overrides)``: the study of a profile; ``run(out_dir, profile, ...)``: run it, summarise it.
spec, run = entry_points(__name__)

