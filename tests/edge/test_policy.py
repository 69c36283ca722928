"""The alarm policy with the real tracker on synthetic detections: one alarm per person, held for
N frames and T seconds, cooldown, quiet hours, zone and size limits, pictures (posters) on synthetic
frames. Without frames the tracker cannot judge liveness and every track is live.

The synthetic people sway by ``SWAY`` px. Pictures and people on real footage:
tests/edge/test_stationary.py and tests/edge/test_liveness.py."""
from __future__ import annotations

import math
import time

import cv2
import numpy as np

from edge.config import AlarmConfig, TrackerConfig, ZoneConfig
from edge.policy import AlarmPolicy, in_quiet_hours, points_in_polygon
from edge.tracking import Tracker
from edge.types import Detections, Frame

CLASSES = ["mask", "no_mask", "mask_incorrect"]
IMG = np.zeros((720, 1280, 3), np.uint8)
FPS = 25.0
SWAY = 30.0  # px, a 1 s side-to-side sway of a 120 px face


def run(faces_per_frame, alarm=None, zone=None, tracker=None, wall=None, sway=SWAY):
    """faces_per_frame: list (frames) of lists of (x1, y1, x2, y2, score, class); each face moves
    ``sway * sin(2 pi t)`` px sideways. Returns the events and the policy."""
    tr = Tracker(tracker or TrackerConfig(min_hits=2), num_classes=3)
    pol = AlarmPolicy(alarm or AlarmConfig(), zone or ZoneConfig(), CLASSES)
    events = []
    for i, faces in enumerate(faces_per_frame):
        a = np.asarray(faces, np.float32).reshape(-1, 6).copy()
        a[:, [0, 2]] += sway * math.sin(2 * math.pi * i / FPS)
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
    assert ev.sounded and ev.reason is None and not ev.suppressed
    # confirmed at frame 1 (min_hits 2), held from t=0.04: 0.5 s later is frame 14 (t=0.56)
    assert ev.frame == 14 and abs(ev.duration_s - 0.52) < 1e-6
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


def test_a_group_is_logged_at_once_and_announced_once_per_cooldown():
    # four unmasked people walk in together; a fifth comes 6 s later, after the 5 s cooldown
    group = [face(50), face(350), face(650), face(950)]
    frames = [group] * 150 + [group + [face(500, w=100)]] * 100
    events, pol = run(frames, AlarmConfig(cooldown_s=5.0))
    assert [e.track_id for e in events] == [1, 2, 3, 4, 5]
    first, rest, late = events[0], events[1:4], events[4]
    assert all(e.frame == first.frame for e in rest), "every person of the group is logged in the same frame"
    assert first.sounded and first.reason is None
    assert [(e.sounded, e.reason, e.suppressed) for e in rest] == [(False, "cooldown", False)] * 3
    assert late.sounded and late.reason is None and late.source_t - first.source_t >= 5.0
    d = rest[0].to_dict()
    assert d["sounded"] is False and d["reason"] == "cooldown"
    assert pol.last_sounded_t == late.source_t


def test_quiet_hours_log_but_do_not_sound():
    noon = time.mktime((2026, 6, 1, 12, 30, 0, 0, 0, -1))
    events, pol = run([[face()]] * 50, AlarmConfig(quiet_hours=["12:00-13:00"]), wall=noon)
    assert len(events) == 1 and events[0].suppressed
    assert not events[0].sounded and events[0].reason == "quiet_hours"
    assert not pol.banner_active(events[0].source_t)
    events, _ = run([[face()]] * 50, AlarmConfig(quiet_hours=["22:00-06:00"]), wall=noon)
    assert len(events) == 1 and not events[0].suppressed


def test_quiet_hours_wrap_midnight():
    r = AlarmConfig(quiet_hours=["22:00-06:00"]).quiet_ranges()
    at = lambda h, m: time.mktime((2026, 6, 1, h, m, 0, 0, 0, -1))
    assert in_quiet_hours(r, at(23, 0)) and in_quiet_hours(r, at(5, 59))
    assert not in_quiet_hours(r, at(6, 0)) and not in_quiet_hours(r, at(12, 0))


def test_face_size_limits():
    zone = ZoneConfig(min_face_frac=40 / 720, max_face_frac=300 / 720)
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
    zone = ZoneConfig(min_face_frac=40 / 720)
    frames = [[face(x=100), face(x=800, w=30)]] * 3 + [[face(x=100)]] * 10
    _, pol = run(frames, AlarmConfig(min_frames=5), zone=zone)
    assert pol.seen_frames == {1: 12}  # confirmed at its 2nd box; the 30 px face (track 2) was never eligible
    assert pol.counts_as_person(1) and not pol.counts_as_person(2)
    assert pol.seen_frames == {}
    _, pol = run([[face()]] * 7, AlarmConfig(min_frames=5))
    assert pol.counts_as_person(1)  # seen 6 frames as a confirmed track
    _, pol = run([[face()]] * 5, AlarmConfig(min_frames=5))
    assert not pol.counts_as_person(1)  # seen 4 frames as a confirmed track: a flicker, not a person


