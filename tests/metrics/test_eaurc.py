import pytest
import torch

from lightning_skd.functional import eaurc
from lightning_skd.metrics import EAURC
from tests.helpers.reference_metrics import moon_aurc_eaurc, pskd_aurc_eaurc, random_probs


@pytest.mark.parametrize("oracle", ["exact", "closed_form"])
def test_eaurc_batches_equal_functional_and_published_formulas(oracle):
    probs, target = random_probs(400, 10, 0)
    metric = EAURC(oracle=oracle)
    for chunk_p, chunk_t in zip(probs.split(100), target.split(100), strict=True):
        metric.update(chunk_p, chunk_t)
    got = metric.compute().item()
    assert got == pytest.approx(eaurc(probs, target, oracle=oracle).item(), abs=1e-7)
    published = pskd_aurc_eaurc(probs, target)[1] if oracle == "exact" else moon_aurc_eaurc(probs, target)[1]
    assert got == pytest.approx(published, abs=1e-6)


def test_eaurc_ignore_index_and_from_logits():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(60, 5, generator=gen) * 2
    target = torch.randint(0, 5, (60,), generator=gen)
    target[::4] = 5  # ignore an out-of-range id
    metric = EAURC(ignore_index=5, from_logits=True)
    metric.update(logits, target)
    expected = eaurc(logits, target, ignore_index=5, from_logits=True)
    assert metric.compute().item() == pytest.approx(expected.item(), abs=1e-7)


def test_eaurc_bad_oracle_raises():
    with pytest.raises(ValueError, match="`oracle`"):
        EAURC(oracle="closed")
