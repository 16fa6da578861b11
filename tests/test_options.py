"""Options declared once (:func:`rbk._args.option`, config fields carrying their checks and help):
the fields make the command-line options, read them back as ``make_spec`` keywords and check them."""

import argparse
import dataclasses
import re
from functools import partial

import pytest

from rbk._args import add_options, integer, option, option_values, options_of, validate
from rbk._checks import check_int, check_reals
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


@dataclasses.dataclass(frozen=True)
class _Toy:
    experiment: str = "toy"
    n: int = option(3, check=partial(check_int, lo=1), flag="--n", help="a size", conv=integer)
    xs: tuple = option((1.0,), check=partial(check_reals, lo=0.0), flag="--xs", help="values", conv=float, many=True)
    hidden: int = option(0, check=partial(check_int, lo=0))
    free: str = "a"


def test_fields_declare_the_options_and_their_checks():
    assert [o.field for o in options_of(_Toy)] == ["n", "xs"]
    assert [o.field for o in options_of(_Toy, cli=False)] == ["n", "xs", "hidden"]
    assert validate(_Toy, {"xs": [2, 1]}, what="toy") == {"n": 3, "xs": (2.0, 1.0), "hidden": 0, "free": "a"}
    with pytest.raises(ValueError, match=re.escape("n (--n) must be an integer >= 1, got 0")):
        validate(_Toy, {"n": 0}, what="toy")
    with pytest.raises(ValueError, match=re.escape("hidden must be an integer >= 0, got -1")):
        validate(_Toy, {"hidden": -1}, what="toy")
    with pytest.raises(ValueError, match=re.escape("unknown option(s) ['m']; toy takes ['free', 'hidden', 'n', 'xs']")):
        validate(_Toy, {"m": 1}, what="toy")
    p = argparse.ArgumentParser(prog="t", exit_on_error=False)
    add_options(p, options_of(_Toy))
    assert option_values(p.parse_args(["--xs", "1,2", "3"]), options_of(_Toy)) == {"n": None, "xs": [1.0, 2.0, 3.0]}


@pytest.mark.parametrize("experiment", ["exp1", "exp2", "exp3", "exp3b", "exp4"])
def test_every_profile_is_a_dict_of_checked_fields(experiment):
    from rbk.experiments import module, profile_spec

    mod = module(experiment)
    for name, values in mod.PROFILES.items():
        spec = profile_spec(experiment, name)
        fields = {f.name for f in dataclasses.fields(spec)}
        assert set(values) - fields <= {"alphas", "betas"}  # the concept class's instances: alphas x betas
        assert {k: getattr(spec, k) for k in values if k in fields} == {
            k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in fields}
    with pytest.raises(ValueError, match=re.escape("unknown option(s) ['not_a_field']")):
        mod.make_spec(**{**mod.PROFILES["quick"], "not_a_field": 1})


@pytest.mark.parametrize("experiment", ["exp1", "exp2", "exp3", "exp3b", "exp4"])
def test_every_flag_of_an_experiment_comes_from_one_declaration(experiment):
    from rbk import cli
    from rbk.experiments import module

    flags = [a.option_strings[0] for a in cli.build_parser()._subparsers._group_actions[0].choices[experiment]._actions
             if a.option_strings]
    assert len(flags) == len(set(flags))
    spec = module(experiment).spec("quick")
    declared = {o.flag for o in options_of(type(spec))}
    assert declared - {"--seeds", "--matmul-precision"} <= set(flags)
