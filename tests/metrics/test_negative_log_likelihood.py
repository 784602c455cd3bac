import math

import pytest
import torch
import torch.nn.functional as F

from lightning_skd.functional import negative_log_likelihood
from lightning_skd.metrics import NegativeLogLikelihood
from tests.helpers.reference_metrics import random_probs, ref_nll


def test_negative_log_likelihood_batches_equal_functional_on_all_data():
    probs, target = random_probs(300, 8, 0)
    metric = NegativeLogLikelihood()
    for chunk_p, chunk_t in zip(probs.split(70), target.split(70), strict=True):
        metric.update(chunk_p, chunk_t)
    got = metric.compute()
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(negative_log_likelihood(probs, target).item(), rel=1e-6)
    assert got.item() == pytest.approx(ref_nll(probs, target), rel=1e-6)


def test_negative_log_likelihood_from_logits_token_level_equals_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 25, 11, generator=gen)
    target = torch.randint(0, 11, (4, 25), generator=gen)
    target[:, 20:] = -100
    metric = NegativeLogLikelihood(ignore_index=-100, from_logits=True)
    for b in range(4):
        metric.update(logits[b], target[b])
    expected = F.cross_entropy(logits.reshape(-1, 11), target.reshape(-1), ignore_index=-100)
    assert metric.compute().item() == pytest.approx(expected.item(), rel=1e-6)
    assert metric.total.item() == 80


def test_negative_log_likelihood_empty_is_nan_and_validation_runs():
    metric = NegativeLogLikelihood(ignore_index=0)
    metric.update(torch.full((3, 2), 0.5), torch.zeros(3, dtype=torch.long))
    assert math.isnan(metric.compute().item())
    with pytest.raises(ValueError, match="`probs` to contain only finite"):
        NegativeLogLikelihood().update(torch.tensor([[math.nan, 0.5]]), torch.tensor([1]))
