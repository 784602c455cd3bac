import math

import pytest
import torch

from lightning_skd.functional import expected_calibration_error, sample_statistics
from lightning_skd.metrics import ExpectedCalibrationError
from tests.helpers.reference_metrics import random_probs, ref_ece


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_expected_calibration_error_batches_equal_functional_on_all_data(norm):
    probs, target = random_probs(500, 10, 0, ties=False)
    metric = ExpectedCalibrationError(n_bins=10, norm=norm)
    for chunk_p, chunk_t in zip(probs.split([1, 99, 250, 150]), target.split([1, 99, 250, 150]), strict=True):
        metric.update(chunk_p, chunk_t)
    got = metric.compute()
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected_calibration_error(probs, target, n_bins=10, norm=norm).item(), abs=1e-6)
    assert got.item() == pytest.approx(ref_ece(probs, target, 10, norm), abs=1e-6)


def test_expected_calibration_error_ignore_index_from_logits_and_statistics_input():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 40, 5, generator=gen) * 3  # (batch, tokens, classes)
    target = torch.randint(0, 5, (3, 40), generator=gen)
    target[:, 30:] = -100
    metric = ExpectedCalibrationError(ignore_index=-100, from_logits=True)
    metric.update(logits, target)
    expected = expected_calibration_error(logits, target, ignore_index=-100, from_logits=True)
    assert metric.compute().item() == pytest.approx(expected.item(), abs=1e-6)

    passthrough = ExpectedCalibrationError()
    passthrough.update(sample_statistics(logits, target, ignore_index=-100, from_logits=True))
    assert passthrough.compute().item() == pytest.approx(expected.item(), abs=1e-6)


def test_expected_calibration_error_validates_in_update_and_resets():
    probs, target = random_probs(20, 4, 1)
    metric = ExpectedCalibrationError()
    with pytest.raises(ValueError, match="`probs` to contain probabilities"):
        metric.update(probs * 3, target)
    with pytest.raises(ValueError, match="`target` .* together with `probs`"):
        metric.update(probs)
    with pytest.raises(ValueError, match="`target` to be None when `probs` is a SampleStatistics"):
        metric.update(sample_statistics(probs, target), target)
    ExpectedCalibrationError(validate_args=False).update(probs * 0.5, target)  # not checked
    metric.update(probs, target)
    assert metric.bin_count.sum().item() == 20
    metric.reset()
    assert metric.bin_count.sum().item() == 0
    with pytest.warns(UserWarning, match="compute"):
        assert math.isnan(metric.compute().item())


@pytest.mark.parametrize(("kwargs", "match"), [({"n_bins": 0}, "`n_bins`"), ({"norm": "L1"}, "`norm`")])
def test_expected_calibration_error_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExpectedCalibrationError(**kwargs)


def test_expected_calibration_error_forward_returns_batch_value():
    probs, target = random_probs(60, 4, 2)
    metric = ExpectedCalibrationError()
    batch_value = metric(probs[:30], target[:30])
    assert batch_value.item() == pytest.approx(expected_calibration_error(probs[:30], target[:30]).item(), abs=1e-6)
    metric(probs[30:], target[30:])
    assert metric.compute().item() == pytest.approx(expected_calibration_error(probs, target).item(), abs=1e-6)
