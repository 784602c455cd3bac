import math

import pytest
import torch

import lightning_skd.functional.statistics as statistics_module
from lightning_skd.functional import (
    aurc,
    eaurc,
    expected_calibration_error,
    negative_log_likelihood,
    risk_coverage,
    sample_statistics,
    top_k_error,
)
from tests.helpers.reference_metrics import (
    FLOAT32_TINY,
    confidence_correct,
    random_probs,
    ref_squared_errors,
    ref_target_rank,
    rows_and_targets,
)

FUNCTIONS = [expected_calibration_error, aurc, eaurc, negative_log_likelihood, top_k_error, risk_coverage]


@pytest.mark.parametrize("ties", [False, True])
def test_sample_statistics_matches_reference(ties):
    for seed in range(5):
        probs, target = random_probs(80, 5, seed, ties=ties)
        stats = sample_statistics(probs, target)
        rows, targets = rows_and_targets(probs, target)
        pairs = confidence_correct(rows, targets)
        assert stats.confidence.tolist() == pytest.approx([conf for conf, _ in pairs], abs=0)
        assert stats.correct.tolist() == [correct for _, correct in pairs]
        assert stats.target_rank.tolist() == ref_target_rank(probs, target)
        assert stats.target_log_prob.tolist() == pytest.approx(
            [math.log(max(r[t], FLOAT32_TINY)) for r, t in zip(rows, targets, strict=True)]
        )


def test_sample_statistics_rank_identical_across_cpu_row_blocks(monkeypatch):
    probs, target = random_probs(500, 7, 0, ties=True)
    whole = sample_statistics(probs, target).target_rank
    monkeypatch.setattr(statistics_module, "_CPU_CHUNK_ELEMENTS", 50)  # blocks of 7 rows, last one partial
    assert torch.equal(sample_statistics(probs, target).target_rank, whole)
    assert whole.tolist() == ref_target_rank(probs, target)


@pytest.mark.parametrize("ties", [False, True])
def test_sample_statistics_squared_error_matches_reference_across_row_blocks(ties, monkeypatch):
    probs, target = random_probs(300, 7, 4, ties=ties)
    assert sample_statistics(probs, target).squared_error is None  # only on request
    whole = sample_statistics(probs, target, with_squared_error=True).squared_error
    assert whole.dtype == torch.float32
    assert whole.tolist() == pytest.approx(ref_squared_errors(*rows_and_targets(probs, target)), abs=1e-6)
    monkeypatch.setattr(statistics_module, "_CPU_CHUNK_ELEMENTS", 50)  # blocks of 7 rows, last one partial
    assert torch.equal(sample_statistics(probs, target, with_squared_error=True).squared_error, whole)
    logits = probs.clamp(min=1e-30).log()  # softmax gives back probs (zeros: 1e-30)
    from_logits = sample_statistics(logits, target, from_logits=True, with_squared_error=True).squared_error
    assert from_logits.tolist() == pytest.approx(whole.tolist(), abs=1e-6)
    one_hot = sample_statistics(torch.eye(3), torch.tensor([0, 2, 2]), with_squared_error=True).squared_error
    assert one_hot.tolist() == [0.0, 2.0, 0.0]


def test_sample_statistics_flattens_leading_dimensions():
    probs, target = random_probs(24, 5, 1)
    flat = sample_statistics(probs, target, with_squared_error=True)
    nested = sample_statistics(probs.reshape(2, 3, 4, 5), target.reshape(2, 3, 4), with_squared_error=True)
    for a, b in zip(flat, nested, strict=True):
        assert torch.equal(a, b)


def test_sample_statistics_from_logits_matches_softmax_probabilities():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(100, 8, generator=gen) * 3
    target = torch.randint(0, 8, (100,), generator=gen)
    from_logits = sample_statistics(logits, target, from_logits=True)
    from_probs = sample_statistics(logits.softmax(1), target)
    # exp(max log_softmax) against max softmax: two kernels (vectorised differently per CPU), a few ulps apart
    assert torch.allclose(from_logits.confidence, from_probs.confidence, rtol=1e-5, atol=0)
    assert torch.allclose(from_logits.target_log_prob, from_probs.target_log_prob, rtol=1e-5, atol=1e-6)
    assert torch.equal(from_logits.target_rank, from_probs.target_rank)


def test_sample_statistics_ignore_index_drops_before_value_checks():
    probs, target = random_probs(10, 3, 0)
    probs[2] = float("nan")
    probs[5] = 7.0
    target[2] = target[5] = -100
    stats = sample_statistics(probs, target, ignore_index=-100)
    assert stats.confidence.numel() == 8
    assert not torch.isnan(stats.confidence).any()


def test_sample_statistics_half_precision_matches_float32_of_same_values():
    probs, target = random_probs(200, 10, 3)
    for dtype in (torch.float16, torch.bfloat16):
        low = probs.to(dtype)
        got = sample_statistics(low, target, with_squared_error=True)
        ref = sample_statistics(low.float(), target, validate_args=False, with_squared_error=True)
        assert got.confidence.dtype == got.target_log_prob.dtype == got.squared_error.dtype == torch.float32
        for a, b in zip(got, ref, strict=True):
            assert torch.equal(a, b)


