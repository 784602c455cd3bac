"""PASCAL VOC detection from the standard ``VOCdevkit/VOC2007``, ``VOCdevkit/VOC2012`` folders."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as TF

from lightning_skd._lightning import LightningDataModule, rank_zero_info, warn_if_mixed
from lightning_skd.data.base import check_non_negative_int, check_positive_int
from lightning_skd.data.samplers import evaluation_sampler

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


@dataclass
class VOCRecord:
    """One annotated image: its file and its boxes (continuous 0-based pixel coordinates)."""

    image: Path
    annotation: Path
    boxes: list[tuple[float, float, float, float]]  # (x1, y1, x2, y2)
    labels: list[int]
    difficult: list[bool]


def parse_voc_annotation(path: Path, class_to_index: dict[str, int], image_dir: Path) -> VOCRecord:
    """Read one VOC XML file; raise a ``ValueError`` naming ``path`` for anything unexpected.

    VOC boxes are 1-based inclusive pixel indices; they become ``(xmin - 1, ymin - 1, xmax, ymax)``, so that a
    box's continuous width ``x2 - x1`` is VOC's ``xmax - xmin + 1``.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"malformed VOC annotation {str(path)!r}: {err}") from err
    filename = root.findtext("filename")
    if not filename:
        raise ValueError(f"VOC annotation {str(path)!r} has no <filename>")
    image = image_dir / filename.strip()
    if not image.is_file():
        raise FileNotFoundError(f"image {str(image)!r} named by annotation {str(path)!r} does not exist")
    boxes, labels, difficult = [], [], []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in class_to_index:
            raise ValueError(
                f"VOC annotation {str(path)!r}: unknown class {name!r}; expected one of {sorted(class_to_index)}"
            )
        box = obj.find("bndbox")
        try:
            xmin, ymin, xmax, ymax = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError) as err:
            raise ValueError(f"VOC annotation {str(path)!r}: object {name!r} has no valid <bndbox>") from err
        if not (xmax >= xmin >= 0 and ymax >= ymin >= 0):
            raise ValueError(f"VOC annotation {str(path)!r}: object {name!r} has an empty or negative box")
        boxes.append((xmin - 1.0, ymin - 1.0, xmax, ymax))
        labels.append(class_to_index[name])
        difficult.append((obj.findtext("difficult") or "0").strip() == "1")
    return VOCRecord(image, path, boxes, labels, difficult)


class VOCDetectionDataset(Dataset):
    """Images and targets of VOC records; optional random horizontal flip.

    Items are ``(image, target, index)``: a float ``(3, H, W)`` image in [0, 1], a dict with ``boxes`` ``(G, 4)``
    float32, ``labels`` ``(G,)`` int64 (0-based class ids) and ``difficult`` ``(G,)`` bool, and the item's index.
    """

    def __init__(self, records: Sequence[VOCRecord], flip_prob: float = 0.0) -> None:
        self.records = list(records)
        self.flip_prob = flip_prob

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor], int]:
        record = self.records[index]
        with Image.open(record.image) as pil:
            image = TF.to_dtype(TF.to_image(pil.convert("RGB")), torch.float32, scale=True)  # (3, H, W)
        boxes = torch.tensor(record.boxes, dtype=torch.float32).reshape(-1, 4)
        if self.flip_prob > 0 and torch.rand(()) < self.flip_prob:
            width = image.shape[-1]
            image = image.flip(-1)
            boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
        target = {
            "boxes": boxes,
            "labels": torch.tensor(record.labels, dtype=torch.int64),
            "difficult": torch.tensor(record.difficult, dtype=torch.bool),
        }
        return image, target, index


def collate_detection(batch: Sequence[tuple[Tensor, dict[str, Tensor], int]]) -> tuple[list, list, Tensor]:
    """Batch variable-size images as lists: ``(images, targets, indices)`` with ``indices`` an int64 tensor."""
    images, targets, indices = zip(*batch, strict=True)
    return list(images), list(targets), torch.tensor(indices, dtype=torch.int64)


