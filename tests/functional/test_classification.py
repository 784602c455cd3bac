import math

import pytest
import torch
import torch.nn.functional as F

from lightning_skd.functional import negative_log_likelihood, top_k_error
from tests.helpers.reference_metrics import random_probs, ref_nll, ref_top_k_error


@pytest.mark.parametrize("ties", [False, True])
def test_negative_log_likelihood_matches_reference(ties):
    for seed in range(8):
        probs, target = random_probs(50 + seed, 6, seed, ties=ties)
        got = negative_log_likelihood(probs, target)
        assert got.dtype == torch.float32
        assert got.item() == pytest.approx(ref_nll(probs, target), rel=1e-6)


def test_negative_log_likelihood_zero_probability_is_clamped_not_inf():
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    target = torch.tensor([1, 0])
    tiny32 = torch.finfo(torch.float32).tiny
    expected = (-math.log(tiny32) + math.log(2)) / 2
    assert negative_log_likelihood(probs, target).item() == pytest.approx(expected, rel=1e-6)
    assert negative_log_likelihood(probs.half(), target).item() == pytest.approx(expected, rel=1e-6)
    tiny64 = torch.finfo(torch.float64).tiny
    got64 = negative_log_likelihood(probs.double(), target)
    assert got64.dtype == torch.float64
    assert got64.item() == pytest.approx((-math.log(tiny64) + math.log(2)) / 2, rel=1e-12)


def test_negative_log_likelihood_from_logits_equals_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 9, generator=gen) * 4
    logits[0, 3] = -200.0  # softmax underflows to 0 in float32, log_softmax does not
    target = torch.randint(0, 9, (64,), generator=gen)
    target[0] = 3
    target[5::7] = -100
    expected = F.cross_entropy(logits, target, ignore_index=-100)
    got = negative_log_likelihood(logits, target, ignore_index=-100, from_logits=True)
    # cross_entropy averages in float32 (its own summation order), negative_log_likelihood in float64
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    for dtype in (torch.float16, torch.bfloat16):
        low = logits.to(dtype)
        expected_low = F.cross_entropy(low.float(), target, ignore_index=-100)
        got_low = negative_log_likelihood(low, target, ignore_index=-100, from_logits=True)
        assert got_low.dtype == torch.float32
        assert got_low.item() == pytest.approx(expected_low.item(), rel=1e-5)


def test_negative_log_likelihood_ignore_index_single_sample_and_empty():
    probs, target = random_probs(30, 4, 3)
    target[::2] = 1  # ignore_index may be a real class index too (e.g. a padding token id)
    got = negative_log_likelihood(probs, target, ignore_index=1)
    assert got.item() == pytest.approx(ref_nll(probs, target, ignore_index=1), rel=1e-6)
    assert negative_log_likelihood(probs[:1], target[:1]).item() == pytest.approx(-math.log(probs[0, 1]), rel=1e-6)
    assert math.isnan(negative_log_likelihood(probs[::2], target[::2], ignore_index=1).item())


@pytest.mark.parametrize("k", [1, 2, 3, 6])
@pytest.mark.parametrize("ties", [False, True])
def test_top_k_error_matches_reference(k, ties):
    for seed in range(8):
        probs, target = random_probs(70, 6, seed, ties=ties)
        got = top_k_error(probs, target, k=k)
        assert got.item() == pytest.approx(ref_top_k_error(probs, target, k), abs=1e-7)
    if k == 6:
        assert got.item() == 0.0


def test_top_k_error_top1_is_first_index_argmax_error():
    for seed in range(5):
        probs, target = random_probs(200, 4, seed, ties=True)
        expected = (probs.argmax(1) != target).double().mean()
        assert top_k_error(probs, target, k=1).item() == pytest.approx(expected.item(), abs=1e-7)


def test_top_k_error_all_correct_all_wrong_half_precision_and_ignore_index():
    probs, _ = random_probs(40, 5, 2)
    pred = probs.argmax(1)
    assert top_k_error(probs, pred).item() == 0.0
    assert top_k_error(probs, (pred + 1) % 5).item() == 1.0
    assert top_k_error(probs[:1], pred[:1]).item() == 0.0
    for dtype in (torch.float16, torch.bfloat16):
        low = probs.to(dtype)
        target = (pred + torch.arange(40) % 2) % 5
        assert top_k_error(low, target, k=2).item() == pytest.approx(ref_top_k_error(low.float(), target, 2))
    target = pred.clone()
    target[::3] = -100
    target[1::3] = (pred[1::3] + 1) % 5
    got = top_k_error(probs, target, ignore_index=-100)
    assert got.item() == pytest.approx(ref_top_k_error(probs, target, 1, ignore_index=-100))


def test_top_k_error_from_logits_matches_softmax_input():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 7, generator=gen)
    target = torch.randint(0, 7, (50,), generator=gen)
    for k in (1, 3):
        expected = top_k_error(logits.softmax(1), target, k=k)
        assert top_k_error(logits, target, k=k, from_logits=True).item() == pytest.approx(expected.item())


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_top_k_error_bad_k_raises(k):
    probs, target = random_probs(4, 3, 0)
    with pytest.raises(ValueError, match="`k`"):
        top_k_error(probs, target, k=k)


def test_top_k_error_k_larger_than_classes_raises_unless_unvalidated():
    probs, target = random_probs(4, 3, 0)
    with pytest.raises(ValueError, match="`k` to be at most the number of classes 3, but got 4"):
        top_k_error(probs, target, k=4)
    assert top_k_error(probs, target, k=4, validate_args=False).item() == 0.0
