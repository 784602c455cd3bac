"""Shared base of the image-classification DataModules: loader settings, argument checks and seeded splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset

from lightning_skd._lightning import LightningDataModule, rank_zero_warn, warn_if_mixed
from lightning_skd._warnings import LightningSKDWarning
from lightning_skd.data.samplers import evaluation_sampler


def check_positive_int(owner: str, name: str, value: object) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is an ``int`` greater than zero."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{owner}: `{name}` must be an integer > 0, got {value!r}")


def check_non_negative_int(owner: str, name: str, value: object) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is an ``int`` greater than or equal to zero."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{owner}: `{name}` must be an integer >= 0, got {value!r}")


def check_fraction(owner: str, name: str, value: object) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is a number strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ValueError(f"{owner}: `{name}` must be a number in the open interval (0, 1), got {value!r}")


def stratified_split(targets: Sequence[int] | np.ndarray, sizes: Sequence[int], seed: int) -> list[np.ndarray]:
    """Split ``range(len(targets))`` into parts of the given sizes, stratified by class and seeded.

    The first part gets the remaining samples: ``sizes`` lists the sizes of the *other* parts. Each part is returned
    as a sorted ``int64`` array, so the same ``seed`` always gives the same split. Falls back to a plain seeded random
    split (with a warning) when a part is too small to hold every class.

    Args:
        targets: Class label of every sample.
        sizes: Sizes of the parts split off after the first one; their sum must be below ``len(targets)``.
        seed: Seed of the split.

    Returns:
        ``len(sizes) + 1`` index arrays: the remainder first, then one array per entry of ``sizes``.

    Example:
        >>> rest, held_out = stratified_split([0, 0, 0, 0, 1, 1, 1, 1], [4], seed=0)
        >>> len(rest), len(held_out), sorted(np.asarray([0, 0, 0, 0, 1, 1, 1, 1])[held_out].tolist())
        (4, 4, [0, 0, 1, 1])

    """
    targets = np.asarray(targets)
    if sum(sizes) >= len(targets):
        raise ValueError(f"stratified_split: the split sizes {list(sizes)} leave no sample of {len(targets)} over")
    remaining = np.arange(len(targets), dtype=np.int64)
    parts: list[np.ndarray] = []
    for size in sizes:
        if size == 0:
            parts.append(np.empty(0, dtype=np.int64))
            continue
        try:
            remaining, part = train_test_split(
                remaining, test_size=size, random_state=seed, stratify=targets[remaining]
            )
        except ValueError as err:  # a class with a single sample, or fewer held-out samples than classes
            rank_zero_warn(
                f"stratified_split: falling back to a non-stratified random split ({err})", category=LightningSKDWarning
            )
            remaining, part = train_test_split(remaining, test_size=size, random_state=seed)
        parts.append(np.sort(part))
    return [np.sort(remaining), *parts]


class ClassificationDataModule(LightningDataModule):
    """Base of the image-classification DataModules of :mod:`lightning_skd.data`.

    Every batch of every loader is ``(inputs, targets, indices)``: ``inputs`` a float tensor ``(B, C, H, W)``,
    ``targets`` an ``int64`` tensor ``(B,)`` and ``indices`` an ``int64`` tensor ``(B,)`` holding each sample's
    position in that split's dataset (see :class:`~lightning_skd.data.indexed.IndexedDataset`). The training loader
    shuffles and keeps the last partial batch (``drop_last=False``) so every training sample is seen every epoch;
    the other loaders keep the dataset order. Under DDP Lightning gives the training loader its own
    ``DistributedSampler``; the evaluation loaders get an unrepeated one, so each sample is evaluated exactly once
    (see :mod:`lightning_skd.data.samplers`).

    Subclasses set ``train_dataset``, ``val_dataset``, ``test_dataset`` (and optionally ``predict_dataset``, which
    defaults to the test set) in :meth:`setup`, and provide the :attr:`num_classes`, :attr:`in_channels` and
    :attr:`image_size` properties, which a model can read (e.g. through ``LightningCLI.link_arguments``) without the
    data being loaded.

    Args:
        batch_size: Training batch size.
        eval_batch_size: Batch size of the validation, test and predict loaders; ``None`` uses ``batch_size``.
        num_workers: Worker processes per loader (0 loads in the main process).
        pin_memory: Pin host memory of batches (useful when training on a GPU).
        persistent_workers: Keep workers alive between epochs; ignored with a warning when ``num_workers == 0``.
        seed: Seed of the dataset splits (not of the shuffling, which follows Lightning's ``seed_everything``).

    """

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        warn_if_mixed(type(self).__name__)
        owner = type(self).__name__
        check_positive_int(owner, "batch_size", batch_size)
        if eval_batch_size is not None:
            check_positive_int(owner, "eval_batch_size", eval_batch_size)
        check_non_negative_int(owner, "num_workers", num_workers)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"{owner}: `seed` must be an integer, got {seed!r}")
        if persistent_workers and num_workers == 0:
            rank_zero_warn(
                f"{owner}: `persistent_workers=True` needs `num_workers > 0`; ignoring it", category=LightningSKDWarning
            )
            persistent_workers = False
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size if eval_batch_size is not None else batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.seed = seed
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None
        self.predict_dataset: Dataset | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes (targets lie in ``0 .. num_classes - 1``)."""
        raise NotImplementedError

    @property
    def in_channels(self) -> int:
        """Number of channels ``C`` of the inputs."""
        raise NotImplementedError

    @property
    def image_size(self) -> int:
        """Side ``H == W`` of the (square) inputs."""
        raise NotImplementedError

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one input."""
        return (self.in_channels, self.image_size, self.image_size)

    @property
    def class_names(self) -> list[str] | None:
        """Human-readable class names in label order, or ``None`` where they are unknown (yet)."""
        return None

    def train_dataloader(self) -> DataLoader:
        """Shuffled loader over the training split, keeping the last partial batch."""
        return self._loader(self._require(self.train_dataset, "train", "fit"), self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        """Loader over the validation split, in dataset order."""
        return self._loader(self._require(self.val_dataset, "validation", "fit"), self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        """Loader over the test split, in dataset order."""
        return self._loader(self._require(self.test_dataset, "test", "test"), self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        """Loader over the predict split (the test split unless a subclass sets another), in dataset order."""
        dataset = self.predict_dataset if self.predict_dataset is not None else self.test_dataset
        return self._loader(self._require(dataset, "predict", "predict"), self.eval_batch_size)

    def _require(self, dataset: Dataset | None, split: str, stage: str) -> Dataset:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}: the {split} split is not set up; call setup({stage!r}) first")
        return dataset

    def _loader(self, dataset: Dataset, batch_size: int, train: bool = False) -> DataLoader:
        sampler = None if train else evaluation_sampler(self.trainer, dataset, type(self).__name__)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            sampler=sampler,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )
