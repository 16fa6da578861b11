"""The engine's plug-in protocol (:class:`rbk.sweep.Study`): a study the engine has never seen
runs, stores, resumes and is rebuilt from its ``meta.json`` through the protocol alone."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest

from rbk import sweep
from rbk.experiments import concept_class


@dataclasses.dataclass(frozen=True)
class ToyCell:
    id: str
    learner: str
    kind: str
    n: int
    seed: int


@dataclasses.dataclass(frozen=True)
class Toy(sweep.Study):
    """Estimates E[x^2] = 1 of a standard normal from n draws per seed: the error is the estimate."""

    experiment: str = "toy"
    ns: tuple = (10, 40)
    seeds: tuple = (0, 1)
    row_fields = sweep.CORE_FIELDS + ("mean",)

    def config(self) -> dict:
        return {"experiment": self.experiment, "ns": list(self.ns), "seeds": list(self.seeds)}

    @classmethod
    def from_config(cls, config, resolved=None):
        return cls(config["experiment"], tuple(config["ns"]), tuple(config["seeds"]))

    def plan(self):
        return [ToyCell(f"mc_n{n}_s{s}", "mc", "toy", n, s) for n in self.ns for s in self.seeds]

    def run_cell(self, cell, devices=None, progress=None):
        x = np.random.default_rng(cell.seed).standard_normal(cell.n)
        e = float(np.mean(x**2))
        return [{"experiment": self.experiment, "learner": cell.learner, "kind": cell.kind, "n": cell.n,
                 "seed": cell.seed, "train_error": e, "val_error": e, "test_error": e, "diverged": False,
                 "call_wall_s": 0.0, "cell": cell.id, "mean": float(np.mean(x)), "ignored": 1}]  # fmt: skip


def _expected(n, seed):
    x = np.random.default_rng(seed).standard_normal(n)
    return float(np.mean(x**2)), float(np.mean(x))


def test_a_new_study_runs_stores_and_is_rebuilt(tmp_path):
    spec = Toy()
    res = sweep.run(spec, tmp_path, quiet=True)
    assert res.complete and len(res.rows) == 4 and len(res.ran) == 4
    for r in res.rows:
        assert set(r) == set(Toy.row_fields)  # exactly the study's columns (extra keys dropped)
        assert (r["test_error"], r["mean"]) == pytest.approx(_expected(r["n"], r["seed"]), rel=1e-12)
    with open(tmp_path / "results.csv") as fh:
        header = next(csv.reader(fh))
    assert tuple(header) == Toy.row_fields
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["study"] == Toy.study_path() and meta["config"] == spec.config()
    assert {"versions", "device", "git"} <= set(meta)
    assert sweep.spec_from_meta(meta) == spec
    assert sweep.load_rows(tmp_path) == res.rows


def test_a_new_study_resumes_and_refuses_another_config(tmp_path):
    spec = Toy()
    sweep.run(dataclasses.replace(spec, ns=(10,)), tmp_path / "a", quiet=True)
    first = (tmp_path / "a" / "cells" / "mc_n10_s0.jsonl").read_bytes()
    with pytest.raises(sweep.ConfigMismatchError):  # a study without extends(): another config is refused
        sweep.run(spec, tmp_path / "a", quiet=True)
    sweep.run(spec, tmp_path / "b", quiet=True)
    (tmp_path / "b" / "cells" / "mc_n40_s1.jsonl").unlink()  # as if killed before the last cell
    started = []
    res = sweep.run(spec, tmp_path / "b", quiet=True, on_start=lambda c: started.append(c.id))
    assert started == ["mc_n40_s1"] and len(res.skipped) == 3 and len(res.rows) == 4
    assert (tmp_path / "a" / "cells" / "mc_n10_s0.jsonl").read_bytes() == first


def test_meta_naming_an_unknown_study_is_a_clear_error(tmp_path):
    sweep.run(Toy(), tmp_path, quiet=True)
    meta = json.loads((tmp_path / "meta.json").read_text())
    for path, words in (("no_such_module_xyz:Toy", "cannot import"), ("json:dumps", "not an rbk.sweep.Study")):
        with pytest.raises(sweep.SweepInputError, match=words):
            sweep.spec_from_meta({**meta, "study": path})
    with pytest.raises(sweep.SweepInputError, match="hash"):
        sweep.spec_from_meta({**meta, "config": {**meta["config"], "ns": [10]}})


def test_the_concept_class_sweep_is_a_study():
    spec = concept_class.make_spec("exp1", learners=("2nn", "ntk-2nn"), ns=(100,), seeds=(0,), d=4, k=2, g_degree=1)
    assert isinstance(spec, sweep.Study)
    assert [c.id for c in spec.plan()] == [c.id for c in concept_class.plan(spec)]
    rebuilt = concept_class.SweepSpec.from_config(spec.config())
    assert rebuilt.config_hash() == spec.config_hash()


def test_a_plan_with_repeated_cell_ids_is_refused_before_anything_is_written(tmp_path):
    spec = dataclasses.replace(Toy(), seeds=(0, 0))
    with pytest.raises(ValueError, match="own id"):
        sweep.run(spec, tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()


def test_study_paths_of_earlier_versions_still_resolve():
    """``meta.json`` files written before the experiments had their own packages name the old modules."""
    from rbk.experiments import hierarchy, multi_index

    assert sweep.study_class("rbk.sweep:SweepSpec") is concept_class.SweepSpec
    assert sweep.study_class("rbk.experiments.exp3:Exp3Spec") is multi_index.Exp3Spec
    assert sweep.study_class("rbk.experiments.exp3b:Exp3bSpec") is multi_index.Exp3bSpec
    assert sweep.study_class("rbk.experiments.exp4:Exp4Spec") is hierarchy.Exp4Spec
    assert sweep.study_class(concept_class.SweepSpec.study_path()) is concept_class.SweepSpec
