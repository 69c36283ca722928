"""The alarm policy with the real tracker on synthetic detections: one alarm per person, held for
N frames and T seconds, cooldown, quiet hours, zone and size limits."""
from __future__ import annotations

import time

import numpy as np

from edge.config import AlarmConfig, TrackerConfig, ZoneConfig
from edge.policy import AlarmPolicy, in_quiet_hours, points_in_polygon
from edge.tracking import Tracker
from edge.types import Detections, Frame

CLASSES = ["mask", "no_mask", "mask_incorrect"]
IMG = np.zeros((720, 1280, 3), np.uint8)
FPS = 25.0


def run(faces_per_frame, alarm=None, zone=None, tracker=None, wall=None):
    """faces_per_frame: list (frames) of lists of (x1, y1, x2, y2, score, class). Returns the events."""
    tr = Tracker(tracker or TrackerConfig(min_hits=2), num_classes=3)
    pol = AlarmPolicy(alarm or AlarmConfig(), zone or ZoneConfig(), CLASSES)
    events = []
    for i, faces in enumerate(faces_per_frame):
        a = np.asarray(faces, np.float32).reshape(-1, 6)
        d = Detections(a[:, :4], a[:, 4], a[:, 5].astype(np.int64))
        f = Frame(IMG, i, i / FPS, wall if wall is not None else time.time())
        d = tr.update(d, f.t, f.wall)
        events += pol.update(d, tr, f)
    return events, pol


def face(x=500, cls=1, score=0.8, w=120):
    return (x, 200, x + w, 200 + w, score, cls)


def test_one_alarm_for_one_unmasked_person_not_one_per_frame():
    events, pol = run([[face()]] * 100, AlarmConfig(min_frames=5, min_seconds=0.5, cooldown_s=0))
    assert len(events) == 1
    ev = events[0]
    assert ev.cls == "no_mask" and ev.track_id == 1 and abs(ev.score - 0.8) < 1e-6
    # confirmed at frame 1 (min_hits 2), held from t=0.04: 0.5 s later is frame 14 (t=0.56)
    assert ev.frame == 14 and ev.duration_s >= 0.5
    assert pol.banner_active(ev.source_t + 1.0) and not pol.banner_active(ev.source_t + 10.0)


def test_masked_person_never_alarms_and_mask_incorrect_only_when_enabled():
    assert run([[face(cls=0)]] * 100)[0] == []
    assert run([[face(cls=2)]] * 100)[0] == []
    events, _ = run([[face(cls=2)]] * 100, AlarmConfig(classes=["no_mask", "mask_incorrect"]))
    assert [e.cls for e in events] == ["mask_incorrect"]


def test_flicker_does_not_alarm():
    # every third frame says no_mask: never a 60 % vote
    frames = [[face(cls=1 if i % 3 == 0 else 0)] for i in range(150)]
    assert run(frames)[0] == []


def test_min_frames_and_min_seconds_both_needed():
    short = [[face()]] * 10  # 0.4 s
    assert run(short, AlarmConfig(min_frames=5, min_seconds=0.5))[0] == []
    assert len(run(short, AlarmConfig(min_frames=5, min_seconds=0.0))[0]) == 1
    assert run(short, AlarmConfig(min_frames=20, min_seconds=0.0))[0] == []


def test_cooldown_holds_back_a_second_person_until_it_is_over():
    frames = [[face(100), face(800)]] * 60 + [[face(100), face(800)]] * 300
    events, _ = run(frames, AlarmConfig(cooldown_s=5.0))
    assert len(events) == 2
    assert {e.track_id for e in events} == {1, 2}
    assert events[1].source_t - events[0].source_t >= 5.0
    events, _ = run(frames[:100], AlarmConfig(cooldown_s=5.0))
    assert len(events) == 1


def test_quiet_hours_log_but_do_not_sound():
    noon = time.mktime((2026, 6, 1, 12, 30, 0, 0, 0, -1))
    events, pol = run([[face()]] * 50, AlarmConfig(quiet_hours=["12:00-13:00"]), wall=noon)
    assert len(events) == 1 and events[0].suppressed
    assert not pol.banner_active(events[0].source_t)
    events, _ = run([[face()]] * 50, AlarmConfig(quiet_hours=["22:00-06:00"]), wall=noon)
    assert len(events) == 1 and not events[0].suppressed


def test_quiet_hours_wrap_midnight():
    r = AlarmConfig(quiet_hours=["22:00-06:00"]).quiet_ranges()
    at = lambda h, m: time.mktime((2026, 6, 1, h, m, 0, 0, 0, -1))
    assert in_quiet_hours(r, at(23, 0)) and in_quiet_hours(r, at(5, 59))
    assert not in_quiet_hours(r, at(6, 0)) and not in_quiet_hours(r, at(12, 0))


def test_face_size_limits():
    zone = ZoneConfig(min_face_px=40, max_face_px=300)
    assert run([[face(w=30)]] * 50, zone=zone)[0] == []
    assert run([[face(w=400)]] * 50, zone=zone)[0] == []
    assert len(run([[face(w=120)]] * 50, zone=zone)[0]) == 1


def test_entrance_zone_polygon():
    left_half = ZoneConfig(polygon=[(0, 0), (0.5, 0), (0.5, 1), (0, 1)])
    assert run([[face(x=900)]] * 50, zone=left_half)[0] == []     # centre at x=960 of 1280: outside
    events, _ = run([[face(x=900), face(x=100)]] * 50, zone=left_half)
    assert len(events) == 1 and events[0].track_id == 2


def test_points_in_polygon():
    tri = np.array([[0, 0], [10, 0], [0, 10]])
    assert points_in_polygon(np.array([[1, 1], [6, 6], [-1, 2], [4, 4]]), tri).tolist() == [True, False, False,
                                                                                           True]


def test_disabled_alarm_raises_nothing():
    assert run([[face()]] * 50, AlarmConfig(enabled=False))[0] == []


def test_only_tracks_eligible_long_enough_count_as_people():
    zone = ZoneConfig(min_face_px=40)
    frames = [[face(x=100), face(x=800, w=30)]] * 3 + [[face(x=100)]] * 10
    _, pol = run(frames, AlarmConfig(min_frames=5), zone=zone)
    assert pol.seen_frames == {1: 12}  # the 30 px face (track 2) was never eligible
    assert pol.counts_as_person(1) and not pol.counts_as_person(2)
    assert pol.seen_frames == {}
    _, pol = run([[face()]] * 4, AlarmConfig(min_frames=5))
    assert not pol.counts_as_person(1)  # seen 3 frames as a confirmed track: a flicker, not a person
