"""Damian, Lee & Soltanolkotabi's two-stage learner (Algorithm 1): symmetric init, one large
gradient step on the first layer, a ridge read-out (:func:`two_stage`, :func:`fit_readout`);
and the one-step family around it (Gaussian init, kept initial weights, ``eta = c sqrt(n p)``,
absolute ridge), with the preset :func:`giant_step` of Dandi et al. (2023)."""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rbk._checks import check_array, check_choice, check_int, check_real
from rbk.data import Dataset
from rbk.models import Model, get_model
from rbk.train.sgd import batch_loss

# --------------------------------------------------------------------------- the two-stage learner
#
# Damian, Lee & Soltanolkotabi, "Neural Networks can Learn Representations with Gradient
# Descent" (COLT 2022, arXiv 2206.15144), Section 3, Algorithm 1. What rbk does, step by step
# (the paper's statement, as rbk reads it, in brackets; deviations marked):
#
#   network    f(x) = sum_j a_j relu(w_j . x + b_j), width m even.
#   init       symmetric: w_j = w_{j+m/2} ~ N(0, s^2 I_d / d), a_j = +1, a_{j+m/2} = -1, b_j = 0,
#              so f = 0 at initialisation.
#   preprocess alpha = mean(y), beta = mean(y x) over the N training points; the learner fits
#              y - alpha - beta . x and adds alpha + beta . x back [Algorithm 1's preprocessing].
#   step 1     one full-batch gradient step on W alone, on the first N1 = split * N points,
#              learning rate eta, weight decay lambda = 1/eta, so W1 = -eta grad_W L(W0)
#              [one large step with lambda_1 = 1/eta_1; eta_1 of order sqrt(d)].
#   biases     re-drawn, b_j ~ N(0, bias_std^2) [re-initialised after step 1].
#   step 2     the output layer by ridge regression (float64, closed form) on the other N - N1
#              points, the ridge (and eta, from a grid) chosen on the validation split
#              [the paper runs T steps of gradient descent with weight decay on a alone, a convex
#              problem whose limit is this ridge solution: deviation, its exact minimiser].
#
# Not verified against the paper's PDF here (no copy was reachable): the independent split of
# the samples between the two stages (analyses of one-step feature learning use fresh samples
# for the second stage; ``split=None`` reuses all N points for both), the init scale and the
# bias law. Loss: 0.5 * mean squared error, as everywhere in rbk.
#
# The one-step family (options of the same learner; the defaults are Algorithm 1 above):
#   init='gaussian'       w_j ~ N(0, s^2 I_d / d), a_j ~ N(0, 1/m), output scaled by 1/sqrt(m)
#                         (stored as A = a / sqrt(m) in the standard 2nn), b_j = 0.
#   keep_init=True        no weight decay in step 1: W1 = W0 - eta grad_W L(W0).
#   eta_rule='sqrt_np'    the etas are multipliers c: eta = c sqrt(N1 m), N1 = step-1 points.
#   ridge_kind='absolute' min sum_i (y_i - phi_i v)^2 + lam m |v|^2 on phi = relu(x W + b), i.e.
#                         ridge lam on the features phi / sqrt(m) (no rescaling by their size).

PREPROCESS = ("mean_linear", "mean", "none")
INITS = ("symmetric", "gaussian")
ETA_RULES = ("fixed", "sqrt_np")
RIDGE_KINDS = ("relative", "absolute")


