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

**Liveness: a person or a picture.** Posters, paintings and a photo on a notice board are faces that
never alarm. What tells them from a person is the face region's own picture over a short window,
not whether the box moves (people who queue, wait for the door or read a notice stand still; the
detector's box on a still photo jumps by up to 0.3 of the face width). Every matched frame of a track
the tracker keeps a 16 x 16 grey thumbnail of the face box, and compares the picture *at the same
place* ``tracker.liveness_window_s`` (0.25 s) ago with the picture there now::

    change = 1 - NCC(thumb(frame[t - W], box[t - W]), thumb(frame[t], box[t - W]))

(NCC: normalised cross-correlation of the zero-mean, unit-norm thumbnails, so a global gain or
offset (auto-exposure, a door opening) changes nothing). A live face shows micro-motion within a
quarter second (blinks, breathing, head sway, speech; a person who walks shows far more); a print
shows only camera noise. A frame is **evidence of life** when::

    change >= clip(NOISE_FACTOR * noise, tracker.liveness_change, CHANGE_CAP)

where ``noise`` is the track's noise floor, the median of the frame-to-frame ``change`` over its last
:data:`NOISE_SAMPLES` frames (camera noise is independent frame to frame, so a print's change over
the window is no larger than from one frame to the next, while a live face's micro-motion adds up
over the window). A track is

* **live** while it showed at least :data:`LIVE_EVIDENCE` evidence frames within the last
  ``tracker.picture_s`` (2 s) seconds;
* a **picture** once it has been seen for ``picture_s`` seconds and is not live;
* *undecided* before that (a new track; it does not alarm yet, and is drawn like any face).

Measured (``docs/runtime.md``): the people of the three shared clips, including the masked woman
who sits nearly still at her laptop, are live 0.28 s after confirmation (0.36 s after they first
appear) and stay live (longest gap between evidence frames 0.64 s); a photo pasted into the clips
never gives one evidence frame, also with sensor noise, a gain ramp and per-frame JPEG re-encoding
(its change stayed under 0.09 of the threshold). ``tracker.liveness_change: 0`` turns the rule off
(every track is live).

Sources: the rule has the shape of Frigate's *stationary objects* (docs.frigate.video,
"Stationary Objects": a tracked object in a very similar position for ``detect.stationary.threshold``
frames is stationary until motion occurs *within the object*; lighting changes do not make it
active), with the decision made on the face's own picture rather than its box position. The cue is the
motion-based family of face anti-spoofing (face liveness) detection: a printed photo lacks the
non-rigid micro-motion of a live face, e.g. Pan et al., "Eyeblink-based Anti-Spoofing in Face
Recognition from a Generic Webcamera", ICCV 2007; Bharadwaj et al., "Computationally Efficient Face
Spoofing Detection with Motion Magnification", CVPR Workshops 2013; survey: Ramachandra & Busch,
"Presentation Attack Detection Methods for Face Recognition Systems: A Comprehensive Survey", ACM
Computing Surveys 50(1), 2017 (section on motion/liveness cues). The limits are theirs too: a face
on a screen playing video moves like a person and is judged live; a print that a shadow crosses, or
that someone handles, shows change while it does.

**Bounded state:** every per-track buffer is a ``deque`` with a ``maxlen`` (class history, picture
samples, noise floor, evidence times), the class totals are a (C,) array: a track in view all day
holds the same memory as one in view for a second.
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

