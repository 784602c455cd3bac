"""``TokenBatchSampler``: length-bucketed batches bounded by a token count, correct under DDP.

A batch of ``n`` pairs costs ``n * max(longest source, longest target)`` tokens (the padded size of the longer side,
as fairseq's ``--max-tokens``); lengths are the rows the model sees (source with its EOS, target with its EOS).

How batches are made, every epoch:

1. Training: the pairs are put in a random order (seeded by ``seed`` and the epoch), then sorted by their cost
   length ``max(source, target)`` (a stable sort: pairs of equal length stay in random order). Evaluation: sorted by
   length with the pair index breaking ties (the same order every time).
2. Greedy bucketing: a batch is closed when one more pair would exceed ``max_tokens`` (or ``max_sentences``). A pair
   longer than ``max_tokens`` on its own gets a batch of its own (the only way a batch exceeds the budget; the data
   module filters or truncates such pairs in training when asked to).
3. Training: the batch list is shuffled (same seed). The number of batches depends only on the sorted lengths, so it
   is the same in every epoch.
4. Ranks: every rank builds the same global list, and rank ``r`` of ``W`` takes batches ``r, r + W, ...``. Training
   needs the *same number* of batches on every rank (DDP's gradient all-reduce runs once per step; a rank with one
   batch more waits forever), so while the count is not a multiple of ``W`` the batch with most pairs is split in two
   halves (a split never exceeds the budget, and no pair is repeated or dropped: every pair is seen exactly once per
   epoch across ranks). Evaluation splits batches only until every rank has at least one; ranks may then differ by
   one batch, which is safe because no collective runs per evaluation step.

The class is a ``DistributedSampler`` (yielding one list of pair indices per batch) so that Lightning, whose
``use_distributed_sampler`` replaces every other sampler under DDP, leaves it alone: the data module passes it as the
``sampler`` of a ``DataLoader`` with ``batch_size=None`` and reads the rank and world size from the trainer. Lightning
calls :meth:`set_epoch` at the start of each training epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DistributedSampler

__all__ = ["TokenBatchSampler", "make_token_batches"]


def make_token_batches(
    order: np.ndarray, cost_lengths: np.ndarray, max_tokens: int, max_sentences: int | None = None
) -> list[np.ndarray]:
    """Cut ``order`` (pair indices, sorted by length) into consecutive batches within the token budget.

    Args:
        order: ``(N,)`` pair indices in the order to batch them.
        cost_lengths: ``(num_pairs,)`` cost length of every pair, ``max(source length, target length)``.
        max_tokens: Largest ``batch size * longest cost length`` of a batch (a longer single pair gets its own).
        max_sentences: Largest number of pairs in a batch (``None``: no limit).

    Returns:
        The batches, each an ``int64`` array of pair indices.

    Example:
        >>> [b.tolist() for b in make_token_batches(np.arange(5), np.array([2, 2, 3, 3, 9]), max_tokens=8)]
        [[0, 1], [2, 3], [4]]

    """
    batches: list[np.ndarray] = []
    start, longest = 0, 0
    lengths = cost_lengths[order]
    for position, length in enumerate(lengths.tolist()):
        candidate = max(longest, length)
        size = position - start
        if size > 0 and (candidate * (size + 1) > max_tokens or (max_sentences is not None and size >= max_sentences)):
            batches.append(order[start:position])
            start, candidate = position, length
        longest = candidate
    if start < len(order):
        batches.append(order[start:])
    return batches


class TokenBatchSampler(DistributedSampler):
    """Yields this rank's batches (lists of pair indices) of at most ``max_tokens`` padded tokens each.

    Args:
        source_lengths: ``(N,)`` source row length of every pair (EOS included).
        target_lengths: ``(N,)`` target row length of every pair (EOS included).
        max_tokens: Budget of ``batch size * max(longest source, longest target)``.
        max_sentences: Optional limit on the pairs per batch.
        shuffle: Random order within equal lengths and shuffled batches, reseeded every epoch (training).
            ``False``: sorted by length, ties by index (evaluation; the same order every time).
        seed: Seed of the shuffling (the epoch is added).
        num_replicas: World size (``1`` outside DDP).
        rank: This process's rank.
        even_batches: Split batches until every rank has the same number (needed for training under DDP);
            ``False``: only until every rank has at least one (evaluation).

    Raises:
        ValueError: On a bad argument, or when the pairs cannot be spread over the ranks (fewer pairs than ranks).

    Example:
        >>> sampler = TokenBatchSampler([3, 3, 5, 5, 2], [3, 4, 5, 6, 2], max_tokens=12, shuffle=False)
        >>> [list(b) for b in sampler]
        [[4, 0, 1], [2, 3]]

    """

    def __init__(
        self,
        source_lengths: Sequence[int] | np.ndarray | torch.Tensor,
        target_lengths: Sequence[int] | np.ndarray | torch.Tensor,
        max_tokens: int,
        max_sentences: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        even_batches: bool = True,
    ) -> None:
        # DistributedSampler.__init__ would ask torch.distributed for the world size: set its attributes directly.
        source = np.asarray(source_lengths, dtype=np.int64)
        target = np.asarray(target_lengths, dtype=np.int64)
        if source.ndim != 1 or source.shape != target.shape:
            raise ValueError(
                "TokenBatchSampler: `source_lengths` and `target_lengths` must be 1-D of equal length, got shapes "
                f"{source.shape} and {target.shape}"
            )
        for name, value in (("max_tokens", max_tokens), ("num_replicas", num_replicas)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TokenBatchSampler: `{name}` must be an integer >= 1, got {value!r}")
        if max_sentences is not None and (
            isinstance(max_sentences, bool) or not isinstance(max_sentences, int) or max_sentences < 1
        ):
            raise ValueError(
                f"TokenBatchSampler: `max_sentences` must be an integer >= 1 or None, got {max_sentences!r}"
            )
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"TokenBatchSampler: `rank` must be an integer in [0, {num_replicas}), got {rank!r}")
        if len(source) < num_replicas:
            raise ValueError(
                f"TokenBatchSampler: {len(source)} pairs cannot be spread over {num_replicas} processes (every "
                "process needs at least one batch)"
            )
        self.dataset = source  # what DistributedSampler keeps; only its length is used
        self.cost_lengths = np.maximum(source, target)  # (N,)
        self.max_tokens = max_tokens
        self.max_sentences = max_sentences
        self.shuffle = shuffle
        self.even_batches = even_batches
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.drop_last = False
        self._cache: tuple[int, list[np.ndarray]] | None = None

    def global_batches(self) -> list[np.ndarray]:
        """Return this epoch's batches of all ranks in dealing order (rank ``r`` gets ``r::num_replicas``)."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        num_pairs = len(self.cost_lengths)
        if self.shuffle:
            generator = np.random.default_rng([self.seed, self.epoch])
            order = generator.permutation(num_pairs)
            order = order[np.argsort(self.cost_lengths[order], kind="stable")]
        else:
            order = np.argsort(self.cost_lengths, kind="stable")
        batches = make_token_batches(order, self.cost_lengths, self.max_tokens, self.max_sentences)
        if self.shuffle:
            batches = [batches[i] for i in generator.permutation(len(batches))]
        batches = self._split_for_ranks(batches)
        self._cache = (self.epoch, batches)
        return batches

    def _split_for_ranks(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        """Split the largest batches in two until the ranks get equal counts (training) or at least one each."""

        def done() -> bool:
            if self.even_batches:
                return len(batches) % self.num_replicas == 0
            return len(batches) >= self.num_replicas

        while not done():
            largest = max(range(len(batches)), key=lambda i: (len(batches[i]), -i))
            if len(batches[largest]) < 2:  # every batch holds one pair and the count is still uneven
                raise ValueError(
                    f"TokenBatchSampler: cannot give {self.num_replicas} processes the same number of batches: "
                    f"{len(batches)} batches of one pair each. Use a number of pairs divisible by the number of "
                    "processes or a larger `max_tokens`"
                )
            half = (len(batches[largest]) + 1) // 2
            batches[largest : largest + 1] = [batches[largest][:half], batches[largest][half:]]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches()[self.rank :: self.num_replicas]:
            yield batch.tolist()

    def __len__(self) -> int:
        batches = self.global_batches()
        return len(range(self.rank, len(batches), self.num_replicas))
