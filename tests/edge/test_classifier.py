"""The secondary classifier's runtime side: crop geometry on a real frame, the re-classification rule on a
scripted track sequence, the vote rule on hand-made probabilities (no torch)."""
from __future__ import annotations

from typing import Dict, List

import cv2
import numpy as np
import pytest

from edge.backends.base import Backend
from edge.classifier import (PAD_VALUE, Classifier, SecondaryClassifier, classify_detections, combine, crop_faces,
                             crop_square, crops_to_tensor, decide)
from edge.config import ClassifierConfig, TrackerConfig
from edge.model import ModelMeta
from edge.tracking import Tracker
from edge.types import Detections

MASK, NO_MASK, INCORRECT = 0, 1, 2
CLASSES = ["mask", "no_mask", "mask_incorrect"]


@pytest.fixture(scope="module")
def frame(videos) -> np.ndarray:
    cap = cv2.VideoCapture(str(videos["unmasked"]))
    ok, img = cap.read()
    cap.release()
    assert ok and img.shape == (720, 1280, 3)
    return img


# ------------------------------------------------------------------------------------------------ geometry
def test_crop_square_adds_the_margin_on_every_side_of_the_longer_side():
    x0, y0, x1, y1 = crop_square((100, 200, 140, 260), 0.2)  # 40 x 60 box: longer side 60
    assert (x1 - x0, y1 - y0) == pytest.approx((84.0, 84.0))  # 60 * (1 + 2 * 0.2)
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == pytest.approx((120.0, 230.0))


def test_crop_inside_the_frame_is_the_frame_slice(frame):
    # a 96 x 80 box, margin 0: the square is 96 px, exactly the crop size: no resize, no padding
    c = crop_faces(frame, np.array([[600, 300, 696, 380]], np.float32), 96, 0.0)
    assert c.shape == (1, 96, 96, 3) and c.dtype == np.uint8
    assert np.array_equal(c[0], frame[292:388, 600:696])


def test_a_box_at_the_frame_corner_gives_a_full_letterboxed_crop(frame):
    # top-left corner: the square (-6, -6)..(36, 36), 42 px, of which the first 6 rows/columns are outside
    c = crop_faces(frame, np.array([[0, 0, 30, 30]], np.float32), 96, 0.2)[0]
    pad = int(np.floor(6 / 42 * 96))  # 13 px of grey at the top and left
    assert c.shape == (96, 96, 3)
    assert (c[:pad - 1] == PAD_VALUE).all() and (c[:, :pad - 1] == PAD_VALUE).all()
    inside = cv2.resize(frame[0:36, 0:36], (96 - 14, 96 - 14), interpolation=cv2.INTER_LINEAR).astype(np.int16)
    assert np.abs(c[14:, 14:].astype(np.int16) - inside).mean() < 12  # the frame's own pixels, not padding
    # bottom-right corner, the box even running past the frame: still (96, 96, 3), grey beyond the edge
    c = crop_faces(frame, np.array([[1250, 690, 1290, 730]], np.float32), 96, 0.2)[0]
    assert c.shape == (96, 96, 3) and (c[-20:, -20:] == PAD_VALUE).all() and not (c[:20, :20] == PAD_VALUE).all()
    # a box wholly outside: a grey crop, no exception
    assert (crop_faces(frame, np.array([[2000, 2000, 2040, 2040]], np.float32), 64, 0.2) == PAD_VALUE).all()


def test_a_large_face_is_shrunk_without_distortion(frame):
    c = crop_faces(frame, np.array([[400, 100, 600, 400]], np.float32), 96, 0.1)  # 200 x 300 box -> 360 px square
    assert c.shape == (1, 96, 96, 3)
    ref = cv2.resize(frame[70:430, 320:680], (96, 96), interpolation=cv2.INTER_AREA)  # centre (500, 250)
    assert np.abs(c[0].astype(np.int16) - ref).max() <= 1


