"""Subword statistics of a parallel corpus as ``ParallelTextDataModule`` sees it.

Trains (or loads) the BPE tokenizer the data module would use, and prints the tokenizer training time, the number of
pairs and words per split, and the distribution of source and target row lengths (subword tokens, EOS included):
mean, median, 95th / 99th percentile and maximum, plus the number of training batches at a ``--max-tokens`` budget
and the fraction of padding in them.

Usage::

    python scripts/parallel_corpus_stats.py data/message_catalogs_en_de --vocab-size 10000 --tokenizer-dir /tmp/tok
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lightning_skd.data import ParallelTextDataModule


def main(argv: list[str] | None = None) -> None:
    """Print the statistics."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir")
    parser.add_argument("--source-lang", default="en")
    parser.add_argument("--target-lang", default="de")
    parser.add_argument("--vocab-size", type=int, default=10000)
    parser.add_argument("--separate", action="store_true", help="one vocabulary per language")
    parser.add_argument("--tokenizer-dir", default=None)
    parser.add_argument("--max-tokens", type=int, default=4096)
    args = parser.parse_args(argv)
    dm = ParallelTextDataModule(
        args.data_dir,
        source_lang=args.source_lang,
        target_lang=args.target_lang,
        vocab_size=args.vocab_size,
        joint_vocabulary=not args.separate,
        tokenizer_dir=args.tokenizer_dir,
        max_tokens=args.max_tokens,
    )
    start = time.perf_counter()
    dm.build_tokenizers()
    print(f"tokenizer: {time.perf_counter() - start:.1f} s (trained, or loaded if saved), {dm.tokenizer_paths()[0]}")
    print(f"vocabulary: {dm.src_vocab_size} source / {dm.tgt_vocab_size} target ids")
    for split in ("train", "val", "test"):
        start = time.perf_counter()
        dataset = dm.load_split(split)
        seconds = time.perf_counter() - start
        words = [len(line.split()) for line in dataset.target_text]
        print(f"{split}: {len(dataset)} pairs, {sum(words)} target words, read + encoded in {seconds:.1f} s")
        for side, lengths in (("source", dataset.source_lengths), ("target", dataset.target_lengths)):
            values = lengths.numpy()
            p50, p95, p99 = np.percentile(values, [50, 95, 99])
            print(
                f"  {side} tokens (EOS incl.): mean {values.mean():.2f}, median {p50:.0f}, 95th {p95:.0f}, "
                f"99th {p99:.0f}, max {values.max()}, total {values.sum()}"
            )
    sampler = dm.batch_sampler("train", training=True)
    batches = sampler.global_batches()
    cost = sampler.cost_lengths
    padded = sum(len(b) * int(cost[b].max()) for b in batches)
    print(
        f"train batches at max_tokens={args.max_tokens}: {len(batches)}, mean {len(cost) / len(batches):.1f} pairs, "
        f"padding {1 - cost.sum() / padded:.1%} of the longer side's padded tokens"
    )


if __name__ == "__main__":
    main()
