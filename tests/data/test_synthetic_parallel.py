from collections import Counter

import pytest

from lightning_skd.data.synthetic_parallel import (
    _ADJECTIVES,
    _INTRANSITIVE,
    _NOUNS,
    _VERBS,
    TOY_DICTIONARY,
    write_synthetic_parallel_corpus,
)


def test_write_synthetic_parallel_corpus_is_deterministic(tmp_path):
    first = write_synthetic_parallel_corpus(tmp_path / "a", 50, 10, 10, seed=1)
    second = write_synthetic_parallel_corpus(tmp_path / "b", 50, 10, 10, seed=1)
    other = write_synthetic_parallel_corpus(tmp_path / "c", 50, 10, 10, seed=2)
    for split in ("train", "val", "test"):
        for side in (0, 1):
            assert first[split][side].read_bytes() == second[split][side].read_bytes()
    assert first["train"][0].read_bytes() != other["train"][0].read_bytes()
    assert [p.name for p in first["val"]] == ["valid.src", "valid.tgt"]


def test_synthetic_pairs_follow_the_dictionary_and_reordering_rules(tmp_path):
    files = write_synthetic_parallel_corpus(tmp_path, 500, 5, 5, seed=0, source_lang="en", target_lang="de")
    sources = files["train"][0].read_text().splitlines()
    targets = files["train"][1].read_text().splitlines()
    assert len(sources) == len(targets) == 500
    vocabulary = set()
    for source, target in zip(sources, targets, strict=True):
        src, tgt = source.split(), target.split()
        assert 3 <= len(src) <= 10 and len(src) == len(tgt)
        assert Counter(TOY_DICTIONARY[w] for w in src) == Counter(tgt)  # word-by-word translation
        verb = next(w for w in src if w in _VERBS or w in _INTRANSITIVE)
        assert tgt[-1] == TOY_DICTIONARY[verb]  # verb-final
        for first, second in zip(src, src[1:], strict=False):
            if first in _ADJECTIVES and second in _NOUNS:  # adjective after its noun
                assert f"{_NOUNS[second]} {_ADJECTIVES[first]}" in target
        vocabulary.update(src)
    assert 30 <= len(vocabulary) <= 60


def test_write_synthetic_parallel_corpus_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_train"):
        write_synthetic_parallel_corpus(tmp_path, 0, 1, 1)
    with pytest.raises(ValueError, match="must differ"):
        write_synthetic_parallel_corpus(tmp_path, 1, 1, 1, source_lang="x", target_lang="x")
