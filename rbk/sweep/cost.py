"""The engine's side of the cost model: the memory of the machine a run plans for.

A study estimates its own cells (``Study.memory_problems``, ``Study.format_plan``); the driver
gives it the memory of one local device (:func:`device_memory_bytes`) and of the host
(:func:`rbk._checks.host_memory_bytes`), so that what cannot fit is refused before anything runs.
"""

from __future__ import annotations

import functools
import os


def device_memory_bytes() -> tuple[int | None, str]:
    """Memory of one local device: ``bytes_limit`` of accelerators, total RAM for the CPU."""
    import jax

    dev = jax.local_devices()[0]
    try:
        st = dev.memory_stats() or {}
        if st.get("bytes_limit"):
            return int(st["bytes_limit"]), f"{dev.device_kind} bytes_limit"
    except Exception:  # noqa: BLE001 - CPU devices may not implement memory_stats
        pass
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return int(total) // max(1, jax.local_device_count()), "host RAM / local devices"
    except (ValueError, OSError, AttributeError):
        return None, "unknown"


def data_bytes(points: int, columns: int, copies: int = 1, itemsize: int = 4) -> int:
    """Bytes of ``copies`` float arrays of ``points x columns`` (``itemsize`` 4: float32): the
    floor under a network call's memory (its data and one layer's activations on them), which a
    study compares with a device's memory to refuse a plan that cannot fit (:func:`too_big`)."""
    return int(points) * int(columns) * int(copies) * int(itemsize)


def too_big(what: str, need: int, have: int | None, fix: str, *, fraction: float = 0.8) -> list[str]:
    """``[message]`` when ``need`` bytes exceed ``fraction`` of ``have`` (a device's memory; ``None``:
    unknown, nothing refused), else ``[]``: the message gives both figures and ``fix``, the
    option(s) that make it fit."""
    if have is None or need <= fraction * have:
        return []
    return [f"{what} needs at least {need / 2**30:,.1f} GiB, more than {fraction:.0%} of the "
            f"{have / 2**30:.1f} GiB of a device here: {fix}"]


# --------------------------------------------------------------------------------------------
# wall time: a study's cost model at this machine's measured rates
# --------------------------------------------------------------------------------------------


@functools.cache
def calibrate() -> dict:
    """This machine's rates, measured once per process in a few seconds (the dry run's only
    compute, none of it the plan's): ``sgd_flops_per_s``, float32 FLOP/s of small-batch training
    steps (batch 50 through a 64 -> 256 -> 1 ReLU network, forward and backward, in one compiled
    loop); ``dense_flops_per_s``, float64 FLOP/s of a 2048 x 2048 Cholesky factorisation (LAPACK, as the dense solver) (``n^3 / 3``;
    the kernels' and read-outs' dense algebra); ``entries_per_s``, closed-form NTK entries per
    second (rbk's ``2nn`` kernel on 1024 x 1024 points of d = 32); ``compile_s``, the seconds to
    trace and compile that training loop (a kernel's or read-out's program); ``train_compile_s``, the
    seconds of one of rbk's own training calls (``rbk.train.fit``, a 2nn of width 16 on 100 points,
    2 epochs: nearly all of it tracing and compiling)."""
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    from rbk.kernels import kernel_fn

    d, m, batch, steps = 64, 256, 50, 200

    def loop(w1, w2, x, y):
        def loss(w1, w2, xb, yb):
            return jnp.mean((jax.nn.relu(xb @ w1) @ w2 - yb) ** 2)

        def step(i, ws):
            g1, g2 = jax.grad(loss, argnums=(0, 1))(*ws, x[i % 8], y[i % 8])
            return ws[0] - 1e-3 * g1, ws[1] - 1e-3 * g2

        return jax.lax.fori_loop(0, steps, step, (w1, w2))

    def best_of(fn, *args, repeats=3) -> float:
        jax.block_until_ready(fn(*args))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times.append(time.perf_counter() - t0)
        return min(times)

    rng = np.random.default_rng(0)
    args = [jnp.asarray(rng.standard_normal(s), jnp.float32) for s in ((d, m), (m, 1), (8, batch, d), (8, batch, 1))]
    t0 = time.perf_counter()
    fn = jax.jit(loop).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    sgd = 6 * (d * m + m) * batch * steps / best_of(fn, *args)
    import scipy.linalg

    n = 2048
    a = rng.standard_normal((n, n))
    spd = a @ a.T / n + np.eye(n)
    dense = n**3 / 3 / best_of(lambda m: scipy.linalg.cho_factor(m, check_finite=False)[0], spd)
    n = 1024
    x = rng.standard_normal((n, 32))
    x *= np.sqrt(32) / np.linalg.norm(x, axis=1, keepdims=True)
    ntk = kernel_fn("2nn")
    entries = n * n / best_of(lambda x: ntk(x, x, "ntk"), x, repeats=2)
    # one of rbk's own training calls, at a size where compiling is nearly all of it
    from rbk import models, targets, train

    t0 = time.perf_counter()
    train.fit(models.get_model("2nn", 16, 8, 2), targets.paper_instance(8, 2, 2), 100, [0], [0.01], [0.0],
              train.config(epochs=2), n_val=50, n_test=50)  # fmt: skip
    train_compile_s = time.perf_counter() - t0
    return {"sgd_flops_per_s": sgd, "dense_flops_per_s": dense, "entries_per_s": entries, "compile_s": compile_s,
            "train_compile_s": train_compile_s}


