import numpy as np
import pytest
import torch

from lightning_skd.functional import voc07_average_precision, voc07_interpolated_ap


def _ap(dets, gts, num_classes=1):
    """dets: (image, label, score, box); gts: (image, label, difficult, box)."""
    det_boxes = torch.tensor([d[3] for d in dets], dtype=torch.float32).reshape(-1, 4)
    gt_boxes = torch.tensor([g[3] for g in gts], dtype=torch.float32).reshape(-1, 4)
    return voc07_average_precision(
        det_boxes,
        torch.tensor([d[2] for d in dets], dtype=torch.float32),
        torch.tensor([d[1] for d in dets], dtype=torch.long),
        torch.tensor([d[0] for d in dets], dtype=torch.long),
        gt_boxes,
        torch.tensor([g[1] for g in gts], dtype=torch.long),
        torch.tensor([g[2] for g in gts], dtype=torch.bool),
        torch.tensor([g[0] for g in gts], dtype=torch.long),
        num_classes=num_classes,
    )


A, B, C, FAR = [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10], [60, 60, 70, 70]
GTS = [(0, 0, False, A), (0, 0, False, B), (1, 0, False, C)]
DETS = [(0, 0, 0.9, A), (1, 0, 0.8, FAR), (1, 0, 0.7, C), (0, 0, 0.6, FAR), (0, 0, 0.5, B)]


def test_voc07_interpolated_ap_eleven_points():
    # recall 1/3, 1/3, 2/3, 2/3, 1 with precision 1, 1/2, 2/3, 1/2, 3/5:
    # t in {0, .1, .2, .3}: 1; t in {.4, .5, .6}: 2/3; t in {.7, .8, .9, 1}: 3/5  ->  (4 + 2 + 2.4) / 11
    recall = torch.tensor([1 / 3, 1 / 3, 2 / 3, 2 / 3, 1.0])
    precision = torch.tensor([1.0, 0.5, 2 / 3, 0.5, 0.6])
    assert voc07_interpolated_ap(recall, precision).item() == pytest.approx(8.4 / 11)
    assert voc07_interpolated_ap(torch.zeros(0), torch.zeros(0)).item() == 0.0


def test_voc07_average_precision_hand_computed_curve():
    assert _ap(DETS, GTS).tolist() == pytest.approx([8.4 / 11])


def test_voc07_average_precision_perfect_detections_score_one():
    dets = [(g[0], 0, 0.9 - 0.1 * i, g[3]) for i, g in enumerate(GTS)]
    assert _ap(dets, GTS).tolist() == pytest.approx([1.0])


def test_voc07_average_precision_difficult_box_is_neither_positive_nor_false_positive():
    difficult = (1, 0, True, [40, 40, 55, 55])
    with_detection = [*DETS, (1, 0, 0.65, [40, 40, 55, 55])]  # between two detections of the curve
    assert _ap(with_detection, [*GTS, difficult]).tolist() == pytest.approx([8.4 / 11])
    assert _ap(DETS, [*GTS, difficult]).tolist() == pytest.approx([8.4 / 11])  # not a positive to recall


def test_voc07_average_precision_duplicate_is_false_positive():
    # TP, dup FP, FP, TP, FP, TP: recall 1/3 x3, 2/3 x2, 1; precision 1, 1/2, 1/3, 1/2, 2/5, 1/2
    # -> (4 * 1 + 3 * 0.5 + 4 * 0.5) / 11
    dets = [*DETS, (0, 0, 0.85, A)]
    assert _ap(dets, GTS).tolist() == pytest.approx([7.5 / 11])


def test_voc07_average_precision_matches_best_overlap_only():
    # The second detection's best box is the already matched one: a false positive (as voc_eval.py), although
    # another box overlaps it by 0.82.
    gts = [(0, 0, False, [0, 0, 10, 10]), (0, 0, False, [1, 0, 11, 10])]
    dets = [(0, 0, 0.9, [0, 0, 10, 10]), (0, 0, 0.8, [0, 0, 10, 10])]
    assert _ap(dets, gts).tolist() == pytest.approx([6 / 11])


def test_voc07_average_precision_iou_must_exceed_half():
    gts = [(0, 0, False, [0, 0, 10, 10])]
    assert _ap([(0, 0, 0.9, [0, 0, 10, 20])], gts).tolist() == [0.0]  # IoU exactly 0.5
    assert _ap([(0, 0, 0.9, [0, 0, 10, 19.9])], gts).tolist() == pytest.approx([1.0])


def test_voc07_average_precision_class_without_ground_truth_is_zero():
    # As the VOC devkit: recall 0/0 never reaches a threshold, so AP 0, and the class counts in the mean.
    dets = [*DETS, (0, 1, 0.99, A)]
    aps = _ap(dets, GTS, num_classes=3)
    assert aps.tolist() == pytest.approx([8.4 / 11, 0.0, 0.0])


