"""The neural-tangents oracle for rbk.kernels (docs/oracle.md).

Run with the nt environment's python (``bash scripts/nt_env.sh`` builds it)::

    PY=$(bash scripts/nt_env.sh | tail -n 1)
    $PY scripts/nt_oracle.py            # regenerate tests/golden/nt_kernels.npz
    $PY scripts/nt_oracle.py --check    # live: neural-tangents vs rbk.kernels (and vs the golden file)

Golden values are neural-tangents' infinite-width NNGP and NTK (float64) of ``2nn`` and
``3nn`` in the ``ntk`` parameterization, on fixed seeded Boolean-cube and Gaussian inputs
(stored in the file with the kernels, so the default-lane test never regenerates them), for
several ``(W_std, b_std)``, for both the symmetric block ``K(x1, x1)`` and a cross block
``K(x1, x2)``.

Tolerance (:func:`rel_err`): for a block ``a`` (rbk) against ``b`` (reference), the
normwise relative error ``max_ij |a_ij - b_ij| / max_ij |b_ij|`` must be ``<= RTOL = 1e-6``.
Not entrywise: where two inputs are (anti)parallel the kernels' arccos is evaluated at
``cos = +-1 +- O(eps)``, which moves the angle by ``O(sqrt(eps)) ~ 1e-8``; at an antipodal pair
without bias the true NTK entry is 0 and either implementation returns about ``1e-9`` of the
block's scale, so no entrywise relative error is meaningful there. :func:`entry_err` (the
entrywise relative error over entries at least ``1e-3`` of the block's scale) is printed as
information.

``--check`` also tries to express ``3resnet`` (post-ReLU skip) in neural-tangents with
``FanOut`` / ``FanInSum`` and prints the ``NotImplementedError`` it raises, as information.

Importing this module has no side effects (no jax flag, no environment variable, nothing
from neural-tangents), so tests/test_nt_live.py reuses its helpers (``nt_kernels``,
``rbk_kernels``, ``rel_err``, ``make_inputs``, ``case_list``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "nt_kernels.npz"

RTOL = 1e-6
ENTRY_FLOOR = 1e-3
ARCHS = ("2nn", "3nn")
GETS = ("nngp", "ntk")
#: (W_std, b_std): no bias, rbk's default, a larger pair, a bias-dominated one.
CASE_PARAMS = ((1.0, 0.0), (math.sqrt(2.0), 0.1), (1.5, 0.5), (0.5, 1.0))
#: input sets: (name, kind, d, seed); x1 has N1 rows, x2 N2.
INPUT_SETS = (("cube_d8", "cube", 8, 1), ("gauss_d8", "gauss", 8, 2),
              ("cube_d30", "cube", 30, 3), ("gauss_d30", "gauss", 30, 4))
N1, N2 = 16, 12
WIDTH = 512  # finite width of the stax layers; ignored by the infinite-width kernel_fn

STAX_TEXT = {
    "2nn": ("stax.serial(stax.Dense(WIDTH, W_std=W_std, b_std=b_std), stax.Relu(), "
            "stax.Dense(1, W_std=W_std, b_std=None))"),
    "3nn": ("stax.serial(stax.Dense(WIDTH, W_std=W_std, b_std=b_std), stax.Relu(), "
            "stax.Dense(WIDTH, W_std=W_std, b_std=b_std), stax.Relu(), "
            "stax.Dense(1, W_std=W_std, b_std=None))"),
    "3resnet (not expressible)": (
        "stax.serial(stax.Dense(WIDTH, W_std=W_std, b_std=b_std), stax.Relu(), stax.FanOut(2), "
        "stax.parallel(stax.Identity(), stax.serial(stax.Dense(WIDTH, W_std=W_std, b_std=b_std), "
        "stax.Relu())), stax.FanInSum(), stax.Dense(1, W_std=W_std, b_std=None))"),
}


# ----------------------------------------------------------------------------- shared helpers


def rel_err(a, b) -> float:
    """The pass criterion: ``max |a - b| / max |b|`` over the block (``max|a|`` if ``b == 0``)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    diff = float(np.max(np.abs(a - b)))
    scale = float(np.max(np.abs(b)))
    err = diff / scale if scale else float(np.max(np.abs(a)))
    return err if math.isfinite(err) else math.inf


