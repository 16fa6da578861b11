"""The practical training recipe, compiled once and vmapped over seeds x learning rates x weight decays.

Recipe (the paper's, ``docs/paper.md``; with PyTorch's SGD semantics)::

    loss     = 0.5 * mean over the batch of the squared error summed over the k outputs
    update   = optax.chain(add_decayed_weights(wd), sgd(lr_t, momentum=0.9))   # coupled L2
    lr_t     = lr, divided by 10 from epoch ``decay_epoch`` (default E/2) on
    batches  = 50 examples, a fresh permutation each epoch, the last partial batch dropped
    (opt-in) clip_by_global_norm(clip_norm) of each batch gradient first (``config(clip_norm=...)``)

The reported error is that of the final epoch (no early stopping): the mean over points of
the squared error summed over the ``k`` outputs, on the training, validation and test split.

One call of :func:`train` is one compiled XLA program: ``lax.scan`` over epochs and steps,
``vmap`` over the *members* (every (seed, learning rate, weight decay) triple). Width,
architecture and ``N`` change shapes, so each is its own call. Each seed has its own data
and its own training key (initialisation and batch order); members of one seed that differ
only in hyper-parameters share both (common random numbers, a fairer selection).
A member whose loss or parameters become NaN/inf is flagged ``diverged``; vmapped members
are independent, so the others are unaffected.

With several local devices (GPUs, TPU cores, or a CPU split into devices) the member axis is
split across them with ``jax.shard_map`` (data replicated), never over more devices than
there are members. On a GPU or TPU each device vmaps its members; on CPU devices they run one
after another inside the compiled call (``CPU_MEMBER_GROUP``; faster there than one wide
vmap, see :func:`rbk.train.devices.member_group`). :func:`configure_cpu_devices` splits the host CPU into one
device per core *before* JAX starts (``rbk`` on the command line does it): members then train
concurrently, one per core, while a single member still uses every core.

Where each part lives: :mod:`rbk.train.recipe` (:class:`TrainConfig`, :func:`config`,
:class:`TrainResult`), :mod:`rbk.train.sgd` (the optimiser, the compiled call :func:`train`,
its first half :func:`prepare`, :func:`fit`, :func:`total_flops`), :mod:`rbk.train.devices`
(splitting the members over devices, :func:`configure_cpu_devices`), :mod:`rbk.train.regimes`
(:data:`REGIMES`, :func:`regime_config`) and :mod:`rbk.train.twostage` (the two-stage learner
of Damian, Lee & Soltanolkotabi: :func:`two_stage`, :func:`fit_readout`, ...). Every public
name is importable from :mod:`rbk.train` itself.
"""

from __future__ import annotations

from rbk.train.recipe import MATMUL_PRECISIONS, SPLITS, TrainConfig, TrainResult, config
from rbk.train.devices import CPU_MEMBER_GROUP, configure_cpu_devices, devices_used, member_group
from rbk.train.sgd import batch_loss, error, fit, optimizer, prepare, progress_sinks, total_flops, train
from rbk.train.regimes import REGIMES, STOPGRAD_SCHEDULE, regime_config, regime_model
from rbk.train.twostage import (ETA_RULES, INITS, PREPROCESS, RIDGE_KINDS, TwoStageConfig, first_step, fit_readout,
                                gaussian_init, giant_step, linear_part, symmetric_init, two_stage, two_stage_config)

__all__ = [
    "MATMUL_PRECISIONS",
    "SPLITS",
    "TrainConfig",
    "TrainResult",
    "config",
    "CPU_MEMBER_GROUP",
    "configure_cpu_devices",
    "devices_used",
    "member_group",
    "batch_loss",
    "error",
    "fit",
    "optimizer",
    "prepare",
    "progress_sinks",
    "total_flops",
    "train",
    "REGIMES",
    "regime_config",
    "regime_model",
    "STOPGRAD_SCHEDULE",
    "PREPROCESS",
    "TwoStageConfig",
    "first_step",
    "fit_readout",
    "linear_part",
    "symmetric_init",
    "gaussian_init",
    "giant_step",
    "INITS",
    "ETA_RULES",
    "RIDGE_KINDS",
    "two_stage",
    "two_stage_config",
]
