"""One box per face: class-agnostic suppression of nested boxes after NMS (edge.decoders.suppress_nested)."""
from __future__ import annotations

import numpy as np
import pytest

from edge.decoders import ClusterParams, intersection_over_smaller, nms, suppress_nested
from edge.model import postprocess, preprocess

from edge_helpers import REPO, video_frames

UNMASKED = REPO.parent / "shared" / "data" / "videos" / "unmasked-man-outdoor-720p.mp4"

BASELINE = REPO / "models" / "released" / "yolo_student_baseline" / "model.onnx"


def test_intersection_over_smaller_box():
    big = np.array([[0, 0, 100, 100]], np.float32)
    small = np.array([[30, 30, 70, 70], [90, 0, 130, 40], [200, 200, 210, 210], [5, 5, 5, 50]], np.float32)
    ios = intersection_over_smaller(big, small)[0]
    assert ios[0] == pytest.approx(1.0)           # wholly inside
    assert ios[1] == pytest.approx(0.25)          # a quarter of the small box overlaps
    assert ios[2] == 0.0 and ios[3] == 0.0        # disjoint; zero-area box
    assert np.allclose(intersection_over_smaller(small, big)[:, 0], ios)  # symmetric


def test_nested_boxes_of_different_size_keep_one_and_nms_alone_keeps_three():
    # what the default model drew on the unmasked man: a head box, a face box inside it, a chin box
    boxes = np.array([[480, 150, 800, 600], [520, 200, 700, 400], [500, 380, 780, 600],
                      [100, 100, 160, 160]], np.float32)   # and another face elsewhere
    scores = np.array([0.47, 0.35, 0.27, 0.30], np.float32)
    classes = np.array([1, 1, 0, 0], np.int64)
    assert len(nms(boxes, scores, 0.5)) == 4                       # IoU 0.23 and 0.43: NMS keeps them
    b, s, c = suppress_nested(boxes, scores, classes, 0.7)
    assert s.tolist() == pytest.approx([0.47, 0.30])              # best of the nest + the other face
    assert b[0].tolist() == boxes[0].tolist() and c.tolist() == [1, 0]
    # the smaller box wins when it scores higher: the outer one is the one dropped
    b, s, c = suppress_nested(boxes[:2], np.array([0.3, 0.6], np.float32), classes[:2], 0.7)
    assert b.tolist() == [boxes[1].tolist()]
    # side-by-side faces (crowd) overlapping a little are both kept; 1.0 disables the step
    pair = np.array([[0, 0, 40, 40], [30, 0, 70, 40]], np.float32)
    assert len(suppress_nested(pair, np.array([0.9, 0.8], np.float32), np.zeros(2, np.int64), 0.7)[0]) == 2
    assert len(suppress_nested(boxes, scores, classes, 1.0)[0]) == 4
    assert len(suppress_nested(boxes[:0], scores[:0], classes[:0], 0.7)[0]) == 0


@pytest.mark.skipif(not BASELINE.is_file() or not UNMASKED.is_file(), reason="needs the baseline model and video")
def test_no_nested_boxes_on_the_unmasked_man_with_the_baseline_model():
    from edge.backends.onnxruntime import OnnxRuntimeBackend

    be = OnnxRuntimeBackend(BASELINE, threads=1)
    meta = be.meta
    assert ClusterParams().nested_overlap == meta.cluster_params().nested_overlap == 0.7  # old model: the default
    nested_before = nested_after = 0
    for _, f in video_frames(UNMASKED, 20):
        x, lb = preprocess(f, meta)
        out = be.infer(x)
        wh = (f.shape[1], f.shape[0])
        for overlap in (1.0, None):
            b, s, c = postprocess(out, meta, lb, wh, meta.cluster_params(nested_overlap=overlap))
            b = b[s >= 0.25]  # the model's lowest operating threshold
            ios = intersection_over_smaller(b, b)
            np.fill_diagonal(ios, 0.0)
            n = int((ios > 0.7).any(axis=1).sum())
            if overlap == 1.0:
                nested_before += n
            else:
                nested_after += n
    assert nested_before >= 4     # NMS alone leaves nested boxes in several of the 11 frames
    assert nested_after == 0


def test_the_released_default_gives_one_box_on_the_face_of_the_unmasked_man():
    """Every 10th frame: of the boxes at or above their class thresholds, exactly one touches his face
    (no second, nested or shifted box on it), and it is the only box strong enough to start a track
    (``tracker.high_score``): weaker boxes elsewhere can only extend a track, so the monitor, which
    draws confirmed tracks, shows one box."""
    from edge.backends.onnxruntime import OnnxRuntimeBackend
    from edge.config import Config, default_model_path
    from edge.model import apply_thresholds

    be = OnnxRuntimeBackend(default_model_path(), threads=1)
    start = Config().tracker.high_score
    face = np.array([[520, 90, 830, 520]], np.float32)  # his head in every frame of the clip (1280x720)
    n = 0
    for _, f in video_frames(UNMASKED, 10):
        x, lb = preprocess(f, be.meta)
        b, s, c = postprocess(be.infer(x), be.meta, lb, (f.shape[1], f.shape[0]))
        keep = apply_thresholds(s, c, be.meta)
        b, s = b[keep], s[keep]
        on_face = intersection_over_smaller(b, face)[:, 0] > 0.5
        assert on_face.sum() == 1, f"frame {n * 10}: {int(on_face.sum())} boxes on the face {b.round().tolist()}"
        strong = s >= start
        assert strong.sum() == 1 and strong[on_face].all(), f"frame {n * 10}: boxes >= {start}: {b[strong].round().tolist()}"
        cx, cy, w = (b[on_face][0, 0] + b[on_face][0, 2]) / 2, (b[on_face][0, 1] + b[on_face][0, 3]) / 2, \
            b[on_face][0, 2] - b[on_face][0, 0]
        assert 500 <= cx <= 800 and 200 <= cy <= 450 and 150 <= w <= 500, b[on_face][0].tolist()  # on his face
        n += 1
    assert n == 21
