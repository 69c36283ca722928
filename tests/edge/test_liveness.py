"""Every real person is judged live soon after their track is confirmed, and never a picture, on the three
shared clips (the detector, the tracker and the alarm policy in process, every frame, built-in defaults).

The masked woman at her laptop sits nearly still for the whole clip. The figures (first appearance ->
confirmed -> live -> alarm, in s of media time) are printed (``pytest -s``) and quoted in docs/runtime.md.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.config import Config
from edge.detector import Detector
from edge.policy import AlarmPolicy
from edge.tracking import MAX_EVIDENCE, MAX_PICTURE_SAMPLES, NOISE_SAMPLES, Track, Tracker
from edge.types import Frame

pytestmark = pytest.mark.slow

#: a person must be live within this long after their track is confirmed (s)
LIVE_WITHIN_S = 0.5


def judge(video, backend):
    """Run detector + tracker + policy over ``video``; per confirmed track: first seen, confirmed, live, alarm
    times (s) and whether it was ever a picture."""
    cfg = Config()
    det = Detector(backend, cfg.model)
    tracker = Tracker(cfg.tracker, num_classes=len(det.classes))
    policy = AlarmPolicy(cfg.alarm, cfg.zone, det.classes)
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS)
    out, i = {}, 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        t = i / fps
        dets = tracker.update(det(img), t, 0.0, img)
        events = policy.update(dets, tracker, Frame(img, i, t, 1.7e9))
        pictures = tracker.picture_mask(dets, t)
        for tr in tracker.tracks:
            if tr.id > 0:
                r = out.setdefault(tr.id, {"first": tr.first_t, "confirmed": t, "live": None, "alarm": None,
                                           "picture": False, "frames": 0})
                r["frames"] += 1
                r["hits"] = tr.hits  # frames in which a detection was matched to it
                if r["live"] is None and tracker.is_live(tr, t):
                    r["live"] = t
        for k in np.nonzero(pictures)[0]:
            out[int(dets.track_id[k])]["picture"] = True
        for ev in events:
            out[ev.track_id]["alarm"] = ev.source_t
        i += 1
    cap.release()
    return out


@pytest.mark.parametrize("clip, alarms", [("unmasked", 1), ("masked_woman", 0), ("masked_man", 0)])
def test_every_person_is_live_within_half_a_second_of_confirmation(backend, videos, clip, alarms):
    tracks = judge(videos[clip], backend)
    # in view (detected) for 1 s at least; a stray box confirmed for a few frames and then coasting is not a
    # person (ultralight_mask 1.2.0 has one on the unmasked clip: foliage, 3 frames, mask_incorrect 0.73-0.77)
    people = {k: r for k, r in tracks.items() if r.get("hits", 0) >= 25}
    assert len(people) == 1, tracks  # one person per clip
    for tid, r in people.items():
        fmt = lambda v: "-" if v is None else f"{v:.2f}"
        print(f"{clip} track {tid}: first {fmt(r['first'])} s, confirmed {fmt(r['confirmed'])} s, live "
              f"{fmt(r['live'])} s ({r['live'] - r['confirmed']:+.2f} after confirmation), alarm {fmt(r['alarm'])} s")
        assert r["live"] is not None and r["live"] - r["confirmed"] <= LIVE_WITHIN_S, r
        assert not r["picture"], f"a real person was judged a picture: {r}"
    assert sum(r["alarm"] is not None for r in people.values()) == alarms
    if alarms:  # a live person who stands still alarms within about 1 s of confirmation
        r = next(r for r in people.values() if r["alarm"] is not None)
        assert r["alarm"] - r["confirmed"] <= 1.0, r


def test_a_track_in_view_for_10000_frames_holds_bounded_state(videos):
    """A face in view all day: real-shaped inputs (the first frame of the unmasked clip, the man's face box),
    10,000 frames at 25 fps: every per-track buffer stays at its bound, and the alarm hold keeps a running sum."""
    cap = cv2.VideoCapture(str(videos["unmasked"]))
    ok, img = cap.read()
    cap.release()
    assert ok
    box = np.array([444, 73, 790, 460], np.float32)
    cfg = Config().tracker
    tr = Track(box, 1, 0.9, 0.0, 0.0, 3, cfg.vote_window)
    rng = np.random.default_rng(0)
    sizes = []
    for i in range(1, 10001):
        t = i / 25.0
        frame = np.clip(img.astype(np.int16) + rng.integers(-20, 21, (1, 1, 3)), 0, 255).astype(np.uint8) \
            if i % 50 == 0 else img
        b = box + rng.uniform(-3, 3, 4).astype(np.float32)
        tr.update(b, 1, 0.9, t)
        tr.observe_picture(t, frame, cfg.liveness_window_s, cfg.liveness_change, cfg.picture_s)
        if i in (1000, 10000):
            sizes.append((len(tr.history), len(tr.samples), len(tr.noise), len(tr.evidence)))
    assert sizes[0] == sizes[1], sizes
    h, s, n, e = sizes[1]
    assert h <= cfg.vote_window and s <= MAX_PICTURE_SAMPLES and n <= NOISE_SAMPLES and e <= MAX_EVIDENCE
    assert s <= int(cfg.liveness_window_s * 25) + 2, "only the window's samples are kept"
    assert tr.hits == 10001 and tr.totals.shape == (3,)
