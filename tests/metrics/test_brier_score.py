import math

import pytest
import torch

from lightning_skd.functional import brier_score, sample_statistics
from lightning_skd.metrics import BrierScore
from tests.helpers.reference_metrics import random_probs, ref_brier


@pytest.mark.parametrize("ties", [False, True])
def test_brier_score_batches_equal_functional_and_reference(ties):
    probs, target = random_probs(500, 10, 0, ties=ties)
    metric = BrierScore()
    splits = [1, 99, 250, 150]
    for chunk_p, chunk_t in zip(probs.split(splits), target.split(splits), strict=True):
        metric.update(chunk_p, chunk_t)
    got = metric.compute()
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(brier_score(probs, target).item(), abs=1e-6)
    assert got.item() == pytest.approx(ref_brier(probs, target), abs=1e-6)


def test_brier_score_options_statistics_input_forward_and_reset():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 40, 5, generator=gen) * 3
    target = torch.randint(0, 5, (3, 40), generator=gen)
    target[:, 30:] = -100
    expected = brier_score(logits, target, ignore_index=-100, from_logits=True)
    metric = BrierScore(ignore_index=-100, from_logits=True)
    metric.update(logits, target)
    assert metric.compute().item() == pytest.approx(expected.item(), abs=1e-6)

    passthrough = BrierScore()
    stats = sample_statistics(logits, target, ignore_index=-100, from_logits=True, with_squared_error=True)
    passthrough.update(stats)
    assert passthrough.compute().item() == pytest.approx(expected.item(), abs=1e-6)
    with pytest.raises(ValueError, match="`squared_error`"):
        passthrough.update(sample_statistics(logits, target, ignore_index=-100, from_logits=True))

    probs, t = random_probs(60, 4, 2)
    metric = BrierScore()
    assert metric(probs[:30], t[:30]).item() == pytest.approx(brier_score(probs[:30], t[:30]).item(), abs=1e-6)
    metric(probs[30:], t[30:])
    assert metric.compute().item() == pytest.approx(brier_score(probs, t).item(), abs=1e-6)
    with pytest.raises(ValueError, match="`probs` to contain probabilities"):
        metric.update(probs * 3, t)
    BrierScore(validate_args=False).update(probs * 0.5, t)  # not checked
    metric.reset()
    assert metric.total.item() == 0
    with pytest.warns(UserWarning, match="compute"):
        assert math.isnan(metric.compute().item())
