import inspect
import math

import pytest
import torch

from lightning_skd.functional import (
    adaptive_expected_calibration_error,
    brier_score,
    expected_calibration_error,
    overconfidence_error,
    underconfidence_error,
)
from lightning_skd.functional.calibration import (
    _adaptive_ece_update,
    _bin_index,
    _calibration_split_compute,
    _ece_compute,
    _ece_update,
)
from tests.helpers.reference_metrics import (
    pskd_ece_percent,
    random_probs,
    ref_adaptive_ece,
    ref_adaptive_ece_tie_mean,
    ref_brier,
    ref_ece,
    ref_equal_mass_sizes,
    ref_over_under_confidence,
)

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


# ---------------------------------------------------------------------------------------------------------------------
# Over- and under-confidence parts of the ECE


def _constant_confidence(n, confidence, n_correct, num_classes=2):
    """n rows whose top-1 class 0 has probability `confidence`; the first `n_correct` targets are class 0."""
    row = [confidence] + [(1 - confidence) / (num_classes - 1)] * (num_classes - 1)
    probs = torch.tensor([row] * n)
    target = torch.tensor([0] * n_correct + [1] * (n - n_correct))
    return probs, target


@pytest.mark.parametrize("n_bins", [1, 10, 15])
@pytest.mark.parametrize("ties", [False, True])
def test_over_and_under_confidence_match_reference(n_bins, ties):
    for seed in SEEDS:
        probs, target = random_probs(60 + seed, 7, seed, ties=ties, accuracy=0.3 + 0.1 * seed)
        over = overconfidence_error(probs, target, n_bins=n_bins)
        under = underconfidence_error(probs, target, n_bins=n_bins)
        assert over.dtype == under.dtype == torch.float32
        ref_over, ref_under = ref_over_under_confidence(probs, target, n_bins)
        assert over.item() == pytest.approx(ref_over, abs=1e-6)
        assert under.item() == pytest.approx(ref_under, abs=1e-6)


def test_over_plus_under_confidence_is_the_ece_exactly():
    for seed in range(20):
        probs, target = random_probs(200, 10, seed, ties=seed % 2 == 1, accuracy=0.05 * seed)
        n_bins = 1 + seed
        # float64 inputs: float64 results, and the identity holds bit for bit.
        p64 = probs.double()
        ece = expected_calibration_error(p64, target, n_bins=n_bins)
        over, under = (
            overconfidence_error(p64, target, n_bins=n_bins),
            underconfidence_error(p64, target, n_bins=n_bins),
        )
        assert over.dtype == torch.float64
        assert torch.equal(over + under, ece), seed
        # Per-bin sums (float64): the L1 ECE is computed as that sum.
        bins = _ece_update(probs.max(1).values, probs.argmax(1) == target, n_bins)
        split = _calibration_split_compute(*bins)
        assert torch.equal(split[0] + split[1], _ece_compute(*bins, norm="l1"))
        # float32 results: each rounded once from those float64 values.
        ece32 = expected_calibration_error(probs, target, n_bins=n_bins).item()
        total32 = (
            overconfidence_error(probs, target, n_bins=n_bins) + underconfidence_error(probs, target, n_bins=n_bins)
        ).item()
        assert total32 == pytest.approx(ece32, rel=2**-22, abs=1e-12)


def test_over_and_under_confidence_known_values():
    # One-hot, all correct: perfectly calibrated.
    probs = torch.eye(4)[[0, 1, 2, 3, 1]]
    target = torch.tensor([0, 1, 2, 3, 1])
    assert overconfidence_error(probs, target).item() == 0.0
    assert underconfidence_error(probs, target).item() == 0.0
    # Always 90 % confident, 60 % right: over-confident by 0.3.
    probs, target = _constant_confidence(10, 0.9, 6)
    assert overconfidence_error(probs, target).item() == pytest.approx(0.3, abs=1e-6)
    assert underconfidence_error(probs, target).item() == 0.0
    # Always 60 % confident, 90 % right: under-confident by 0.3.
    probs, target = _constant_confidence(10, 0.6, 9)
    assert overconfidence_error(probs, target).item() == 0.0
    assert underconfidence_error(probs, target).item() == pytest.approx(0.3, abs=1e-6)
    # Both halves together, in different bins: each part keeps its weight 1/2.
    p1, t1 = _constant_confidence(10, 0.9, 6)
    p2, t2 = _constant_confidence(10, 0.6, 9)
    probs, target = torch.cat([p1, p2]), torch.cat([t1, t2])
    assert overconfidence_error(probs, target, n_bins=10).item() == pytest.approx(0.15, abs=1e-6)
    assert underconfidence_error(probs, target, n_bins=10).item() == pytest.approx(0.15, abs=1e-6)
    assert expected_calibration_error(probs, target, n_bins=10).item() == pytest.approx(0.3, abs=1e-6)
    # ... and in one bin they cancel: 75 % confident on average, 75 % right.
    assert overconfidence_error(probs, target, n_bins=1).item() == pytest.approx(0.0, abs=1e-6)
    assert underconfidence_error(probs, target, n_bins=1).item() == pytest.approx(0.0, abs=1e-6)


