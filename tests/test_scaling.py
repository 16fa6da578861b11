"""rbk.scaling: interval-censored log-log slopes and their paired bootstrap, checked against
least squares, a censored Monte Carlo, a separately written likelihood and hand-built pairs."""

import math

import numpy as np
import pytest
from scipy import optimize
from scipy.stats import norm

from rbk import scaling

DS = (8, 12, 16, 24, 32, 48)


def simulate(rng, seeds=30, a=1.0, b=2.0, sigma=0.3, ds=DS):
    d = np.repeat(np.asarray(ds, dtype=float), seeds)
    return d, np.exp(a + b * np.log(d) + rng.normal(0.0, sigma, d.size))


def reference_nll(params, ds, lo, hi):
    """The interval likelihood written out point by point, straight from its definition."""
    a, b, log_sigma = params
    sigma = math.exp(log_sigma)
    total = 0.0
    for d, l, h in zip(ds, lo, hi):
        mu = a + b * math.log(d)
        if l == h:
            total -= norm.logpdf(math.log(l), mu, sigma)
        elif h == math.inf:
            total -= norm.logsf(math.log(l), mu, sigma)
        elif l == 0:
            total -= norm.logcdf(math.log(h), mu, sigma)
        else:
            total -= math.log(norm.cdf(math.log(h), mu, sigma) - norm.cdf(math.log(l), mu, sigma))
    return total


# a tiny case with every kind of point: exact, right-, left- and interval-censored
TINY_D = [8, 8, 16, 16, 32, 32, 64]
TINY_LO = [150.0, 200.0, 500.0, 0.0, 2000.0, 1500.0, 5000.0]
TINY_HI = [150.0, 200.0, 900.0, 800.0, math.inf, 4000.0, math.inf]


# --------------------------------------------------------------------------------------------
# interval_slope
# --------------------------------------------------------------------------------------------


def test_no_censoring_is_least_squares():
    d, n = simulate(np.random.default_rng(0), seeds=5)
    r = scaling.interval_slope(d, n, n)
    b, a = np.polyfit(np.log(d), np.log(n), 1)
    rss = float(np.sum((np.log(n) - a - b * np.log(d)) ** 2))
    assert r["slope"] == pytest.approx(b, abs=1e-6) and r["intercept"] == pytest.approx(a, abs=1e-6)
    assert r["sigma"] == pytest.approx(math.sqrt(rss / n.size), abs=1e-6)
    assert r["points"] == n.size and r["censored"] == 0 and r["converged"]
    # through the optimiser: one extra point whose interval is all but the whole line adds nothing
    r2 = scaling.interval_slope(np.append(d, 20.0), np.append(n, 1e-200), np.append(n, 1e200))
    assert r2["censored"] == 1 and r2["converged"]
    assert r2["slope"] == pytest.approx(b, abs=1e-6) and r2["intercept"] == pytest.approx(a, abs=1e-6)
    assert r2["sigma"] == pytest.approx(math.sqrt(rss / n.size), abs=1e-6)


def test_perfect_fit_floors_sigma():
    d = np.array(DS, dtype=float)
    n = 3.0 * d**2.5
    r = scaling.interval_slope(d, n, n, min_sigma=1e-3)
    assert r["slope"] == pytest.approx(2.5, abs=1e-9) and r["intercept"] == pytest.approx(math.log(3.0), abs=1e-9)
    assert r["sigma"] == 1e-3


def test_censored_monte_carlo_recovers_slope_least_squares_does_not():
    d, n = simulate(np.random.default_rng(12345))
    cens = n > 2000.0
    lo, hi = np.where(cens, 2000.0, n), np.where(cens, math.inf, n)
    assert 0.25 < cens.mean() < 0.6 and cens[d == 48].all()  # many of the large-d points
    r = scaling.interval_slope(d, lo, hi)
    naive = np.polyfit(np.log(d), np.log(lo), 1)[0]
    assert r["converged"] and r["censored"] == cens.sum()
    assert abs(r["slope"] - 2.0) < 0.15 and abs(r["sigma"] - 0.3) < 0.06
    assert naive < 2.0 - 0.3


