"""A word vocabulary for language modelling: built from a training corpus, saved as one token per line."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["Vocabulary"]


class Vocabulary:
    """Bidirectional token <-> index map with an end-of-sentence and an unknown-word token.

    Index ``i`` is the ``i``-th token of :attr:`tokens`. :meth:`build` puts ``eos_token`` at index 0 and
    ``unk_token`` at index 1, then the corpus words by decreasing frequency (ties: alphabetical), so the same corpus
    always gives the same vocabulary. Words not in the vocabulary are encoded as ``unk_token``. The file format of
    :meth:`save` / :meth:`load` is plain UTF-8 text with one token per line, in index order.

    Args:
        tokens: All tokens in index order; must hold ``eos_token`` and ``unk_token`` and no duplicates.
        eos_token: End-of-sentence token (also used as the start-of-sentence input).
        unk_token: Token that replaces out-of-vocabulary words.

    Raises:
        ValueError: On duplicate tokens, empty or whitespace-containing tokens, or missing special tokens.

    Example:
        >>> vocab = Vocabulary.build([["a", "b", "a"], ["c", "a"]], max_size=4)
        >>> vocab.tokens
        ['<eos>', '<unk>', 'a', 'b']
        >>> vocab.encode(["a", "c", "zzz"])
        [2, 1, 1]
        >>> vocab.decode([2, 3, 0])
        ['a', 'b', '<eos>']

    """

    def __init__(self, tokens: Sequence[str], eos_token: str = "<eos>", unk_token: str = "<unk>") -> None:
        tokens = list(tokens)
        seen: dict[str, int] = {}
        for index, token in enumerate(tokens):
            if not token or token != token.strip() or len(token.split()) != 1:
                raise ValueError(f"Vocabulary: tokens must be non-empty and without whitespace, got {token!r}")
            if token in seen:
                raise ValueError(f"Vocabulary: duplicate token {token!r} at indices {seen[token]} and {index}")
            seen[token] = index
        for name, special in (("eos_token", eos_token), ("unk_token", unk_token)):
            if special not in seen:
                raise ValueError(f"Vocabulary: `{name}` {special!r} must be one of the tokens, got none")
        self.tokens = tokens
        self.eos_token = eos_token
        self.unk_token = unk_token
        self.index = seen
        self.eos_id = seen[eos_token]
        self.unk_id = seen[unk_token]

    @classmethod
    def build(
        cls,
        sentences: Iterable[Sequence[str]],
        max_size: int | None = None,
        min_freq: int = 1,
        eos_token: str = "<eos>",
        unk_token: str = "<unk>",
    ) -> Vocabulary:
        """Build a vocabulary from tokenised sentences.

        Args:
            sentences: Iterable of token lists (e.g. the training split, one list per line).
            max_size: Largest vocabulary size *including* the two special tokens (``>= 2``); ``None``: unlimited.
            min_freq: Words seen fewer times are left out (``>= 1``).
            eos_token: End-of-sentence token.
            unk_token: Unknown-word token (occurrences of it in the corpus, as in PTB, are counted for nothing).

        Returns:
            The vocabulary.

        Raises:
            ValueError: If ``max_size < 2`` or ``min_freq < 1``.

        """
        if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 2):
            raise ValueError(f"Vocabulary: `max_size` must be an integer >= 2 or None, got {max_size!r}")
        if isinstance(min_freq, bool) or not isinstance(min_freq, int) or min_freq < 1:
            raise ValueError(f"Vocabulary: `min_freq` must be an integer >= 1, got {min_freq!r}")
        counts: Counter[str] = Counter()
        for sentence in sentences:
            counts.update(sentence)
        for special in (eos_token, unk_token):
            counts.pop(special, None)
        words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[: max_size - 2]
        return cls([eos_token, unk_token, *words], eos_token=eos_token, unk_token=unk_token)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self.index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return (self.tokens, self.eos_token, self.unk_token) == (other.tokens, other.eos_token, other.unk_token)

    __hash__ = None  # type: ignore[assignment]

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Map tokens to indices, unknown words to the index of ``unk_token``."""
        return [self.index.get(token, self.unk_id) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Map indices back to tokens."""
        return [self.tokens[int(i)] for i in ids]

    def save(self, path: str | Path) -> None:
        """Write the tokens, one per line in index order, as UTF-8 text (parent folders are created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(f"{token}\n" for token in self.tokens), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, eos_token: str = "<eos>", unk_token: str = "<unk>") -> Vocabulary:
        """Read a vocabulary written by :meth:`save`.

        Raises:
            FileNotFoundError: If ``path`` does not exist.
            ValueError: If the file is not a valid vocabulary (see the class).

        """
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return cls([line for line in lines if line], eos_token=eos_token, unk_token=unk_token)
