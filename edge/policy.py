"""The alarm policy: when does a tracked face become an alarm an admin can trust?

A confirmed track raises **one** alarm when all of these hold:

* its face is eligible: width within ``zone.min_face_frac``..``zone.max_face_frac`` of the frame
  height (fractions, so the limits follow the camera resolution) and centre inside the entrance
  polygon (if one is set);
* its voted class (see :mod:`edge.tracking`) is one of ``alarm.classes`` with at
  least ``alarm.vote_fraction`` of the vote;
* that has held for ``alarm.min_frames`` eligible frames **and** ``alarm.min_seconds``;
* the track is **live** (:mod:`edge.tracking`: its face region shows micro-motion; a poster or a
  painting is a picture and never alarms). Only live frames count towards the hold; a frame that
  is not live (a new track not yet judged, or a picture) restarts it, and only live frames count
  towards a person. A live person who stands still is live 0.28 s after confirmation on the
  shared clips, so alarms ``alarm.min_seconds`` later.

Every such track gets its event **at once**, however many qualify together. Whether the
speaker and the banner announce it is decided separately (``sounded``, ``reason``; the pipeline
sets ``reason: no_speaker`` when the clip could not be handed to a working sound device):

* ``reason: quiet_hours``: inside ``alarm.quiet_hours`` nothing is sounded (``suppressed`` is
  true as well, as before);
* ``reason: cooldown``: another alarm was sounded less than ``alarm.cooldown_s`` seconds ago,
  so one announcement covers a group walking in together;
* ``reason: null``: sounded (``sounded: true``); the cooldown starts again.

One person, one event: a new track whose box centre lies inside the box of a track that alarmed
(or whose box contains that box's centre), while that track is in view or within
``tracker.max_age_s`` of its last sighting, is the same person (a broken track, or a second box
on the same head) and raises no event of its own (:meth:`AlarmPolicy.same_person`).
"""
from __future__ import annotations

import datetime
import logging
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge.config import AlarmConfig, ZoneConfig
from edge.tracking import Tracker
from edge.types import AlarmEvent, Detections, Frame

log = logging.getLogger(__name__)


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(N,) bool: which (N, 2) points lie inside the (M, 2) polygon (even-odd ray casting)."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, np.float64).reshape(-1, 2)
    x, y = pts[:, 0:1], pts[:, 1:2]
    x1, y1 = poly[:, 0][None, :], poly[:, 1][None, :]
    x2, y2 = np.roll(poly[:, 0], -1)[None, :], np.roll(poly[:, 1], -1)[None, :]
    crosses = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xint = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    return (crosses & (x < xint)).sum(axis=1) % 2 == 1


def in_quiet_hours(ranges: Sequence, when: float) -> bool:
    """Whether wall-clock time ``when`` (epoch s, local time) falls in any (start, end) minute range."""
    lt = time.localtime(when)
    m = lt.tm_hour * 60 + lt.tm_min
    for start, end in ranges:
        if start <= end and start <= m < end:
            return True
        if start > end and (m >= start or m < end):  # wraps midnight
            return True
    return False


#: a face's width in a frame of height H, at distance d (m): FACE_M / (2 d tan(HFOV / 2)) * W px, with
#: FACE_M (m) an adult face's width and HFOV (degrees) a typical entrance webcam's horizontal field of view
FACE_M = 0.15
HFOV_DEG = 70.0
#: plausible distances (m) of a face from an entrance camera: nearest (someone at the box) and farthest
ENTRANCE_M = (0.5, 4.0)


def face_frac_at(distance_m: float, width: int, height: int, hfov_deg: float = HFOV_DEG) -> float:
    """Width of a :data:`FACE_M` wide face at ``distance_m`` metres, as a fraction of the frame height, for a
    ``width`` x ``height`` px camera with ``hfov_deg`` horizontal field of view (pinhole model)."""
    return FACE_M / (2.0 * distance_m * np.tan(np.radians(hfov_deg) / 2.0)) * width / float(height)


