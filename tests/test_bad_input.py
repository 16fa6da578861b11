"""Bad input everywhere a user can reach: a clear one-line error naming the parameter (or option)
and what is allowed, before any compute and before any write; nothing already written is lost.

Mostly ``rbk.cli.main([...])`` in-process (exit status + stderr); the library entry points
directly. See also ``test_validation.py`` (library arguments) and ``test_cli.py`` (option ranges).
"""

import json
import os
import shutil

import numpy as np
import pytest

from rbk import cli, data, kernels, models, sweep, targets, train
from rbk.experiments import concept_class

# in this process JAX already runs on one CPU device: --cpu-devices 1 keeps it
TINY = ["--cpu-devices", "1", "--d", "8", "--k", "2", "--g-degree", "2", "--seeds", "2", "--n-val", "40",
        "--n-test", "50", "--quiet", "--no-plot"]  # fmt: skip
KERNELS = ["--learners", "nngp-2nn", "ntk-2nn", "--n", "60,80"]


@pytest.fixture(autouse=True)
def host_16_gib(monkeypatch):
    """The memory checks see a 16 GiB host, whatever this machine has."""
    monkeypatch.setattr(sweep.driver, "host_memory_bytes", lambda: 16 * 2**30)  # where run and the dry run look it up


# no_compute: tests/conftest.py


