"""Training regimes of :class:`rbk.models.DeepQuad`: which levels train when (joint, layer-wise,
progressive) and, for the stop-gradient ablation, which gradients reach them, as a
:class:`rbk.train.TrainConfig` with ``phases`` (:func:`regime_config`) and the model the regime
trains (:func:`regime_model`)."""

from __future__ import annotations

import dataclasses

from rbk._checks import check_choice, check_int
from rbk.train.recipe import TrainConfig, config

# --------------------------------------------------------------------------- training regimes

REGIMES = ("joint", "layerwise", "progressive", "stopgrad")
#: The stage schedule of the stop-gradient ablation (the regime it ablates).
STOPGRAD_SCHEDULE = "progressive"


def regime_config(regime: str, levels: int, epochs: int, *, record_per_stage: int = 2, **kwargs) -> TrainConfig:
    """A :class:`TrainConfig` training the levels of a :class:`rbk.models.DeepQuad` by ``regime``.

    The run has ``epochs`` epochs split into ``levels`` equal stages (``epochs`` must be a multiple):
    ``'joint'``: every level from the start, the plain recipe; ``'layerwise'``: level ``l`` only in
    stage ``l``, frozen before (at its initialisation, read-out 0) and after (each stage a full
    run of the recipe, its own decay); ``'progressive'``: level ``l`` from stage ``l`` to the end;
    ``'stopgrad'``: the progressive schedule (:data:`STOPGRAD_SCHEDULE`), to be run on
    :func:`regime_model`'s stop-gradient network (the backward path from every level into the
    levels below removed; a config carries no model, so the caller must use that model).
    Errors and probes are recorded ``record_per_stage`` times per stage. ``kwargs`` go to
    :func:`config` (not ``phases`` or ``record_epochs``). The same number of SGD steps in all.
    """
    check_choice("regime", regime, REGIMES)
    levels = check_int("levels", levels, lo=1)
    epochs = check_int("epochs", epochs, lo=levels)
    record_per_stage = check_int("record_per_stage", record_per_stage, lo=1)
    if epochs % levels:
        raise ValueError(f"epochs must be a multiple of levels={levels} (equal stages), got {epochs}")
    for bad in ("phases", "record_epochs"):
        if bad in kwargs:
            raise ValueError(f"regime_config sets {bad} itself; do not pass it")
    stage = epochs // levels
    from rbk.models import level_label

    schedule = STOPGRAD_SCHEDULE if regime == "stopgrad" else regime
    if schedule == "joint":
        phases = None
    elif schedule == "layerwise":
        phases = {level_label(l): ((l - 1) * stage, l * stage) for l in range(1, levels + 1)}
    else:
        phases = {level_label(l): ((l - 1) * stage, epochs) for l in range(1, levels + 1)}
    rec = sorted({max(1, (s * stage) + (stage * (i + 1)) // record_per_stage)
                  for s in range(levels) for i in range(record_per_stage)})
    return config(epochs, record_epochs=rec, phases=phases, **kwargs)


def regime_model(regime: str, model):
    """The network ``regime`` trains: for ``'stopgrad'``, ``model`` with every level's output
    detached on its way up (``DeepQuad.stop_gradient = (1, ..., L-1)``: all levels train, but no
    gradient from level ``l+1`` or above reaches the parameters of levels ``<= l``; the forward
    pass, the initialisation and so every prediction at equal parameters are unchanged); for the
    other regimes, ``model`` itself. ``model`` must be an :class:`rbk.models.DeepQuad`."""
    check_choice("regime", regime, REGIMES)
    from rbk.models import DeepQuad

    if not isinstance(model, DeepQuad):
        raise ValueError(f"model must be an rbk.models.DeepQuad (use rbk.models.get_deepquad), "
                         f"got {type(model).__name__}")
    if regime != "stopgrad":
        return model
    return dataclasses.replace(model, stop_gradient=tuple(range(1, model.levels)))
