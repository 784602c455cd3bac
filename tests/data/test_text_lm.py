import pytest
import torch

from lightning_skd.data.text_lm import IGNORE_INDEX, LMBatch, TextLMDataModule, read_sentences
from lightning_skd.data.vocabulary import Vocabulary

TRAIN = "the cat sat\nthe dog sat on the mat\n\n  \na <unk> cat\n"
VALID = "the cat ran\n"
TEST = "a dog sat\nthe bird\n"


def write_corpus(folder, names=("train.txt", "valid.txt", "test.txt")):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in zip(names, (TRAIN, VALID, TEST), strict=True):
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_text_lm_read_sentences_skips_blank_lines(tmp_path):
    write_corpus(tmp_path)
    assert read_sentences(tmp_path / "train.txt") == [
        ["the", "cat", "sat"],
        ["the", "dog", "sat", "on", "the", "mat"],
        ["a", "<unk>", "cat"],
    ]


def test_text_lm_vocabulary_is_built_from_train_by_frequency(tmp_path):
    dm = TextLMDataModule(data_dir=str(write_corpus(tmp_path)))
    dm.setup("fit")
    vocab = dm.vocab
    assert vocab.tokens[:2] == ["<eos>", "<unk>"]
    assert vocab.tokens[2:5] == ["the", "cat", "sat"]  # counts 3, 2, 2 (ties alphabetical)
    assert dm.vocab_size == len(vocab) == 2 + 7
    assert "ran" not in vocab  # only the training file makes the vocabulary


def test_text_lm_batches_are_padded_with_ignore_index(tmp_path):
    dm = TextLMDataModule(data_dir=str(write_corpus(tmp_path)), batch_size=3, shuffle=False)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, LMBatch)
    inputs, targets, lengths, index = batch
    assert index.tolist() == [0, 1, 2]  # positions in the training file
    vocab = dm.vocab
    assert inputs.shape == targets.shape == (3, 7)
    assert lengths.tolist() == [4, 7, 4]
    assert inputs[:, 0].tolist() == [vocab.eos_id] * 3  # sentences start with <eos>
    assert vocab.decode(targets[0, :4].tolist()) == ["the", "cat", "sat", "<eos>"]
    assert targets[0, 4:].tolist() == [IGNORE_INDEX] * 3
    assert torch.equal(inputs[1, 1:], targets[1, :-1])  # inputs are the targets shifted right
    val = next(iter(dm.val_dataloader()))
    assert vocab.decode(val.targets[0].tolist()) == ["the", "cat", "<unk>", "<eos>"]  # "ran" is unknown


def test_text_lm_max_vocab_size_and_min_freq_map_rare_words_to_unk(tmp_path):
    folder = write_corpus(tmp_path)
    small = TextLMDataModule(data_dir=str(folder), max_vocab_size=4)
    small.setup("fit")
    assert small.vocab.tokens == ["<eos>", "<unk>", "the", "cat"]
    frequent = TextLMDataModule(data_dir=str(folder), min_freq=2)
    frequent.setup("fit")
    assert frequent.vocab.tokens == ["<eos>", "<unk>", "the", "cat", "sat"]


def test_text_lm_vocabulary_round_trip(tmp_path):
    vocab = Vocabulary.build([["b", "a", "b"], ["c"]])
    vocab.save(tmp_path / "sub" / "vocab.txt")
    assert Vocabulary.load(tmp_path / "sub" / "vocab.txt") == vocab
    assert (tmp_path / "sub" / "vocab.txt").read_text().splitlines() == ["<eos>", "<unk>", "b", "a", "c"]


def test_text_lm_vocab_file_is_written_then_reused(tmp_path):
    folder = write_corpus(tmp_path / "data")
    vocab_file = tmp_path / "vocab.txt"
    first = TextLMDataModule(data_dir=str(folder), vocab_file=str(vocab_file), max_vocab_size=5)
    first.setup("fit")
    assert vocab_file.is_file()
    second = TextLMDataModule(data_dir=str(folder), vocab_file=str(vocab_file))  # no max size: still loads the file
    second.setup("test")
    assert second.vocab == first.vocab and len(second.vocab) == 5


def test_text_lm_custom_file_names(tmp_path):
    names = ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt")
    dm = TextLMDataModule(
        data_dir=str(write_corpus(tmp_path, names)), train_file=names[0], val_file=names[1], test_file=names[2]
    )
    dm.setup("test")
    assert len(dm.datasets["test"]) == 2


def test_text_lm_missing_files_raise_a_clear_error(tmp_path):
    dm = TextLMDataModule(
        data_dir=str(tmp_path / "ptb"),
        train_file="ptb.train.txt",
        val_file="ptb.valid.txt",
        test_file="ptb.test.txt",
    )
    with pytest.raises(FileNotFoundError, match=r"ptb\.train\.txt.*ptb\.valid\.txt") as info:
        dm.setup("fit")
    message = str(info.value)
    assert "simple-examples.tgz" in message and "wikitext-2" in message and "one sentence per line" in message


def test_text_lm_vocabulary_rejects_bad_tokens():
    with pytest.raises(ValueError, match="duplicate token 'a' at indices 2 and 3"):
        Vocabulary(["<eos>", "<unk>", "a", "a"])
    with pytest.raises(ValueError, match="`unk_token` '<unk>' must be one of the tokens"):
        Vocabulary(["<eos>", "a"])
    with pytest.raises(ValueError, match="without whitespace, got 'a b'"):
        Vocabulary(["<eos>", "<unk>", "a b"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "`batch_size` must be an integer >= 1, got 0"),
        ({"eval_batch_size": -2}, "`eval_batch_size` must be an integer >= 1, got -2"),
        ({"num_workers": -1}, "`num_workers` must be an integer >= 0, got -1"),
        ({"max_vocab_size": 1}, "`max_vocab_size` must be an integer >= 2 or None, got 1"),
        ({"min_freq": 0}, "`min_freq` must be an integer >= 1, got 0"),
        ({"unk_token": "<eos>"}, "`eos_token` and `unk_token` must differ"),
    ],
)
def test_text_lm_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TextLMDataModule(**kwargs)