def test_crops_to_tensor_is_rgb_and_normalised():
    crops = np.zeros((2, 4, 4, 3), np.uint8)
    crops[..., 0] = 255  # blue in BGR
    x = crops_to_tensor(crops, "RGB", (128, 128, 128), (128, 128, 128))
    assert x.shape == (2, 3, 4, 4) and x.dtype == np.float32 and x.flags.c_contiguous
    assert np.allclose(x[:, 2], 127 / 128) and np.allclose(x[:, 0], -1.0)


# ------------------------------------------------------------------------------------------------ vote rule
def test_combine_and_decide_on_hand_made_probabilities():
    det = np.array([1.0, 0.0, 0.0])                # the detector said mask in every recent frame
    cls = np.array([0.05, 0.90, 0.05])             # the classifier says no_mask
    assert combine(det, cls, 0.8) == pytest.approx([0.24, 0.72, 0.04])
    assert combine(det, None, 0.8) is not None and list(combine(det, None, 0.8)) == [1.0, 0.0, 0.0]
    assert list(combine(det, cls, 0.0)) == [1.0, 0.0, 0.0]
    probs = np.array([[0.6, 0.1, 0.3], [0.2, 0.7, 0.1], [0.45, 0.1, 0.45]])
    assert decide(probs, CLASSES).tolist() == [MASK, NO_MASK, MASK]               # argmax, ties to the first
    assert decide(probs, CLASSES, {"mask_incorrect": 0.3}).tolist() == [INCORRECT, NO_MASK, INCORRECT]


def test_track_vote_uses_the_classifier_with_its_weight():
    tr = Tracker(TrackerConfig(min_hits=1))
    for i in range(10):
        tr.update(Detections([[100, 100, 180, 180]], [0.9], [MASK]), t=i * 0.04)
    track = tr.tracks[0]
    assert track.vote(3)[:2] == (MASK, pytest.approx(1.0))
    track.secondary = (np.array([0.05, 0.90, 0.05]), 0.8)
    c, share, score = track.vote(3)
    assert c == NO_MASK and share == pytest.approx(0.72) and score == pytest.approx(0.9)
    assert track.lifetime_class == NO_MASK
    track.secondary = (np.array([0.30, 0.60, 0.10]), 0.5)   # 0.5*0.3+0.5 = 0.65 mask vs 0.30 no_mask
    assert track.vote(3)[0] == MASK


