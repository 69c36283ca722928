"""The local event log: alarm events and hourly per-person counts, as append-only JSON lines.

Two files (paths from :class:`edge.config.EventsConfig`):

* ``events.jsonl``: one object per alarm: ``{"type": "alarm", "time", "frame", "track_id", "class",
  "score", "duration_s", "source_t", "suppressed"}``;
* ``counts.jsonl``: one object per hour (and per run, so restarts append, never rewrite):
  ``{"type": "counts", "hour": "2026-11-22T14", "mask": 3, "no_mask": 1, "mask_incorrect": 0}``.
  A person is counted once per track, by the class the track held over its life, when the track
  ends; tracks eligible for the alarm policy (face size, zone) for fewer than ``alarm.min_frames``
  frames are flickers, not people, and are not counted.

Both survive restarts: lines are only appended and flushed as written. Nothing here
writes images; :func:`save_snapshot` exists for admins who turn snapshots on.
"""
from __future__ import annotations

import collections
import datetime
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from edge.types import AlarmEvent

log = logging.getLogger(__name__)

COUNT_CLASSES = ("mask", "no_mask", "mask_incorrect")


def _open_append(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a", encoding="utf-8")


class EventLog:
    """Appends alarm events to a JSON-lines file, one flushed line per event."""

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        self._f = _open_append(self.path)
        self.written = 0

    def write(self, event: Union[AlarmEvent, Dict[str, Any]]) -> None:
        d = event.to_dict() if isinstance(event, AlarmEvent) else dict(event)
        self._f.write(json.dumps(d, sort_keys=False) + "\n")
        self._f.flush()
        self.written += 1

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            try:
                os.fsync(self._f.fileno())
            except OSError:
                pass
            self._f.close()


class HourlyCounts:
    """Counts people per class per local hour; appends one line per hour when the hour is over
    (and on :meth:`flush`, e.g. at shutdown)."""

    def __init__(self, path: Union[str, Path], classes: Sequence[str] = COUNT_CLASSES):
        self.path = Path(path)
        self.classes = list(classes)
        self._open = {}  # type: Dict[str, collections.Counter]
        self.total = collections.Counter()  # type: collections.Counter

    @staticmethod
    def hour_of(wall: float) -> str:
        return datetime.datetime.fromtimestamp(wall).strftime("%Y-%m-%dT%H")

    def add(self, cls: str, wall: float, now: Optional[float] = None) -> None:
        """Count one person of class ``cls`` first seen at epoch time ``wall``; hours before the hour of
        ``now`` (default: the current time) are complete and are written out."""
        hour = self.hour_of(wall)
        self._open.setdefault(hour, collections.Counter())[cls] += 1
        self.total[cls] += 1
        now_hour = self.hour_of(time.time() if now is None else now)
        for h in [h for h in self._open if h < now_hour]:
            self._write(h)

    def _write(self, hour: str) -> None:
        c = self._open.pop(hour)
        rec = {"type": "counts", "hour": hour}
        rec.update({k: int(c.get(k, 0)) for k in self.classes})
        with _open_append(self.path) as f:
            f.write(json.dumps(rec) + "\n")

    def flush(self) -> None:
        for h in sorted(self._open):
            self._write(h)


def save_snapshot(image: np.ndarray, event: AlarmEvent, folder: Union[str, Path]) -> Path:
    """Write the alarm frame as JPEG (only called when the admin enabled snapshots)."""
    import cv2
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"{event.time.replace(':', '-')}_track{event.track_id}.jpg"
    cv2.imwrite(str(p), image)
    return p


def read_jsonl(path: Union[str, Path]) -> List[Dict[str, Any]]:
    """Every valid JSON object in a JSON-lines file (a torn last line after a power cut is skipped)."""
    out = []
    p = Path(path)
    if not p.exists():
        return out
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s:%d: skipping a damaged line", p, n)
    return out


def day_report(day: str, counts_path: Union[str, Path], events_path: Union[str, Path, None] = None
               ) -> Dict[str, Any]:
    """Counts for ``day`` (YYYY-MM-DD): ``{"day", "hours": {HH: {class: n}}, "total": {class: n}, "alarms": n}``."""
    datetime.datetime.strptime(day, "%Y-%m-%d")  # ValueError on a bad date
    hours = collections.OrderedDict()  # type: Dict[str, Dict[str, int]]
    for h in range(24):
        hours[f"{h:02d}"] = {c: 0 for c in COUNT_CLASSES}
    for rec in read_jsonl(counts_path):
        if rec.get("type") != "counts" or not str(rec.get("hour", "")).startswith(day):
            continue
        hh = str(rec["hour"])[11:13]
        for c in COUNT_CLASSES:
            hours[hh][c] += int(rec.get(c, 0))
    total = {c: sum(v[c] for v in hours.values()) for c in COUNT_CLASSES}
    alarms = 0
    if events_path is not None:
        alarms = sum(1 for r in read_jsonl(events_path)
                     if r.get("type", "alarm") == "alarm" and str(r.get("time", "")).startswith(day)
                     and not r.get("suppressed"))
    return {"day": day, "hours": hours, "total": total, "alarms": alarms}


def format_report(rep: Dict[str, Any]) -> str:
    lines = [f"maskwatch counts for {rep['day']} (people, counted once per track)",
             f"{'hour':>5} {'mask':>6} {'no_mask':>8} {'incorrect':>10}"]
    for hh, c in rep["hours"].items():
        if any(c.values()):
            lines.append(f"{hh + ':00':>5} {c['mask']:>6} {c['no_mask']:>8} {c['mask_incorrect']:>10}")
    t = rep["total"]
    lines.append(f"{'total':>5} {t['mask']:>6} {t['no_mask']:>8} {t['mask_incorrect']:>10}")
    lines.append(f"alarms sounded: {rep['alarms']}")
    return "\n".join(lines)


def save_report_png(rep: Dict[str, Any], path: Union[str, Path]) -> Path:
    """A stacked bar chart of the day's hourly counts (needs matplotlib, imported only here)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError("the PNG chart needs matplotlib (pip install matplotlib)") from e
    hours = list(rep["hours"])
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    bottom = np.zeros(len(hours))
    colors = {"mask": "#3cb43c", "no_mask": "#e02828", "mask_incorrect": "#ffa000"}
    for c in COUNT_CLASSES:
        vals = np.array([rep["hours"][h][c] for h in hours], float)
        ax.bar(hours, vals, bottom=bottom, label=c, color=colors[c])
        bottom += vals
    ax.set_xlabel("hour")
    ax.set_ylabel("people")
    ax.set_title(f"maskwatch {rep['day']}: {sum(rep['total'].values())} people, {rep['alarms']} alarms")
    ax.legend()
    fig.tight_layout()
    fig.savefig(str(path))
    plt.close(fig)
    return Path(path)
