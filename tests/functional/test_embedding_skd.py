import math

import pytest
import torch
import torch.nn.functional as F

import lightning_skd.functional.embedding_skd as skd_module
from lightning_skd.functional.embedding_skd import (
    embedding_skd_loss,
    embedding_skd_loss_with_stats,
    embedding_skd_soft_target,
    mean_nearest_neighbour_distance,
    sigma_from_nearest_neighbours,
    skd_alpha,
)

IGNORE = -100


def reference_loss(logits, targets, weight, sigma, alpha=1.0, lam=None, ignore_index=IGNORE, reduction="mean"):
    """Eq. (12) / Eq. (11) position by position, straight from the paper's definitions (q_n a constant)."""
    vocab = logits.shape[-1]
    flat_logits, flat_targets = logits.reshape(-1, vocab), targets.reshape(-1)
    w = weight.detach()
    lam = 1.0 if lam is None else lam
    losses = []
    for z, t in zip(flat_logits, flat_targets, strict=True):
        t = int(t)
        if t == ignore_index:
            losses.append(z.sum() * 0.0)
            continue
        log_p = torch.log(torch.exp(z) / torch.exp(z).sum())
        n = int(torch.argmax(z.detach()))
        distance = math.sqrt(sum((float(w[t, k]) - float(w[n, k])) ** 2 for k in range(w.shape[1])))
        q_n = min(math.exp(-sigma * distance), 0.5)
        losses.append(-(1 - alpha * lam * q_n) * log_p[t] - alpha * lam * q_n * log_p[n])
    per_position = torch.stack(losses)
    count = int((flat_targets != ignore_index).sum())
    if reduction == "none":
        return per_position.reshape(targets.shape)
    if reduction == "sum":
        return per_position.sum()
    if reduction == "sequence":
        return per_position.reshape(targets.shape).sum(-1)
    return per_position.sum() / count


def make_inputs(seed=0, batch=3, time=5, vocab=7, dim=4, dtype=torch.float64, weight_scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, time, vocab, generator=gen, dtype=dtype)
    targets = torch.randint(0, vocab, (batch, time), generator=gen)
    targets[0, -2:] = IGNORE  # padding
    targets[-1, -1] = IGNORE
    predictions = logits.argmax(-1)
    targets[1, :3] = predictions[1, :3]  # n = t at some positions
    weight = torch.randn(vocab, dim, generator=gen, dtype=dtype) * weight_scale
    return logits, targets, weight


@pytest.mark.parametrize("weight_scale", [0.05, 5.0, 20.0])  # q_n clipped at 0.5 / in between / close to 0
@pytest.mark.parametrize("lam", [None, 0.3])
@pytest.mark.parametrize("alpha", [1.0, 0.4])
def test_embedding_skd_loss_matches_reference(weight_scale, lam, alpha):
    logits, targets, weight = make_inputs(weight_scale=weight_scale)
    expected = reference_loss(logits, targets, weight, sigma=0.1, alpha=alpha, lam=lam)
    got = embedding_skd_loss(logits, targets, weight, sigma=0.1, alpha=alpha, lam=lam)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("reduction", ["none", "sum", "sequence", "mean"])
def test_embedding_skd_loss_reductions_match_reference(reduction):
    logits, targets, weight = make_inputs(seed=1)
    expected = reference_loss(logits, targets, weight, sigma=0.3, reduction=reduction)
    got = embedding_skd_loss(logits, targets, weight, sigma=0.3, reduction=reduction)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected)
    if reduction == "none":
        assert torch.all(got[targets == IGNORE] == 0)


@pytest.mark.parametrize("lam", [None, 0.7])
def test_embedding_skd_loss_gradient_matches_reference_autograd(lam):
    logits, targets, weight = make_inputs(seed=2, weight_scale=0.3)
    logits_ref = logits.clone().requires_grad_(True)
    reference_loss(logits_ref, targets, weight, sigma=0.5, alpha=0.8, lam=lam).backward()
    logits_got = logits.clone().requires_grad_(True)
    embedding_skd_loss(logits_got, targets, weight, sigma=0.5, alpha=0.8, lam=lam).backward()
    torch.testing.assert_close(logits_got.grad, logits_ref.grad)
    assert torch.all(logits_got.grad[targets == IGNORE] == 0)


@pytest.mark.parametrize("reduction", ["none", "sequence"])
def test_embedding_skd_loss_passes_gradcheck(reduction):
    logits, targets, weight = make_inputs(seed=3, batch=2, time=3, vocab=5, weight_scale=0.5)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda z: embedding_skd_loss(z, targets, weight, sigma=0.4, alpha=0.9, reduction=reduction), (logits,)
    )


