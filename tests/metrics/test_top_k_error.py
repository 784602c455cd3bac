import pytest
import torch

from lightning_skd.functional import top_k_error
from lightning_skd.metrics import TopKError
from tests.helpers.reference_metrics import random_probs, ref_top_k_error


@pytest.mark.parametrize("k", [1, 3])
def test_top_k_error_batches_equal_functional_on_all_data(k):
    probs, target = random_probs(300, 6, 0, ties=True)
    metric = TopKError(k=k)
    for chunk_p, chunk_t in zip(probs.split(40), target.split(40), strict=True):
        metric.update(chunk_p, chunk_t)
    got = metric.compute()
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(top_k_error(probs, target, k=k).item(), abs=1e-7)
    assert got.item() == pytest.approx(ref_top_k_error(probs, target, k), abs=1e-7)


def test_top_k_error_ignore_index_and_from_logits():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(90, 7, generator=gen)
    target = torch.randint(0, 7, (90,), generator=gen)
    target[::3] = -100
    metric = TopKError(k=2, ignore_index=-100, from_logits=True)
    metric.update(logits, target)
    assert metric.total.item() == 60
    expected = ref_top_k_error(logits.softmax(1), target, 2, ignore_index=-100)
    assert metric.compute().item() == pytest.approx(expected, abs=1e-7)


def test_top_k_error_bad_k_raises():
    with pytest.raises(ValueError, match="`k`"):
        TopKError(k=0)
    with pytest.raises(ValueError, match="`k` to be at most the number of classes 3, but got 5"):
        TopKError(k=5).update(torch.full((2, 3), 1 / 3), torch.tensor([0, 1]))
