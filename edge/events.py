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

A person is appended to ``counts.jsonl`` (and fsynced) as soon as the track is counted, as a
``counts`` record of one person for its hour, so ``kill -9``, a watchdog kill or a power cut loses
at most the person being written, and ``maskwatch report`` shows the current hour too.

The disk never stops the appliance (:class:`JsonlAppender`): a write that fails (a full disk, a
read-only or deleted folder) keeps the line in a bounded memory queue, logs once (then at most once
a minute) and is retried; a deleted file or folder is recreated; a file whose last line was torn
(power cut) gets a newline before the next record, so that record is not glued onto it.
"""
from __future__ import annotations

import collections
import datetime
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Deque, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from edge.types import AlarmEvent

log = logging.getLogger(__name__)

COUNT_CLASSES = ("mask", "no_mask", "mask_incorrect")


class JsonlAppender:
    """Appends JSON lines to a file without ever raising: the disk must not stop the appliance.

    Each record is written with ``os.write`` on an ``O_APPEND`` descriptor (no user-space buffer, so a
    failed write leaves nothing half-buffered). When a write or the open fails (``OSError``: a full disk,
    a read-only or missing folder) the line stays in a queue of at most ``max_queue`` lines (the oldest
    are dropped and counted in :attr:`lost` beyond that), the failure is logged once and then at most
    every ``log_every_s`` seconds, and :meth:`retry` (called from the frame loop) tries again every
    ``retry_s`` seconds. Before each write the file's device and inode are compared with the open
    descriptor's, so a file or folder deleted or replaced mid-run is recreated (folder included), not
    written into the deleted inode. A non-empty file that does not end with a newline (a torn last
    line) gets one before the first new record. Only a regular file is ever opened
    (:func:`edge.validate.open_regular`): a path that is (or becomes) a FIFO, a device or a folder is
    refused like an unwritable one (reported, lines kept in memory), so a pipe can never block a write.

    ``background=True`` (what the appliance uses): :meth:`append` only hands the line to a bounded queue
    and returns at once; a writer thread opens, writes, fsyncs and retries, so a slow, hung or failing
    disk never stalls the frame loop, the watchdog or SIGTERM. :meth:`close` waits at most
    ``close_timeout_s`` for the writer and reports what it could not write.

    Attributes:
        path: the file.
        writable: the last attempt succeeded (False: lines are waiting in memory).
        error: the last ``OSError`` text ("" when writable).
        written: lines written to the file.
        lost: lines dropped because the queue was full.
    """

    def __init__(self, path: Union[str, Path], what: str = "events", fsync: bool = False, max_queue: int = 1000,
                 retry_s: float = 5.0, log_every_s: float = 60.0, background: bool = False,
                 close_timeout_s: float = 5.0):
        self.path = Path(path)
        self.what, self.fsync, self.retry_s, self.log_every_s = what, fsync, retry_s, log_every_s
        self.queue = collections.deque(maxlen=max_queue)  # type: Deque[bytes]
        self.writable, self.error = True, ""
        self.written = self.lost = 0
        self.background, self.close_timeout_s = background, close_timeout_s
        self._fd = None  # type: Optional[int]
        self._id = None  # type: Optional[Tuple[int, int]]
        self._t_fail = self._t_log = -1e18
        self._lock = threading.Lock()  # guards the queue between append() and the writer
        self._wake = threading.Event()
        self._closing = False
        self._thread = None  # type: Optional[threading.Thread]
        if background:
            self._start_writer(at_start=True)
            return
        try:
            self._open()
        except OSError as e:
            self._failed(e, at_start=True)

    @property
    def pending(self) -> int:
        """Lines waiting in memory for the disk."""
        return len(self.queue)

    def append(self, record: Dict[str, Any]) -> bool:
        """Queue ``record`` and write everything queued; True when it reached the file (background: True
        when it was handed to the writer thread, which never waits)."""
        line = (json.dumps(record, sort_keys=False) + "\n").encode("utf-8")
        with self._lock:
            if len(self.queue) == self.queue.maxlen:
                self.lost += 1
            self.queue.append(line)
        if self.background:
            if self._thread is None or not self._thread.is_alive():
                self._start_writer()
            self._wake.set()
            return True
        return self._drain()

    def retry(self, now: Optional[float] = None) -> None:
        """Write what is queued if ``retry_s`` has passed since the last failure (cheap when nothing waits;
        background: the writer thread retries by itself)."""
        if self.background:
            return
        if self.queue and (time.monotonic() if now is None else now) - self._t_fail >= self.retry_s:
            self._drain()

    def close(self) -> None:
        """Write what is queued (once), fsync and close; what still cannot be written is logged as lost.
        Background: waits at most ``close_timeout_s`` for the writer thread."""
        if self.background:
            self._stop_writer()
            return
        if self.queue:
            self._drain()
        if self.queue:
            log.error("%s: %d %s could not be written (%s) and are lost", self.path, len(self.queue), self.what,
                      self.error)
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError:
                pass
            self._close_fd()

    # ------------------------------------------------------------------ the writer thread (background)
    def _start_writer(self, at_start: bool = False) -> None:
        self._closing = False
        self._thread = threading.Thread(target=self._writer, args=(at_start,), name=f"{self.what}-writer",
                                        daemon=True)
        self._thread.start()

    def _writer(self, at_start: bool) -> None:
        if self._fd is None:
            try:
                self._open()
            except OSError as e:
                self._failed(e, at_start=at_start)
        while True:
            self._wake.wait(self.retry_s)
            self._wake.clear()
            closing = self._closing
            if self.queue and (closing or self.writable or time.monotonic() - self._t_fail >= self.retry_s):
                self._drain()
            if closing:
                break
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError:
                pass
            self._close_fd()

    def _stop_writer(self) -> None:
        t = self._thread
        if t is None:
            return
        self._closing = True
        self._wake.set()
        t.join(self.close_timeout_s)
        if t.is_alive():
            log.error("%s: the %s writer is still blocked after %.0f s (a hung disk?); %d %s not written are lost",
                      self.path, self.what, self.close_timeout_s, len(self.queue), self.what)
            return
        self._thread = None
        if self.queue:
            log.error("%s: %d %s could not be written (%s) and are lost", self.path, len(self.queue), self.what,
                      self.error)

    # ------------------------------------------------------------------ internals
    def _open(self) -> None:
        from edge.validate import open_regular
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_regular(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)  # RDWR: pread the last byte
        try:
            st = os.fstat(fd)
            if st.st_size > 0 and os.pread(fd, 1, st.st_size - 1) != b"\n":
                os.write(fd, b"\n")  # a torn last line: start the next record on its own line
        except OSError:
            os.close(fd)
            raise
        self._fd, self._id = fd, (st.st_dev, st.st_ino)

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd = self._id = None

    def _same_file(self) -> bool:
        try:
            st = os.stat(str(self.path))
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._id

    def _drain(self) -> bool:
        try:
            if self._fd is not None and not self._same_file():
                log.warning("%s was deleted or replaced; recreating it", self.path)
                self._close_fd()
            if self._fd is None:
                self._open()
            while True:
                with self._lock:
                    if not self.queue:
                        break
                    data = self.queue[0]
                n = os.write(self._fd, data)
                with self._lock:
                    if self.queue and self.queue[0] is data:  # (else it was dropped meanwhile: queue full)
                        if n < len(data):  # a short write (disk just filled): keep the rest for the retry
                            self.queue[0] = data[n:]
                            raise OSError(28, "short write (no space left on device?)")
                        self.queue.popleft()
                self.written += 1
            if self.fsync:
                os.fsync(self._fd)
        except OSError as e:
            self._failed(e)
            return False
        if not self.writable:
            log.warning("%s is writable again; the %s kept in memory were written", self.path, self.what)
            self.writable, self.error = True, ""
        return True

    def _failed(self, e: OSError, at_start: bool = False) -> None:
        now = time.monotonic()
        self.error = f"{e.strerror or e}"
        self._t_fail = now
        first = self.writable
        self.writable = False
        if first or now - self._t_log >= self.log_every_s:
            self._t_log = now
            log.error("%s %s: %s not writable (%s); %d kept in memory (at most %d), retried every %.0f s%s",
                      "at start-up:" if at_start else "cannot write" if first else "still cannot write",
                      self.what, self.path, self.error, len(self.queue), self.queue.maxlen, self.retry_s,
                      f", {self.lost} lost so far" if self.lost else "")


class EventLog:
    """Appends alarm events to a JSON-lines file, one line per event, written at once; never raises
    (see :class:`JsonlAppender`: a full or read-only disk keeps events in memory and retries).
    ``background=True``: :meth:`write` hands the line to a writer thread and never waits for the disk."""

    def __init__(self, path: Union[str, Path], background: bool = False):
        self.path = Path(path)
        self.file = JsonlAppender(self.path, "events", background=background)

    @property
    def written(self) -> int:
        return self.file.written

    @property
    def writable(self) -> bool:
        """False while events wait in memory because the file cannot be written."""
        return self.file.writable

    def write(self, event: Union[AlarmEvent, Dict[str, Any]]) -> bool:
        """Append one event; True when it reached the file (False: queued for :meth:`retry`)."""
        d = event.to_dict() if isinstance(event, AlarmEvent) else dict(event)
        return self.file.append(d)

    def retry(self) -> None:
        self.file.retry()

    def close(self) -> None:
        self.file.close()


class HourlyCounts:
    """Counts people per class per local hour. Each person is appended at once (and fsynced) as a
    ``counts`` record of one person for its hour, so nothing waits in memory for the hour to end;
    the report sums the records. Never raises (see :class:`JsonlAppender`)."""

    def __init__(self, path: Union[str, Path], classes: Sequence[str] = COUNT_CLASSES, background: bool = False):
        self.path = Path(path)
        self.classes = list(classes)
        self.total = collections.Counter()  # type: collections.Counter
        self.file = JsonlAppender(self.path, "counts", fsync=True, max_queue=10000, background=background)

    @staticmethod
    def hour_of(wall: float) -> str:
        return datetime.datetime.fromtimestamp(wall).strftime("%Y-%m-%dT%H")

    @property
    def writable(self) -> bool:
        return self.file.writable

    def add(self, cls: str, wall: float, now: Optional[float] = None) -> None:
        """Count one person of class ``cls`` first seen at epoch time ``wall`` (``now`` is accepted for
        compatibility; every person is written at once)."""
        self.total[cls] += 1
        rec = {"type": "counts", "hour": self.hour_of(wall)}
        rec.update({k: int(k == cls) for k in self.classes})
        self.file.append(rec)

    def retry(self) -> None:
        self.file.retry()

    def flush(self) -> None:
        """Write what waits in memory, fsync and close the file (it is reopened by the next :meth:`add`)."""
        self.file.close()


def save_snapshot(image: np.ndarray, event: AlarmEvent, folder: Union[str, Path]) -> Path:
    """Write the alarm frame as JPEG (only called when the admin enabled snapshots)."""
    import cv2
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"{event.time.replace(':', '-')}_track{event.track_id}.jpg"
    cv2.imwrite(str(p), image)
    return p


def iter_jsonl(path: Union[str, Path], only: Optional[bytes] = None) -> Iterator[Optional[Dict[str, Any]]]:
    """Each non-empty line of a JSON-lines file, streamed: the JSON object, or ``None`` for a damaged line (a
    torn line after a power cut, a bad byte, a bare number or list; the first five are logged). Memory does
    not depend on the file's size. A file that does not exist yields nothing; one that cannot be read, or is
    not a regular file (a FIFO, a device), raises ``OSError``.

    ``only``: parse only lines containing these bytes (the report's day); other lines that look like a JSON
    object (``{...}``) are skipped unparsed, other lines still count as damaged (a torn line). About 5x
    faster on a file of many days."""
    from edge.validate import open_regular
    p = Path(path)
    try:
        fd = open_regular(p)
    except FileNotFoundError:
        return
    bad = 0
    with os.fdopen(fd, "rb") as f:
        for n, raw in enumerate(f, 1):
            raw = raw.strip()
            if not raw:
                continue
            if only is not None and only not in raw and raw[:1] == b"{" and raw[-1:] == b"}":
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                rec = None
            if isinstance(rec, dict):
                yield rec
            else:
                bad += 1
                if bad <= 5:
                    log.warning("%s:%d: skipping a damaged line", p, n)
                yield None


def scan_jsonl(path: Union[str, Path]) -> Tuple[List[Dict[str, Any]], int]:
    """``(records, skipped)``: every JSON object of a JSON-lines file, and how many non-empty lines were not
    one (see :func:`iter_jsonl`, which streams; this keeps every record in memory). Never raises on content; a
    file that does not exist gives ``([], 0)``; an unreadable one raises ``OSError``."""
    out = []  # type: List[Dict[str, Any]]
    bad = 0
    for rec in iter_jsonl(path):
        if rec is None:
            bad += 1
        else:
            out.append(rec)
    return out, bad


def read_jsonl(path: Union[str, Path]) -> List[Dict[str, Any]]:
    """Every valid JSON object in a JSON-lines file (damaged lines, e.g. a torn last line after a power cut,
    are skipped; see :func:`scan_jsonl` for their count)."""
    return scan_jsonl(path)[0]


def _int(v: Any) -> int:
    """A count from a record: a non-negative int, else ValueError."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v != int(v):
        raise ValueError(f"not a count: {v!r}")
    return int(v)


def alarm_sounded(rec: Dict[str, Any]) -> Tuple[bool, Optional[str]]:
    """``(sounded, reason)`` of an alarm record: the ``sounded``/``reason`` fields when the policy wrote them
    (e.g. ``reason`` ``"cooldown"``, ``"quiet_hours"``), else from ``suppressed`` (quiet hours)."""
    sounded = not rec.get("suppressed")  # quiet hours: never sounded, whatever else the record says
    if isinstance(rec.get("sounded"), bool):
        sounded = sounded and rec["sounded"]
    reason = rec.get("reason")
    if not sounded and not isinstance(reason, str):
        reason = "quiet_hours" if rec.get("suppressed") else "unknown"
    return sounded, (reason if not sounded else None)


def day_report(day: str, counts_path: Union[str, Path], events_path: Union[str, Path, None] = None,
               now: Optional[float] = None) -> Dict[str, Any]:
    """People and alarms of ``day`` (YYYY-MM-DD), per hour, the current hour included.

    Returns ``{"day", "hours": {HH: {class: n}}, "total": {class: n}, "alarms": n sounded,
    "alarms_raised": n, "not_sounded": {reason: n}, "alarms_by_hour": {HH: {"raised": n, "sounded": n}},
    "current_hour": "HH" or None, "skipped_lines": n}``. Damaged lines and records with bad fields are
    skipped and counted in ``skipped_lines`` (of other days' lines, only those that are not ``{...}``, e.g. a
    torn line, are looked at: see :func:`iter_jsonl`). Both files are streamed line by line and only the
    asked day is kept, so memory does not depend on their size (``scripts/bench_report.py`` measures it).

    Raises:
        ValueError: ``day`` is not a YYYY-MM-DD date.
        OSError: a file exists but cannot be read.
    """
    datetime.datetime.strptime(day, "%Y-%m-%d")  # ValueError on a bad date
    hours = collections.OrderedDict()  # type: Dict[str, Dict[str, int]]
    by_hour = collections.OrderedDict()  # type: Dict[str, Dict[str, int]]
    for h in range(24):
        hours[f"{h:02d}"] = {c: 0 for c in COUNT_CLASSES}
        by_hour[f"{h:02d}"] = {"raised": 0, "sounded": 0}
    skipped = 0
    only = day.encode("ascii")
    for rec in iter_jsonl(counts_path, only):
        if rec is None:
            skipped += 1
            continue
        hour = rec.get("hour")
        if rec.get("type") != "counts" or not isinstance(hour, str) or not hour.startswith(day):
            continue
        hh = hour[11:13]
        try:
            if hh not in hours:
                raise ValueError(f"bad hour {hour!r}")
            add = {c: _int(rec.get(c, 0)) for c in COUNT_CLASSES}
        except ValueError:
            skipped += 1
            continue
        for c in COUNT_CLASSES:
            hours[hh][c] += add[c]
    total = {c: sum(v[c] for v in hours.values()) for c in COUNT_CLASSES}
    raised, not_sounded = 0, collections.Counter()
    if events_path is not None:
        for r in iter_jsonl(events_path, only):
            if r is None:
                skipped += 1
                continue
            t = r.get("time")
            if r.get("type", "alarm") != "alarm" or not isinstance(t, str) or not t.startswith(day):
                continue
            hh = t[11:13]
            if hh not in by_hour:
                skipped += 1
                continue
            sounded, reason = alarm_sounded(r)
            raised += 1
            by_hour[hh]["raised"] += 1
            by_hour[hh]["sounded"] += int(sounded)
            if not sounded:
                not_sounded[reason] += 1
    now_dt = datetime.datetime.fromtimestamp(time.time() if now is None else now)
    current = now_dt.strftime("%H") if now_dt.strftime("%Y-%m-%d") == day else None
    return {"day": day, "hours": hours, "total": total, "alarms": sum(v["sounded"] for v in by_hour.values()),
            "alarms_raised": raised, "not_sounded": dict(not_sounded), "alarms_by_hour": by_hour,
            "current_hour": current, "skipped_lines": skipped}


def format_report(rep: Dict[str, Any]) -> str:
    """The report as a text table: people per class and alarms (raised / sounded) per hour."""
    by_hour = rep.get("alarms_by_hour") or {}
    cur = rep.get("current_hour")
    lines = [f"maskwatch counts for {rep['day']} (people, counted once per track)",
             f"{'hour':>5} {'mask':>6} {'no_mask':>8} {'incorrect':>10} {'alarms':>7} {'sounded':>8}"]
    for hh, c in rep["hours"].items():
        a = by_hour.get(hh, {"raised": 0, "sounded": 0})
        if any(c.values()) or a["raised"] or hh == cur:
            lines.append(f"{hh + ':00':>5} {c['mask']:>6} {c['no_mask']:>8} {c['mask_incorrect']:>10} "
                         f"{a['raised']:>7} {a['sounded']:>8}" + ("  (current hour, still counting)"
                                                                  if hh == cur else ""))
    t = rep["total"]
    raised = rep.get("alarms_raised", rep["alarms"])
    lines.append(f"{'total':>5} {t['mask']:>6} {t['no_mask']:>8} {t['mask_incorrect']:>10} {raised:>7} "
                 f"{rep['alarms']:>8}")
    lines.append(f"alarms sounded: {rep['alarms']}")
    if rep.get("not_sounded"):
        lines.append(f"alarms raised: {raised}, not sounded: " +
                     ", ".join(f"{k} {v}" for k, v in sorted(rep["not_sounded"].items())))
    if rep.get("skipped_lines"):
        lines.append(f"skipped {rep['skipped_lines']} damaged line(s)")
    return "\n".join(lines)


def save_report_png(rep: Dict[str, Any], path: Union[str, Path]) -> Path:
    """A stacked bar chart of the day's hourly counts (needs matplotlib, imported only here)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError("the PNG chart needs matplotlib (pip install matplotlib)") from e
    fig = report_figure(rep, plt)
    fig.savefig(str(path))
    plt.close(fig)
    return Path(path)


def report_figure(rep: Dict[str, Any], plt: Any) -> Any:
    """The matplotlib figure of :func:`save_report_png`: hours 0-23 on x, people on y, both axes in whole
    numbers (a count of people has no 0.2 step)."""
    from matplotlib.ticker import MaxNLocator
    hours = list(rep["hours"])
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    bottom = np.zeros(len(hours))
    colors = {"mask": "#3cb43c", "no_mask": "#e02828", "mask_incorrect": "#ffa000"}
    for c in COUNT_CLASSES:
        vals = np.array([rep["hours"][h][c] for h in hours], float)
        ax.bar([int(h) for h in hours], vals, bottom=bottom, label=c, color=colors[c])
        bottom += vals
    ax.set_xticks([int(h) for h in hours])
    ax.set_xlabel("hour")
    ax.set_ylabel("people")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if not bottom.any():
        ax.set_ylim(0, 1)  # a day without people: the axis still reads 0 and 1
    ax.set_title(f"maskwatch {rep['day']}: {sum(rep['total'].values())} people, {rep['alarms']} alarms")
    ax.legend()
    fig.tight_layout()
    return fig
