"""Experiment 1 of Allen-Zhu & Li (2019): test error against the number of training samples N.

Target ``H(x) = F(x) + alpha * G(F(x))`` of :func:`rbk.targets.paper_instance` (default the
paper's: ``d = 30``, ``k = 15``, degree-4 ``G``, ``alpha = 0.3``; threshold ``k alpha^2 =
1.35``), networks ``3resnet``, ``3nn``, ``2nn`` trained by SGD and the exact kernels of the
same architectures, every learner on the same data of each seed.

Profiles
--------
``quick``  (the README's main job, minutes on a 2-core CPU) N in {1000, 3000, 10000};
           ``3resnet``, ``3nn``, ``2nn``, ``ntk-3resnet``, ``ntk-2nn``; 3 seeds; width 256,
           60 epochs (lr/10 at 45), lr 0.02, weight decay 1e-3; relative ridges {1e-3, 1e-1}
           for the kernels (two Cholesky factorisations per fit keep N = 10000 within the
           budget; the validation split picks the ridge). *Our choice:* the lr step at 3/4 of
           the run, not 1/2: the ResNet sits on a plateau (it has learned ``F``) until SGD at
           the full learning rate escapes it, at an epoch that float roundings move (another
           CPU or JAX); a step at 30 could land mid-escape and leave a seed above the threshold
           (``docs/experiments.md``, "How much the machine moves the quick profile").
``paper``  the paper's protocol (``docs/paper.md``), for an accelerator: 800 epochs (lr/10 at 400), lr and weight
           decay each over ``{1, 2, 5} x 10^-j``, j = 1..5 (15 x 15 settings), 5 seeds,
           N in {1000, 2000, 5000, 10000, 20000, 50000}, width 512 *(our choice)*; the exact
           NTK and NNGP of all three networks and their random features (width 512), five
           relative ridges; exact kernels up to N = 20000 *(our choice: a float64 Gram of
           N = 50000 needs 40 GB of host RAM and hours of Cholesky)*, ``--kernel-max-n`` to
           change it. The members of a (learner, N) call (5 x 225 = 1125) are chunked to fit
           the device (``--max-members-per-call``; see ``rbk exp1 --profile paper --dry-run``).
``kernels`` exact kernel ridge beyond the dense Gram: ``ntk-3resnet`` and ``ntk-2nn`` at
           N in {20000, 50000, 100000}, relative ridges {1e-3, 1e-1} (as ``quick``), seed 0
           (``--seeds 3`` for three). N = 20000 takes the dense Cholesky path, larger N the
           matrix-free solver (:func:`rbk.kernels.choose_solver`); estimated 40-60 minutes on a
           quiet 2-core CPU for one seed (N = 100000 dominates; ``docs/kernels.md`` section 10
           has what was measured), three seeds about three times that. No networks: run
           ``quick`` for those and compare.

Run ``rbk exp1 --help`` for the options (``python experiments/exp1_sample_complexity.py`` in a clone takes the same).
"""

from __future__ import annotations

from rbk.experiments.common import entry_points
from rbk.experiments.concept_class.options import add_resource_arguments, bind, dry_run, format_table  # noqa: F401
from rbk.experiments.concept_class.profiles import PAPER_GRID  # noqa: F401
from rbk.experiments.concept_class.profiles import EXP1_PROFILES as PROFILES

EXPERIMENT = "exp1"

#: ``spec(profile, **overrides)``: the study of a profile; ``run(out_dir, profile, ...)``: run it, summarise it.
spec, run = entry_points(__name__)
#: ``make_spec(**kw)``: the validated study; the options of ``rbk exp1`` and the keywords of the parsed ones;
#: the figure of a summary (:func:`rbk.experiments.concept_class.options.bind`).
make_spec, add_arguments, overrides, plot = bind(EXPERIMENT)


def summarize(spec, rows, *, quiet: bool = False) -> dict | None:
    """``summary.json`` of Experiment 1 (:func:`rbk.experiments.concept_class.summarize_exp1`) with
    each exact kernel's predicted learning curve (:mod:`rbk.theory`); ``None`` when ``alpha = 0``
    (no threshold)."""
    import sys

    from rbk.experiments.concept_class.summary import summarize_exp1

    alpha, beta = spec.instances[0]
    target = spec.target(alpha, beta)
    threshold = target.threshold
    if not threshold > 0:
        if not quiet:
            print("[rbk] alpha = 0: no threshold k*alpha^2, summary and figure skipped", file=sys.stderr)
        return None
    inst = {"d": spec.d, "k": spec.k, "g_degree": spec.g_degree, "experiment": spec.experiment, "alpha": alpha,
            "beta": beta}  # fmt: skip
    return summarize_exp1(rows, threshold=threshold, instance=inst, predicted=_predicted(spec, target))


def _predicted(spec, target) -> dict:
    """Spectral learning-curve predictions of the sweep's exact-kernel learners (:mod:`rbk.theory`);
    ``{}`` off the uniform cube, where the Walsh spectrum does not apply."""
    from rbk import theory

    learners = theory.spectral_learners(spec.learners)
    if spec.distribution != "cube" or not learners:
        return {}
    return theory.predict_learners(learners, target, spec.ns, spec.ridges, target.threshold,
                                   W_std=spec.W_std, b_std=spec.b_std, noise=spec.noise)  # fmt: skip
