"""Every experiment's command, table-driven: each bad option is refused before any compute or
write, with exit status 2 and one line on stderr that names the option as the user typed it
(no traceback, no advice the command line cannot follow), and ``--out`` is left as it was.

In-process (``rbk.cli.main``), with every compute entry point replaced by a failure; the
machine's memory is fixed (``--device-memory-gb 16``, a 16 GiB host) where a case is about it.
"""

import pytest

from rbk import cli, sweep

MEM = ["--device-memory-gb", "16"]

#: (command and its bad options, what the one line must name)
CASES = [
    # exp1: the concept class
    ("exp1 --n 0", "--n"), ("exp1 --n 10", "--n"), ("exp1 --n 100 100", "--n"), ("exp1 --n x", "--n"),
    ("exp1 --n 2.5", "--n"), ("exp1 --alpha 0", "--alpha"), ("exp1 --alpha 1", "--alpha"),
    ("exp1 --alpha nan", "--alpha"), ("exp1 --beta 0", "--beta"), ("exp1 --d 7", "--d"), ("exp1 --d 1", "--d"),
    ("exp1 --k 0", "--k"), ("exp1 --k 16", "--k"), ("exp1 --g-degree 0", "--g-degree"),
    ("exp1 --g-degree 16", "--g-degree"), ("exp1 --width 0", "--width"), ("exp1 --width 64 64", "--width"),
    ("exp1 --epochs 0", "--epochs"), ("exp1 --decay-epoch 99", "--decay-epoch"), ("exp1 --lr 0", "--lr"),
    ("exp1 --lr -1", "--lr"), ("exp1 --lr inf", "--lr"), ("exp1 --wd -1", "--wd"),
    ("exp1 --kernel-ridges -1", "--kernel-ridges"), ("exp1 --kernel-ridges 1 2 3 4 5 6", "--kernel-ridges"),
    ("exp1 --n-val 0", "--n-val"), ("exp1 --n-test 0", "--n-test"), ("exp1 --kernel-max-n 0", "--kernel-max-n"),
    ("exp1 --max-members-per-call 0", "--max-members-per-call"), ("exp1 --learners foo", "--learners"),
    ("exp1 --learners 2nn 2nn", "--learners"), ("exp1 --seeds 0", "--seeds"), ("exp1 --seeds 2.5", "--seeds"),
    ("exp1 --device-memory-gb 0", "--device-memory-gb"), ("exp1 --cpu-devices 0", "--cpu-devices"),
    ("exp1 --matmul-precision foo", "--matmul-precision"), ("exp1 --profile foo", "--profile"),
    ("exp1 --learners 3resnet --n 1e9 " + " ".join(MEM), "--n"),
    ("exp1 --learners ntk-2nn --n 1000,2000000", "--kernel-max-n"),
    # exp2: lists of alpha and beta
    ("exp2 --alpha 0 0.5", "--alpha"), ("exp2 --alpha 0.5 0.5", "--alpha"), ("exp2 --beta -1", "--beta"),
    ("exp2 --n 0", "--n"),
    # exp3: multi-index targets
    ("exp3 --d 1", "--d"), ("exp3 --d 8 8", "--d"), ("exp3 --n 1", "--n"), ("exp3 --kernel-n 1", "--kernel-n"),
    ("exp3 --etas 0", "--etas"), ("exp3 --etas 1 1", "--etas"), ("exp3 --readout-ridges -1", "--readout-ridges"),
    ("exp3 --readout-ridges 1 2 3 4 5 6", "--readout-ridges"), ("exp3 --kernel-ridges -1", "--kernel-ridges"),
    ("exp3 --max-members-per-call 0", "--max-members-per-call"), ("exp4 --max-members-per-call -1", "--max-members-per-call"),
    ("exp4 --max-members-per-call 2.5", "--max-members-per-call"),
    ("exp3 --r 2", "--r"), ("exp3 --target random --r 30", "--r"), ("exp3 --p 2", "--p"),
    ("exp3 --target foo", "--target"), ("exp3 --width 3", "--width"), ("exp3 --sgd-width 0", "--sgd-width"),
    ("exp3 --epochs 0", "--epochs"), ("exp3 --lr 0", "--lr"), ("exp3 --wd -1", "--wd"), ("exp3 --n-val 0", "--n-val"),
    ("exp3 --n-test 0", "--n-test"), ("exp3 --b-std -1", "--b-std"), ("exp3 --learners foo", "--learners"),
    ("exp3 --n 1e9 --n-window 0.5 1e9 " + " ".join(MEM), "--n"), ("exp3 --n 1e9", "--n"),
    ("exp3 --n-window 2", "--n-window"), ("exp3 --n-window 4 2", "--n-window"), ("exp3 --folds 1", "--folds"),
    ("exp3 --theta 0", "--theta"), ("exp3 --thetas -1", "--thetas"), ("exp3 --kernel-d 7", "--kernel-d"),
    # exp3b: transfer
    ("exp3b --d 1", "--d"), ("exp3b --n2 1", "--n2"), ("exp3b --n2 40 40", "--n2"), ("exp3b --etas 0", "--etas"),
    ("exp3b --readout-ridges -1", "--readout-ridges"), ("exp3b --kernel-ridges 1 2 3 4 5 6", "--kernel-ridges"),
    ("exp3b --target foo", "--target"), ("exp3b --r 2", "--r"), ("exp3b --p 2", "--p"),
    ("exp3b --head-degrees 2", "--head-degrees"), ("exp3b --head-degrees 0 2", "--head-degrees"),
    ("exp3b --n1-factor 0", "--n1-factor"), ("exp3b --width 15", "--width"), ("exp3b --net-max-n 1", "--net-max-n"),
    ("exp3b --kernel-max-n 1", "--kernel-max-n"), ("exp3b --b-std -1", "--b-std"), ("exp3b --n-val 0", "--n-val"),
    ("exp3b --learners foo", "--learners"), ("exp3b --n2 1e9 " + " ".join(MEM), "--n2"),
    ("exp3b --folds 1", "--folds"), ("exp3b --folds 0", "--folds"),
    # exp4: deep hierarchies
    ("exp4 --lr 0", "--lr"), ("exp4 --lr 0.1 0.1", "--lr"), ("exp4 --n 0", "--n"), ("exp4 --n 10", "--n"),
    ("exp4 --target-widths 8 8 8 --d 4", "--target-widths"), ("exp4 --target-widths 4", "--target-widths"),
    ("exp4 --target-widths 9 4 4 4 --target-alphas 1 .8 .6 .4 --readout square --epochs 32", "--target-widths"),
    ("exp4 --target-alphas 1 0.8", "--target-alphas"), ("exp4 --target-alphas 0.5 0.8 0.9", "--target-alphas"),
    ("exp4 --kernel-max-n 0", "--kernel-max-n"), ("exp4 --epochs 91", "--epochs"), ("exp4 --width 0", "--width"),
    ("exp4 --kernel-ridges -1", "--kernel-ridges"), ("exp4 --wd -1", "--wd"), ("exp4 --n-val 1", "--n-val"),
    ("exp4 --n-test 0", "--n-test"), ("exp4 --d 0", "--d"), ("exp4 --learners foo", "--learners"),
    ("exp4 --readout cube", "--readout"), ("exp4 --seeds 0", "--seeds"), ("exp4 --kernel-n 0", "--kernel-n"),
    ("exp4 --kernel-large-seeds 0", "--kernel-large-seeds"), ("exp4 --two-stage-width 7", "--two-stage-width"),
    ("exp4 --etas 0", "--etas"), ("exp4 --readout-ridges -1", "--readout-ridges"), ("exp4 --n 1e9 " + " ".join(MEM), "--n"),
]


