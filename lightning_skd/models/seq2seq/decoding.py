"""Batched greedy decoding and beam search for any :class:`~lightning_skd.models.seq2seq.Seq2Seq` model.

Both loop over decoding steps only: every sentence and beam of the batch advances in the same tensor operations.
Sentence ``b`` may produce at most ``max_len[b] = int(max_len_a * source_lengths[b] + max_len_b)`` tokens before its
EOS; at step ``max_len[b]`` EOS is forced (its model log-probability still counts in ``log_prob``). Call them with
the model in ``eval()`` mode; they run under ``torch.no_grad()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lightning_skd.models.seq2seq._checks import check_int, check_non_negative
from lightning_skd.models.seq2seq.protocol import Seq2Seq

__all__ = ["Hypotheses", "beam_search", "greedy_decode", "length_penalty_factor"]


@dataclass
class Hypotheses:
    """The best hypothesis per sentence.

    Attributes:
        tokens: ``(B, L)`` int64 hypothesis ids without BOS / EOS, right-padded with the model's ``pad_id``.
        lengths: ``(B,)`` int64 tokens per hypothesis (EOS excluded).
        log_prob: ``(B,)`` float model log-probability of the hypothesis including its EOS (no length penalty).

    """

    tokens: Tensor
    lengths: Tensor
    log_prob: Tensor


def length_penalty_factor(length: Tensor, alpha: float) -> Tensor:
    """GNMT's length penalty ``((5 + |y|) / 6) ** alpha`` (Wu et al., 2016, Eq. 14); ``|y|`` counts the EOS.

    Beam search ranks finished hypotheses by ``log_prob / length_penalty_factor(|y|, alpha)``; ``alpha = 0`` ranks
    by the model log-probability itself.

    Example:
        >>> length_penalty_factor(torch.tensor([1, 7]), 1.0).tolist()
        [1.0, 2.0]

    """
    return ((5.0 + length.to(torch.float32)) / 6.0) ** alpha


def _check_common(owner: str, source: Tensor, source_lengths: Tensor, bos_id: int, eos_id: int, a: float, b: float):
    if source.ndim != 2 or source_lengths.shape != source.shape[:1]:
        raise ValueError(
            f"{owner}: `source` must be (B, S) and `source_lengths` (B,), got {tuple(source.shape)} and "
            f"{tuple(source_lengths.shape)}"
        )
    check_int(owner, "bos_id", bos_id, 0)
    check_int(owner, "eos_id", eos_id, 0)
    check_non_negative(owner, "max_len_a", a)
    check_non_negative(owner, "max_len_b", b)


def _max_lengths(source_lengths: Tensor, max_len_a: float, max_len_b: float, device: torch.device) -> Tensor:
    """``(B,)`` most tokens before EOS per sentence: ``int(max_len_a * source_length + max_len_b)``."""
    return (max_len_a * source_lengths.to(device=device, dtype=torch.float64) + max_len_b).long()


@torch.no_grad()
def greedy_decode(
    model: Seq2Seq,
    source: Tensor,
    source_lengths: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    max_len_a: float = 1.5,
    max_len_b: float = 10,
) -> Hypotheses:
    """Pick the most probable next token at every step until EOS (forced at the sentence's maximum length).

    Args:
        model: A ``Seq2Seq`` model (in ``eval()`` mode).
        source: ``(B, S)`` source ids, right-padded.
        source_lengths: ``(B,)`` real source positions.
        bos_id: Id fed at the first step.
        eos_id: Id that ends a hypothesis.
        max_len_a: Maximum length slope.
        max_len_b: Maximum length offset.

    Returns:
        The :class:`Hypotheses`.

    """
    _check_common("greedy_decode", source, source_lengths, bos_id, eos_id, max_len_a, max_len_b)
    batch, device = source.shape[0], source.device
    max_len = _max_lengths(source_lengths, max_len_a, max_len_b, device)  # (B,)
    steps = int(max_len.max()) + 1 if batch else 0
    encoded = model.encode(source, source_lengths)
    state = None
    tokens = torch.full((batch,), bos_id, dtype=torch.long, device=device)  # (B,) previous token
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch, dtype=torch.long, device=device)
    log_prob = torch.zeros(batch, dtype=torch.float32, device=device)
    output = torch.full((batch, max(steps - 1, 0)), model.pad_id, dtype=torch.long, device=device)
    for step in range(steps):
        log_probs, state = model.decode_step(encoded, state, tokens)  # (B, V)
        best = log_probs.argmax(dim=-1)  # (B,)
        best = torch.where(step >= max_len, torch.full_like(best, eos_id), best)  # forced EOS
        log_prob = log_prob + torch.where(finished, 0.0, log_probs.gather(1, best[:, None])[:, 0])
        is_eos = best == eos_id
        write = ~finished & ~is_eos
        if step < output.shape[1]:
            output[:, step] = torch.where(write, best, output[:, step])
        lengths = lengths + write.long()
        finished = finished | is_eos
        if bool(finished.all()):
            break
        tokens = best
    return Hypotheses(output[:, : int(lengths.max()) if batch else 0], lengths, log_prob)


@torch.no_grad()
def beam_search(
    model: Seq2Seq,
    source: Tensor,
    source_lengths: Tensor,
    *,
    beam_size: int,
    bos_id: int,
    eos_id: int,
    length_penalty: float = 1.0,
    max_len_a: float = 1.5,
    max_len_b: float = 10,
) -> Hypotheses:
    """Batched beam search: ``B x beam_size`` rows decoded together, finished hypotheses kept per sentence.

    At every step each sentence's ``beam_size`` live hypotheses are extended by every token and the ``2 *
    beam_size`` best extensions (by summed log-probability) are taken, as in fairseq: the ones ending in EOS among
    the first ``beam_size`` become finished hypotheses, scored ``log_prob / length_penalty_factor(|y|,
    length_penalty)`` (GNMT's ``((5 + |y|) / 6) ** alpha``, ``|y|`` with EOS), and the first ``beam_size`` that do
    not end in EOS stay live. A sentence is done once it has ``beam_size`` finished hypotheses or reaches its
    maximum length (where every live hypothesis is ended by a forced EOS); the result is its best-scoring finished
    hypothesis. Width 1 gives exactly :func:`greedy_decode`'s output (tested). Beam search is not exact search: a
    wider beam usually, but not always, finds a hypothesis of higher model probability than a narrower one.

    Args:
        model: A ``Seq2Seq`` model (in ``eval()`` mode).
        source: ``(B, S)`` source ids, right-padded.
        source_lengths: ``(B,)`` real source positions.
        beam_size: Live hypotheses per sentence.
        bos_id: Id fed at the first step.
        eos_id: Id that ends a hypothesis.
        length_penalty: GNMT ``alpha``; 0 ranks by the model log-probability.
        max_len_a: Maximum length slope.
        max_len_b: Maximum length offset.

    Returns:
        The :class:`Hypotheses` (``log_prob`` without the length penalty).

    """
    _check_common("beam_search", source, source_lengths, bos_id, eos_id, max_len_a, max_len_b)
    check_int("beam_search", "beam_size", beam_size, 1)
    check_non_negative("beam_search", "length_penalty", length_penalty)
    batch, device, k = source.shape[0], source.device, beam_size
    max_len = _max_lengths(source_lengths, max_len_a, max_len_b, device)  # (B,)
    steps = int(max_len.max()) + 1 if batch else 0
    encoded = model.encode(source, source_lengths)
    rows = torch.arange(batch, device=device).repeat_interleave(k)  # (B*K,) sentence of each beam row
    encoded, state = model.reorder(encoded, None, rows)
    tokens = torch.full((batch * k,), bos_id, dtype=torch.long, device=device)  # (B*K,) previous token
    scores = torch.full((batch, k), float("-inf"), device=device)  # (B, K) summed log-probs of live beams
    scores[:, 0] = 0.0  # all beams start identical: keep one
    history = torch.zeros(batch, k, 0, dtype=torch.long, device=device)  # (B, K, t) tokens of live beams
    best_score = torch.full((batch,), float("-inf"), device=device)  # (B,) best finished (length-penalised)
    best_log_prob = torch.zeros(batch, device=device)
    best_length = torch.zeros(batch, dtype=torch.long, device=device)
    best_tokens = torch.full((batch, max(steps - 1, 0)), model.pad_id, dtype=torch.long, device=device)
    num_finished = torch.zeros(batch, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    sentence = torch.arange(batch, device=device)
    for step in range(steps):
        log_probs, state = model.decode_step(encoded, state, tokens)  # (B*K, V)
        vocab = log_probs.shape[-1]
        log_probs = log_probs.view(batch, k, vocab)
        forced = step >= max_len  # (B,)
        if bool(forced.any()):  # only EOS may follow; its model log-probability is kept
            only_eos = torch.full_like(log_probs, float("-inf"))
            only_eos[..., eos_id] = log_probs[..., eos_id]
            log_probs = torch.where(forced[:, None, None], only_eos, log_probs)
        candidates = (scores[..., None] + log_probs).view(batch, k * vocab)  # (B, K*V)
        cand_scores, cand_index = candidates.topk(min(2 * k, k * vocab), dim=1)  # (B, 2K), best first
        cand_beam, cand_token = cand_index // vocab, cand_index % vocab  # (B, 2K)
        cand_is_eos = cand_token == eos_id

        # finished hypotheses: EOS candidates among the first K, of sentences still running
        eligible = cand_is_eos[:, :k] & torch.isfinite(cand_scores[:, :k]) & ~done[:, None]  # (B, K)
        normalised = cand_scores[:, :k] / length_penalty_factor(torch.tensor(step + 1), length_penalty)
        normalised = torch.where(eligible, normalised, float("-inf"))
        top_normalised, top_slot = normalised.max(dim=1)  # (B,)
        improves = top_normalised > best_score  # (B,), False where nothing is eligible
        if bool(improves.any()) and step > 0:
            source_beam = cand_beam.gather(1, top_slot[:, None])[:, 0]  # (B,)
            finished_tokens = history[sentence, source_beam]  # (B, step)
            best_tokens[:, :step] = torch.where(improves[:, None], finished_tokens, best_tokens[:, :step])
            best_tokens[:, step:] = torch.where(improves[:, None], model.pad_id, best_tokens[:, step:])
        best_log_prob = torch.where(improves, cand_scores.gather(1, top_slot[:, None])[:, 0], best_log_prob)
        best_length = torch.where(improves, step, best_length)
        best_score = torch.where(improves, top_normalised, best_score)
        num_finished = num_finished + eligible.sum(1)
        done = done | (num_finished >= k) | forced
        if bool(done.all()):
            break

        # live hypotheses: the first K candidates that do not end in EOS (there are >= K among 2K)
        rank = cand_is_eos.long() * cand_scores.shape[1] + torch.arange(cand_scores.shape[1], device=device)
        keep = rank.topk(k, dim=1, largest=False).indices.sort(dim=1).values  # (B, K) slots, best first
        scores = cand_scores.gather(1, keep)
        beam = cand_beam.gather(1, keep)  # (B, K) beam each live hypothesis extends
        tokens = cand_token.gather(1, keep)  # (B, K)
        history = torch.cat([history.gather(1, beam[..., None].expand(-1, -1, step)), tokens[..., None]], dim=2)
        encoded, state = model.reorder(encoded, state, (sentence[:, None] * k + beam).view(-1))
        tokens = tokens.view(-1)
    return Hypotheses(best_tokens[:, : int(best_length.max()) if batch else 0], best_length, best_log_prob)
