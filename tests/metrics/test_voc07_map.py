import pytest
import torch
from torchmetrics.detection import MeanAveragePrecision

from lightning_skd.metrics import VOC07MeanAveragePrecision


def _image(seed, n_gt=3, n_det=5, num_classes=3):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n_gt, 2, generator=g) * 60
    gt_boxes = torch.cat([xy, xy + 10 + torch.rand(n_gt, 2, generator=g) * 20], dim=1)
    target = {
        "boxes": gt_boxes,
        "labels": torch.randint(num_classes, (n_gt,), generator=g),
        "difficult": torch.rand(n_gt, generator=g) < 0.2,
    }
    pick = torch.randint(n_gt, (n_det,), generator=g)
    det_boxes = gt_boxes[pick] + torch.randn(n_det, 4, generator=g) * 3
    det_boxes[:, 2:] = torch.maximum(det_boxes[:, 2:], det_boxes[:, :2] + 1)
    preds = {
        "boxes": det_boxes,
        "scores": torch.rand(n_det, generator=g).round(decimals=1),  # many ties
        "labels": torch.where(torch.rand(n_det, generator=g) < 0.8, target["labels"][pick], 0),
    }
    return preds, target


def test_voc07_map_perfect_detections_score_one_on_both_protocols():
    preds, targets = [], []
    for seed in range(4):
        _, target = _image(seed)
        target["difficult"][:] = False
        targets.append(target)
        preds.append({"boxes": target["boxes"], "scores": torch.ones(3), "labels": target["labels"]})
    voc = VOC07MeanAveragePrecision(num_classes=3)
    coco = MeanAveragePrecision(iou_type="bbox", backend="faster_coco_eval")
    voc.update(preds, targets)
    coco.update(preds, targets)
    present = torch.cat([t["labels"] for t in targets]).unique()
    assert len(present) == 3
    assert voc.compute()["map"].item() == pytest.approx(1.0)
    assert coco.compute()["map_50"].item() == pytest.approx(1.0)
    assert coco.compute()["map"].item() == pytest.approx(1.0)


def test_voc07_map_does_not_depend_on_batching_or_order():
    images = [_image(seed) for seed in range(10)]
    one = VOC07MeanAveragePrecision(num_classes=3)
    one.update([p for p, _ in images], [t for _, t in images], image_ids=torch.arange(10))
    shuffled = VOC07MeanAveragePrecision(num_classes=3)
    for i in [7, 2, 9, 0, 5, 1, 8, 3, 6, 4]:  # one image per update, another order
        shuffled.update([images[i][0]], [images[i][1]], image_ids=torch.tensor([i]))
    a, b = one.compute(), shuffled.compute()
    assert 0.1 < a["map"].item() < 0.99
    assert {k: v.item() for k, v in a.items()} == {k: v.item() for k, v in b.items()}


def test_voc07_map_counts_a_repeated_image_once():
    # DistributedSampler repeats images to even out the ranks; the repeated rows must not count twice.
    images = [_image(seed) for seed in range(5)]
    once = VOC07MeanAveragePrecision(num_classes=3)
    once.update([p for p, _ in images], [t for _, t in images], image_ids=torch.arange(5))
    twice = VOC07MeanAveragePrecision(num_classes=3)
    twice.update([p for p, _ in images], [t for _, t in images], image_ids=torch.arange(5))
    twice.update([images[0][0], images[1][0]], [images[0][1], images[1][1]], image_ids=torch.tensor([0, 1]))
    assert twice.compute()["map"].item() == once.compute()["map"].item()
    no_ids = VOC07MeanAveragePrecision(num_classes=3)  # without ids, every update is a new image
    no_ids.update([images[0][0]] * 2, [images[0][1]] * 2)
    two_ids = VOC07MeanAveragePrecision(num_classes=3)
    two_ids.update([images[0][0]] * 2, [images[0][1]] * 2, image_ids=torch.tensor([0, 1]))
    assert no_ids.compute()["map"].item() == two_ids.compute()["map"].item()


def test_voc07_map_difficult_detection_changes_nothing():
    target = {
        "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [30.0, 30.0, 50.0, 50.0]]),
        "labels": torch.tensor([0, 0]),
        "difficult": torch.tensor([False, True]),
    }
    hit = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "scores": torch.tensor([0.5]), "labels": torch.tensor([0])}
    with_difficult = {
        "boxes": torch.tensor([[30.0, 30.0, 50.0, 50.0], [0.0, 0.0, 10.0, 10.0]]),
        "scores": torch.tensor([0.9, 0.5]),
        "labels": torch.tensor([0, 0]),
    }
    for preds in (hit, with_difficult):
        metric = VOC07MeanAveragePrecision(num_classes=1, class_names=["cat"])
        metric.update([preds], [target])
        assert metric.compute() == {"map": torch.tensor(1.0), "ap/cat": torch.tensor(1.0)}


def test_voc07_map_without_update_is_nan():
    with pytest.warns(UserWarning, match="compute"):  # torchmetrics: compute before update
        assert VOC07MeanAveragePrecision(num_classes=2).compute()["map"].isnan()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"num_classes": 0}, "num_classes"), ({"num_classes": 2, "class_names": ["a"]}, "class_names")],
)
def test_voc07_map_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VOC07MeanAveragePrecision(**kwargs)


def test_voc07_map_rejects_label_out_of_range():
    metric = VOC07MeanAveragePrecision(num_classes=2)
    preds = {"boxes": torch.zeros(1, 4), "scores": torch.ones(1), "labels": torch.tensor([2])}
    target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    with pytest.raises(ValueError, match="det_labels"):
        metric.update([preds], [target])
