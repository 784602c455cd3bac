import math

import pytest
import torch

from lightning_skd.functional import aurc, eaurc, risk_coverage
from lightning_skd.functional.selective import _oracle_aurc
from tests.helpers.reference_metrics import (
    confidence_correct,
    moon_aurc_eaurc,
    pskd_aurc_eaurc,
    random_probs,
    ref_oracle_aurc,
    ref_risk_coverage_tie_mean,
    ref_risks_in_order,
    rows_and_targets,
)


def _tie_free(n, c, seed):
    probs, target = random_probs(n, c, seed)
    conf = probs.max(1).values
    assert conf.unique().numel() == n, "seeded data should have distinct confidences"
    return probs, target


def test_aurc_matches_pskd_without_ties():
    for seed in range(20):
        probs, target = _tie_free(100 + 37 * seed, 10, seed)
        expected_aurc, _ = pskd_aurc_eaurc(probs, target)
        assert aurc(probs, target).item() == pytest.approx(expected_aurc, abs=1e-6)
        assert aurc(probs.double(), target).item() == pytest.approx(expected_aurc, abs=1e-12)


def test_eaurc_exact_oracle_matches_pskd_code():
    for seed in range(20):
        probs, target = _tie_free(100 + 37 * seed, 10, seed)
        _, expected = pskd_aurc_eaurc(probs, target)
        assert eaurc(probs.double(), target).item() == pytest.approx(expected, abs=1e-12)
        assert eaurc(probs, target, oracle="exact").item() == pytest.approx(expected, abs=1e-6)


def test_eaurc_closed_form_oracle_matches_moon_code():
    for seed in range(20):
        probs, target = _tie_free(100 + 37 * seed, 10, seed)
        expected_aurc, expected_eaurc = moon_aurc_eaurc(probs, target)
        assert aurc(probs.double(), target).item() == pytest.approx(expected_aurc, abs=1e-12)
        assert eaurc(probs.double(), target, oracle="closed_form").item() == pytest.approx(expected_eaurc, abs=1e-12)


def test_oracle_exact_is_aurc_of_all_correct_first_and_closed_form_its_limit():
    for n, n_errors in [(1, 0), (1, 1), (2, 1), (7, 3), (10, 10), (50, 0), (100, 23), (1000, 999)]:
        exact = _oracle_aurc(n, n_errors, "exact", torch.float64).item()
        assert exact == pytest.approx(ref_oracle_aurc(n, n_errors), abs=1e-12)
        r = n_errors / n
        closed = _oracle_aurc(n, n_errors, "closed_form", torch.float64).item()
        assert closed == pytest.approx(r + (1 - r) * math.log(1 - r) if r < 1 else 1.0, abs=1e-12)
    # The closed form is the n -> infinity limit: smaller than the exact oracle by about r / (2n).
    for n in (1000, 10000, 100000):
        n_errors = n // 5
        gap = _oracle_aurc(n, n_errors, "exact", torch.float64) - _oracle_aurc(
            n, n_errors, "closed_form", torch.float64
        )
        assert gap.item() == pytest.approx(0.2 / (2 * n), rel=1e-2)


def test_aurc_ties_equal_mean_over_orders_of_tied_samples():
    for seed in range(30):
        probs, target = random_probs(6, 3, seed, ties=True)
        expected = ref_risk_coverage_tie_mean(probs, target)
        coverage, risk = risk_coverage(probs, target)
        assert coverage.tolist() == pytest.approx([i / 6 for i in range(1, 7)])
        assert risk.tolist() == pytest.approx(expected, abs=1e-12)
        assert aurc(probs, target).item() == pytest.approx(sum(expected) / 6, abs=1e-6)


def test_aurc_ties_between_optimistic_and_pessimistic_orders_and_order_invariant():
    for seed in range(10):
        probs, target = random_probs(300, 4, seed, ties=True)
        rows, targets = rows_and_targets(probs, target)
        pairs = confidence_correct(rows, targets)
        # Within each confidence, correct first (optimistic) or errors first (pessimistic).
        optimistic = sorted(pairs, key=lambda p: (-p[0], not p[1]))
        pessimistic = sorted(pairs, key=lambda p: (-p[0], p[1]))
        lo = sum(ref_risks_in_order([c for _, c in optimistic])) / 300
        hi = sum(ref_risks_in_order([c for _, c in pessimistic])) / 300
        assert lo < hi, "the seeded data should contain ties between correct and wrong samples"
        got = aurc(probs, target).item()
        assert lo - 1e-6 <= got <= hi + 1e-6
        perm = torch.randperm(300, generator=torch.Generator().manual_seed(seed))
        assert aurc(probs[perm], target[perm]).item() == pytest.approx(got, abs=1e-7)
        assert eaurc(probs[perm], target[perm]).item() == pytest.approx(eaurc(probs, target).item(), abs=1e-7)


