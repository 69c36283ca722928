"""The live-pace benchmark (``maskwatch bench --live``) and the per-frame work it measures, on real data.

No timing is asserted: the figures belong to the benchmark's output (docs/runtime.md, "Live pace").
What is checked is the arithmetic (CPU fraction within 0..cores, frames delivered at the requested
pace, threads named) and that the leaner per-frame code computes exactly what it replaced.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge import procstat
from edge.bench import PacedFile, live_figures, run_live
from edge.overlay import Overlay
from edge.preprocess import letterbox, letterbox_tensor, to_tensor
from edge.types import Detections

ROOT = Path(__file__).resolve().parents[2]


def _frames(videos, n=3):
    cap = cv2.VideoCapture(str(videos["unmasked"]))
    out = []
    while len(out) < n:
        ok, img = cap.read()
        assert ok
        out.append(img)
    cap.release()
    return out


@pytest.mark.parametrize("size", [(640, 352), (512, 288), (640, 368), (300, 300), (1280, 720), (2000, 1200)])
@pytest.mark.parametrize("norm", [("RGB", (0.0, 0.0, 0.0), (255.0, 255.0, 255.0)),
                                  ("BGR", (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))])
def test_letterbox_tensor_is_letterbox_then_to_tensor_bit_for_bit(videos, size, norm):
    color, mean, std = norm
    for img in _frames(videos, 2) + [_frames(videos, 1)[0][100:400, 200:500]]:
        lb_img, lb = letterbox(img, size)
        ref = to_tensor(lb_img, color, mean, std)
        out, lb2 = letterbox_tensor(img, size, color=color, mean=mean, std=std)
        assert lb2 == lb and out.dtype == np.float32 and out.shape == (1, 3, size[1], size[0])
        assert np.array_equal(out, ref)
        # and the plain formula of the whole-image float conversion
        rgb = lb_img[:, :, ::-1] if color == "RGB" else lb_img
        plain = ((rgb.astype(np.float32) - np.float32(mean)) * (np.float32(1) / np.float32(std))).transpose(2, 0, 1)
        np.testing.assert_allclose(out[0], plain, rtol=0, atol=1e-6)
    stretch, _ = letterbox_tensor(img, (320, 320), mode="stretch")
    assert np.array_equal(stretch, to_tensor(letterbox(img, (320, 320), mode="stretch")[0]))


def test_overlay_in_place_draws_the_same_picture(videos):
    img = _frames(videos, 1)[0]
    dets = Detections(np.array([[500, 100, 700, 350]], np.float32), np.array([0.9], np.float32), np.array([1]))
    ov = Overlay(["mask", "no_mask", "mask_incorrect"], [(0.1, 0.1), (0.9, 0.1), (0.9, 0.9)])
    copied = ov.draw(img, dets, 25.0, alarm=True)
    frame = img.copy()
    drawn = ov.draw(frame, dets, 25.0, alarm=True, copy=False)
    assert drawn is frame and np.array_equal(drawn, copied) and not np.array_equal(copied, img)


def test_procstat_reads_this_process():
    # The burner runs until the main thread has read /proc and has itself burned >= 0.1 s of CPU, so a
    # loaded machine (CI: 2 shared cores) that delays either thread cannot end it before it is read.
    stop = threading.Event()

    def burn():
        procstat.set_native_name("test-burner")
        t0 = time.thread_time()
        while not stop.is_set() or time.thread_time() - t0 < 0.1:
            pass

    t = threading.Thread(target=burn, name="test-burner")
    cpu0 = procstat.process_cpu_s()
    t.start()
    time.sleep(0.1)
    try:
        tasks = procstat.thread_cpu_s()
    finally:
        stop.set()
        t.join()
    if sys.platform.startswith("linux"):
        assert os.getpid() in tasks and t.native_id in tasks
        assert tasks[t.native_id][0] == "test-burner"  # the kernel name, as top -H shows it
        now, peak = procstat.rss_mib()
        assert 10 < now <= peak * 1.05 + 1
    assert procstat.process_cpu_s() - cpu0 > 0.05


def test_live_figures_arithmetic():
    # two threads over 2 s of wall: 1.0 s and 0.5 s of CPU -> 0.75 cores, 30 frames delivered in 2 s
    s = [{"t": 0.0, "cpu": 5.0, "tasks": {1: ("python3", 3.0), 2: ("capture", 0.0)}, "rss": 100.0, "frames": 0,
          "captured": 0},
         {"t": 1.0, "cpu": 6.0, "tasks": {1: ("python3", 3.5), 2: ("capture", 0.2)}, "rss": 110.0, "frames": 5,
          "captured": 10},
         {"t": 2.0, "cpu": 6.9, "tasks": {1: ("python3", 4.0), 2: ("capture", 0.5), 3: ("av:h264:df0", 0.2)},
          "rss": 120.0, "frames": 20, "captured": 25},
         {"t": 3.0, "cpu": 7.5, "tasks": {1: ("python3", 4.5)}, "rss": 121.0, "frames": 35, "captured": 40},
         {"t": 4.0, "cpu": 7.6, "tasks": {1: ("python3", 4.6)}, "rss": 90.0, "frames": 35, "captured": 40}]
    f = live_figures(s, {1: "main", 2: "capture"}, 2, target_fps=20.0)
    assert f["window_s"] == 2.0 and f["cpu_s"] == 1.5 and f["cpu_cores"] == 0.75 and f["cpu_ms_per_frame"] == 50.0
    assert f["fps_captured"] == 15.0 and f["fps_processed"] == 15.0 and f["frames_in_window"] == 30
    by = {r["name"]: r for r in f["threads"]}
    assert by["main"]["cpu_s"] == 1.0 and by["capture"]["cpu_s"] == 0.3  # ended thread: its last sample
    assert by["video decode (av:h264:df0)"]["cpu_s"] == 0.2  # born in the window: counted from 0
    # capture + decode 0.5 s, frame loop 1.0 s, nothing else; at 20 fps without drops: 0.25 * 20/15 + 0.5 * 20/15
    assert (f["cpu_cores_capture"], f["cpu_cores_frame_loop"], f["cpu_cores_other"]) == (0.25, 0.5, 0.0)
    assert f["cpu_cores_no_drop_estimate"] == 1.0
    assert f["rss_mib_steady"] == 120.5  # the median of the second half of the window (120, 121)
    with pytest.raises(ValueError):
        live_figures(s[:1], {}, 2)


def test_paced_file_loops_and_stops(videos):
    src = PacedFile(str(videos["unmasked"]), fps=30.0, max_frames=230)
    src.open()
    assert src.fps == 30.0 and src.timestamp(30) == 1.0
    n = 0
    while src.read() is not None:
        n += 1
    src.close()
    assert n == 230  # the 206-frame clip, looped once


def test_live_bench_on_a_real_clip(videos):
    """2 s of the 720p clip at 10 fps: every figure in range, frames delivered at the source rate."""
    r = run_live(str(videos["unmasked"]), fps=10.0, seconds=2.0)
    cores = os.cpu_count()
    assert r["mode"] == "live" and r["fps_target"] == 10.0 and r["captured"] == 20
    assert 0 < r["cpu_cores"] <= cores * 1.05  # sampled CPU ticks: at most one tick of slack per thread
    assert abs(r["fps_captured"] - 10.0) <= 1.5  # paced at the source rate, not as fast as it decodes
    assert r["frames"] + r["dropped"] <= r["captured"] and r["frames"] >= 1
    names = [t["name"] for t in r["threads"]]
    if sys.platform.startswith("linux"):
        assert "main" in names and "capture" in names
        assert abs(sum(t["cores"] for t in r["threads"]) - r["cpu_cores"]) <= 0.15
    assert r["cpu_cores_no_drop_estimate"] >= r["cpu_cores"] * 0.95  # scaling up to no drops never lowers it
    assert 0 < r["rss_mib_steady"] <= r["rss_mib_peak"] * 1.05
    assert {"preprocess", "inference", "decode_cluster", "track_policy", "overlay"} <= set(r["stages"])


def test_bench_live_cli_json(videos, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    src = str(videos["unmasked"])
    r = subprocess.run([sys.executable, "-m", "edge", "bench", "--live", "--fps", "12", "--seconds", "1.5", "--json",
                        "--source", src], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["fps_target"] == 12.0 and out["captured"] == 18 and 0 < out["cpu_cores"] <= os.cpu_count() * 1.05
    bad = subprocess.run([sys.executable, "-m", "edge", "bench", "--live", "--fps", "fast", "--source", src],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert bad.returncode == 2 and "--fps" in bad.stderr
