import math

import pytest
import torch

from lightning_skd.functional import expected_calibration_error
from lightning_skd.functional.calibration import _bin_index, _ece_update
from tests.reference_metrics import pskd_ece_percent, random_probs, ref_ece

SEEDS = range(8)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("n_bins", [1, 10, 15])
@pytest.mark.parametrize("ties", [False, True])
def test_expected_calibration_error_matches_reference(norm, n_bins, ties):
    for seed in SEEDS:
        probs, target = random_probs(60 + seed, 7, seed, ties=ties)
        got = expected_calibration_error(probs, target, n_bins=n_bins, norm=norm)
        assert got.dtype == torch.float32
        assert got.item() == pytest.approx(ref_ece(probs, target, n_bins, norm), abs=1e-6)


def test_expected_calibration_error_matches_pskd_bin_rule():
    for seed in range(20):
        probs, target = random_probs(200, 10, seed, ties=seed % 2 == 1)
        got = 100 * expected_calibration_error(probs, target, n_bins=10)
        assert got.item() == pytest.approx(pskd_ece_percent(probs, target), abs=1e-4)


def test_expected_calibration_error_matches_pskd_at_bin_edges():
    # Confidences exactly on (float32 versions of) the edges k/10, and 1.0.
    edges = [0.2, 0.25, 0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0]
    rows = []
    for c in edges:
        k = math.ceil(1 / c)  # enough classes to make c the maximum
        rest = (1 - c) / (k - 1) if k > 1 else 0.0
        rows.append([c] + [rest] * (k - 1) + [0.0] * (6 - k))
    probs = torch.tensor(rows, dtype=torch.float32)
    target = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1, 0, 0])
    got = 100 * expected_calibration_error(probs, target, n_bins=10)
    assert got.item() == pytest.approx(pskd_ece_percent(probs, target), abs=1e-4)
    assert got.item() == pytest.approx(100 * ref_ece(probs, target, 10), abs=1e-4)


def test_bin_index_right_closed_with_zero_and_one_in_end_bins():
    conf = torch.tensor([0.0, 1e-9, 0.1, 0.25, 0.5, 0.5000001, 0.75, 0.9999999, 1.0])
    expected = [0, 0, 0, 0, 1, 2, 2, 3, 3]  # 4 bins: (0, .25], (.25, .5], (.5, .75], (.75, 1]
    assert _bin_index(conf, 4).tolist() == expected
    assert _bin_index(conf.double(), 4).tolist() == expected
    assert _bin_index(conf.half(), 4).tolist() == [0, 0, 0, 0, 1, 1, 2, 3, 3]  # 0.5000001 rounds to 0.5 in fp16


def test_expected_calibration_error_confidence_one_lands_in_last_bin():
    probs = torch.eye(3)[[0, 1, 2, 0]]  # confidence exactly 1
    target = torch.tensor([0, 1, 2, 1])
    count, conf_sum, correct_sum = _ece_update(torch.ones(4), torch.tensor([True, True, True, False]), 15)
    assert count.tolist() == [0.0] * 14 + [4.0]
    assert conf_sum[-1].item() == 4.0 and correct_sum[-1].item() == 3.0
    assert expected_calibration_error(probs, target).item() == pytest.approx(0.25)
    assert expected_calibration_error(probs, target, norm="max").item() == pytest.approx(0.25)


def test_expected_calibration_error_confidence_zero_lands_in_first_bin():
    # Only reachable without validation (an all-zero row); must not be dropped or crash.
    probs = torch.tensor([[0.0, 0.0], [0.9, 0.1]])
    target = torch.tensor([0, 0])
    count, _, _ = _ece_update(torch.tensor([0.0, 0.9]), torch.tensor([True, True]), 10)
    assert count.tolist() == [1.0] + [0.0] * 7 + [1.0, 0.0]
    got = expected_calibration_error(probs, target, n_bins=10, validate_args=False)
    assert got.item() == pytest.approx((1.0 + 0.1) / 2)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_expected_calibration_error_all_correct_all_wrong_and_single_sample(norm):
    probs, _ = random_probs(50, 5, 3)
    pred = probs.argmax(1)
    conf = probs.max(1).values.double()
    all_correct = expected_calibration_error(probs, pred, norm=norm)
    all_wrong = expected_calibration_error(probs, (pred + 1) % 5, norm=norm)
    assert all_correct.item() == pytest.approx(ref_ece(probs, pred, 15, norm), abs=1e-6)
    assert all_wrong.item() == pytest.approx(ref_ece(probs, (pred + 1) % 5, 15, norm), abs=1e-6)
    if norm == "l1":
        assert all_correct.item() == pytest.approx(1 - conf.mean().item(), abs=1e-6)
        assert all_wrong.item() == pytest.approx(conf.mean().item(), abs=1e-6)
    single = expected_calibration_error(probs[:1], pred[:1] + 1, norm=norm)
    assert single.item() == pytest.approx(conf[0].item(), abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_expected_calibration_error_half_precision_equals_float32_of_same_values(dtype):
    probs, target = random_probs(300, 10, 1)
    low = probs.to(dtype)
    got = expected_calibration_error(low, target)
    assert got.dtype == torch.float32
    assert torch.equal(got, expected_calibration_error(low.float(), target, validate_args=False))
    assert got.item() == pytest.approx(ref_ece(low.float(), target, 15), abs=1e-6)


def test_expected_calibration_error_float64_stays_float64():
    probs, target = random_probs(100, 4, 2)
    got = expected_calibration_error(probs.double(), target)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(ref_ece(probs.double(), target, 15), abs=1e-12)


def test_expected_calibration_error_ignore_index_and_from_logits():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(80, 6, generator=gen) * 3
    target = torch.randint(0, 6, (80,), generator=gen)
    target[::4] = -100
    logits[::4] = float("nan")  # ignored rows are never looked at
    keep = target != -100
    expected = expected_calibration_error(logits[keep].softmax(1), target[keep])
    got = expected_calibration_error(logits, target, ignore_index=-100, from_logits=True)
    assert got.item() == pytest.approx(expected.item(), abs=1e-6)
    assert got.item() == pytest.approx(ref_ece(logits.softmax(1), target, 15, ignore_index=-100), abs=1e-6)


def test_expected_calibration_error_no_samples_is_nan():
    probs = torch.full((3, 2), 0.5)
    target = torch.full((3,), 7)
    assert math.isnan(expected_calibration_error(probs, target, ignore_index=7).item())
    assert math.isnan(expected_calibration_error(probs, target, ignore_index=7, norm="max").item())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_bins": 0}, "`n_bins`"),
        ({"n_bins": 2.5}, "`n_bins`"),
        ({"n_bins": True}, "`n_bins`"),
        ({"norm": "l3"}, "`norm`"),
    ],
)
def test_expected_calibration_error_bad_arguments_raise(kwargs, match):
    probs, target = random_probs(4, 3, 0)
    with pytest.raises(ValueError, match=match):
        expected_calibration_error(probs, target, **kwargs)
