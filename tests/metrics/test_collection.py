import math

import pytest
import torch
from matplotlib.figure import Figure

from lightning_skd.functional import (
    adaptive_expected_calibration_error,
    aurc,
    brier_score,
    eaurc,
    expected_calibration_error,
    negative_log_likelihood,
    overconfidence_error,
    top_k_error,
    underconfidence_error,
)
from lightning_skd.metrics import CalibrationMetrics
from tests.helpers.reference_metrics import random_probs


def _functional(probs, target, n_bins=15, prefix="", top_k=(1, 5), **kwargs):
    out = {
        f"{prefix}ece": expected_calibration_error(probs, target, n_bins=n_bins, **kwargs),
        f"{prefix}oce": overconfidence_error(probs, target, n_bins=n_bins, **kwargs),
        f"{prefix}uce": underconfidence_error(probs, target, n_bins=n_bins, **kwargs),
        f"{prefix}adaptive_ece": adaptive_expected_calibration_error(probs, target, n_bins=n_bins, **kwargs),
        f"{prefix}brier": brier_score(probs, target, **kwargs),
        f"{prefix}aurc": aurc(probs, target, **kwargs),
        f"{prefix}eaurc": eaurc(probs, target, **kwargs),
        f"{prefix}nll": negative_log_likelihood(probs, target, **kwargs),
    }
    for k in top_k:
        out[f"{prefix}top{k}_err"] = top_k_error(probs, target, k=k, **kwargs)
    return out


def _assert_close(got, expected):
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key].item() == pytest.approx(value.item(), abs=1e-6, nan_ok=True), key


def test_calibration_metrics_keys_and_values_match_functional():
    probs, target = random_probs(600, 10, 0)
    metrics = CalibrationMetrics(num_classes=10, prefix="val/")
    for chunk_p, chunk_t in zip(probs.split(128), target.split(128), strict=True):
        metrics.update(chunk_p, chunk_t)
    got = metrics.compute()
    assert list(got) == [
        "val/adaptive_ece",
        "val/aurc",
        "val/brier",
        "val/eaurc",
        "val/ece",
        "val/nll",
        "val/oce",
        "val/top1_err",
        "val/top5_err",
        "val/uce",
    ]
    assert all(value.dtype == torch.float32 and value.ndim == 0 for value in got.values())
    _assert_close(got, _functional(probs, target, prefix="val/"))


def test_calibration_metrics_without_prefix_and_top_k_limited_to_num_classes():
    probs, target = random_probs(50, 3, 1)
    metrics = CalibrationMetrics(num_classes=3, n_bins=10, top_k=(1, 2, 5))
    metrics.update(probs, target)
    got = metrics.compute()
    assert set(got) == {"ece", "oce", "uce", "adaptive_ece", "brier", "aurc", "eaurc", "nll", "top1_err", "top2_err"}
    _assert_close(got, _functional(probs, target, n_bins=10, top_k=(1, 2)))


def test_calibration_metrics_compute_groups_share_one_state():
    metrics = CalibrationMetrics(num_classes=4)
    assert ["adaptive_ece", "aurc", "eaurc"] in metrics.compute_groups.values()
    assert ["ece", "oce", "uce"] in metrics.compute_groups.values()
    probs, target = random_probs(30, 4, 2)
    metrics.update(probs, target)
    metrics.update(probs, target)
    leader = metrics._modules["adaptive_ece"]
    for name in ("aurc", "eaurc"):
        assert metrics._modules[name].confidence is leader.confidence
    assert len(leader.confidence) == 2 and leader.confidence[0].numel() == 30
    for name in ("oce", "uce"):
        assert metrics._modules[name].bin_count is metrics._modules["ece"].bin_count
    assert metrics._modules["ece"].bin_count.sum().item() == 60


