import io

import pytest
import torch
from matplotlib.figure import Figure

from lightning_skd.functional import aurc, expected_calibration_error, overconfidence_error, underconfidence_error
from lightning_skd.functional.calibration import _ece_update
from lightning_skd.functional.statistics import sample_statistics
from lightning_skd.metrics import reliability_diagram, risk_coverage_curve
from tests.helpers.reference_metrics import random_probs


def test_reliability_diagram_bars_are_bin_accuracies_and_title_has_ece():
    probs, target = random_probs(400, 10, 0)
    fig = reliability_diagram(probs, target, n_bins=10, title="test")
    assert isinstance(fig, Figure)
    ax, ax_count = fig.axes
    ece = expected_calibration_error(probs, target, n_bins=10).item()
    over = overconfidence_error(probs, target, n_bins=10).item()
    under = underconfidence_error(probs, target, n_bins=10).item()
    assert over > 0 and under > 0  # both parts show
    assert ax.get_title() == f"test\nECE = {100 * ece:.2f}% (over {100 * over:.2f}%, under {100 * under:.2f}%)"
    stats = sample_statistics(probs, target)
    count, conf_sum, correct_sum = _ece_update(stats.confidence, stats.correct, 10)
    nonempty = count > 0
    accuracy_bars = ax.containers[0]
    heights = [bar.get_height() for bar in accuracy_bars]
    assert heights == pytest.approx((correct_sum[nonempty] / count[nonempty]).tolist())
    fractions = [bar.get_height() for bar in ax_count.containers[0]]
    assert fractions == pytest.approx((count / count.sum()).tolist())
    fig.savefig(io.BytesIO(), format="png")  # renders with the Agg canvas, no pyplot


def test_risk_coverage_curve_downsamples_and_reports_aurc():
    probs, target = random_probs(5000, 10, 1)
    fig = risk_coverage_curve(probs, target, max_points=500)
    model_line, oracle_line = fig.axes[0].get_lines()
    assert len(model_line.get_xdata()) == 500
    assert model_line.get_xdata()[-1] == 1.0
    assert oracle_line.get_ydata()[0] == 0.0
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[0] == f"model: AURC = {1000 * aurc(probs, target).item():.2f}e-3"
    fig.savefig(io.BytesIO(), format="png")


def test_plots_accept_logits_and_ignore_index():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(100, 4, generator=gen)
    target = torch.randint(0, 4, (100,), generator=gen)
    target[:10] = -100
    fig = reliability_diagram(logits, target, ignore_index=-100, from_logits=True)
    ece = expected_calibration_error(logits, target, ignore_index=-100, from_logits=True).item()
    assert f"ECE = {100 * ece:.2f}%" in fig.axes[0].get_title()
    fig = risk_coverage_curve(logits, target, ignore_index=-100, from_logits=True)
    assert len(fig.axes[0].get_lines()[0].get_xdata()) == 90
