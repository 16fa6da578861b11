#!/usr/bin/env python3
"""Experiment 4 (deep hierarchies: joint vs layer-wise training against the NTK): the same as ``rbk exp4``.

The experiment itself is :mod:`rbk.experiments.hierarchy.exp4` (its profiles, ``spec`` and ``run``);
this script is its command line, for a clone: ``python experiments/exp4_hierarchy.py
--profile quick --out results/exp4-quick``.
"""

import sys

from rbk.cli import main

if __name__ == "__main__":
    sys.exit(main(["exp4", *sys.argv[1:]]))
