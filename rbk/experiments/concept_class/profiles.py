"""The profiles of Experiments 1 and 2 (``make_spec`` keywords; each experiment's module
documents its own): :data:`EXP1_PROFILES`, :data:`EXP2_PROFILES` and the paper's grid of learning
rates and weight decays (:data:`PAPER_GRID`)."""

from __future__ import annotations

#: ``{1, 2, 5} x 10^-j`` for j = 1..5: the paper's learning rates and weight decays, ascending (as
#: every grid of rbk: ``make_spec`` sorts them).
PAPER_GRID = tuple(sorted(round(m * 10.0**-j, 10) for j in range(1, 6) for m in (5, 2, 1)))

EXP1_PROFILES = {
    "quick": dict(
        learners=("3resnet", "3nn", "2nn", "ntk-3resnet", "ntk-2nn"),
        ns=(1000, 3000, 10000),
        seeds=(0, 1, 2),
        alphas=0.3,
        betas=1.0,
        widths=(256,),
        epochs=60,
        decay_epoch=45,
        lrs=(0.02,),
        wds=(1e-3,),
        ridges=(1e-3, 1e-1),
    ),
    "kernels": dict(
        learners=("ntk-3resnet", "ntk-2nn"),
        ns=(20000, 50000, 100000),
        seeds=(0,),
        alphas=0.3,
        betas=1.0,
        ridges=(1e-3, 1e-1),
    ),
    "paper": dict(
        learners=("3resnet", "3nn", "2nn", "ntk-3resnet", "ntk-3nn", "ntk-2nn", "nngp-3resnet", "nngp-3nn",
                  "nngp-2nn", "rf-3resnet", "rf-3nn", "rf-2nn"),  # fmt: skip
        ns=(1000, 2000, 5000, 10000, 20000, 50000),
        seeds=(0, 1, 2, 3, 4),
        alphas=0.3,
        betas=1.0,
        widths=(512,),
        epochs=800,
        decay_epoch=400,
        lrs=PAPER_GRID,
        wds=PAPER_GRID,
        ridges=(1e-6, 1e-4, 1e-2, 1e-1, 1.0),
        kernel_max_n=20000,
    ),
}

#: Experiment 2's (alpha, beta) grid.
ALPHAS = (0.1, 0.3, 0.6, 0.9)
BETAS = (0.1, 0.3, 0.6, 1.0)

EXP2_PROFILES = {
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