@dataclasses.dataclass(frozen=True)
class TwoStageConfig:
    """Settings of :func:`two_stage` (hashable; build it with :func:`two_stage_config`).

    Attributes:
      width: hidden units ``m`` (even: with ``init='symmetric'`` neurons come in opposite pairs).
      etas: first-step learning rates (``eta_rule='sqrt_np'``: their multipliers ``c``); each is
        tried and the validation error picks one.
      split: fraction of the ``N`` training points used by step 1 (the rest fit the output
        layer); ``None``: both stages use all ``N`` points.
      preprocess: ``'mean_linear'`` (Algorithm 1: remove ``alpha + beta . x``), ``'mean'``
        (only ``alpha``) or ``'none'``.
      init_scale: ``w_j ~ N(0, init_scale^2 I_d / d)``.
      bias_std: standard deviation of the re-drawn biases.
      ridges: ridges of the output layer: relative (see
        :func:`rbk.kernels.random_features_fit_predict`) or absolute (``ridge_kind``).
      init: ``'symmetric'`` (Algorithm 1: paired neurons, ``a = +-1``, output 0) or
        ``'gaussian'`` (``a_j ~ N(0, 1/m)``, output scaled by ``1/sqrt(m)``, :func:`gaussian_init`).
      keep_init: ``True``: step 1 keeps ``W0`` (``W1 = W0 - eta grad``, no weight decay);
        ``False`` (Algorithm 1): weight decay ``1/eta`` erases it (``W1 = -eta grad``).
      eta_rule: ``'fixed'`` (the etas as given) or ``'sqrt_np'`` (``eta = c sqrt(N1 m)``).
      ridge_kind: ``'relative'`` (the ridge times the mean squared feature norm) or
        ``'absolute'`` (the ridge on the features ``relu(x W + b) / sqrt(m)``, sum-of-squares loss).
    """

    width: int = 512
    etas: tuple[float, ...] = (1.0,)
    split: float | None = 0.5
    preprocess: str = "mean_linear"
    init_scale: float = 1.0
    bias_std: float = 1.0
    ridges: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    init: str = "symmetric"
    keep_init: bool = False
    eta_rule: str = "fixed"
    ridge_kind: str = "relative"

    def describe(self) -> dict:
        out = dataclasses.asdict(self)
        out["etas"], out["ridges"] = list(self.etas), list(self.ridges)
        return out


