#!/usr/bin/env python3
"""Experiment 2 (the (alpha, beta) phase diagram): the same as ``rbk exp2``.

The experiment itself is :mod:`rbk.experiments.concept_class.exp2` (its profiles, ``spec`` and ``run``);
this script is its command line, for a clone: ``python experiments/exp2_alpha_beta.py
--profile quick --out results/exp2-quick``.
"""

import sys

from rbk.cli import main

if __name__ == "__main__":
    sys.exit(main(["exp2", *sys.argv[1:]]))
