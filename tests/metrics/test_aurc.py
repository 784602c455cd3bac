import math

import pytest
import torch

from lightning_skd.functional import aurc, sample_statistics
from lightning_skd.metrics import AURC
from tests.helpers.reference_metrics import pskd_aurc_eaurc, random_probs


def test_aurc_batches_equal_functional_on_all_data():
    probs, target = random_probs(400, 10, 0)
    metric = AURC()
    for chunk_p, chunk_t in zip(probs.split(64), target.split(64), strict=True):
        metric.update(chunk_p, chunk_t)
    got = metric.compute()
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(aurc(probs, target).item(), abs=1e-6)
    assert got.item() == pytest.approx(pskd_aurc_eaurc(probs, target)[0], abs=1e-6)


def test_aurc_with_ties_does_not_depend_on_batching_or_order():
    probs, target = random_probs(300, 3, 1, ties=True)
    expected = aurc(probs, target).item()
    perm = torch.randperm(300, generator=torch.Generator().manual_seed(0))
    metric = AURC()
    for idx in perm.split(7):
        metric.update(probs[idx], target[idx])
    assert metric.compute().item() == pytest.approx(expected, abs=1e-7)


def test_aurc_state_is_confidence_and_errors_and_ignore_index_from_logits():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(50, 4, generator=gen)
    target = torch.randint(0, 4, (50,), generator=gen)
    target[::5] = -1
    metric = AURC(ignore_index=-1, from_logits=True)
    metric.update(logits, target)
    confidence, errors = metric.selective_state()
    assert confidence.shape == errors.shape == (40,)
    assert confidence.dtype == errors.dtype == torch.float32
    expected = aurc(logits, target, ignore_index=-1, from_logits=True)
    assert metric.compute().item() == pytest.approx(expected.item(), abs=1e-7)
    passthrough = AURC()
    passthrough.update(sample_statistics(logits, target, ignore_index=-1, from_logits=True))
    assert passthrough.compute().item() == pytest.approx(expected.item(), abs=1e-7)


def test_aurc_validates_in_update_and_is_nan_when_empty():
    metric = AURC()
    with pytest.raises(ValueError, match="`target` to contain class indices"):
        metric.update(torch.full((2, 2), 0.5), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="`target_rank`"):
        metric.update(sample_statistics(torch.full((2, 2), 0.5), torch.tensor([0, 1]), with_rank=False))
    with pytest.warns(UserWarning, match="compute"):
        assert math.isnan(AURC().compute().item())