def scene(i, poster=None, person=None):
    """Frame ``i``: a fixed random texture (the wall), a fixed textured ``poster`` box (x1, y1, x2, y2) and a
    ``person`` box whose texture shifts by ``1.5 * sin`` px every frame (micro-motion)."""
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8), (5, 5), 0)
    if person is not None:
        x1, y1, x2, y2 = (int(v) for v in person)
        face_tex = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 255, (y2 - y1 + 8, x2 - x1 + 8, 3),
                                                                      dtype=np.uint8), (7, 7), 0)
        dx = int(round(3 + 1.5 * math.sin(2 * math.pi * i / 10)))
        img[y1:y2, x1:x2] = face_tex[4:4 + y2 - y1, dx:dx + x2 - x1]
    return img


def run_frames(rows_per_frame, scene_args, cfg=None):
    """The policy on tracked rows with real frames (:func:`scene`); returns (events, policy, tracker, pictures)
    where pictures[i] is the picture mask of frame i."""
    tr = Tracker(cfg or TrackerConfig(min_hits=2), num_classes=3)
    pol = AlarmPolicy(AlarmConfig(), ZoneConfig(), CLASSES)
    events, pictures = [], []
    for i, rows in enumerate(rows_per_frame):
        a = np.asarray(rows, np.float32).reshape(-1, 6)
        img = scene(i, **scene_args(i))
        d = tr.update(Detections(a[:, :4], a[:, 4], a[:, 5].astype(np.int64)), i / FPS, time.time(), img)
        events += pol.update(d, tr, Frame(img, i, i / FPS, time.time()))
        pictures.append(tr.picture_mask(d, i / FPS))
    return events, pol, tr, pictures


def test_a_picture_never_alarms_and_is_no_person_but_a_still_person_beside_it_does():
    poster, person = face(x=900, w=130), face(x=200)
    # the poster from power-on, a person standing still (only the picture of their face moves) from frame 100
    rows = [[poster] + ([person] if i >= 100 else []) for i in range(300)]
    events, pol, tr, pictures = run_frames(rows, lambda i: {"person": person[:4] if i >= 100 else None})
    assert [e.track_id for e in events] == [2], "only the person alarms"
    # the person's track (confirmed at frame 101) is live within 0.5 s and alarms alarm.min_seconds later
    assert events[0].frame <= 101 + int(1.0 * FPS), events[0]
    assert all(p[0] for p in pictures[50:]), "the poster is a picture once seen for picture_s (2 s)"
    assert not any(p[1] for p in pictures[100:] if len(p) > 1), "the still person is never a picture"
    assert not pol.counts_as_person(1) and pol.counts_as_person(2)


def test_with_the_picture_cue_off_the_poster_alarms():
    poster = face(x=900, w=130)
    events, pol, _, pictures = run_frames([[poster]] * 100, lambda i: {}, TrackerConfig(min_hits=2, liveness_change=0))
    assert [e.track_id for e in events] == [1] and not any(p.any() for p in pictures)


def test_a_broken_track_or_a_second_box_on_the_same_face_gives_no_second_event():
    # detectnet_v2_r18 on the unmasked man: track 3 (frames 39-83) alarmed, track 5 started at frame 85 on
    # his head with a different box and would have alarmed again. Here: a face alarms, vanishes for 3
    # frames, and comes back as a box too different to continue the track (IoU 0.16 < match_iou)
    a, b = face(x=500), (420, 120, 720, 420, 0.8, 1)
    frames = [[a]] * 40 + [[]] * 3 + [[b]] * 100
    events, pol = run(frames)
    assert [e.track_id for e in events] == [1]
    assert set(pol._held) == {2} and pol._held[2].done, "track 2 is the same person: judged, no event"
    # two boxes on one face at once (face and head): one event
    events, _ = run([[a, b]] * 100)
    assert len(events) == 1
    # a person coming back after more than tracker.max_age_s (1 s) is a new person
    events, _ = run([[a]] * 40 + [[]] * 40 + [[b]] * 100)
    assert [e.track_id for e in events] == [1, 2] and events[1].reason == "cooldown"


def test_a_person_who_alarmed_is_counted_once_by_the_alarmed_class():
    # the broken-track case above, counted: track 1 alarmed no_mask, track 2 (the same head) is not a second
    # person; and a person whose lifetime detector vote drifts to another class (detectnet_v2_r18 on the man:
    # nested mask_incorrect boxes outscored no_mask after his alarm) is counted as the class of his alarm
    a, b = face(x=500), (420, 120, 720, 420, 0.8, 1)
    events, pol = run([[a]] * 40 + [[]] * 3 + [[b]] * 100)
    assert [e.track_id for e in events] == [1]
    assert pol.counts_as_person(1) and pol.person_class(1, lifetime_class=2) == 1
    assert not pol.counts_as_person(2), "the same person's second track is not a second person"
    # not alarmed: counted by the lifetime vote
    events, pol = run([[face(cls=0)]] * 100)
    assert events == [] and pol.counts_as_person(1) and pol.person_class(1, lifetime_class=0) == 0
