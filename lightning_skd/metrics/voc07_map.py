"""Modular VOC2007 detection mAP (AP at IoU > 0.5, 11-point interpolation, ``difficult`` boxes ignored)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lightning_skd.functional.detection import _voc07_arg_validation, _voc07_compute

_DET_STATES = ("det_boxes", "det_scores", "det_labels", "det_image_ids", "det_occurrence")
_GT_STATES = ("gt_boxes", "gt_labels", "gt_difficult", "gt_image_ids", "gt_occurrence")


class VOC07MeanAveragePrecision(Metric):
    """PASCAL VOC 2007 mAP of a detector, accumulated over batches and processes.

    The protocol is that of :mod:`lightning_skd.functional.detection` (VOC2007 devkit / py-faster-rcnn
    ``use_07_metric=True``): per class, AP at IoU > 0.5 with 11-point interpolation, ``difficult`` boxes neither
    positives nor false positives, duplicates false positives, a class without ground truth AP 0; mAP is the mean
    over all ``num_classes`` classes.

    The state is one row per detection and per ground-truth box (concatenated across processes), each tagged with
    its image id and with the occurrence of the image it came from. ``compute`` keeps one occurrence per image id,
    so the images that ``DistributedSampler`` repeats to even out the ranks are counted once, and it breaks score
    ties by image id: with the dataset indices as image ids the result under DDP equals the single-process one.

    Args:
        num_classes: Number of object classes; labels are ``0 .. num_classes - 1`` (no background class).
        class_names: Names of the classes (keys of :meth:`compute`'s per-class output); default ``"0"``, ``"1"``...
        iou_threshold: IoU a match must exceed (0.5 in VOC).
        validate_args: Check the inputs of every update.
        kwargs: Passed to :class:`torchmetrics.Metric`.

    Example:
        >>> import torch
        >>> metric = VOC07MeanAveragePrecision(num_classes=2, class_names=["cat", "dog"])
        >>> target = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([0]),
        ...            "difficult": torch.tensor([False])}]
        >>> preds = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "scores": torch.tensor([0.9]),
        ...           "labels": torch.tensor([0])}]
        >>> metric.update(preds, target)
        >>> {name: round(value.item(), 4) for name, value in metric.compute().items()}
        {'map': 0.5, 'ap/cat': 1.0, 'ap/dog': 0.0}

    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        num_classes: int = 20,
        class_names: Sequence[str] | None = None,
        iou_threshold: float = 0.5,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"`num_classes` must be an integer >= 1, got {num_classes!r}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"`class_names` must hold `num_classes`={num_classes} names, got {len(class_names)}")
        if not 0.0 <= iou_threshold < 1.0:
            raise ValueError(f"`iou_threshold` must be in [0, 1), got {iou_threshold!r}")
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
        self.iou_threshold = iou_threshold
        self.validate_args = validate_args
        for name in (*_DET_STATES, *_GT_STATES):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self._updates = 0  # local count of images seen, for the occurrence tags

    def update(
        self, preds: Sequence[dict[str, Tensor]], target: Sequence[dict[str, Tensor]], image_ids: Tensor | None = None
    ) -> None:
        """Add a batch of images.

        Args:
            preds: Per image, ``boxes`` ``(D, 4)`` (x1, y1, x2, y2), ``scores`` ``(D,)``, ``labels`` ``(D,)``.
            target: Per image, ``boxes`` ``(G, 4)``, ``labels`` ``(G,)`` and optionally ``difficult`` ``(G,)``.
            image_ids: ``(B,)`` a unique id per image, e.g. the dataset indices; needed for results that do not
                depend on the process layout (ties, repeated images). Default: a fresh id per image seen.

        """
        if len(preds) != len(target):
            raise ValueError(f"`preds` and `target` must hold one entry per image, got {len(preds)} and {len(target)}")
        world, rank = (
            (dist.get_world_size(), dist.get_rank()) if dist.is_available() and dist.is_initialized() else (1, 0)
        )
        occurrence = (self._updates + torch.arange(len(preds))) * world + rank  # unique across processes
        self._updates += len(preds)
        if image_ids is None:
            image_ids = occurrence
        image_ids = torch.as_tensor(image_ids).flatten()
        if len(image_ids) != len(preds):
            raise ValueError(f"`image_ids` must hold one id per image ({len(preds)}), got {len(image_ids)}")
        for p, t, image_id, occ in zip(preds, target, image_ids.tolist(), occurrence.tolist(), strict=True):
            difficult = t.get("difficult")
            if difficult is None:
                difficult = torch.zeros(len(t["labels"]), dtype=torch.bool, device=t["labels"].device)
            if self.validate_args:
                missing = [k for k in ("boxes", "scores", "labels") if k not in p] + [
                    k for k in ("boxes", "labels") if k not in t
                ]
                if missing:
                    raise ValueError(f"`preds` need boxes/scores/labels and `target` boxes/labels; missing {missing}")
                n_det, n_gt = len(p["labels"]), len(t["labels"])
                _voc07_arg_validation(
                    p["boxes"].reshape(-1, 4),
                    p["scores"],
                    p["labels"],
                    torch.zeros(n_det, dtype=torch.long),
                    t["boxes"].reshape(-1, 4),
                    t["labels"],
                    difficult,
                    torch.zeros(n_gt, dtype=torch.long),
                    self.num_classes,
                    self.iou_threshold,
                )
            n_det, n_gt = len(p["labels"]), len(t["labels"])
            self.det_boxes.append(p["boxes"].detach().reshape(-1).float().to(self.device))  # flat (D * 4,)
            self.det_scores.append(p["scores"].detach().float().to(self.device))
            self.det_labels.append(p["labels"].detach().long().to(self.device))
            self.det_image_ids.append(torch.full((n_det,), image_id, dtype=torch.long, device=self.device))
            self.det_occurrence.append(torch.full((n_det,), occ, dtype=torch.long, device=self.device))
            self.gt_boxes.append(t["boxes"].detach().reshape(-1).float().to(self.device))
            self.gt_labels.append(t["labels"].detach().long().to(self.device))
            self.gt_difficult.append(difficult.detach().long().to(self.device))
            self.gt_image_ids.append(torch.full((n_gt,), image_id, dtype=torch.long, device=self.device))
            self.gt_occurrence.append(torch.full((n_gt,), occ, dtype=torch.long, device=self.device))

    def _state(self, name: str) -> Tensor:
        value = getattr(self, name)
        if isinstance(value, list):
            return dim_zero_cat(value).cpu() if value else torch.zeros(0)
        return value.cpu()

    def compute(self) -> dict[str, Tensor]:
        """``{"map": mAP, "ap/<class name>": AP, ...}`` (float32 scalars); mAP is ``nan`` before any update."""
        det = {name: self._state(name) for name in _DET_STATES}
        gt = {name: self._state(name) for name in _GT_STATES}
        image_ids = torch.cat([det["det_image_ids"], gt["gt_image_ids"]]).long()
        occurrence = torch.cat([det["det_occurrence"], gt["gt_occurrence"]]).long()
        if not len(image_ids):
            return {
                "map": torch.tensor(float("nan")),
                **{f"ap/{n}": torch.tensor(float("nan")) for n in self.class_names},
            }
        # Keep the first occurrence of every image id (a repeated image adds the same rows again).
        unique_ids, inverse = image_ids.unique(return_inverse=True)
        first = torch.full((len(unique_ids),), torch.iinfo(torch.long).max, dtype=torch.long)
        first = first.scatter_reduce(0, inverse, occurrence, reduce="amin")
        n_det = len(det["det_image_ids"])
        keep = occurrence == first[inverse]
        keep_det, keep_gt = keep[:n_det], keep[n_det:]
        aps = _voc07_compute(
            det["det_boxes"].reshape(-1, 4)[keep_det],
            det["det_scores"][keep_det],
            det["det_labels"].long()[keep_det],
            det["det_image_ids"].long()[keep_det],
            gt["gt_boxes"].reshape(-1, 4)[keep_gt],
            gt["gt_labels"].long()[keep_gt],
            gt["gt_difficult"].bool()[keep_gt],
            gt["gt_image_ids"].long()[keep_gt],
            self.num_classes,
            self.iou_threshold,
        )
        result = {"map": aps.mean().float()}
        result.update({f"ap/{name}": ap.float() for name, ap in zip(self.class_names, aps, strict=True)})
        return result

    def reset(self) -> None:
        """Clear the state and the occurrence counter."""
        super().reset()
        self._updates = 0