def test_over_and_under_confidence_options_dtypes_and_no_samples():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(80, 6, generator=gen) * 3
    target = torch.randint(0, 6, (80,), generator=gen)
    target[::4] = -100
    logits[::4] = float("nan")
    for function, part in ((overconfidence_error, 0), (underconfidence_error, 1)):
        got = function(logits, target, ignore_index=-100, from_logits=True)
        ref = ref_over_under_confidence(logits.softmax(1), target, 15, ignore_index=-100)[part]
        assert got.item() == pytest.approx(ref, abs=1e-6)
        probs, t = random_probs(300, 10, 1)
        half = function(probs.half(), t)
        assert half.dtype == torch.float32
        assert torch.equal(half, function(probs.half().float(), t))
        assert function(probs.double(), t).dtype == torch.float64
        assert math.isnan(function(torch.full((3, 2), 0.5), torch.full((3,), 7), ignore_index=7).item())
        with pytest.raises(ValueError, match="`n_bins`"):
            function(probs, t, n_bins=0)


# ---------------------------------------------------------------------------------------------------------------------
# Adaptive (equal-mass) ECE


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("n_bins", [1, 7, 15, 100])
@pytest.mark.parametrize("ties", [False, True])
def test_adaptive_ece_matches_reference(norm, n_bins, ties):
    for seed in SEEDS:
        probs, target = random_probs(60 + seed, 7, seed, ties=ties)
        got = adaptive_expected_calibration_error(probs, target, n_bins=n_bins, norm=norm)
        assert got.dtype == torch.float32
        assert got.item() == pytest.approx(ref_adaptive_ece(probs, target, n_bins, norm), abs=1e-6)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_adaptive_ece_ties_are_averaged_over_their_orders(norm):
    # 7 samples, 3 confidences (tie groups of 3, 2, 2) straddling the bins of sizes 3, 2, 2 and 2, 2, 2, 1.
    probs = torch.tensor([[0.5, 0.5]] * 3 + [[0.75, 0.25]] * 2 + [[0.125, 0.875]] * 2)
    target = torch.tensor([0, 1, 0, 1, 0, 1, 0])
    for n_bins in (1, 2, 3, 4, 7):
        expected = ref_adaptive_ece_tie_mean(probs, target, n_bins, norm)
        got = adaptive_expected_calibration_error(probs, target, n_bins=n_bins, norm=norm)
        assert got.item() == pytest.approx(expected, abs=1e-6), n_bins
        assert got.item() == pytest.approx(ref_adaptive_ece(probs, target, n_bins, norm), abs=1e-6)
    for seed in range(4):  # random small inputs with many ties
        probs, target = random_probs(7, 3, seed, ties=True)
        expected = ref_adaptive_ece_tie_mean(probs, target, 3, norm)
        assert adaptive_expected_calibration_error(probs, target, n_bins=3, norm=norm).item() == pytest.approx(
            expected, abs=1e-6
        )


def test_adaptive_ece_bins_are_tensor_split_of_the_sorted_order():
    for n, n_bins in [(0, 3), (2, 5), (10, 3), (10, 10), (101, 15)]:
        sizes = [len(chunk) for chunk in torch.tensor_split(torch.arange(n), n_bins)]
        assert sizes == ref_equal_mass_sizes(n, n_bins)
        confidence = torch.rand(n, generator=torch.Generator().manual_seed(n))
        count, conf_sum, correct_sum = _adaptive_ece_update(confidence, torch.zeros(n), n_bins)
        assert count.tolist() == sizes
        ordered = confidence.sort().values.double()
        chunks = torch.tensor_split(ordered, n_bins)
        assert conf_sum.tolist() == pytest.approx([float(chunk.sum()) for chunk in chunks], abs=1e-12)
        assert correct_sum.tolist() == sizes


