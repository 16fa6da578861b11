#!/usr/bin/env python3
"""Experiment 3b (learned features transferred to a new head on the same subspace): the same as ``rbk exp3b``.

The experiment itself is :mod:`rbk.experiments.multi_index.exp3b` (its profiles, ``spec`` and ``run``);
this script is its command line, for a clone: ``python experiments/exp3b_transfer.py
--profile quick --out results/exp3b-quick``.
"""

import sys

from rbk.cli import main

if __name__ == "__main__":
    sys.exit(main(["exp3b", *sys.argv[1:]]))