def _main(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny kernel sweep (8 cells), copied by the tests that alter it."""
    out = tmp_path_factory.mktemp("done") / "e1"
    assert cli.main(["exp1", "--out", str(out), *KERNELS, *TINY]) == 0
    return out


def _copy(finished, tmp_path):
    dst = tmp_path / "e1"
    shutil.copytree(finished, dst)
    return dst


# --------------------------------------------------------------------------------------------
# memory: refused up front with the estimate and the option that fixes it
# --------------------------------------------------------------------------------------------


def test_exact_kernel_too_big_for_host_ram_is_refused_before_meta_json(tmp_path, capsys, no_compute):
    """Above N = 20000 the fit is matrix-free (n x 2000 preconditioner arrays), so this N is past it too."""
    out = tmp_path / "big"
    code, _, err = _main(["exp1", "--out", str(out), "--learners", "ntk-2nn", "--n", "1000,2000000", *TINY], capsys)
    line = _one_error_line(err)
    assert code == 2 and "N = 2000000" in line and "GiB" in line and "--kernel-max-n 1000" in line
    assert not out.exists()


def test_network_member_too_big_for_a_device_is_refused(tmp_path, capsys, no_compute):
    out = tmp_path / "big"
    argv = ["exp1", "--out", str(out), "--learners", "3resnet", "--n", "1e8", "--device-memory-gb", "11.8",
            "--cpu-devices", "1", "--quiet"]  # fmt: skip
    code, _, err = _main(argv, capsys)
    line = _one_error_line(err)
    assert code == 2 and "N = 100000000" in line and "11.8 GiB" in line and "--n" in line and "--width" in line
    assert not out.exists()


def test_too_many_members_per_call_names_the_option_that_fits():
    spec = concept_class.make_spec("exp1", learners=("3resnet",), ns=(1000,), seeds=(0, 1, 2, 3), widths=(64,), d=8, k=2,
                           g_degree=2, max_members_per_call=4)  # fmt: skip
    # each member: its parameters etc. (member_bytes) and its seed's data set (shared by no other member here)
    one = concept_class.cost.member_bytes(spec, "3resnet", 64, 1000) + 4 * (1000 + 1000 + 10000) * (8 + 2)
    msgs = concept_class.memory_problems(spec, concept_class.plan(spec), memory_bytes=2 * one + 1, n_devices=1)
    assert len(msgs) == 1 and "--max-members-per-call 2 or less" in msgs[0]
    assert concept_class.memory_problems(spec, concept_class.plan(spec), memory_bytes=4 * one, n_devices=1) == []
    msgs = concept_class.memory_problems(spec, concept_class.plan(spec), memory_bytes=one - 1, n_devices=4)
    assert len(msgs) == 1 and "one 3resnet member" in msgs[0]


def test_dry_run_says_the_plan_will_not_fit(capsys, no_compute, tmp_path):
    code, out, _ = _main(["exp1", "--dry-run", "--out", str(tmp_path / "p"), "--learners", "3resnet", "ntk-2nn",
                          "--n", "1000,1e8", "--cpu-devices", "1", "--device-memory-gb", "11.8"], capsys)  # fmt: skip
    assert code == 2 and not (tmp_path / "p").exists()  # the run would refuse it: so does the dry run
    fits = [ln for ln in out.splitlines() if ln.startswith("WILL NOT FIT")]
    assert len(fits) == 2 and "11.8 GiB" in fits[0] and "--kernel-max-n 1000" in fits[1]


def test_kernel_fit_beyond_the_machine_is_refused_before_the_gram(monkeypatch):
    ds = data.make_dataset(data.seed_keys(0)[0], targets.paper_instance(8, 2, 2), 100, n_val=20, n_test=20)
    monkeypatch.setattr(kernels.predict, "host_memory_bytes", lambda: kernels.fit_bytes(100) - 1)

    def boom(*a, **k):
        raise AssertionError("the Gram was computed")

    with pytest.raises(ValueError, match=r"kernel fit with N = 100 training points \(dataset.x_train\) needs about"):
        kernels.fit_predict(boom, ds)


# --------------------------------------------------------------------------------------------
# --out and meta.json
# --------------------------------------------------------------------------------------------


def test_out_that_is_a_file_is_an_error_and_the_file_is_kept(tmp_path, capsys, no_compute):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    for extra in ([], ["--dry-run"]):
        code, _, err = _main(["exp1", "--out", str(f), *KERNELS, *TINY, *extra], capsys)
        assert code == 2 and "--out" in _one_error_line(err) and "existing file" in err
    assert f.read_text() == "mine"


@pytest.mark.parametrize("exp", ["exp1", "exp3", "exp4"])
def test_out_that_is_someone_elses_directory_is_refused_and_left_alone(tmp_path, capsys, no_compute, exp):
    """--out at an existing, non-empty directory that is not an rbk results directory: exit 2,
    one line naming --out and the files in the way, nothing written there (dry run too)."""
    d = tmp_path / "thesis"
    d.mkdir()
    (d / "chapter1.tex").write_text("mine")
    (d / "figs").mkdir()
    before = sorted(p.relative_to(d) for p in d.rglob("*"))
    args = {"exp1": [*KERNELS, *TINY], "exp3": ["--cpu-devices", "1"], "exp4": ["--cpu-devices", "1"]}[exp]
    for extra in ([], ["--dry-run"]):
        code, _, err = _main([exp, "--out", str(d), *args, *extra], capsys)
        line = _one_error_line(err)
        assert code == 2 and "--out" in line and "chapter1.tex" in line and "figs/" in line and "Traceback" not in err
    assert sorted(p.relative_to(d) for p in d.rglob("*")) == before and (d / "chapter1.tex").read_text() == "mine"
    (d / "chapter1.tex").unlink()
    (d / "figs").rmdir()  # the same directory, empty: accepted (the dry run writes nothing)
    code, _, _ = _main([exp, "--out", str(d), *args, "--dry-run"], capsys)
    assert code == 0 and not any(d.iterdir())


def test_out_under_a_file_is_an_error(tmp_path, capsys, no_compute):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    code, _, err = _main(["exp1", "--out", str(f / "sub" / "res"), *KERNELS, *TINY], capsys)
    assert code == 2 and "--out" in _one_error_line(err) and "is a file" in err
    assert f.read_text() == "mine"


def test_out_that_cannot_be_created_is_an_error(tmp_path, capsys, no_compute):
    if os.geteuid() == 0:  # root writes anywhere a mode allows nothing: use a place no one can create
        target = "/proc/rbk-test-out"
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = str(ro / "res")
    code, _, err = _main(["exp1", "--out", target, *KERNELS, *TINY], capsys)
    line = _one_error_line(err)
    assert code == 2 and f"--out {target}" in line
    assert not os.path.exists(target)


@pytest.mark.parametrize("text, why", [("", "is empty"), ('{"config": {"experiment": "exp1", ', "not valid JSON"),
                                       ("[1, 2]", "not an rbk meta.json")])  # fmt: skip
def test_damaged_meta_json_is_an_error_for_plot_resume_and_dry_run(text, why, tmp_path, capsys, no_compute):
    out = tmp_path / "res"
    out.mkdir()
    (out / "meta.json").write_text(text)
    for argv in (["plot", "--out", str(out)], ["exp1", "--out", str(out), *KERNELS, *TINY],
                 ["exp1", "--out", str(out), *KERNELS, *TINY, "--dry-run"]):  # fmt: skip
        code, _, err = _main(argv, capsys)
        line = _one_error_line(err)
        assert code == 2 and why in line and "meta.json" in line, argv
    assert (out / "meta.json").read_text() == text and os.listdir(out) == ["meta.json"]


def test_results_directory_of_another_experiment(tmp_path, capsys, no_compute):
    spec2 = concept_class.make_spec("exp2", learners=("nngp-2nn",), ns=(60,), seeds=(0,), alphas=(0.1, 0.6), betas=(1.0,),
                            d=8, k=2, g_degree=2)  # fmt: skip
    out = tmp_path / "e2"
    out.mkdir()
    meta = json.dumps({"config": spec2.config(), "config_hash": spec2.config_hash()})
    (out / "meta.json").write_text(meta)
    code, _, err = _main(["exp1", "--out", str(out), *KERNELS, *TINY], capsys)
    line = _one_error_line(err)
    assert code == 2 and "holds results of exp2, not exp1" in line and "rbk exp2" in line
    assert (out / "meta.json").read_text() == meta


# --------------------------------------------------------------------------------------------
# Ctrl-C, alpha = 0, the default --out of a custom config
# --------------------------------------------------------------------------------------------


def test_ctrl_c_is_one_line_exit_130_and_keeps_finished_cells(tmp_path, capsys, monkeypatch):
    out = tmp_path / "res"
    real, calls = sweep.driver.run_cell, []

    def second_interrupts(spec, cell, devices=None):
        calls.append(cell.id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(spec, cell, devices)

    monkeypatch.setattr(sweep.driver, "run_cell", second_interrupts)
    argv = ["exp1", "--out", str(out), *KERNELS, *TINY]
    code, _, err = _main(argv, capsys)
    assert code == 130 and err == "interrupted; run the same command again to resume\n"
    assert [p.stem for p in (out / "cells").glob("*.jsonl")] == calls[:1]
    monkeypatch.setattr(sweep.driver, "run_cell", real)
    code, out_text, _ = _main(argv, capsys)
    assert code == 0 and "7 cells run, 1 resumed" in out_text


def test_exp1_alpha_zero_is_refused_up_front(tmp_path, capsys, no_compute):
    with pytest.raises(SystemExit) as e:
        cli.main(["exp1", "--alpha", "0", "--out", str(tmp_path / "a"), *KERNELS, *TINY])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--alpha" in err and "k*alpha^2 zero" in err and "(0, 1)" in err
    assert not (tmp_path / "a").exists()


def test_custom_options_without_out_get_a_directory_of_their_own(capsys, no_compute):
    from rbk.experiments import profile_spec

    quick = profile_spec("exp1", "quick")
    assert cli.default_out(quick, "exp1", "quick") == cli.Path("results/exp1-quick")
    chunked = profile_spec("exp1", "quick", max_members_per_call=1)  # chunking is not the config
    assert cli.default_out(chunked, "exp1", "quick") == cli.Path("results/exp1-quick")
    custom = profile_spec("exp1", "quick", epochs=5)
    assert cli.default_out(custom, "exp1", "quick") == cli.Path(f"results/exp1-quick-{custom.config_hash()[:8]}")
    code, out, _ = _main(["exp1", "--dry-run", "--epochs", "5", "--cpu-devices", "1"], capsys)
    assert code == 0 and f"Results would go to results/exp1-quick-{custom.config_hash()[:8]}" in out


# --------------------------------------------------------------------------------------------
# rbk plot: a torn results.jsonl is rebuilt, missing cells are counted
# --------------------------------------------------------------------------------------------


def test_plot_rebuilds_a_truncated_table_and_counts_missing_cells(finished, tmp_path, capsys):
    out = _copy(finished, tmp_path)
    full = (out / "results.jsonl").read_text()
    (out / "results.jsonl").write_text(full[: len(full) // 2])  # torn mid-line
    code, text, _ = _main(["plot", "--out", str(out), "--no-plot"], capsys)
    assert code == 0 and (out / "results.jsonl").read_text() == full and "missing" not in text
    gone = sorted((out / "cells").glob("*.jsonl"))[0]
    gone.unlink()
    code, text, _ = _main(["plot", "--out", str(out), "--no-plot"], capsys)
    assert code == 0 and "1 of 8 cells missing: run the same command to finish" in text
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 7 * 2 and gone.stem not in {r["cell"] for r in rows}
    assert json.loads((out / "summary.json").read_text())["cells"] == {"done": 7, "total": 8}


def test_plot_names_every_corrupt_cell_and_exits_non_zero_unless_allowed(finished, tmp_path, capsys):
    out = _copy(finished, tmp_path)
    cells = sorted((out / "cells").glob("*.jsonl"))
    cells[0].write_text(cells[0].read_text()[:40])  # cut mid-line
    lines = cells[1].read_text().splitlines()
    cells[1].write_text("\n".join(lines[:-1]) + "\n")  # no completion line
    cells[2].write_text("\n".join(lines[:1] + lines[-1:]).replace(cells[1].stem, cells[2].stem) + "\n")  # count off
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    code, text, err = _main(["plot", "--out", str(out), "--no-plot"], capsys)
    assert code == 1 and "Traceback" not in err and text == ""
    for c, why in ((cells[0], "not valid JSON"), (cells[1], "no completion line"), (cells[2], "counts 2 rows")):
        assert any(str(c) in ln and why in ln for ln in err.splitlines()), (c, err)
    assert "3 of 8 cells could not be read" in err and "--allow-incomplete" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing rewritten
    code, text, err = _main(["plot", "--out", str(out), "--no-plot", "--allow-incomplete"], capsys)
    assert code == 0 and "3 of 8 cells missing" in text and str(cells[0]) in err
    assert json.loads((out / "summary.json").read_text())["cells"] == {"done": 5, "total": 8}


def test_plot_with_an_unwritable_output_is_one_line(finished, tmp_path, capsys):
    """An output rbk cannot write (here summary.json is a directory: even root cannot write it
    as a file) gives one line naming the path, exit 1, no traceback."""
    out = _copy(finished, tmp_path)
    (out / "summary.json").unlink()
    (out / "summary.json").mkdir()
    code, _, err = _main(["plot", "--out", str(out), "--no-plot"], capsys)
    line = _one_error_line(err)
    assert code == 1 and "cannot write" in line and "summary.json" in line


# --------------------------------------------------------------------------------------------
# the library: d, splits, symmetry, non-finite data
# --------------------------------------------------------------------------------------------

T8 = targets.paper_instance(d=8, k=2, g_degree=2)


def test_model_d_other_than_the_target_is_named(no_compute):
    with pytest.raises(ValueError, match=r"model.d = 6 must equal the target's d = 8"):
        train.fit(models.get_model("2nn", 8, 6, 2), T8, 100, [0], [0.1], [0.0], train.config(1))
    with pytest.raises(ValueError, match=r"model.k = 3 must equal the target's k = 2"):
        train.fit(models.get_model("2nn", 8, 8, 3), T8, 100, [0], [0.1], [0.0], train.config(1))


def test_final_of_an_unknown_split_names_the_allowed_ones():
    res = train.TrainResult(errors={s: np.zeros((1, 1, 1, 1)) for s in train.SPLITS}, epoch_loss=np.zeros((1, 1, 1, 1)),
                            diverged=np.zeros((1, 1, 1), bool), record_epochs=(1,), lrs=np.ones(1), wds=np.zeros(1),
                            compile_s=0.0, run_s=0.0)  # fmt: skip
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'val', 'test'\], got 'foo'"):
        res.final("foo")
    assert res.final("val").shape == (1, 1, 1)


def test_non_symmetric_kernel_matrix_is_refused():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 300))
    k = a @ a.T + 300 * np.eye(300)
    y = rng.normal(size=300)
    bad = k.copy()
    bad[250, 3] += 1e-3 * np.abs(k).max()  # one entry, in the last row block
    for fn in (lambda m: kernels.ridge_solve(m, y), lambda m: kernels.gradient_flow_predict(m, y, 1.0)):
        with pytest.raises(ValueError, match=r"k_train_train must be symmetric"):
            fn(bad)
    fp32 = (k + rng.normal(size=k.shape) * 1e-9 * np.abs(k).max())  # float noise is tolerated
    np.testing.assert_allclose(kernels.ridge_solve(fp32, y), np.linalg.solve(k, y), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("field, value", [("x_test", np.nan), ("y_train", np.inf), ("x_val", -np.inf)])
def test_non_finite_values_in_a_user_dataset_are_named(field, value):
    ds = data.make_dataset(data.seed_keys(0)[0], T8, 60, n_val=20, n_test=20)
    arr = np.array(getattr(ds, field))
    arr[1, 0] = value
    bad = ds._replace(**{field: arr})
    with pytest.raises(ValueError, match=rf"dataset.{field} must contain only finite values"):
        kernels.fit_predict(kernels.kernel_fn("2nn"), bad)
    with pytest.raises(ValueError, match=rf"data.{field} must contain only finite values"):
        train.train(models.get_model("2nn", 8, 8, 2), bad, data.seed_keys(0)[1][None], [0.1], [0.0], train.config(1))


# --------------------------------------------------------------------------------------------
# found by probing every public function (each ended in a JAX/numpy traceback or no error)
# --------------------------------------------------------------------------------------------

M8 = models.get_model("2nn", 8, 8, 2)
PROBED = [
    ("key must be a JAX PRNG key", lambda: data.sample_inputs("a", 3, 3)),
    ("key must be a JAX PRNG key", lambda: M8.init(None)),
    ("key must be a JAX PRNG key", lambda: targets.random_instance(None, d=4, k=2)),
    ("d = 6 must equal the target's input dimension target.d = 8", lambda: data.make_dataset(data.seed_keys(0)[0], T8, 10, d=6)),
    ("target must be a callable", lambda: data.make_dataset(data.seed_keys(0)[0], None, 10, d=6)),
    ("datasets must be a non-empty sequence", lambda: data.stack([])),
    ("x must have shape (n, d=8) (the model's", lambda: M8.apply(M8.init(data.seed_keys(0)[1]), np.ones((3, 5), np.float32))),
    ("x must have shape (n, d=8) (the target's", lambda: T8(np.ones((3, 5), np.float32))),
    ("lrs and wds must be lists of numbers", lambda: train.train(M8, data.make_dataset(data.seed_keys(0)[0], T8, 60),
                                                                  data.seed_keys(0)[1][None], ["a"], [0.0], train.config(1))),
    ("model must be an rbk.models.Model", lambda: models.param_count("2nn")),
    ("seeds (--seeds) must be a list, got 5", lambda: concept_class.make_spec("exp1", learners=("2nn",), ns=(100,), seeds=5)),
    ("summary must be a summary dict", lambda: concept_class.format_table({})),
]


@pytest.mark.parametrize("msg, call", PROBED, ids=[p[0][:30] for p in PROBED])
def test_probed_library_inputs_are_named(msg, call, monkeypatch):
    monkeypatch.setattr(train.sgd, "_compiled_fn", lambda *a, **k: pytest.fail("compiled before validating"))
    with pytest.raises(ValueError) as e:
        call()
    assert msg in str(e.value)


@pytest.mark.parametrize("argv, msg", [(["--out", ""], "argument --out: expected a directory path"),
                                       (["--seeds", "2.5"], "argument --seeds: invalid integer value: '2.5'")])
def test_probed_options_are_named(argv, msg, capsys, no_compute):
    with pytest.raises(SystemExit) as e:
        cli.main(["exp1", "--dry-run", "--cpu-devices", "1", *argv])
    assert e.value.code == 2 and msg in capsys.readouterr().err
