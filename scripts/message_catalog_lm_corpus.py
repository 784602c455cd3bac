r"""Write a sentence-level language-modelling corpus from one side of a parallel corpus (the message catalogs).

The language-model study of ``results/message_catalogs_lm/`` needs real text with the PTB layout that
:class:`lightning_skd.data.TextLMDataModule` reads (one sentence per line, tokens separated by spaces). No LM corpus
can be downloaded here; the English side of the message-catalog corpus (``scripts/prepare_message_catalog_corpus.py``)
is real, human-written text. Each line is lower-cased and split into words and single punctuation marks (a word is
a run of letters, digits, ``_`` and inner apostrophes), like PTB's tokenisation; empty lines are dropped. A seeded
random ``--train-lines`` subset of the training split (in corpus order) is kept, valid and test whole; the splits
are the parallel corpus's (split by a hash of the English string, so no test line is in training).

Usage::

    python scripts/message_catalog_lm_corpus.py data/message_catalogs_en_de data/message_catalogs_lm_en \\
        --lang en --train-lines 10000
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

_TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def tokenize(line: str) -> str:
    """Lower-case ``line`` and separate words and punctuation marks by single spaces.

    >>> tokenize("Can't open file '%s': No such file.")
    "can't open file ' % s ' : no such file ."
    """
    return " ".join(_TOKEN.findall(line.lower()))


def write_lm_corpus(
    corpus: Path, output: Path, lang: str = "en", train_lines: int | None = None, seed: int = 0
) -> None:
    """Write ``output/{train,valid,test}.txt`` from ``corpus/{train,valid,test}.{lang}``.

    Args:
        corpus: Folder of a parallel corpus.
        output: Output folder (created).
        lang: Which side to read.
        train_lines: Training lines to keep (a seeded random subset, in corpus order); ``None`` keeps all.
        seed: Seed of the subset.

    Raises:
        ValueError: If ``train_lines`` is not in ``[1, number of training lines]``.

    """
    output.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        lines = [tokenize(line) for line in (corpus / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()]
        lines = [line for line in lines if line]
        if split == "train" and train_lines is not None:
            if not 0 < train_lines <= len(lines):
                raise ValueError(
                    f"--train-lines: expected 1..{len(lines)} for {corpus / 'train'}.{lang}, got {train_lines}"
                )
            lines = [lines[i] for i in sorted(random.Random(seed).sample(range(len(lines)), train_lines))]
        (output / f"{split}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and write the corpus."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--lang", default="en")
    parser.add_argument("--train-lines", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_lm_corpus(args.corpus, args.output, args.lang, args.train_lines, args.seed)


if __name__ == "__main__":
    main()
