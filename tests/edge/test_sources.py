"""Sources and the capture thread on the real videos: every-frame and latest-frame modes, image
folders, and a camera that fails mid-stream or ends and comes back (reopened with back-off)."""
from __future__ import annotations

import time

import cv2
import pytest

from edge.sources import Capture, ImageFolderSource, OpenCVSource, SourceError, gstreamer_available, make_source


def drain(cap, limit_s=60.0, delay=0.0):
    frames = []
    end = time.monotonic() + limit_s
    while not cap.done and time.monotonic() < end:
        f = cap.read(timeout=0.5)
        if f is not None:
            frames.append(f)
            if delay:
                time.sleep(delay)
    return frames


def test_make_source_kinds(tmp_path, videos):
    assert make_source("0").kind == "camera" and make_source("/dev/video2").kind == "camera"
    assert make_source("v4l2src ! videoconvert ! appsink").kind == "gstreamer"
    assert make_source(str(videos["unmasked"])).kind == "file"
    assert isinstance(make_source(str(tmp_path)), ImageFolderSource)


def test_file_every_frame_mode_loses_nothing(videos):
    cap = Capture(make_source(str(videos["unmasked"])), latest_only=False).start()
    frames = drain(cap, delay=0.002)
    cap.stop()
    assert len(frames) == 206 and cap.dropped == 0
    assert [f.index for f in frames] == list(range(206))
    assert frames[25].t == pytest.approx(1.0)  # media time: index / 25 fps
    assert frames[0].image.shape == (720, 1280, 3)


def test_latest_frame_mode_drops_and_counts_when_the_consumer_is_slow(videos):
    cap = Capture(make_source(str(videos["masked_woman"])), latest_only=True).start()
    frames = drain(cap, delay=0.05)  # a consumer far slower than decoding
    cap.stop()
    assert cap.frames == 244
    assert cap.dropped > 0 and len(frames) + cap.dropped == 244
    idx = [f.index for f in frames]
    assert idx == sorted(idx) and idx[-1] == 243  # always the newest frame, never a stale queue


def test_paced_file_runs_at_its_own_rate(videos):
    cap = Capture(make_source(str(videos["masked_woman"])), latest_only=True, pace=True).start()
    t0 = time.monotonic()
    frames = []
    while time.monotonic() - t0 < 1.0:
        f = cap.read(timeout=0.2)
        if f is not None:
            frames.append(f)
    cap.stop()
    # 25 fps: about 25 frames in 1 s, not hundreds
    assert 15 <= frames[-1].index <= 35


def test_image_folder(tmp_path, videos):
    c = cv2.VideoCapture(str(videos["masked_woman"]))
    for i in range(3):
        ok, img = c.read()
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), img)
    c.release()
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "999.jpg").write_bytes(b"broken")
    src = make_source(str(tmp_path), fps=10)
    cap = Capture(src, latest_only=False).start()
    frames = drain(cap)
    cap.stop()
    assert len(frames) == 3 and frames[2].t == pytest.approx(0.2)
    assert frames[0].image.shape == (404, 720, 3)


def test_empty_folder_and_missing_file_are_errors(tmp_path):
    with pytest.raises(SourceError, match="no images"):
        ImageFolderSource(str(tmp_path)).open()
    with pytest.raises(SourceError, match="no such video file"):
        make_source(str(tmp_path / "missing.mp4")).open()


def test_gstreamer_without_support_says_why():
    src = make_source("videotestsrc ! videoconvert ! appsink")
    if gstreamer_available():
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(SourceError, match="no GStreamer support"):
        src.open()


class FlakyCamera(OpenCVSource):
    """A live source on the real video that fails once mid-stream: ``mode='raise'`` raises an OSError
    (a USB camera unplugged), ``mode='end'`` stops delivering frames (cable glitch), then it comes back."""

    def __init__(self, path, mode, fail_at=10, down_for=2):
        super().__init__(str(path), "file")
        self.live, self.fps = True, 25.0
        self.mode, self.fail_at, self.down_for = mode, fail_at, down_for
        self.opens = self.failed_opens = 0
        self.reads = 0
        self.broken = False

    def open(self):
        if self.broken and self.failed_opens < self.down_for:
            self.failed_opens += 1
            raise SourceError("camera not found")
        self.broken = False
        self.opens += 1
        super().open()

    def read(self):
        time.sleep(0.01)  # a camera delivers at its own rate
        self.reads += 1
        if self.opens == 1 and self.reads == self.fail_at:
            self.broken = True
            if self.mode == "raise":
                raise OSError("VIDIOC_DQBUF: No such device")
            return None
        return super().read()


@pytest.mark.parametrize("mode", ["raise", "end"])
def test_failing_camera_is_reopened_with_backoff(videos, mode, caplog):
    cam = FlakyCamera(videos["masked_woman"], mode)
    cap = Capture(cam, latest_only=False, reconnect_min_s=0.05, reconnect_max_s=0.2).start()
    frames = []
    end = time.monotonic() + 30
    while len(frames) < 30 and time.monotonic() < end:
        f = cap.read(timeout=0.5)
        if f is not None:
            frames.append(f)
    cap.stop()
    assert len(frames) == 30, "frames kept coming after the failure"
    assert cap.reconnects == 1 and cam.opens == 2 and cam.failed_opens == 2
    assert not cap.ended
    assert any("lost" in r.message for r in caplog.records)


def test_missing_camera_keeps_retrying_and_never_ends():
    cap = Capture(make_source("/dev/video97"), reconnect_min_s=0.05, reconnect_max_s=0.1).start()
    time.sleep(0.6)
    assert cap.read(timeout=0.1) is None
    assert not cap.ended and not cap.done and cap.open_attempts >= 3
    assert "no camera at /dev/video97" in cap.error
    cap.stop()


def test_pipeline_survives_a_camera_failing_mid_stream(tmp_path, backend, videos):
    from edge.config import Config
    from edge.pipeline import Pipeline, RunOptions, with_overrides
    cfg = with_overrides(Config(), headless=True, events=str(tmp_path / "events.jsonl"))
    cfg.camera.reconnect_min_s = 0.05
    cam = FlakyCamera(videos["masked_woman"], "raise", fail_at=5)
    res = Pipeline(cfg, RunOptions(max_frames=12, sound=False), backend=backend, source=cam).run()
    assert res.frames == 12 and res.reason == "max frames"
    assert res.reconnects >= 1 and cam.opens >= 2
