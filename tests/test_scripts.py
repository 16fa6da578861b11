"""The scripts of ``experiments/``: one per registered experiment, each the command line of its
experiment (``--help`` names the subcommand and its options)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rbk.experiments import EXPERIMENTS

SCRIPTS = Path(__file__).resolve().parents[1] / "experiments"


def _script(name: str) -> Path:
    found = sorted(SCRIPTS.glob(f"{name}_*.py"))
    assert len(found) == 1, f"experiments/ must hold one script {name}_*.py, got {[p.name for p in found]}"
    return found[0]


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_each_experiment_has_a_script_whose_help_works(name, tmp_path):
    r = subprocess.run([sys.executable, str(_script(name)), "--help"], cwd=tmp_path, capture_output=True, text=True,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"usage: rbk {name} " in r.stdout and "--profile" in r.stdout and "--out" in r.stdout


def test_no_script_without_an_experiment():
    stems = {p.stem.split("_", 1)[0] for p in SCRIPTS.glob("*.py")}
    assert stems == set(EXPERIMENTS)
