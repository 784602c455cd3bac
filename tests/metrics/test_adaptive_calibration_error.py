import math

import pytest
import torch

from lightning_skd.functional import adaptive_expected_calibration_error, sample_statistics
from lightning_skd.metrics import AdaptiveExpectedCalibrationError
from tests.helpers.reference_metrics import random_probs, ref_adaptive_ece


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("ties", [False, True])
def test_adaptive_ece_batches_equal_functional_and_reference(norm, ties):
    probs, target = random_probs(500, 10, 0, ties=ties)
    metric = AdaptiveExpectedCalibrationError(n_bins=12, norm=norm)
    splits = [1, 99, 0, 250, 150]  # an empty batch too
    for chunk_p, chunk_t in zip(probs.split(splits), target.split(splits), strict=True):
        metric.update(chunk_p, chunk_t)
    got = metric.compute()
    assert got.dtype == torch.float32
    expected = adaptive_expected_calibration_error(probs, target, n_bins=12, norm=norm)
    assert got.item() == pytest.approx(expected.item(), abs=1e-6)
    assert got.item() == pytest.approx(ref_adaptive_ece(probs, target, 12, norm), abs=1e-6)


def test_adaptive_ece_does_not_depend_on_batching_or_order():
    probs, target = random_probs(400, 10, 1, ties=True)
    values = []
    for seed in range(3):
        perm = torch.randperm(400, generator=torch.Generator().manual_seed(seed))
        metric = AdaptiveExpectedCalibrationError(n_bins=9)
        for chunk_p, chunk_t in zip(probs[perm].split(37 + seed), target[perm].split(37 + seed), strict=True):
            metric.update(chunk_p, chunk_t)
        values.append(metric.compute())
    assert torch.equal(values[0], values[1]) and torch.equal(values[0], values[2])


def test_adaptive_ece_options_statistics_input_forward_float64_and_reset():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 40, 5, generator=gen) * 3
    target = torch.randint(0, 5, (3, 40), generator=gen)
    target[:, 30:] = -100
    expected = adaptive_expected_calibration_error(logits, target, n_bins=5, ignore_index=-100, from_logits=True)
    metric = AdaptiveExpectedCalibrationError(n_bins=5, ignore_index=-100, from_logits=True)
    metric.update(logits, target)
    assert metric.compute().item() == pytest.approx(expected.item(), abs=1e-6)
    passthrough = AdaptiveExpectedCalibrationError(n_bins=5)
    passthrough.update(sample_statistics(logits, target, ignore_index=-100, from_logits=True))
    assert passthrough.compute().item() == pytest.approx(expected.item(), abs=1e-6)

    probs, t = random_probs(60, 4, 2)
    metric = AdaptiveExpectedCalibrationError(n_bins=4)
    batch_value = metric(probs[:30], t[:30])
    assert batch_value.item() == pytest.approx(adaptive_expected_calibration_error(probs[:30], t[:30], 4).item())
    metric(probs[30:], t[30:])
    assert metric.compute().item() == pytest.approx(adaptive_expected_calibration_error(probs, t, 4).item(), abs=1e-6)

    double = AdaptiveExpectedCalibrationError(n_bins=4).set_dtype(torch.float64)  # float64 confidences kept
    double.update(probs.double(), t)
    assert double.confidence[0].dtype == torch.float64
    assert double.compute().item() == pytest.approx(ref_adaptive_ece(probs.double(), t, 4), abs=1e-7)

    with pytest.raises(ValueError, match="`probs` to contain probabilities"):
        metric.update(probs * 3, t)
    metric.reset()
    with pytest.warns(UserWarning, match="compute"):
        assert math.isnan(metric.compute().item())


@pytest.mark.parametrize(("kwargs", "match"), [({"n_bins": 0}, "`n_bins`"), ({"norm": "L1"}, "`norm`")])
def test_adaptive_ece_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdaptiveExpectedCalibrationError(**kwargs)
