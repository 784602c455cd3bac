"""ImageNet-style folders (``train/<class>/*.JPEG``, ``val/<class>/*.JPEG``) read with torchvision's ``ImageFolder``."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import find_classes
from torchvision.transforms import v2

from lightning_skd._lightning import rank_zero_info
from lightning_skd.data.base import ClassificationDataModule, check_positive_int
from lightning_skd.data.indexed import IndexedDataset

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_RATIO = 256 / 224  # evaluation: resize the short side to image_size * 256 / 224, then centre-crop image_size


class ImageFolderDataModule(ClassificationDataModule):
    """Image classification from an ImageNet-style tree of class folders, e.g. ImageNet-1k itself.

    Expected layout: ``<data_dir>/train/<class>/<image>`` and ``<data_dir>/val/<class>/<image>`` (any extension
    PIL reads: ``.JPEG``, ``.png``, ...). Classes are the sorted folder names of ``train/`` (so labels follow
    torchvision's ``ImageFolder``); ``val/`` may hold a subset of them and is mapped onto the training labels. As
    ImageNet's test labels are not public, the ``val/`` split serves for validation, testing and prediction.

    Training transform: ``RandomResizedCrop(image_size)`` + horizontal flip (+ ``ColorJitter`` of strength
    ``color_jitter`` when > 0, as in the PS-KD ImageNet recipe, which also adds PCA lighting noise not done here);
    evaluation transform: resize the short side to ``round(image_size * 256 / 224)`` then ``CenterCrop(image_size)``
    (256 -> 224 for the default size). Both normalise with the ImageNet mean/std. Inputs are
    ``(3, image_size, image_size)`` and batches ``(inputs, targets, indices)``.

    Args:
        data_dir: Root folder holding ``train/`` and ``val/``.
        image_size: Side of the square network input.
        color_jitter: Brightness/contrast/saturation jitter strength for training images (0 disables it).
        batch_size: Training batch size.
        eval_batch_size: Batch size of the evaluation loaders; ``None`` uses ``batch_size``.
        num_workers: Loader worker processes (JPEG decoding is the bottleneck: use many).
        pin_memory: Pin host memory of batches.
        persistent_workers: Keep workers alive between epochs (needs ``num_workers > 0``).
        seed: Kept for a uniform interface; the splits are fixed by the folders.

    Example:
        >>> dm = ImageFolderDataModule("/data/imagenet", image_size=224)
        >>> dm.in_channels, dm.image_size, dm.input_shape
        (3, 224, (3, 224, 224))
        >>> dm.num_classes  # doctest: +SKIP
        1000

    """

    def __init__(
        self,
        data_dir: str,
        image_size: int = 224,
        color_jitter: float = 0.0,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        num_workers: int = 8,
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
        check_positive_int(type(self).__name__, "image_size", image_size)
        if isinstance(color_jitter, bool) or not isinstance(color_jitter, (int, float)) or color_jitter < 0:
            raise ValueError(f"ImageFolderDataModule: `color_jitter` must be a number >= 0, got {color_jitter!r}")
        self.save_hyperparameters()
        self.data_dir = Path(data_dir)
        self._image_size = image_size
        self.color_jitter = float(color_jitter)
        self._classes: list[str] | None = None

    @property
    def num_classes(self) -> int:
        """Number of class folders under ``train/`` (listed on first access, without reading any image)."""
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        """Three (RGB) channels; images are converted to RGB when read."""
        return 3

    @property
    def image_size(self) -> int:
        """Side of the square inputs (the ``image_size`` argument)."""
        return self._image_size

    @property
    def class_names(self) -> list[str]:
        """Sorted class folder names of ``train/`` (label ``i`` is ``class_names[i]``)."""
        if self._classes is None:
            train_dir = self._split_dir("train")
            try:
                self._classes = find_classes(str(train_dir))[0]
            except FileNotFoundError as err:
                raise FileNotFoundError(
                    f"ImageFolderDataModule: no class folder in {str(train_dir)!r}; {self._layout()}"
                ) from err
        return self._classes

    def _layout(self) -> str:
        return (
            f"expected the ImageNet layout {str(self.data_dir / 'train')}/<class>/<image>.JPEG and "
            f"{str(self.data_dir / 'val')}/<class>/<image>.JPEG"
        )

    def _split_dir(self, split: str) -> Path:
        folder = self.data_dir / split
        if not folder.is_dir():
            raise FileNotFoundError(f"ImageFolderDataModule: folder {str(folder)!r} not found; {self._layout()}")
        return folder

    def train_transform(self) -> v2.Compose:
        """Random resized crop and horizontal flip (+ colour jitter), then ImageNet normalisation."""
        steps: list = [v2.RandomResizedCrop(self.image_size, antialias=True), v2.RandomHorizontalFlip()]
        if self.color_jitter > 0:
            steps.append(v2.ColorJitter(self.color_jitter, self.color_jitter, self.color_jitter))
        steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        return v2.Compose(steps)

    def eval_transform(self) -> v2.Compose:
        """Resize to ``image_size * 256 / 224``, centre crop ``image_size``, then ImageNet normalisation."""
        return v2.Compose(
            [
                v2.Resize(round(self.image_size * RESIZE_RATIO), antialias=True),
                v2.CenterCrop(self.image_size),
                v2.ToImage(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    def _val_folder(self) -> ImageFolder:
        val = ImageFolder(str(self._split_dir("val")))
        unknown = sorted(set(val.classes) - set(self.class_names))
        if unknown:
            raise ValueError(
                f"ImageFolderDataModule: val/ has class folders absent from train/: {unknown[:5]}"
                f"{' ...' if len(unknown) > 5 else ''}"
            )
        if val.classes != self.class_names:  # a subset of the classes: relabel onto the training label order
            to_train = {name: self.class_names.index(name) for name in val.classes}
            val.samples = [(path, to_train[val.classes[label]]) for path, label in val.samples]
            val.imgs, val.targets = val.samples, [label for _, label in val.samples]
            val.classes, val.class_to_idx = list(self.class_names), {n: i for i, n in enumerate(self.class_names)}
        return val

    def setup(self, stage: str | None = None) -> None:
        """Scan the folders and build the datasets (once; later calls reuse them)."""
        if self.train_dataset is not None:
            return
        train = ImageFolder(str(self._split_dir("train")))
        self._classes = list(train.classes)
        val = self._val_folder()
        eval_transform = self.eval_transform()
        self.train_dataset = IndexedDataset(train, self.train_transform())
        self.val_dataset = IndexedDataset(val, eval_transform)
        self.test_dataset = IndexedDataset(val, eval_transform)
        rank_zero_info(
            f"ImageFolderDataModule: {len(train)} train / {len(val)} val images in {self.num_classes} classes "
            f"from {str(self.data_dir)!r}"
        )