class VOCDetectionDataModule(LightningDataModule):
    """PASCAL VOC detection (Kim et al. Sec. 3.3: train on VOC07+12 trainval, test on VOC07 test).

    Layout under ``data_dir`` (as the official tars unpack): ``VOCdevkit/VOC<year>/Annotations/<id>.xml``,
    ``JPEGImages/<id>.jpg`` and ``ImageSets/Main/<split>.txt``. Sets are named ``"<year>/<split>"``; every
    annotation is parsed in :meth:`setup`, so a missing folder or list, a malformed XML file, an image it names
    that is missing or an unknown class name stops the run at once with an error naming the file.

    Batches are ``(images, targets, indices)``: lists of ``(3, H, W)`` float images in [0, 1] (sizes differ) and of
    target dicts (``boxes`` ``(G, 4)`` continuous ``x1, y1, x2, y2``, ``labels`` ``(G,)`` 0-based, ``difficult``
    ``(G,)``; difficult objects are kept, the model and the metric decide what to do with them), and the ``(B,)``
    int64 dataset indices. Training images are flipped horizontally with probability ``flip_prob``. Under DDP the
    evaluation loaders use an unrepeated distributed sampler, so every image is evaluated exactly once (see
    :mod:`lightning_skd.data.samplers`).

    Args:
        data_dir: Folder holding ``VOCdevkit/``.
        train_sets: Training sets (concatenated), default VOC07 + VOC12 trainval.
        val_sets: Validation sets; empty (the default, as in the paper) means no validation loop.
        test_sets: Test sets, default VOC07 test.
        class_names: Class names in label order (default the 20 VOC classes).
        flip_prob: Probability of a horizontal flip of a training image.
        download: Fetch the VOC tars with torchvision when a set is missing (needs network access).
        batch_size: Training images per batch (the paper: 1).
        eval_batch_size: Images per evaluation batch.
        num_workers: Loader worker processes.
        pin_memory: Pin host memory of batches.

    Example:
        >>> dm = VOCDetectionDataModule("/data/voc")
        >>> dm.num_classes, dm.train_sets, dm.test_sets
        (20, ['2007/trainval', '2012/trainval'], ['2007/test'])

    """

    def __init__(
        self,
        data_dir: str,
        train_sets: Sequence[str] = ("2007/trainval", "2012/trainval"),
        val_sets: Sequence[str] = (),
        test_sets: Sequence[str] = ("2007/test",),
        class_names: Sequence[str] = VOC_CLASSES,
        flip_prob: float = 0.5,
        download: bool = False,
        batch_size: int = 1,
        eval_batch_size: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        warn_if_mixed(type(self).__name__)
        owner = type(self).__name__
        check_positive_int(owner, "batch_size", batch_size)
        check_positive_int(owner, "eval_batch_size", eval_batch_size)
        check_non_negative_int(owner, "num_workers", num_workers)
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"{owner}: `flip_prob` must be in [0, 1], got {flip_prob!r}")
        class_names = list(class_names)
        if not class_names or len(set(class_names)) != len(class_names):
            raise ValueError(f"{owner}: `class_names` must be distinct names, got {class_names!r}")
        for name, sets in (("train_sets", train_sets), ("val_sets", val_sets), ("test_sets", test_sets)):
            for item in sets:
                year, sep, split = str(item).partition("/")
                if not sep or not year.isdigit() or not split:
                    raise ValueError(f"{owner}: `{name}` entries must look like '2007/trainval', got {item!r}")
        self.save_hyperparameters()
        self.data_dir = Path(data_dir)
        self.train_sets, self.val_sets, self.test_sets = list(train_sets), list(val_sets), list(test_sets)
        self.class_names = class_names
        self.flip_prob = float(flip_prob)
        self.download = download
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.train_dataset: VOCDetectionDataset | None = None
        self.val_dataset: VOCDetectionDataset | None = None
        self.test_dataset: VOCDetectionDataset | None = None

    @property
    def num_classes(self) -> int:
        """Number of object classes (no background)."""
        return len(self.class_names)

    def _set_dir(self, item: str) -> tuple[Path, str]:
        year, _, split = item.partition("/")
        return self.data_dir / "VOCdevkit" / f"VOC{year}", split

    def prepare_data(self) -> None:
        """With ``download=True``, fetch missing sets through torchvision's ``VOCDetection`` (rank 0 only)."""
        if not self.download:
            return
        from torchvision.datasets import VOCDetection

        for item in {*self.train_sets, *self.val_sets, *self.test_sets}:
            folder, split = self._set_dir(item)
            if not (folder / "ImageSets" / "Main" / f"{split}.txt").is_file():
                VOCDetection(str(self.data_dir), year=folder.name[3:], image_set=split, download=True)

    def load_records(self, sets: Sequence[str]) -> list[VOCRecord]:
        """Parse every annotation of the given sets (in list order)."""
        class_to_index = {name: i for i, name in enumerate(self.class_names)}
        records = []
        for item in sets:
            folder, split = self._set_dir(item)
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"VOCDetectionDataModule: folder {str(folder)!r} for set {item!r} not found; expected "
                    f"{str(self.data_dir)}/VOCdevkit/VOC<year>/{{Annotations,JPEGImages,ImageSets/Main}} "
                    "(or `download=True` where there is network)"
                )
            listing = folder / "ImageSets" / "Main" / f"{split}.txt"
            if not listing.is_file():
                raise FileNotFoundError(f"VOCDetectionDataModule: image list {str(listing)!r} for {item!r} not found")
            for image_id in listing.read_text().split():
                annotation = folder / "Annotations" / f"{image_id}.xml"
                if not annotation.is_file():
                    raise FileNotFoundError(
                        f"VOCDetectionDataModule: annotation {str(annotation)!r} listed in {str(listing)!r} not found"
                    )
                records.append(parse_voc_annotation(annotation, class_to_index, folder / "JPEGImages"))
        return records

    def setup(self, stage: str | None = None) -> None:
        """Parse the annotations of the sets the stage needs (once per split)."""
        if stage in (None, "fit") and self.train_dataset is None:
            self.train_dataset = VOCDetectionDataset(self.load_records(self.train_sets), flip_prob=self.flip_prob)
            rank_zero_info(f"VOCDetectionDataModule: {len(self.train_dataset)} training images from {self.train_sets}")
        if stage in (None, "fit", "validate") and self.val_dataset is None and self.val_sets:
            self.val_dataset = VOCDetectionDataset(self.load_records(self.val_sets))
        if stage in (None, "test", "predict") and self.test_dataset is None:
            self.test_dataset = VOCDetectionDataset(self.load_records(self.test_sets))
            rank_zero_info(f"VOCDetectionDataModule: {len(self.test_dataset)} test images from {self.test_sets}")

    def _loader(self, dataset: Dataset | None, split: str, batch_size: int, shuffle: bool = False) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"VOCDetectionDataModule: the {split} split is not set up; call setup() first")
        sampler = None if shuffle else evaluation_sampler(self.trainer, dataset, type(self).__name__)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            collate_fn=collate_detection,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training images."""
        return self._loader(self.train_dataset, "train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> Any:
        """Validation images in order; an empty list (no validation) without ``val_sets``."""
        if not self.val_sets:
            return []
        return self._loader(self.val_dataset, "validation", self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        """Test images in order."""
        return self._loader(self.test_dataset, "test", self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        """The test images, in order."""
        return self._loader(self.test_dataset, "predict", self.eval_batch_size)
