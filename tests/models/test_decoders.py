"""DetectNet_v2 encoding/decoding and clustering (edge.decoders, NumPy only)."""
from __future__ import annotations

import numpy as np
import pytest

from edge.decoders import (ClusterParams, DetectNetV2Params, box_iou, dbscan, decode_detectnet_v2,
                           encode_detectnet_v2, nms)

GT = np.array([[100, 60, 122, 84],      # 22 px face, the dataset median
               [300, 100, 400, 230],    # 100 px face
               [20, 200, 270, 360],     # 250 px face, the top of the entrance range
               [500, 20, 510, 31]],     # 10 px face, smaller than one cell
              np.float32)
LABELS = np.array([0, 1, 2, 1])


@pytest.mark.parametrize("method", ["dbscan", "nms"])
def test_encode_decode_round_trip(method):
    cov, bbox = encode_detectnet_v2(GT, LABELS, (368, 640), 3)
    assert cov.shape == (3, 23, 40) and bbox.shape == (12, 23, 40)
    boxes, scores, classes = decode_detectnet_v2(cov, bbox, cluster=ClusterParams(method=method, conf_threshold=0.5))
    assert len(boxes) == len(GT)
    iou = box_iou(GT, boxes)
    best = iou.argmax(axis=1)
    assert (iou.max(axis=1) > 0.9).all(), iou.max(axis=1)
    assert (classes[best] == LABELS).all()
    assert np.allclose(scores, 1.0)


def test_every_face_gets_a_positive_cell_and_smaller_box_owns_overlap():
    geo = DetectNetV2Params()
    big = np.array([[0, 0, 200, 200]], np.float32)
    small = np.array([[90, 90, 110, 110]], np.float32)
    cov, bbox = encode_detectnet_v2(np.concatenate([big, small]), np.array([0, 0]), (208, 208), 3, geo)
    # the cell at the small face's centre (100, 100) -> grid (6, 6) regresses the small box
    off = bbox[0:4, 6, 6] * geo.bbox_norm
    centre = (6 + 0.5) * geo.stride
    assert np.allclose(off + centre, [90, 90, 110, 110], atol=1e-4)
    assert cov[0].sum() > 1 and cov[1:].sum() == 0


def test_nms_keeps_best_of_overlapping_boxes():
    b = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    keep = nms(b, np.array([0.6, 0.9, 0.5], np.float32), 0.5)
    assert keep.tolist() == [1, 2]


def test_dbscan_groups_by_iou_and_drops_weak_noise():
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [100, 100, 110, 110]], np.float32)
    lab = dbscan(b, np.array([0.9, 0.8, 0.1], np.float32), eps=0.3, min_samples=0.5)
    assert lab[0] == lab[1] >= 0 and lab[2] == -1


def test_empty_maps_decode_to_nothing():
    boxes, scores, classes = decode_detectnet_v2(np.zeros((3, 23, 40), np.float32), np.zeros((12, 23, 40), np.float32))
    assert boxes.shape == (0, 4) and scores.shape == (0,) and classes.shape == (0,)