def test_calibration_metrics_from_logits_ignore_index_token_level():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 30, 8, generator=gen) * 2
    target = torch.randint(0, 8, (2, 30), generator=gen)
    target[:, 25:] = -100
    logits[:, 25:] = float("nan")  # padding positions may hold anything
    metrics = CalibrationMetrics(num_classes=8, ignore_index=-100, from_logits=True)
    metrics.update(logits, target)
    _assert_close(metrics.compute(), _functional(logits, target, ignore_index=-100, from_logits=True))


def test_calibration_metrics_forward_returns_batch_values_and_accumulates():
    probs, target = random_probs(200, 6, 3)
    metrics = CalibrationMetrics(num_classes=6, prefix="train/")
    batch = metrics(probs[:80], target[:80])
    _assert_close(batch, _functional(probs[:80], target[:80], prefix="train/"))
    metrics(probs[80:], target[80:])
    _assert_close(metrics.compute(), _functional(probs, target, prefix="train/"))


def test_calibration_metrics_reset_and_validation():
    probs, target = random_probs(40, 5, 4)
    metrics = CalibrationMetrics(num_classes=5)
    with pytest.raises(ValueError, match="num_classes=5"):
        metrics.update(probs[:, :4].softmax(1), target.clamp(max=3))
    with pytest.raises(ValueError, match="`probs` to contain probabilities"):
        metrics.update(probs * 2, target)
    metrics.update(probs, target)
    first = metrics.compute()
    metrics.reset()
    metrics.update(probs[:20], target[:20])
    _assert_close(metrics.compute(), _functional(probs[:20], target[:20]))
    metrics.reset()
    metrics.update(probs, target)
    _assert_close(metrics.compute(), first)
    unchecked = CalibrationMetrics(num_classes=5, validate_args=False)
    unchecked.update(probs * 0.5, target)  # not checked


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 0}, "`num_classes`"),
        ({"num_classes": 3, "n_bins": 0}, "`n_bins`"),
        ({"num_classes": 3, "top_k": (0,)}, "`k`"),
        ({"num_classes": 3, "ignore_index": "pad"}, "`ignore_index`"),
        ({"num_classes": 3, "oracle": "x"}, "`oracle`"),
    ],
)
def test_calibration_metrics_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CalibrationMetrics(**kwargs)


def test_calibration_metrics_plot_figures_from_state():
    probs, target = random_probs(500, 10, 5)
    metrics = CalibrationMetrics(num_classes=10, n_bins=10)
    metrics.update(probs[:250], target[:250])
    metrics.update(probs[250:], target[250:])
    figures = metrics.plot_figures(title="val")
    assert set(figures) == {"reliability_diagram", "risk_coverage"}
    assert all(isinstance(fig, Figure) for fig in figures.values())
    ece = expected_calibration_error(probs, target, n_bins=10).item()
    over = overconfidence_error(probs, target, n_bins=10).item()
    under = underconfidence_error(probs, target, n_bins=10).item()
    assert figures["reliability_diagram"].axes[0].get_title() == (
        f"val\nECE = {100 * ece:.2f}% (over {100 * over:.2f}%, under {100 * under:.2f}%)"
    )
    legend = [t.get_text() for t in figures["risk_coverage"].axes[0].get_legend().get_texts()]
    assert legend[0] == f"model: AURC = {1000 * aurc(probs, target).item():.2f}e-3"
    # Plotting neither changes nor consumes the state.
    _assert_close(metrics.compute(), _functional(probs, target, n_bins=10))


def test_calibration_metrics_plot_figures_and_compute_without_samples():
    metrics = CalibrationMetrics(num_classes=3)
    figures = metrics.plot_figures()
    assert "no samples" in figures["reliability_diagram"].axes[0].get_title()
    assert "no samples" in figures["risk_coverage"].axes[0].get_title()
    with pytest.warns(UserWarning, match="compute"):
        values = metrics.compute()
    assert all(math.isnan(v.item()) for v in values.values())