def test_embedding_skd_loss_is_exact_when_the_vocabulary_passes_run_in_many_chunks(monkeypatch):
    logits, targets, weight = make_inputs(seed=11, batch=3, time=7, vocab=6, weight_scale=3.0)  # N = 21 rows
    monkeypatch.setitem(skd_module._CHUNK_BYTES, "cpu", 4 * 6 * 8)  # 4 rows per chunk, a ragged last chunk
    assert skd_module._chunk_rows(logits.reshape(-1, 6)) == 4
    logits_ref = logits.clone().requires_grad_(True)
    expected = reference_loss(logits_ref, targets, weight, sigma=0.2, alpha=0.9)
    expected.backward()
    logits_got = logits.clone().requires_grad_(True)
    got = embedding_skd_loss(logits_got, targets, weight, sigma=0.2, alpha=0.9)
    got.backward()
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(logits_got.grad, logits_ref.grad)


def test_embedding_skd_loss_sends_no_gradient_to_weight_through_q_n():
    logits, targets, weight = make_inputs(seed=4, dtype=torch.float32)
    logits.requires_grad_(True)
    weight.requires_grad_(True)
    embedding_skd_loss(logits, targets, weight, sigma=0.1).backward()
    assert weight.grad is None
    assert logits.grad is not None


def test_embedding_skd_loss_reduces_to_cross_entropy_when_alpha_is_zero_or_n_equals_t():
    logits, targets, weight = make_inputs(seed=5)
    ce = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE)
    torch.testing.assert_close(embedding_skd_loss(logits, targets, weight, sigma=0.1, alpha=0.0), ce)
    argmax_targets = logits.argmax(-1)  # every prediction right
    ce_right = F.cross_entropy(logits.transpose(1, 2), argmax_targets)
    torch.testing.assert_close(embedding_skd_loss(logits, argmax_targets, weight, sigma=0.1, alpha=1.0), ce_right)


def test_embedding_skd_returns_q_n_and_mismatch_statistics():
    logits, targets, weight = make_inputs(seed=6, weight_scale=2.0)
    out = embedding_skd_loss_with_stats(logits, targets, weight, sigma=0.2)
    valid = targets != IGNORE
    predictions = logits.argmax(-1)
    mismatched = valid & (predictions != targets)
    distances = (weight[targets.clamp(min=0)] - weight[predictions]).norm(dim=-1)
    q_n = torch.exp(-0.2 * distances).clamp(max=0.5)
    torch.testing.assert_close(out.mismatch, mismatched.sum() / valid.sum().to(torch.float64))
    torch.testing.assert_close(out.q_n, q_n[mismatched].mean())
    all_right = embedding_skd_loss_with_stats(logits, predictions, weight, sigma=0.2)
    assert float(all_right.mismatch) == 0.0 and float(all_right.q_n) == 0.0


def test_embedding_skd_soft_target_clips_at_half_and_uses_euclidean_distance():
    weight = torch.tensor([[0.0, 0.0], [0.3, 0.4], [6.0, 8.0]])
    q = embedding_skd_soft_target(torch.tensor([0, 0, 0]), torch.tensor([0, 1, 2]), weight, sigma=1.0)
    torch.testing.assert_close(q, torch.tensor([0.5, 0.5, math.exp(-10.0)]))


def test_embedding_skd_loss_keeps_no_extra_vocabulary_sized_tensor_for_backward():
    batch, time, vocab = 4, 6, 50
    logits, targets, weight = make_inputs(seed=7, batch=batch, time=time, vocab=vocab, dtype=torch.float32)
    logits.requires_grad_(True)
    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = embedding_skd_loss(logits, targets, weight, sigma=0.1)
    big = [t for t in saved if t.numel() >= batch * time * vocab]
    assert all(t.data_ptr() == logits.data_ptr() for t in big)  # only the logits themselves
    loss.backward()


