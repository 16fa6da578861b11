"""scripts/perturbation_spread.py: its unperturbed run is the sweep's own cell; a perturbation moves it a little."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "perturbation_spread.py"
TINY = ["--profile", "quick", "--n", "100", "--seeds", "2", "--width", "8", "--epochs", "4", "--lr", "0.02", "0.05"]


@pytest.mark.slow
def test_base_is_the_sweeps_cell_and_noise_moves_it(tmp_path):
    from rbk import stats
    from rbk.experiments import concept_class, exp1

    out = tmp_path / "spread.jsonl"
    cmd = [sys.executable, str(SCRIPT), *TINY, "--perturbations", "base", "noise0", "--noise", "1e-3", "--out", str(out)]
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 * 2 * 2  # perturbations x seeds x lrs

    spec = exp1.spec("quick", learners=("3resnet",), ns=(100,), seeds=(0, 1), widths=(8,), epochs=4, lrs=(0.02, 0.05))
    (cell,) = concept_class.plan(spec)
    ref_rows = concept_class.runners.run_net_cell(spec, cell)
    ref = {(x["seed"], x["lr"]): x["test_error"] for x in ref_rows}
    got = {p: {(x["seed"], x["lr"]): x["test_error"] for x in rows if x["perturbation"] == p} for p in ("base", "noise0")}
    keys = sorted(ref)
    np.testing.assert_allclose([got["base"][k] for k in keys], [ref[k] for k in keys], rtol=1e-5)
    rel = np.abs(np.array([got["noise0"][k] / ref[k] - 1 for k in keys]))
    assert rel.max() > 0 and rel.max() < 0.05, rel

    # the table reports each seed's setting selected on validation, as the sweep's summary does
    sel = stats.select([dict(x, perturbation="base") for x in ref_rows], keys=("perturbation", "n", "seed"))
    assert "min / median / max" in r.stdout
    for x in sel:
        assert f"{x['test_error']:.3f}" in r.stdout

    # the same command again finds every (perturbation, N) done and starts nothing
    again = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and again.stderr == "", again.stderr
    assert len(out.read_text().splitlines()) == len(rows)
