"""The annotated video writer and a camera that never delivers (issue 19): a full disk is reported once and
shown in STATUS instead of OpenCV's unthrottled 'Failed to write frame'; writing resumes into a new file
when space returns; a resolution change mid-stream is scaled, not lost; a camera that opens but never
delivers a frame is not logged as 'is back' and its STATUS names the error."""
from __future__ import annotations

import logging
import subprocess
import time

import cv2
import numpy as np
import pytest

from edge.config import Config
from edge.display import VideoSink
from edge.pipeline import Pipeline, RunOptions, with_overrides
from edge.sources import Capture, OpenCVSource
from edge.systemd import Notifier


def _mount_tmpfs(path, opts):
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); needs root or CAP_SYS_ADMIN")


def _frames(videos, n, size=None):
    cap = cv2.VideoCapture(str(videos["unmasked"]))
    out = []
    while len(out) < n:
        ok, img = cap.read()
        if not ok:
            break
        out.append(cv2.resize(img, size) if size else img)
    cap.release()
    return out


def test_full_disk_is_reported_once_shown_in_status_and_writing_resumes(tmp_path, videos, caplog):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "size=4m,mode=0777")
    try:
        frames = _frames(videos, 40)
        filler = disk / "filler"
        filler.write_bytes(b"x" * (2 * 1024 * 1024 + 512 * 1024))  # 1.5 MiB left: a few MJPG frames fit
        sink = VideoSink(str(disk / "out.avi"), 25.0, retry_s=0.5, log_every_s=60.0)
        with caplog.at_level(logging.INFO, logger="edge.display"):
            written = [sink.write(f) for f in frames]
            assert any(written) and not all(written)
            assert "no space left on device" in sink.status()
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1, [r.getMessage() for r in errors]  # once, not once per frame
            t0 = time.monotonic()
            assert not any(sink.write(f) for f in frames)  # inside retry_s: nothing is tried
            assert time.monotonic() - t0 < 2.0
            filler.unlink()  # space is back
            time.sleep(0.6)
            assert all(sink.write(f) for f in frames[:10])
        sink.close()
        assert sink.status() == "" and "writing the annotated video again" in caplog.text
        assert sink.files == [str(disk / "out.avi"), str(disk / "out-2.avi")]
        cap = cv2.VideoCapture(str(disk / "out-2.avi"))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
        cap.release()
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_resolution_change_mid_stream_is_scaled_not_lost(tmp_path, videos, caplog):
    small, big = _frames(videos, 10, (640, 360)), _frames(videos, 10, (1280, 960))
    sink = VideoSink(str(tmp_path / "out.mp4"), 25.0)
    with caplog.at_level(logging.WARNING, logger="edge.display"):
        assert all(sink.write(f) for f in small + big + small + big)
    sink.close()
    assert caplog.text.count("scaled to fit") == 1
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    n, shapes = 0, set()
    while True:
        ok, img = cap.read()
        if not ok:
            break
        n += 1
        shapes.add(img.shape)
    cap.release()
    assert n == 40 and shapes == {(360, 640, 3)}


def test_an_unwritable_video_never_raises_into_the_frame_loop(tmp_path, videos):
    sink = VideoSink(str(tmp_path / "gone" / "out.avi"), 25.0, retry_s=60)
    frame = _frames(videos, 1)[0]
    assert sink.write(frame) is False and sink.write(frame) is False
    assert "video not written" in sink.status()


class NeverDelivers(OpenCVSource):
    """A camera that opens fine and then never gives a frame (read returns nothing), until ``deliver_at``
    opens have happened (then it plays the clip)."""

    def __init__(self, path, deliver_at=10 ** 9):
        super().__init__(str(path), "file")
        self.live, self.fps = True, 25.0
        self.opens, self.deliver_at = 0, deliver_at

    def open(self):
        self.opens += 1
        super().open()

    def read(self):
        return super().read() if self.opens >= self.deliver_at else None


def test_a_camera_that_opens_but_never_delivers_is_not_back(videos, caplog):
    cam = NeverDelivers(videos["masked_woman"], deliver_at=5)
    with caplog.at_level(logging.INFO, logger="edge.sources"):
        cap = Capture(cam, reconnect_min_s=0.05, reconnect_max_s=0.1).start()
        end = time.monotonic() + 20
        while cam.opens < 4 and time.monotonic() < end:
            time.sleep(0.02)
        assert cam.opens >= 3
        assert "is back" not in caplog.text, "reopened but no frame: not back"
        assert cap.error and "no frame" in cap.error
        got = None
        while got is None and time.monotonic() < end:
            got = cap.read(timeout=0.2)
        cap.stop()
    assert got is not None and caplog.text.count("is back") == 1, caplog.text
    assert cap.error is None


def test_status_names_the_camera_error_not_none(tmp_path, backend, videos):
    from test_camera_faults import Listener  # a real NOTIFY_SOCKET receiver
    cfg = with_overrides(Config(), headless=True, events=str(tmp_path / "events.jsonl"))
    cfg.camera.ready_timeout_s = 0
    cfg.camera.reconnect_min_s, cfg.camera.reconnect_max_s = 0.05, 0.1
    listener = Listener(tmp_path / "notify")
    pipe = Pipeline(cfg, RunOptions(sound=False), backend=backend, source=NeverDelivers(videos["masked_woman"]),
                    notifier=Notifier(str(tmp_path / "notify")))
    import threading
    t = threading.Thread(target=pipe.run, daemon=True)
    t.start()
    end = time.monotonic() + 60
    while not any("camera lost" in m and "no frame" in m for _, m in listener.msgs) and time.monotonic() < end:
        time.sleep(0.1)
    pipe.stop("test")
    t.join(30)
    listener.close()
    status = [m for _, m in listener.msgs if "camera lost" in m or "waiting for camera" in m]
    assert status and all("None" not in m for m in status), listener.msgs
    assert any("no frame" in m for m in status), status