def test_likelihood_and_optimum_against_a_separate_likelihood():
    r = scaling.interval_slope(TINY_D, TINY_LO, TINY_HI)
    assert r["converged"] and r["censored"] == 5
    # brute force: Nelder-Mead on the reference likelihood from an unrelated start
    nm = optimize.minimize(reference_nll, [0.0, 1.0, 0.0], args=(TINY_D, TINY_LO, TINY_HI), method="Nelder-Mead",
                           options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000, "maxfev": 40000})
    assert nm.success
    ours = reference_nll([r["intercept"], r["slope"], math.log(r["sigma"])], TINY_D, TINY_LO, TINY_HI)
    assert ours == pytest.approx(nm.fun, abs=1e-8)
    assert [r["intercept"], r["slope"], math.log(r["sigma"])] == pytest.approx(list(nm.x), abs=1e-4)
    # the function the optimiser minimises is that likelihood, and its gradient is right
    u, yl, yh = scaling._prepare(TINY_D, TINY_LO, TINY_HI)
    uc = u - u.mean()
    for a, b, s in [(5.0, 1.0, 0.0), (7.5, 2.5, -1.5), (6.0, 0.5, 1.0)]:
        f, g = scaling._negloglik(np.array([a, b, s]), uc, yl, yh, yl == yh)
        assert f == pytest.approx(reference_nll([a - b * u.mean(), b, s], TINY_D, TINY_LO, TINY_HI), rel=1e-10)
        fd = optimize.approx_fprime([a, b, s], lambda t: scaling._negloglik(t, uc, yl, yh, yl == yh)[0], 1e-7)
        assert g == pytest.approx(fd, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize(
    "ds, lo, hi",
    [
        (DS, [100.0] * 6, [math.inf] * 6),  # all right-censored: a -> inf
        (DS, [0.0] * 6, [1e4] * 6),  # all left-censored: a -> -inf
        ([8, 8, 16, 32], [100.0, 120.0, 1e3, 1e3], [100.0, 120.0, math.inf, math.inf]),  # exact at one d: b -> inf
        ([8, 8, 16, 16], [500.0, 600.0, 0.0, 0.0], [math.inf, math.inf, 50.0, 70.0]),  # b -> -inf
        ([16, 16, 16], [100.0, 120.0, 90.0], [100.0, 120.0, math.inf]),  # one distinct d
        ([], [], []),
    ],
)
def test_no_maximum_gives_none(ds, lo, hi):
    r = scaling.interval_slope(ds, lo, hi)
    assert r["slope"] is None and r["intercept"] is None and r["sigma"] is None and not r["converged"]
    assert r["points"] == len(ds)


def test_censored_points_with_an_identified_maximum():
    # exact points at two d fix the line; a consistent right-censored point leaves it there
    r = scaling.interval_slope([8, 16, 16], [100.0, 200.0, 300.0], [100.0, math.inf, 300.0])
    assert r["slope"] == pytest.approx(math.log(3.0) / math.log(2.0), abs=1e-6)
    assert r["sigma"] == pytest.approx(1e-3) and r["converged"]


# --------------------------------------------------------------------------------------------
# paired_slope_difference
# --------------------------------------------------------------------------------------------


def paired_data(rng, seeds=8, factor=1.5, shared_sigma=0.3, own_sigma=0.0, cap=None):
    """second: n* = e d^1 noise; first: second * d^factor (same noise) * its own noise, censored at cap."""
    first, second = {}, {}
    for d in DS:
        for s in range(seeds):
            n2 = math.exp(1.0 + math.log(d) + rng.normal(0.0, shared_sigma))
            n1 = n2 * d**factor * math.exp(rng.normal(0.0, own_sigma) if own_sigma else 0.0)
            second[(d, s)] = (n2, n2)
            first[(d, s)] = (cap, math.inf) if cap is not None and n1 > cap else (n1, n1)
    return first, second


def test_pairing_cancels_shared_noise():
    first, second = paired_data(np.random.default_rng(3))
    r = scaling.paired_slope_difference(first, second, n_boot=200, seed=1)
    assert r["difference"]["mean"] == pytest.approx(1.5, abs=1e-9)
    lo, hi = r["difference"]["ci95"]
    assert hi - lo < 1e-9 and lo == pytest.approx(1.5, abs=1e-9) and r["n_valid"] == 200
    assert r["ci95_first"][1] - r["ci95_first"][0] > 0.05  # each slope alone does vary
    # the same bounds shifted by d^1.5, censored: the interval likelihood shifts with them
    cs = {k: (v[0], math.inf) if v[0] > 100 else v for k, v in second.items()}
    cf = {k: (v[0] * k[0] ** 1.5, v[1] * k[0] ** 1.5) for k, v in cs.items()}
    rc = scaling.paired_slope_difference(cf, cs, n_boot=50, seed=1)
    assert any(v[1] == math.inf for v in cs.values())
    assert rc["difference"]["mean"] == pytest.approx(1.5, abs=1e-7) and rc["n_valid"] == 50
    assert rc["difference"]["ci95"][1] - rc["difference"]["ci95"][0] < 1e-7
    # unpaired: the first learner with its own noise instead of the shared one gives a wide interval
    unpaired, _ = paired_data(np.random.default_rng(4))
    ru = scaling.paired_slope_difference(unpaired, second, n_boot=200, seed=1)
    assert ru["difference"]["ci95"][1] - ru["difference"]["ci95"][0] > 0.1


def test_independent_noise_ci_covers_truth():
    first, second = paired_data(np.random.default_rng(7), seeds=10, own_sigma=0.3, cap=3000.0)
    assert sum(v[1] == math.inf for v in first.values()) > 10
    r = scaling.paired_slope_difference(first, second, n_boot=300, seed=0)
    lo, hi = r["difference"]["ci95"]
    assert lo < 1.5 < hi and hi - lo > 0.05
    assert r["ci95_first"][0] < r["slope_first"] < r["ci95_first"][1]
    assert r["ci95_second"][0] < r["slope_second"] < r["ci95_second"][1]
    assert r["difference"]["mean"] == pytest.approx(r["slope_first"] - r["slope_second"])
    assert lo <= r["difference"]["boot_mean"] <= hi
    assert r["pairs"] == 60 and r["ds"] == [float(d) for d in DS] and r["n_boot"] == 300


def test_deterministic_for_a_seed():
    first, second = paired_data(np.random.default_rng(8), own_sigma=0.3, cap=3000.0)
    a = scaling.paired_slope_difference(first, second, n_boot=60, seed=5)
    b = scaling.paired_slope_difference(dict(reversed(first.items())), second, n_boot=60, seed=5)
    c = scaling.paired_slope_difference(first, second, n_boot=60, seed=6)
    assert a == b and a["difference"]["ci95"] != c["difference"]["ci95"]


def test_unshared_keys_ignored():
    first, second = paired_data(np.random.default_rng(9), own_sigma=0.3)
    base = scaling.paired_slope_difference(first, second, n_boot=40, seed=2)
    extra_first = {**first, (8, 99): (1e9, 1e9), (200, 0): (1.0, 1.0)}
    extra_second = {**second, (12, 77): (5.0, 5.0)}
    assert scaling.paired_slope_difference(extra_first, extra_second, n_boot=40, seed=2) == base
    assert base["pairs"] == len(first)


def test_few_valid_resamples_give_no_interval():
    first = {(8, 0): (100.0, 100.0), (16, 0): (300.0, math.inf), (16, 1): (500.0, math.inf)}
    second = {(8, 0): (10.0, 10.0), (16, 0): (20.0, 20.0), (16, 1): (25.0, 25.0)}
    r = scaling.paired_slope_difference(first, second, n_boot=20, seed=0)
    assert r["slope_first"] is None and r["difference"]["mean"] is None
    assert r["n_valid"] == 0 and r["difference"]["ci95"] is None and r["ci95_first"] is None


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ds, lo, hi, name",
    [
        ([8, -1], [1, 1], [1, 1], "ds"),
        ([8, math.inf], [1, 1], [1, 1], "ds"),
        ([8, 0], [1, 1], [1, 1], "ds"),
        ([8, 16], [-1, 1], [1, 1], "lo"),
        ([8, 16], [math.nan, 1], [1, 1], "lo"),
        ([8, 16], [math.inf, 1], [math.inf, 1], "lo"),
        ([8, 16], [5, 1], [4, 1], "hi"),
        ([8, 16], [0, 1], [0, 1], "hi"),
        ([8, 16], [1, 1], [math.nan, 1], "hi"),
        ([8, 16], [0, 1], [math.inf, 1], "lo == 0 with hi == inf"),
        ([8, 16, 32], [1, 1], [1, 1], "equal length"),
        ([[8, 16]], [[1, 1]], [[1, 1]], "1-d"),
    ],
)
def test_bad_input(ds, lo, hi, name):
    with pytest.raises(ValueError, match=name):
        scaling.interval_slope(ds, lo, hi)


def test_bad_options():
    with pytest.raises(ValueError, match="min_sigma"):
        scaling.interval_slope([8, 16], [1, 2], [1, 2], min_sigma=0.0)
    first, second = paired_data(np.random.default_rng(0), seeds=2)
    for kw, name in [({"n_boot": 0}, "n_boot"), ({"n_boot": 2.5}, "n_boot"), ({"confidence": 1.0}, "confidence")]:
        with pytest.raises(ValueError, match=name):
            scaling.paired_slope_difference(first, second, **kw)
    with pytest.raises(ValueError, match="second: hi"):
        scaling.paired_slope_difference(first, {**second, (8, 0): (5.0, 4.0)})
    with pytest.raises(ValueError, match="first: lo"):
        scaling.paired_slope_difference({**first, (8, 0): (-1.0, 4.0)}, second)