def test_voc07_average_precision_wrong_detections_class():
    dets = [(0, 1, 0.9, A)]  # right box, wrong class
    assert _ap(dets, GTS, num_classes=2).tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"det_labels": torch.tensor([5])}, "det_labels"),
        ({"det_boxes": torch.zeros(1, 3)}, "det_boxes"),
        ({"gt_difficult": torch.zeros(2, dtype=torch.bool)}, "gt_difficult"),
        ({"det_scores": torch.tensor([float("nan")])}, "det_scores"),
    ],
)
def test_voc07_average_precision_rejects_bad_input(change, message):
    args = {
        "det_boxes": torch.zeros(1, 4),
        "det_scores": torch.ones(1),
        "det_labels": torch.zeros(1, dtype=torch.long),
        "det_image_ids": torch.zeros(1, dtype=torch.long),
        "gt_boxes": torch.zeros(1, 4),
        "gt_labels": torch.zeros(1, dtype=torch.long),
        "gt_difficult": torch.zeros(1, dtype=torch.bool),
        "gt_image_ids": torch.zeros(1, dtype=torch.long),
    }
    with pytest.raises(ValueError, match=message):
        voc07_average_precision(**{**args, **change}, num_classes=2)


def _voc_eval_reference(dets, gts, iou_threshold=0.5):
    """py-faster-rcnn's voc_eval.py (use_07_metric=True) transcribed in numpy, for one class, continuous IoU."""
    records = {}
    for image, _, difficult, box in gts:
        r = records.setdefault(image, {"bbox": [], "difficult": [], "det": []})
        r["bbox"].append(box)
        r["difficult"].append(difficult)
        r["det"].append(False)
    npos = sum(not g[2] for g in gts)
    order = sorted(range(len(dets)), key=lambda i: (-dets[i][2], dets[i][0], i))
    tp, fp = np.zeros(len(dets)), np.zeros(len(dets))
    for d, i in enumerate(order):
        image, _, _, bb = dets[i]
        r = records.get(image)
        ovmax, jmax = -np.inf, -1
        if r is not None:
            bbgt = np.asarray(r["bbox"], dtype=float)
            ixmin, iymin = np.maximum(bbgt[:, 0], bb[0]), np.maximum(bbgt[:, 1], bb[1])
            ixmax, iymax = np.minimum(bbgt[:, 2], bb[2]), np.minimum(bbgt[:, 3], bb[3])
            inters = np.maximum(ixmax - ixmin, 0.0) * np.maximum(iymax - iymin, 0.0)
            uni = (bb[2] - bb[0]) * (bb[3] - bb[1]) + (bbgt[:, 2] - bbgt[:, 0]) * (bbgt[:, 3] - bbgt[:, 1]) - inters
            overlaps = inters / uni
            ovmax, jmax = overlaps.max(), overlaps.argmax()
        if ovmax > iou_threshold:
            if not r["difficult"][jmax]:
                if not r["det"][jmax]:
                    tp[d], r["det"][jmax] = 1.0, True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    ap = 0.0
    for t in np.arange(0.0, 1.1, 0.1):
        p = 0 if np.sum(rec >= t - 1e-12) == 0 else np.max(prec[rec >= t - 1e-12])
        ap += p / 11.0
    return ap


def test_voc07_average_precision_matches_voc_eval_reference_on_random_detections():
    rng = np.random.default_rng(0)
    gts, dets = [], []
    for image in range(12):
        for _ in range(rng.integers(1, 5)):
            x, y, w, h = rng.uniform(0, 80), rng.uniform(0, 80), rng.uniform(8, 30), rng.uniform(8, 30)
            box = [x, y, x + w, y + h]
            gts.append((image, 0, bool(rng.random() < 0.2), box))
            for _ in range(rng.integers(0, 3)):  # jittered detections: some hits, some duplicates, some misses
                jitter = rng.normal(0, 3, size=4)
                dets.append((image, 0, float(rng.uniform(0.3, 1.0)), [float(v) for v in np.asarray(box) + jitter]))
        for _ in range(rng.integers(0, 3)):  # background false positives
            x, y = rng.uniform(0, 90, size=2)
            dets.append((image, 0, float(rng.uniform(0.0, 0.7)), [x, y, x + 10, y + 10]))
    dets = [(i, lab, s, [b[0], b[1], max(b[2], b[0] + 1), max(b[3], b[1] + 1)]) for i, lab, s, b in dets]
    expected = _voc_eval_reference(dets, gts)
    assert 0.2 < expected < 0.95  # a non-trivial curve
    assert _ap(dets, gts).item() == pytest.approx(expected, abs=1e-6)
