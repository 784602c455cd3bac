import random

import pytest

from tests.helpers.scripts import load_script

subset = load_script("subset_parallel_corpus")


def write_corpus(folder, pairs):
    folder.mkdir()
    for split, count in pairs.items():
        (folder / f"{split}.en").write_text("".join(f"{split} en {i}\n" for i in range(count)))
        (folder / f"{split}.de").write_text("".join(f"{split} de {i}\n" for i in range(count)))


def lines(path):
    return path.read_text().splitlines()


def test_subset_keeps_aligned_seeded_pairs_in_corpus_order_and_copies_test(tmp_path):
    write_corpus(tmp_path / "corpus", {"train": 50, "valid": 20, "test": 7})
    subset.main([str(tmp_path / "corpus"), str(tmp_path / "out"), "--pairs", "10", "--seed", "3"])
    expected = sorted(random.Random(3).sample(range(50), 10))  # the definition: a seeded sample, in corpus order
    assert lines(tmp_path / "out" / "train.en") == [f"train en {i}" for i in expected]
    assert lines(tmp_path / "out" / "train.de") == [f"train de {i}" for i in expected]
    for split, count in (("valid", 20), ("test", 7)):
        assert lines(tmp_path / "out" / f"{split}.de") == [f"{split} de {i}" for i in range(count)]


def test_subset_valid_pairs_samples_the_validation_split_aligned(tmp_path):
    write_corpus(tmp_path / "corpus", {"train": 50, "valid": 20, "test": 7})
    subset.main([str(tmp_path / "corpus"), str(tmp_path / "out"), "--pairs", "10", "--valid-pairs", "5"])
    expected = sorted(random.Random(0).sample(range(20), 5))
    assert lines(tmp_path / "out" / "valid.en") == [f"valid en {i}" for i in expected]
    assert lines(tmp_path / "out" / "valid.de") == [f"valid de {i}" for i in expected]
    assert len(lines(tmp_path / "out" / "test.en")) == 7


@pytest.mark.parametrize(("option", "value", "split"), [("--pairs", "51", "train"), ("--valid-pairs", "0", "valid")])
def test_subset_refuses_more_pairs_than_the_split_has(tmp_path, option, value, split):
    write_corpus(tmp_path / "corpus", {"train": 50, "valid": 20, "test": 7})
    args = [str(tmp_path / "corpus"), str(tmp_path / "out"), "--pairs", "10", option, value]
    with pytest.raises(ValueError, match=f"cannot take {value} of .* {split} pairs"):
        subset.main(args)
