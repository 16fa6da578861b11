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
* ``ntk-deep``, ``nngp-deep``  kernel ridge with the exact NTK / NNGP of the same architecture
                        (their own N grid, ``kernel_ns``; the matrix-free solver above N = 20000);
* ``two-stage``         the control of Experiment 3 (:func:`rbk.train.two_stage`: one gradient
                        step on a ReLU layer, a ridge read-out): the target is a polynomial of
                        ``z = U x``, so this asks what depth buys over one step;
* ``2nn``               rbk's ReLU two-layer network, the shallow reference.

A network cell is one (learner, N): every (seed, lr) member in one compiled, vmapped call, each
member recording its test error and, per level and recorded epoch, two feature qualities: the
held-out ridge R^2 of the target's ``S_l`` from the network's ``h_l`` (``feature_quality``; 1 at
level 1 whenever the width is at least ``d``) and the span quality (``subspace_quality``: mean
``cos^2`` of the principal angles between the teacher's ``S_l`` and the top ``k_l`` principal
components of ``h_l``; not saturated by the width). A kernel or two-stage cell is one (learner,
N, seed), one row per setting. Selection is by validation error per (learner, N, seed); a
learner that selects among several settings counts the ``n_val`` validation labels in its
``labels`` (``n*`` is in labels). Every test error is variance-reduced with the exact ``E[y^2]``
as a control variate (``test_error_raw``: the plain MSE; ``test_beta``: the coefficient).

The summary holds the per-level thresholds (``threshold``: the deepest level's, the error of
the best predictor of degree at most that of the level below), test error against N per learner
with Student-t 95 % CIs over seeds, ``n*`` (bootstrap, censored, as Experiments 1 and 3), the
paired (by seed) ``ntk-deep - deep-joint`` difference per N, per level the paired
``deep-joint - deep-layerwise`` feature quality at the end of training, every deep regime's
quality over training, ``correction`` (the backward feature correction: level ``l``'s quality
gain after level ``l + 1`` starts training, minus the stop-gradient ablation's, paired by seed),
``predicted`` (the NTK's curve from its Gaussian spectrum) and ``comparison`` (the deepest
threshold's ``n*`` of every learner, measured and predicted, and the NTK's over the deep net's).

Profiles
--------
``quick``  the paper's output map (``readout='square'``: ``y = sum_l alpha_l std(|S_l|^2)``, degree
           8 in ``z``), ``d = 32``, widths (4, 4, 4), alphas (1, 0.8, 0.6); networks at N in
           {8000, 16000, 32000}, the NTK at {2000, 8000, 32000} (at 32000, by the matrix-free
           solver, about 6 minutes a fit here: seeds 0 and 1 only), 8 seeds, 10000 test points
           and, for the networks, 100000 importance-sampled ones (21 minutes on 2 cores);
           DeepQuad width 64 (truncated quadratic, clip 2), 90 epochs (30 per stage; lr/10
           halfway through the run or the stage), one learning rate 1e-3 (no selection: at 2e-3
           and above members diverged in the sizing); NTK relative ridges {1e-4, 1e-3, 1e-2};
           two-stage width 512, steps {0.25, 0.5, 1, 2} sqrt(d), read-out ridges {1e-4 .. 1};
           ``2nn`` of width 192 (as many hidden units as the deep net), same lr and epochs.
``linear`` the earlier quick profile, the mechanism's plainest form: the linear output map
           (``readout='linear'``; the learner reads ``h_l``), ``d = 48``, N in {2000, 4000, 8000},
           5 seeds, lr in {3e-3, 5e-3}, NTK ridges {1e-6, ..., 1e-2}; with zero-initialised heads
           its layer-wise stage 1 sees a rank-1 gradient, so the layer-wise gap is built in
           (``docs/hierarchy.md``).
``paper``  for an accelerator (``--dry-run``): ``d = 40``, 4 levels, N up to 50000, 8 seeds,
           width 256, 120 epochs, an lr grid *(our choice: the paper's sizes were not verified)*.

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
        d=32,
        widths=(4, 4, 4),
        alphas=(1.0, 0.8, 0.6),
        readout="square",
        learners=("deep-joint", "deep-layerwise", "deep-progressive", "deep-stopgrad", "two-stage", "ntk-deep", "2nn"),
        ns=(8000, 16000, 32000),
        kernel_ns=(2000, 8000, 32000),
        kernel_large_seeds=2,
        seeds=(0, 1, 2, 3, 4, 5, 6, 7),
        width=64,
        epochs=90,
        lrs=(1e-3,),
        ridges=(1e-4, 1e-3, 1e-2),
        n_val=2000,
        n_test=10000,
        n_test_importance=100000,
    ),
    "linear": dict(
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
        learners=("deep-joint", "deep-layerwise", "deep-progressive", "deep-stopgrad", "two-stage", "ntk-deep",
                  "nngp-deep", "2nn"),
        ns=(2000, 5000, 10000, 20000, 50000),
        seeds=(0, 1, 2, 3, 4, 5, 6, 7),
        width=256,
        epochs=120,
        lrs=(3e-4, 1e-3),
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

