"""Training regimes of :class:`rbk.models.DeepQuad`: which levels train when (joint, layer-wise,
progressive), as a :class:`rbk.train.TrainConfig` with ``phases``."""

from __future__ import annotations

from rbk._checks import check_choice, check_int
from rbk.train.recipe import TrainConfig, config

# --------------------------------------------------------------------------- training regimes

REGIMES = ("joint", "layerwise", "progressive")


def regime_config(regime: str, levels: int, epochs: int, *, record_per_stage: int = 2, **kwargs) -> TrainConfig:
    """A :class:`TrainConfig` training the levels of a :class:`rbk.models.DeepQuad` by ``regime``.

    The run has ``epochs`` epochs split into ``levels`` equal stages (``epochs`` must be a multiple):
    ``'joint'``: every level from the start, the plain recipe; ``'layerwise'``: level ``l`` only in
    stage ``l``, frozen before (at its initialisation, read-out 0) and after (each stage a full
    run of the recipe, its own decay); ``'progressive'``: level ``l`` from stage ``l`` to the end.
    Errors and probes are recorded ``record_per_stage`` times per stage. ``kwargs`` go to
    :func:`config` (not ``phases`` or ``record_epochs``). The same number of SGD steps in all three.
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

    if regime == "joint":
        phases = None
    elif regime == "layerwise":
        phases = {level_label(l): ((l - 1) * stage, l * stage) for l in range(1, levels + 1)}
    else:
        phases = {level_label(l): ((l - 1) * stage, epochs) for l in range(1, levels + 1)}
    rec = sorted({max(1, (s * stage) + (stage * (i + 1)) // record_per_stage)
                  for s in range(levels) for i in range(record_per_stage)})
    return config(epochs, record_epochs=rec, phases=phases, **kwargs)
