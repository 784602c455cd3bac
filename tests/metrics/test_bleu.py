import pytest
import sacrebleu

from lightning_skd.metrics.bleu import CorpusBLEU
from tests.functional.test_bleu import random_corpus


def test_corpus_bleu_batch_updates_equal_whole_corpus_sacrebleu():
    hyps, refs = random_corpus(101, seed=1)
    metric = CorpusBLEU()
    for start in range(0, 101, 8):
        metric.update(hyps[start : start + 8], refs[start : start + 8])
    assert float(metric.compute()) == sacrebleu.corpus_bleu(hyps, [refs]).score


def test_corpus_bleu_merged_states_equal_whole_corpus():
    # what the sum reduction does under DDP: two "ranks" with uneven shares, their states added
    hyps, refs = random_corpus(40, seed=2)
    rank0, rank1 = CorpusBLEU(lowercase=True), CorpusBLEU(lowercase=True)
    rank0.update(hyps[:31], refs[:31])
    rank1.update(hyps[31:], refs[31:])
    rank0.statistics += rank1.statistics
    assert float(rank0.compute()) == sacrebleu.corpus_bleu(hyps, [refs], lowercase=True).score


def test_corpus_bleu_signature_and_reset():
    metric = CorpusBLEU(tokenize="intl")
    assert metric.signature.startswith("nrefs:1|case:mixed|eff:no|tok:intl|smooth:exp|version:")
    metric.update(["a b c d"], ["a b c d"])
    assert float(metric.compute()) == pytest.approx(100.0)
    metric.reset()
    assert metric.statistics.sum() == 0


def test_corpus_bleu_refuses_bad_configuration():
    with pytest.raises(ValueError, match="CorpusBLEU: invalid sacreBLEU configuration"):
        CorpusBLEU(tokenize="no-such-tokenizer")
    with pytest.raises(ValueError, match="max_ngram_order"):
        CorpusBLEU(max_ngram_order=0)