def entry_err(a, b, floor: float = ENTRY_FLOOR) -> float:
    """Information: ``max |a_ij - b_ij| / |b_ij|`` over entries with ``|b_ij| >= floor * max|b|``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    keep = np.abs(b) >= floor * np.max(np.abs(b))
    if not np.any(keep):
        return 0.0
    return float(np.max(np.abs(a[keep] - b[keep]) / np.abs(b[keep])))


def make_inputs(kind: str, d: int, seed: int, n1: int = N1, n2: int = N2):
    """Seeded ``x1 (n1, d)``, ``x2 (n2, d)`` with planted edge cases.

    Boolean cube ``{-1, 1}^d`` or standard Gaussian. Planted: ``x2[0] = x1[0]`` (angle 0 off
    the diagonal of the cross block), ``x2[1] = -x1[1]`` (angle pi), ``x1[-1] = x1[0]``
    (a repeated row inside the symmetric block), ``x1[-2] = -x1[1]``; Gaussian sets also
    ``x2[2] = 3 x1[2]`` (same direction, other norm), ``x1[-3] = 0.5 x1[3]`` and a zero row
    ``x1[-4] = 0`` (zero variance when ``b_std = 0``).
    """
    rng = np.random.default_rng(seed)
    if kind == "cube":
        x1 = rng.choice([-1.0, 1.0], size=(n1, d))
        x2 = rng.choice([-1.0, 1.0], size=(n2, d))
    elif kind == "gauss":
        x1 = rng.standard_normal((n1, d))
        x2 = rng.standard_normal((n2, d))
    else:
        raise ValueError(f"kind must be 'cube' or 'gauss', got {kind!r}")
    x2[0], x2[1] = x1[0], -x1[1]
    x1[-1], x1[-2] = x1[0], -x1[1]
    if kind == "gauss":
        x2[2] = 3.0 * x1[2]
        x1[-3] = 0.5 * x1[3]
        x1[-4] = 0.0
    return x1, x2


def nt_stax(arch: str, W_std: float, b_std: float):
    """neural-tangents' ``(init_fn, apply_fn, kernel_fn)`` of ``arch`` (see ``STAX_TEXT``)."""
    from neural_tangents import stax

    def hidden():
        return [stax.Dense(WIDTH, W_std=W_std, b_std=b_std), stax.Relu()]

    top = stax.Dense(1, W_std=W_std, b_std=None)  # b_std=None: no output bias
    if arch == "2nn":
        return stax.serial(*hidden(), top)
    if arch == "3nn":
        return stax.serial(*hidden(), *hidden(), top)
    if arch == "3resnet":
        return stax.serial(*hidden(), stax.FanOut(2), stax.parallel(stax.Identity(), stax.serial(*hidden())),
                           stax.FanInSum(), top)
    raise ValueError(f"arch must be one of 2nn, 3nn, 3resnet; got {arch!r}")


def _x64():
    import jax

    enable = getattr(jax, "enable_x64", None)
    if enable is None:  # jax < 0.6
        from jax.experimental import enable_x64 as enable
    return enable(True)


def nt_kernels(arch: str, W_std: float, b_std: float, x1, x2=None) -> dict[str, np.ndarray]:
    """neural-tangents' ``{'nngp', 'ntk'}`` (float64 numpy) of ``arch`` on ``x1``, ``x2``."""
    with _x64():
        kfn = nt_stax(arch, W_std, b_std)[2]
        x1 = np.asarray(x1, np.float64)
        x2 = None if x2 is None else np.asarray(x2, np.float64)
        k = kfn(x1, x2, GETS)
        out = {g: np.asarray(getattr(k, g)) for g in GETS}
    for g, v in out.items():
        if v.dtype != np.float64:
            raise RuntimeError(f"neural-tangents returned {v.dtype} for {g}: float64 is not enabled")
    return out


