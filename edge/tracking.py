"""A small IoU tracker in the style of ByteTrack, with a per-track class vote.

Each frame:

1. every track predicts its box from a constant-velocity model (px/s, smoothed);
2. detections at or above ``high_score`` are matched to all tracks by IoU (greedy,
   best overlap first, at least ``match_iou``);
3. the remaining lower-score detections may still extend confirmed tracks that
   found no match (ByteTrack's second association: a face turning away scores
   lower but is still the same face);
4. unmatched high-score detections start tentative tracks; a track becomes
   confirmed, and gets an id, after ``min_hits`` matched frames;
5. tracks unmatched for ``max_age_s`` seconds end.

A track's class is not the last frame's class but a score-weighted vote over its
last ``vote_window`` matched frames, so a single misclassified frame changes nothing.

**Stationary tracks** (posters, paintings, a photo on a notice board): a confirmed track is
*stationary* while its box has not moved during the last ``stationary_s`` seconds. "Moved" is
measured on the matched boxes of that window (at least :data:`MOTION_MIN_SAMPLES` of them)::

    motion = 4 * max(MAD(centre x), MAD(centre y), MAD(width)) / median(width)

(MAD: median absolute deviation from the median; for a steady movement 4 x MAD is the whole
range, while a few jittery boxes do not move the median at all). The box moved when
``motion >= stationary_fraction``; a growing or shrinking box (someone walking towards the
camera) counts as moving too.

The detector's box on a photo is not steady: on a pasted training photo it jumped between grid
positions by up to 0.3 of the face width (``tests/edge/test_stationary.py``), as much as a man
talking to the camera moves. So when the frame is given (:meth:`Tracker.update` ``image``), a
move counts only if **the picture changed** too: the face region at the window's start box is
compared now and then (16 x 16 grey thumbnails, ``1 - normalised cross-correlation``, which
ignores exposure changes); a change of at least ``stationary_change`` within ``stationary_s``
is needed (measured: a pasted photo < 0.0001, people 0.04-0.12 median). A photo's picture
never changes, whatever its box does; a person's always does.

A new track is stationary until it has moved once, so a poster in
view from the first frame (after every restart) never gets the benefit of the doubt; a person who
walks in and then stands still becomes stationary only ``stationary_s`` after the last movement,
by when the alarm policy has judged them. ``stationary_s: 0`` turns the rule off.
"""
from __future__ import annotations

import collections
from typing import Deque, List, Optional, Tuple

import cv2
import numpy as np

from edge.classifier import combine
from edge.config import TrackerConfig
from edge.decoders import box_iou, greedy_iou_match
from edge.types import Detections

#: matched boxes a motion window needs before it can show movement (fewer: a track start's jitter)
MOTION_MIN_SAMPLES = 5
#: most (t, cx, cy, w) samples a track keeps for its motion window (bounds memory at any frame rate)
MOTION_MAX_SAMPLES = 1024
#: side (px) of the grey thumbnails compared for a picture change
THUMB = 16


