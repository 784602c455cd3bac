import random

import pytest
import sacrebleu
import torch

from lightning_skd.functional.bleu import bleu_from_statistics, bleu_statistics

WORDS = ["the", "cat", "dog", "sat", "on", "a", "mat", "runs", "fast", ".", "Hello", ",", "world", "!", "it's"]


def random_corpus(n, seed):
    rng = random.Random(seed)
    refs = [" ".join(rng.choices(WORDS, k=rng.randint(1, 12))) for _ in range(n)]
    # hypotheses: perturbed references (some words swapped, dropped or added), a few empty ones
    hyps = []
    for ref in refs:
        words = [w if rng.random() > 0.3 else rng.choice(WORDS) for w in ref.split()]
        if rng.random() < 0.2:
            words = words[: rng.randint(0, len(words))]
        hyps.append(" ".join(words))
    return hyps, refs


@pytest.mark.parametrize("tokenize", ["13a", "intl", "char"])
@pytest.mark.parametrize("smooth_method", ["exp", "none", "floor", "add-k"])
def test_bleu_statistics_summed_over_batches_equal_sacrebleu_corpus_bleu(tokenize, smooth_method):
    hyps, refs = random_corpus(57, seed=0)
    cuts = [0, 1, 9, 30, 30, 57]  # uneven batches, one empty
    stats = sum(bleu_statistics(hyps[a:b], refs[a:b], tokenize=tokenize) for a, b in zip(cuts, cuts[1:], strict=False))
    expected = sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize, smooth_method=smooth_method).score
    value = bleu_from_statistics(stats, smooth_method=smooth_method)
    assert value == expected  # exact: the statistics are integer sums
    assert 0 < value < 100


def test_bleu_statistics_of_a_perfect_corpus_give_100():
    refs = ["a b c d e", "f g h i"]
    assert bleu_from_statistics(bleu_statistics(refs, refs)) == pytest.approx(100.0)


def test_bleu_from_empty_statistics_is_zero():
    assert bleu_from_statistics(bleu_statistics([], [])) == 0.0


def test_bleu_statistics_refuse_bad_input():
    with pytest.raises(ValueError, match="as many `references` as `hypotheses`"):
        bleu_statistics(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="`hypotheses` to be a sequence of strings"):
        bleu_statistics("a b", "a b")
    with pytest.raises(ValueError, match="2 \\* max_ngram_order \\+ 2 = 10 entries"):
        bleu_from_statistics(torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match="`max_ngram_order` to be an int >= 1"):
        bleu_from_statistics(torch.zeros(10, dtype=torch.long), max_ngram_order=0)