def rbk_kernels(arch: str, W_std: float, b_std: float, x1, x2=None) -> dict[str, np.ndarray]:
    """rbk.kernels' ``{'nngp', 'ntk'}`` (imported from this repository)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from rbk import kernels

    k = kernels.kernel_fn(arch, W_std=W_std, b_std=b_std)(x1, x2, get=GETS)
    return {g: np.asarray(getattr(k, g), np.float64) for g in GETS}


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("neural-tangents", "jax", "jaxlib", "numpy", "scipy", "tf2jax", "tensorflow"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def param_key(W_std: float, b_std: float) -> str:
    return f"W{W_std:.6g}_b{b_std:.6g}"


def case_list():
    """Every golden case: dicts with ``key, arch, W_std, b_std, inputs, block, get``."""
    cases = []
    for name, _, _, _ in INPUT_SETS:
        for arch in ARCHS:
            for W_std, b_std in CASE_PARAMS:
                for block in ("x1x1", "x1x2"):
                    for g in GETS:
                        key = f"{g}__{arch}__{name}__{block}__{param_key(W_std, b_std)}"
                        cases.append(dict(key=key, arch=arch, W_std=W_std, b_std=b_std, inputs=name,
                                          block=block, get=g))
    return cases


# ----------------------------------------------------------------------------- modes


def generate(path: Path) -> None:
    t0 = time.perf_counter()
    arrays = {}
    for name, kind, d, seed in INPUT_SETS:
        arrays[f"x1__{name}"], arrays[f"x2__{name}"] = make_inputs(kind, d, seed)
    computed = {}
    for c in case_list():
        sig = (c["arch"], c["W_std"], c["b_std"], c["inputs"], c["block"])
        if sig not in computed:
            x1 = arrays[f"x1__{c['inputs']}"]
            x2 = None if c["block"] == "x1x1" else arrays[f"x2__{c['inputs']}"]
            computed[sig] = nt_kernels(c["arch"], c["W_std"], c["b_std"], x1, x2)
        arrays[c["key"]] = computed[sig][c["get"]]
    meta = {
        "what": "neural-tangents infinite-width NNGP/NTK (float64, per output) of rbk's 2nn and 3nn, "
                "ntk parameterization; regenerate with scripts/nt_oracle.py",
        "versions": versions(),
        "stax": {k: v for k, v in STAX_TEXT.items() if not k.startswith("3resnet")},
        "call": "kernel_fn(x1, None or x2, ('nngp', 'ntk')) under jax_enable_x64",
        "inputs": [dict(name=n, kind=k, d=d, seed=s, n1=N1, n2=N2) for n, k, d, s in INPUT_SETS],
        "input_notes": make_inputs.__doc__.strip(),
        "params": [list(p) for p in CASE_PARAMS],
        "tolerance": {"rtol": RTOL, "definition": "max_ij |a_ij - b_ij| / max_ij |b_ij| <= rtol per block"},
        "cases": case_list(),
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    arrays["meta_json"] = np.array(json.dumps(meta, indent=1))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}: "
          f"{len(meta['cases'])} kernel blocks, {len(INPUT_SETS)} input sets, "
          f"{path.stat().st_size / 1024:.0f} KiB, {time.perf_counter() - t0:.1f} s")
    print("versions:", json.dumps(meta["versions"]))


def resnet_probe() -> str:
    """Try ``3resnet`` in neural-tangents; the outcome as one line (information only)."""
    x = np.random.default_rng(0).standard_normal((3, 5))
    try:
        with _x64(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "FanIn layers assume independent inputs ..."
            k = nt_stax("3resnet", math.sqrt(2.0), 0.1)[2](x, None, GETS)
        return f"unexpectedly computed a 3resnet kernel (nngp[0,0] = {float(k.nngp[0, 0]):.6g})"
    except NotImplementedError as e:
        return f"NotImplementedError: {e}"
    except Exception as e:  # noqa: BLE001  (information only)
        return f"{type(e).__name__}: {e}"


def check(path: Path, fresh_seed: int) -> int:
    """Live comparison; 0 if every block agrees, 1 otherwise."""
    t0 = time.perf_counter()
    print(f"versions: {json.dumps(versions())}")
    sets = []  # (label, x1, x2, golden arrays or None)
    golden = None
    if path.exists():
        golden = np.load(path)
        gmeta = json.loads(str(golden["meta_json"]))
        print(f"golden: {path.relative_to(REPO) if path.is_relative_to(REPO) else path} "
              f"(generated {gmeta['generated']} with neural-tangents {gmeta['versions']['neural-tangents']}, "
              f"jax {gmeta['versions']['jax']})")
        for name, *_ in INPUT_SETS:
            sets.append((name, golden[f"x1__{name}"], golden[f"x2__{name}"], True))
    else:
        print(f"golden: {path} missing; comparing rbk with live neural-tangents on regenerated inputs")
        for name, kind, d, seed in INPUT_SETS:
            sets.append((name, *make_inputs(kind, d, seed), False))
    for kind, d in (("cube", 20), ("gauss", 13)):
        sets.append((f"fresh_{kind}_d{d}", *make_inputs(kind, d, fresh_seed + d, 9, 7), False))

    header = f"{'arch':5} {'W_std':>7} {'b_std':>5} {'inputs':17} {'block':5} {'get':4}  " \
             f"{'rbk-vs-nt':>10} {'(entrywise)':>11} {'golden-vs-nt':>12}"
    print(header)
    print("-" * len(header))
    worst = {"rbk": 0.0, "golden": 0.0}
    failures = []
    for label, x1, x2, has_golden in sets:
        for arch in ARCHS:
            for W_std, b_std in CASE_PARAMS:
                for block in ("x1x1", "x1x2"):
                    xb = None if block == "x1x1" else x2
                    ref = nt_kernels(arch, W_std, b_std, x1, xb)
                    got = rbk_kernels(arch, W_std, b_std, x1, xb)
                    for g in GETS:
                        e = rel_err(got[g], ref[g])
                        ne = entry_err(got[g], ref[g])
                        eg = math.nan
                        if has_golden:
                            key = f"{g}__{arch}__{label}__{block}__{param_key(W_std, b_std)}"
                            eg = rel_err(golden[key], ref[g])
                            worst["golden"] = max(worst["golden"], eg)
                        worst["rbk"] = max(worst["rbk"], e)
                        bad = not e <= RTOL or (has_golden and not eg <= RTOL)
                        row = (f"{arch:5} {W_std:7.4f} {b_std:5.2f} {label:17} {block:5} {g:4}  "
                               f"{e:10.2e} {ne:11.2e} {eg:12.2e}" + ("  FAIL" if bad else ""))
                        print(row)
                        if bad:
                            failures.append(row)
    print("-" * len(header))
    print(f"3resnet in neural-tangents (information): {resnet_probe()}")
    print(f"max relative error: rbk vs neural-tangents {worst['rbk']:.3e}; "
          f"golden file vs live neural-tangents {worst['golden']:.3e} (tolerance {RTOL:g}); "
          f"{time.perf_counter() - t0:.1f} s")
    if failures:
        print(f"DISAGREEMENT in {len(failures)} blocks:")
        for r in failures:
            print("  " + r)
        return 1
    print("OK: rbk.kernels agrees with neural-tangents")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="compare live neural-tangents with rbk.kernels (and the golden file) instead of writing")
    ap.add_argument("--golden", type=Path, default=GOLDEN, help=f"golden file (default {GOLDEN.relative_to(REPO)})")
    ap.add_argument("--fresh-seed", type=int, default=20240601,
                    help="seed of the extra inputs that --check adds (not in the golden file)")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # tensorflow (imported by neural_tangents) is chatty
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the oracle is tiny; CPU float64 everywhere
    import jax

    jax.config.update("jax_enable_x64", True)
    try:
        import neural_tangents  # noqa: F401
    except ImportError as e:
        print(f"neural_tangents is not importable ({e}); run with the nt environment's python "
              f"(bash scripts/nt_env.sh prints it)")
        return 2
    if args.check:
        return check(args.golden, args.fresh_seed)
    generate(args.golden)
    return 0


if __name__ == "__main__":
    sys.exit(main())