#: side (px) of the grey thumbnails compared for a picture change
THUMB = 16
#: the evidence threshold is at least this many times the track's noise floor (module docstring)
NOISE_FACTOR = 3.0
#: ... and never above this (a walking person's picture changes far more; a print's change stays at its
#: noise floor, so a cap keeps a fast-moving person's large frame-to-frame change from hiding them)
CHANGE_CAP = 0.1
#: evidence frames within ``tracker.picture_s`` that make a track live
LIVE_EVIDENCE = 2
#: frame-to-frame changes kept for the noise floor
NOISE_SAMPLES = 32
#: picture samples are taken at most this many times per ``liveness_window_s`` (every frame up to 128 fps
#: at the default 0.25 s window) ...
SAMPLES_PER_WINDOW = 32
#: ... and a track keeps at most this many (t, box, thumbnail) samples (~1 KiB each): bounded memory at any
#: frame rate and window, and always room for one sample a whole window old
MAX_PICTURE_SAMPLES = 2 * SAMPLES_PER_WINDOW
#: most evidence times a track keeps (only the last ``picture_s`` s matter)
MAX_EVIDENCE = 256


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
    """One face followed over time. All state is bounded (module docstring).

    Attributes:
        id: public id (> 0) once confirmed, ``-1`` while tentative.
        box: (4,) float32 last matched xyxy box (px).
        velocity: (4,) float32 smoothed box velocity (px/s).
        hits: matched frames. first_t / last_t: first and last matched timestamp (s).
        first_wall: wall-clock time of the first match (for hourly counts).
        history: recent (class_id, score) pairs for the vote (``maxlen`` ``tracker.vote_window``).
        totals: (C,) score-weighted class sums over the whole track (for counts).
        samples: recent (t s, (4,) float32 box, (THUMB*THUMB,) float32 thumbnail) picture samples.
        noise: recent frame-to-frame picture changes (1 - NCC), for the noise floor.
        evidence: timestamps (s) of recent evidence-of-life frames.
        last_change: the last frame's picture change over the window (1 - NCC; 0 before a full window).
        live_t: timestamp (s) the track was first judged live (``None``: never).
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
        self.samples = collections.deque(maxlen=MAX_PICTURE_SAMPLES)  # type: Deque[Tuple[float, np.ndarray, np.ndarray]]
        self.noise = collections.deque(maxlen=NOISE_SAMPLES)  # type: Deque[float]
        self.evidence = collections.deque(maxlen=MAX_EVIDENCE)  # type: Deque[float]
        self.last_change = 0.0
        self.live_t = None  # type: Optional[float]
        #: (classifier probabilities (C,), weight) set by edge.classifier.SecondaryClassifier, or None
        self.secondary = None  # type: Optional[Tuple[np.ndarray, float]]

    def observe_picture(self, t: float, image: np.ndarray, window_s: float, change: float, picture_s: float) -> float:
        """Take this frame's picture sample of the face box and compare the picture at the place of the sample
        ``window_s`` s ago (module docstring); a change at or above the evidence threshold (``change`` the
        floor) is recorded in :attr:`evidence`. ``image``: (H, W, 3) uint8 BGR. Returns the change (1 - NCC;
        0 before a full window or when the box lies outside the frame)."""
        c = 0.0
        if self.samples:
            prev = self.samples[-1]
            now = face_thumb(image, prev[1])
            if now is not None:
                self.noise.append(max(0.0, 1.0 - float(np.dot(prev[2], now))))
            old = None
            for s in reversed(self.samples):  # the newest sample at least window_s old
                if t - s[0] >= window_s - 1e-6:
                    old = s
                    break
            if old is not None:
                now = face_thumb(image, old[1])
                if now is not None:
                    c = max(0.0, 1.0 - float(np.dot(old[2], now)))
                    if c >= self.threshold(change):
                        self.evidence.append(t)
            while len(self.samples) > 1 and t - self.samples[1][0] >= window_s - 1e-6:
                self.samples.popleft()  # keep one sample at least window_s old, drop older ones
        if not self.samples or t - self.samples[-1][0] >= window_s / SAMPLES_PER_WINDOW:
            thumb = face_thumb(image, self.box)
            if thumb is not None:
                self.samples.append((float(t), self.box.copy(), thumb))
        self.last_change = c
        if self.live_t is None and self.live(t, picture_s):
            self.live_t = t
        return c

    def threshold(self, change: float) -> float:
        """The evidence threshold: ``clip(NOISE_FACTOR * noise floor, change, CHANGE_CAP)`` (1 - NCC)."""
        noise = float(np.median(np.asarray(self.noise, np.float64))) if self.noise else 0.0
        return min(max(change, NOISE_FACTOR * noise), max(change, CHANGE_CAP))

    def live(self, t: float, picture_s: float) -> bool:
        """Whether at least :data:`LIVE_EVIDENCE` evidence frames fell within the ``picture_s`` s before ``t``."""
        n = 0
        for e in reversed(self.evidence):
            if t - e >= picture_s:
                break
            n += 1
            if n >= LIVE_EVIDENCE:
                return True
        return False

    def picture(self, t: float, picture_s: float) -> bool:
        """Whether the track is a picture at ``t``: seen for at least ``picture_s`` s and not :meth:`live`."""
        return t - self.first_t >= picture_s and not self.live(t, picture_s)

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
        self._pictures = False  # whether any frame was given (else liveness cannot be judged)
        self.configure(cfg or TrackerConfig())

    def configure(self, cfg: TrackerConfig) -> None:
        self.cfg = cfg
        for tr in self.tracks:
            tr.history = collections.deque(tr.history, maxlen=cfg.vote_window)

    def update(self, dets: Detections, t: float, wall: float = 0.0, image: Optional[np.ndarray] = None) -> Detections:
        """Match ``dets`` (frame at time ``t`` s) to tracks. ``image``: the (H, W, 3) uint8 BGR frame, for
        the liveness judgement (module docstring); a tracker never given a frame judges every track live.

        Returns:
            the same detections with ``track_id`` set (``-1`` for tentative or unmatched) and, for
            confirmed tracks, ``class_id`` replaced by the track's voted class.
        """
        cfg = self.cfg
        self._pictures = self._pictures or image is not None
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
            if image is not None and cfg.liveness_change > 0:
                tr.observe_picture(t, image, cfg.liveness_window_s, cfg.liveness_change, cfg.picture_s)
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

    @property
    def judging(self) -> bool:
        """Whether liveness is judged: ``tracker.liveness_change > 0`` and frames are given to :meth:`update`."""
        return self.cfg.liveness_change > 0 and self._pictures

    def is_live(self, track: Track, t: float) -> bool:
        """Whether ``track`` is live at frame time ``t`` s (module docstring); always True when not :attr:`judging`."""
        return not self.judging or track.live(t, self.cfg.picture_s)

    def is_picture(self, track: Track, t: float) -> bool:
        """Whether ``track`` is a picture at frame time ``t`` s (seen ``tracker.picture_s`` and not live);
        never when not :attr:`judging`."""
        return self.judging and track.picture(t, self.cfg.picture_s)

    def picture_mask(self, dets: Detections, t: float) -> np.ndarray:
        """(N,) bool: rows of the tracked ``dets`` whose confirmed track is a picture (a poster, a photo): drawn
        dimmed as ``picture`` and not a person in view. Tentative and unmatched rows: False."""
        out = np.zeros(len(dets), bool)
        if dets.track_id is None or not self.judging:
            return out
        for i in np.nonzero(dets.track_id > 0)[0]:
            tr = self.get(int(dets.track_id[i]))
            out[i] = tr is not None and self.is_picture(tr, t)
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
