"""rbk.kernels' matrix-free kernel ridge (``fit_predict(solver='cg')``) against the dense Cholesky
path: the same predictions to 1e-4 on the paper instance (cube fast path) and on Gaussian inputs
(closed-form blocks), convergence reporting, the warning when it misses the tolerance, bad input,
and what ``solver='auto'`` picks."""

import time
import warnings

import numpy as np
import pytest

from rbk import data, kernels, models, targets
from rbk.kernels.solvers import cg

RIDGES = (1e-3, 1e-1)


def _max_rel(p, q):
    """Max over points of the relative difference of the prediction vectors (norm over outputs)."""
    return float(np.max(np.linalg.norm(p - q, axis=1) / np.linalg.norm(q, axis=1)))


def _fits(kf, ds, get, **cg):
    with warnings.catch_warnings():
        warnings.simplefilter("error", kernels.KernelSolveWarning)
        dense = kernels.fit_predict(kf, ds, ridges=RIDGES, get=get, solver="dense", return_predictions=True)
        mf = kernels.fit_predict(kf, ds, ridges=RIDGES, get=get, solver="cg", return_predictions=True, **cg)
    return dense, mf


@pytest.fixture(scope="module")
def paper600():
    return data.make_dataset(data.seed_keys(0)[0], targets.paper_instance(), 600, n_val=200, n_test=300)


@pytest.mark.parametrize("arch", models.ARCHS)
@pytest.mark.parametrize("get", ["ntk", "nngp"])
def test_cg_equals_dense_paper_instance(paper600, arch, get):
    """N = 600 on the cube (popcount / table blocks); rank 100 < N so the iterations do the work."""
    dense, mf = _fits(kernels.kernel_fn(arch), paper600, get, rank=100)
    assert dense["solver"] == "dense" and mf["solver"] == "cg" and mf["cg"]["cube"]
    assert _max_rel(mf["pred_test"], dense["pred_test"]) < 1e-4
    assert _max_rel(mf["pred_val"], dense["pred_val"]) < 1e-4
    assert mf["lam"] == dense["lam"] and mf["kernel_scale"] == pytest.approx(dense["kernel_scale"], rel=1e-12)
    np.testing.assert_allclose(mf["test_errors"], dense["test_errors"], rtol=1e-5)
    np.testing.assert_allclose(mf["train_errors"], dense["train_errors"], rtol=1e-4)
    assert all(r <= kernels.CG_TOL for r in mf["residuals"]) and mf["cg"]["converged"]
    assert all(it >= 2 for it in mf["iterations"]) and mf["solvers"] == ["cg", "cg"]


@pytest.mark.slow  # the default lane keeps Gaussian CG == dense in the stored / on-the-fly and described-kernel tests
def test_cg_equals_dense_closed_form_blocks():
    """Gaussian inputs (no cube): closed-form blocks with the exact diagonal; uneven block padding."""
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((m, 6)) for m in (333, 50, 70)]
    ys = [np.stack([np.sin(x[:, 0]) + x[:, 1] * x[:, 2], np.abs(x[:, 3])], 1) for x in xs]
    ds = data.Dataset(xs[0], ys[0], xs[1], ys[1], xs[2], ys[2])
    dense, mf = _fits(kernels.kernel_fn("3resnet", b_std=0.3), ds, "ntk", rank=40, precision="float64")
    assert not mf["cg"]["cube"]
    assert _max_rel(mf["pred_test"], dense["pred_test"]) < 1e-4
    # cube training inputs, non-cube evaluation inputs: closed form for the cross blocks
    cube = _tiny_cube()
    mixed = cube._replace(x_test=cube.x_test * 0.5)
    dense, mf = _fits(kernels.kernel_fn("2nn"), mixed, "ntk", rank=20)
    assert mf["cg"]["cube"] and _max_rel(mf["pred_test"], dense["pred_test"]) < 1e-4


def test_cg_takes_a_described_kernel():
    """The exact NTK of a DeepQuad (a DescribedKernelFn, Experiment 4's kernel) on Gaussian inputs:
    the matrix-free path equals the dense one, and solver='auto' may pick it."""
    from rbk.models import get_deepquad

    kfn = kernels.model_kernel_fn(get_deepquad(8, 6, levels=2, activation="hermite", parameterization="ntk",
                                               head_init="random"))  # fmt: skip
    assert isinstance(kfn, kernels.DescribedKernelFn) and not isinstance(kfn, kernels.KernelFn)
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((m, 6)) for m in (200, 40, 50)]
    ys = [(x[:, :1] ** 2 - 1) + x[:, 1:2] * x[:, 2:3] for x in xs]
    ds = data.Dataset(xs[0], ys[0], xs[1], ys[1], xs[2], ys[2])
    dense, mf = _fits(kfn, ds, "ntk", rank=30, precision="float64")
    # against the predictions' scale, not point by point: one of these 50 test predictions is
    # 6.6e-4 (the largest 3.1), so a point-wise relative bound measures that point's rounding
    # (it moved from under 1e-4 to 2.8e-4 with jax 0.10.2) rather than the solve (tol 1e-6)
    p, q = mf["pred_test"], dense["pred_test"]
    assert mf["solver"] == "cg" and np.max(np.abs(p - q)) < 1e-5 * np.max(np.abs(q))
    assert kernels.choose_solver(kernels.DENSE_MAX_N + 1, kfn) == "cg"


