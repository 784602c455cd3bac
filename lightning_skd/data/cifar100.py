"""CIFAR-100 through ``torchvision.datasets.CIFAR100`` with the PS-KD paper's augmentation."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from torch.utils.data import Subset
from torchvision.datasets import CIFAR100
from torchvision.transforms import v2

from lightning_skd._lightning import rank_zero_info
from lightning_skd.data.base import ClassificationDataModule, check_non_negative_int, stratified_split
from lightning_skd.data.indexed import IndexedDataset
from lightning_skd.regularizers.cutout import Cutout

MEAN = (0.5071, 0.4865, 0.4409)
STD = (0.2673, 0.2564, 0.2762)
FOLDER = CIFAR100.base_folder  # "cifar-100-python"
FILES = ("train", "test", "meta")


class _UnverifiedCIFAR100(CIFAR100):
    """``CIFAR100`` that only checks the files exist instead of comparing their MD5 sums."""

    def _check_integrity(self) -> bool:
        folder = os.path.join(self.root, self.base_folder)
        return all(os.path.isfile(os.path.join(folder, name)) for name, _ in self.train_list + self.test_list)

    def _load_meta(self) -> None:
        with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


class CIFAR100DataModule(ClassificationDataModule):
    """CIFAR-100 (50k train / 10k test 32x32 colour images, 100 classes) for image classification with Self-KD.

    Data come from ``<data_dir>/cifar-100-python/{train,test,meta}`` (the extracted python version of the dataset),
    read by ``torchvision.datasets.CIFAR100``; ``download=True`` fetches them there in ``prepare_data`` (network
    needed). Training images get the paper's augmentation: 4-pixel zero padding, random 32x32 crop and random
    horizontal flip; every image is then normalised with the CIFAR-100 channel mean/std. Inputs are ``(3, 32, 32)``
    and batches ``(inputs, targets, indices)``.

    Validation: by default (``val_size=0``) the **test set doubles as the validation set**, as the PS-KD paper
    trains on all 50k images and reports test numbers. Set ``val_size`` > 0 to hold out that many training images
    (stratified, fixed by ``seed``, without augmentation) for validation/model selection instead.

    Args:
        data_dir: Folder holding (or to receive) ``cifar-100-python/``.
        download: Download and extract the dataset into ``data_dir`` first.
        val_size: Number of training images held out for validation (0: validate on the test set).
        verify_checksums: Check the files' MD5 sums against torchvision's (turn off for re-pickled copies).
        cutout: Side of the Cutout hole applied to training images after normalisation (Kim et al.: 8); 0: none.
        batch_size: Training batch size (128 in the paper for ResNet/DenseNet).
        eval_batch_size: Batch size of the evaluation loaders; ``None`` uses ``batch_size``.
        num_workers: Loader worker processes.
        pin_memory: Pin host memory of batches.
        persistent_workers: Keep workers alive between epochs (needs ``num_workers > 0``).
        seed: Seed of the train/validation split.

    Example:
        >>> dm = CIFAR100DataModule("data", val_size=5000)
        >>> dm.num_classes, dm.in_channels, dm.image_size
        (100, 3, 32)

    """

    def __init__(
        self,
        data_dir: str,
        download: bool = False,
        val_size: int = 0,
        verify_checksums: bool = True,
        cutout: int = 0,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
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
        check_non_negative_int(type(self).__name__, "val_size", val_size)
        check_non_negative_int(type(self).__name__, "cutout", cutout)
        self.save_hyperparameters()
        self.cutout = cutout
        self.data_dir = Path(data_dir)
        self.download = download
        self.val_size = val_size
        self.verify_checksums = verify_checksums
        self._classes: list[str] | None = None

    @property
    def num_classes(self) -> int:
        """100 (fine-label) classes."""
        return 100

    @property
    def in_channels(self) -> int:
        """Three (RGB) channels."""
        return 3

    @property
    def image_size(self) -> int:
        """32x32 pixels."""
        return 32

    @property
    def class_names(self) -> list[str] | None:
        """The fine-label names from the ``meta`` file once :meth:`setup` has run, else ``None``."""
        return self._classes

    @staticmethod
    def train_transform(cutout: int = 0) -> v2.Compose:
        """Build the paper's training augmentation: pad 4, random crop 32, horizontal flip, normalise, Cutout."""
        steps = [
            v2.ToImage(),
            v2.RandomCrop(32, padding=4),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ]
        return v2.Compose(steps + ([Cutout(cutout)] if cutout else []))

    @staticmethod
    def eval_transform() -> v2.Compose:
        """Build the evaluation transform: normalisation only."""
        return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])

    def prepare_data(self) -> None:
        """Download and extract the dataset with torchvision when ``download=True``; otherwise do nothing."""
        if self.download:
            CIFAR100(str(self.data_dir), train=True, download=True)

    def _check_files(self) -> None:
        folder = self.data_dir / FOLDER
        missing = [name for name in FILES if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"CIFAR100DataModule: CIFAR-100 not found: expected the folder {str(folder)!r} with the files "
                f"{', '.join(FILES)} (missing: {', '.join(missing)}). Pass download=True on a machine with network "
                f"access, or download https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz and extract it into "
                f"{str(self.data_dir)!r}."
            )

    def _dataset(self, train: bool) -> CIFAR100:
        cls = CIFAR100 if self.verify_checksums else _UnverifiedCIFAR100
        try:
            return cls(str(self.data_dir), train=train)
        except RuntimeError as err:
            raise RuntimeError(
                f"CIFAR100DataModule: the files in {str(self.data_dir / FOLDER)!r} failed torchvision's checksum "
                f"check ({err}). Re-download them (download=True after removing the folder), or pass "
                f"verify_checksums=False if they are a trusted re-packed copy."
            ) from err

    def setup(self, stage: str | None = None) -> None:
        """Load both CIFAR-100 splits and build train/validation/test datasets (once; later calls reuse them)."""
        if self.train_dataset is not None:
            return
        self._check_files()
        train_full, test = self._dataset(train=True), self._dataset(train=False)
        self._classes = list(train_full.classes)
        if self.val_size >= len(train_full):
            raise ValueError(
                f"CIFAR100DataModule: `val_size` must be smaller than the {len(train_full)} training images, "
                f"got {self.val_size}"
            )
        eval_transform = self.eval_transform()
        self.test_dataset = IndexedDataset(test, eval_transform)
        if self.val_size == 0:
            self.train_dataset = IndexedDataset(train_full, self.train_transform(self.cutout))
            self.val_dataset = IndexedDataset(test, eval_transform)
        else:
            train_idx, val_idx = stratified_split(train_full.targets, [self.val_size], seed=self.seed)
            self.train_dataset = IndexedDataset(
                Subset(train_full, train_idx.tolist()), self.train_transform(self.cutout)
            )
            self.val_dataset = IndexedDataset(Subset(train_full, val_idx.tolist()), eval_transform)
        rank_zero_info(
            f"CIFAR100DataModule: {len(self.train_dataset)} train / {len(self.val_dataset)} val "
            f"({'test set' if self.val_size == 0 else 'held out'}) / {len(self.test_dataset)} test images"
        )