def size_limit_warnings(zone: ZoneConfig, width: int, height: int) -> List[str]:
    """Why ``zone.min_face_frac``/``zone.max_face_frac`` would exclude a face at a plausible entrance
    distance (:data:`ENTRANCE_M`) for a ``width`` x ``height`` px camera; empty when they do not."""
    near, far = (face_frac_at(d, width, height) for d in ENTRANCE_M)
    out = []
    if zone.max_face_frac < near:
        out.append(f"zone.max_face_frac {zone.max_face_frac} ignores faces wider than "
                   f"{zone.max_face_frac * height:.0f} px at {width}x{height}: a face {ENTRANCE_M[0]} m from a "
                   f"{HFOV_DEG:.0f}-degree camera is about {near * height:.0f} px ({near:.2f} of the frame height); "
                   f"raise it to at least {near:.2f}")
    if zone.min_face_frac > far:
        out.append(f"zone.min_face_frac {zone.min_face_frac} ignores faces narrower than "
                   f"{zone.min_face_frac * height:.0f} px at {width}x{height}: a face {ENTRANCE_M[1]} m from a "
                   f"{HFOV_DEG:.0f}-degree camera is about {far * height:.0f} px ({far:.3f} of the frame height); "
                   f"lower it to at most {far:.3f}")
    return out


class _Held:
    """One track's alarm hold; bounded whatever the track's lifetime (a running score sum)."""

    __slots__ = ("cls", "since", "frames", "score_sum", "done")

    def __init__(self) -> None:
        self.cls = -1
        self.since = 0.0
        self.frames = 0
        self.score_sum = 0.0
        self.done = False

    def reset(self, cls: int = -1, since: float = 0.0) -> None:
        self.cls, self.since, self.frames, self.score_sum = cls, since, 0, 0.0


