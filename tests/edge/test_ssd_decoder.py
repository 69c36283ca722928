"""The SSD decoder (edge.decoders.decode_ssd) and its postprocess dispatch on hand-made outputs: per-class
threshold and NMS, then one box per face (class-agnostic NMS and nested-box suppression)."""
from __future__ import annotations

import numpy as np
import pytest

from edge.decoders import ClusterParams, decode_ssd
from edge.model import ModelMeta, postprocess
from edge.preprocess import Letterbox


def _outputs():
    # priors' decoded boxes (input px) and softmax rows (background, mask, no_mask, mask_incorrect)
    boxes = np.array([[100, 100, 200, 200],    # 0: the face, no_mask 0.80
                      [104, 102, 204, 198],    # 1: the same face, shifted: no_mask 0.70 (per-class NMS drops it)
                      [102, 100, 200, 204],    # 2: the same face as mask 0.60 (the class-agnostic NMS drops it)
                      [120, 130, 170, 180],    # 3: a box nested in the face (IoU 0.25): no_mask 0.55
                      [400, 50, 440, 90],      # 4: another face, mask 0.90
                      [300, 300, 340, 340]],   # 5: background
                     np.float32)
    scores = np.array([[0.15, 0.03, 0.80, 0.02],
                       [0.25, 0.03, 0.70, 0.02],
                       [0.30, 0.60, 0.08, 0.02],
                       [0.40, 0.03, 0.55, 0.02],
                       [0.05, 0.90, 0.03, 0.02],
                       [0.97, 0.01, 0.01, 0.01]], np.float32)
    return scores, boxes


def test_per_class_threshold_and_nms():
    scores, boxes = _outputs()
    b, s, c = decode_ssd(scores[None], boxes[None], ClusterParams(method="nms", conf_threshold=0.5, iou_threshold=0.5))
    # per class: no_mask keeps 0 and the nested 3 (IoU 0.25 < 0.5), drops 1; mask keeps 2 and 4; background never
    assert sorted(zip(c.tolist(), [round(float(v), 2) for v in s])) == [(0, 0.6), (0, 0.9), (1, 0.55), (1, 0.8)]
    assert np.allclose(b[0], boxes[4]) and s[0] == pytest.approx(0.9)  # best first
    # a low threshold lets every class of every prior propose (the background row's 0.01 too)
    b, s, c = decode_ssd(scores, boxes, ClusterParams(method="nms", conf_threshold=0.005, iou_threshold=1.0))
    assert len(s) == 18


def test_postprocess_keeps_one_box_per_face_including_nested_boxes():
    scores, boxes = _outputs()
    meta = ModelMeta(decoder="ssd", outputs={"scores": "scores", "boxes": "boxes"}, input_w=640, input_h=352,
                     cluster={"method": "nms", "conf_threshold": 0.5, "iou_threshold": 0.5, "nested_overlap": 0.7})
    assert ModelMeta.from_json(meta.to_json()).output_roles == ["scores", "boxes"]
    lb = Letterbox(0.5, 0.5, 0.0, 10.0)  # a 1280x684 frame letterboxed with 10 px on top
    out = {"scores": scores[None], "boxes": boxes[None]}
    b, s, c = postprocess(out, meta, lb, (1280, 684))
    assert c.tolist() == [0, 1] and np.allclose(s, [0.9, 0.8])  # one box on each face
    assert np.allclose(b[1], [200, 180, 400, 380])  # frame px: (x / 0.5, (y - 10) / 0.5)
    b, s, c = postprocess(out, meta, lb, (1280, 684), class_agnostic=False)
    assert len(s) == 4  # without the one-box-per-face step the nested box and the mask box stay


def test_empty_and_mismatched_outputs():
    scores, boxes = _outputs()
    b, s, c = decode_ssd(scores[5:], boxes[5:], ClusterParams(method="nms", conf_threshold=0.5))
    assert b.shape == (0, 4) and len(s) == 0 and c.dtype == np.int64
    with pytest.raises(ValueError, match="SSD outputs"):
        decode_ssd(scores, boxes[:3])
