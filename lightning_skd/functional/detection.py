"""PASCAL VOC 2007 detection average precision: AP at IoU > 0.5 per class, 11-point interpolation, ``difficult``.

This is the protocol of the VOC2007 devkit (``VOCevaldet.m``) and of py-faster-rcnn's ``voc_eval.py`` with
``use_07_metric=True``, the number Faster R-CNN papers report on VOC07 *test* (Kim et al. Tables 3 and 5):

1. Per class, all detections of all images are sorted by score, highest first.
2. Each detection is matched to the ground-truth box of its image and class with the largest IoU (difficult ones
   and already matched ones included). If that IoU is **> 0.5** (strict): a difficult box makes the detection
   *ignored* (neither true nor false positive); an unmatched non-difficult box makes it a true positive and marks
   the box matched; an already matched box makes it a false positive (a duplicate). IoU <= 0.5 (or no box) is a
   false positive.
3. Recall = cumulative TP / number of non-difficult boxes; precision = cumulative TP / cumulative (TP + FP).
4. AP = mean over t in {0, 0.1, ..., 1} of the largest precision at recall >= t (0 where recall never reaches t).

A class with no non-difficult ground truth gets AP 0, as the VOC code gives (its recall is 0/0 = NaN, so no
threshold is reached), and it still counts in the mean. Boxes are continuous ``(x1, y1, x2, y2)`` pixel
coordinates; :class:`~lightning_skd.data.VOCDetectionDataModule` turns VOC's 1-based inclusive pixel indices into
them (``x1 - 1, y1 - 1, x2, y2``), which makes plain IoU equal to the devkit's ``+1`` IoU.

Inputs are flat tensors over a whole evaluation: every detection and every ground-truth box is one row tagged with
the id of its image, so that the state of a metric is a few concatenable tensors (see
:class:`~lightning_skd.metrics.VOC07MeanAveragePrecision`).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou

VOC07_RECALL_THRESHOLDS = torch.linspace(0, 1, 11, dtype=torch.float64)  # 0, 0.1, ..., 1.0


def voc07_interpolated_ap(recall: Tensor, precision: Tensor) -> Tensor:
    """11-point interpolated average precision of a precision/recall curve (VOC2007).

    Args:
        recall: ``(N,)`` recall after each detection (non-decreasing).
        precision: ``(N,)`` precision after each detection.

    Returns:
        A float64 scalar: ``mean_t max(precision[recall >= t])`` over t = 0, 0.1, ..., 1 (0 where none).

    Example:
        >>> import torch
        >>> voc07_interpolated_ap(torch.tensor([0.5, 0.5, 1.0]), torch.tensor([1.0, 0.5, 2 / 3]))
        tensor(0.8485, dtype=torch.float64)

    """
    recall, precision = recall.double(), precision.double()
    total = torch.zeros((), dtype=torch.float64)
    for threshold in VOC07_RECALL_THRESHOLDS:
        reached = precision[recall >= threshold - 1e-12]  # tolerance: cumulative sums of 0.1 steps, e.g. 3 / 10
        if reached.numel():
            total = total + reached.max()
    return total / len(VOC07_RECALL_THRESHOLDS)


def _voc07_arg_validation(
    det_boxes: Tensor,
    det_scores: Tensor,
    det_labels: Tensor,
    det_image_ids: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    gt_difficult: Tensor,
    gt_image_ids: Tensor,
    num_classes: int,
    iou_threshold: float,
) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"`num_classes` must be an integer >= 1, got {num_classes!r}")
    if not 0.0 <= iou_threshold < 1.0:
        raise ValueError(f"`iou_threshold` must be in [0, 1), got {iou_threshold!r}")
    for name, boxes in (("det_boxes", det_boxes), ("gt_boxes", gt_boxes)):
        if boxes.ndim != 2 or boxes.shape[-1] != 4:
            raise ValueError(f"`{name}` must have shape (N, 4) as (x1, y1, x2, y2), got {tuple(boxes.shape)}")
        if not torch.isfinite(boxes).all():
            raise ValueError(f"`{name}` holds NaN or Inf values")
    n_det, n_gt = len(det_boxes), len(gt_boxes)
    for name, tensor, n in (
        ("det_scores", det_scores, n_det),
        ("det_labels", det_labels, n_det),
        ("det_image_ids", det_image_ids, n_det),
        ("gt_labels", gt_labels, n_gt),
        ("gt_difficult", gt_difficult, n_gt),
        ("gt_image_ids", gt_image_ids, n_gt),
    ):
        if tensor.shape != (n,):
            raise ValueError(f"`{name}` must have shape ({n},) to match the boxes, got {tuple(tensor.shape)}")
    for name, labels in (("det_labels", det_labels), ("gt_labels", gt_labels)):
        if labels.is_floating_point() or (labels.numel() and (labels.min() < 0 or labels.max() >= num_classes)):
            raise ValueError(f"`{name}` must be integer class ids in [0, {num_classes}), got {labels.tolist()[:10]}")
    if not torch.isfinite(det_scores).all():
        raise ValueError("`det_scores` holds NaN or Inf values")


def _voc07_class_ap(
    det_boxes: Tensor,
    det_scores: Tensor,
    det_image_ids: Tensor,
    gt_boxes: Tensor,
    gt_difficult: Tensor,
    gt_image_ids: Tensor,
    iou_threshold: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """AP, recall and precision curves of one class (inputs already restricted to it)."""
    num_positives = int((~gt_difficult).sum())
    # Highest score first; ties by image id, then by position (stable), so that the order, and thus the AP, does not
    # depend on how images were spread over batches or processes.
    order = torch.argsort(det_image_ids, stable=True)
    order = order[torch.argsort(det_scores[order], descending=True, stable=True)]
    det_boxes, det_image_ids = det_boxes[order], det_image_ids[order]
    true_pos = torch.zeros(len(order), dtype=torch.float64)
    false_pos = torch.zeros(len(order), dtype=torch.float64)
    matched = torch.zeros(len(gt_boxes), dtype=torch.bool)
    gt_by_image = {int(i): (gt_image_ids == i).nonzero().flatten() for i in gt_image_ids.unique()}
    for d in range(len(order)):
        candidates = gt_by_image.get(int(det_image_ids[d]))
        if candidates is None:
            false_pos[d] = 1
            continue
        ious = box_iou(det_boxes[d : d + 1].double(), gt_boxes[candidates].double())[0]  # (num candidates,)
        best = int(ious.argmax())  # first maximum, as numpy's argmax in voc_eval.py
        if ious[best] <= iou_threshold:
            false_pos[d] = 1
            continue
        box = int(candidates[best])
        if gt_difficult[box]:
            continue  # a detection of a difficult object is ignored
        if matched[box]:
            false_pos[d] = 1  # a duplicate detection
        else:
            true_pos[d], matched[box] = 1, True
    tp, fp = true_pos.cumsum(0), false_pos.cumsum(0)
    recall = tp / num_positives if num_positives else torch.full_like(tp, float("nan"))
    precision = tp / (tp + fp).clamp(min=torch.finfo(torch.float64).eps)
    return voc07_interpolated_ap(recall, precision), recall, precision


def _voc07_compute(
    det_boxes: Tensor,
    det_scores: Tensor,
    det_labels: Tensor,
    det_image_ids: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    gt_difficult: Tensor,
    gt_image_ids: Tensor,
    num_classes: int,
    iou_threshold: float,
) -> Tensor:
    """Per-class AP ``(num_classes,)`` (float64) of flat detection and ground-truth tensors."""
    det_boxes, det_scores, gt_boxes = det_boxes.cpu(), det_scores.cpu(), gt_boxes.cpu()
    det_labels, det_image_ids = det_labels.cpu().long(), det_image_ids.cpu().long()
    gt_labels, gt_difficult, gt_image_ids = gt_labels.cpu().long(), gt_difficult.cpu().bool(), gt_image_ids.cpu().long()
    aps = torch.zeros(num_classes, dtype=torch.float64)
    for c in range(num_classes):
        d, g = det_labels == c, gt_labels == c
        aps[c] = _voc07_class_ap(
            det_boxes[d], det_scores[d], det_image_ids[d], gt_boxes[g], gt_difficult[g], gt_image_ids[g], iou_threshold
        )[0]
    return aps


def voc07_average_precision(
    det_boxes: Tensor,
    det_scores: Tensor,
    det_labels: Tensor,
    det_image_ids: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    gt_difficult: Tensor,
    gt_image_ids: Tensor,
    num_classes: int,
    iou_threshold: float = 0.5,
    validate_args: bool = True,
) -> Tensor:
    """VOC2007 average precision of every class (11-point interpolation, ``difficult`` boxes ignored).

    Args:
        det_boxes: ``(D, 4)`` detected boxes ``(x1, y1, x2, y2)``.
        det_scores: ``(D,)`` detection scores.
        det_labels: ``(D,)`` class ids in ``[0, num_classes)``.
        det_image_ids: ``(D,)`` id of the image each detection belongs to.
        gt_boxes: ``(G, 4)`` ground-truth boxes.
        gt_labels: ``(G,)`` class ids.
        gt_difficult: ``(G,)`` the VOC ``difficult`` flags.
        gt_image_ids: ``(G,)`` image ids (the same ids as ``det_image_ids``).
        num_classes: Number of object classes (20 for VOC).
        iou_threshold: A detection matches a box when their IoU is strictly above it (0.5 in VOC).
        validate_args: Check shapes, finiteness and label range.

    Returns:
        ``(num_classes,)`` float64 APs in [0, 1]; the VOC07 mAP is their mean (see module docstring for classes
        without ground truth).

    Example:
        >>> import torch
        >>> gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
        >>> det = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0], [20.0, 20.0, 30.0, 31.0]])
        >>> voc07_average_precision(
        ...     det, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 0, 0]), torch.tensor([0, 0, 0]),
        ...     gt, torch.tensor([0, 0]), torch.tensor([False, False]), torch.tensor([0, 0]), num_classes=1)
        tensor([0.8485], dtype=torch.float64)

    """
    if validate_args:
        _voc07_arg_validation(
            det_boxes,
            det_scores,
            det_labels,
            det_image_ids,
            gt_boxes,
            gt_labels,
            gt_difficult,
            gt_image_ids,
            num_classes,
            iou_threshold,
        )
    return _voc07_compute(
        det_boxes,
        det_scores,
        det_labels,
        det_image_ids,
        gt_boxes,
        gt_labels,
        gt_difficult,
        gt_image_ids,
        num_classes,
        iou_threshold,
    )
