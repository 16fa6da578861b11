"""Experiment 3's dependence on the number of directions ``r`` at fixed ``d``: ``n*(r)`` of each
learner next to the theory's ``n ~ d^2 r + d r^p`` (Damian, Lee & Soltanolkotabi 2022, the
two-stage learner at fixed accuracy).

:func:`run` runs ``rbk exp3`` once per ``r`` (target ``sum_of_products``: ``g(z) = r^{-1/2} sum_i
h_2(z_i) + prod_i h_{alpha_i}(z_i)``, normalised, whose degree-``p`` part needs ``min(r, p)``
directions; ``r = 1`` is ``single_index``), each into ``out_dir/r{r}`` (a resumable exp3 results
directory of its own), and writes ``out_dir/r_sweep.json``: per threshold ``theta`` and learner
the seed-mean ``n*`` per ``r`` (:func:`rbk.stats.n_star`, bootstrap CI), the theory's
``d^2 r + d r^p`` and the ratio of the two (constant in ``r`` if the theory's form holds; the
theory fixes no constant). Command line: ``python scripts/exp3_r_sweep.py --out DIR``.
"""

from __future__ import annotations

import json
from pathlib import Path

#: The sweep's defaults: exp3's quick profile at one d, the two-stage learner, N from d^2 / 4 to 64 d^2
#: (the theory's d^2 r + d r^p is 1.06 d^2 at r = 1, 2.1 d^2 at r = 2 and 3.3 d^2 at r = 3 for d = 16, p = 4).
DEFAULTS = dict(target="sum_of_products", ds=(16,), learners=("two-stage",), n_window=(0.25, 64.0),
                ns=(125, 250, 500, 1000, 2000, 4000, 8000, 16000))  # fmt: skip


def theory_n(d: int, r: int, p: int) -> float:
    """The theory's ``d^2 r + d r^p`` (no constant)."""
    return float(d * d * r + d * r**p)


def run(out_dir, rs=(1, 2, 3), *, profile: str = "quick", quiet: bool = False, **overrides) -> dict:
    """Run exp3 at each ``r`` of ``rs`` (``overrides`` on top of :data:`DEFAULTS` and ``profile``)
    and write ``r_sweep.json`` (module docstring); returns it."""
    from rbk import stats
    from rbk.experiments.multi_index import exp3

    rs = stats.jsonable(sorted(set(int(r) for r in rs)))
    kw = {**DEFAULTS, **{k: v for k, v in overrides.items() if v is not None}}
    if len(kw["ds"]) != 1:
        raise ValueError(f"ds must hold one d (the sweep varies r at fixed d), got {list(kw['ds'])}")
    specs = {r: exp3.spec(profile, **kw, r=r) for r in rs}  # every r validated before anything runs
    out_dir = Path(out_dir)
    summaries = {r: exp3.run(out_dir / f"r{r}", profile, quiet=quiet, **kw, r=r) for r in rs}
    d, p = int(kw["ds"][0]), specs[rs[0]].p
    out = {"experiment": "exp3-r-sweep", "d": d, "p": p, "rs": rs, "target": kw["target"],
           "theory": {str(r): theory_n(d, r, p) for r in rs}, "by_theta": {},
           "config": {str(r): specs[r].config() for r in rs}}  # fmt: skip
    for r, s in summaries.items():
        if s is None:
            continue
        for key, entry in s["by_theta"].items():
            block = out["by_theta"].setdefault(key, {"theta": entry["theta"], "n_star": {}, "ratio_to_theory": {}})
            for lr, by_d in entry["n_star"].items():
                v = by_d.get(str(d))
                block["n_star"].setdefault(lr, {})[str(r)] = v
                est = v["estimate"] if v and v["censored"] == "none" else None
                block["ratio_to_theory"].setdefault(lr, {})[str(r)] = None if est is None else est / theory_n(d, r, p)
    (out_dir / "r_sweep.json").write_text(json.dumps(stats.jsonable(out), indent=1))
    if not quiet:
        print(format_table(out))
    return out


def format_table(out: dict) -> str:
    """``n*(r)`` per threshold and learner beside the theory's ``d^2 r + d r^p``."""
    lines = [f"Experiment 3, r sweep at d = {out['d']} (target {out['target']}, p = {out['p']}): n* and "
             f"n* / (d^2 r + d r^p)"]
    for key, block in out["by_theta"].items():
        lines.append(f"  theta = {key}")
        for lr, by_r in block["n_star"].items():
            cells = []
            for r in out["rs"]:
                v, q = by_r.get(str(r)), block["ratio_to_theory"][lr].get(str(r))
                txt = "-" if v is None else (f"{v['estimate']:.0f}" if v["censored"] == "none" else
                                             f"{'>' if v['censored'] == 'never_below' else '<='} {v['bound']:.0f}")
                cells.append(f"r={r}: {txt}" + (f" ({q:.2f})" if q is not None else ""))
            lines.append(f"    {lr:10s} " + ", ".join(cells))
    lines.append("  theory d^2 r + d r^p: " + ", ".join(f"r={r}: {v:.0f}" for r, v in out["theory"].items()))
    return "\n".join(lines)
