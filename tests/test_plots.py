"""rbk.plots: the figures are written (non-empty PNG + PDF) with the expected axes, and the
text tables carry the threshold and the below-threshold markers."""

import csv
import math

import matplotlib
import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pytest
from test_stats import row, synthetic_rows

from rbk import plots, stats
from rbk.experiments import concept_class


def exp2_rows(alphas=(0.1, 0.3, 0.5), betas=(0.2, 0.5, 1.0), seeds=2):
    rows = []
    for a in alphas:
        for b in betas:
            for s in range(seeds):
                ratio = (0.2 if a < b else 1.5) * (0.9 + 0.2 * (s % 2))  # seed mean: 0.2 / 1.5
                e = ratio * 15 * a * a
                rows.append(row("3resnet", 4000, s, e, e, alpha=a, beta=b, experiment="exp2"))
    return rows


def _check_files(paths):
    png, pdf = paths
    assert png.suffix == ".png" and pdf.suffix == ".pdf"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000


def test_backend_is_agg():
    assert matplotlib.get_backend().lower() == "agg"


def test_plot_exp1_files_and_axes(tmp_path):
    rows = synthetic_rows()
    s = concept_class.summarize_exp1(rows, n_boot=200)
    _check_files(concept_class.plot_exp1(s, tmp_path, name="e1"))
    assert (tmp_path / "e1.png").exists()
    _check_files(concept_class.plot_exp1(rows, tmp_path / "from_rows"))  # rows are summarised inside

    fig = concept_class.figure_exp1(s)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    # the threshold: a horizontal line at k alpha^2 spanning the axes
    hlines = [ln for ln in ax.get_lines() if len(set(ln.get_ydata())) == 1 and ln.get_ydata()[0] == pytest.approx(1.35)]
    assert any(tuple(ln.get_xdata()) == (0, 1) for ln in hlines)
    assert any("1.35" in t.get_text() for t in ax.texts)
    # one line per learner, markers at the grid N; networks solid, kernels not
    by_label = {ln.get_label(): ln for ln in ax.get_lines()}
    for learner in ("3resnet", "3nn", "2nn", "ntk-2nn", "nngp-3resnet"):
        assert list(by_label[learner].get_xdata()) == [1000, 3000, 10000]
        assert by_label[learner].get_marker() not in (None, "None", "")
    assert by_label["3resnet"].get_linestyle() == "-" and by_label["ntk-2nn"].get_linestyle() == "--"
    assert by_label["2nn"].get_color() == by_label["ntk-2nn"].get_color()  # colour = architecture
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "3resnet" in legend and any("threshold" in t for t in legend)
    assert "d = 30" in ax.get_title() and "α = 0.3" in ax.get_title()
    assert len(ax.collections) >= 5  # seed bands
    plt.close(fig)


def test_plot_exp1_draws_predicted_curves(tmp_path):
    curve = {str(n): 1.35 * (1e6 / n) ** 0.1 for n in (1000, 3000, 10000, 100000, 1000000, 10000000)}
    s = concept_class.summarize_exp1(synthetic_rows(), predicted={"ntk-2nn": {"n_star": 1e6, "curve": curve}})
    fig = concept_class.figure_exp1(s)
    ax = fig.axes[0]
    thin = [ln for ln in ax.get_lines() if ln.get_linewidth() == pytest.approx(0.9) and len(ln.get_xdata()) == 6]
    assert len(thin) == 1 and thin[0].get_color() == plots.arch_color("2nn")
    np.testing.assert_allclose(thin[0].get_ydata(), [curve[k] for k in sorted(curve, key=int)])
    assert ax.get_xlim()[1] >= 1e7
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("predicted" in t and "spectrum" in t for t in labels) and "predicted n*" in labels
    plt.close(fig)
    text = concept_class.format_table(s)
    assert "  ntk-2nn  n* = 1,000,000" in text
    ratio = s["separation_ratio"]
    assert ratio["basis"] == "predicted" and ratio["value"] == pytest.approx(1e6 / ratio["network_n_star"])
    assert f"separation ratio n*(ntk-2nn) / n*(3resnet) = {plots.fmt_num(ratio['value'])} (predicted)" in text


def test_plot_exp1_degenerate_inputs(tmp_path):
    # one seed (no bands, no CIs), a learner that diverged everywhere at one N, a 1-point learner
    rows = synthetic_rows(seeds=1)
    for r in rows:
        if r["learner"] == "3nn" and r["n"] == 3000:
            r["diverged"] = True
    rows.append(row("rf-3nn", 1000, 0, 20.0, 20.0))
    s = concept_class.summarize_exp1(rows)
    _check_files(concept_class.plot_exp1(s, tmp_path))
    assert "all diverged" in concept_class.format_table(s)


