"""Experiment 4's ``n*(d)``: combine finished runs at several ``d`` into exponents and a paired test.

Each directory is a finished ``rbk exp4`` run (the same hierarchy, a different ``--d``); this
prints the deepest threshold's ``n*`` per learner and ``d``, the NTK's predicted ``n*`` and its
ratio to the deep network's, the exponents (interval regression over seeds) and the paired
bootstrap of the slope differences, and writes them as JSON
(:func:`rbk.experiments.hierarchy.nstar_d.combine`). For example::

    rbk exp4 --profile quick --d 24 --lr 7e-4 1.4e-3 --learners deep-joint two-stage --n 8000 16000 32000 --out runs/d24
    rbk exp4 --profile quick --d 32 --lr 7e-4 1.4e-3 --learners deep-joint two-stage --n 16000 32000 64000 --out runs/d32
    rbk exp4 --profile quick --d 40 --lr 7e-4 1.4e-3 --learners deep-joint two-stage --n 16000 32000 64000 --out runs/d40
    python scripts/exp4_nstar_d.py runs/d24 runs/d32 runs/d40 --out runs/nstar_d.json
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="finished rbk exp4 result directories, one per d")
    p.add_argument("--out", default=None, help="write the combined summary to this JSON file")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples of the paired slope test")
    p.add_argument("--drop-diverged", action="store_true",
                   help="leave out the (d, seed) whose training diverged (default: their n* is censored)")
    a = p.parse_args(argv)

    from rbk import stats
    from rbk.experiments.hierarchy import nstar_d

    out = nstar_d.combine(a.runs, n_boot=a.n_boot, drop_diverged=a.drop_diverged)
    print(nstar_d.format_table(out))
    if a.out:
        print(f"wrote {stats.write_json(out, a.out)}")
        print("wrote", *nstar_d.plot(out, Path(a.out).parent))


if __name__ == "__main__":
    main()
