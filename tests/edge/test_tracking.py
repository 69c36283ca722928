"""The IoU/ByteTrack-style tracker and its per-track class vote, on synthetic face tracks."""
from __future__ import annotations

import numpy as np

from edge.config import TrackerConfig
from edge.tracking import Tracker
from edge.types import Detections

MASK, NO_MASK = 0, 1


def dets(*rows):
    """rows of (x1, y1, x2, y2, score, class)."""
    a = np.asarray(rows, np.float32).reshape(-1, 6)
    return Detections(a[:, :4], a[:, 4], a[:, 5].astype(np.int64))


def test_ids_are_stable_and_only_confirmed_tracks_get_one():
    tr = Tracker(TrackerConfig(min_hits=3, match_iou=0.3))
    ids = []
    for i in range(10):
        x = 100 + 8 * i  # a face walking right, 8 px per frame
        out = tr.update(dets((x, 100, x + 80, 180, 0.9, MASK), (600, 100, 660, 160, 0.8, MASK)), t=i / 25)
        ids.append(out.track_id.tolist())
    assert ids[0] == [-1, -1] and ids[1] == [-1, -1]  # tentative until 3 hits
    assert ids[2] == [1, 2]
    assert all(row == [1, 2] for row in ids[2:])


def test_constant_velocity_prediction_bridges_dropped_frames():
    # an 80 px face moving 30 px per frame; then two frames are dropped (a 90 px jump: raw IoU 0)
    tr = Tracker(TrackerConfig(min_hits=1, match_iou=0.3))
    for i in range(5):
        x = 30 * i
        out = tr.update(dets((x, 0, x + 80, 80, 0.9, MASK)), t=i * 0.04)
        assert out.track_id.tolist() == [1]
    x = 30 * 7
    out = tr.update(dets((x, 0, x + 80, 80, 0.9, MASK)), t=7 * 0.04)
    assert out.track_id.tolist() == [1] and len(tr.tracks) == 1
    # without motion the same jump is a new person
    still = Tracker(TrackerConfig(min_hits=1, match_iou=0.3))
    still.update(dets((120, 0, 200, 80, 0.9, MASK)), t=0.0)
    assert still.update(dets((210, 0, 290, 80, 0.9, MASK)), t=0.12).track_id.tolist() == [2]


def test_low_score_detection_extends_a_confirmed_track_but_starts_none():
    tr = Tracker(TrackerConfig(min_hits=2, high_score=0.5))
    for i in range(3):
        out = tr.update(dets((100, 100, 200, 200, 0.9, MASK)), t=i)
    tid = out.track_id[0]
    out = tr.update(dets((102, 100, 202, 200, 0.2, MASK), (500, 500, 600, 600, 0.3, MASK)), t=3)
    assert out.track_id.tolist() == [tid, -1]
    assert len(tr.tracks) == 1  # the low-score stranger started nothing


def test_vote_needs_a_majority_not_one_frame():
    tr = Tracker(TrackerConfig(min_hits=1, vote_window=5))
    box = (100, 100, 200, 200)
    for i in range(5):
        out = tr.update(dets(box + (0.8, NO_MASK)), t=i)
    assert out.class_id[0] == NO_MASK
    out = tr.update(dets(box + (0.8, MASK)), t=5)  # one frame says mask
    assert out.class_id[0] == NO_MASK
    cls, share, mean = tr.tracks[0].vote(3)
    assert cls == NO_MASK and abs(share - 0.8) < 1e-6 and abs(mean - 0.8) < 1e-6
    for i in range(6, 9):
        out = tr.update(dets(box + (0.8, MASK)), t=i)
    assert out.class_id[0] == MASK  # 4 of the last 5 frames: the vote turns


def test_stale_tracks_end_and_are_reported_once():
    tr = Tracker(TrackerConfig(min_hits=2, max_age_s=0.5))
    for i in range(3):
        tr.update(dets((0, 0, 50, 50, 0.9, NO_MASK)), t=i * 0.1, wall=1000.0)
    tr.update(Detections.empty(), t=0.4)
    assert len(tr.tracks) == 1 and tr.pop_finished() == []
    tr.update(Detections.empty(), t=0.9)
    assert tr.tracks == []
    done = tr.pop_finished()
    assert len(done) == 1 and done[0].lifetime_class == NO_MASK and done[0].first_wall == 1000.0
    assert tr.pop_finished() == []


def test_end_all_returns_confirmed_tracks():
    tr = Tracker(TrackerConfig(min_hits=2))
    for i in range(2):
        tr.update(dets((0, 0, 50, 50, 0.9, MASK), (300, 0, 350, 50, 0.9, NO_MASK)), t=i)
    tr.update(dets((600, 0, 650, 50, 0.9, MASK)), t=2)  # tentative, not counted
    assert sorted(t.lifetime_class for t in tr.end_all()) == [MASK, NO_MASK]