def test_aurc_and_eaurc_all_correct_all_wrong_single_sample():
    probs, _ = random_probs(40, 5, 0)
    pred = probs.argmax(1)
    assert aurc(probs, pred).item() == 0.0
    assert eaurc(probs, pred).item() == 0.0
    assert eaurc(probs, pred, oracle="closed_form").item() == 0.0
    wrong = (pred + 1) % 5
    assert aurc(probs, wrong).item() == 1.0
    assert eaurc(probs, wrong).item() == pytest.approx(0.0, abs=1e-7)
    assert eaurc(probs, wrong, oracle="closed_form").item() == pytest.approx(0.0, abs=1e-7)
    assert aurc(probs[:1], wrong[:1]).item() == 1.0
    assert aurc(probs[:1], pred[:1]).item() == 0.0
    assert eaurc(probs[:1], wrong[:1]).item() == 0.0


def test_eaurc_exact_is_zero_for_perfect_ranking_and_closed_form_is_not():
    # Correct samples get the highest confidences: the exact E-AURC vanishes, the closed-form one is ~ r / (2n).
    n, n_errors = 200, 50
    conf = torch.linspace(0.9, 0.6, n)
    probs = torch.stack([conf, 1 - conf], dim=1)
    target = torch.zeros(n, dtype=torch.long)
    target[n - n_errors :] = 1
    assert eaurc(probs.double(), target).item() == pytest.approx(0.0, abs=1e-12)
    closed = eaurc(probs.double(), target, oracle="closed_form").item()
    assert closed == pytest.approx(0.25 / (2 * n), rel=0.05)


def test_risk_coverage_matches_sorted_definition_without_ties():
    probs, target = _tie_free(50, 6, 4)
    rows, targets = rows_and_targets(probs, target)
    pairs = sorted(confidence_correct(rows, targets), key=lambda p: -p[0])
    expected = ref_risks_in_order([c for _, c in pairs])
    coverage, risk = risk_coverage(probs, target)
    assert coverage.dtype == risk.dtype == torch.float64
    assert risk.tolist() == pytest.approx(expected, abs=1e-12)
    assert coverage[-1].item() == 1.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_aurc_half_precision_equals_float32_of_same_values(dtype):
    probs, target = random_probs(400, 10, 5)
    low = probs.to(dtype)
    for fn in (aurc, eaurc):
        got = fn(low, target)
        assert got.dtype == torch.float32
        assert got.item() == pytest.approx(fn(low.float(), target).item(), abs=1e-7)
    # Half-precision confidences tie a lot: check against the brute-force tie mean on a small subset.
    small_p, small_t = low[:7], target[:7]
    expected = ref_risk_coverage_tie_mean(small_p.float(), small_t)
    assert aurc(small_p, small_t).item() == pytest.approx(sum(expected) / 7, abs=1e-6)


def test_aurc_ignore_index_and_from_logits():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(120, 5, generator=gen) * 2
    target = torch.randint(0, 5, (120,), generator=gen)
    target[1::3] = -1
    keep = target != -1
    for fn in (aurc, eaurc):
        expected = fn(logits[keep].softmax(1), target[keep])
        got = fn(logits, target, ignore_index=-1, from_logits=True)
        assert got.item() == pytest.approx(expected.item(), abs=1e-6)
    coverage, risk = risk_coverage(logits, target, ignore_index=-1, from_logits=True)
    assert coverage.numel() == risk.numel() == int(keep.sum())


def test_aurc_no_samples_is_nan():
    probs = torch.full((2, 2), 0.5)
    target = torch.tensor([3, 3])
    assert math.isnan(aurc(probs, target, ignore_index=3).item())
    assert math.isnan(eaurc(probs, target, ignore_index=3).item())
    coverage, risk = risk_coverage(probs, target, ignore_index=3)
    assert coverage.numel() == risk.numel() == 0


def test_eaurc_bad_oracle_raises():
    probs, target = random_probs(4, 3, 0)
    with pytest.raises(ValueError, match="`oracle`"):
        eaurc(probs, target, oracle="closed")


def test_risks_reference_sanity():
    assert ref_risks_in_order([True, False, True, False]) == [0.0, 0.5, 1 / 3, 0.5]
