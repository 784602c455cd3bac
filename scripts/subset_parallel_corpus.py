"""Write a seeded random subset of a parallel corpus's training split; valid and test are copied whole.

The training subset of ``configs/message_catalogs/`` (``data/message_catalogs_en_de_20k/``): the same arguments
always give the same files (the pairs keep their corpus order). An existing output folder is left as it is.

Usage::

    python scripts/subset_parallel_corpus.py data/message_catalogs_en_de data/message_catalogs_en_de_20k --pairs 20000
"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path


def make_subset(
    corpus: Path, subset: Path, pairs: int, seed: int = 0, source_lang: str = "en", target_lang: str = "de"
) -> None:
    """A seeded random ``pairs``-pair subset of ``corpus``'s training split, valid and test copied whole.

    Args:
        corpus: Folder of ``{train,valid,test}.{source_lang,target_lang}``.
        subset: Output folder (nothing is written if its training target file exists).
        pairs: Training pairs to keep.
        seed: Seed of the choice.
        source_lang: Suffix of the source files.
        target_lang: Suffix of the target files.

    """
    if (subset / f"train.{target_lang}").exists():
        return
    subset.mkdir(parents=True, exist_ok=True)
    source = (corpus / f"train.{source_lang}").read_text(encoding="utf-8").splitlines()
    target = (corpus / f"train.{target_lang}").read_text(encoding="utf-8").splitlines()
    if len(source) != len(target) or not 0 < pairs <= len(source):
        raise ValueError(f"{corpus}: cannot take {pairs} of {len(source)} / {len(target)} training pairs.")
    keep = sorted(random.Random(seed).sample(range(len(source)), pairs))
    for name, lines in ((f"train.{source_lang}", source), (f"train.{target_lang}", target)):
        (subset / name).write_text("".join(lines[i] + "\n" for i in keep), encoding="utf-8")
    for split in ("valid", "test"):
        for lang in (source_lang, target_lang):
            shutil.copy(corpus / f"{split}.{lang}", subset / f"{split}.{lang}")


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and write the subset."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("subset", type=Path)
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source-lang", default="en")
    parser.add_argument("--target-lang", default="de")
    args = parser.parse_args(argv)
    make_subset(args.corpus, args.subset, args.pairs, args.seed, args.source_lang, args.target_lang)


if __name__ == "__main__":
    main()
