#!/usr/bin/env python3
"""Experiment 1 (test error against the number of samples N): the same as ``rbk exp1``.

The experiment itself is :mod:`rbk.experiments.concept_class.exp1` (its profiles, ``spec`` and ``run``);
this script is its command line, for a clone: ``python experiments/exp1_sample_complexity.py
--profile quick --out results/exp1-quick``.
"""

import sys

from rbk.cli import main

if __name__ == "__main__":
    sys.exit(main(["exp1", *sys.argv[1:]]))