class AlarmPolicy:
    """Turns tracked detections into alarm events.

    Args:
        alarm, zone: settings; :meth:`configure` swaps them at run time.
        classes: the model's class names.
    """

    def __init__(self, alarm: AlarmConfig, zone: ZoneConfig, classes: Sequence[str]):
        self.classes = list(classes)
        self.last_alarm_t = None  # type: Optional[float]
        self.last_sounded_t = None  # type: Optional[float]
        self._held = {}  # type: Dict[int, _Held]
        self._alarmed = {}  # type: Dict[int, Tuple[np.ndarray, float]]  # alarmed track -> (last box, last seen t)
        self.seen_frames = {}  # type: Dict[int, int]  # eligible frames per track, for the people counts
        self.same_as = {}  # type: Dict[int, int]  # track -> the alarmed track it is the same person as
        self.alarm_class = {}  # type: Dict[int, int]  # alarmed track -> the class it alarmed with
        self.configure(alarm, zone)

    def configure(self, alarm: AlarmConfig, zone: ZoneConfig) -> None:
        self.alarm, self.zone = alarm, zone
        self.alarm_ids = {self.classes.index(c) for c in alarm.classes if c in self.classes}
        self.quiet = alarm.quiet_ranges()

    def eligible(self, dets: Detections, frame_wh) -> np.ndarray:
        """(N,) bool: face width within ``zone.min_face_frac``..``zone.max_face_frac`` of the frame height
        (``frame_wh``: (width, height) px) and centre inside the zone."""
        w = dets.width / float(frame_wh[1])
        ok = (w >= self.zone.min_face_frac) & (w <= self.zone.max_face_frac)
        if self.zone.polygon and len(dets):
            poly = np.asarray(self.zone.polygon, np.float64) * np.asarray(frame_wh, np.float64)
            ok &= points_in_polygon(dets.centre, poly)
        return ok

    def update(self, dets: Detections, tracker: Tracker, frame: Frame) -> List[AlarmEvent]:
        """Advance every visible confirmed track by one frame; return the alarms raised now."""
        events = []  # type: List[AlarmEvent]
        if dets.track_id is None:
            raise ValueError("the policy needs tracked detections (track_id set)")
        ok = self.eligible(dets, frame.wh)
        live_ids = {tr.id for tr in tracker.tracks if tr.id > 0}
        for tid in list(self._held):
            if tid not in live_ids:
                del self._held[tid]
        self._track_alarmed(dets, frame.t, tracker.cfg.max_age_s)
        for i in np.nonzero((dets.track_id > 0) & ok)[0]:
            tid = int(dets.track_id[i])
            tr = tracker.get(tid)
            if tr is None:
                continue
            held = self._held.get(tid)
            if held is None:
                held = self._held[tid] = _Held()
                same = self.same_person(tid, dets.xyxy[i])
                if same is not None:  # a broken track or a second box on an alarmed face: no second event
                    held.done = True
                    self.same_as[tid] = same
                    self._alarmed[tid] = (dets.xyxy[i].copy(), frame.t)
                    log.info("track %d is the person of alarmed track %d: no second event", tid, same)
            if not tracker.is_live(tr, frame.t):  # not judged live yet, or a picture: no alarm, no person
                held.reset()
                continue
            self.seen_frames[tid] = self.seen_frames.get(tid, 0) + 1
            cls, share, _ = tr.vote(tracker.num_classes)
            if cls not in self.alarm_ids or share < self.alarm.vote_fraction:
                held.reset()
                continue
            if held.cls != cls:
                held.reset(cls, frame.t)
            held.frames += 1
            held.score_sum += float(dets.scores[i])
            if held.done or not self.alarm.enabled:
                continue
            duration = frame.t - held.since
            if held.frames < self.alarm.min_frames or duration < self.alarm.min_seconds:
                continue
            held.done = True
            same = self.same_person(tid, dets.xyxy[i])
            self._alarmed[tid] = (dets.xyxy[i].copy(), frame.t)
            if same is not None:  # two boxes on one face qualified together: one event
                self.same_as[tid] = same
                log.info("track %d is the person of alarmed track %d: no second event", tid, same)
                continue
            self.last_alarm_t = frame.t
            self.alarm_class[tid] = int(cls)
            reason = self.silence_reason(frame.t, frame.wall)
            if reason is None:
                self.last_sounded_t = frame.t
            ev = AlarmEvent(time=datetime.datetime.fromtimestamp(frame.wall).astimezone().isoformat(
                timespec="milliseconds"), frame=frame.index, track_id=tid, cls=self.classes[cls],
                score=held.score_sum / held.frames, duration_s=duration, source_t=frame.t,
                suppressed=reason == "quiet_hours", sounded=reason is None, reason=reason,
                extra={"box": [round(float(v), 1) for v in dets.xyxy[i]]})
            log.info("ALARM track %d %s score %.2f held %.1f s (%d frames)%s", tid, ev.cls, ev.score, duration,
                     held.frames, f" [not sounded: {reason}]" if reason else "",
                     extra={"MASKWATCH_EVENT": "alarm", "TRACK_ID": tid, "CLASS": ev.cls})
            events.append(ev)
        return events

    def _track_alarmed(self, dets: Detections, t: float, keep_s: float) -> None:
        """Update the last box of every alarmed track in view; forget those unseen for over ``keep_s`` s."""
        for i in np.nonzero(dets.track_id > 0)[0]:
            tid = int(dets.track_id[i])
            if tid in self._alarmed:
                self._alarmed[tid] = (dets.xyxy[i].copy(), t)
        for tid in [k for k, (_, seen) in self._alarmed.items() if t - seen > keep_s]:
            del self._alarmed[tid]

    def same_person(self, track_id: int, box: np.ndarray) -> Optional[int]:
        """The alarmed track (in view, or seen within ``tracker.max_age_s``) that new track ``track_id`` with
        xyxy ``box`` (px) is the same person as: one box's centre lies inside the other box; else ``None``."""
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        for tid, (b, _) in self._alarmed.items():
            if tid == track_id:
                continue
            bx, by = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
            if (b[0] <= cx <= b[2] and b[1] <= cy <= b[3]) or (box[0] <= bx <= box[2] and box[1] <= by <= box[3]):
                return tid
        return None

    def silence_reason(self, t: float, wall: float) -> Optional[str]:
        """Why an alarm at frame time ``t`` s (wall-clock ``wall``, epoch s) is not sounded:
        ``"quiet_hours"``, ``"cooldown"`` (a sounded alarm less than ``alarm.cooldown_s`` ago), or
        ``None`` (sound it)."""
        if in_quiet_hours(self.quiet, wall):
            return "quiet_hours"
        if self.last_sounded_t is not None and 0 <= t - self.last_sounded_t < self.alarm.cooldown_s:
            return "cooldown"
        return None

    def counts_as_person(self, track_id: int) -> bool:
        """Whether an ended track was a person worth counting: eligible (size, zone) and live
        for at least ``alarm.min_frames`` frames (a poster is never a person), and not a broken piece
        or a second box of a person who alarmed on another track (:meth:`same_person`: counted once,
        by that track). Forgets the track."""
        seen = self.seen_frames.pop(track_id, 0)
        counted = self.same_as.pop(track_id, None) is None and (seen >= self.alarm.min_frames
                                                              or track_id in self.alarm_class)
        if not counted:
            self.alarm_class.pop(track_id, None)
        return counted

    def person_class(self, track_id: int, lifetime_class: int) -> int:
        """The class a counted person is counted as: the class their alarm was raised for (what the
        appliance told them and logged), else the track's lifetime vote. Forgets the track."""
        return self.alarm_class.pop(track_id, lifetime_class)

    def banner_active(self, t: float) -> bool:
        """Whether the alarm banner shows at frame time ``t`` (``alarm.banner_s`` after the last sounded alarm)."""
        if self.last_sounded_t is None:
            return False
        return 0 <= t - self.last_sounded_t < self.alarm.banner_s
