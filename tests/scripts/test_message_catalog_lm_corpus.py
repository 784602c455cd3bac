import random

import pytest

from tests.helpers.scripts import load_script

lm_corpus = load_script("message_catalog_lm_corpus")


@pytest.mark.parametrize(
    ("line", "tokens"),
    [
        ("Can't open file '%s': No such file.", "can't open file ' % s ' : no such file ."),
        ("  Save   As…  ", "save as …"),
        ("Größe: 3,5 MB", "größe : 3 , 5 mb"),
        ("!!!", "! ! !"),
        ("   ", ""),
    ],
)
def test_tokenize_lowercases_and_separates_words_and_punctuation(line, tokens):
    assert lm_corpus.tokenize(line) == tokens


def test_write_lm_corpus_tokenizes_one_side_drops_empty_lines_and_subsets_training(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    train = [f"Line {i}." for i in range(30)] + ["  "]
    (corpus / "train.en").write_text("\n".join(train) + "\n")
    (corpus / "valid.en").write_text("Open File\n\nQuit!\n")
    (corpus / "test.en").write_text("About\n")
    (corpus / "train.de").write_text("nicht gelesen\n")
    lm_corpus.main([str(corpus), str(tmp_path / "lm"), "--train-lines", "4", "--seed", "1"])
    kept = sorted(random.Random(1).sample(range(30), 4))  # the 30 non-empty training lines, in corpus order
    assert (tmp_path / "lm" / "train.txt").read_text().splitlines() == [f"line {i} ." for i in kept]
    assert (tmp_path / "lm" / "valid.txt").read_text() == "open file\nquit !\n"
    assert (tmp_path / "lm" / "test.txt").read_text() == "about\n"


def test_write_lm_corpus_refuses_more_training_lines_than_there_are(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split in ("train", "valid", "test"):
        (corpus / f"{split}.en").write_text("a\nb\n")
    with pytest.raises(ValueError, match=r"--train-lines: expected 1\.\.2 .* got 3"):
        lm_corpus.write_lm_corpus(corpus, tmp_path / "lm", train_lines=3)
