"""Token-level Self-KD on a Transformer: step time of snapshot and top-8 token-cache mode vs plain cross-entropy, and
the token cache's memory for an IWSLT15-sized corpus.

Run: ``.venv/bin/python benchmarks/bench_token_self_kd.py [--size small|paper] [--steps 20] [--repeats 3]``

Step time: a ``TransformerSeq2Seq`` training step (forward, ``lightning_skd.self_kd_loss``, backward, Adam) on batches
of random token ids, through Lightning, median wall time between consecutive batch starts in the second epoch (the
one that reads teachers); the configurations are interleaved ``--repeats`` times so that machine load drifts hit them
alike, and each ratio is taken against the plain run just before it. The snapshot target is
``1 + forward / (forward + backward) + 0.03``, with forward and backward of the plain step timed separately in the
same process. Because end-to-end ratios of separate runs cannot resolve a few percent on a shared machine, the
callback's cost is also *attributed* within each run: the time spent inside its per-step hooks (teacher forward,
cache look-up and write; ``TimedSelfKDCallback`` of ``bench_self_kd_cache.py``) plus the fwd+bwd time of the Self-KD
loss minus plain cross-entropy, relative to the median plain step.

``--size small`` (default on CPU): d_model 256, 3+3 layers, vocabulary 8,000, 32 x 24 target tokens.
``--size paper`` (default on a GPU): Kim et al.'s Transformer (6+6 layers, d_model 512, 4 heads, d_ff 1024),
vocabulary 10,000, 128 x 32 = 4,096 target tokens.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from bench_self_kd_cache import StepTimer, TimedSelfKDCallback  # the benchmark's own folder is on sys.path
from torch.utils.data import DataLoader, Dataset

from lightning_skd import SelfKDCallback, self_kd_loss
from lightning_skd.callbacks.prediction_table import MemoryPredictionTable
from lightning_skd.data.parallel_text import TranslationInput
from lightning_skd.functional import self_kd_cross_entropy
from lightning_skd.models.seq2seq import TransformerSeq2Seq

IWSLT15_PAIRS = 191_000
IWSLT15_MEAN_TARGET_TOKENS = 26.0  # assumption, see memory_table


@dataclass
class Size:
    vocab: int
    layers: int
    d_model: int
    heads: int
    d_ff: int
    batch: int
    length: int


SIZES = {
    "small": Size(vocab=8000, layers=3, d_model=256, heads=4, d_ff=1024, batch=32, length=24),
    "paper": Size(vocab=10_000, layers=6, d_model=512, heads=4, d_ff=1024, batch=128, length=32),
}


def memory_table() -> None:
    """Token-cache bytes for an IWSLT15-sized corpus, sized on the meta device (shapes without storage)."""
    torch.manual_seed(0)
    # Assumed BPE target lengths: IWSLT15 En-De TED sentences average about 20 words, about 1.3 subwords per word with
    # a 10k BPE, plus EOS; a gamma distribution with that mean and a long right tail, clipped to [2, 250].
    lengths = torch.distributions.Gamma(torch.tensor(2.5), torch.tensor(2.5 / IWSLT15_MEAN_TARGET_TOKENS))
    lengths = lengths.sample((IWSLT15_PAIRS,)).round().clamp(2, 250).long()
    tokens = int(lengths.sum())
    print(
        f"Token cache for an IWSLT15-sized corpus: {IWSLT15_PAIRS:,} pairs, {tokens:,} target tokens (assumed "
        f"lengths: mean {lengths.float().mean():.1f}, 95th percentile {lengths.float().quantile(0.95):.0f}), V = 10,000"
    )
    rows = [
        ("dense float32 (every token, every class)", {"dtype": torch.float32}),
        ("top-8 float32", {"dtype": torch.float32, "topk": 8}),
        ("top-8 float16 (target: <= 250 MB)", {"dtype": torch.float16, "topk": 8}),
        ("top-8 bfloat16", {"dtype": torch.bfloat16, "topk": 8}),
    ]
    for name, kwargs in rows:
        cache = MemoryPredictionTable(tokens, 10_000, device="meta", **kwargs)  # the token rows, not allocated
        print(f"  {name:<42}{cache.nbytes / 1e6:>12,.1f} MB")


class RandomPairs(Dataset):
    """Indexed random (source, target) pairs of fixed length: every batch has the same number of tokens."""

    def __init__(self, size: Size, num_pairs: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.source = torch.randint(4, size.vocab, (num_pairs, size.length), generator=generator)
        self.target = torch.randint(4, size.vocab, (num_pairs, size.length), generator=generator)
        self.target_lengths = torch.full((num_pairs,), size.length)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int):
        return self.source[index], self.target[index], index


def collate(items) -> dict:
    source, target, index = (torch.stack([torch.as_tensor(x) for x in column]) for column in zip(*items, strict=True))
    bos = torch.ones_like(target[:, :1])
    target_input = torch.cat([bos, target[:, :-1]], dim=1)
    lengths = torch.full((len(source),), source.shape[1])
    return {"input": TranslationInput(source, lengths, target_input), "target": target, "index": index}


class StepModule(pl.LightningModule):
    """The training step a Translator makes: teacher-forced logits (B, T, V), then ``self_kd_loss``."""

    def __init__(self, size: Size) -> None:
        super().__init__()
        self.net = TransformerSeq2Seq(
            size.vocab,
            size.vocab,
            num_encoder_layers=size.layers,
            num_decoder_layers=size.layers,
            d_model=size.d_model,
            nhead=size.heads,
            dim_feedforward=size.d_ff,
        )

    def forward(self, inputs: TranslationInput) -> torch.Tensor:
        return self.net(inputs.source, inputs.source_lengths, inputs.target_input)

    def training_step(self, batch, batch_idx):
        return self_kd_loss(self, self(batch["input"]), batch["target"])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-4, betas=(0.9, 0.98))


def run(size: Size, callback: SelfKDCallback | None, steps: int, accelerator: str) -> float:
    """Median step time (s) of the second epoch."""
    pl.seed_everything(0)
    timer = StepTimer()
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        max_epochs=2,
        limit_val_batches=0,
        callbacks=[timer] + ([callback] if callback else []),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(RandomPairs(size, steps * size.batch), batch_size=size.batch, shuffle=True, collate_fn=collate)
    trainer.fit(StepModule(size), loader)
    return statistics.median(timer.times)


def forward_backward_times(size: Size, device: torch.device, repeats: int = 10) -> tuple[float, float]:
    """Median forward (+ loss) and backward times of the plain step, in seconds."""
    torch.manual_seed(0)
    module = StepModule(size).to(device).train()
    batch = collate([RandomPairs(size, size.batch)[i] for i in range(size.batch)])
    inputs = TranslationInput(*(t.to(device) for t in batch["input"]))
    target = batch["target"].to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    forward, backward = [], []
    for attempt in range(repeats + 2):
        sync()
        start = time.perf_counter()
        loss = self_kd_loss(module, module(inputs), target)
        sync()
        middle = time.perf_counter()
        loss.backward()
        sync()
        end = time.perf_counter()
        module.zero_grad(set_to_none=True)
        if attempt >= 2:  # warm-up
            forward.append(middle - start)
            backward.append(end - middle)
    return statistics.median(forward), statistics.median(backward)


def loss_time_difference(size: Size, device: torch.device, topk: int | None, repeats: int = 30) -> float:
    """Median fwd+bwd time (s) of the token Self-KD loss (dense teacher, or sparse top-k) minus cross-entropy."""
    generator = torch.Generator().manual_seed(0)
    rows = size.batch * size.length
    logits = torch.randn(rows, size.vocab, generator=generator).to(device).requires_grad_()
    target = torch.randint(0, size.vocab, (rows,), generator=generator).to(device)
    teacher = torch.randn(rows, size.vocab, generator=generator).softmax(-1).to(device)
    ids = None
    if topk is not None:
        teacher, ids = teacher.topk(topk, dim=-1)
    alpha = torch.full((rows,), 0.5, device=device)

    def median_time(step) -> float:
        times = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    skd = median_time(lambda: self_kd_cross_entropy(logits, target, teacher, alpha, teacher_class_ids=ids).backward())
    plain = median_time(lambda: F.cross_entropy(logits, target).backward())
    return skd - plain


def step_table(size_name: str, steps: int, repeats: int) -> None:
    size = SIZES[size_name]
    accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    configs = {
        "snapshot (teacher-forced frozen copy)": {"mode": "snapshot"},
        "token cache, top-8 float16": {"mode": "cache", "cache_topk": 8, "cache_dtype": "float16"},
    }
    plain_times: list[float] = []
    ratios: dict[str, list[float]] = {name: [] for name in configs}
    hooks: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(repeats):
        plain = run(size, None, steps, accelerator)
        plain_times.append(plain)
        for name, kwargs in configs.items():
            callback = TimedSelfKDCallback(alpha_T=0.7, **kwargs)
            ratios[name].append(run(size, callback, steps, accelerator) / plain)
            hooks[name].append(statistics.median(callback.hook_times))
    forward, backward = forward_backward_times(size, device)
    loss_delta = {
        "snapshot (teacher-forced frozen copy)": loss_time_difference(size, device, topk=None),
        "token cache, top-8 float16": loss_time_difference(size, device, topk=8),
    }
    base = statistics.median(plain_times)
    where = torch.cuda.get_device_name() if accelerator == "gpu" else f"CPU, {torch.get_num_threads()} threads"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\nTraining step, Transformer {size.layers}+{size.layers} layers, d_model {size.d_model}, V {size.vocab:,}, "
        f"{size.batch} x {size.length} target tokens, {where}, load average {load:.1f}"
    )
    print(f"plain cross-entropy step: {statistics.median(plain_times) * 1e3:.1f} ms (median of {repeats} runs)")
    snapshot_target = 1 + forward / (forward + backward) + 0.03
    print(
        f"plain forward {forward * 1e3:.1f} ms, backward {backward * 1e3:.1f} ms "
        f"-> snapshot target {snapshot_target:.3f}x"
    )
    targets = {"snapshot (teacher-forced frozen copy)": snapshot_target, "token cache, top-8 float16": 1.05}
    print(f"{'configuration':<40}{'hooks ms':>10}{'attributed':>12}{'end-to-end':>12}{'spread':>18}{'target':>9}")
    for name, values in ratios.items():
        hook = statistics.median(hooks[name])
        attributed = 1 + (hook + loss_delta[name]) / base
        spread = f"[{min(values):.3f}, {max(values):.3f}]"
        print(
            f"{name:<40}{hook * 1e3:>10.1f}{attributed:>11.3f}x{statistics.median(values):>11.3f}x{spread:>18}"
            f"{targets[name]:>8.3f}x"
        )
    print(
        "attributed = 1 + (median time inside the callback's hooks + loss fwd+bwd difference) / median plain step;\n"
        "end-to-end = median over repeats of (step with the callback / step of the plain run just before)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="paper" if torch.cuda.is_available() else "small")
    parser.add_argument("--steps", type=int, default=20, help="training steps per epoch")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions of every configuration")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: immune to other jobs' load)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    memory_table()
    step_table(args.size, args.steps, args.repeats)


if __name__ == "__main__":
    main()
