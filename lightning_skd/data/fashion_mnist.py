"""Fashion-MNIST read from the standard idx files of a local folder (e.g. Debian's ``dataset-fashion-mnist``)."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset, TensorDataset
from torchvision.transforms import v2

from lightning_skd._lightning import rank_zero_info
from lightning_skd.data.base import (
    ClassificationDataModule,
    check_non_negative_int,
    check_positive_int,
    stratified_split,
)
from lightning_skd.data.indexed import IndexedDataset
from lightning_skd.regularizers.cutout import Cutout

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
"""Where the Debian package ``dataset-fashion-mnist`` installs the four ``*-ubyte.gz`` files."""

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
"""Base names of the idx files; each may be stored raw or gzip-compressed (``<name>.gz``)."""

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MEAN, STD = 0.2860, 0.3530  # statistics of the 60k training images scaled to [0, 1]

_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (the MNIST format), raw or gzip-compressed, into a numpy array.

    The header is checked: two zero bytes, a type code, the number of dimensions, then one big-endian ``uint32``
    per dimension, followed by exactly ``prod(dims)`` values.

    Args:
        path: The file; gzip compression is detected from its content, not its name.

    Returns:
        The array, of shape ``dims`` and in native byte order (``uint8`` for Fashion-MNIST).

    Raises:
        ValueError: The file is not a well-formed idx file.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte")
        >>> with open(path, "wb") as f:
        ...     _ = f.write(bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 2, 9]))
        >>> read_idx(path)
        array([7, 2, 9], dtype=uint8)

    """
    path = Path(path)
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an idx file (bad magic number {data[:4].hex() or 'empty'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated idx header ({len(data)} bytes for {ndim} dimensions)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{path}: idx body has {len(data) - header} bytes, the header {dims} implies {expected}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


class FashionMNISTDataModule(ClassificationDataModule):
    """Fashion-MNIST (60k train / 10k test 28x28 grey images, 10 classes) from a local folder of idx files.

    ``data_dir`` must hold ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
    ``t10k-labels-idx1-ubyte``, each raw or as ``<name>.gz``. The default is where the Debian package
    ``dataset-fashion-mnist`` puts them (``apt-get install dataset-fashion-mnist``). Torchvision's download layout
    ``<data_dir>/FashionMNIST/raw/`` is also searched, so ``download=True`` (network needed, ``data_dir`` writable)
    fetches the files with ``torchvision.datasets.FashionMNIST`` and then reads them from there.

    The validation split is ``val_size`` training images, stratified by class and fixed by ``seed``; with
    ``val_size=0`` the test set is used for validation. ``train_size`` keeps only that many of the other training
    images (stratified, fixed by ``seed``; the rest is unused), for small-data regimes; the validation split does
    not depend on it. Images are kept in memory as ``uint8`` and converted per item to ``float32`` in [0, 1], then
    normalised with the usual Fashion-MNIST mean/std (0.2860, 0.3530), giving inputs of shape ``(1, 28, 28)``.
    Augmentation is off by default; ``augment=True`` applies ``RandomCrop(28, padding=2)`` and a horizontal flip to
    training images. Batches are ``(inputs, targets, indices)``.

    Args:
        data_dir: Folder of the idx files.
        download: Download the files into ``data_dir/FashionMNIST/raw`` first (in ``prepare_data``).
        val_size: Number of training images held out for validation (0: validate on the test set).
        train_size: Number of training images trained on, a stratified subset of those not held out; ``None``: all.
        augment: Random crop with 2-pixel padding and horizontal flip for training images.
        cutout: Side of the Cutout hole applied to training images after normalisation; 0: none.
        batch_size: Training batch size.
        eval_batch_size: Batch size of the evaluation loaders; ``None`` uses ``batch_size``.
        num_workers: Loader worker processes.
        pin_memory: Pin host memory of batches.
        persistent_workers: Keep workers alive between epochs (needs ``num_workers > 0``).
        seed: Seed of the train/validation split.

    Example:
        >>> dm = FashionMNISTDataModule(val_size=5000)
        >>> dm.num_classes, dm.in_channels, dm.image_size, dm.class_names[0]
        (10, 1, 28, 'T-shirt/top')

    """

    def __init__(
        self,
        data_dir: str = DEFAULT_DATA_DIR,
        download: bool = False,
        val_size: int = 5000,
        train_size: int | None = None,
        augment: bool = False,
        cutout: int = 0,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
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
        if train_size is not None:
            check_positive_int(type(self).__name__, "train_size", train_size)
        self.save_hyperparameters()
        self.cutout = cutout
        self.data_dir = Path(data_dir)
        self.download = download
        self.val_size = val_size
        self.train_size = train_size
        self.augment = augment

    @property
    def num_classes(self) -> int:
        """10 classes."""
        return 10

    @property
    def in_channels(self) -> int:
        """One (grey-level) channel."""
        return 1

    @property
    def image_size(self) -> int:
        """28x28 pixels."""
        return 28

    @property
    def class_names(self) -> list[str]:
        """The ten Fashion-MNIST class names in label order."""
        return list(CLASS_NAMES)

    def prepare_data(self) -> None:
        """Download the idx files with torchvision when ``download=True``; otherwise do nothing."""
        if self.download:
            from torchvision.datasets import FashionMNIST

            for train in (True, False):
                FashionMNIST(str(self.data_dir), train=train, download=True)

    def find_files(self) -> dict[str, Path]:
        """Locate the four idx files (raw or ``.gz``) in ``data_dir`` or ``data_dir/FashionMNIST/raw``.

        Raises:
            FileNotFoundError: Some file is missing; the message names the folder, the files and how to get them.

        """
        folders = [self.data_dir, self.data_dir / "FashionMNIST" / "raw"]
        found: dict[str, Path] = {}
        for key, name in FILES.items():
            candidates = [folder / file for folder in folders for file in (name, f"{name}.gz")]
            existing = [path for path in candidates if path.is_file()]
            if existing:
                found[key] = existing[0]
        missing = [FILES[key] for key in FILES if key not in found]
        if missing:
            raise FileNotFoundError(
                f"FashionMNISTDataModule: Fashion-MNIST not found in {str(self.data_dir)!r}: missing "
                f"{', '.join(f'{name}[.gz]' for name in missing)} (expected the four files "
                f"{', '.join(f'{name}[.gz]' for name in FILES.values())} in that folder or in its FashionMNIST/raw/). "
                f"Install them with `apt-get install dataset-fashion-mnist` (data_dir={DEFAULT_DATA_DIR!r}) or pass "
                f"download=True with a writable data_dir on a machine with network access."
            )
        return found

    def _load(self, files: dict[str, Path], split: str) -> TensorDataset:
        images, labels = read_idx(files[f"{split}_images"]), read_idx(files[f"{split}_labels"])
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise ValueError(
                f"{files[f'{split}_images']}: expected uint8 images of shape (N, 28, 28), "
                f"got {images.dtype} {images.shape}"
            )
        if labels.shape != (len(images),):
            raise ValueError(
                f"{files[f'{split}_labels']}: expected {len(images)} labels to match the images, got shape "
                f"{labels.shape}"
            )
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < self.num_classes:
            raise ValueError(f"{files[f'{split}_labels']}: labels must lie in 0..{self.num_classes - 1}")
        return TensorDataset(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))

    def _transform(self, train: bool) -> v2.Compose:
        steps: list = [v2.ToDtype(torch.float32, scale=True)]
        if train and self.augment:
            steps += [v2.RandomCrop(28, padding=2), v2.RandomHorizontalFlip()]
        steps.append(v2.Normalize([MEAN], [STD]))
        if train and self.cutout:
            steps.append(Cutout(self.cutout))
        return v2.Compose(steps)

    def setup(self, stage: str | None = None) -> None:
        """Read the idx files and build the splits (once; later calls reuse them)."""
        if self.train_dataset is not None:
            return
        files = self.find_files()
        train_full, test = self._load(files, "train"), self._load(files, "test")
        held_out = [self.val_size] + ([] if self.train_size is None else [self.train_size])
        if sum(held_out) >= len(train_full):
            sizes = "`val_size`" + ("" if self.train_size is None else " + `train_size`")
            raise ValueError(
                f"FashionMNISTDataModule: {sizes} must be smaller than the {len(train_full)} training images, "
                f"got {' + '.join(map(str, held_out))}"
            )
        eval_transform = self._transform(train=False)
        self.test_dataset = IndexedDataset(test, eval_transform)
        rest, val_idx, *kept = stratified_split(train_full.tensors[1].numpy(), held_out, seed=self.seed)
        train_idx = kept[0] if kept else rest
        self.train_dataset = IndexedDataset(Subset(train_full, train_idx.tolist()), self._transform(train=True))
        self.val_dataset = (
            IndexedDataset(test, eval_transform)
            if self.val_size == 0
            else IndexedDataset(Subset(train_full, val_idx.tolist()), eval_transform)
        )
        rank_zero_info(
            f"FashionMNISTDataModule: {len(self.train_dataset)} train / {len(self.val_dataset)} val / "
            f"{len(self.test_dataset)} test images from {files['train_images'].parent}"
        )
