"""Issue-12 evaluation figures (VOC AP, 2-class AP, NC operating point, recall by face width) on
hand-made cases with known answers, and the Ultra-Light peer on a real photo."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from models.evaluation.evaluate import (UltraLightPeer, face_recall_by_width, nc_operating_point, truth_metrics, two_class,
                             voc_ap)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
PEER = SHARED / "weights" / "ultra-light" / "RFB-640-masked_face-v2.onnx"
GT = np.array([[0, 0, 20, 20], [100, 100, 140, 140], [200, 200, 300, 300]], np.float32)  # widths 20, 40, 100


def dets(boxes, scores, classes):
    return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32), np.asarray(classes, np.int64))


def test_voc_all_point_ap_known_values():
    gts = [(GT[:2], np.array([0, 0]))]
    assert voc_ap(gts, [dets(GT[:2], [0.9, 0.8], [0, 0])], 0) == pytest.approx(1.0)
    # FP first, then two TPs: precision envelope 2/3 over recall (0, 1]
    d = dets([[400, 400, 420, 420], GT[0], GT[1]], [0.9, 0.8, 0.7], [0, 0, 0])
    assert voc_ap(gts, [d], 0) == pytest.approx(2 / 3)
    # TP then FP then TP: all-point AP = 0.5 * 1 + 0.5 * 2/3 (11-point or 101-point would differ)
    d = dets([GT[0], [400, 400, 420, 420], GT[1]], [0.9, 0.8, 0.7], [0, 0, 0])
    assert voc_ap(gts, [d], 0) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # a duplicate on an already-taken face is a false positive; no face of a class -> nan
    d = dets([GT[0], GT[0]], [0.9, 0.8], [0, 0])
    assert voc_ap(gts, [d], 0) == pytest.approx(0.5)
    assert np.isnan(voc_ap(gts, [d], 2))


def test_two_class_merges_no_mask_and_incorrect():
    assert two_class(np.array([0, 1, 2, 0])).tolist() == [0, 1, 1, 0]
    gts = [(GT, np.array([0, 1, 2]))]
    d = dets(GT, [0.9, 0.8, 0.7], [0, 2, 1])  # the two NC faces swapped between NC classes
    m = truth_metrics(gts, [d], [d])
    assert m["voc_AP50_no_mask"] == pytest.approx(0.0) and m["voc_AP50_mask_incorrect"] == pytest.approx(0.0)
    assert m["voc_AP50_noncompliant"] == pytest.approx(1.0) and m["voc_AP50_compliant"] == pytest.approx(1.0)
    assert m["voc_AP50_2class"] == pytest.approx(1.0)


def test_nc_operating_point_counts_nc_on_any_nc_face():
    gts = [(GT, np.array([0, 1, 2]))]
    # NC on the mask face (FP), NC on the incorrect face (TP), no_mask face found below threshold
    d = dets(GT, [0.9, 0.3, 0.8], [1, 1, 1])
    r = nc_operating_point(gts, [d], 0.5)
    assert (r["recall"], r["precision"], r["n_nc_faces"], r["n_nc_dets"]) == (0.5, 0.5, 2, 2)
    r = nc_operating_point(gts, [d], 0.2)
    assert r["recall"] == 1.0 and r["precision"] == pytest.approx(2 / 3)


def test_face_recall_by_width_at_stated_unmatched_boxes_per_image():
    gts = [(GT, np.array([0, 1, 2])), (GT[:1], np.array([1]))]
    d0 = dets([GT[2], [500, 500, 540, 540], GT[1], GT[0]], [0.9, 0.8, 0.75, 0.3], [0, 1, 1, 1])  # one unmatched at 0.8
    d1 = dets([[600, 0, 640, 40], GT[0]], [0.7, 0.2], [0, 1])  # one unmatched at 0.7
    rows = face_recall_by_width(gts, [d0, d1], fp_per_image=(0.0, 0.5, 1.0), fixed_thresholds=(0.5,))
    r0, r05, r1, fixed = rows
    # 0 unmatched allowed: threshold just above 0.8 -> only the 100-px face found
    assert r0["fp_per_image"] == 0.0 and r0["by_width"][">=128"] != r0["by_width"][">=128"]  # empty bin: nan
    assert r0["by_width"]["64-128"] == 1.0 and r0["by_width"]["16-32"] == 0.0 and r0["recall"] == 0.25
    # 0.5 per image = 1 unmatched in all: threshold just above 0.7 -> the 40-px and 100-px faces
    assert r05["fp_per_image"] == 0.5 and r05["recall"] == 0.5 and r05["by_width"]["32-64"] == 1.0
    # 1.0 per image = 2 unmatched: everything down to the lowest score counts
    assert r1["fp_per_image"] == 1.0 and r1["recall"] == 1.0 and r1["recall_ge32"] == 1.0
    assert fixed["threshold"] == 0.5 and fixed["recall"] == 0.5 and fixed["n_by_width"]["16-32"] == 2
    assert r1["by_class"] == {"mask": 1.0, "no_mask": 1.0, "mask_incorrect": 1.0}
    assert fixed["by_class"] == {"mask": 0.0, "no_mask": 0.5, "mask_incorrect": 1.0}


@pytest.mark.skipif(not PEER.exists(), reason="needs ../shared/weights/ultra-light")
def test_ultra_light_peer_finds_the_unmasked_face_in_a_real_frame():
    cap = cv2.VideoCapture(str(SHARED / "data" / "videos" / "unmasked-man-outdoor-720p.mp4"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 100)
    ok, frame = cap.read()
    cap.release()
    assert ok
    per_class, deployed = UltraLightPeer(PEER)(frame)
    b, s, c = deployed
    assert len(s) >= 1 and s[0] >= 0.5 and c[0] == 1  # "face" -> no_mask, best first
    w = b[0, 2] - b[0, 0]
    assert 40 <= w <= 400 and 0 <= b[0, 0] < b[0, 2] <= frame.shape[1]
    assert len(per_class[1]) >= len(deployed[1])  # per-class keeps a box for each class
