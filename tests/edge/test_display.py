"""The monitor under a real X server (Xvfb): a fullscreen window opens and shows the annotated
video; the X root window is grabbed and must not be blank. Without a display the run falls back
to headless and says so."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import numpy as np
import pytest

from edge_helpers import LogReader, sigterm, REPO, alsa_home, maskwatch_cmd, run_env, run_maskwatch, write_config

W, H = 1024, 768


@pytest.fixture
def xvfb():
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed (apt xvfb)")
    r, w = os.pipe()
    proc = subprocess.Popen([exe, "-displayfd", str(w), "-screen", "0", f"{W}x{H}x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stderr=subprocess.DEVNULL)
    os.close(w)
    num = b""
    with os.fdopen(r, "rb") as f:
        num = f.readline().strip()
    assert num, "Xvfb did not report its display number"
    yield f":{num.decode()}"
    proc.terminate()
    proc.wait(10)


def grab(display):
    from PIL import ImageGrab  # reads the X root window over XCB
    return np.asarray(ImageGrab.grab(xdisplay=display).convert("RGB"))


def test_fullscreen_window_under_xvfb_shows_the_video(tmp_path, xvfb, model_path, videos):
    before = grab(xvfb)
    assert before.shape == (H, W, 3) and before.std() < 1, "the fresh X screen is blank"
    cfg = write_config(tmp_path / "c.yaml", model_path)
    proc = subprocess.Popen(maskwatch_cmd() + ["run", "-c", str(cfg), "--source", str(videos["masked_woman"]),
                                               "--events", str(tmp_path / "ev.jsonl")],
                            cwd=str(REPO), env=run_env(alsa_home(tmp_path), DISPLAY=xvfb),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    log = LogReader(proc.stderr)
    log.start()
    try:
        assert log.wait_for("display open", 240), log.text[-3000:]
        assert f"display open: {W}x{H} fullscreen" in log.text
        time.sleep(3.0)  # a few frames (the video is paced at 25 fps; inference is slower, frames drop)
        shot = grab(xvfb)
    finally:
        rc = sigterm(proc, log)
    assert rc == 0, log.text[-3000:]
    assert "stopped (SIGTERM)" in log.text
    assert shot.shape == (H, W, 3)
    # not blank: the video fills the width; 720x404 letterboxed to 1024x574 leaves black bars
    assert shot.std() > 20 and len(np.unique(shot.reshape(-1, 3), axis=0)) > 1000
    bar = (H - round(404 * W / 720)) // 2
    assert shot[: bar - 2].max() == 0 and shot[H - bar + 2:].max() == 0, "letterbox bars are black"
    mid = shot[bar + 5: H - bar - 5]
    assert (mid.reshape(-1, 3).max(axis=1) > 0).mean() > 0.95, "the picture fills the middle"


def test_no_display_falls_back_to_headless(tmp_path, model_path, videos):
    r = run_maskwatch(["run", "-c", write_config(tmp_path / "c.yaml", model_path), "--source", videos["masked_woman"],
                       "--fast", "--max-frames", "3", "--events", tmp_path / "ev.jsonl"], home=alsa_home(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "no display" in r.stderr and "running headless" in r.stderr