def two_stage_config(
    width: int = 512,
    etas: Sequence[float] = (1.0,),
    *,
    split: float | None = 0.5,
    preprocess: str = "mean_linear",
    init_scale: float = 1.0,
    bias_std: float = 1.0,
    ridges: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0),
    init: str = "symmetric",
    keep_init: bool = False,
    eta_rule: str = "fixed",
    ridge_kind: str = "relative",
) -> TwoStageConfig:
    """Validated :class:`TwoStageConfig` (``ValueError`` naming the bad argument); the defaults
    are Algorithm 1 of Damian, Lee & Soltanolkotabi, :func:`giant_step` the preset of Dandi et al."""
    from rbk.kernels import check_ridges

    check_choice("init", init, INITS)
    width = check_int("width", width, lo=1 if init == "gaussian" else 2)
    if init == "symmetric" and width % 2:
        raise ValueError(f"width must be an even integer >= 2 with init='symmetric' (neurons come in "
                         f"opposite pairs), got {width}")
    if not isinstance(keep_init, (bool, np.bool_)):
        raise ValueError(f"keep_init must be True or False, got {keep_init!r}")
    check_choice("eta_rule", eta_rule, ETA_RULES)
    check_choice("ridge_kind", ridge_kind, RIDGE_KINDS)
    etas = check_array("etas", np.atleast_1d(np.asarray(etas, np.float64)), ndim=1)
    if etas.size == 0 or np.any(etas <= 0):
        raise ValueError(f"etas must be a non-empty list of numbers > 0, got {etas.tolist()}")
    if split is not None:
        split = check_real("split", split, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    check_choice("preprocess", preprocess, PREPROCESS)
    init_scale = check_real("init_scale", init_scale, lo=0.0, lo_open=True)
    bias_std = check_real("bias_std", bias_std, lo=0.0)
    ridges = check_ridges(tuple(ridges))
    return TwoStageConfig(width, tuple(float(e) for e in etas), split, preprocess, init_scale, bias_std, ridges,
                          init, bool(keep_init), eta_rule, ridge_kind)


def giant_step(width: int = 512, eta_mult: float = 10.0, ridge: float = 1.0) -> TwoStageConfig:
    """The one giant step of Dandi, Krzakala, Loureiro, Pesce & Stephan (2023, "How two-layer
    neural networks learn, one (giant) step at a time", the ``single_step`` experiment).

    Their choices, as options of :func:`two_stage`: Gaussian initialisation of both layers
    (``W0 ~ N(0, I/d)``, ``a0 ~ N(0, 1/p)``, output scaled by ``1/sqrt(p)``, ``p = width``, no
    biases: ``bias_std = 0``); the initial weights kept (``W1 = W0 - eta grad``, no weight decay);
    ``eta = eta_mult sqrt(n p)`` (their 10); the same ``n`` samples for both stages
    (``split=None``); labels less their empirical mean and linear part (``'mean_linear'``); one
    absolute ridge ``lambda = ridge`` (their 1) on the features scaled by ``1/sqrt(p)``. Their
    student activation is relu, as rbk's. Not reproduced: they fix the initialisation and the
    teacher across seeds and take the mean and linear part of the test predictor from the test
    labels themselves; here each key draws its own initialisation and the linear part comes from
    the training labels, as in their training. Rerun from their code at ``d = 128``, ``p = 256``
    (10 seeds, 3 runs) the two agree within 0.015 at ``n = d^1.3, d^1.65, d^2``
    (tests/test_giant_step.py).
    """
    return two_stage_config(width, (eta_mult,), split=None, preprocess="mean_linear", init_scale=1.0,
                            bias_std=0.0, ridges=(ridge,), init="gaussian", keep_init=True, eta_rule="sqrt_np",
                            ridge_kind="absolute")


def symmetric_init(key: jax.Array, d: int, width: int, k: int = 1, init_scale: float = 1.0) -> dict:
    """Parameters of a standard ``2nn`` (:class:`rbk.models.Model`) with output 0: ``W (d, m)`` with
    column ``j + m/2`` equal to column ``j`` (``N(0, init_scale^2 / d)`` entries), ``b1 = 0`` and
    ``A (m, k)`` equal to ``+1`` on the first half, ``-1`` on the second."""
    half = jax.random.normal(key, (d, width // 2), jnp.float32) * (init_scale / math.sqrt(d))
    sign = jnp.concatenate([jnp.ones(width // 2), -jnp.ones(width // 2)]).astype(jnp.float32)
    return {"W": jnp.concatenate([half, half], axis=1), "b1": jnp.zeros(width, jnp.float32),
            "A": jnp.tile(sign[:, None], (1, k))}


def gaussian_init(key: jax.Array, d: int, width: int, k: int = 1, init_scale: float = 1.0) -> dict:
    """Parameters of a standard ``2nn`` for the network ``x -> a . relu(W^T x) / sqrt(m)``:
    ``W (d, m)`` with ``N(0, init_scale^2 / d)`` entries, ``a_j ~ N(0, 1/m)`` stored as
    ``A = a / sqrt(m)`` (the output scale folded in), ``b1 = 0``."""
    kw, ka = jax.random.split(key)
    W = jax.random.normal(kw, (d, width), jnp.float32) * (init_scale / math.sqrt(d))
    A = jax.random.normal(ka, (width, k), jnp.float32) / width
    return {"W": W, "b1": jnp.zeros(width, jnp.float32), "A": A}


@functools.partial(jax.jit, static_argnums=0, static_argnames="keep_init")
def first_step(model: Model, params: dict, x, y, eta, keep_init: bool = False) -> jax.Array:
    """The new first layer after one full-batch gradient step on ``W`` with learning rate ``eta``
    and weight decay ``1 / eta`` (optax's coupled decay, as in :func:`optimizer`), i.e. exactly
    ``-eta * grad_W L`` up to rounding, with ``L = 0.5 * mean squared error``; with
    ``keep_init=True`` no weight decay: ``W - eta * grad_W L``."""
    w = params["W"]
    g = jax.grad(lambda w_: batch_loss(model, {**params, "W": w_}, x, y))(w)
    if keep_init:
        return w - eta * g
    opt = optax.chain(optax.add_decayed_weights(1.0 / eta), optax.sgd(eta))
    upd, _ = opt.update(g, opt.init(w), w)
    return optax.apply_updates(w, upd)


@jax.jit
def linear_part(x, y) -> tuple[jax.Array, jax.Array]:
    """Algorithm 1's label preprocessing: ``alpha = mean(y)`` ``(k,)`` and ``beta = mean(y x)`` ``(d, k)``
    (for ``x ~ N(0, I)``, the degree-0 and degree-1 Hermite coefficients of the labels)."""
    return jnp.mean(y, axis=0), x.T @ y / x.shape[0]


def _offset_fn(alpha, beta, preprocess: str):
    if preprocess == "none":
        return lambda x: 0.0
    if preprocess == "mean":
        return lambda x: np.asarray(alpha)[None, :]
    return lambda x: np.asarray(alpha)[None, :] + np.asarray(x, np.float64) @ np.asarray(beta, np.float64)


def _residual_dataset(data: Dataset, idx2, offset) -> Dataset:
    """The stage-2 training points ``idx2`` and the validation / test splits, labels minus ``offset``.

    A predictor ``h`` of the residual has exactly the error of ``h + offset`` on the labels."""
    xtr, ytr = np.asarray(data.x_train)[idx2], np.asarray(data.y_train, np.float64)[idx2]
    parts = [(xtr, ytr)] + [(np.asarray(getattr(data, f"x_{s}")), np.asarray(getattr(data, f"y_{s}"), np.float64))
                            for s in ("val", "test")]
    out = []
    for x, y in parts:
        out += [x, y - offset(x)]
    return Dataset(*out)


def fit_readout(features: dict, data: Dataset, ridges: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0), *,
                preprocess: str = "mean", train_idx=None, linear=None, ridge_kind: str = "relative") -> dict:
    """Fit the output layer on fixed first-layer ``features = {'W': (d, m), 'b1': (m,)}`` by ridge.

    ``x -> relu(x W + b1)`` are the features; the labels lose ``alpha`` (``'mean'``), ``alpha +
    beta . x`` (``'mean_linear'``) or nothing (``'none'``), with ``(alpha, beta) = linear`` if
    given, else estimated (:func:`linear_part`) on the training points used (``train_idx``,
    default all); the predictor adds them back, so its errors are on the labels themselves.
    Float64 ridge with the ridge chosen on validation
    (:func:`rbk.kernels.random_features_fit_predict`); returns its dict plus ``alpha``, ``beta``.
    ``ridge_kind='absolute'``: the ridges are absolute, on the features ``relu(x W + b1) /
    sqrt(m)`` with a sum-of-squares loss (``lams`` and ``lam`` then report them as given).
    Step 2 of :func:`two_stage`, and transfer: a new head on learned features.
    """
    from rbk.kernels import random_features_fit_predict

    check_choice("preprocess", preprocess, PREPROCESS)
    check_choice("ridge_kind", ridge_kind, RIDGE_KINDS)
    if not isinstance(features, Mapping) or set(features) != {"W", "b1"}:
        raise ValueError("features must be a dict with the first layer 'W' (d, m) and biases 'b1' (m,)")
    W = check_array("features['W']", features["W"], ndim=2)
    check_array("features['b1']", features["b1"], shape=(W.shape[1],))
    x = check_array("data.x_train", data.x_train, ndim=2)
    y = check_array("data.y_train", data.y_train, ndim=2)
    if x.shape[1] != W.shape[0]:
        raise ValueError(f"data has d={x.shape[1]} inputs but features['W'] has {W.shape[0]} rows")
    idx = np.arange(x.shape[0]) if train_idx is None else np.asarray(train_idx)
    if linear is None:
        linear = linear_part(jnp.asarray(x[idx]), jnp.asarray(y[idx]))
    alpha, beta = (np.asarray(a, np.float64) for a in linear)
    res = _residual_dataset(data, idx, _offset_fn(alpha, beta, preprocess))
    model = get_model("2nn", W.shape[1], W.shape[0], y.shape[1])
    params = {"W": jnp.asarray(W), "b1": jnp.asarray(features["b1"]), "A": jnp.zeros((W.shape[1], y.shape[1]))}
    given = None
    if ridge_kind == "absolute":  # lam m on relu(x W + b) <=> relative lam m / mean_i |phi_i|^2
        from rbk.kernels import check_ridges

        given = check_ridges(tuple(np.atleast_1d(ridges)))
        phi = np.maximum(np.asarray(res.x_train, np.float64) @ np.asarray(W, np.float64)
                         + np.asarray(features["b1"], np.float64), 0.0)
        scale = float(np.sum(phi * phi) / phi.shape[0])
        if not scale > 0:
            raise ValueError("ridge_kind='absolute' needs features that are not all zero on the training points")
        ridges = tuple(lam * W.shape[1] / scale for lam in given)
    out = random_features_fit_predict(model, params, res, ridges)
    if given is not None:
        out["lams"], out["lam"] = list(given), given[out["lams"].index(out["lam"])]
    out.update({"ridge_kind": ridge_kind})
    out.update({"alpha": alpha.tolist(), "beta": beta.tolist() if preprocess == "mean_linear" else None,
                "preprocess": preprocess})
    return out


def two_stage(data: Dataset, key: jax.Array, cfg: TwoStageConfig | None = None) -> dict:
    """Algorithm 1 of Damian, Lee & Soltanolkotabi (2022) on one split (see the section comment).

    Args:
      data: an unbatched :class:`rbk.data.Dataset` (2-d arrays).
      key: PRNG key of the initialisation and of the re-drawn biases.
      cfg: :class:`TwoStageConfig` (default ``two_stage_config()``).

    The options of ``cfg`` (``init``, ``keep_init``, ``eta_rule``, ``ridge_kind``, ``split``)
    span the one-step family; :func:`giant_step` is Dandi et al.'s member.

    Returns the selected ``(eta, ridge)``'s ``val_error, test_error, train_error`` (test: mean
    squared error on clean labels), ``eta`` (the learning rate used), ``ridge``, ``lam``, ``etas`` (all used), per-eta ``val_errors`` and
    ``test_errors`` (each at its best ridge), ``ridge_paths`` (per eta, ``None`` where it diverged:
    ``lams``, the ``train/val/test_errors`` and ``test_covs`` of every ridge), ``n1, n2`` (points per stage), ``features`` (the
    selected first layer ``{'W', 'b1'}``, numpy, for :func:`fit_readout`), ``diverged`` and
    ``seconds``. An eta whose step gives non-finite weights is skipped (all of them: diverged).
    """
    cfg = two_stage_config() if cfg is None else cfg
    if not isinstance(cfg, TwoStageConfig):
        raise ValueError("cfg must be an rbk.train.TwoStageConfig (use rbk.train.two_stage_config)")
    if not isinstance(data, Dataset):
        raise ValueError("data must be an rbk.data.Dataset (use rbk.data.make_dataset)")
    x = check_array("data.x_train", data.x_train, ndim=2)
    y = check_array("data.y_train", data.y_train, ndim=2)
    n, d = x.shape
    if cfg.split is None:
        idx1 = idx2 = np.arange(n)
    else:
        n1 = int(round(cfg.split * n))
        if n1 < 1 or n1 >= n:
            raise ValueError(f"split={cfg.split} leaves a stage without points at N={n}; N must be >= 2")
        idx1, idx2 = np.arange(n1), np.arange(n1, n)
    t0 = time.perf_counter()
    model = get_model("2nn", cfg.width, d, y.shape[1])
    k_init, k_bias = jax.random.split(key)
    init = symmetric_init if cfg.init == "symmetric" else gaussian_init
    params = init(k_init, d, cfg.width, y.shape[1], cfg.init_scale)
    linear = linear_part(jnp.asarray(x), jnp.asarray(y))  # Algorithm 1: on the whole training set
    offset = _offset_fn(*linear, cfg.preprocess)
    x1 = jnp.asarray(x[idx1])
    y1 = jnp.asarray(np.asarray(y[idx1], np.float64) - offset(x[idx1]), jnp.float32)
    bias = np.asarray(cfg.bias_std * jax.random.normal(k_bias, (cfg.width,), jnp.float32))
    etas = [c * math.sqrt(idx1.size * cfg.width) if cfg.eta_rule == "sqrt_np" else c for c in cfg.etas]
    runs = []
    for eta in etas:
        W1 = np.asarray(first_step(model, params, x1, y1, jnp.float32(eta), keep_init=cfg.keep_init))
        if not np.all(np.isfinite(W1)):
            runs.append(None)
            continue
        feats = {"W": W1, "b1": bias}
        runs.append((eta, feats, fit_readout(feats, data, cfg.ridges, preprocess=cfg.preprocess,
                                             train_idx=idx2, linear=linear, ridge_kind=cfg.ridge_kind)))
    ok = [r for r in runs if r is not None]
    if not ok:
        return {"diverged": True, "val_error": math.inf, "test_error": math.inf, "train_error": math.inf,
                "eta": math.nan, "seconds": time.perf_counter() - t0}
    eta, feats, best = min(ok, key=lambda r: r[2]["val_error"])
    return {
        "diverged": False,
        "val_error": best["val_error"],
        "test_error": best["test_error"],
        "train_error": best["train_error"],
        "eta": eta,
        "ridge": best["ridge"],
        "lam": best["lam"],
        "etas": [float(e) for e in etas],
        "val_errors": [math.inf if r is None else r[2]["val_error"] for r in runs],
        "test_errors": [math.inf if r is None else r[2]["test_error"] for r in runs],
        "ridge_paths": [None if r is None else {k: list(r[2][k]) for k in ("lams", "train_errors", "val_errors",
                                                                            "test_errors", "test_covs")} for r in runs],
        "n1": int(idx1.size),
        "n2": int(idx2.size),
        "features": feats,
        "config": cfg.describe(),
        "seconds": time.perf_counter() - t0,
    }
