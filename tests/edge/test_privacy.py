"""No phoning home: onnxruntime >= 1.29 sends telemetry (DNS for a Microsoft host a few seconds after an
InferenceSession is created) and writes ~/.cache/Microsoft/DeveloperTools/ unless ORT_DISABLE_TELEMETRY=1
is set before it is imported. A real ``maskwatch run`` on frames of a shared clip runs under
``strace -f -e trace=socket`` (native sockets too, not only Python's) with HOME in a temporary folder."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import cv2
import pytest

from edge_helpers import REPO, maskwatch_cmd, run_env, video_frames

NETWORK_FAMILIES = re.compile(r"socket\((AF_INET|AF_INET6|AF_NETLINK|PF_INET|PF_INET6|PF_NETLINK)\b")


def _frames_folder(src, folder, step=1):
    folder.mkdir()
    n = 0
    for i, img in video_frames(src, step):
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), img)
        n += 1
    return n


def test_maskwatch_run_opens_no_network_socket_and_writes_nothing_under_home(tmp_path, videos):
    strace = shutil.which("strace")
    if strace is None:
        pytest.fail("strace is missing: apt-get install strace (.ci/run installs it)")
    # the unmasked clip's frames paced at 10 fps: a 21 s run, well past the ~5-10 s after which
    # onnxruntime's telemetry sends its first DNS query
    n = _frames_folder(videos["unmasked"], tmp_path / "frames")
    assert n == 206
    cfg = tmp_path / "c.yaml"
    cfg.write_text("camera:\n  fps: 10\n", encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()
    env = run_env(home)
    env.pop("ORT_DISABLE_TELEMETRY", None)  # the program must set it itself
    trace = tmp_path / "strace.txt"
    r = subprocess.run([strace, "-f", "-qq", "-e", "trace=socket", "-e", "signal=none", "-o", str(trace)]
                       + maskwatch_cmd() + ["run", "-c", str(cfg), "--source", str(tmp_path / "frames"),
                                            "--headless", "--events", str(tmp_path / "events.jsonl")],
                       cwd=str(REPO), env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    # every frame read: processed, or dropped by the latest-frame capture when a loaded machine falls behind 10 fps
    done = re.search(r"stopped \(source ended\): (\d+) frames, [\d.]+ fps, (\d+) dropped", r.stderr)
    assert done and int(done.group(1)) + int(done.group(2)) == 206, r.stderr[-2000:]
    calls = [line for line in trace.read_text().splitlines() if "socket(" in line]
    network = [line for line in calls if NETWORK_FAMILIES.search(line)]
    assert network == [], network
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert not (home / ".cache").exists(), written


@pytest.mark.parametrize("module", ["edge.cli", "edge.bench", "edge.doctor", "models.evaluation.predict",
                                    "models.evaluation.evaluate", "models.evaluation.benchmark", "models.export"])
def test_every_entry_point_sets_ort_disable_telemetry_before_onnxruntime(module, tmp_path):
    env = run_env(tmp_path)
    env.pop("ORT_DISABLE_TELEMETRY", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    code = (f"import {module}, os, sys; "
            "seen = os.environ.get('ORT_DISABLE_TELEMETRY'); import onnxruntime; print(seen)")
    r = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), env=env, capture_output=True, text=True,
                       timeout=300)
    missing = re.search(r"No module named '(torch|onnx)'", r.stderr)
    if r.returncode != 0 and module.startswith("models.") and missing:  # the Python 3.8 stage (.ci/py38)
        pytest.skip(f"{module} needs the training package {missing.group(1)!r}, not installed here")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "1"


def test_the_service_unit_sets_it_too():
    unit = (REPO / "systemd" / "maskwatch.service").read_text()
    assert re.search(r"^Environment=ORT_DISABLE_TELEMETRY=1$", unit, re.M)
