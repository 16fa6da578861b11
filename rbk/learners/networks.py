"""Networks trained by :mod:`rbk.train` as learners: SGD (:func:`sgd_rows`), the deep regimes
(:func:`regime_rows`) and the two-stage learner (:func:`two_stage_rows`), thin adapters that turn
each call's result into rows.

A network row holds ``base``'s fields, then ``train_error``, ``val_error``, ``test_error`` (after
the last epoch), ``lr``, ``wd``, ``diverged`` (the trainer's flag, or a non-finite error) and,
as ``record`` names them: ``'timing'`` (``call_wall_s``, ``compile_s``, ``run_s``), ``'curve'``
(``record_epochs`` and ``test_over_training``, the test error at each recorded epoch).
"""

from __future__ import annotations

import math
import time
from typing import Callable, Mapping, Sequence

from rbk._checks import check_choice, check_list
from rbk.learners.kernel import SPLITS

#: What :func:`train_rows` may record beyond the errors, ``lr``, ``wd`` and ``diverged``.
RECORD = ("timing", "curve")


def train_rows(res, *, lrs: Sequence[float] | None = None, wds: Sequence[float] | None = None,
               base: Mapping | Callable[[int], Mapping] | None = None, record: Sequence[str] = (),
               wall: float | None = None, inf_if_diverged: bool = False) -> list[dict]:
    """One row per ``(seed, lr, wd)`` member of a :class:`rbk.train.TrainResult`, seed-major.

    ``lrs``, ``wds``: the grids as the caller wrote them (the result holds them in float32);
    default ``res.lrs``, ``res.wds``. ``base``: the fields every row starts from, or a function
    of the seed index giving them. ``inf_if_diverged``: a diverged member's errors are ``inf``.
    ``wall``: the call's wall time (default ``compile_s + run_s``)."""
    record = check_list("record", record, lambda n, v: check_choice(n, v, RECORD), empty=True)
    lrs = [float(v) for v in (res.lrs if lrs is None else lrs)]
    wds = [float(v) for v in (res.wds if wds is None else wds)]
    fin = {sp: res.final(sp) for sp in SPLITS}
    if fin["test"].shape[1:] != (len(lrs), len(wds)):
        raise ValueError(f"lrs and wds must match the result's grid {fin['test'].shape[1:]}, got {len(lrs)} x {len(wds)}")
    wall = res.compile_s + res.run_s if wall is None else wall
    rows = []
    for i in range(fin["test"].shape[0]):
        for j, lr in enumerate(lrs):
            for m, wd in enumerate(wds):
                r = dict((base(i) if callable(base) else base) or {})
                errs = {sp: float(fin[sp][i, j, m]) for sp in SPLITS}
                div = bool(res.diverged[i, j, m]) or not all(math.isfinite(e) for e in errs.values())
                if div and inf_if_diverged:
                    errs = dict.fromkeys(errs, math.inf)
                r.update({f"{sp}_error": e for sp, e in errs.items()})
                r.update(lr=lr, wd=wd, diverged=div)
                if "timing" in record:
                    r.update(call_wall_s=wall, compile_s=res.compile_s, run_s=res.run_s)
                if "curve" in record:
                    r.update(record_epochs=list(res.record_epochs),
                             test_over_training=[float(v) for v in res.errors["test"][i, j, m]])
                rows.append(r)
    return rows


def sgd_rows(model, data, keys, lrs: Sequence[float], wds: Sequence[float], cfg=None, *,
             base: Mapping | Callable[[int], Mapping] | None = None, record: Sequence[str] = (),
             inf_if_diverged: bool = False, devices=None, progress=None,
             max_members: int | None = None) -> list[dict]:
    """:func:`rbk.train.train` on ``data`` (one split, or seeds stacked) with ``keys``, as :func:`train_rows`
    (``max_members``: the most members per compiled call, as there)."""
    from rbk import train

    t0 = time.perf_counter()
    res = train.train(model, data, keys, lrs, wds, cfg, devices=devices, progress=progress, max_members=max_members)
    return train_rows(res, lrs=lrs, wds=wds, base=base, record=record, wall=time.perf_counter() - t0,
                      inf_if_diverged=inf_if_diverged)


def regime_rows(regime: str, model, data, keys, lrs: Sequence[float], wds: Sequence[float], epochs: int, *,
                record_per_stage: int = 2, base: Mapping | Callable[[int], Mapping] | None = None,
                record: Sequence[str] = ("curve",), devices=None, progress=None, **config_kwargs) -> list[dict]:
    """A :class:`rbk.models.DeepQuad` trained by ``regime`` (:data:`rbk.train.REGIMES`) for
    ``epochs`` epochs (:func:`rbk.train.regime_config` with the model's levels), as :func:`sgd_rows`;
    each row also records ``regime``."""
    from rbk import train

    levels = getattr(model, "levels", None)
    if levels is None:
        raise ValueError(f"model must be an rbk.models.DeepQuad (it has levels), got {type(model).__name__}")
    cfg = train.regime_config(regime, levels, epochs, record_per_stage=record_per_stage, **config_kwargs)
    return [dict(r, regime=regime) for r in sgd_rows(model, data, keys, lrs, wds, cfg, base=base, record=record,
                                                     devices=devices, progress=progress)]


def two_stage_rows(data, key, cfg=None, *, base: Mapping | None = None, eta_scale: float = 1.0) -> list[dict]:
    """:func:`rbk.train.two_stage` on one split: one row per ``(eta, ridge)``, eta-major, with
    ``eta`` (divided by ``eta_scale``, e.g. ``sqrt(d)`` for multipliers), ``ridge`` and the three
    errors at that pair, and ``test_cov`` (:func:`rbk.learners.ridge_rows`'); an eta whose step diverged gives
    ``inf`` errors at every ridge."""
    from rbk import train

    cfg = train.two_stage_config() if cfg is None else cfg
    res = train.two_stage(data, key, cfg)
    rows = []
    for eta, path in zip(cfg.etas, res.get("ridge_paths") or [None] * len(cfg.etas)):
        head = dict(base or {}, eta=eta / eta_scale)
        if path is None:  # the step gave non-finite weights
            rows += [dict(head, ridge=lam, train_error=math.inf, val_error=math.inf, test_error=math.inf)
                     for lam in cfg.ridges]
            continue
        rows += [dict(head, ridge=lam, train_error=float(tr), val_error=float(va), test_error=float(te),
                      test_cov=float(cv))
                 for lam, tr, va, te, cv in zip(path["lams"], path["train_errors"], path["val_errors"],
                                                path["test_errors"], path["test_covs"])]
    return rows
