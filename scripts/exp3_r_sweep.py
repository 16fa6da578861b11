#!/usr/bin/env python3
"""Experiment 3 at fixed d, varying the number of directions r: n*(r) next to the theory's d^2 r + d r^p.

The sweep itself is :mod:`rbk.experiments.multi_index.r_sweep` (one ``rbk exp3`` run per r, each
into ``OUT/r{r}``, resumable, then ``OUT/r_sweep.json``): ``python scripts/exp3_r_sweep.py
--out results/exp3-r`` (defaults: d = 16, r in {1, 2, 3}, 10 seeds, the two-stage learner).
"""

import argparse
import sys


def main(argv=None) -> int:
    from rbk.experiments.multi_index import r_sweep

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="results directory")
    ap.add_argument("--d", type=int, default=16, help="the input dimension, >= 3 (default 16)")
    ap.add_argument("--r", type=int, nargs="+", default=[1, 2, 3], help="directions r, 1 <= r <= d (default 1 2 3)")
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the quick profile's 10)")
    ap.add_argument("--quiet", action="store_true", help="no progress and no table")
    a = ap.parse_args(argv)
    try:
        r_sweep.run(a.out, a.r, quiet=a.quiet, ds=(a.d,), seeds=None if a.seeds is None else tuple(range(a.seeds)))
    except ValueError as e:
        print(f"exp3_r_sweep: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