def face_thumb(image: np.ndarray, box) -> Optional[np.ndarray]:
    """(THUMB*THUMB,) float32 zero-mean unit-norm grey thumbnail of ``box`` (xyxy px) in the (H, W, 3)
    uint8 BGR ``image``; ``None`` when the box lies (almost) outside the frame or is under 4 px."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x2 - x1 < 4 or y2 - y1 < 4:
        return None
    step = max(1, min(x2 - x1, y2 - y1) // (4 * THUMB))  # sample ~64 px across: the same grid every time
    g = cv2.cvtColor(np.ascontiguousarray(image[y1:y2:step, x1:x2:step]), cv2.COLOR_BGR2GRAY)
    t = cv2.resize(g, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    t -= t.mean()
    return t / max(float(np.linalg.norm(t)), 1e-6)


class Track:
    """One face followed over time.

    Attributes:
        id: public id (> 0) once confirmed, ``-1`` while tentative.
        box: (4,) float32 last matched xyxy box (px).
        velocity: (4,) float32 smoothed box velocity (px/s).
        hits: matched frames. first_t / last_t: first and last matched timestamp (s).
        first_wall: wall-clock time of the first match (for hourly counts).
        history: recent (class_id, score) pairs for the vote.
        totals: (C,) score-weighted class sums over the whole track (for counts).
        motion: recent (t s, centre x px, centre y px, width px) of the matched boxes.
        last_motion_t: timestamp (s) of the last frame whose motion window showed movement
            (``None``: never moved; see the module docstring).
        last_change_t: timestamp (s) of the last frame whose picture differed from the window start's
            (``None``: never, or no frames given).
    """

    def __init__(self, box: np.ndarray, cls: int, score: float, t: float, wall: float, num_classes: int,
                 window: int):
        self.id = -1
        self.box = np.asarray(box, np.float32).copy()
        self.velocity = np.zeros(4, np.float32)
        self.hits = 1
        self.first_t = self.last_t = t
        self.first_wall = wall
        self.history = collections.deque([(int(cls), float(score))], maxlen=window)  # type: Deque[Tuple[int, float]]
        self.totals = np.zeros(num_classes, np.float64)
        self.totals[cls] += score
        self.motion = collections.deque(maxlen=MOTION_MAX_SAMPLES)  # type: Deque[Tuple[float, float, float, float]]
        self.last_motion_t = None  # type: Optional[float]
        self.last_change_t = None  # type: Optional[float]
        self._ref = None  # type: Optional[Tuple[float, np.ndarray, np.ndarray]]  # (t, box, thumbnail)
        self._add_motion_sample(t)
        #: (classifier probabilities (C,), weight) set by edge.classifier.SecondaryClassifier, or None
        self.secondary = None  # type: Optional[Tuple[np.ndarray, float]]

    def _add_motion_sample(self, t: float) -> None:
        x1, y1, x2, y2 = (float(v) for v in self.box)
        self.motion.append((float(t), (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1))

    def observe_picture(self, t: float, image: np.ndarray, window_s: float, change: float) -> float:
        """Compare the face region of ``image`` with the window start's (same place, see the module
        docstring); set :attr:`last_change_t` when ``1 - NCC >= change``. The reference moves to the
        current box every ``window_s`` s. Returns ``1 - NCC`` (0 when not measurable)."""
        if self._ref is None or t - self._ref[0] >= window_s:
            thumb = face_thumb(image, self.box)
            if thumb is not None:
                self._ref = (t, self.box.copy(), thumb)
            return 0.0
        now = face_thumb(image, self._ref[1])
        if now is None:
            return 0.0
        c = 1.0 - float(np.dot(self._ref[2], now))
        if c >= change:
            self.last_change_t = t
        return c

    def observe_motion(self, t: float, window_s: float, fraction: float, need_change: bool = False) -> float:
        """Drop motion samples older than ``window_s`` s before ``t``, measure the window (module
        docstring) and set :attr:`last_motion_t` when it shows movement (with ``need_change``: only if
        the picture changed within the window too). Returns the box motion measure (fraction of the face
        width; 0 with fewer than :data:`MOTION_MIN_SAMPLES` samples)."""
        while self.motion and self.motion[0][0] <= t - window_s:
            self.motion.popleft()
        if len(self.motion) < MOTION_MIN_SAMPLES:
            return 0.0
        a = np.asarray(self.motion, np.float64)[:, 1:]
        med = np.median(a, axis=0)
        mad = np.median(np.abs(a - med), axis=0)
        m = float(4.0 * mad.max() / max(med[2], 1.0))
        changed = not need_change or (self.last_change_t is not None and t - self.last_change_t < window_s)
        if m >= fraction and changed:
            self.last_motion_t = t
        return m

    def stationary(self, t: float, window_s: float) -> bool:
        """Whether the track has shown no movement during the ``window_s`` s before ``t`` (a new
        track is stationary until it first moves); ``window_s <= 0``: never."""
        if window_s <= 0:
            return False
        return self.last_motion_t is None or t - self.last_motion_t >= window_s

    def predict(self, t: float) -> np.ndarray:
        return self.box + self.velocity * float(max(0.0, t - self.last_t))

    def update(self, box: np.ndarray, cls: int, score: float, t: float) -> None:
        dt = t - self.last_t
        if dt > 1e-6:
            v = (np.asarray(box, np.float32) - self.box) / dt
            self.velocity = 0.5 * self.velocity + 0.5 * v
        self.box = np.asarray(box, np.float32).copy()
        self.last_t = t
        self.hits += 1
        self.history.append((int(cls), float(score)))
        self.totals[cls] += score
        self._add_motion_sample(t)

    def vote(self, num_classes: int) -> Tuple[int, float, float]:
        """(class id, its share of the score-weighted vote 0-1, its mean score) over the recent window.

        With a classifier result (``secondary``, set by :class:`edge.classifier.SecondaryClassifier`) the
        share is that of the combined vote ``weight * probs + (1 - weight) * detector share``
        (:func:`edge.classifier.combine`)."""
        w = np.zeros(num_classes, np.float64)
        for c, s in self.history:
            w[c] += s
        v = combine(w / max(w.sum(), 1e-9), *self.secondary) if self.secondary is not None else w / max(w.sum(), 1e-9)
        c = int(np.argmax(v))  # with a classifier: weight * its probabilities + (1 - weight) * the detector share
        scores = [s for cc, s in self.history if cc == c] or ([s for _, s in self.history] if self.secondary else [])
        return c, float(v[c]), float(np.mean(scores)) if scores else 0.0

    @property
    def lifetime_class(self) -> int:
        if self.secondary is not None:
            return int(np.argmax(combine(self.totals / max(self.totals.sum(), 1e-9), *self.secondary)))
        return int(np.argmax(self.totals))


class Tracker:
    """Assigns track ids and voted classes to detections (see the module docstring).

    Args:
        cfg: tracker settings; :meth:`configure` changes them without losing tracks.
        num_classes: length of the model's class list.
    """

    def __init__(self, cfg: Optional[TrackerConfig] = None, num_classes: int = 3):
        self.num_classes = num_classes
        self.tracks = []      # type: List[Track]
        self.finished = []    # type: List[Track]
        self._next_id = 1
        self.configure(cfg or TrackerConfig())

    def configure(self, cfg: TrackerConfig) -> None:
        self.cfg = cfg
        for tr in self.tracks:
            tr.history = collections.deque(tr.history, maxlen=cfg.vote_window)

    def update(self, dets: Detections, t: float, wall: float = 0.0, image: Optional[np.ndarray] = None) -> Detections:
        """Match ``dets`` (frame at time ``t`` s) to tracks. ``image``: the (H, W, 3) uint8 BGR frame, for
        the picture-change check of stationary tracks (module docstring); ``None``: box motion only.

        Returns:
            the same detections with ``track_id`` set (``-1`` for tentative or unmatched) and, for
            confirmed tracks, ``class_id`` replaced by the track's voted class.
        """
        cfg = self.cfg
        n = len(dets)
        track_of = np.full(n, -1, np.int64)  # index into self.tracks
        high = np.nonzero(dets.scores >= cfg.high_score)[0]
        low = np.nonzero(dets.scores < cfg.high_score)[0]
        predicted = np.stack([tr.predict(t) for tr in self.tracks]) if self.tracks else np.zeros((0, 4), np.float32)

        free_tracks = list(range(len(self.tracks)))
        # 1. high-score detections against every track
        if len(high) and free_tracks:
            iou = box_iou(predicted[free_tracks], dets.xyxy[high])
            for r, c in greedy_iou_match(iou, cfg.match_iou):
                track_of[high[c]] = free_tracks[r]
            matched = set(track_of[high][track_of[high] >= 0].tolist())
            free_tracks = [i for i in free_tracks if i not in matched]
        # 2. low-score detections may extend confirmed tracks left over
        conf_free = [i for i in free_tracks if self.tracks[i].id > 0]
        if len(low) and conf_free:
            iou = box_iou(predicted[conf_free], dets.xyxy[low])
            for r, c in greedy_iou_match(iou, cfg.match_iou):
                track_of[low[c]] = conf_free[r]
        # update matched tracks
        for d in np.nonzero(track_of >= 0)[0]:
            tr = self.tracks[track_of[d]]
            tr.update(dets.xyxy[d], int(dets.class_id[d]), float(dets.scores[d]), t)
            if cfg.stationary_s > 0:
                picture = image is not None and cfg.stationary_change > 0
                if picture:
                    tr.observe_picture(t, image, cfg.stationary_s, cfg.stationary_change)
                tr.observe_motion(t, cfg.stationary_s, cfg.stationary_fraction, need_change=picture)
            if tr.id < 0 and tr.hits >= cfg.min_hits:
                tr.id = self._next_id
                self._next_id += 1
        # 3. unmatched high-score detections start tentative tracks
        for d in high[track_of[high] < 0]:
            tr = Track(dets.xyxy[d], int(dets.class_id[d]), float(dets.scores[d]), t, wall, self.num_classes,
                       cfg.vote_window)
            if cfg.min_hits <= 1:
                tr.id = self._next_id
                self._next_id += 1
            self.tracks.append(tr)
            track_of[d] = len(self.tracks) - 1
        # 4. end stale tracks
        out_ids = np.full(n, -1, np.int64)
        out_cls = dets.class_id.copy()
        for d in range(n):
            if track_of[d] >= 0:
                tr = self.tracks[track_of[d]]
                if tr.id > 0:
                    out_ids[d] = tr.id
                    out_cls[d] = tr.vote(self.num_classes)[0]
        alive = []
        for tr in self.tracks:
            if t - tr.last_t > cfg.max_age_s:
                if tr.id > 0:
                    self.finished.append(tr)
            else:
                alive.append(tr)
        self.tracks = alive
        return Detections(dets.xyxy, dets.scores, out_cls, out_ids)

    def is_stationary(self, track: Track, t: float) -> bool:
        """Whether ``track`` is stationary at frame time ``t`` s (``tracker.stationary_s``; module docstring)."""
        return track.stationary(t, self.cfg.stationary_s)

    def stationary_mask(self, dets: Detections, t: float) -> np.ndarray:
        """(N,) bool: which of the tracked ``dets`` belong to a stationary confirmed track (tentative and
        unmatched rows: False)."""
        out = np.zeros(len(dets), bool)
        if dets.track_id is None:
            return out
        for i in np.nonzero(dets.track_id > 0)[0]:
            tr = self.get(int(dets.track_id[i]))
            out[i] = tr is not None and self.is_stationary(tr, t)
        return out

    def poster_mask(self, dets: Detections, t: float) -> np.ndarray:
        """(N,) bool: rows of a stationary confirmed track that has **never** moved (a poster, a photo):
        drawn dimmed and not a person in view. A person who walked in and then stands still moved once,
        so stays a person in view (and, judged already, alarms no more)."""
        out = self.stationary_mask(dets, t)
        for i in np.nonzero(out)[0]:
            tr = self.get(int(dets.track_id[i]))
            out[i] = tr is not None and tr.last_motion_t is None
        return out

    def get(self, track_id: int) -> Optional[Track]:
        for tr in self.tracks:
            if tr.id == track_id:
                return tr
        return None

    def pop_finished(self) -> List[Track]:
        """Confirmed tracks that ended since the last call."""
        out, self.finished = self.finished, []
        return out

    def end_all(self) -> List[Track]:
        """End every track (shutdown); returns the confirmed ones, including earlier finished ones."""
        self.finished.extend(tr for tr in self.tracks if tr.id > 0)
        self.tracks = []
        return self.pop_finished()
