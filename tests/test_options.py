"""Options declared once (:class:`rbk._args.Option`): Experiment 4's declaration makes its
command-line options and reads them back as ``make_spec`` keywords."""

import argparse
import dataclasses

import pytest

from rbk._args import add_options, option_values
from rbk.experiments.hierarchy import exp4, study


def _parser():
    p = argparse.ArgumentParser(prog="t", exit_on_error=False)
    add_options(p.add_argument_group("g"), exp4.OPTIONS)
    return p


def test_every_declared_option_is_a_make_spec_keyword_once():
    fields = [o.field for o in exp4.OPTIONS]
    assert len(set(fields)) == len(fields) and len({o.flag for o in exp4.OPTIONS}) == len(fields)
    assert set(fields) <= {f.name for f in dataclasses.fields(study.Exp4Spec)}


def test_parsed_options_come_back_as_keywords():
    args = _parser().parse_args(["--n", "100,200", "300", "--lr", "1e-3", "--readout", "square", "--d", "1e1"])
    got = option_values(args, exp4.OPTIONS)
    assert got["ns"] == [100, 200, 300] and got["lrs"] == [1e-3] and got["readout"] == "square" and got["d"] == 10
    assert {k for k, v in got.items() if v is not None} == {"ns", "lrs", "readout", "d"}
    spec = exp4.spec("quick", **{**got, "readout": None, "d": None})  # None: the profile's value
    assert spec.ns == (100, 200, 300) and spec.lrs == (1e-3,) and spec.d == exp4.PROFILES["quick"]["d"]


def test_a_bad_value_names_the_option():
    with pytest.raises(argparse.ArgumentError, match="--n"):
        _parser().parse_args(["--n", "1,x"])
    with pytest.raises(argparse.ArgumentError, match="--readout"):
        _parser().parse_args(["--readout", "cube"])
