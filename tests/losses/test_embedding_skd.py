import math

import pytest
import torch

from lightning_skd import EmbeddingSKDLoss
from lightning_skd.functional.embedding_skd import embedding_skd_loss_with_stats, mean_nearest_neighbour_distance

IGNORE = -100


def make_inputs(seed=0, batch=2, time=4, vocab=9, dim=3):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, time, vocab, generator=gen)
    targets = torch.randint(0, vocab, (batch, time), generator=gen)
    targets[0, -1] = IGNORE
    weight = torch.randn(vocab, dim, generator=gen)
    return logits, targets, weight


def naive_loss(logits, targets, weight, sigma, alpha, lam=1.0):
    total, count = 0.0, 0
    for z, t in zip(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), strict=True):
        if t == IGNORE:
            continue
        log_p = torch.log_softmax(z.double(), dim=0)
        n = int(z.argmax())
        q_n = min(math.exp(-sigma * float((weight[t] - weight[n]).norm())), 0.5)
        total += float(-(1 - alpha * lam * q_n) * log_p[t] - alpha * lam * q_n * log_p[n])
        count += 1
    return total / count


def test_embedding_skd_loss_module_matches_naive_reference_and_functional():
    logits, targets, weight = make_inputs()
    loss_fn = EmbeddingSKDLoss(sigma=0.7, lam=0.5, alpha=0.6)
    got = loss_fn(logits, targets, weight)
    assert float(got) == pytest.approx(naive_loss(logits, targets, weight, sigma=0.7, alpha=0.6, lam=0.5), rel=1e-5)
    expected = embedding_skd_loss_with_stats(logits, targets, weight, sigma=0.7, alpha=0.6, lam=0.5)
    torch.testing.assert_close(got, expected.loss)
    torch.testing.assert_close(loss_fn.last_q_n, expected.q_n)
    torch.testing.assert_close(loss_fn.last_mismatch, expected.mismatch)
    assert not loss_fn.last_q_n.requires_grad


def test_embedding_skd_loss_sequence_reduction_sums_over_time():
    logits, targets, weight = make_inputs(seed=1)
    per_position = EmbeddingSKDLoss(sigma=0.1, reduction="none")(logits, targets, weight)
    per_sentence = EmbeddingSKDLoss(sigma=0.1, reduction="sequence")(logits, targets, weight)
    assert per_sentence.shape == (2,)
    torch.testing.assert_close(per_sentence, per_position.sum(dim=1))


def test_embedding_skd_loss_set_alpha_and_state_dict_round_trip():
    loss_fn = EmbeddingSKDLoss(sigma="auto", sigma_update_every=5)
    loss_fn.set_alpha(0.25)
    logits, targets, weight = make_inputs(seed=2)
    loss_fn.train()
    loss_fn(logits, targets, weight, step=3)
    state = loss_fn.state_dict()
    restored = EmbeddingSKDLoss(sigma="auto", sigma_update_every=5)
    restored.load_state_dict(state)
    assert float(restored.alpha) == 0.25
    assert float(restored.sigma) == pytest.approx(float(loss_fn.sigma))
    assert (restored.sigma_step, restored.num_calls) == (3, 1)
    with pytest.raises(ValueError, match=r"alpha must be a float in \[0, 1\], got 1\.2"):
        loss_fn.set_alpha(1.2)


def test_embedding_skd_loss_alpha_zero_is_cross_entropy():
    logits, targets, weight = make_inputs(seed=3)
    loss_fn = EmbeddingSKDLoss(sigma=0.1, alpha=0.0)
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE)
    torch.testing.assert_close(loss_fn(logits, targets, weight), ce)


