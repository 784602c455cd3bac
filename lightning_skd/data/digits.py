"""scikit-learn's bundled 8x8 handwritten digits: the project's embedded, download-free default dataset."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset
from torchvision.transforms import v2

from lightning_skd._lightning import rank_zero_info
from lightning_skd.data.base import ClassificationDataModule, check_fraction, stratified_split
from lightning_skd.data.indexed import IndexedDataset


class DigitsDataModule(ClassificationDataModule):
    """The 1797 8x8 digit images of ``sklearn.datasets.load_digits`` (10 classes), held as tensors in memory.

    The samples are split into train / validation / test parts, stratified by class and fixed by ``seed``. Pixels
    (0..16 in the source) are scaled to [0, 1] and then normalised with the mean and standard deviation of all
    *training* pixels, giving inputs of shape ``(1, 8, 8)``. Every batch is ``(inputs, targets, indices)``, see
    :class:`~lightning_skd.data.base.ClassificationDataModule`.

    Augmentation is **off by default** (fast, deterministic demo runs). With ``augment=True`` each training image is
    shifted by up to one pixel in each direction (padding with the background value), i.e. a ``RandomCrop(8,
    padding=1)``; validation and test images are never augmented.

    After :meth:`setup`, ``split_indices`` maps ``"train"``, ``"val"`` and ``"test"`` to the sorted positions of
    that split's samples in ``load_digits()``, and ``mean`` / ``std`` hold the normalisation statistics.

    Args:
        val_fraction: Fraction of all samples held out for validation, in (0, 1).
        test_fraction: Fraction of all samples held out for testing, in (0, 1); ``val_fraction + test_fraction``
            must leave training samples.
        augment: Randomly shift training images by up to one pixel.
        batch_size: Training batch size.
        eval_batch_size: Batch size of the evaluation loaders; ``None`` uses ``batch_size``.
        num_workers: Loader worker processes (0 is fastest for this small in-memory dataset).
        pin_memory: Pin host memory of batches.
        persistent_workers: Keep workers alive between epochs (needs ``num_workers > 0``).
        seed: Seed of the split.

    Example:
        >>> dm = DigitsDataModule(batch_size=32, seed=0)
        >>> dm.num_classes, dm.in_channels, dm.image_size
        (10, 1, 8)
        >>> dm.setup("fit")
        >>> len(dm.train_dataset), len(dm.val_dataset)
        (1079, 359)
        >>> x, y, idx = next(iter(dm.train_dataloader()))
        >>> tuple(x.shape), y.dtype, idx.dtype
        ((32, 1, 8, 8), torch.int64, torch.int64)

    """

    def __init__(
        self,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        augment: bool = False,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=persistent_workers,
            seed=seed,
        )
        check_fraction(type(self).__name__, "val_fraction", val_fraction)
        check_fraction(type(self).__name__, "test_fraction", test_fraction)
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(
                f"DigitsDataModule: `val_fraction + test_fraction` must be < 1 to leave training samples, "
                f"got {val_fraction} + {test_fraction}"
            )
        self.save_hyperparameters()
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.augment = augment
        self.mean: float | None = None
        self.std: float | None = None
        self.split_indices: dict[str, np.ndarray] = {}

    @property
    def num_classes(self) -> int:
        """10 classes, the digits 0-9."""
        return 10

    @property
    def in_channels(self) -> int:
        """One (grey-level) channel."""
        return 1

    @property
    def image_size(self) -> int:
        """8x8 pixels."""
        return 8

    @property
    def class_names(self) -> list[str]:
        """``"0"`` to ``"9"``."""
        return [str(digit) for digit in range(10)]

    def setup(self, stage: str | None = None) -> None:
        """Load, split and normalise the digits (once; later calls reuse the split)."""
        if self.train_dataset is not None:
            return
        digits = load_digits()
        images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        targets = torch.as_tensor(digits.target, dtype=torch.int64)
        n = len(targets)
        n_val, n_test = round(self.val_fraction * n), round(self.test_fraction * n)
        train_idx, val_idx, test_idx = stratified_split(digits.target, [n_val, n_test], seed=self.seed)
        self.split_indices = {"train": train_idx, "val": val_idx, "test": test_idx}

        train_pixels = images[torch.as_tensor(train_idx)]
        self.mean, self.std = train_pixels.mean().item(), train_pixels.std().item()
        images = (images - self.mean) / self.std
        background = (0.0 - self.mean) / self.std
        train_transform = v2.RandomCrop(8, padding=1, fill=background) if self.augment else None

        def part(idx, transform=None) -> IndexedDataset:
            idx = torch.as_tensor(idx)
            return IndexedDataset(TensorDataset(images[idx], targets[idx]), transform=transform)

        self.train_dataset = part(train_idx, train_transform)
        self.val_dataset = part(val_idx)
        self.test_dataset = part(test_idx)
        rank_zero_info(
            f"DigitsDataModule: {len(train_idx)} train / {len(val_idx)} val / {len(test_idx)} test samples "
            f"(seed={self.seed}, augment={self.augment})"
        )
