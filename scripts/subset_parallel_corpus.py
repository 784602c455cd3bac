r"""Write a seeded random subset of a parallel corpus's training split (and optionally of valid); test is copied whole.

The training subset of ``configs/message_catalogs/`` (``data/message_catalogs_en_de_20k/``) and of the converged-regime
study (``data/message_catalogs_en_de_3k/``, with a smaller validation split so that validating every epoch stays
cheap): the same arguments always give the same files (the pairs keep their corpus order). An existing output folder
is left as it is.

Usage::

    python scripts/subset_parallel_corpus.py data/message_catalogs_en_de data/message_catalogs_en_de_20k --pairs 20000
    python scripts/subset_parallel_corpus.py data/message_catalogs_en_de data/message_catalogs_en_de_3k \
        --pairs 3000 --valid-pairs 500
"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path


def make_subset(
    corpus: Path,
    subset: Path,
    pairs: int,
    seed: int = 0,
    source_lang: str = "en",
    target_lang: str = "de",
    valid_pairs: int | None = None,
) -> None:
    """A seeded random ``pairs``-pair subset of ``corpus``'s training split; test copied whole.

    Args:
        corpus: Folder of ``{train,valid,test}.{source_lang,target_lang}``.
        subset: Output folder (nothing is written if its training target file exists).
        pairs: Training pairs to keep.
        seed: Seed of the choice (of both splits' subsets).
        source_lang: Suffix of the source files.
        target_lang: Suffix of the target files.
        valid_pairs: Validation pairs to keep; ``None`` copies the validation split whole.

    Raises:
        ValueError: If the corpus has fewer pairs than asked for, or sides of different lengths.

    """
    if (subset / f"train.{target_lang}").exists():
        return
    subset.mkdir(parents=True, exist_ok=True)
    _write_sample(corpus, subset, "train", pairs, seed, (source_lang, target_lang))
    if valid_pairs is None:
        for lang in (source_lang, target_lang):
            shutil.copy(corpus / f"valid.{lang}", subset / f"valid.{lang}")
    else:
        _write_sample(corpus, subset, "valid", valid_pairs, seed, (source_lang, target_lang))
    for lang in (source_lang, target_lang):
        shutil.copy(corpus / f"test.{lang}", subset / f"test.{lang}")


def _write_sample(corpus: Path, subset: Path, split: str, pairs: int, seed: int, langs: tuple[str, str]) -> None:
    """Write a seeded random ``pairs``-pair sample of ``corpus``'s ``split`` (in corpus order) to ``subset``."""
    source, target = ((corpus / f"{split}.{lang}").read_text(encoding="utf-8").splitlines() for lang in langs)
    if len(source) != len(target) or not 0 < pairs <= len(source):
        raise ValueError(f"{corpus}: cannot take {pairs} of {len(source)} / {len(target)} {split} pairs.")
    keep = sorted(random.Random(seed).sample(range(len(source)), pairs))
    for lang, lines in zip(langs, (source, target), strict=True):
        (subset / f"{split}.{lang}").write_text("".join(lines[i] + "\n" for i in keep), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and write the subset."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("subset", type=Path)
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source-lang", default="en")
    parser.add_argument("--target-lang", default="de")
    parser.add_argument("--valid-pairs", type=int, default=None, help="validation pairs to keep (default: all)")
    args = parser.parse_args(argv)
    make_subset(args.corpus, args.subset, args.pairs, args.seed, args.source_lang, args.target_lang, args.valid_pairs)


if __name__ == "__main__":
    main()
