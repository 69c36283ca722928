"""Camera faults found by a fault probe, on the real clips wrapped in sources that then misbehave: a camera
that opens but fails every read (back-off across cycles, bounded log), a read that never returns (detected,
reported in STATUS, recovered with a new capture thread, and the watchdog no longer fed when it does not
recover), and malformed frames (grey/BGRA converted; empty or wrongly shaped ones counted and skipped)."""
from __future__ import annotations

import logging
import socket
import threading
import time

import cv2
import numpy as np
import pytest

from edge.config import Config
from edge.pipeline import Pipeline, RunOptions, with_overrides
from edge.sources import Capture, OpenCVSource, normalise_frame
from edge.systemd import Notifier


class ClipCamera(OpenCVSource):
    """A shared clip read like a live camera (reopening it starts the clip again)."""

    def __init__(self, path):
        super().__init__(str(path), "file")
        self.live, self.fps = True, 25.0
        self.opens = 0

    def open(self):
        self.opens += 1
        super().open()


class OpensThenFails(ClipCamera):
    """Opens fine, then every read fails (a camera whose stream dies at once)."""

    def read(self):
        raise OSError("VIDIOC_DQBUF: Input/output error")


class HangingCamera(ClipCamera):
    """A hung driver: read ``hang_at`` of the first open blocks forever, and so does the first read after
    each reopen up to open ``hung_opens``; later opens work. ``release`` lets the blocked calls return
    (the test's clean-up)."""

    def __init__(self, path, hang_at=8, hung_opens=10 ** 9):
        super().__init__(path)
        self.hang_at, self.hung_opens = hang_at, hung_opens
        self.release = threading.Event()
        self.reads = 0

    def open(self):
        super().open()
        self.reads = 0

    def read(self):
        time.sleep(0.01)
        self.reads += 1
        if self.opens <= self.hung_opens and self.reads >= (self.hang_at if self.opens == 1 else 1):
            self.release.wait()
            return None
        return super().read()


