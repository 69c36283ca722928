"""The command line: help, errors for a missing model or source, the benchmark, python -m edge."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge_helpers import REPO, alsa_home, maskwatch_cmd, run_maskwatch, write_config


def test_help_lists_commands():
    r = subprocess.run(maskwatch_cmd() + ["--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for c in ("run", "check-config", "bench", "report"):
        assert c in r.stdout
    r = subprocess.run([sys.executable, "-m", "edge", "run", "--help"], cwd=str(REPO), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0
    for opt in ("--source", "--headless", "--fast", "--max-frames", "--events", "--save-video", "--config"):
        assert opt in r.stdout


def test_missing_model_is_a_clear_error(tmp_path, videos):
    r = run_maskwatch(["run", "-c", write_config(tmp_path / "c.yaml", tmp_path / "nope.onnx"), "--source",
                       videos["masked_woman"], "--headless", "--events", tmp_path / "e.jsonl"], home=tmp_path)
    # refused before the start by the check check-config runs (edge.validate): exit 2, key and line named
    assert r.returncode == 2 and "model.path (line 2)" in r.stderr and "nope.onnx" in r.stderr, r.stderr


def test_missing_video_file_is_a_clear_error(tmp_path, model_path):
    r = run_maskwatch(["run", "-c", write_config(tmp_path / "c.yaml", model_path), "--source",
                       tmp_path / "missing.mp4", "--headless", "--events", tmp_path / "e.jsonl"], home=tmp_path)
    assert r.returncode == 1 and "no such video file" in r.stderr


def test_invalid_config_on_run_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tracker:\n  min_hits: 0\n")
    r = run_maskwatch(["run", "-c", bad, "--headless"], home=tmp_path)
    assert r.returncode == 2 and "tracker.min_hits (line 2)" in r.stderr


def test_image_folder_run_and_snapshots_only_when_enabled(tmp_path, model_path, videos):
    import cv2
    frames = tmp_path / "frames"
    frames.mkdir()
    cap = cv2.VideoCapture(str(videos["masked_woman"]))
    for i in range(4):
        ok, img = cap.read()
        cv2.imwrite(str(frames / f"{i:02d}.jpg"), img)
    cap.release()
    state = tmp_path / "state"
    r = run_maskwatch(["run", "-c", write_config(tmp_path / "c.yaml", model_path), "--source", frames,
                       "--headless", "--fast", "--events", state / "events.jsonl"], home=alsa_home(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "stopped (source ended): 4 frames" in r.stderr
    written = sorted(p.relative_to(state).as_posix() for p in state.rglob("*"))
    assert set(written) <= {"events.jsonl", "counts.jsonl"} and "events.jsonl" in written, \
        f"no images written by default: {written}"


@pytest.mark.slow
def test_bench_json(tmp_path, model_path, videos):
    r = run_maskwatch(["bench", "--source", videos["unmasked"], "-c", write_config(tmp_path / "c.yaml", model_path),
                       "--max-frames", "40", "--json"], home=alsa_home(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    b = json.loads(r.stdout)
    assert b["frames"] == 40
    own = {"capture", "preprocess", "inference", "decode_cluster", "track_policy", "overlay"}
    # the default pipeline runs the mask_classifier cascade (issue 20): its stage is timed too
    assert b["classifier"] and b["classifier"].endswith("mask_classifier/model.onnx")
    assert set(b["stages"]) == own | {"classify"}
    for s in own:
        assert 0 < b["stages"][s]["ms_median"] <= b["stages"][s]["ms_p95"]
    assert 0 <= b["stages"]["classify"]["ms_median"] <= b["stages"]["classify"]["ms_p95"]
    assert 0 < b["fps_end_to_end"] < b["fps_capture_only"], "decoding alone is the ceiling"
    assert b["stages"]["inference"]["ms_median"] > b["stages"]["track_policy"]["ms_median"]