def test_embedding_skd_loss_accepts_bfloat16_logits():
    logits, targets, weight = make_inputs(seed=8, dtype=torch.float32)
    full = embedding_skd_loss(logits, targets, weight, sigma=0.1)
    half_logits = logits.bfloat16().requires_grad_(True)
    half = embedding_skd_loss(half_logits, targets, weight.bfloat16(), sigma=0.1)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, full, atol=0.05, rtol=0.02)
    half.backward()
    assert half_logits.grad.dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma": -0.1}, r"sigma must be a finite float > 0, got -0\.1"),
        ({"sigma": 0.1, "reduction": "avg"}, r"reduction must be one of .*got 'avg'"),
        ({"sigma": 0.1, "alpha": 1.5}, r"alpha must be a float in \[0, 1\], got 1\.5"),
        ({"sigma": 0.1, "lam": -0.2}, r"lam must be a float in \[0, 1\], got -0\.2"),
        ({"sigma": 0.1, "q_max": 0.0}, r"q_max must be a float in \(0, 1\], got 0\.0"),
    ],
)
def test_embedding_skd_loss_rejects_bad_arguments(kwargs, match):
    logits, targets, weight = make_inputs()
    with pytest.raises(ValueError, match=match):
        embedding_skd_loss(logits, targets, weight, **kwargs)


def test_embedding_skd_loss_rejects_mismatched_shapes():
    logits, targets, weight = make_inputs(vocab=7)
    with pytest.raises(ValueError, match=r"weight must be .* V = logits.shape\[-1\] = 7, got shape \(8, 4\)"):
        embedding_skd_loss(logits, targets, torch.randn(8, 4, dtype=logits.dtype), sigma=0.1)
    with pytest.raises(ValueError, match=r"targets must have .* expected \(3, 5\), got \(3, 4\)"):
        embedding_skd_loss(logits, targets[:, :4], weight, sigma=0.1)
    with pytest.raises(ValueError, match="targets must hold integer class indices"):
        embedding_skd_loss(logits, targets.double(), weight, sigma=0.1)


def test_skd_alpha_follows_algorithm_one():
    k, eta = 500, 0.0002
    assert skd_alpha(0, k, eta) == 0.0
    assert skd_alpha(k - 1, k, eta) == 0.0
    assert skd_alpha(k, k, eta) == 0.0  # first SKD step, alpha not yet increased
    assert skd_alpha(k + 1, k, eta) == pytest.approx(eta)
    assert skd_alpha(k + 2, k, eta) == pytest.approx(2 * eta)
    assert skd_alpha(k + 4999, k, eta) == pytest.approx(1 - eta)
    assert skd_alpha(k + 5000, k, eta) == 1.0
    assert skd_alpha(k + 10**6, k, eta) == 1.0
    assert skd_alpha(3, 0, 0.5, max_alpha=0.6) == 0.6


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, -1, 0.1), r"warmup_steps \(K\) must be an integer >= 0, got -1"),
        ((0, 5, -0.1), r"eta must be a finite float > 0, got -0\.1"),
        ((0, 5, 0.0), r"eta must be a finite float > 0, got 0\.0"),
        ((-1, 5, 0.1), r"step must be >= 0, got -1"),
    ],
)
def test_skd_alpha_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        skd_alpha(*args)


@pytest.mark.parametrize("chunk_size", [1, 3, 1024])
def test_mean_nearest_neighbour_distance_matches_brute_force(chunk_size):
    weight = torch.randn(11, 5, generator=torch.Generator().manual_seed(9))
    distances = torch.cdist(weight, weight) + torch.diag(torch.full((11,), float("inf")))
    expected = distances.min(dim=1).values.mean()
    torch.testing.assert_close(mean_nearest_neighbour_distance(weight, chunk_size), expected)


def test_sigma_from_nearest_neighbours_gives_q_nn_at_mean_distance():
    weight = torch.randn(20, 6, generator=torch.Generator().manual_seed(10))
    d_nn = float(mean_nearest_neighbour_distance(weight))
    sigma = sigma_from_nearest_neighbours(weight)
    assert sigma == pytest.approx(math.log(2) / d_nn)
    assert math.exp(-sigma * d_nn) == pytest.approx(0.5)
    assert math.exp(-sigma_from_nearest_neighbours(weight, q_nn=0.25) * d_nn) == pytest.approx(0.25)


def test_sigma_from_nearest_neighbours_rejects_degenerate_embeddings():
    with pytest.raises(ValueError, match="positive finite mean nearest-neighbour distance, got 0.0"):
        sigma_from_nearest_neighbours(torch.ones(4, 3))
    with pytest.raises(ValueError, match=r"q_nn must be a float in \(0, 1\), got 1\.5"):
        sigma_from_nearest_neighbours(torch.randn(4, 3), q_nn=1.5)
    with pytest.raises(ValueError, match=r"weight must have shape \(V, d\) with V >= 2, got \(1, 3\)"):
        mean_nearest_neighbour_distance(torch.randn(1, 3))