def test_plot_exp1_from_csv_path(tmp_path):
    rows = synthetic_rows(seeds=2)
    with open(tmp_path / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    _check_files(concept_class.plot_exp1(tmp_path / "results.csv", tmp_path / "out"))


def test_plot_exp2_files_and_axes(tmp_path):
    rows = exp2_rows()
    s = concept_class.summarize_exp2(rows)
    _check_files(concept_class.plot_exp2(s, tmp_path))
    _check_files(concept_class.plot_exp2(rows, tmp_path / "from_rows"))

    fig = concept_class.figure_exp2(s)
    ax = fig.axes[0]
    (im,) = ax.get_images()
    norm = im.norm
    assert isinstance(norm, mcolors.LogNorm) and norm.vmin * norm.vmax == pytest.approx(1.0)  # centred at 1
    assert norm(1.0) == pytest.approx(0.5)
    data = np.ma.filled(im.get_array(), np.nan)
    assert data.shape == (3, 3)  # alpha rows x beta columns
    # origin lower: row 0 is the smallest alpha; cell (alpha=0.1, beta=0.2) is below threshold
    assert data[0, 0] == pytest.approx(0.2)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0.1", "0.3", "0.5"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.2", "0.5", "1"]
    assert "α" in ax.get_ylabel() and "β" in ax.get_xlabel()
    texts = [t.get_text() for t in ax.texts]
    assert "0.20" in texts and "1.50" in texts
    diag = [ln for ln in ax.get_lines() if ln.get_label() == "α = β"]
    assert diag  # the alpha = beta line: through cells (0.5, 0.5) at (x=1, y=2)
    x, y = diag[0].get_xdata(), diag[0].get_ydata()
    assert np.interp(1.0, x, y) == pytest.approx(2.0)
    plt.close(fig)


def test_plot_exp2_alpha_zero_missing_cells_and_panels(tmp_path):
    rows = exp2_rows(alphas=(0.0, 0.2, 0.4), betas=(0.2, 0.4))
    rows = [r for r in rows if not (r["alpha"] == 0.4 and r["beta"] == 0.2)]
    rows += [dict(r, learner="3nn", arch="3nn") for r in rows]
    s = concept_class.summarize_exp2(rows)
    _check_files(concept_class.plot_exp2(s, tmp_path))
    fig = concept_class.figure_exp2(s)
    assert len(fig.axes) == 3  # two panels and the colour bar
    assert "n/a" in [t.get_text() for t in fig.axes[0].texts]
    plt.close(fig)


def test_plot_wrong_summary_kind(tmp_path):
    with pytest.raises(ValueError):
        concept_class.plot_exp2(concept_class.summarize_exp1(synthetic_rows(seeds=2), n_boot=50), tmp_path)
    with pytest.raises(ValueError):
        concept_class.plot_exp1(concept_class.summarize_exp2(exp2_rows()), tmp_path)


def test_format_table(capsys):
    s = concept_class.summarize_exp1(synthetic_rows(), n_boot=200)
    text = concept_class.format_table(s)
    assert "1.35" in text and "N=10,000" in text and "n*" in text and "separation" in text
    lines = text.splitlines()
    r3 = next(ln for ln in lines if ln.startswith("3resnet "))
    mean_10k = next(r["test_error_mean"] for r in s["rows"] if r["learner"] == "3resnet" and r["n"] == 10000)
    assert mean_10k < 1.35 and "*" in r3
    rk = next(ln for ln in lines if ln.startswith("nngp-3resnet "))
    assert "*" not in rk
    concept_class.print_table(s)
    assert capsys.readouterr().out.strip() == text.strip()
    t2 = concept_class.format_table(concept_class.summarize_exp2(exp2_rows()))
    assert "alpha=0.5" in t2 and "beta=1" in t2 and "0.20*" in t2


def test_fmt_helpers():
    assert plots.fmt_n(1000) == "1k" and plots.fmt_n(2500) == "2.5k" and plots.fmt_n(300) == "300"
    assert concept_class.figures.fmt_ratio(None) == "n/a" and concept_class.figures.fmt_ratio(math.nan) == "n/a"
    assert concept_class.figures.fmt_ratio(0.456) == "0.46" and concept_class.figures.fmt_ratio(123.4) == "123"
