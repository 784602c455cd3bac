"""Shared pieces of the detection tests: a tiny exported ResNet backbone and a generated VOC-layout dataset."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_skd import SelfKDCallback
from lightning_skd.data import IndexedDataset, write_synthetic_voc
from lightning_skd.models import ImageClassifier, export_backbone
from tests.helpers.trainer import quiet_trainer

CLASSES = ["red", "green", "blue"]
TINY_BACKBONE = "timm:resnet10t"
# A detector small enough for a CPU test: 96x128 images, 64-channel FPN, a 128-wide box head, few RoIs.
SMALL_DETECTOR_ARGS = [
    "--model.init_args.min_size=96",
    "--model.init_args.max_size=128",
    f"--model.init_args.class_names=[{','.join(CLASSES)}]",
    "--model.init_args.rcnn_options={rpn_batch_size_per_image: 64, box_batch_size_per_image: 64, "
    "rpn_pre_nms_top_n_train: 300, rpn_post_nms_top_n_train: 100, rpn_pre_nms_top_n_test: 300, "
    "rpn_post_nms_top_n_test: 100}",
    f"--data.init_args.class_names=[{','.join(CLASSES)}]",
    "--data.init_args.train_sets=[2007/trainval]",
    "--data.init_args.test_sets=[2007/test]",
    "--data.init_args.num_workers=0",
]
# The configs' C4 layout with anchors for small objects; and a small FPN variant.
C4_ARGS = ["--model.init_args.anchor_sizes=[16,32,64]"]
FPN_ARGS = [
    "--model.init_args.fpn=true",
    "--model.init_args.anchor_sizes=[16,32,64,128,256]",
    "--model.init_args.fpn_channels=64",
    "--model.init_args.representation_size=128",
]
SMALL_DETECTOR_KWARGS = {
    "class_names": CLASSES,
    "min_size": 96,
    "max_size": 128,
    "anchor_sizes": [16, 32, 64, 128, 256],
    "fpn_channels": 64,
    "representation_size": 128,
    "rcnn_options": {
        "rpn_batch_size_per_image": 64,
        "box_batch_size_per_image": 64,
        "rpn_pre_nms_top_n_train": 300,
        "rpn_post_nms_top_n_train": 100,
        "rpn_pre_nms_top_n_test": 300,
        "rpn_post_nms_top_n_test": 100,
    },
}


def classifier_checkpoint(
    path: Path, backbone: str = TINY_BACKBONE, label_smoothing: float = 0.0, self_kd: bool = False
) -> Path:
    """A real ImageClassifier Lightning checkpoint after one training step on random 32x32 images."""
    torch.manual_seed(0)
    model = ImageClassifier(backbone=backbone, num_classes=4, label_smoothing=label_smoothing, log_figures=False)
    data = IndexedDataset(TensorDataset(torch.randn(4, 3, 32, 32), torch.arange(4)))
    trainer = quiet_trainer([SelfKDCallback(alpha_T=0.8)] if self_kd else None, max_epochs=1)
    trainer.fit(model, DataLoader(data, batch_size=4))
    trainer.save_checkpoint(path)
    return path


def exported_backbone(folder: Path) -> Path:
    """Export the backbone of :func:`classifier_checkpoint` to ``folder/backbone.safetensors``."""
    output = folder / "backbone.safetensors"
    export_backbone(classifier_checkpoint(folder / "classifier.ckpt"), output)
    return output


def generated_voc(folder: Path, trainval: int = 16, test: int = 8, seed: int = 0) -> Path:
    """A VOC2007-layout set of coloured rectangles under ``folder`` (returns ``folder``, the ``data_dir``)."""
    write_synthetic_voc(folder, splits={"trainval": trainval, "test": test}, class_names=CLASSES, seed=seed)
    return folder