def test_embedding_skd_loss_sends_no_gradient_to_weight_through_q_n():
    logits, targets, weight = make_inputs(seed=4)
    logits.requires_grad_(True)
    weight.requires_grad_(True)
    EmbeddingSKDLoss(sigma=0.1)(logits, targets, weight).backward()
    assert weight.grad is None
    # W still learns through the logits it produces (the softmax layer), as with plain cross-entropy.
    hidden = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    EmbeddingSKDLoss(sigma=0.1)(hidden @ weight.T, targets, weight).backward()
    assert weight.grad is not None and float(weight.grad.abs().sum()) > 0


def test_embedding_skd_loss_auto_sigma_is_recomputed_on_schedule():
    logits, targets, weight = make_inputs(seed=5)
    loss_fn = EmbeddingSKDLoss(sigma="auto", sigma_update_every=10, chunk_size=4).train()
    assert math.isnan(float(loss_fn.sigma))
    loss_fn(logits, targets, weight, step=0)
    expected = math.log(2) / float(mean_nearest_neighbour_distance(weight))
    # cdist in chunks of 4 rows inside the loss, in one chunk here; sigma is then stored in float32
    assert float(loss_fn.sigma) == pytest.approx(expected, rel=1e-5)
    moved = weight * 3
    loss_fn(logits, targets, moved, step=9)  # not due yet
    assert float(loss_fn.sigma) == pytest.approx(expected, rel=1e-5)
    loss_fn(logits, targets, moved, step=10)  # due
    assert float(loss_fn.sigma) == pytest.approx(expected / 3, rel=1e-5)
    assert loss_fn.sigma_step == 10
    loss_fn.eval()
    loss_fn(logits, targets, weight, step=100)  # evaluation never recomputes a known sigma
    assert float(loss_fn.sigma) == pytest.approx(expected / 3, rel=1e-5)


def test_embedding_skd_loss_auto_sigma_counts_training_calls_without_step():
    logits, targets, weight = make_inputs(seed=6)
    loss_fn = EmbeddingSKDLoss(sigma="auto", sigma_update_every=2).train()
    for _ in range(3):
        loss_fn(logits, targets, weight * 2**loss_fn.num_calls)
    # computed at call 0 (scale 1) and at call 2 (scale 4)
    assert loss_fn.sigma_step == 2
    assert float(loss_fn.sigma) == pytest.approx(math.log(2) / float(mean_nearest_neighbour_distance(weight * 4)))


def test_embedding_skd_loss_update_sigma_needs_auto():
    with pytest.raises(ValueError, match=r"update_sigma needs sigma='auto', got sigma=0\.1"):
        EmbeddingSKDLoss(sigma=0.1).update_sigma(torch.randn(5, 2))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma": -1.0}, r"sigma must be a finite float > 0, got -1\.0"),
        ({"sigma": "mean"}, r"sigma must be a finite float > 0 or 'auto', got 'mean'"),
        (
            {"reduction": "batchmean"},
            r"reduction must be one of \('none', 'mean', 'sum', 'sequence'\), got 'batchmean'",
        ),
        ({"lam": 1.5}, r"lam must be a float in \[0, 1\], got 1\.5"),
        ({"alpha": -0.1}, r"alpha must be a float in \[0, 1\], got -0\.1"),
        ({"q_max": 2.0}, r"q_max must be a float in \(0, 1\], got 2\.0"),
        ({"sigma_update_every": 0}, r"sigma_update_every must be an integer >= 1, got 0"),
        ({"chunk_size": -3}, r"chunk_size must be an integer >= 1, got -3"),
        ({"sigma_auto_q": 1.0}, r"sigma_auto_q must be a float in \(0, 1\), got 1\.0"),
    ],
)
def test_embedding_skd_loss_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EmbeddingSKDLoss(**kwargs)


def test_embedding_skd_loss_rejects_mismatched_vocabulary():
    logits, targets, _ = make_inputs(vocab=9)
    with pytest.raises(ValueError, match=r"weight must be .*V = logits.shape\[-1\] = 9, got shape \(10, 3\)"):
        EmbeddingSKDLoss(sigma=0.1)(logits, targets, torch.randn(10, 3))
