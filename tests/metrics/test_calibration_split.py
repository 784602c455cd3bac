import math

import pytest
import torch

from lightning_skd.functional import overconfidence_error, sample_statistics, underconfidence_error
from lightning_skd.metrics import ExpectedCalibrationError, OverconfidenceError, UnderconfidenceError
from tests.helpers.reference_metrics import random_probs, ref_over_under_confidence

SPLITS = [1, 99, 250, 150]


@pytest.mark.parametrize("ties", [False, True])
def test_over_and_under_confidence_batches_equal_functional_and_reference(ties):
    probs, target = random_probs(500, 10, 0, ties=ties, accuracy=0.4)
    metrics = [OverconfidenceError(n_bins=10), UnderconfidenceError(n_bins=10), ExpectedCalibrationError(n_bins=10)]
    for chunk_p, chunk_t in zip(probs.split(SPLITS), target.split(SPLITS), strict=True):
        for metric in metrics:
            metric.update(chunk_p, chunk_t)
    over, under, ece = (metric.compute() for metric in metrics)
    assert over.dtype == under.dtype == torch.float32
    assert over.item() == pytest.approx(overconfidence_error(probs, target, n_bins=10).item(), abs=1e-6)
    assert under.item() == pytest.approx(underconfidence_error(probs, target, n_bins=10).item(), abs=1e-6)
    ref_over, ref_under = ref_over_under_confidence(probs, target, 10)
    assert over.item() == pytest.approx(ref_over, abs=1e-6)
    assert under.item() == pytest.approx(ref_under, abs=1e-6)
    assert (over + under).item() == pytest.approx(ece.item(), rel=2**-22)


def test_over_and_under_confidence_options_statistics_input_forward_and_reset():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 40, 5, generator=gen) * 3
    target = torch.randint(0, 5, (3, 40), generator=gen)
    target[:, 30:] = -100
    for cls, function in ((OverconfidenceError, overconfidence_error), (UnderconfidenceError, underconfidence_error)):
        expected = function(logits, target, ignore_index=-100, from_logits=True)
        metric = cls(ignore_index=-100, from_logits=True)
        metric.update(logits, target)
        assert metric.compute().item() == pytest.approx(expected.item(), abs=1e-6)
        passthrough = cls()
        passthrough.update(sample_statistics(logits, target, ignore_index=-100, from_logits=True))
        assert passthrough.compute().item() == pytest.approx(expected.item(), abs=1e-6)

        probs, t = random_probs(60, 4, 2)
        metric = cls()
        batch_value = metric(probs[:30], t[:30])
        assert batch_value.item() == pytest.approx(function(probs[:30], t[:30]).item(), abs=1e-6)
        metric(probs[30:], t[30:])
        assert metric.compute().item() == pytest.approx(function(probs, t).item(), abs=1e-6)
        with pytest.raises(ValueError, match="`probs` to contain probabilities"):
            metric.update(probs * 3, t)
        metric.reset()
        assert metric.bin_count.sum().item() == 0
        with pytest.warns(UserWarning, match="compute"):
            assert math.isnan(metric.compute().item())
        with pytest.raises(ValueError, match="`n_bins`"):
            cls(n_bins=0)
