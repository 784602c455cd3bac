"""Greedy decoding and batched beam search: known answers on a model with fixed outputs, then the real models."""

import itertools
import math

import pytest
import torch

from lightning_skd.models.seq2seq import beam_search, greedy_decode, length_penalty_factor
from tests.helpers.seq2seq import BOS, EOS, PAD, TINY, MarkovSeq2Seq, build, collate, toy_pairs, train

WORDS = (3, 4)  # the Markov model's only words; PAD and BOS get probability 0


def markov_table(num_sources: int = 3, seed: int = 0) -> torch.Tensor:
    """``(num_sources, 5, 5)`` log-probs over {PAD, BOS, EOS, 3, 4}; PAD / BOS impossible."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_sources, 5, 5, generator=generator) * 1.5
    logits[..., PAD] = float("-inf")
    logits[..., BOS] = float("-inf")
    return torch.log_softmax(logits, dim=-1)


def exhaustive_best(table, source_id, max_len, alpha):
    """Reference: score every sequence of at most ``max_len`` words followed by EOS; best by GNMT-normalised score."""
    best = None
    for length in range(max_len + 1):
        for words in itertools.product(WORDS, repeat=length):
            previous, log_prob = BOS, 0.0
            for token in (*words, EOS):
                log_prob += float(table[source_id, previous, token])
                previous = token
            score = log_prob / ((5 + length + 1) / 6) ** alpha
            if best is None or score > best[0]:
                best = (score, list(words), log_prob)
    return best


def markov_batch(source_ids, source_lengths):
    """Sources whose first id picks the Markov table; the rest is padding to ``source_lengths``."""
    width = max(source_lengths)
    source = torch.full((len(source_ids), width), 5)
    source[:, 0] = torch.tensor(source_ids)
    return source, torch.tensor(source_lengths)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.5])
def test_beam_search_wide_beam_is_exhaustive_on_a_markov_model(alpha):
    """With 2 words and at most 3 of them, 16 beams hold every live prefix: the result is the exhaustive optimum.

    Guaranteed for ``alpha <= 0`` (the stop rule is then exact); for ``alpha = 1`` the stop rule is a heuristic and
    this checks that it did not cut the search on these tables.
    """
    table = markov_table()
    source, lengths = markov_batch([0, 1, 2, 1], [2, 2, 2, 1])  # max_len = int(1.0 * length + 1): 3, 3, 3, 2
    result = beam_search(
        MarkovSeq2Seq(table),
        source,
        lengths,
        beam_size=16,
        bos_id=BOS,
        eos_id=EOS,
        length_penalty=alpha,
        max_len_a=1.0,
        max_len_b=1,
    )
    for row, (source_id, max_len) in enumerate([(0, 3), (1, 3), (2, 3), (1, 2)]):
        _, words, log_prob = exhaustive_best(table, source_id, max_len, alpha)
        assert result.tokens[row, : result.lengths[row]].tolist() == words
        assert (result.tokens[row, result.lengths[row] :] == PAD).all()
        assert math.isclose(float(result.log_prob[row]), log_prob, rel_tol=1e-6, abs_tol=1e-6)


def test_greedy_decode_matches_reference_and_forces_eos():
    """Greedy follows the argmax chain; a sentence reaching ``max_len`` words gets EOS with its true log-prob."""
    logits = torch.full((2, 5, 5), -10.0)
    logits[..., 3] = 0.0  # always prefer word 3 ...
    logits[1, 3, EOS] = 5.0  # ... except in table 1 after a 3, where EOS wins
    table = torch.log_softmax(logits, dim=-1)
    source, lengths = markov_batch([0, 1, 0], [3, 3, 2])  # max_len = int(1.5 * length + 0) = 4, 4, 3
    result = greedy_decode(MarkovSeq2Seq(table), source, lengths, bos_id=BOS, eos_id=EOS, max_len_a=1.5, max_len_b=0)
    assert result.tokens.tolist() == [[3, 3, 3, 3], [3, PAD, PAD, PAD], [3, 3, 3, PAD]]
    assert result.lengths.tolist() == [4, 1, 3]
    expected = [
        float(table[0, BOS, 3] + 3 * table[0, 3, 3] + table[0, 3, EOS]),
        float(table[1, BOS, 3] + table[1, 3, EOS]),
        float(table[0, BOS, 3] + 2 * table[0, 3, 3] + table[0, 3, EOS]),
    ]
    torch.testing.assert_close(result.log_prob, torch.tensor(expected))


def test_beam_search_finds_what_greedy_misses():
    """A hand-made case: greedy takes the likelier first word and ends worse; width 2 finds the better sentence."""
    logits = torch.full((1, 5, 5), -30.0)
    logits[0, BOS, 3], logits[0, BOS, 4] = math.log(0.6), math.log(0.4)
    logits[0, 3, 3], logits[0, 3, 4], logits[0, 3, EOS] = math.log(0.35), math.log(0.35), math.log(0.3)
    logits[0, 4, EOS] = math.log(0.9)
    logits[0, 4, 3] = logits[0, 4, 4] = math.log(0.05)
    table = torch.log_softmax(logits, dim=-1)
    model = MarkovSeq2Seq(table)
    source, lengths = markov_batch([0], [1])  # one word at most
    kwargs = {"bos_id": BOS, "eos_id": EOS, "max_len_a": 1.0, "max_len_b": 0}
    greedy = greedy_decode(model, source, lengths, **kwargs)
    beam = beam_search(model, source, lengths, beam_size=2, length_penalty=0.0, **kwargs)
    assert greedy.tokens.tolist() == [[3]] and beam.tokens.tolist() == [[4]]
    assert float(beam.log_prob) > float(greedy.log_prob)  # log 0.36 > log 0.18


def test_beam_search_keeps_searching_while_a_live_hypothesis_is_better():
    """Width 2: after step 1 two hypotheses have finished ("" p=.3, "4" p=.198) but "3 4" (p=.31) is still live.

    Stopping at ``beam_size`` finished hypotheses (fairseq's rule) would return "" (p=.3); the search must go on
    and return "3 4" (p=.31 * .99 = .307).
    """
    probs = torch.full((1, 5, 5), 1e-6)
    probs[0, BOS, EOS], probs[0, BOS, 3], probs[0, BOS, 4] = 0.3, 0.5, 0.2
    probs[0, 3, 4], probs[0, 3, EOS], probs[0, 3, 3] = 0.62, 0.3, 0.08
    probs[0, 4, EOS], probs[0, 4, 3], probs[0, 4, 4] = 0.99, 0.005, 0.005
    table = torch.log(probs / probs.sum(-1, keepdim=True))
    source, lengths = markov_batch([0], [3])
    result = beam_search(
        MarkovSeq2Seq(table),
        source,
        lengths,
        beam_size=2,
        bos_id=BOS,
        eos_id=EOS,
        length_penalty=0.0,
        max_len_a=1.0,
        max_len_b=0,
    )
    assert result.tokens.tolist() == [[3, 4]]
    expected = float(table[0, BOS, 3] + table[0, 3, 4] + table[0, 4, EOS])
    assert math.isclose(float(result.log_prob), expected, rel_tol=1e-6)


def test_length_penalty_factor_is_gnmt():
    lengths = torch.tensor([1, 3, 10])
    torch.testing.assert_close(length_penalty_factor(lengths, 0.6), ((5 + lengths.float()) / 6) ** 0.6)
    torch.testing.assert_close(length_penalty_factor(lengths, 0.0), torch.ones(3))


@pytest.fixture(scope="module")
def trained():
    """Per architecture: a model trained briefly on 64 toy pairs (not to convergence: its outputs stay uncertain)."""
    batch = collate(toy_pairs(64, seed=10))
    models = {}
    for name in ("transformer", "lstm"):
        model = build(name, seed=1)
        train(model, batch, steps=60, lr=3e-3, seed=1)
        models[name] = model
    return models


def unseen_batch():
    return collate(toy_pairs(24, seed=99))


@pytest.mark.parametrize("name", ["transformer", "lstm"])
def test_beam_search_width_one_equals_greedy(trained, name):
    batch = unseen_batch()
    model = trained[name]
    greedy = greedy_decode(model, batch.source, batch.source_lengths, bos_id=BOS, eos_id=EOS)
    beam = beam_search(model, batch.source, batch.source_lengths, beam_size=1, bos_id=BOS, eos_id=EOS)
    assert torch.equal(beam.tokens, greedy.tokens)
    assert torch.equal(beam.lengths, greedy.lengths)
    assert torch.equal(beam.log_prob, greedy.log_prob)


@pytest.mark.parametrize(("name", "beam_size"), [("transformer", 5), ("lstm", 5), ("transformer", 3)])
def test_beam_search_batched_equals_one_sentence_at_a_time(trained, name, beam_size):
    """Padding, other sentences finishing earlier, per-sentence max lengths: nothing leaks between sentences."""
    batch = unseen_batch()
    model = trained[name]
    kwargs = {
        "beam_size": beam_size,
        "bos_id": BOS,
        "eos_id": EOS,
        "length_penalty": 0.6,
        "max_len_a": 1.0,
        "max_len_b": 2,
    }
    together = beam_search(model, batch.source, batch.source_lengths, **kwargs)
    for row in range(batch.source.shape[0]):
        length = int(batch.source_lengths[row])
        alone = beam_search(model, batch.source[row : row + 1, :length], batch.source_lengths[row : row + 1], **kwargs)
        assert int(alone.lengths[0]) == int(together.lengths[row])
        assert alone.tokens[0].tolist() == together.tokens[row, : int(alone.lengths[0])].tolist()
        torch.testing.assert_close(alone.log_prob[0], together.log_prob[row], rtol=1e-5, atol=1e-5)
    assert (together.lengths <= (1.0 * batch.source_lengths + 2)).all()


def reference_beam_search(model, source, beam_size, max_len, alpha):
    """One sentence, written from the definition with Python lists; next-token log-probs from teacher-forced
    ``forward`` on the whole prefix (so neither ``decode_step`` nor ``reorder`` is involved)."""
    lengths = torch.tensor([source.shape[0]])

    def next_log_probs(prefix):
        logits = model(source[None], lengths, torch.tensor([[BOS, *prefix]]))
        return torch.log_softmax(logits[0, -1].float(), -1).tolist()

    live, best = [(0.0, [])], None  # (summed log-prob, tokens)
    for step in range(max_len + 1):
        candidates = []
        for score, prefix in live:
            log_probs = next_log_probs(prefix)
            for token, value in enumerate(log_probs):
                if step < max_len or token == EOS:
                    candidates.append((score + value, prefix + [token]))
        candidates.sort(key=lambda c: -c[0])
        candidates = candidates[: 2 * beam_size]
        factor = ((5 + step + 1) / 6) ** alpha
        for score, tokens in candidates[:beam_size]:
            if tokens[-1] == EOS and (best is None or score / factor > best[0]):
                best = (score / factor, score, tokens[:-1])
        live = [c for c in candidates if c[1][-1] != EOS][:beam_size]
        if step == max_len or (best is not None and best[0] >= max(c[0] for c in live) / factor):
            return best


@pytest.mark.parametrize(("name", "alpha"), [("transformer", 0.6), ("lstm", 0.0)])
def test_beam_search_equals_reference_implementation(trained, name, alpha):
    """Batched beam search == a per-sentence list-based beam search that rescores every prefix from scratch."""
    batch = collate(toy_pairs(6, seed=5))
    model = trained[name]
    result = beam_search(
        model,
        batch.source,
        batch.source_lengths,
        beam_size=3,
        bos_id=BOS,
        eos_id=EOS,
        length_penalty=alpha,
        max_len_a=1.0,
        max_len_b=1,
    )
    with torch.no_grad():
        for row in range(6):
            length = int(batch.source_lengths[row])
            _, log_prob, tokens = reference_beam_search(model, batch.source[row, :length], 3, length + 1, alpha)
            assert result.tokens[row, : result.lengths[row]].tolist() == tokens
            assert math.isclose(float(result.log_prob[row]), log_prob, rel_tol=1e-4, abs_tol=1e-4)


@pytest.mark.parametrize("name", ["transformer", "lstm"])
def test_beam_search_wider_beam_not_worse_than_greedy_here(trained, name):
    """Width 5 and 12 with ``length_penalty=0`` score at least greedy's model log-probability on these 24 inputs.

    What is guaranteed and what is not: beam search is not exact search. With length penalty 0 the best finished
    hypothesis maximises the log-probability among those it found, but the greedy hypothesis can fall out of a wider
    beam (its prefix ranked below ``beam_size`` others that later end badly), so a wider beam *can* return a lower
    log-probability than greedy. This is therefore an empirical check on one fixed, seeded, briefly trained model
    and fixed inputs (not rigged: the inputs are unseen random pairs), not a property of beam search; a failure
    here most likely means a bookkeeping bug, but could be such a search error. The guaranteed cases are tested
    above: width 1 == greedy exactly, and a beam wide enough to hold every prefix returns the exact optimum.
    """
    batch = unseen_batch()
    model = trained[name]
    greedy = greedy_decode(model, batch.source, batch.source_lengths, bos_id=BOS, eos_id=EOS)
    for width in (5, 12):
        beam = beam_search(
            model, batch.source, batch.source_lengths, beam_size=width, bos_id=BOS, eos_id=EOS, length_penalty=0.0
        )
        assert (beam.log_prob >= greedy.log_prob - 1e-5).all()
    assert (beam.log_prob > greedy.log_prob + 1e-3).any(), "the check is vacuous if the beam never finds better"


def test_beam_search_log_prob_is_the_model_score_of_its_tokens(trained):
    """``log_prob`` equals the teacher-forced log-probability of ``tokens + EOS``, independently recomputed."""
    batch = unseen_batch()
    model = trained["transformer"]
    result = beam_search(model, batch.source, batch.source_lengths, beam_size=4, bos_id=BOS, eos_id=EOS)
    pairs = [
        (batch.source[r, : batch.source_lengths[r] - 1].tolist(), result.tokens[r, : result.lengths[r]].tolist())
        for r in range(len(result.lengths))
    ]
    rescored = collate(pairs)
    with torch.no_grad():
        log_probs = torch.log_softmax(model(rescored.source, rescored.source_lengths, rescored.target_input), -1)
    mask = rescored.target != -100
    picked = log_probs.gather(-1, rescored.target.clamp(min=0)[..., None])[..., 0]
    torch.testing.assert_close((picked * mask).sum(1), result.log_prob, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"beam_size": 0}, "beam_size"),
        ({"beam_size": 2, "length_penalty": float("nan")}, "length_penalty"),
        ({"beam_size": 2, "max_len_a": -0.5}, "max_len_a"),
        ({"beam_size": 2, "eos_id": -1}, "eos_id"),
    ],
)
def test_beam_search_argument_errors(kwargs, match):
    model = MarkovSeq2Seq(markov_table())
    source, lengths = markov_batch([0], [2])
    with pytest.raises(ValueError, match=match):
        beam_search(model, source, lengths, **{"bos_id": BOS, "eos_id": EOS, **kwargs})


@pytest.mark.parametrize("name", ["transformer", "lstm"])
def test_decoding_an_empty_batch(name):
    model = build(name)
    empty = torch.zeros(0, 3, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    for result in (
        greedy_decode(model, *empty, bos_id=BOS, eos_id=EOS),
        beam_search(model, *empty, beam_size=3, bos_id=BOS, eos_id=EOS),
    ):
        assert result.tokens.shape == (0, 0) and result.lengths.shape == (0,) and result.log_prob.shape == (0,)


def test_greedy_decode_shape_errors():
    model = MarkovSeq2Seq(markov_table())
    with pytest.raises(ValueError, match="source_lengths"):
        greedy_decode(model, torch.zeros(2, 3, dtype=torch.long), torch.tensor([3]), bos_id=BOS, eos_id=EOS)


def test_tiny_configurations_cover_both_architectures():
    assert {cls.__name__ for cls, _ in TINY.values()} == {"TransformerSeq2Seq", "AttentionLSTMSeq2Seq"}
