"""Drawing the monitor picture: face boxes by class, labels, alarm banner, FPS and counts, zone."""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from edge.types import Detections

#: BGR colour per class name
COLORS = {"mask": (60, 200, 60), "no_mask": (40, 40, 230), "mask_incorrect": (0, 160, 255)}
LABELS = {"mask": "mask", "no_mask": "NO MASK", "mask_incorrect": "mask incorrect"}
FONT = cv2.FONT_HERSHEY_SIMPLEX
#: the alarm banner per alarm class (the spoken prompt's words)
BANNERS = {"no_mask": "PLEASE WEAR YOUR MASK", "mask_incorrect": "PLEASE COVER YOUR NOSE"}
#: a picture (poster, painting; :mod:`edge.tracking`) is drawn in its class colour at this share, with a thin box
DIM = 0.45


class Overlay:
    """Draws on a copy of the frame; style is set here, :meth:`draw` only draws.

    Args:
        classes: the model's class names (index = class id).
        zone: entrance polygon in 0-1 fractions of the frame, or empty.
        alarm_text: the banner text.
    """

    def __init__(self, classes: Sequence[str], zone: Sequence[Tuple[float, float]] = (),
                 alarm_text: str = "PLEASE WEAR YOUR MASK"):
        self.classes = list(classes)
        self.set_zone(zone)
        self.alarm_text = alarm_text

    def set_zone(self, zone: Sequence[Tuple[float, float]]) -> None:
        """The entrance polygon to draw (fractions of the frame), or empty."""
        self.zone = np.asarray(zone, np.float64).reshape(-1, 2)

    def draw(self, image: np.ndarray, dets: Detections, fps: float = 0.0, alarm: bool = False,
             counts: Optional[Dict[str, int]] = None, telemetry: str = "",
             pictures: Optional[np.ndarray] = None, copy: bool = True) -> np.ndarray:
        """A copy of ``image`` (H, W, 3) uint8 BGR with everything drawn on it (``copy=False``: drawn on
        ``image`` itself and returned, saving a 2.7 MB copy per 720p frame; the pipeline does that once
        nothing else reads the frame).

        ``counts``: the status line's per-class numbers (the pipeline passes the people in view: confirmed,
        not picture tracks); ``None``: the boxes of ``dets`` per class.
        ``pictures``: (N,) bool, boxes of tracks judged a picture (posters, photos; :mod:`edge.tracking`):
        drawn thin, in a dimmed colour, labelled ``picture``.

        ``telemetry``: a short board-health text (``52C 8.1W``, see :func:`edge.telemetry.overlay_text`)
        appended to the status line; drawn in orange when it says ``THROTTLED``."""
        out = image.copy() if copy else image
        h, w = out.shape[:2]
        s = max(0.5, h / 720.0)  # scale text and lines with the frame
        th = max(1, int(round(2 * s)))
        if len(self.zone) >= 3:
            pts = (self.zone * (w, h)).round().astype(np.int32)
            cv2.polylines(out, [pts], True, (255, 200, 0), th, cv2.LINE_AA)
        for i in range(len(dets)):
            x1, y1, x2, y2 = dets.xyxy[i].round().astype(int).tolist()
            name = self.classes[int(dets.class_id[i])] if 0 <= dets.class_id[i] < len(self.classes) else "?"
            color = COLORS.get(name, (200, 200, 200))
            still = pictures is not None and bool(pictures[i])
            if still:
                color = tuple(int(round(DIM * v)) for v in color)
            cv2.rectangle(out, (x1, y1), (x2, y2), color, th if still else th + 1)
            tid = "" if dets.track_id is None or dets.track_id[i] < 0 else f"#{int(dets.track_id[i])} "
            label = f"{tid}{'picture ' if still else ''}{LABELS.get(name, name)} {dets.scores[i]:.2f}"
            (tw, tht), base = cv2.getTextSize(label, FONT, 0.6 * s, th)
            ty = y1 - 4 if y1 - tht - base - 4 >= 0 else y2 + tht + base + 4
            cv2.rectangle(out, (x1, ty - tht - base), (x1 + tw + 4, ty + base // 2), color, -1)
            cv2.putText(out, label, (x1 + 2, ty - base // 2), FONT, 0.6 * s, (255, 255, 255), th, cv2.LINE_AA)
        # status line: FPS and the faces in view per class
        counts = counts if counts is not None else self.count(dets)
        status = f"{fps:4.1f} FPS   mask {counts.get('mask', 0)}   no mask {counts.get('no_mask', 0)}" + \
                 f"   incorrect {counts.get('mask_incorrect', 0)}"
        (tw, tht), base = cv2.getTextSize(status, FONT, 0.6 * s, th)
        cv2.rectangle(out, (0, 0), (tw + int(16 * s), tht + base + int(12 * s)), (0, 0, 0), -1)
        cv2.putText(out, status, (int(8 * s), tht + int(6 * s)), FONT, 0.6 * s, (255, 255, 255), th, cv2.LINE_AA)
        if telemetry:  # board health beside the status line
            x0 = tw + int(16 * s)
            (tw2, _), _ = cv2.getTextSize(telemetry, FONT, 0.6 * s, th)
            cv2.rectangle(out, (x0, 0), (x0 + tw2 + int(16 * s), tht + base + int(12 * s)), (0, 0, 0), -1)
            color = (0, 160, 255) if "THROTTLED" in telemetry else (200, 200, 200)
            cv2.putText(out, telemetry, (x0 + int(8 * s), tht + int(6 * s)), FONT, 0.6 * s, color, th, cv2.LINE_AA)
        if alarm:
            bh = int(70 * s)
            cv2.rectangle(out, (0, h - bh), (w, h), (0, 0, 200), -1)
            fs = 1.2 * s
            (tw, tht), _ = cv2.getTextSize(self.alarm_text, FONT, fs, th + 1)
            cv2.putText(out, self.alarm_text, (max(0, (w - tw) // 2), h - (bh - tht) // 2), FONT, fs,
                        (255, 255, 255), th + 1, cv2.LINE_AA)
        return out

    def count(self, dets: Detections) -> Dict[str, int]:
        ids = np.bincount(dets.class_id, minlength=len(self.classes)) if len(dets) else np.zeros(len(self.classes))
        return {c: int(ids[i]) for i, c in enumerate(self.classes)}
