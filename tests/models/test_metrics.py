"""COCO metric wrapper and operating-point code on hand-made cases with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from models.evaluation.evaluate import choose_threshold, class_pr, coco_metrics, confusion

GT_BOXES = np.array([[0, 0, 20, 20], [100, 100, 130, 130]], np.float32)


def dets(boxes, scores, classes):
    return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32), np.asarray(classes, np.int64))


def test_perfect_detections_give_ap_one():
    gts = [(GT_BOXES, np.array([0, 1]))]
    m = coco_metrics(gts, [dets(GT_BOXES, [0.9, 0.8], [0, 1])])
    assert m["AP50_mask"] == pytest.approx(1.0) and m["AP50_no_mask"] == pytest.approx(1.0)
    assert m["mAP50_95"] == pytest.approx(1.0)
    assert np.isnan(m["AP50_mask_incorrect"])  # no ground truth: left out of the means
    assert m["mAP50"] == pytest.approx(1.0)


def test_false_positive_ranked_first_gives_two_thirds():
    # 2 GT of one class; ranked FP(0.9), TP(0.8), TP(0.7): interpolated precision is 2/3 at every recall
    gts = [(GT_BOXES, np.array([0, 0]))]
    d = dets([[300, 300, 320, 320], GT_BOXES[0], GT_BOXES[1]], [0.9, 0.8, 0.7], [0, 0, 0])
    m = coco_metrics(gts, [d])
    assert m["AP50_mask"] == pytest.approx(2 / 3, abs=1e-3)


def test_half_recall_gives_half_ap_and_wrong_class_counts_as_miss():
    gts = [(GT_BOXES, np.array([1, 1]))]
    d = dets([GT_BOXES[0], GT_BOXES[1]], [0.9, 0.8], [1, 0])  # the second face predicted as mask
    m = coco_metrics(gts, [d])
    assert m["AP50_no_mask"] == pytest.approx(0.5, abs=0.01)


def test_localisation_below_iou_half_is_a_miss_at_50_and_counts_at_strict_iou():
    gts = [(GT_BOXES[:1], np.array([0]))]
    shifted = GT_BOXES[:1] + np.array([[4, 0, 4, 0]], np.float32)  # IoU = 16*20/(24*20) = 0.667
    m = coco_metrics(gts, [dets(shifted, [0.9], [0])])
    assert m["AP50_mask"] == pytest.approx(1.0)
    assert m["mAP50_95"] == pytest.approx(0.4, abs=0.01)  # hits at IoU 0.50..0.65: 4 of 10 thresholds


def test_precision_recall_threshold_and_confusion():
    gts = [(GT_BOXES, np.array([1, 0]))]
    d = dets([GT_BOXES[0], GT_BOXES[1], [300, 300, 330, 330]], [0.9, 0.4, 0.6], [1, 1, 1])
    p, r = class_pr(gts, [d], 1, np.array([0.3, 0.5, 0.95]))
    assert r.tolist() == [1.0, 1.0, 0.0]
    assert p[0] == pytest.approx(1 / 3) and p[1] == pytest.approx(1 / 2)
    thr, prec, rec = choose_threshold(gts, [d], cls=1, min_recall=0.85)
    assert rec >= 0.85 and 0.6 <= thr <= 0.9
    thr2, prec2, rec2 = choose_threshold(gts, [d], cls=1, min_recall=1.01)  # unreachable: best F2
    assert (prec2, rec2) == (1.0, 1.0) and 0.6 < thr2 <= 0.9
    cm = confusion(gts, [d], np.array([0.5, 0.5, 0.5], np.float32))
    assert cm[1, 1] == 1      # no_mask found as no_mask
    assert cm[0, 3] == 1      # the mask face (its only detection is below threshold) missed
    assert cm[3, 1] == 1      # one background box called no_mask