@pytest.mark.parametrize("cube", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_stored_float32_gram_and_on_the_fly_blocks_agree(monkeypatch, cube):
    """precision='mixed' keeps the float32 Gram when it fits (CG_STORE_FRACTION of the memory) and
    multiplies by it; with no room it assembles the float32 blocks on the fly. Both reach the
    dense solution (closed-form blocks on Gaussian inputs; the popcount table on the cube)."""
    if cube:
        ds, kf = _tiny_cube(), kernels.kernel_fn("2nn")
    else:
        rng = np.random.default_rng(5)
        xs = [rng.standard_normal((m, 5)) for m in (150, 30, 40)]
        ys = [np.cos(x[:, :1]) + x[:, 1:2] * x[:, 2:3] for x in xs]
        ds, kf = data.Dataset(xs[0], ys[0], xs[1], ys[1], xs[2], ys[2]), kernels.kernel_fn("3resnet", b_std=0.5)
    got = {}
    for frac in (cg.CG_STORE_FRACTION, 0.0):
        monkeypatch.setattr(cg, "CG_STORE_FRACTION", frac)
        dense, got[frac] = _fits(kf, ds, "ntk", rank=25)
        assert got[frac]["cg"]["stored_gram"] is (frac > 0) and got[frac]["cg"]["converged"]
        assert _max_rel(got[frac]["pred_test"], dense["pred_test"]) < 1e-4
    monkeypatch.setattr(cg, "CG_STORE_FRACTION", 0.4)
    assert not cg.store_gram(10**9) and cg.store_gram(10)


def _tiny_cube(n=120, d=8, k=2, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.choice([-1.0, 1.0], (m, d)) for m in (n, 30, 40)]
    ys = [np.stack([x[:, 0] * x[:, 1], x[:, 2] * x[:, 3] * x[:, 4]], 1)[:, :k] for x in xs]
    return data.Dataset(xs[0], ys[0], xs[1], ys[1], xs[2], ys[2])


def test_cube_table_is_the_closed_form():
    """The Hamming-distance table reproduces the Gram of the closed form on random cube points."""
    x = np.random.default_rng(1).choice([-1.0, 1.0], (40, 9))
    kf = kernels.kernel_fn("3nn")
    K = kf(x, get="ntk")
    table = kernels.cube_table(kf, 9, "ntk")
    h = (9 - np.rint(x @ x.T).astype(int)) // 2
    np.testing.assert_allclose(table[h], K, rtol=1e-14, atol=0)
    words = kernels.cube_words(x)
    ham = np.array([[bin(int(a) ^ int(b)).count("1") for b in words[:, 0]] for a in words[:, 0]])
    np.testing.assert_array_equal(ham, h)
    assert kernels.cube_words(x * 0.5) is None and kernels.cube_words(np.hstack([x, x, x, x])).shape == (40, 2)


def test_cg_not_converged_warns_with_residual():
    ds = _tiny_cube()
    with pytest.warns(kernels.KernelSolveWarning, match=r"residuals .* after 1, 1 iterations"):
        out = kernels.fit_predict(kernels.kernel_fn("2nn"), ds, ridges=(1e-6, 1e-3), solver="cg", rank=1, max_iter=1)
    assert not out["cg"]["converged"] and all(r > kernels.CG_TOL for r in out["residuals"])
    assert out["iterations"] == [1, 1]


@pytest.mark.parametrize(
    "kw, name",
    [
        (dict(tol=0.0), "tol"),
        (dict(tol=-1e-3), "tol"),
        (dict(rank=0), "rank"),
        (dict(max_iter=0), "max_iter"),
        (dict(precision="float16"), "precision"),
        (dict(solver="lu"), "solver"),
        (dict(ridges=(-1e-3,)), "ridges"),
        (dict(t=1.0), "t must be None"),
    ],
)
def test_cg_bad_input(kw, name, monkeypatch):
    monkeypatch.setattr(cg, "KernelOperator", None)  # nothing may run before the check fails
    kw = {"solver": "cg", **kw}
    with pytest.raises(ValueError, match=name):
        kernels.fit_predict(kernels.kernel_fn("2nn"), _tiny_cube(), **kw)


def test_cg_bad_kernels_and_sizes(monkeypatch):
    ds = _tiny_cube()
    with pytest.raises(ValueError, match="exact rbk kernel"):
        kernels.fit_predict(lambda a, b, get: a @ b.T, ds, solver="cg")
    with pytest.raises(ValueError, match="dataset.x_train"):  # N < 1
        kernels.fit_predict(kernels.kernel_fn("2nn"), ds._replace(x_train=ds.x_train[:0], y_train=ds.y_train[:0]),
                            solver="cg")
    # negative diagonal: an NTK with a negative group rate (not constructible through kernel_fn)
    neg = kernels.KernelFn("2nn", 2**0.5, 0.1, ("A",), (("A", -1.0),))
    with pytest.raises(ValueError, match="negative diagonal"):
        kernels.fit_predict(neg, ds, solver="cg")
    # positive diagonal but indefinite: conjugate gradients break down (p^T K p <= 0)
    indef = kernels.KernelFn("2nn", 2**0.5, 0.1, ("W", "A"), (("A", -0.9), ("W", 1.0)))
    K = indef(np.asarray(ds.x_train, np.float64), get="ntk")
    assert np.all(np.diag(K) > 0) and np.linalg.eigvalsh(K)[0] < -1e-3 * np.mean(np.diag(K))
    with pytest.raises(ValueError, match="positive semi-definite"):
        kernels.fit_predict(indef, ds, ridges=(0.0,), solver="cg", rank=1, precision="float64")


def test_choose_solver(monkeypatch):
    kf = kernels.kernel_fn("2nn")
    monkeypatch.setattr(cg, "host_memory_bytes", lambda: 64 * 2**30)
    assert kernels.choose_solver(10000, kf) == "dense" and kernels.choose_solver(kernels.DENSE_MAX_N, kf) == "dense"
    assert kernels.choose_solver(kernels.DENSE_MAX_N + 1, kf) == "cg"
    assert kernels.choose_solver(50000, kf, t=1.0) == "dense"
    assert kernels.choose_solver(50000, lambda a, b, get: a @ b.T) == "dense"
    monkeypatch.setattr(cg, "host_memory_bytes", lambda: 4 * 2**30)  # two Grams over half the memory
    assert kernels.choose_solver(15000, kf) == "cg" and kernels.choose_solver(10000, kf) == "dense"
    with pytest.raises(ValueError, match="n must"):
        kernels.choose_solver(0)


@pytest.mark.slow
def test_bar_cg_equals_dense_n20000():
    """The bar at N = 20000: ntk-3resnet on the paper instance (Experiment 1's splits), default solver settings."""
    ds = data.make_dataset(data.seed_keys(0)[0], targets.paper_instance(), 20000)
    t0 = time.perf_counter()
    dense, mf = _fits(kernels.kernel_fn("3resnet"), ds, "ntk")
    rel = _max_rel(mf["pred_test"], dense["pred_test"])
    print(f"N=20000 ntk-3resnet: max rel {rel:.2e}, iterations {mf['iterations']}, residuals {mf['residuals']}, "
          f"dense {dense['seconds']:.0f}s, cg {mf['seconds']:.0f}s, total {time.perf_counter() - t0:.0f}s")
    assert rel < 1e-4 and mf["lam"] == dense["lam"]


def test_experiment1_profiles_pick_the_solver(monkeypatch):
    """quick keeps the dense path (its numbers unchanged); the kernels profile goes matrix-free above 20000."""
    from rbk.experiments import concept_class, exp1

    monkeypatch.setattr(cg, "host_memory_bytes", lambda: 16 * 2**30)
    quick = [c for c in concept_class.plan(exp1.spec("quick")) if c.kind in ("ntk", "nngp")]
    assert quick and all(kernels.choose_solver(c.n, kernels.kernel_fn(c.arch)) == "dense" for c in quick)
    big = [c for c in concept_class.plan(exp1.spec("kernels")) if c.kind != concept_class.NET_KIND]
    assert {c.n for c in big} == {20000, 50000, 100000} and {c.learner for c in big} == {"ntk-3resnet", "ntk-2nn"}
    assert {c.n: kernels.choose_solver(c.n) for c in big} == {20000: "dense", 50000: "cg", 100000: "cg"}
    assert concept_class.kernel_cell_bytes(100000) < 8 * 2**30 and concept_class.kernel_cell_bytes(20000) > 16 * 20000**2
