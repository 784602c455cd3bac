"""Evaluation samplers under DDP: every sample evaluated exactly once, so distributed metrics equal single-process ones.

Lightning's default under DDP is a ``DistributedSampler`` that pads the dataset to a multiple of the world size by
repeating its first samples: with 359 test images on 2 processes one image is evaluated twice, and every logged
metric is a (slightly) different number from the single-process one. The DataModules of :mod:`lightning_skd.data`
give their validation, test and predict loaders Lightning's ``UnrepeatedDistributedSampler`` instead (ranks differ by
at most one sample; Lightning leaves a loader that already has a ``DistributedSampler`` alone). That is safe for
evaluation: no collective runs per evaluation step (metric states are synchronised once, at ``compute``), and DDP
synchronises buffers only on the first forward pass after training, which every rank makes as long as the dataset
has at least ``world_size`` samples.
"""

from __future__ import annotations

from torch.utils.data import Dataset

from lightning_skd._lightning import UnrepeatedDistributedSampler, pl


def evaluation_sampler(trainer: pl.Trainer | None, dataset: Dataset, owner: str) -> UnrepeatedDistributedSampler | None:
    """The sampler of an evaluation loader: unrepeated distributed under multi-process runs, else ``None``.

    Args:
        trainer: The trainer the DataModule is attached to (``None`` outside a trainer: plain loader).
        dataset: The evaluation dataset.
        owner: Name used in the error message (the DataModule's class).

    Raises:
        ValueError: If the dataset has fewer samples than processes (a rank would get no batch and DDP could hang).

    Example:
        >>> evaluation_sampler(None, list(range(5)), "MyDataModule") is None
        True

    """
    if trainer is None or trainer.world_size <= 1:
        return None
    if len(dataset) < trainer.world_size:
        raise ValueError(
            f"{owner}: an evaluation split needs at least one sample per process; expected >= {trainer.world_size} "
            f"samples, got {len(dataset)}"
        )
    return UnrepeatedDistributedSampler(
        dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
    )