class Listener:
    """A NOTIFY_SOCKET like systemd's: records (time.time(), message)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.msgs = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.msgs.append((time.time(), self.sock.recv(65536).decode()))
            except socket.timeout:
                pass

    def close(self):
        self._stop.set()
        self._t.join()
        self.sock.close()


def test_open_then_fail_backs_off_across_cycles_and_logs_a_bounded_number_of_lines(videos, caplog):
    cam = OpensThenFails(videos["masked_woman"])
    with caplog.at_level(logging.WARNING, logger="edge.sources"):
        cap = Capture(cam, reconnect_min_s=0.05, reconnect_max_s=0.4).start()
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            assert cap.read(timeout=0.2) is None
        cap.stop()
    # without back-off across cycles this reopened ~60,000 times a second
    assert 3 <= cam.opens <= 16, cam.opens
    lost = [r for r in caplog.records if "lost" in r.getMessage()]
    assert 1 <= len(lost) <= 2, [r.getMessage() for r in lost]


def _run_in_thread(pipe):
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("res", pipe.run()), daemon=True)
    t.start()
    return t, out


def _wait(cond, timeout=120.0):
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.05)
    return cond()


def _cfg(tmp_path, **camera):
    cfg = with_overrides(Config(), headless=True, events=str(tmp_path / "events.jsonl"))
    cfg.camera.ready_timeout_s = 0
    for k, v in camera.items():
        setattr(cfg.camera, k, v)
    return cfg


def test_hung_read_is_reported_and_recovered_with_a_new_capture_thread(tmp_path, backend, videos, caplog):
    cam = HangingCamera(videos["unmasked"], hang_at=8, hung_opens=6)  # hung for 6 capture threads in a row
    notify = Listener(tmp_path / "notify")
    pipe = Pipeline(_cfg(tmp_path, stall_timeout_s=0.5, reconnect_min_s=0.05),
                    RunOptions(max_frames=40, sound=False), backend=backend, source=cam,
                    notifier=Notifier(str(tmp_path / "notify")))
    try:
        with caplog.at_level(logging.INFO):
            t, out = _run_in_thread(pipe)
            t.join(300)
    finally:
        cam.release.set()
        notify.close()
    res = out["res"]
    assert res.frames == 40 and res.reason == "max frames", "frames came again after the hang"
    assert pipe.capture.hung_restarts >= 6 and cam.opens >= 7
    text = caplog.text
    assert "the read has not returned for" in text and "recovered after" in text
    status = [m for _, m in notify.msgs if m.startswith("STATUS=") and "fps" in m]
    assert any("camera stalled" in m and "read blocked" in m for m in status), status


def test_camera_that_stays_hung_stops_feeding_the_watchdog(tmp_path, backend, videos, caplog, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # ping at most every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    cam = HangingCamera(videos["unmasked"], hang_at=8)  # every capture thread hangs
    notify = Listener(tmp_path / "notify")
    pipe = Pipeline(_cfg(tmp_path, stall_timeout_s=0.3, stall_give_up_s=1.0, reconnect_min_s=0.05),
                    RunOptions(sound=False), backend=backend, source=cam, notifier=Notifier(str(tmp_path / "notify")))
    try:
        with caplog.at_level(logging.INFO):
            t, out = _run_in_thread(pipe)
            assert _wait(lambda: "no longer feeding the systemd watchdog" in caplog.text), caplog.text[-3000:]
            given_up = [r.created for r in caplog.records if "no longer feeding" in r.getMessage()][0]
            assert _wait(lambda: any(ts > given_up + 2.5 for ts, _ in notify.msgs), 30)  # ~20 ping intervals
            pipe.stop("test done")
            t.join(60)
    finally:
        cam.release.set()
        notify.close()
    assert out["res"].reason == "test done", "the frame loop itself kept running"
    pings = [ts for ts, m in notify.msgs if m == "WATCHDOG=1"]
    assert pings and min(pings) < given_up, "the watchdog was fed before"
    assert [ts for ts in pings if ts > given_up + 0.5] == [], "and not after giving up"
    assert pipe.capture.hung_restarts >= 2
    assert any("watchdog no longer fed" in m for _, m in notify.msgs if m.startswith("STATUS="))


class MalformedFrames(OpenCVSource):
    """The first ``n`` frames of a clip, every third replaced by a malformed variant of itself."""

    def __init__(self, path, n=36):
        super().__init__(str(path), "file")
        self.n, self.i = n, 0

    def read(self):
        if self.i >= self.n:
            return None
        img = super().read()
        k, self.i = self.i, self.i + 1
        if k % 3:
            return img
        variants = [cv2.cvtColor(img, cv2.COLOR_BGR2GRAY),                 # converted
                    cv2.cvtColor(img, cv2.COLOR_BGR2BGRA),                 # converted
                    np.zeros((0, 0, 3), np.uint8),                          # skipped
                    img[:, :, :2].copy(),                                   # skipped
                    img.reshape(-1).copy(),                                 # skipped
                    img.astype(np.float32),                                 # skipped
                    cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[:, :, None].copy()]  # converted
        return variants[(k // 3) % len(variants)]


def test_malformed_frames_are_converted_or_skipped_never_fatal(tmp_path, backend, videos, caplog):
    src = MalformedFrames(videos["unmasked"])
    cfg = with_overrides(Config(), headless=True, fast=True, events=str(tmp_path / "events.jsonl"))
    pipe = Pipeline(cfg, RunOptions(sound=False), backend=backend, source=src)
    with caplog.at_level(logging.INFO, logger="edge.sources"):
        res = pipe.run()
    # 36 reads, 12 of them variants 0-6, 0-4: 5 converted (grey, BGRA, grey 1-channel), 7 skipped
    assert res.reason == "source ended" and res.frames == 29
    assert pipe.capture.bad_frames == 7 and pipe.capture.converted_frames == 5
    assert len([r for r in caplog.records if "malformed frame" in r.getMessage()]) == 1, "rate-limited"


@pytest.mark.parametrize("shape, ok", [((4, 5), True), ((4, 5, 1), True), ((4, 5, 4), True), ((4, 5, 3), True),
                                       ((0, 5, 3), False), ((4, 5, 2), False), ((60,), False), ((1, 1, 3), False)])
def test_normalise_frame_shapes(shape, ok):
    out, why = normalise_frame(np.full(shape, 7, np.uint8))
    assert (out is not None) == ok, why
    if ok:
        assert out.shape == shape[:2] + (3,) and out.dtype == np.uint8 and int(out[0, 0, 0]) == 7
