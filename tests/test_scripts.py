"""The scripts of ``experiments/``: one per registered experiment, each the command line of its
experiment (``--help`` names the subcommand and its options).

Every script's ``--help`` runs in one fresh Python process started in an empty folder (so each
script imports the installed ``rbk``, not the clone's root), as ``python experiments/NAME.py
--help`` runs it (``runpy`` with ``__main__``), with its exit status and output kept per script:
one process start and one import of JAX instead of one per script.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rbk.experiments import EXPERIMENTS

SCRIPTS = Path(__file__).resolve().parents[1] / "experiments"

_HELP_ALL = textwrap.dedent(
    """
    import contextlib, io, json, runpy, sys
    out = {}
    for path in sys.argv[1:]:
        buf, err, code = io.StringIO(), io.StringIO(), None
        sys.argv = [path, "--help"]
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
            try:
                runpy.run_path(path, run_name="__main__")
            except SystemExit as e:
                code = e.code
        out[path] = {"code": code, "stdout": buf.getvalue(), "stderr": err.getvalue()}
    print(json.dumps(out))
    """
)


def _script(name: str) -> Path:
    found = sorted(SCRIPTS.glob(f"{name}_*.py"))
    assert len(found) == 1, f"experiments/ must hold one script {name}_*.py, got {[p.name for p in found]}"
    return found[0]


@pytest.fixture(scope="module")
def helps(tmp_path_factory):
    """``{name: {"code", "stdout", "stderr"}}`` of each experiment's script run with ``--help``."""
    paths = {name: str(_script(name)) for name in EXPERIMENTS}
    r = subprocess.run([sys.executable, "-c", _HELP_ALL, *paths.values()], cwd=tmp_path_factory.mktemp("any"),
                       capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    return {name: got[path] for name, path in paths.items()}


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_each_experiment_has_a_script_whose_help_works(name, helps):
    h = helps[name]
    assert h["code"] == 0, h["stderr"]
    assert f"usage: rbk {name} " in h["stdout"] and "--profile" in h["stdout"] and "--out" in h["stdout"]


def test_no_script_without_an_experiment():
    stems = {p.stem.split("_", 1)[0] for p in SCRIPTS.glob("*.py")}
    assert stems == set(EXPERIMENTS)
