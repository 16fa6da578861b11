#!/usr/bin/env python3
"""Experiment 3 (multi-index targets: test error against N for several d, n*(d)): the same as ``rbk exp3``.

The experiment itself is :mod:`rbk.experiments.multi_index.exp3` (its profiles, ``spec`` and ``run``);
this script is its command line, for a clone: ``python experiments/exp3_multi_index.py
--profile quick --out results/exp3-quick``.
"""

import sys

from rbk.cli import main

if __name__ == "__main__":
    sys.exit(main(["exp3", *sys.argv[1:]]))
