"""Is Experiment 4's variance-reduced test error right? A check on fresh, much larger test sets.

The hierarchy's target has degree 8 in Gaussian inputs, so the squared error of a 10 000-point
test set is heavy-tailed: one seed's plain test MSE can be several times another's, from a few
points of large ``|z|``. Experiment 4 reports ``MSE - beta (mean y^2 - E y^2)`` with the exact
``E[y^2]`` (``beta`` the least-variance coefficient on the same points). This script retrains the
profile's ``deep-joint`` members for the given seeds at one N (the same data and keys as the
profile, so the same networks up to float reassociation), and scores each on (a) the profile's
own 10 000 test points, plain and variance-reduced as the experiment does, and (b) ``--big``
fresh test points (a key no run uses), plain, with its standard error; on both, also the exactly
unbiased identity ``E(f - y)^2 = E f^2 - 2 E f y + E y^2`` with the exact ``E[y^2]`` (its
per-point terms hold ``y`` to the first power only), and (c) importance sampling: ``--big`` points
whose projection on the target's subspace is drawn ``N(0, scale^2 I)`` (scales 1.5 and 2), each
weighted by its density ratio: unbiased, and far lighter-tailed, since the squared error is
dominated by points of large ``|z|``. Two scales that agree within their standard errors, and
agree with (b), give the network's test error.

    python scripts/exp4_test_error_check.py --seeds 0 1 2 3 4 5 6 7 --n 32000 --big 400000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="quick")
    p.add_argument("--learner", default="deep-joint", choices=("deep-joint", "deep-progressive", "deep-stopgrad"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 6])
    p.add_argument("--n", type=int, default=32000)
    p.add_argument("--big", type=int, default=400000)
    a = p.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpy as np

    from rbk import data, train
    from rbk.experiments.hierarchy import exp4
    from rbk.experiments.hierarchy.study import _control_variate, importance_test_set
    from rbk.kernels.predict import error_label_covariance

    spec = exp4.spec(a.profile, seeds=tuple(sorted(a.seeds)), ns=(a.n,))
    regime = a.learner.removeprefix("deep-")
    model = train.regime_model(regime, spec.deep_model(reference=spec.target()))
    stacked = data.stack([spec.dataset(a.n, s) for s in spec.seeds])
    keys = jnp.stack([data.seed_keys(s)[1] for s in spec.seeds])
    res = train.train(model, stacked, keys, list(spec.lrs), list(spec.wds), spec.train_config(regime),
                      return_params=True)  # fmt: skip
    big = data.make_dataset(jax.random.PRNGKey(987654321), spec.target(), 2, n_val=2, n_test=a.big,
                            distribution="gaussian")  # fmt: skip
    apply = jax.jit(model.apply)
    m2 = float(spec.target().info["second_moment"])

    def predictions(params, x):
        return np.concatenate([np.asarray(apply(params, x[i : i + 50000]), np.float64)
                               for i in range(0, x.shape[0], 50000)])  # fmt: skip

    def sq_errors(params, x, y):
        return np.sum((predictions(params, x) - np.asarray(y, np.float64)) ** 2, axis=-1)

    def identity(params, x, y):
        """E(f - y)^2 = E f^2 - 2 E f y + E y^2 with the exact E y^2: per-point f^2 - 2 f y (mean, s.e.)."""
        f, yy = predictions(params, x), np.asarray(y, np.float64)
        v = np.sum(f * f - 2 * f * yy, axis=-1)
        return float(v.mean() + m2), float(v.std() / math.sqrt(v.size))

    def importance(params, seed: int, scale: float, n: int):
        """The experiment's own estimator (rbk.experiments.hierarchy.study.importance_test_set) at ``scale``."""
        x, y, w = importance_test_set(dataclasses.replace(spec, importance_scale=scale, n_test_importance=n), seed)
        v = w * sq_errors(params, jnp.asarray(x), y)
        return float(v.mean()), float(v.std() / math.sqrt(n))

    yb = np.asarray(big.y_test, np.float64)
    print(f"E[y^2] = {m2:.4f}; fresh test set: {a.big} points, mean y^2 = {np.mean(np.sum(yb * yb, -1)):.4f}")
    for i, s in enumerate(spec.seeds):
        params = jax.tree.map(lambda v: v[i, 0, 0], res.params)
        ds = spec.dataset(a.n, s)
        pred = predictions(params, ds.x_test)
        row = _control_variate(spec, {"test_error": float(sq_errors(params, ds.x_test, ds.y_test).mean())}, ds.y_test,
                               error_label_covariance(pred, np.asarray(ds.y_test, np.float64)))  # fmt: skip
        rb = sq_errors(params, big.x_test, big.y_test)
        id_small, id_small_se = identity(params, ds.x_test, ds.y_test)
        id_big, id_big_se = identity(params, big.x_test, big.y_test)
        imp = {f"importance_{sc:g}": importance(params, s, sc, a.big) for sc in (1.5, 2.0)}
        out = {"learner": a.learner, "n": a.n, "seed": s, "plain_10k": row["test_error_raw"],
               "variance_reduced_10k": row["test_error"], "beta": row["test_beta"], "fresh_mean": float(rb.mean()),
               "fresh_se": float(rb.std() / math.sqrt(rb.size)), "fresh_points": int(rb.size),
               "identity_10k": id_small, "identity_10k_se": id_small_se, "identity_fresh": id_big,
               "identity_fresh_se": id_big_se, **imp}  # fmt: skip
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