def test_adaptive_ece_does_not_depend_on_the_sample_order():
    probs, target = random_probs(500, 10, 3, ties=True)
    expected = adaptive_expected_calibration_error(probs, target, n_bins=13)
    for seed in range(3):
        perm = torch.randperm(500, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(adaptive_expected_calibration_error(probs[perm], target[perm], n_bins=13), expected)


def test_adaptive_ece_known_values_and_relation_to_the_ece():
    # One bin: |accuracy - mean confidence| whatever the binning.
    probs, target = random_probs(300, 5, 2)
    one_bin = expected_calibration_error(probs, target, n_bins=1).item()
    assert adaptive_expected_calibration_error(probs, target, n_bins=1).item() == pytest.approx(one_bin, abs=1e-6)
    # Constant confidence: every sample ties, so every bin has the overall accuracy (0.6 vs 0.9).
    probs, target = _constant_confidence(10, 0.9, 6)
    for n_bins in (1, 3, 10, 20):
        assert adaptive_expected_calibration_error(probs, target, n_bins=n_bins).item() == pytest.approx(0.3, abs=1e-6)
    # One sample per bin: the mean over samples of |correct - confidence|.
    probs, target = random_probs(40, 4, 5)
    conf, correct = probs.max(1).values.double(), (probs.argmax(1) == target).double()
    expected = (correct - conf).abs().mean().item()
    got = adaptive_expected_calibration_error(probs, target, n_bins=40).item()
    assert got == pytest.approx(expected, abs=1e-6)
    # One-hot, all correct: 0.
    assert adaptive_expected_calibration_error(torch.eye(3)[[0, 1, 2]], torch.tensor([0, 1, 2])).item() == 0.0


def test_adaptive_ece_options_dtypes_and_no_samples():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(80, 6, generator=gen) * 3
    target = torch.randint(0, 6, (80,), generator=gen)
    target[::4] = -100
    logits[::4] = float("nan")
    got = adaptive_expected_calibration_error(logits, target, n_bins=6, ignore_index=-100, from_logits=True)
    assert got.item() == pytest.approx(ref_adaptive_ece(logits.softmax(1), target, 6, ignore_index=-100), abs=1e-6)
    probs, target = random_probs(300, 10, 1)
    half = adaptive_expected_calibration_error(probs.bfloat16(), target)
    assert half.dtype == torch.float32
    assert torch.equal(half, adaptive_expected_calibration_error(probs.bfloat16().float(), target))
    double = adaptive_expected_calibration_error(probs.double(), target)
    assert double.dtype == torch.float64
    assert double.item() == pytest.approx(ref_adaptive_ece(probs.double(), target), abs=1e-12)
    for norm in ("l1", "l2", "max"):
        empty = adaptive_expected_calibration_error(
            torch.full((3, 2), 0.5), torch.full((3,), 7), ignore_index=7, norm=norm
        )
        assert math.isnan(empty.item())
    for kwargs, match in [({"n_bins": 0}, "`n_bins`"), ({"norm": "l3"}, "`norm`")]:
        with pytest.raises(ValueError, match=match):
            adaptive_expected_calibration_error(probs, target, **kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# Brier score


@pytest.mark.parametrize("ties", [False, True])
def test_brier_score_matches_reference(ties):
    for seed in SEEDS:
        probs, target = random_probs(60 + seed, 7, seed, ties=ties)
        got = brier_score(probs, target)
        assert got.dtype == torch.float32
        assert got.item() == pytest.approx(ref_brier(probs, target), abs=1e-6)


def test_brier_score_matches_scikit_learn_multiclass_convention():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    if "scale_by_half" not in inspect.signature(sklearn_metrics.brier_score_loss).parameters:
        pytest.skip("scikit-learn < 1.7 has no multi-class Brier score")
    for c in (2, 3, 10):
        probs, target = random_probs(200, c, c)
        probs = probs.double() / probs.double().sum(1, keepdim=True)  # rows summing to 1 in float64 too
        expected = sklearn_metrics.brier_score_loss(
            target.numpy(), probs.numpy(), labels=list(range(c)), scale_by_half=False
        )
        assert brier_score(probs, target).item() == pytest.approx(expected, abs=1e-12)


def test_brier_score_known_values():
    assert brier_score(torch.eye(3), torch.tensor([0, 1, 2])).item() == 0.0  # one-hot on the target
    assert brier_score(torch.eye(3), torch.tensor([1, 2, 0])).item() == 2.0  # one-hot elsewhere: the maximum
    for c in (2, 5, 10):
        uniform = torch.full((4, c), 1.0 / c)
        assert brier_score(uniform, torch.arange(4) % c).item() == pytest.approx((c - 1) / c, abs=1e-6)
    probs, target = _constant_confidence(10, 0.9, 6)  # 6 x (0.01 + 0.01), 4 x (0.81 + 0.81)
    assert brier_score(probs, target).item() == pytest.approx((6 * 0.02 + 4 * 1.62) / 10, abs=1e-6)


def test_brier_score_logits_ignore_index_dtypes_and_no_samples():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 40, 6, generator=gen) * 3
    target = torch.randint(0, 6, (2, 40), generator=gen)
    target[:, 30:] = -100
    logits[:, 30:] = float("nan")
    got = brier_score(logits, target, ignore_index=-100, from_logits=True)
    assert got.item() == pytest.approx(
        ref_brier(logits.softmax(-1).flatten(0, 1), target.flatten(), ignore_index=-100), abs=1e-6
    )
    probs, target = random_probs(300, 10, 1)
    for dtype in (torch.float16, torch.bfloat16):
        low = brier_score(probs.to(dtype), target)
        assert low.dtype == torch.float32
        assert torch.equal(low, brier_score(probs.to(dtype).float(), target, validate_args=False))
    double = brier_score(probs.double(), target)
    assert double.dtype == torch.float64
    assert double.item() == pytest.approx(ref_brier(probs.double(), target), abs=1e-12)
    assert math.isnan(brier_score(torch.full((3, 2), 0.5), torch.full((3,), 7), ignore_index=7).item())
    with pytest.raises(ValueError, match="`probs` to contain probabilities"):
        brier_score(probs * 2, target)
