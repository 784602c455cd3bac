"""Decoding speed: sentences per second of batched beam search (widths 5 and 12) vs greedy decoding, on CPU.

Both architectures, each at a small size and at a paper-like size (Transformer: Kim et al.'s 6 + 6 layers, d_model
512, 4 heads, d_ff 1024, V = 10k; attention LSTM: Bahdanau et al.'s embedding 620 / hidden 1000, which Hahn & Choi
build on without giving sizes, V = 10k as their En-Fi vocabulary). The weights are random (seeded), so hypotheses
practically never end early: every method decodes the same number of steps (``--target-len``, via ``max_len_a=0``,
``max_len_b=target_len``; the measured mean hypothesis lengths are printed), and the ratio compares the per-step
cost of ``beam x batch`` rows against ``batch`` rows. A trained model stops earlier, greedy and beam alike.
"greedy, no cache" is the same greedy search done by calling the teacher-forced ``forward`` on the whole prefix at
every step (what decoding costs without ``decode_step``'s cached state).

Each round times every method once (order reversed every other round, after one warm-up call each), and the
per-method medians over rounds are compared, so drifts in the machine's load hit all methods alike. The load
average is printed before and after: the machine may be shared. One torch thread by default: on a loaded 2-core
machine two threads were 8-20x slower than one (they wait for each other).

    python benchmarks/bench_beam_search.py              # all four models
    python benchmarks/bench_beam_search.py --only transformer-small --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from functools import partial

import torch

from lightning_skd.models.seq2seq import AttentionLSTMSeq2Seq, TransformerSeq2Seq, beam_search, greedy_decode

BOS, EOS = 1, 2
MODELS = {
    "transformer-small": (
        TransformerSeq2Seq,
        {"num_encoder_layers": 2, "num_decoder_layers": 2, "d_model": 256, "nhead": 4, "dim_feedforward": 512},
        8000,
    ),
    "transformer-paper": (
        TransformerSeq2Seq,
        {"num_encoder_layers": 6, "num_decoder_layers": 6, "d_model": 512, "nhead": 4, "dim_feedforward": 1024},
        10_000,
    ),
    "lstm-small": (AttentionLSTMSeq2Seq, {"embedding_dim": 256, "hidden_size": 256}, 8000),
    "lstm-paper": (AttentionLSTMSeq2Seq, {"embedding_dim": 620, "hidden_size": 1000}, 10_000),
}


@torch.no_grad()
def greedy_recompute(model, source: torch.Tensor, lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """Greedy decoding without incremental state: teacher-forced ``forward`` on the whole prefix at every step."""
    prefix = torch.full((source.shape[0], 1), BOS, dtype=torch.long)
    for _ in range(steps):
        logits = model(source, lengths, prefix)  # (B, t, V): encoder and decoder recomputed
        prefix = torch.cat([prefix, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return prefix


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--batch", type=int, default=16, help="sentences per call")
    parser.add_argument("--source-len", type=int, default=20)
    parser.add_argument("--target-len", type=int, default=20, help="decoding steps (tokens before the forced EOS)")
    parser.add_argument("--widths", type=int, nargs="*", default=[5, 12])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"device=cpu threads={torch.get_num_threads()} torch={torch.__version__} cpus={os.cpu_count()} "
        f"load average (1/5/15 min) before: {load()}"
    )
    print(
        f"batch {args.batch} sentences x {args.source_len} source tokens, {args.target_len} decoding steps, "
        f"random weights, length_penalty 1.0; median of {args.rounds} rounds (alternating order) after a warm-up"
    )
    generator = torch.Generator().manual_seed(0)
    for name in args.only:
        cls, sizes, vocab = MODELS[name]
        torch.manual_seed(0)
        model = cls(vocab, vocab, 0, **sizes).eval()
        source = torch.randint(4, vocab, (args.batch, args.source_len), generator=generator)
        source[:, -1] = EOS
        lengths = torch.full((args.batch,), args.source_len)
        common = {"bos_id": BOS, "eos_id": EOS, "max_len_a": 0.0, "max_len_b": args.target_len}
        methods = {"greedy": partial(greedy_decode, model, source, lengths, **common)}
        for width in args.widths:
            methods[f"beam {width}"] = partial(
                beam_search, model, source, lengths, beam_size=width, length_penalty=1.0, **common
            )
        mean_length = {key: float(method().lengths.float().mean()) for key, method in methods.items()}  # warm-up
        methods["greedy, no cache"] = partial(greedy_recompute, model, source, lengths, args.target_len + 1)
        mean_length["greedy, no cache"] = float(args.target_len)
        recomputed, greedy = methods["greedy, no cache"](), methods["greedy"]()
        same = torch.equal(recomputed[:, 1 : greedy.tokens.shape[1] + 1], greedy.tokens)
        times: dict[str, list[float]] = {key: [] for key in methods}
        for round_index in range(args.rounds):
            order = list(methods) if round_index % 2 == 0 else list(reversed(methods))
            for key in order:
                start = time.perf_counter()
                methods[key]()
                times[key].append(time.perf_counter() - start)
        parameters = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name} ({parameters:.1f}M parameters, V = {vocab}; greedy == greedy without cache: {same}):")
        greedy_speed = args.batch / statistics.median(times["greedy"])
        for key, values in times.items():
            speed = args.batch / statistics.median(values)
            print(
                f"  {key:>16}: {speed:8.1f} sentences/s (rounds {min(values):.2f}-{max(values):.2f} s, "
                f"mean hypothesis length {mean_length[key]:.1f})   greedy / {key} = {greedy_speed / speed:5.2f}x"
            )
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
