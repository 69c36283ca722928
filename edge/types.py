"""The small typed data core: frames, detections (a struct of arrays) and alarm events."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Union

import numpy as np


@dataclass
class Frame:
    """One captured frame.

    Attributes:
        image: (H, W, 3) uint8 BGR.
        index: 0-based frame number from the source (counts dropped frames too).
        t: timestamp in seconds. Video files and image folders use media time
            (index / fps), so runs at any speed are reproducible; cameras use
            ``time.monotonic()``.
        wall: ``time.time()`` when the frame was captured.
    """

    image: np.ndarray
    index: int
    t: float
    wall: float

    @property
    def wh(self):
        return int(self.image.shape[1]), int(self.image.shape[0])


@dataclass
class Detections:
    """Faces in one frame, as parallel NumPy arrays (N rows).

    Attributes:
        xyxy: (N, 4) float32 box corners in frame px.
        scores: (N,) float32 confidence in [0, 1].
        class_id: (N,) int64 index into the model's class list.
        track_id: (N,) int64 track ids (``-1``: not yet a confirmed track), or
            ``None`` before tracking.

    Index with a boolean mask or index array: ``dets[dets.scores > 0.5]``.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    class_id: np.ndarray
    track_id: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, np.float32)
        if self.xyxy.size == 0:
            self.xyxy = self.xyxy.reshape(0, 4)
        self.scores = np.asarray(self.scores, np.float32)
        self.class_id = np.asarray(self.class_id, np.int64)
        n = len(self.xyxy)
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (N, 4), got {self.xyxy.shape}")
        if self.scores.shape != (n,):
            raise ValueError(f"scores must have shape ({n},) to match xyxy, got {self.scores.shape}")
        if self.class_id.shape != (n,):
            raise ValueError(f"class_id must have shape ({n},) to match xyxy, got {self.class_id.shape}")
        if self.track_id is not None:
            self.track_id = np.asarray(self.track_id, np.int64)
            if self.track_id.shape != (n,):
                raise ValueError(f"track_id must have shape ({n},) to match xyxy, got {self.track_id.shape}")

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Union[np.ndarray, slice, int]) -> "Detections":
        if isinstance(index, (int, np.integer)):
            index = np.array([index])
        return Detections(self.xyxy[index], self.scores[index], self.class_id[index],
                          None if self.track_id is None else self.track_id[index])

    @property
    def width(self) -> np.ndarray:
        """(N,) box widths in px."""
        return self.xyxy[:, 2] - self.xyxy[:, 0]

    @property
    def centre(self) -> np.ndarray:
        """(N, 2) box centres in px."""
        return (self.xyxy[:, :2] + self.xyxy[:, 2:]) / 2


@dataclass
class AlarmEvent:
    """One alarm: a person held an alarm class long enough.

    Attributes:
        time: ISO 8601 local wall-clock time with offset.
        frame: source frame index that raised it.
        track_id: the tracked face.
        cls: class name (``no_mask`` or ``mask_incorrect``).
        score: mean detection score over the held frames.
        duration_s: how long the class was held before the alarm (s).
        source_t: frame timestamp (media time for files, monotonic s for cameras).
        suppressed: quiet hours held the sound back (the event is still logged).
        sounded: the speaker and banner announced this alarm (False: see ``reason``).
        reason: why it was not sounded: ``"cooldown"`` (another alarm was announced less than
            ``alarm.cooldown_s`` ago: one announcement covers a group) or ``"quiet_hours"``;
            ``None`` when sounded.
    """

    time: str
    frame: int
    track_id: int
    cls: str
    score: float
    duration_s: float
    source_t: float
    suppressed: bool = False
    extra: Dict[str, Any] = field(default_factory=dict)
    sounded: bool = True
    reason: Optional[str] = None

    def __post_init__(self) -> None:
        if self.suppressed and self.sounded:  # quiet hours hold the sound back: such an alarm is never sounded
            self.sounded, self.reason = False, self.reason or "quiet_hours"

    def to_dict(self) -> Dict[str, Any]:
        d = {"type": "alarm", "time": self.time, "frame": self.frame, "track_id": self.track_id, "class": self.cls,
             "score": round(float(self.score), 4), "duration_s": round(float(self.duration_s), 3),
             "source_t": round(float(self.source_t), 3), "suppressed": self.suppressed,
             "sounded": bool(self.sounded), "reason": self.reason}
        d.update(self.extra)
        return d
