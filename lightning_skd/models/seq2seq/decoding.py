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

from lightning_skd.models.seq2seq._checks import check_finite, check_int, check_non_negative, check_source
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
    check_source(owner, source, source_lengths)
    check_int(owner, "bos_id", bos_id, 0)
    check_int(owner, "eos_id", eos_id, 0)
    check_non_negative(owner, "max_len_a", a)
    check_non_negative(owner, "max_len_b", b)


def _empty(source: Tensor) -> Hypotheses:
    """Hypotheses of an empty batch."""
    return Hypotheses(
        source.new_zeros(0, 0, dtype=torch.long),
        source.new_zeros(0, dtype=torch.long),
        source.new_zeros(0, dtype=torch.float32),
    )


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
    if source.shape[0] == 0:
        return _empty(source)
    batch, device = source.shape[0], source.device
    max_len = _max_lengths(source_lengths, max_len_a, max_len_b, device)  # (B,)
    steps = int(max_len.max()) + 1
    lengths = torch.zeros(batch, dtype=torch.long, device=device)
    log_prob = torch.zeros(batch, dtype=torch.float32, device=device)
    output = torch.full((batch, max(steps - 1, 0)), model.pad_id, dtype=torch.long, device=device)
    # running sentences only (A <= B rows): finished ones are dropped from the model's batch
    active = torch.arange(batch, device=device)  # (A,) their rows in the output
    encoded, state = model.encode(source, source_lengths), None
    tokens = torch.full((batch,), bos_id, dtype=torch.long, device=device)  # (A,) previous token
    for step in range(steps):
        log_probs, state = model.decode_step(encoded, state, tokens)  # (A, V)
        best = log_probs.argmax(dim=-1)  # (A,)
        best = torch.where(step >= max_len[active], torch.full_like(best, eos_id), best)  # forced EOS
        log_prob[active] += log_probs.gather(1, best[:, None])[:, 0]
        is_eos = best == eos_id  # (A,)
        if step < output.shape[1]:
            output[active, step] = torch.where(is_eos, model.pad_id, best)
        lengths[active] += (~is_eos).long()
        if bool(is_eos.any()):
            running = (~is_eos).nonzero()[:, 0]  # (A',) positions among the active rows
            if running.numel() == 0:
                break
            active, best = active[running], best[running]
            encoded, state = model.reorder(encoded, state, running)
        tokens = best
    return Hypotheses(output[:, : int(lengths.max())], lengths, log_prob)


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
    not end in EOS stay live. A sentence is done when it reaches its maximum length (where every live hypothesis is
    ended by a forced EOS) or when its best finished hypothesis scores at least as high as every live one,
    normalised at the live ones' current length (Hugging Face's ``early_stopping=False`` rule). For
    ``length_penalty <= 0`` this rule is exact (scores only decrease and the factor does not grow with length, so
    no live hypothesis can still overtake); for ``length_penalty > 0`` it is a heuristic. The result is its
    best-scoring finished hypothesis. (fairseq stops at ``beam_size`` finished hypotheses instead, which can end
    the search while a live hypothesis still scores higher: on a toy model it returned a lower log-probability
    than greedy.)

    Width 1 gives exactly :func:`greedy_decode`'s output (tested). Beam search is not exact search: a wider beam
    usually, but not always, finds a hypothesis of higher model probability than a narrower one.

    Args:
        model: A ``Seq2Seq`` model (in ``eval()`` mode).
        source: ``(B, S)`` source ids, right-padded.
        source_lengths: ``(B,)`` real source positions.
        beam_size: Live hypotheses per sentence.
        bos_id: Id fed at the first step.
        eos_id: Id that ends a hypothesis.
        length_penalty: GNMT ``alpha``; 0 ranks by the model log-probability, > 0 favours longer hypotheses,
            < 0 shorter ones.
        max_len_a: Maximum length slope.
        max_len_b: Maximum length offset.

    Returns:
        The :class:`Hypotheses` (``log_prob`` without the length penalty).

    """
    _check_common("beam_search", source, source_lengths, bos_id, eos_id, max_len_a, max_len_b)
    check_int("beam_search", "beam_size", beam_size, 1)
    check_finite("beam_search", "length_penalty", length_penalty)
    if source.shape[0] == 0:
        return _empty(source)
    batch, device, k = source.shape[0], source.device, beam_size
    max_len = _max_lengths(source_lengths, max_len_a, max_len_b, device)  # (B,)
    steps = int(max_len.max()) + 1
    best_score = torch.full((batch,), float("-inf"), device=device)  # (B,) best finished (length-penalised)
    best_log_prob = torch.zeros(batch, device=device)
    best_length = torch.zeros(batch, dtype=torch.long, device=device)
    best_tokens = torch.full((batch, max(steps - 1, 0)), model.pad_id, dtype=torch.long, device=device)
    # running sentences only (A <= B of them, K rows each in the model's batch): done ones are dropped
    active = torch.arange(batch, device=device)  # (A,) their rows in the output
    encoded = model.encode(source, source_lengths)
    encoded, state = model.reorder(encoded, None, active.repeat_interleave(k))  # A*K rows, sentence-major
    tokens = torch.full((batch * k,), bos_id, dtype=torch.long, device=device)  # (A*K,) previous token
    scores = torch.full((batch, k), float("-inf"), device=device)  # (A, K) summed log-probs of live beams
    scores[:, 0] = 0.0  # all beams start identical: keep one
    history = torch.zeros(batch, k, 0, dtype=torch.long, device=device)  # (A, K, t) tokens of live beams
    for step in range(steps):
        log_probs, state = model.decode_step(encoded, state, tokens)  # (A*K, V)
        num_active, vocab = active.shape[0], log_probs.shape[-1]
        log_probs = log_probs.view(num_active, k, vocab)
        forced = step >= max_len[active]  # (A,)
        if bool(forced.any()):  # only EOS may follow; its model log-probability is kept
            only_eos = torch.full_like(log_probs, float("-inf"))
            only_eos[..., eos_id] = log_probs[..., eos_id]
            log_probs = torch.where(forced[:, None, None], only_eos, log_probs)
        candidates = (scores[..., None] + log_probs).view(num_active, k * vocab)  # (A, K*V)
        cand_scores, cand_index = candidates.topk(min(2 * k, k * vocab), dim=1)  # (A, 2K), best first
        cand_beam, cand_token = cand_index // vocab, cand_index % vocab  # (A, 2K)
        cand_is_eos = cand_token == eos_id

        # finished hypotheses: EOS candidates among the first K
        eligible = cand_is_eos[:, :k] & torch.isfinite(cand_scores[:, :k])  # (A, K)
        factor = length_penalty_factor(torch.tensor(step + 1), length_penalty)  # |y| = step + 1 with EOS
        normalised = torch.where(eligible, cand_scores[:, :k] / factor, float("-inf"))
        top_normalised, top_slot = normalised.max(dim=1)  # (A,)
        improves = top_normalised > best_score[active]  # (A,), False where nothing is eligible
        if bool(improves.any()):
            rows = active[improves]  # output rows that get a new best hypothesis
            source_beam = cand_beam.gather(1, top_slot[:, None])[improves, 0]
            best_tokens[rows] = model.pad_id
            best_tokens[rows, :step] = history[improves.nonzero()[:, 0], source_beam]  # (n, step)
            best_log_prob[rows] = cand_scores.gather(1, top_slot[:, None])[improves, 0]
            best_length[rows] = step
            best_score[rows] = top_normalised[improves]

        # live hypotheses: the first K candidates that do not end in EOS (there are >= K among 2K)
        rank = cand_is_eos.long() * cand_scores.shape[1] + torch.arange(cand_scores.shape[1], device=device)
        keep = rank.topk(k, dim=1, largest=False).indices.sort(dim=1).values  # (A, K) slots, best first
        scores = cand_scores.gather(1, keep)
        beam = cand_beam.gather(1, keep)  # (A, K) beam each live hypothesis extends
        tokens = cand_token.gather(1, keep)  # (A, K)
        # done: max length reached, or no live hypothesis beats the best finished one at the current length
        # (exact for length_penalty <= 0, where scores only decrease; Hugging Face's heuristic otherwise)
        done = forced | (best_score[active] >= scores.max(dim=1).values / factor)  # (A,)
        running = (~done).nonzero()[:, 0]  # (A',) positions among the active sentences
        if running.numel() == 0:
            break
        history = torch.cat([history.gather(1, beam[..., None].expand(-1, -1, step)), tokens[..., None]], dim=2)
        rows = running[:, None] * k + beam[running]  # (A', K) model rows the surviving beams extend
        active, scores, history, tokens = active[running], scores[running], history[running], tokens[running]
        encoded, state = model.reorder(encoded, state, rows.view(-1))
        tokens = tokens.view(-1)
    return Hypotheses(best_tokens[:, : int(best_length.max())], best_length, best_log_prob)