def estimate_seconds(costs, rates: dict) -> dict:
    """The wall time of cells whose ``costs`` are ``(sgd_flops, dense_flops, kernel_entries,
    program)`` (a study's ``cell_cost``; ``program``: a key shared by the cells that run one
    compiled program, ``None`` for none; a tuple starting with ``"train"`` is a training call's, which
    costs ``train_compile_s``, any other ``compile_s``) at ``rates`` (:func:`calibrate`): ``{"seconds", "sgd_s",
    "dense_s", "kernel_s", "compile_s", "programs"}``."""
    costs = list(costs)
    sgd = sum(c[0] for c in costs) / rates["sgd_flops_per_s"]
    dense = sum(c[1] for c in costs) / rates["dense_flops_per_s"]
    kern = sum(c[2] for c in costs) / rates["entries_per_s"]
    keys = {c[3] for c in costs if c[3] is not None}
    training = sum(1 for k in keys if isinstance(k, tuple) and k[:1] == ("train",))
    programs = len(keys)
    comp = training * rates["train_compile_s"] + (programs - training) * rates["compile_s"]
    return {"seconds": sgd + dense + kern + comp, "sgd_s": sgd, "dense_s": dense, "kernel_s": kern,
            "compile_s": comp, "programs": programs}


def refuse_in_dry_run(experiment: str, problems: list[str]) -> int:
    """A dry run's end: each memory problem printed as ``WILL NOT FIT`` and, when there is one,
    the run's one refusal line on stderr and status 2 (the run would refuse it); else 0."""
    import sys

    for msg in problems:
        print(f"WILL NOT FIT: {msg}")
    if problems:
        print(f"rbk {experiment}: error: not enough memory: " + "; ".join(problems), file=sys.stderr)
        return 2
    return 0


def format_estimate(study, cells) -> str | None:
    """The dry run's wall-time line of ``cells`` (``None`` if the study has no ``cell_cost``)."""
    if not hasattr(study, "cell_cost"):
        return None
    r = calibrate()
    e = estimate_seconds((study.cell_cost(c) for c in cells), r)
    return (f"estimated wall time here: {_duration(e['seconds'])} (the cost model at this machine's rates, measured "
            f"just now: training {_duration(e['sgd_s'])} at {r['sgd_flops_per_s']:.2g} FLOP/s; dense algebra "
            f"{_duration(e['dense_s'])} at {r['dense_flops_per_s']:.2g} FLOP/s; kernel entries {_duration(e['kernel_s'])} "
            f"at {r['entries_per_s']:.2g}/s; {e['programs']} compiled programs {_duration(e['compile_s'])}; a rough "
            f"figure: docs/experiments.md says how close it came)")


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else (f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h")


def kernel_fit_cost(n: int, n_eval: int, ridges: int) -> tuple[float, float]:
    """``(dense FLOPs, kernel entries)`` of exact kernel ridge on ``n`` points predicting ``n_eval``
    more: a Cholesky (``n^3 / 3``), the solves and the predictions per ridge; the Gram entries."""
    return float(ridges * (n**3 / 3 + 2 * n * n + 2 * n_eval * n)), float((n + n_eval) * n)


def cg_fit_cost(n: int, n_eval: int, ridges: int, *, iterations: int = 400, passes: int = 4,
                rank: int = 2000) -> tuple[float, float]:
    """``(dense FLOPs, kernel entries)`` of the matrix-free kernel ridge (``rbk.kernels``' CG path)
    on ``n`` points predicting ``n_eval`` more: ``iterations`` products of the stored float32 Gram
    with one column per ridge (``2 n^2`` each) and the Nystrom factor (``rank^3``); the entries of
    the stored Gram, of ``passes - 1`` float64 refinement passes, the Nystrom columns and the
    predictions. ``iterations = 400`` is ``max_iter``, where Experiment 4's DeepQuad NTK ends at
    N = 32000 (it converges no sooner)."""
    return (float(iterations * 2 * n * n * ridges + rank**3),
            float(passes * n * n + n * rank + n_eval * n))


def readout_flops(n: int, n_eval: int, d: int, width: int, ridges: int) -> float:
    """Rough FLOPs of a ridge read-out on ``width`` ReLU features of ``d`` inputs (random features,
    the two-stage learner's second step): the features of every point, their ``width x width``
    Gram on the ``n`` training points, one factorisation and the predictions per ridge."""
    return float(2 * (n + n_eval) * d * width + 2 * n * width**2 + ridges * (width**3 / 3 + 2 * (n + n_eval) * width))
