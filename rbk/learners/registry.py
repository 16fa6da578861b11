"""The learner registry: every learner by name, with its kind, the grid it selects over, how it
runs on a cell's data and the row fields it records.

A learner's ``run(data, key, **settings)`` takes one :class:`rbk.data.Dataset` (networks: also
seeds stacked, with one key per seed) and its PRNG key(s), and returns one dict per setting of
its grid, each holding at least ``fields``. Selection (the caller's) is by ``val_error`` over
``grid``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from rbk.learners.kernel import kernel_rows, random_features_rows
from rbk.learners.networks import regime_rows, sgd_rows, two_stage_rows

#: The error fields every learner's rows hold.
ERRORS = ("train_error", "val_error", "test_error")
#: The kinds of learner.
KINDS = ("kernel", "random-features", "sgd", "two-stage", "regime")


@dataclasses.dataclass(frozen=True)
class Learner:
    """A registered learner.

    Attributes:
      name: its registry name.
      kind: one of :data:`KINDS`.
      grid: the row fields it selects over (one row per combination).
      fields: the row fields every row records (the grid's and the errors at least).
      run: ``run(data, key, **settings) -> list[dict]`` (settings: see the learner's ``doc``).
      doc: one line on what it is and the settings ``run`` takes.
    """

    name: str
    kind: str
    grid: tuple[str, ...]
    fields: tuple[str, ...]
    run: Callable
    doc: str


def _kernel(get: str) -> Callable:
    def run(data, key=None, *, kernel, ridges, **kwargs):
        return kernel_rows(kernel, data, ridges, get=get, **kwargs)

    return run


def _random_features(data, key, *, model, ridges, **kwargs):
    return random_features_rows(model, model.init(key), data, ridges, **kwargs)


def _sgd(data, key, *, model, lrs, wds, cfg=None, **kwargs):
    return sgd_rows(model, data, key, lrs, wds, cfg, **kwargs)


def _two_stage(data, key, *, cfg=None, **kwargs):
    return two_stage_rows(data, key, cfg, **kwargs)


def _regime(regime: str) -> Callable:
    def run(data, key, *, model, lrs, wds, epochs, **kwargs):
        return regime_rows(regime, model, data, key, lrs, wds, epochs, **kwargs)

    return run


def _stopgrad(data, key, *, model, **kwargs):
    from rbk.train import regime_model

    return _regime("stopgrad")(data, key, model=regime_model("stopgrad", model), **kwargs)


_RIDGE = ("ridge",)
_NET = ("lr", "wd")
LEARNERS: dict[str, Learner] = {
    "ntk": Learner("ntk", "kernel", _RIDGE, _RIDGE + ERRORS, _kernel("ntk"),
                   "kernel ridge with a kernel's NTK: kernel=, ridges= (and base=, record=, block_size=, solver=)"),
    "nngp": Learner("nngp", "kernel", _RIDGE, _RIDGE + ERRORS, _kernel("nngp"),
                    "kernel ridge with a kernel's NNGP: kernel=, ridges= (and base=, record=, block_size=, solver=)"),
    "rf": Learner("rf", "random-features", _RIDGE, _RIDGE + ERRORS, _random_features,
                  "the read-out of a network drawn with key, by ridge: model=, ridges= (and base=, record=)"),
    "sgd": Learner("sgd", "sgd", _NET, _NET + ERRORS + ("diverged",), _sgd,
                   "rbk.train.train over lrs x wds: model=, lrs=, wds=, cfg= (and base=, record=, devices=, ...)"),
    "two-stage": Learner("two-stage", "two-stage", ("eta", "ridge"), ("eta", "ridge") + ERRORS, _two_stage,
                         "rbk.train.two_stage (Algorithm 1): cfg= (a TwoStageConfig; and base=, eta_scale=)"),
    **{f"deep-{r}": Learner(f"deep-{r}", "regime", _NET, _NET + ERRORS + ("diverged", "regime"), _regime(r),
                            f"a DeepQuad trained {r} (rbk.train.regime_config): model=, lrs=, wds=, epochs=")
       for r in ("joint", "layerwise", "progressive")},
    "deep-stopgrad": Learner("deep-stopgrad", "regime", _NET, _NET + ERRORS + ("diverged", "regime"), _stopgrad,
                             "the stop-gradient ablation: a DeepQuad trained progressive with no gradient from a level "
                             "into those below (rbk.train.regime_model): model=, lrs=, wds=, epochs="),
}


def names(kind: str | None = None) -> tuple[str, ...]:
    """The registered learners' names (of ``kind`` only, if given), in registry order."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    return tuple(n for n, lr in LEARNERS.items() if kind is None or lr.kind == kind)


def get(name: str) -> Learner:
    """The learner registered as ``name`` (``ValueError`` listing the registered names otherwise)."""
    if not isinstance(name, str) or name not in LEARNERS:
        raise ValueError(f"learner must be one of {list(LEARNERS)}, got {name!r}")
    return LEARNERS[name]
