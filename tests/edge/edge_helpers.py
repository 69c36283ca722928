"""Helpers for the edge tests (plain functions; fixtures are in conftest.py)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def write_config(path: Path, model: Path, extra: str = "") -> Path:
    """A config file using ``model`` plus extra YAML (top-level sections)."""
    path.write_text(f"model:\n  path: {model}\n{extra}", encoding="utf-8")
    return path


def alsa_home(tmp_path: Path, pcm: str = "{ type null }") -> Path:
    """A HOME whose .asoundrc makes the ALSA default device ``pcm`` (null: plays without hardware)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / ".asoundrc").write_text(f"pcm.!default {pcm}\n", encoding="utf-8")
    return home


def maskwatch_cmd() -> list:
    """The console script when installed, else ``python -m edge``."""
    exe = shutil.which("maskwatch")
    return [exe] if exe else [sys.executable, "-m", "edge"]


def run_env(home: Path, **extra: str) -> dict:
    env = dict(os.environ)
    for k in ("DISPLAY", "WAYLAND_DISPLAY", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM",
              "SDL_VIDEODRIVER"):
        env.pop(k, None)
    env.update(HOME=str(home), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_maskwatch(args: list, home: Path, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(maskwatch_cmd() + [str(a) for a in args], cwd=str(REPO), env=run_env(home, **env),
                          capture_output=True, text=True, timeout=timeout)


class LogReader(threading.Thread):
    """Collects a child process's text stream in the background so a test can wait for a log line."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.text = stream, ""

    def run(self):
        for line in self.stream:
            self.text += line

    def wait_for(self, needle: str, timeout: float = 120) -> bool:
        """True once ``needle`` has appeared, False after ``timeout`` s without it."""
        end = time.monotonic() + timeout
        while needle not in self.text and time.monotonic() < end:
            time.sleep(0.05)
        return needle in self.text

    def expect(self, needle: str, timeout: float = 120) -> None:
        """Assert that ``needle`` appears within ``timeout`` s, showing the log tail if not."""
        assert self.wait_for(needle, timeout), f"{needle!r} not in log:\n{self.text[-3000:]}"


def sigterm(proc: subprocess.Popen, log: LogReader, timeout: float = 60) -> int:
    """Send SIGTERM as systemd does on stop, wait for the exit and the last log lines; returns the exit code."""
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout)
    log.join(5)
    return rc


#: a daemon config for the reload tests: a camera that never opens, so the loop runs without frames
DAEMON_BASE = """camera:
  source: /dev/video98
  ready_timeout_s: 0
  reconnect_min_s: 0.2
  reconnect_max_s: 0.5
alarm:
  cooldown_s: 10
"""


def notify_receiver(path: Path, timeout: float = 0.2) -> socket.socket:
    """A Unix datagram socket bound at ``path``: a real sd_notify receiver (what systemd listens on)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(timeout)
    return s


def drain(sock: socket.socket) -> list:
    """Every datagram waiting on ``sock`` (until it times out), decoded."""
    msgs = []
    while True:
        try:
            msgs.append(sock.recv(4096).decode())
        except socket.timeout:
            return msgs


def video_frames(path: Path, every: int = 1):
    """Yield ``(index, (H, W, 3) uint8 BGR frame)`` for every ``every``-th frame of the video at ``path``."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    i = 0
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                return
            if i % every == 0:
                yield i, img
            i += 1
    finally:
        cap.release()