@pytest.fixture(autouse=True)
def host_16_gib(monkeypatch):
    """The memory checks see a 16 GiB host, whatever this machine has (no_compute: tests/conftest.py)."""
    monkeypatch.setattr(sweep.driver, "host_memory_bytes", lambda: 16 * 2**30)


def _run(argv, capsys) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    return code, capsys.readouterr().err


def test_the_table_is_large_and_covers_every_experiment():
    assert len(CASES) >= 60 and {c.split()[0] for c, _ in CASES} == {"exp1", "exp2", "exp3", "exp3b", "exp4"}


@pytest.mark.parametrize("case, flag", CASES, ids=[c for c, _ in CASES])
@pytest.mark.parametrize("dry", [False, True], ids=["run", "dry-run"])
def test_a_bad_option_is_one_line_naming_it_and_nothing_is_written(case, flag, dry, tmp_path, capsys, no_compute):
    experiment, *bad = case.split()
    out = tmp_path / "out"
    code, err = _run([experiment, "--out", str(out), "--cpu-devices", "1", "--quiet", *(["--dry-run"] * dry), *bad],
                     capsys)  # fmt: skip
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert flag in lines[0], lines[0]
    assert "=False" not in lines[0] and "=True" not in lines[0], lines[0]  # no keyword the command cannot pass
    assert not out.exists()


@pytest.mark.parametrize("experiment", ["exp1", "exp3", "exp3b", "exp4"])
def test_a_users_directory_is_left_as_it_was(experiment, tmp_path, capsys, no_compute):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "results.csv").write_text("my,data\n")
    code, err = _run([experiment, "--out", str(out), "--cpu-devices", "1", "--quiet"], capsys)
    assert code == 2 and "--out" in err and "results.csv" in err and "Traceback" not in err, err
    assert sorted(p.name for p in out.iterdir()) == ["results.csv"] and (out / "results.csv").read_text() == "my,data\n"


@pytest.mark.parametrize("old, new, value", [("exp1 --ridges", "--kernel-ridges", "0.01"),
                                             ("exp3 --ridges", "--readout-ridges", "0.01"),
                                             ("exp3b --eta-mults", "--etas", "1"),
                                             ("exp3b --source", "--target", "random_multi_index"),
                                             ("exp4 --widths", "--target-widths", "3 3 3"),
                                             ("exp4 --alphas", "--target-alphas", "1 0.7 0.5")])
def test_an_earlier_spelling_still_works_with_a_deprecation_line(old, new, value, tmp_path, capsys, no_compute):
    from rbk.cli import build_parser, spec_from_args

    experiment, flag = old.split()
    argv = [experiment, flag, *value.split()] + (["--r", "2", "--p", "2"] if flag == "--source" else [])
    parser = build_parser()
    spec_old = spec_from_args(parser.parse_args(argv), experiment)
    err = capsys.readouterr().err
    assert f"{flag} is deprecated" in err and f"use {new}" in err
    spec_new = spec_from_args(parser.parse_args([experiment, new, *value.split()] + argv[2 + len(value.split()):]),
                              experiment)  # fmt: skip
    assert spec_old == spec_new and capsys.readouterr().err == ""
