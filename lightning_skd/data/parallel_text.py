"""``ParallelTextDataModule``: translation batches from plain-text parallel files, BPE subwords, token-bounded batches.

Layout (the one IWSLT15, Multi30k or WMT15 text has after extraction): ``data_dir/<prefix>.<lang>`` for the prefixes
``train`` / ``valid`` / ``test`` (configurable) and the two languages, one sentence per line, line ``i`` of the
source file translated by line ``i`` of the target file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from typing_extensions import override

from lightning_skd._constants import IGNORE_INDEX
from lightning_skd._lightning import LightningDataModule, rank_zero_info, warn_if_mixed
from lightning_skd.data.subword import BOS_ID, EOS_ID, PAD_ID, UNK_ID, SubwordTokenizer
from lightning_skd.data.token_batching import TokenBatchSampler

__all__ = [
    "IGNORE_INDEX",
    "ParallelTextDataModule",
    "ParallelTextDataset",
    "TranslationInput",
    "collate_translation",
    "read_parallel_files",
]

Overlong = Literal["filter", "truncate", "error", "keep"]

_WHERE_TO_GET = (
    "Expected plain-text parallel files <prefix>.<lang>, one sentence per line, line i of the source file translated "
    "by line i of the target file, e.g. data/iwslt15_en_de/{train,valid,test}.{en,de}. "
    "IWSLT15 En-De: the en-de.tgz of the IWSLT 2015 evaluation campaign (WIT3, texts/en/de): train.tags.en-de.{en,de} "
    "without the XML meta lines -> train.*, the dev2010 XML segments -> valid.*, tst2012 / tst2013 -> test.* "
    "(the iwslt2017 data set on the Hugging Face Hub is a later, different release). Multi30k De-En: "
    "data/task1/raw/{train,val,test_2016_flickr}.{de,en}.gz of the multi30k/dataset repository, gunzipped, "
    "val -> valid, test_2016_flickr -> test. WMT15: the europarl / news-commentary / common-crawl training text "
    "and newstest2014 (valid) / newstest2015 (test) of the WMT15 translation task (`sacrebleu -t wmt15 -l en-de "
    "--echo src` / `ref` prints the test set). A small real corpus that can be built on a machine with only "
    "Debian's packages: scripts/prepare_message_catalog_corpus.py."
)


class TranslationInput(NamedTuple):
    """The model inputs of a translation batch (right-padded with ``pad_id = 0``).

    Attributes:
        source: ``(B, S)`` int64 source ids ``x_1 .. x_n EOS``.
        source_lengths: ``(B,)`` int64 real source positions (EOS included).
        target_input: ``(B, T)`` int64 decoder input ``BOS y_1 .. y_m``.

    """

    source: Tensor
    source_lengths: Tensor
    target_input: Tensor


def read_parallel_files(source_path: Path, target_path: Path) -> tuple[list[str], list[str]]:
    """Read two parallel files (lines stripped of surrounding whitespace), checking they exist, are not empty and agree.

    Raises:
        FileNotFoundError: Naming the missing file(s) and where to get the corpora.
        ValueError: If a file is empty or the line counts differ (naming both files and their counts).

    """
    missing = [str(p) for p in (source_path, target_path) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"ParallelTextDataModule: missing parallel text file(s) {missing}. {_WHERE_TO_GET}")
    sides = []
    for path in (source_path, target_path):
        with open(path, encoding="utf-8") as handle:
            lines = [line.strip() for line in handle]
        if not any(lines):
            raise ValueError(f"ParallelTextDataModule: {str(path)!r} is empty (no non-blank line). {_WHERE_TO_GET}")
        sides.append(lines)
    if len(sides[0]) != len(sides[1]):
        raise ValueError(
            f"ParallelTextDataModule: {str(source_path)!r} has {len(sides[0])} lines but {str(target_path)!r} has "
            f"{len(sides[1])}; line i of one must translate line i of the other"
        )
    return sides[0], sides[1]


def _flat(sequences: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """One flat int64 tensor of ``sequences`` and its ``(N + 1,)`` offsets."""
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((t for s in sequences for t in s), dtype=np.int64, count=int(offsets[-1]))
    return torch.from_numpy(flat), torch.from_numpy(offsets)


class ParallelTextDataset:
    """Encoded pairs stored flat; item ``i`` is ``(source ids, target ids, i)`` without special tokens.

    Args:
        source_ids: Subword ids of every source sentence (no EOS).
        target_ids: Subword ids of every target sentence (no BOS / EOS).
        target_text: The raw target lines (BLEU references), same order.
        line_numbers: 0-based line of each pair in its files (differs from the index after filtering).

    """

    def __init__(
        self,
        source_ids: Sequence[Sequence[int]],
        target_ids: Sequence[Sequence[int]],
        target_text: Sequence[str],
        line_numbers: Sequence[int],
    ) -> None:
        self.source, self.source_offsets = _flat(source_ids)
        self.target, self.target_offsets = _flat(target_ids)
        self.target_text = list(target_text)
        self.line_numbers = torch.as_tensor(list(line_numbers), dtype=torch.long)
        self.source_lengths = self.source_offsets.diff() + 1  # (N,) with EOS
        self.target_lengths = self.target_offsets.diff() + 1  # (N,) with EOS

    def __len__(self) -> int:
        return len(self.target_text)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int]:
        source = self.source[self.source_offsets[index] : self.source_offsets[index + 1]]
        target = self.target[self.target_offsets[index] : self.target_offsets[index + 1]]
        return source, target, index


def collate_translation(
    items: Sequence[tuple[Tensor, Tensor, int]], ignore_index: int = IGNORE_INDEX
) -> dict[str, TranslationInput | Tensor]:
    """Build the batch dict ``{"input": TranslationInput, "target": (B, T), "index": (B,)}`` from raw id pairs.

    Example:
        >>> pairs = [(torch.tensor([7, 8]), torch.tensor([9]), 4), (torch.tensor([5]), torch.tensor([6, 7]), 0)]
        >>> batch = collate_translation(pairs)
        >>> batch["input"].source
        tensor([[7, 8, 2],
                [5, 2, 0]])
        >>> batch["input"].source_lengths, batch["index"]
        (tensor([3, 2]), tensor([4, 0]))
        >>> batch["input"].target_input
        tensor([[1, 9, 0],
                [1, 6, 7]])
        >>> batch["target"]
        tensor([[   9,    2, -100],
                [   6,    7,    2]])

    """
    size = len(items)
    source_lengths = torch.tensor([len(s) + 1 for s, _, _ in items], dtype=torch.long)  # (B,)
    target_lengths = [len(t) + 1 for _, t, _ in items]
    source = torch.full((size, int(source_lengths.max())), PAD_ID, dtype=torch.long)  # (B, S)
    target_input = torch.full((size, max(target_lengths)), PAD_ID, dtype=torch.long)  # (B, T)
    target = torch.full((size, max(target_lengths)), ignore_index, dtype=torch.long)  # (B, T)
    for row, (src, tgt, _) in enumerate(items):
        source[row, : len(src)] = src
        source[row, len(src)] = EOS_ID
        target_input[row, 0] = BOS_ID
        target_input[row, 1 : len(tgt) + 1] = tgt
        target[row, : len(tgt)] = tgt
        target[row, len(tgt)] = EOS_ID
    index = torch.tensor([i for _, _, i in items], dtype=torch.long)  # (B,)
    return {"input": TranslationInput(source, source_lengths, target_input), "target": target, "index": index}


class _Batches:
    """Map-style view: the item of a list of indices is that list of pairs (the loader has ``batch_size=None``)."""

    def __init__(self, dataset: ParallelTextDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: list[int]) -> list[tuple[Tensor, Tensor, int]]:
        return [self.dataset[i] for i in indices]


class ParallelTextDataModule(LightningDataModule):
    """Translation data from plain-text parallel files, with a BPE subword model and token-bounded batches.

    **Files**: ``data_dir/{train_prefix,val_prefix,test_prefix}.{source_lang,target_lang}``. A missing or empty file
    or two files of one split with different line counts is an error naming the files.

    **Subwords**: a BPE model (Hugging Face ``tokenizers``, sentencepiece-style whitespace handling, no
    normalisation, see :mod:`lightning_skd.data.subword`) trained on the training files: one joint model on both
    sides (``joint_vocabulary=True``) or one per language, with at most ``vocab_size`` ids each (special tokens
    included; the ids are ``pad`` 0, ``bos`` 1, ``eos`` 2, ``unk`` 3 on both sides). It is saved in ``tokenizer_dir``
    (default ``data_dir``) as ``bpe<vocab_size>.<src>-<tgt>.joint.json`` or ``bpe<vocab_size>.<lang>.json`` with a
    fingerprint (SHA-256 of the training files and the settings) and reused when both match; a saved tokenizer built
    from other files or settings is an error naming it.

    **Batches**: dicts ``{"input": TranslationInput, "target": (B, T), "index": (B,)}`` (see
    :func:`collate_translation`; ``target`` is ``y_1 .. y_m EOS`` padded with :data:`IGNORE_INDEX`, ``index`` the
    pair's position in its split) of at most ``max_tokens`` padded tokens of the longer side (see
    :class:`~lightning_skd.data.token_batching.TokenBatchSampler`): length-bucketed and shuffled per epoch for training
    (seeded, the same number of batches on every DDP rank, every pair once per epoch), sorted by length for
    validation / test / predict (every pair once across ranks). The rank and world size are read from the trainer.

    **Over-long pairs**: with ``max_source_tokens`` / ``max_target_tokens`` (row lengths, EOS included) a longer
    training pair is dropped (``overlong="filter"``), cut to the limit keeping its EOS (``"truncate"``), or stops
    the run with an error naming the file and line (``"error"``). ``eval_overlong`` does the same for validation and
    test (default ``"keep"``: every pair is evaluated, and BLEU is computed against all references). Indices count
    the pairs that remain; :meth:`references` follows the same filtering.

    Args:
        data_dir: Folder holding the files.
        source_lang: Source language suffix (e.g. ``"en"``).
        target_lang: Target language suffix (e.g. ``"de"``).
        train_prefix: File stem of the training split.
        val_prefix: File stem of the validation split.
        test_prefix: File stem of the test split.
        vocab_size: Largest number of subword ids per tokenizer (special tokens included).
        joint_vocabulary: One tokenizer for both languages (needed for shared embeddings).
        min_frequency: Least count of a pair of pieces to be merged by BPE.
        tokenizer_dir: Folder of the saved tokenizers (default: ``data_dir``).
        max_tokens: Token budget of a training batch.
        eval_max_tokens: Token budget of an evaluation batch (default: ``max_tokens``).
        max_sentences: Optional limit on the pairs in a batch.
        max_source_tokens: Longest source row (EOS included) of a training pair, ``None``: no limit.
        max_target_tokens: Longest target row (EOS included) of a training pair, ``None``: no limit.
        overlong: What to do with a training pair over those limits.
        eval_overlong: What to do with a validation / test pair over those limits.
        predict_split: Split that ``predict`` runs on (``"test"``, ``"val"`` or ``"train"``).
        shuffle: Whether to shuffle the training batches (off: sorted by length, same every epoch).
        seed: Seed of the training shuffle (the epoch is added every epoch).
        num_workers: ``DataLoader`` worker processes.

    Raises:
        ValueError: On a bad argument (in ``__init__``), a bad file (in ``setup``).
        FileNotFoundError: In ``setup``, naming the missing files and where to get the corpora.

    """

    def __init__(
        self,
        data_dir: str = "data/iwslt15_en_de",
        source_lang: str = "en",
        target_lang: str = "de",
        train_prefix: str = "train",
        val_prefix: str = "valid",
        test_prefix: str = "test",
        vocab_size: int = 10000,
        joint_vocabulary: bool = True,
        min_frequency: int = 2,
        tokenizer_dir: str | None = None,
        max_tokens: int = 4096,
        eval_max_tokens: int | None = None,
        max_sentences: int | None = None,
        max_source_tokens: int | None = None,
        max_target_tokens: int | None = None,
        overlong: Overlong = "filter",
        eval_overlong: Overlong = "keep",
        predict_split: Literal["train", "val", "test"] = "test",
        shuffle: bool = True,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        warn_if_mixed(type(self).__name__)
        owner = "ParallelTextDataModule"
        for name, value in (("source_lang", source_lang), ("target_lang", target_lang)):
            if not isinstance(value, str) or not value or "/" in value:
                raise ValueError(f"{owner}: `{name}` must be a non-empty file suffix such as 'en', got {value!r}")
        if source_lang == target_lang:
            raise ValueError(f"{owner}: `source_lang` and `target_lang` must differ, got {source_lang!r} for both")
        for name, value, least in (
            ("vocab_size", vocab_size, 5),
            ("min_frequency", min_frequency, 1),
            ("max_tokens", max_tokens, 1),
            ("eval_max_tokens", eval_max_tokens, 1),
            ("max_sentences", max_sentences, 1),
            ("max_source_tokens", max_source_tokens, 2),
            ("max_target_tokens", max_target_tokens, 2),
            ("num_workers", num_workers, 0),
        ):
            optional = name in ("eval_max_tokens", "max_sentences", "max_source_tokens", "max_target_tokens")
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(
                    f"{owner}: `{name}` must be an integer >= {least}{' or None' if optional else ''}, got {value!r}"
                )
        for name, value, allowed in (
            ("overlong", overlong, ("filter", "truncate", "error", "keep")),
            ("eval_overlong", eval_overlong, ("filter", "truncate", "error", "keep")),
            ("predict_split", predict_split, ("train", "val", "test")),
        ):
            if value not in allowed:
                raise ValueError(f"{owner}: `{name}` must be one of {allowed}, got {value!r}")
        self.save_hyperparameters()
        self.data_dir = Path(data_dir)
        self.source_lang = source_lang
        self.target_lang = target_lang
        self.prefixes = {"train": train_prefix, "val": val_prefix, "test": test_prefix}
        self.vocab_size = vocab_size
        self.joint_vocabulary = joint_vocabulary
        self.min_frequency = min_frequency
        self.tokenizer_dir = Path(tokenizer_dir) if tokenizer_dir is not None else self.data_dir
        self.max_tokens = max_tokens
        self.eval_max_tokens = eval_max_tokens or max_tokens
        self.max_sentences = max_sentences
        self.max_source_tokens = max_source_tokens
        self.max_target_tokens = max_target_tokens
        self.overlong = overlong
        self.eval_overlong = eval_overlong
        self.predict_split = predict_split
        self.shuffle = shuffle
        self.seed = seed
        self.num_workers = num_workers
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = PAD_ID, BOS_ID, EOS_ID, UNK_ID
        self.source_tokenizer: SubwordTokenizer | None = None
        self.target_tokenizer: SubwordTokenizer | None = None
        self.datasets: dict[str, ParallelTextDataset] = {}

    # ---- files and tokenizers -------------------------------------------------------------------------------------

    def path(self, split: str, lang: str) -> Path:
        """Path of the file of ``split`` (``"train"``, ``"val"``, ``"test"``) in language ``lang``."""
        return self.data_dir / f"{self.prefixes[split]}.{lang}"

    def tokenizer_paths(self) -> tuple[Path, Path]:
        """Files of the source and the target tokenizer (the same file for a joint vocabulary)."""
        if self.joint_vocabulary:
            joint = self.tokenizer_dir / f"bpe{self.vocab_size}.{self.source_lang}-{self.target_lang}.joint.json"
            return joint, joint
        return (
            self.tokenizer_dir / f"bpe{self.vocab_size}.{self.source_lang}.json",
            self.tokenizer_dir / f"bpe{self.vocab_size}.{self.target_lang}.json",
        )

    def build_tokenizers(self) -> tuple[SubwordTokenizer, SubwordTokenizer]:
        """Load the tokenizers from ``tokenizer_dir`` if they fit the training files, else train and save them."""
        if self.source_tokenizer is not None and self.target_tokenizer is not None:
            return self.source_tokenizer, self.target_tokenizer
        source_file, target_file = self.path("train", self.source_lang), self.path("train", self.target_lang)
        read_parallel_files(source_file, target_file)  # the file checks, before training on them
        source_path, target_path = self.tokenizer_paths()
        if self.joint_vocabulary:
            joint = SubwordTokenizer.load_or_train(
                source_path, [source_file, target_file], self.vocab_size, self.min_frequency
            )
            self.source_tokenizer = self.target_tokenizer = joint
        else:
            self.source_tokenizer = SubwordTokenizer.load_or_train(
                source_path, [source_file], self.vocab_size, self.min_frequency
            )
            self.target_tokenizer = SubwordTokenizer.load_or_train(
                target_path, [target_file], self.vocab_size, self.min_frequency
            )
        rank_zero_info(
            f"ParallelTextDataModule: subword vocabularies {len(self.source_tokenizer)} ({self.source_lang}) / "
            f"{len(self.target_tokenizer)} ({self.target_lang}), {source_path.parent}"
        )
        return self.source_tokenizer, self.target_tokenizer

    @property
    def src_vocab_size(self) -> int:
        """Number of source ids (builds or loads the tokenizers if needed)."""
        return len(self.build_tokenizers()[0])

    @property
    def tgt_vocab_size(self) -> int:
        """Number of target ids (builds or loads the tokenizers if needed)."""
        return len(self.build_tokenizers()[1])

    # ---- splits ---------------------------------------------------------------------------------------------------

    def _encode_split(self, split: str) -> ParallelTextDataset:
        source_file, target_file = self.path(split, self.source_lang), self.path(split, self.target_lang)
        source_text, target_text = read_parallel_files(source_file, target_file)
        source_tokenizer, target_tokenizer = self.build_tokenizers()
        source_ids = source_tokenizer.encode_batch(source_text)
        target_ids = target_tokenizer.encode_batch(target_text)
        policy = self.overlong if split == "train" else self.eval_overlong
        keep = list(range(len(target_text)))
        if policy != "keep":
            keep = []
            for line, (src, tgt) in enumerate(zip(source_ids, target_ids, strict=True)):
                over = [
                    (file, len(ids) + 1, limit)
                    for file, ids, limit in (
                        (source_file, src, self.max_source_tokens),
                        (target_file, tgt, self.max_target_tokens),
                    )
                    if limit is not None and len(ids) + 1 > limit
                ]
                if not over:
                    keep.append(line)
                elif policy == "truncate":
                    if self.max_source_tokens is not None:
                        source_ids[line] = src[: self.max_source_tokens - 1]
                    if self.max_target_tokens is not None:
                        target_ids[line] = tgt[: self.max_target_tokens - 1]
                    keep.append(line)
                elif policy == "error":
                    file, length, limit = over[0]
                    option = "overlong" if split == "train" else "eval_overlong"
                    raise ValueError(
                        f"ParallelTextDataModule: line {line + 1} of {str(file)!r} has {length} tokens (EOS "
                        f"included), more than the limit {limit} (`max_source_tokens` / `max_target_tokens`); set "
                        f"`{option}` to 'filter' or 'truncate' to accept it"
                    )
        dataset = ParallelTextDataset(
            [source_ids[i] for i in keep], [target_ids[i] for i in keep], [target_text[i] for i in keep], keep
        )
        if len(dataset) == 0:
            raise ValueError(
                f"ParallelTextDataModule: no pair of {str(source_file)!r} / {str(target_file)!r} is within "
                f"max_source_tokens={self.max_source_tokens}, max_target_tokens={self.max_target_tokens}"
            )
        rank_zero_info(
            f"ParallelTextDataModule: {split}: {len(dataset)} pairs ({len(target_text) - len(dataset)} over-long "
            f"dropped), {int(dataset.source_lengths.sum())} / {int(dataset.target_lengths.sum())} subword tokens "
            "with EOS"
        )
        return dataset

    @staticmethod
    def _splits(stage: str | None, predict_split: str) -> list[str]:
        return {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], "predict": [predict_split]}.get(
            stage or "", ["train", "val", "test"]
        )

    def load_split(self, split: str) -> ParallelTextDataset:
        """The encoded pairs of ``split`` (``"train"``, ``"val"`` or ``"test"``), read on first use."""
        if split not in self.prefixes:
            raise ValueError(f"ParallelTextDataModule: `split` must be one of {tuple(self.prefixes)}, got {split!r}")
        if split not in self.datasets:
            self.datasets[split] = self._encode_split(split)
        return self.datasets[split]

    @override
    def prepare_data(self) -> None:
        """Train and save the tokenizers if they are not saved yet (once per node, before ``setup`` on every rank)."""
        self.build_tokenizers()

    @override
    def setup(self, stage: str | None = None) -> None:
        """Load the tokenizers and encode the splits that ``stage`` needs."""
        for split in self._splits(stage, self.predict_split):
            self.load_split(split)

    # ---- public helpers -------------------------------------------------------------------------------------------

    def decode_target(self, ids: Sequence[int] | Tensor) -> str:
        """Detokenised text of target ids (stops at EOS; drops BOS, padding and ``-100``)."""
        return self.build_tokenizers()[1].decode(ids.tolist() if isinstance(ids, Tensor) else ids)

    def decode_source(self, ids: Sequence[int] | Tensor) -> str:
        """Detokenised text of source ids (stops at EOS; drops BOS and padding)."""
        return self.build_tokenizers()[0].decode(ids.tolist() if isinstance(ids, Tensor) else ids)

    def references(self, split: str) -> list[str]:
        """The raw target lines of ``split`` in index order (after the same filtering as its dataset)."""
        return list(self.load_split(split).target_text)

    def train_target_lengths(self) -> Tensor:
        """``(N,)`` int64 target tokens (EOS included) of every training pair in index order."""
        return self.load_split("train").target_lengths.clone()

    # ---- loaders --------------------------------------------------------------------------------------------------

    def batch_sampler(self, split: str, training: bool) -> TokenBatchSampler:
        """The token-bounded sampler of ``split`` for this process (rank and world size from the trainer)."""
        dataset = self.load_split(split)
        world_size, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)
        return TokenBatchSampler(
            dataset.source_lengths,
            dataset.target_lengths,
            max_tokens=self.max_tokens if training else self.eval_max_tokens,
            max_sentences=self.max_sentences,
            shuffle=training and self.shuffle,
            seed=self.seed,
            num_replicas=world_size,
            rank=rank,
            even_batches=training,
        )

    def _loader(self, split: str, training: bool) -> DataLoader:
        sampler = self.batch_sampler(split, training)
        return DataLoader(
            _Batches(self.load_split(split)),
            sampler=sampler,
            batch_size=None,  # the sampler yields whole batches: Lightning sees a DistributedSampler and keeps it
            collate_fn=collate_translation,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    @override
    def train_dataloader(self) -> DataLoader:
        """Token-bounded, length-bucketed, shuffled training batches (the same number on every rank)."""
        return self._loader("train", training=True)

    @override
    def val_dataloader(self) -> DataLoader:
        """Validation batches sorted by length (every pair once across ranks)."""
        return self._loader("val", training=False)

    @override
    def test_dataloader(self) -> DataLoader:
        """Test batches sorted by length (every pair once across ranks)."""
        return self._loader("test", training=False)

    @override
    def predict_dataloader(self) -> DataLoader:
        """Batches of ``predict_split`` sorted by length (every pair once across ranks)."""
        return self._loader(self.predict_split, training=False)
