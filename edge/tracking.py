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
"""
from __future__ import annotations

import collections
from typing import Deque, List, Optional, Tuple

import numpy as np

from edge.classifier import combine
from edge.config import TrackerConfig
from edge.decoders import box_iou, greedy_iou_match
from edge.types import Detections


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
        #: (classifier probabilities (C,), weight) set by edge.classifier.SecondaryClassifier, or None
        self.secondary = None  # type: Optional[Tuple[np.ndarray, float]]

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

    def update(self, dets: Detections, t: float, wall: float = 0.0) -> Detections:
        """Match ``dets`` (frame at time ``t`` s) to tracks.

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
