"""The frame loop never waits on event I/O (issue 19): a FIFO or device at the events path is refused and
reported (lines kept in memory), never written into; with the writer thread an append returns at once even
while the disk write is stuck, and close() gives up after its timeout instead of hanging SIGTERM."""
from __future__ import annotations

import logging
import os
import threading
import time

import edge.events as events_mod
from edge.events import EventLog, HourlyCounts, JsonlAppender, read_jsonl
from edge.types import AlarmEvent


def ev(track):
    return AlarmEvent(time="2026-03-04T10:15:00.000+00:00", frame=3, track_id=track, cls="no_mask", score=0.7,
                      duration_s=1.0, source_t=0.1)


def test_a_fifo_at_the_events_path_is_refused_and_reported_not_written(tmp_path, caplog):
    fifo = tmp_path / "events.jsonl"
    os.mkfifo(str(fifo))
    reader = os.open(str(fifo), os.O_RDONLY | os.O_NONBLOCK)  # a reader exists: a write would go into the pipe
    try:
        with caplog.at_level(logging.ERROR, logger="edge.events"):
            log = EventLog(fifo)

            def flood():
                for i in range(2000):  # far more than a pipe holds (64 KiB): the old code blocked here
                    log.write(ev(i))

            t = threading.Thread(target=flood, daemon=True)
            t.start()
            t.join(20)
            assert not t.is_alive(), "writing events blocked on the FIFO"
        assert not log.writable and "not a regular file: it is a FIFO" in log.file.error
        assert "not a regular file" in caplog.text
        try:
            assert os.read(reader, 65536) == b"", "nothing may be written into the pipe"
        except BlockingIOError:
            pass  # empty pipe with a writer-less FIFO: nothing was written
        log.close()
    finally:
        os.close(reader)


def test_a_file_replaced_by_a_fifo_mid_run_is_refused(tmp_path, caplog):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    assert log.write(ev(1))
    path.unlink()
    os.mkfifo(str(path))
    with caplog.at_level(logging.WARNING, logger="edge.events"):
        assert not log.write(ev(2))
    assert "replaced" in caplog.text and "it is a FIFO" in log.file.error
    assert log.file.pending == 1
    path.unlink()
    log.file.retry(now=time.monotonic() + 60)  # the file is back as a regular file: written
    assert log.writable and [r["track_id"] for r in read_jsonl(path)] == [2]
    log.close()


def test_a_device_at_the_counts_path_is_refused(tmp_path):
    counts = HourlyCounts("/dev/full")
    counts.add("mask", time.time())
    assert not counts.writable and "character device" in counts.file.error
    counts.flush()


class _StuckWrites:
    """``os`` as seen by edge.events, with ``write`` on one path's descriptors blocked until released: a
    disk (NFS, a dying SD card) whose write never returns."""

    def __init__(self, real, path):
        self._real, self._path, self.release = real, str(path), threading.Event()
        self.blocked = threading.Event()

    def __getattr__(self, name):
        return getattr(self._real, name)

    def write(self, fd, data):
        if os.readlink(f"/proc/self/fd/{fd}") == self._path:
            self.blocked.set()
            self.release.wait(60)
        return self._real.write(fd, data)


def test_the_writer_thread_never_lets_a_stuck_write_stall_the_caller(tmp_path, monkeypatch, caplog):
    path = tmp_path / "events.jsonl"
    stuck = _StuckWrites(os, path)
    monkeypatch.setattr(events_mod, "os", stuck)
    app = JsonlAppender(path, "events", background=True, close_timeout_s=1.0)
    t0 = time.monotonic()
    app.append({"n": 0})
    assert stuck.blocked.wait(10), "the writer thread must be writing"
    for i in range(1, 500):
        assert app.append({"n": i})  # handed over, not written
    took = time.monotonic() - t0
    assert took < 2.0, f"500 appends took {took:.2f} s while the disk was stuck"
    with caplog.at_level(logging.ERROR, logger="edge.events"):
        t0 = time.monotonic()
        app.close()
        assert time.monotonic() - t0 < 5.0, "close() must give up on a stuck writer (SIGTERM must work)"
    assert "still blocked" in caplog.text
    stuck.release.set()
    app._thread.join(10)
    assert [r["n"] for r in read_jsonl(path)] == list(range(500)), "released, every line reached the file"


def test_background_writer_writes_everything_in_order_and_survives_a_restart(tmp_path):
    path = tmp_path / "counts.jsonl"
    counts = HourlyCounts(path, background=True)
    for i in range(300):
        counts.add("no_mask" if i % 3 else "mask", time.time())
    counts.flush()
    assert len(read_jsonl(path)) == 300 and counts.writable
    counts.add("mask", time.time())  # after flush (close) the writer starts again
    counts.flush()
    assert len(read_jsonl(path)) == 301
