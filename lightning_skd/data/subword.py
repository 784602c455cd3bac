"""``SubwordTokenizer``: a BPE model (Hugging Face ``tokenizers``) trained on a corpus, saved with a fingerprint.

The tokenizer splits on whitespace the way sentencepiece does (``Metaspace``: a space becomes ``▁`` at the start of
the following piece), so decoding the ids gives the text back with its spaces (detokenised text, as sacreBLEU wants
it). No normaliser is applied: the text is encoded as it is in the files. The special tokens have fixed ids shared by
every tokenizer of :mod:`lightning_skd.data`: ``<pad>`` 0, ``<s>`` (BOS) 1, ``</s>`` (EOS) 2, ``<unk>`` 3. A character
never seen in the training text becomes ``<unk>``.

Next to the tokenizer file ``<name>.json`` a ``<name>.meta.json`` records what it was built from: the SHA-256 of each
training file's bytes and the settings. :meth:`SubwordTokenizer.load_or_train` reuses a saved tokenizer only when
both agree and otherwise stops with an error naming the file, so a tokenizer built for other data is never used by
mistake.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

__all__ = ["BOS_ID", "EOS_ID", "PAD_ID", "SPECIAL_TOKENS", "UNK_ID", "SubwordTokenizer", "file_sha256"]

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
"""Special tokens in id order."""
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3

_FORMAT = 1  # bump when the way a tokenizer is built changes, so old files are refused


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _lines(paths: Sequence[Path]) -> Iterator[str]:
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                yield line.strip()


class SubwordTokenizer:
    """A BPE subword tokenizer with fixed special ids, trained on text files and saved with their fingerprint.

    Args:
        tokenizer: A Hugging Face ``tokenizers.Tokenizer`` whose first four ids are :data:`SPECIAL_TOKENS`.

    Example:
        >>> tok = SubwordTokenizer.train_from_lines(["the small house", "the big house"] * 5, vocab_size=40)
        >>> ids = tok.encode("the small house")
        >>> tok.decode(ids)
        'the small house'
        >>> tok.decode([BOS_ID, *ids, EOS_ID, PAD_ID])  # stops at EOS, drops BOS and padding
        'the small house'

    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        for token_id, token in enumerate(SPECIAL_TOKENS):
            if tokenizer.token_to_id(token) != token_id:
                raise ValueError(
                    f"SubwordTokenizer: expected the special token {token!r} at id {token_id}, got "
                    f"{tokenizer.token_to_id(token)!r}"
                )
        self.tokenizer = tokenizer

    @staticmethod
    def _new_tokenizer() -> Tokenizer:
        tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        return tokenizer

    @classmethod
    def train_from_lines(cls, lines: Iterable[str], vocab_size: int, min_frequency: int = 2) -> SubwordTokenizer:
        """Train a BPE model with at most ``vocab_size`` ids (special tokens included) on ``lines``."""
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= len(SPECIAL_TOKENS):
            raise ValueError(
                f"SubwordTokenizer: `vocab_size` must be an integer > {len(SPECIAL_TOKENS)}, got {vocab_size!r}"
            )
        tokenizer = cls._new_tokenizer()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            show_progress=False,
        )
        tokenizer.train_from_iterator(lines, trainer=trainer)
        return cls(tokenizer)

    @staticmethod
    def fingerprint(files: Sequence[str | Path], settings: dict) -> dict:
        """What a tokenizer trained on ``files`` with ``settings`` is built from (file names and SHA-256, settings)."""
        return {
            "format": _FORMAT,
            "files": [{"name": Path(f).name, "sha256": file_sha256(f)} for f in files],
            "settings": dict(settings),
        }

    @classmethod
    def load_or_train(
        cls,
        path: str | Path,
        files: Sequence[str | Path],
        vocab_size: int,
        min_frequency: int = 2,
        save: bool = True,
    ) -> SubwordTokenizer:
        """Load the tokenizer saved at ``path`` if it was built from ``files`` with these settings, else train it.

        Args:
            path: Tokenizer file (``.json``); its fingerprint is ``path`` with the suffix ``.meta.json``.
            files: Training text files (one sentence per line).
            vocab_size: Largest number of ids, special tokens included.
            min_frequency: Least count of a pair of pieces to be merged.
            save: Whether to write a newly trained tokenizer (and its fingerprint) to ``path``.

        Raises:
            ValueError: If ``path`` exists but was built from other files or settings (naming the file and what
                differs), or has no fingerprint next to it.

        """
        path = Path(path)
        meta_path = cls.meta_path(path)
        expected = cls.fingerprint(files, {"model": "bpe", "vocab_size": vocab_size, "min_frequency": min_frequency})
        if path.is_file():
            if not meta_path.is_file():
                raise ValueError(
                    f"SubwordTokenizer: {str(path)!r} has no fingerprint file {str(meta_path)!r}, so it cannot be "
                    "checked against the training data; delete it to train a new one"
                )
            saved = json.loads(meta_path.read_text(encoding="utf-8"))
            if saved != expected:
                raise ValueError(
                    f"SubwordTokenizer: {str(path)!r} was built for other data or settings: "
                    f"{cls._difference(saved, expected)}. Delete it (and {meta_path.name}) to train a new one, or "
                    "choose another tokenizer folder"
                )
            return cls(Tokenizer.from_file(str(path)))
        tokenizer = cls.train_from_lines(_lines([Path(f) for f in files]), vocab_size, min_frequency)
        if save:
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(meta_path, json.dumps(expected, indent=1))
            _atomic_write(path, tokenizer.tokenizer.to_str())
        return tokenizer

    @staticmethod
    def meta_path(path: str | Path) -> Path:
        """Fingerprint file of the tokenizer file ``path``."""
        path = Path(path)
        return path.with_name(path.stem + ".meta.json")

    @staticmethod
    def _difference(saved: dict, expected: dict) -> str:
        parts = []
        if saved.get("format") != expected["format"]:
            parts.append(f"format {saved.get('format')!r} instead of {expected['format']!r}")
        if saved.get("settings") != expected["settings"]:
            parts.append(f"settings {saved.get('settings')!r} instead of {expected['settings']!r}")
        if saved.get("files") != expected["files"]:
            old = [f"{f['name']} ({f['sha256'][:12]})" for f in saved.get("files", [])]
            new = [f"{f['name']} ({f['sha256'][:12]})" for f in expected["files"]]
            parts.append(f"training files {old} instead of {new}")
        return "; ".join(parts)

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Subword ids of ``text`` (no BOS / EOS)."""
        return self.tokenizer.encode(text).ids

    def encode_batch(self, texts: Sequence[str], chunk_size: int = 20000) -> list[list[int]]:
        """Subword ids of each text (no BOS / EOS); the Rust tokenizer runs each chunk of texts in parallel.

        Chunks keep the memory of the tokenizer's ``Encoding`` objects (offsets, token strings) bounded.
        """
        ids: list[list[int]] = []
        for start in range(0, len(texts), chunk_size):
            ids.extend(
                encoding.ids for encoding in self.tokenizer.encode_batch(list(texts[start : start + chunk_size]))
            )
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Detokenised text of ``ids``: stops at the first EOS, drops BOS, padding and negative ids (e.g. ``-100``).

        ``<unk>`` is kept as the text ``<unk>``.
        """
        kept = []
        for token_id in ids:
            token_id = int(token_id)
            if token_id == EOS_ID:
                break
            if token_id in (PAD_ID, BOS_ID) or token_id < 0:
                continue
            kept.append(token_id)
        return self.tokenizer.decode(kept, skip_special_tokens=False)


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
