"""Faster R-CNN (torchvision) over a ResNet backbone exported from an ``ImageClassifier`` (Kim et al. Sec. 3.3)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from lightning_skd._lightning import LRSchedulerCallable, OptimizerCallable, pl, warn_if_mixed
from lightning_skd.data.voc_detection import VOC_CLASSES
from lightning_skd.metrics.coco_map import COCOMeanAveragePrecision
from lightning_skd.metrics.voc07_map import VOC07MeanAveragePrecision
from lightning_skd.models.backbone_export import BackboneInfo, load_backbone
from lightning_skd.models.evaluation_logging import log_evaluation

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRAINABLE_ORDER = ("layer4", "layer3", "layer2", "layer1", "conv1")  # trainable_layers=k trains the first k


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` in ``module`` by a ``FrozenBatchNorm2d`` with the same statistics and affine."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            if child.affine:
                frozen.weight.copy_(child.weight.detach())
                frozen.bias.copy_(child.bias.detach())
            if child.running_mean is not None:
                frozen.running_mean.copy_(child.running_mean)
                frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


def freeze_layers(resnet: nn.Module, trainable_layers: int) -> None:
    """Stop gradients into all but the last ``trainable_layers`` stages (torchvision's convention, 0..5)."""
    trainable = list(TRAINABLE_ORDER[:trainable_layers]) + (["bn1"] if trainable_layers == 5 else [])
    for name, parameter in resnet.named_parameters():
        if not any(name.startswith(prefix) for prefix in trainable):
            parameter.requires_grad_(False)


def stage_channels(resnet: nn.Module, in_channels: int) -> list[int]:
    """Output channels of ``layer1`` .. ``layer4``, measured with one small forward pass."""
    channels = []
    hooks = [
        getattr(resnet, f"layer{i}").register_forward_hook(lambda _m, _i, out: channels.append(out.shape[1]))
        for i in range(1, 5)
    ]
    try:
        was_training = resnet.training
        with torch.no_grad():
            resnet.eval()(torch.zeros(1, in_channels, 64, 64))
        resnet.train(was_training)
    finally:
        for hook in hooks:
            hook.remove()
    return channels


class Detector(pl.LightningModule):
    """Faster R-CNN whose backbone is a ResNet initialised from a file of ``lightning-skd export-backbone``.

    Backbone: the exported ResNet with its BatchNorm layers frozen (``FrozenBatchNorm2d``, the standard choice for
    detection with batch 1) and only the last ``trainable_layers`` stages trained. With ``fpn=True`` a feature
    pyramid over ``layer1`` .. ``layer4`` (+ max-pool level) feeds the RPN and the RoI heads (torchvision's
    ``fasterrcnn_resnet50_fpn`` layout) and a two-layer MLP box head; with ``fpn=False`` it is He et al.'s ResNet
    Faster R-CNN ("C4", the layout of py-faster-rcnn / faster-rcnn.pytorch ResNet models): the RPN and a 14×14
    RoIAlign work on the ``layer3`` map (stride 16, all anchor sizes on it) and ``layer4`` + average pooling is the
    box head. Trained with torchvision's RPN and box losses; torchvision weights are never downloaded.

    Batches are ``(images, targets, indices)`` from :class:`~lightning_skd.data.VOCDetectionDataModule`:
    lists of ``(3, H, W)`` images in [0, 1] and of target dicts (``boxes`` ``(G, 4)``, ``labels`` ``(G,)`` in
    ``0 .. num_classes - 1``, ``difficult`` ``(G,)``), and the ``(B,)`` dataset indices. Validation and test log
    the VOC2007 mAP (``{stage}/voc07_map``, per class ``{stage}/voc07_ap/<class>``, the paper's numbers) and
    COCO-style ``{stage}/coco_map_50`` and ``{stage}/coco_map`` (AP@[.5:.95]) from torchmetrics'
    ``MeanAveragePrecision`` (:class:`~lightning_skd.metrics.COCOMeanAveragePrecision`, faster-coco-eval backend;
    ``difficult`` boxes passed as ``iscrowd``, i.e. ignored).
    The test results are also written to ``<log_dir>/test_detection_metrics.json``, which
    ``lightning-skd detection-table`` reads.

    Args:
        backbone_file: The ``.safetensors`` file written by ``lightning-skd export-backbone``.
        class_names: Object classes in label order (default: the 20 VOC classes); must match the data module's.
        fpn: Use a feature pyramid network.
        trainable_layers: How many ResNet stages from the top are trained (0..5; torchvision's default 3).
        freeze_bn: Replace BatchNorm by ``FrozenBatchNorm2d`` (keep ``True`` with batch 1).
        min_size: Shorter image side after resizing (600 in the original VOC Faster R-CNN).
        max_size: Upper limit of the longer side (1000 there).
        anchor_sizes: Anchor sides in pixels; with ``fpn=True`` one per pyramid level (5).
        image_mean: Normalisation mean (that of the backbone's classification training; ImageNet by default).
        image_std: Normalisation standard deviation.
        box_score_thresh: Detections below this score are dropped at evaluation (0.05 as py-faster-rcnn).
        box_detections_per_img: At most this many detections per image (100).
        train_on_difficult: Train on ``difficult`` boxes too (py-faster-rcnn's default is not to).
        fpn_channels: Channels of the pyramid levels (256 in torchvision's models).
        representation_size: Width of the two-layer MLP box head with ``fpn=True`` (1024 in torchvision's models).
        rcnn_options: Further keyword arguments of torchvision's ``FasterRCNN`` (e.g. ``rpn_batch_size_per_image``,
            ``box_batch_size_per_image``, ``rpn_pre_nms_top_n_train``); torchvision's defaults otherwise.
        optimizer: Optimizer factory from YAML; default SGD(lr=1e-3, momentum=0.9, weight_decay=1e-4).
        lr_scheduler: LR scheduler factory, stepped every epoch (the paper: ×0.1 after 5 of 10 epochs).

    """

    def __init__(
        self,
        backbone_file: str,
        class_names: Sequence[str] = VOC_CLASSES,
        fpn: bool = True,
        trainable_layers: int = 3,
        freeze_bn: bool = True,
        min_size: int = 600,
        max_size: int = 1000,
        anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        box_score_thresh: float = 0.05,
        box_detections_per_img: int = 100,
        train_on_difficult: bool = False,
        fpn_channels: int = 256,
        representation_size: int = 1024,
        rcnn_options: dict[str, Any] | None = None,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        warn_if_mixed(type(self).__name__)
        class_names = list(class_names)
        if not class_names or len(set(class_names)) != len(class_names):
            raise ValueError(f"Detector: `class_names` must be distinct names, got {class_names!r}")
        if isinstance(trainable_layers, bool) or trainable_layers not in range(6):
            raise ValueError(f"Detector: `trainable_layers` must be an integer in 0..5, got {trainable_layers!r}")
        if fpn and len(anchor_sizes) != 5:
            raise ValueError(
                f"Detector: with `fpn=True`, `anchor_sizes` needs 5 sizes (one per level), got {anchor_sizes!r}"
            )
        if not (isinstance(min_size, int) and isinstance(max_size, int) and 0 < min_size <= max_size):
            raise ValueError(f"Detector: need integers 0 < `min_size` <= `max_size`, got {min_size!r}, {max_size!r}")
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        resnet, self.backbone_info = load_backbone(backbone_file)
        self.class_names = class_names
        self.model = self._build(resnet, self.backbone_info)
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.val_voc = VOC07MeanAveragePrecision(len(class_names), class_names)
        self.test_voc = VOC07MeanAveragePrecision(len(class_names), class_names)
        self.val_coco = COCOMeanAveragePrecision(iou_type="bbox", backend="faster_coco_eval")
        self.test_coco = COCOMeanAveragePrecision(iou_type="bbox", backend="faster_coco_eval")

    def _build(self, resnet: nn.Module, info: BackboneInfo) -> FasterRCNN:
        hp = self.hparams
        channels = stage_channels(resnet, info.in_channels)
        if hp.freeze_bn:
            freeze_batchnorm(resnet)
        freeze_layers(resnet, hp.trainable_layers)
        ratios = (0.5, 1.0, 2.0)
        if hp.fpn:
            return_layers = {f"layer{k}": str(k - 1) for k in range(1, 5)}
            backbone = BackboneWithFPN(
                resnet, return_layers, channels, hp.fpn_channels, extra_blocks=LastLevelMaxPool()
            )
            anchors = AnchorGenerator(tuple((s,) for s in hp.anchor_sizes), (ratios,) * len(hp.anchor_sizes))
            pooler = MultiScaleRoIAlign(["0", "1", "2", "3"], output_size=7, sampling_ratio=2)
            box_head = TwoMLPHead(backbone.out_channels * 7 * 7, hp.representation_size)
            head_size = hp.representation_size
        else:  # He et al.'s ResNet Faster R-CNN ("C4"): RPN and RoI pooling on layer3, layer4 as the box head
            backbone = IntermediateLayerGetter(resnet, {"layer3": "0"})
            backbone.out_channels = channels[2]
            anchors = AnchorGenerator((tuple(hp.anchor_sizes),), (ratios,))
            pooler = MultiScaleRoIAlign(["0"], output_size=14, sampling_ratio=2)
            box_head = nn.Sequential(resnet.layer4, nn.AdaptiveAvgPool2d(1), nn.Flatten())  # 14x14 -> 7x7 -> (N, C5)
            head_size = channels[3]
        return FasterRCNN(
            backbone,
            min_size=hp.min_size,
            max_size=hp.max_size,
            image_mean=list(hp.image_mean),
            image_std=list(hp.image_std),
            rpn_anchor_generator=anchors,
            box_roi_pool=pooler,
            box_head=box_head,
            box_predictor=FastRCNNPredictor(head_size, len(self.class_names) + 1),  # + background (0)
            box_score_thresh=hp.box_score_thresh,
            box_detections_per_img=hp.box_detections_per_img,
            **(hp.rcnn_options or {}),
        )

    def forward(self, images: Sequence[Tensor]) -> list[dict[str, Tensor]]:
        """Detections per image: ``boxes`` ``(D, 4)``, ``scores`` ``(D,)``, ``labels`` ``(D,)`` in 0..K-1."""
        was_training = self.model.training
        self.model.eval()
        try:
            detections = self.model(list(images))
        finally:
            self.model.train(was_training)
        return [{**d, "labels": d["labels"] - 1} for d in detections]

    def setup(self, stage: str) -> None:
        """Refuse a data module whose classes differ from ``class_names``."""
        datamodule = getattr(self.trainer, "datamodule", None)
        names = getattr(datamodule, "class_names", None)
        if names is not None and list(names) != self.class_names:
            raise ValueError(
                f"Detector: `class_names` {self.class_names} differ from the data module's {list(names)}; "
                "give both the same list"
            )

    def _torchvision_targets(self, targets: Sequence[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
        out = []
        for t in targets:
            keep = torch.ones_like(t["labels"], dtype=torch.bool)
            if not self.hparams.train_on_difficult and "difficult" in t:
                keep = ~t["difficult"].bool()
            out.append({"boxes": t["boxes"][keep].reshape(-1, 4), "labels": t["labels"][keep] + 1})
        return out

    def training_step(self, batch: tuple[list[Tensor], list[dict[str, Tensor]], Tensor], batch_idx: int) -> Tensor:
        """Sum of torchvision's RPN and box-head losses."""
        images, targets, _ = batch
        losses = self.model(list(images), self._torchvision_targets(targets))
        loss = sum(losses.values())
        if not torch.isfinite(loss):  # a diverged run would otherwise go on and score mAP 0 without a word
            parts = {k: round(float(v), 4) for k, v in losses.items()}
            raise FloatingPointError(
                f"Detector: non-finite training loss at step {self.global_step} ({parts}); lower the learning rate "
                "or clip gradients (Trainer(gradient_clip_val=...))"
            )
        batch_size = len(images)
        # Epoch values: batch-weighted means over all processes (the training sampler gives every rank equal counts).
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=batch_size, sync_dist=True)
        train_losses = {f"train/{k}": v for k, v in losses.items()}
        self.log_dict(train_losses, on_step=False, on_epoch=True, batch_size=batch_size, sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[list[Tensor], list[dict[str, Tensor]], Tensor], batch_idx: int) -> None:
        """Accumulate validation detections."""
        self._evaluation_step(batch, self.val_voc, self.val_coco)

    def test_step(self, batch: tuple[list[Tensor], list[dict[str, Tensor]], Tensor], batch_idx: int) -> None:
        """Accumulate test detections."""
        self._evaluation_step(batch, self.test_voc, self.test_coco)

    def predict_step(self, batch: tuple[list[Tensor], Any, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Detections padded to ``box_detections_per_img`` rows per image, so batches concatenate.

        Returns ``boxes`` ``(B, M, 4)``, ``scores`` ``(B, M)`` (padding ``nan``), ``labels`` ``(B, M)`` (0..K-1,
        padding -1), ``num_detections`` ``(B,)`` and the dataset ``index`` ``(B,)``; ``M = box_detections_per_img``.
        """
        images, _, indices = batch
        detections = self(images)
        rows = self.hparams.box_detections_per_img
        boxes = torch.zeros(len(images), rows, 4, device=indices.device)
        scores = torch.full((len(images), rows), float("nan"), device=indices.device)
        labels = torch.full((len(images), rows), -1, dtype=torch.long, device=indices.device)
        for i, d in enumerate(detections):
            n = len(d["scores"])
            boxes[i, :n], scores[i, :n], labels[i, :n] = d["boxes"], d["scores"], d["labels"]
        counts = torch.tensor([len(d["scores"]) for d in detections], dtype=torch.long, device=indices.device)
        return {"boxes": boxes, "scores": scores, "labels": labels, "num_detections": counts, "index": indices}

    def _evaluation_step(self, batch, voc: VOC07MeanAveragePrecision, coco: COCOMeanAveragePrecision) -> None:
        images, targets, indices = batch
        detections = self(images)
        voc.update(detections, targets, image_ids=indices)
        coco.update(
            detections,
            [
                {
                    "boxes": t["boxes"],
                    "labels": t["labels"],
                    "iscrowd": t.get("difficult", torch.zeros_like(t["labels"])).long(),
                }
                for t in targets
            ],
        )

    def on_validation_epoch_end(self) -> None:
        """Log and reset the validation metrics."""
        self._log_metrics("val", self.val_voc, self.val_coco)

    def on_test_epoch_end(self) -> None:
        """Log the test metrics, write them to ``<log_dir>/test_detection_metrics.json`` and reset."""
        values = self._log_metrics("test", self.test_voc, self.test_coco)
        results = {key.removeprefix("test/"): float(value) for key, value in values.items()}
        folder = Path(self.trainer.log_dir or self.trainer.default_root_dir)  # on every rank: may communicate
        if self.trainer.is_global_zero:
            folder.mkdir(parents=True, exist_ok=True)
            payload = {
                "class_names": self.class_names,
                "voc07_ap": {name: results[f"voc07_ap/{name}"] for name in self.class_names},
                "voc07_map": results["voc07_map"],
                "coco_map_50": results["coco_map_50"],
                "coco_map": results["coco_map"],
                "backbone": vars(self.backbone_info),
                "backbone_file": str(self.hparams.backbone_file),
            }
            (folder / "test_detection_metrics.json").write_text(json.dumps(payload, indent=2))

    def _log_metrics(
        self, stage: str, voc: VOC07MeanAveragePrecision, coco: COCOMeanAveragePrecision
    ) -> dict[str, Tensor]:
        """Log and return ``{stage}/voc07_map``, ``voc07_ap/<class>``, ``coco_map_50`` and ``coco_map``; reset."""
        values = {f"{stage}/voc07_{key}": value for key, value in voc.compute().items()}  # map, ap/<class>
        coco_values = coco.compute()
        values.update({f"{stage}/coco_map_50": coco_values["map_50"], f"{stage}/coco_map": coco_values["map"]})
        log_evaluation(self, values, prog_bar={f"{stage}/voc07_map"}, reset=(voc, coco))
        return values

    def configure_optimizers(self) -> Any:
        """The configured optimizer (default SGD lr 1e-3) over the trainable parameters, and the LR scheduler."""
        parameters = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer_factory is None:
            optimizer = torch.optim.SGD(parameters, lr=1e-3, momentum=0.9, weight_decay=1e-4)
        else:
            optimizer = self.optimizer_factory(parameters)
        if self.lr_scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.lr_scheduler_factory(optimizer)}