# ------------------------------------------------------------------------------------------------ schedule
class RecordingBackend(Backend):
    """A stand-in classifier network (the schedule, not the network, is under test): the probability of
    no_mask is the crop's mean brightness; records every batch it is given."""

    def __init__(self, model_path=None):
        self.meta = ModelMeta(classes=CLASSES, input_w=32, input_h=32, mean=(128.0,) * 3, std=(128.0,) * 3,
                              decoder="classifier", outputs={"probs": "probs"}, role="classifier", crop_margin=0.2)
        self.batches = []  # type: List[int]

    def infer(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        self.batches.append(len(x))
        b = np.clip(x.mean(axis=(1, 2, 3)) * 0.5 + 0.5, 0, 1)
        return {"probs": np.stack([1 - b, b, np.zeros_like(b)], 1).astype(np.float32)}


def test_a_detector_is_refused_as_classifier():
    be = RecordingBackend()
    be.meta.role = "detector"
    with pytest.raises(ValueError, match="not 'classifier'"):
        Classifier(be)


def test_reclassification_rule_on_a_scripted_track_sequence(frame):
    """Track A (80 px) is confirmed at frame 2 (min_hits 3): classified then, at frames 12 and 22 (every 10),
    and at frame 15 because its face grew by 40 % (>= 30 %), which restarts its interval (next: 25).
    Track B appears at frame 5 and is classified on confirmation (frame 7) in the same batch rule;
    track C is 20 px wide (< min_crop_px 24) and is never classified."""
    be = RecordingBackend()
    sec = SecondaryClassifier(Classifier(be, max_batch=8),
                              ClassifierConfig(interval_frames=10, grow_fraction=0.3, min_crop_px=24, weight=0.8))
    tr = Tracker(TrackerConfig(min_hits=3, match_iou=0.2))
    classified = {}  # frame -> track ids classified in it
    for f in range(30):
        rows = [[100, 100, 180, 180] if f < 15 else [100, 100, 212, 212]]  # A grows 80 -> 112 px at frame 15
        if f >= 5:
            rows.append([600, 300, 680, 380])   # B
        rows.append([1000, 500, 1020, 520])     # C: 20 px
        d = Detections(np.array(rows, np.float32), np.full(len(rows), 0.9, np.float32),
                       np.zeros(len(rows), np.int64))
        t = f / 25
        out = tr.update(d, t)
        before = sec.faces
        n_batches = len(be.batches)
        out = sec.update(frame, tr, out, t)
        if sec.faces > before:
            classified[f] = sorted(tid for tid in sec.states if sec.states[tid].last_frame == sec.frame)
            assert len(be.batches) == n_batches + 1  # one inference per frame, all due crops batched
    ids = {tuple(np.round(x.box).astype(int)[:2]): x.id for x in tr.tracks}
    a, b, c = ids[(100, 100)], ids[(600, 300)], ids[(1000, 500)]
    assert classified == {2: [a], 7: [b], 12: [a], 15: [a], 17: [b], 25: [a], 27: [b]}
    assert c not in sec.states and tr.get(c).secondary is None
    assert tr.get(a).secondary is not None and len(sec.states[a].probs) == 3  # mean of the last 3 (history)
    assert sec.faces == 7 and sec.frames == 30
    # detections of classified tracks carry the re-voted class; the small face keeps the detector's class
    cls_of = dict(zip(out.track_id.tolist(), out.class_id.tolist()))
    for tid in (a, b):
        assert cls_of[tid] == tr.get(tid).vote(3)[0]
    assert cls_of[c] == MASK


def test_classify_detections_keeps_small_faces_and_no_classifier_one_hot(frame):
    be = RecordingBackend()
    cls = Classifier(be)
    boxes = np.array([[100, 100, 180, 180], [1000, 500, 1020, 520]], np.float32)
    p = classify_detections(cls, frame, boxes, np.array([0.9, 0.8]), np.array([MASK, NO_MASK]), 3, 24.0, 0.8)
    assert p.shape == (2, 3) and np.allclose(p.sum(1), 1.0)
    assert p[1].tolist() == [0.0, 1.0, 0.0] and be.batches == [1]   # only the 80 px face was classified
    direct = cls.probs(frame, boxes[:1])[0]
    assert p[0] == pytest.approx(0.8 * direct + 0.2 * np.array([1.0, 0.0, 0.0]))
    none = classify_detections(None, frame, boxes, np.array([0.9, 0.8]), np.array([MASK, NO_MASK]), 3)
    assert none.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]


def test_model_classifier_config_key(tmp_path):
    from edge.config import ConfigError, parse, released_models

    assert parse("model:\n  classifier: null\n").model.resolved_classifier() is None
    p = tmp_path / "mine.onnx"
    assert parse(f"model:\n  classifier: {p}\n").model.resolved_classifier() == p
    with pytest.raises(ConfigError) as e:
        parse("model:\n  classifier: mask_clasifier\n")
    assert "model.classifier" in str(e.value)
    with pytest.raises(ConfigError):
        parse("classifier:\n  weight: 1.5\n")
    # detectors and classifiers are told apart by the role in their metadata
    assert set(released_models()).isdisjoint(released_models("classifier"))
    with pytest.raises(ConfigError):
        parse(f"model:\n  classifier: {released_models()[0]}\n")  # a detector is not a classifier


def test_cap_detail_keeps_the_size_and_removes_fine_detail(frame):
    from edge.classifier import cap_detail

    crops = crop_faces(frame, np.array([[500, 150, 800, 600]], np.float32), 96, 0.2)
    assert cap_detail(crops, 0) is crops and cap_detail(crops, 96) is crops
    low = cap_detail(crops, 32)
    assert low.shape == crops.shape and low.dtype == np.uint8
    sharp = lambda c: cv2.Laplacian(cv2.cvtColor(c, cv2.COLOR_BGR2GRAY), cv2.CV_32F).var()
    assert sharp(low[0]) < 0.5 * sharp(crops[0])
    assert abs(float(low.mean()) - float(crops.mean())) < 2.0  # the same picture, only blurrier