def test_sample_statistics_without_rank_has_no_correct():
    probs, target = random_probs(5, 3, 0)
    stats = sample_statistics(probs, target, with_rank=False)
    assert stats.target_rank is None
    with pytest.raises(ValueError, match="with_rank=False"):
        _ = stats.correct


def _good():
    return random_probs(6, 4, 0)


def _with(p, value, row=1, col=2):
    p = p.clone()
    p[row, col] = value
    return p


def _target_with(t, value):
    t = t.clone()
    t[3] = value
    return t


FINITE = r"`probs` to contain only finite values, but got"
RANGE = r"`probs` to contain probabilities in \[0, 1\], but got values in"
BAD_INPUTS = [
    # (case, make (probs, target) from good ones, extra kwargs, expected message)
    ("probs", lambda p, t: (p.tolist(), t), {}, r"`probs` to be a torch.Tensor"),
    ("target", lambda p, t: (p, t.tolist()), {}, r"`target` to be a torch.Tensor"),
    ("int probs", lambda p, t: ((p * 10).long(), t), {}, r"`probs` to be a floating point tensor.*torch.int64"),
    ("float target", lambda p, t: (p, t.float()), {}, r"`target` to be an integer tensor.*torch.float32"),
    ("bool target", lambda p, t: (p, t > 1), {}, r"`target` to be an integer tensor.*torch.bool"),
    ("1-d probs", lambda p, t: (p[:, 0], t), {}, r"`probs` to have shape \(N, C\).*got shape \(6,\)"),
    ("target shape", lambda p, t: (p, t[:5]), {}, r"`target` to have shape \(6,\).*got shape \(5,\)"),
    ("2-d target", lambda p, t: (p, t[:, None]), {}, r"`target` to have shape \(6,\).*got shape \(6, 1\)"),
    ("no classes", lambda p, t: (p[:, :0], t), {}, r"`probs` to have at least one class"),
    ("nan", lambda p, t: (_with(p, math.nan), t), {}, FINITE + " 1 NaN and 0 infinite"),
    ("inf", lambda p, t: (_with(p, math.inf), t), {}, FINITE + " 0 NaN and 1 infinite"),
    ("inf logits", lambda p, t: (_with(p, -math.inf), t), {"from_logits": True}, FINITE + " 0 NaN and 1 infinite"),
    ("negative", lambda p, t: (_with(p, -0.5), t), {}, RANGE + r" \[-0.5, "),
    ("logits as probs", lambda p, t: (p * 4, t), {}, RANGE + r".*from_logits=True"),
    (
        "row sum",
        lambda p, t: (p * 0.9, t),
        {},
        r"each row of argument `probs` to sum to 1 \(within 0.01 for torch.float32",
    ),
    ("target high", lambda p, t: (p, _target_with(t, 4)), {}, r"`target` to contain class indices in \[0, 3\].*, 4\]"),
    ("target low", lambda p, t: (p, _target_with(t, -100)), {}, r"`target` to contain class indices.*\[-100, "),
    ("ignore_index type", lambda p, t: (p, t), {"ignore_index": 1.0}, r"`ignore_index` to be None or an int.*1.0"),
    ("from_logits type", lambda p, t: (p, t), {"from_logits": "yes"}, r"`from_logits` to be a bool"),
]


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(("case", "make", "kwargs", "match"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_validation_bad_input_raises_value_error_naming_argument(fn, case, make, kwargs, match):
    probs, target = make(*_good())
    with pytest.raises(ValueError, match=match):
        fn(probs, target, **kwargs)


def test_validation_num_classes_mismatch_raises():
    probs, target = _good()
    with pytest.raises(ValueError, match=r"`probs` to have num_classes=5 entries in its last dimension.*\(6, 4\)"):
        sample_statistics(probs, target, num_classes=5)


def test_validation_skipped_with_validate_args_false():
    probs, target = _good()
    unnormalised = probs * 0.5
    for fn in FUNCTIONS:
        fn(unnormalised, target, validate_args=False)  # no check of the row sums
    with pytest.raises(ValueError):
        expected_calibration_error(unnormalised, target)


def test_validation_accepts_half_precision_rounding():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 100, generator=gen) * 3
    for dtype in (torch.float16, torch.bfloat16):
        low_probs = logits.to(dtype).softmax(1)
        sample_statistics(low_probs, torch.zeros(500, dtype=torch.long))
        sample_statistics(low_probs.float(), torch.zeros(500, dtype=torch.long))  # cast up: float32 tolerance


def test_sample_statistics_small_integer_targets_with_negative_ignore_index():
    probs, target = random_probs(12, 4, 2)
    expected = sample_statistics(probs[2:], target[2:], with_squared_error=True)
    small = target.to(torch.uint8)
    small[:2] = 255
    got = sample_statistics(
        probs, small.to(torch.int16).where(small != 255, -100), ignore_index=-100, with_squared_error=True
    )
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)
    got_uint8 = sample_statistics(probs, small, ignore_index=255)
    assert torch.equal(got_uint8.target_rank, expected.target_rank)
