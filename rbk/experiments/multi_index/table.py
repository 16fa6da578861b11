"""Experiment 3's table: mean test error per (learner, d) against N with each mean's relative
standard error, ``n*(d)``, the fitted slopes and the separations (``rbk exp3`` prints it; it reads
``summary.json`` only)."""

from __future__ import annotations

import math

from rbk.experiments.multi_index.predicted import slope_lines
from rbk.experiments.multi_index.separations import format_separations


def _fmt(x, nd=3) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}g}"


def _fmt_nstar(s: dict) -> str:
    if s["censored"] == "never_below":
        return f"> {s['bound']:.0f}"
    if s["censored"] == "below_at_min_n":
        return f"<= {s['bound']:.0f}"
    lo, hi = s["ci95"]
    ci = f" [{lo:.0f}, {hi:.0f}]" if lo is not None and hi is not None else ""
    return f"{s['estimate']:.0f}{ci}"


def _cell(e) -> str:
    if e is None:
        return ""
    r = e.get("test_error_rse")
    return _fmt(e["test_error_mean"]) + (f" ({100 * r:.0f})" if r is not None and math.isfinite(r) else "")


def format_table(summary) -> str:
    """Mean test error per (learner, d) against N, ``n*(d)`` and the fitted slopes."""
    lines = [f"Experiment 3: target {summary['instance']['target']} (r = {summary['instance']['r']}, "
             f"p = {summary['instance']['p']}), threshold {_fmt(summary['threshold'])}"]
    if summary.get("selection"):
        lines.append(f"selection: {summary['selection']}; test error with E f*^2 = 1 exact as a control variate")
    for lr, by_d in summary["n_star"].items():
        rows = [e for e in summary["rows"] if e["learner"] == lr]
        ns = sorted({e["n"] for e in rows})
        lines += ["", f"{lr}: mean test error (seeds) by N (its relative standard error, %), and n*",
                  "  d    " + "".join(f"{n:>13d}" for n in ns) + "   n* [95% CI]"]
        for d, s in by_d.items():
            val = {e["n"]: e for e in rows if str(e["d"]) == d}
            cells = "".join(f"{_cell(val.get(n)):>13s}" for n in ns)
            lines.append(f"  {d:<5s}" + cells + f"   {_fmt_nstar(s)}")
    for key, entry in (summary.get("by_theta") or {}).items():
        lines += ["", f"theta = {key} (threshold {key} E_p): n* per d, seed mean [95% CI]; exponent by interval "
                      f"regression over (d, seed) (theory)"]
        for lr, by_d in entry["n_star"].items():
            sl = entry["slopes"].get(lr)
            fit = f"{sl['slope']:.2f} ({sl['censored']} of {sl['points']} censored)" if sl else "-"
            lines.append(f"  {lr:10s} " + ", ".join(f"{d}: {_fmt_nstar(v)}" for d, v in by_d.items())
                         + f"; exponent {fit} (theory {entry['theory'].get(lr, math.nan):g})")
        for lr, by_d in entry.get("predicted_n_star", {}).items():
            sl = entry.get("predicted_slopes", {}).get(lr) or {}
            tail = "; ".join(f"slope {v['slope']:.2f} over d = {v['ds'][0]}..{v['ds'][-1]}" for v in sl.values() if v)
            lines.append(f"  {lr:10s} predicted: " + ", ".join(f"{d}: {_fmt(v, 3)}" for d, v in by_d.items())
                         + (f"; {tail}" if tail else ""))
    lines += ["", "slope of log n* against log d (bootstrap 95% CI over seeds; theory: 2 networks, p kernels)"]
    for lr, s in summary["slopes"].items():
        lines += slope_lines(lr, s)
    sep = summary.get("separation")
    if sep and not summary.get("separations"):  # the earlier reading (seed-mean slopes, measured only)
        for k, v in sep["kernels"].items():
            what = f"slope {v['slope']:.2f}" + (f" (a {v['slope_bound']} bound: censored)" if v["slope_bound"] else "")
            lines.append(f"  {k} {what} vs {sep['network']}'s upper 95% limit {sep['network_ci95_upper']:.2f}: "
                         f"{'separated' if v['holds'] else 'NOT separated'}; the kernel's whole CI "
                         f"[{v['ci95'][0]:.2f}, {v['ci95'][1]:.2f}] {'above' if v['holds_ci'] else 'not above'} it")
    lines += format_separations(summary.get("separations") or [])
    return "\n".join(lines)
