"""Training-step time and memory of EmbeddingSKDLoss vs plain cross-entropy on the paper's RNNLM.

Setting (Hahn & Choi 2019, Sec. 4.2 sizes): V = 10k words, output word embedding d = 500 (embedding 500, LSTM 400,
ReLU feed-forward 500, softmax 10k), batch 64 sentences x 35 tokens. One step = forward + loss + backward + Adam step.
The two losses run side by side on copies of one model: after a warm-up, each round times both (in alternating
order) and the per-step medians over the rounds are compared, so drifts (turbo, caches, other load) hit both alike.

Memory: on CPU the live bytes of every tensor allocated while the loss runs (forward and backward, on logits that
already exist) are tracked exactly with a ``TorchDispatchMode``; on CUDA ``torch.cuda.max_memory_allocated`` is used
as well. Both are reported against one ``(N, V)`` float tensor, ``N = 64 * 35``.

    python benchmarks/bench_embedding_skd.py               # CPU (or --device cuda)
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import weakref

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from lightning_skd.losses import EmbeddingSKDLoss
from lightning_skd.models import LanguageModel

MIB = 2**20


class LiveBytes(TorchDispatchMode):
    """Track bytes of tensor storages created inside the mode (views and in-place results are not new storage)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.seen: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        if key in self.seen:
            self.seen.discard(key)
            self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        inputs = {
            a.untyped_storage().data_ptr() for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)
        }
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if key in self.seen or key in inputs or nbytes == 0:
                continue
            self.seen.add(key)
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._free, key, nbytes)
        return out


def make_batch(batch: int, time_steps: int, vocab: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, vocab, (batch, time_steps + 1), generator=gen)
    return tokens[:, :-1].to(device), tokens[:, 1:].to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--vocab", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--time", type=int, default=35)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per loss per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    base = LanguageModel(vocab_size=args.vocab, embedding_dim=500, hidden_size=400, ff_size=args.dim).to(device)
    inputs, targets = make_batch(args.batch, args.time, args.vocab, device)
    skd_loss = EmbeddingSKDLoss(sigma=0.1, alpha=1.0).to(device)

    def ce_objective(model: LanguageModel, logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    def skd_objective(model: LanguageModel, logits: torch.Tensor) -> torch.Tensor:
        return skd_loss(logits, targets, model.output_embedding)

    runs = {}
    for name, objective in (("cross_entropy", ce_objective), ("skd", skd_objective)):
        model = copy.deepcopy(base).train()
        runs[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-3), objective)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step(name: str) -> None:
        model, optimizer, objective = runs[name]
        optimizer.zero_grad(set_to_none=True)
        objective(model, model(inputs)).backward()
        optimizer.step()

    def timed(name: str) -> float:
        sync()
        start = time.perf_counter()
        for _ in range(args.steps):
            step(name)
        sync()
        return (time.perf_counter() - start) / args.steps

    for name in runs:
        for _ in range(args.warmup):
            step(name)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_index in range(args.rounds):
        order = list(runs) if round_index % 2 == 0 else list(reversed(runs))
        for name in order:
            times[name].append(timed(name))
    median = {name: statistics.median(values) for name, values in times.items()}

    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__}")
    print(
        f"V={args.vocab} d={args.dim} batch={args.batch}x{args.time} (N={args.batch * args.time}), "
        f"{args.rounds} rounds x {args.steps} steps, alternating order, after {args.warmup} warm-up steps"
    )
    for name, values in times.items():
        spread = f"min {min(values) * 1e3:.1f} / max {max(values) * 1e3:.1f}"
        print(f"  {name:>13}: median {median[name] * 1e3:8.1f} ms/step ({spread})")
    print(f"  ratio skd / cross_entropy = {median['skd'] / median['cross_entropy']:.3f}  (target <= 1.05)")

    # ---- memory of the loss alone (forward + backward on existing logits)
    n_rows = args.batch * args.time
    nv_mib = n_rows * args.vocab * 4 / MIB
    weight = runs["skd"][0].output_embedding.detach()
    losses = {
        "cross_entropy": lambda z: F.cross_entropy(z.flatten(0, 1), targets.flatten()),
        "skd": lambda z: skd_loss(z, targets, weight),
    }
    loss_times: dict[str, list[float]] = {name: [] for name in losses}
    fixed_logits = torch.randn(args.batch, args.time, args.vocab, device=device, requires_grad=True)
    for round_index in range(args.rounds + 1):
        order = list(losses) if round_index % 2 == 0 else list(reversed(losses))
        for name in order:
            sync()
            start = time.perf_counter()
            for _ in range(args.steps):
                fixed_logits.grad = None
                losses[name](fixed_logits).backward()
            sync()
            if round_index > 0:  # round 0 warms up
                loss_times[name].append((time.perf_counter() - start) / args.steps)
    loss_median = {name: statistics.median(values) for name, values in loss_times.items()}
    print("time of the loss alone (forward + backward on fixed (N, V) logits):")
    for name in losses:
        print(f"  {name:>13}: median {loss_median[name] * 1e3:8.2f} ms")
    print(f"  ratio skd / cross_entropy = {loss_median['skd'] / loss_median['cross_entropy']:.3f}")
    nd_mib = n_rows * args.dim * 4 / MIB
    print(f"memory of the loss alone (one (N, V) float32 tensor = {nv_mib:.1f} MiB; (N, d) = {nd_mib:.1f} MiB):")
    for name, loss_fn in losses.items():
        logits = torch.randn(args.batch, args.time, args.vocab, device=device, requires_grad=True)
        tracker = LiveBytes()
        with tracker:
            loss = loss_fn(logits)
            kept = tracker.live
            forward_peak = tracker.peak
            loss.backward()
            del loss
        line = (
            f"  {name:>13}: kept for backward {kept / MIB:7.1f} MiB, forward peak {forward_peak / MIB:7.1f} MiB, "
            f"forward+backward peak {tracker.peak / MIB:7.1f} MiB (incl. the {nv_mib:.1f} MiB gradient of the logits)"
        )
        if device.type == "cuda":
            logits.grad = None
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            loss_fn(logits).backward()
            torch.cuda.synchronize(device)
            extra = (torch.cuda.max_memory_allocated(device) - before) / MIB
            line += f"; cuda max_memory_allocated above the logits: {extra:.1f} MiB"
        print(line)

    if device.type == "cuda":
        print("peak memory of a whole training step (cuda max_memory_allocated):")
        for name in runs:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            step(name)
            torch.cuda.synchronize(device)
            print(f"  {name:>13}: {torch.cuda.max_memory_allocated(device) / MIB:.1f} MiB")


if __name__ == "__main__":
    main()
