"""``fit_temperature``: known answers, optimality against a reference minimiser, invariants, bounds and errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar

from lightning_skd.functional import fit_temperature

#: Class distributions with rational probabilities: row ``z = log p`` repeated with each class ``c`` as target
#: ``counts[c]`` times, ``counts ∝ p``, is a population on which ``z`` is perfectly calibrated (the NLL's derivative in
#: ``1 / T`` vanishes exactly at ``T = 1``).
CALIBRATED = [
    ((1 / 2, 1 / 3, 1 / 6), (3, 2, 1)),
    ((3 / 4, 1 / 4), (3, 1)),
    ((2 / 5, 2 / 5, 1 / 10, 1 / 10), (4, 4, 1, 1)),
    ((1 / 3, 1 / 3, 1 / 3), (1, 1, 1)),  # uniform: no information, the same at every T
]


def calibrated_population() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(N, 4)`` and targets of :data:`CALIBRATED` (a distribution over fewer classes: the rest at -1000)."""
    rows, targets = [], []
    for probs, counts in CALIBRATED:
        logits = torch.full((4,), -1e3, dtype=torch.float64)  # classes outside the distribution: probability ~0
        logits[: len(probs)] = torch.tensor(probs, dtype=torch.float64).log()
        for target, count in enumerate(counts):
            rows += [logits] * count
            targets += [target] * count
    return torch.stack(rows), torch.tensor(targets)


def nll(logits: torch.Tensor, target: torch.Tensor, temperature: float = 1.0) -> float:
    return F.cross_entropy(logits.double() / temperature, target).item()


@pytest.mark.parametrize("factor", [0.4, 1.0, 2.5, 7.0])
def test_logits_of_a_calibrated_population_scaled_by_a_factor_give_that_factor_exactly(factor):
    logits, target = calibrated_population()
    order = torch.randperm(len(target), generator=torch.Generator().manual_seed(0))
    # logits * factor: over-confident for factor > 1; dividing by T = factor restores the calibrated logits
    assert fit_temperature(logits[order] * factor, target[order]) == pytest.approx(factor, rel=1e-12)


def test_sampled_calibrated_model_divided_by_2_5_gives_t_near_one_over_2_5():
    generator = torch.Generator().manual_seed(0)
    z = 2.0 * torch.randn(20_000, 10, generator=generator)
    target = torch.multinomial(z.softmax(-1), 1, generator=generator).squeeze(1)  # z is calibrated by construction
    assert fit_temperature(z, target) == pytest.approx(1.0, rel=0.02)  # sampling noise only
    assert fit_temperature(z / 2.5, target) == pytest.approx(fit_temperature(z, target) / 2.5, rel=1e-9)
    assert fit_temperature(z / 2.5, target) == pytest.approx(1 / 2.5, rel=0.02)


@pytest.mark.parametrize("seed", range(4))
def test_fit_is_the_minimum_found_by_a_reference_minimiser_and_never_raises_the_nll(seed):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(300, 7, generator=generator) * (0.5 + 3 * seed)
    target = torch.randint(0, 7, (300,), generator=generator)
    target[:150] = logits[:150].argmax(-1)  # half right: an informative, mis-calibrated model
    temperature = fit_temperature(logits, target)
    reference = minimize_scalar(
        lambda log_t: nll(logits, target, math.exp(log_t)), bounds=(-8, 8), method="bounded", options={"xatol": 1e-10}
    )
    assert math.log(temperature) == pytest.approx(reference.x, abs=1e-4)
    assert nll(logits, target, temperature) <= reference.fun + 1e-12
    assert nll(logits, target, temperature) <= nll(logits, target) + 1e-12  # never worse than T = 1 on its split
    assert torch.equal((logits / temperature).argmax(-1), logits.argmax(-1))  # top-1 unchanged


def test_token_logits_with_padding_equal_the_fit_on_the_real_tokens():
    generator = torch.Generator().manual_seed(1)
    logits = 3 * torch.randn(4, 6, 5, generator=generator)
    target = torch.randint(0, 5, (4, 6), generator=generator)
    target[:, 4:] = -100
    real = target != -100
    expected = fit_temperature(logits[real], target[real], ignore_index=None)
    assert fit_temperature(logits, target) == expected
    assert fit_temperature(logits.half(), target) == pytest.approx(fit_temperature(logits.half().float(), target))


def test_answers_on_the_bounds_and_for_uninformative_logits():
    separable = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    assert fit_temperature(separable, torch.tensor([0, 1])) == 0.01  # sharper is always better
    assert fit_temperature(separable, torch.tensor([0, 1]), min_temperature=0.2) == 0.2
    assert fit_temperature(separable, torch.tensor([1, 0])) == 100.0  # worse than uniform: as flat as allowed
    assert fit_temperature(torch.zeros(3, 4), torch.tensor([0, 1, 2])) == 1.0  # T does not matter: leave it at 1


def test_sum_across_processes_sees_the_sums_and_a_doubled_dataset_gives_the_same_fit():
    generator = torch.Generator().manual_seed(2)
    logits, target = torch.randn(50, 3, generator=generator), torch.randint(0, 3, (50,), generator=generator)
    seen = []

    def twice(total: torch.Tensor) -> torch.Tensor:  # as if a second process held the same shard
        seen.append(total.dtype)
        return 2 * total

    assert fit_temperature(logits, target, sum_across_processes=twice) == pytest.approx(
        fit_temperature(logits, target), rel=1e-12
    )
    assert set(seen) == {torch.float64}

    calls = []

    def another_process_failed(total: torch.Tensor) -> torch.Tensor:  # the first reduction: (count, failed)
        calls.append(total)
        return total + torch.tensor([0.0, 1.0]) if len(calls) == 1 else total

    with pytest.raises(ValueError, match="another process"):
        fit_temperature(logits, target, sum_across_processes=another_process_failed)
    with pytest.raises(ValueError, match="NaN"):  # this process's own error, after the reduction
        fit_temperature(torch.full((2, 3), math.nan), target[:2], sum_across_processes=twice)


@pytest.mark.parametrize(
    ("logits", "target", "kwargs", "match"),
    [
        (torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, dtype=torch.long), {}, "floating"),
        (torch.zeros(2, 3), torch.zeros(2), {}, "integer"),
        (torch.zeros(2, 3), torch.zeros(3, dtype=torch.long), {}, "shape"),
        (torch.zeros(2, 3), torch.tensor([0, 3]), {}, r"\[0, 3\)"),
        (torch.tensor([[0.0, math.nan]]), torch.tensor([0]), {}, "NaN"),
        (torch.zeros(2, 3), torch.tensor([-100, -100]), {}, "no target"),
        (torch.zeros(2, 3), torch.tensor([0, 1]), {"min_temperature": 0.0}, "min_temperature"),
        (torch.zeros(2, 3), torch.tensor([0, 1]), {"min_temperature": 2.0, "max_temperature": 1.0}, "below"),
    ],
)
def test_bad_input_raises_naming_the_problem(logits, target, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_temperature(logits, target, **kwargs)
