"""End to end on the shared videos, as fast as possible and headless, with the event log checked.

* unmasked-man-outdoor-720p.mp4: exactly one alarm, for one track; the alarm sound plays once (ALSA
  null device); the annotated video shows a box on his face;
* masked-woman-laptop.mp4 (in process, under the network guard; and with the YOLO-style student) and
  masked-man-shop-1080p.mp4: no alarm;
* a missing sound device does not stop the pipeline.

The policy runs on the built-in defaults (edge/config.py = edge/config.example.yaml): what the
appliance ships with is what is tested.
"""
from __future__ import annotations

import json
import re
import socket

import cv2
import numpy as np
import pytest

from edge.config import Config, released_models
from edge.events import read_jsonl
from edge.pipeline import Pipeline, RunOptions, with_overrides
from edge.systemd import Notifier
from edge_helpers import alsa_home, run_maskwatch, write_config

pytestmark = pytest.mark.slow
RED_BGR = (40, 40, 230)  # the overlay's no_mask colour

#: Known model errors, recorded as strict xfails per (test, released model) so a fix shows up as XPASS.
KNOWN_FAILURES = {
    ("masked_man_no_alarm", "detectnet_v2_r18"): "model detectnet_v2_r18 1.1.0: shelves at both sides of the shop "
    "(e.g. [1580, 78, 1808, 394] px, frame 60) are detected as no_mask at 0.85-0.92 in most frames; see "
    "models/released/detectnet_v2_r18/MODEL_CARD.md 'Known failures'",
    ("masked_man_no_alarm", "detectnet_v2_r18_pruned"): "model detectnet_v2_r18_pruned 1.0.0: an object at the left "
    "edge ([62, 126, 250, 339] px, frame 15) is tracked as no_mask at score ~0.96 for 0.5 s; see "
    "models/released/detectnet_v2_r18_pruned/MODEL_CARD.md",
}


@pytest.fixture(params=released_models())
def released_model(request):
    """Every released model in turn (``model.path`` by name), with its known failures marked."""
    test = request.node.originalname.replace("test_", "").replace("_each_model", "")
    reason = KNOWN_FAILURES.get((test, request.param))
    if reason:
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))
    return request.param


def frame_at(path, index):
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, img = cap.read()
    cap.release()
    assert ok, f"cannot read frame {index} of {path}"
    return img


def near(img, color, tol=70):
    return (np.abs(img.astype(int) - np.asarray(color)[None, None, :]).max(axis=2) <= tol)


def test_unmasked_man_gives_one_alarm_one_sound_and_an_annotated_video_each_model(tmp_path, released_model, videos):
    events, out = tmp_path / "events.jsonl", tmp_path / "annotated.mp4"
    r = run_maskwatch(["run", "-c", write_config(tmp_path / "c.yaml", released_model), "--source", videos["unmasked"],
                       "--headless", "--fast", "--events", events, "--save-video", out], home=alsa_home(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "stopped (source ended): 206 frames" in r.stderr
    alarms = read_jsonl(events)
    assert len(alarms) == 1, f"expected exactly one alarm, got {json.dumps(alarms, indent=1)}"
    ev = alarms[0]
    assert ev["class"] == "no_mask" and ev["track_id"] > 0 and not ev["suppressed"]
    assert 0 <= ev["frame"] < 206 and 0 < ev["score"] <= 1 and ev["duration_s"] >= 0
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", ev["time"])
    assert r.stderr.count("alarm sound played") == 1, "the alarm sounds exactly once"
    assert ev["sounded"] is True and ev["reason"] is None, "the clip was handed to the ALSA null device"
    counts = read_jsonl(tmp_path / "counts.jsonl")
    assert sum(c["no_mask"] for c in counts) >= 1
    # the annotated video: every frame written, and at the alarm frame a red box on his face
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 206
    cap.release()
    x1, y1, x2, y2 = [int(round(v)) for v in ev["box"]]
    assert 60 <= x2 - x1 <= 700 and 320 <= (x1 + x2) / 2 <= 960, f"face box {ev['box']} not on the centred face"
    shown, raw = frame_at(out, ev["frame"]), frame_at(videos["unmasked"], ev["frame"])
    top_edge = (slice(max(y1 - 2, 0), y1 + 3), slice(x1 + 5, x2 - 5))
    assert near(shown[top_edge], RED_BGR).mean() > 0.5, "no red box edge drawn at the alarm box"
    assert near(raw[top_edge], RED_BGR).mean() < 0.2, "the source itself is red there"
    assert near(shown[y1 + 10:y2 - 10, x1 + 10:x2 - 10], RED_BGR).mean() < 0.3, "the face itself is visible"


def test_masked_man_no_alarm_each_model(tmp_path, released_model, videos):
    """masked-man-shop-1080p.mp4 gives no alarm."""
    events = tmp_path / "events.jsonl"
    r = run_maskwatch(["run", "-c", write_config(tmp_path / "c.yaml", released_model), "--source", videos["masked_man"],
                       "--headless", "--fast", "--events", events], home=alsa_home(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "stopped (source ended): 250 frames" in r.stderr
    assert events.exists() and read_jsonl(events) == []
    assert "alarm sound played" not in r.stderr


def test_masked_woman_no_alarm_with_the_yunet_student(tmp_path, videos):
    """The YOLO-style student (yunet_student) on the third clip, as a process: the other two clips run above for
    every release, so the student gives 1 / 0 / 0 alarms on the three shared clips."""
    events = tmp_path / "events.jsonl"
    r = run_maskwatch(["run", "-c", write_config(tmp_path / "c.yaml", "yunet_student"), "--source", videos["masked_woman"],
                       "--headless", "--fast", "--events", events], home=alsa_home(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "stopped (source ended): 244 frames" in r.stderr and "running: model yunet_student 1.0.0" in r.stderr
    assert events.exists() and read_jsonl(events) == []
    assert "alarm sound played" not in r.stderr


def test_masked_woman_gives_no_alarm_and_opens_no_network_socket(tmp_path, model_path, videos, network_guard):
    """The whole pipeline in this process under a guard: creating any socket but the AF_UNIX notify
    socket fails the test."""
    notify = tmp_path / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    created = network_guard
    cfg = with_overrides(Config(), source=str(videos["masked_woman"]), headless=True, fast=True,
                         events=str(tmp_path / "events.jsonl"))
    cfg.model.path = str(model_path)
    pipe = Pipeline(cfg, RunOptions(sound=False), notifier=Notifier(str(notify)))
    res = pipe.run()
    listener.close()
    assert res.frames == 244 and res.reason == "source ended"
    assert res.alarms == [] and read_jsonl(tmp_path / "events.jsonl") == []
    assert created == [(socket.AF_UNIX, socket.SOCK_DGRAM)] * 2, "only the notify socket (and the test's listener)"
    assert not list(tmp_path.glob("**/*.jpg")) and not list(tmp_path.glob("**/*.png")), "no frame written"


def test_missing_sound_device_does_not_stop_the_pipeline(tmp_path, model_path, videos):
    events = tmp_path / "events.jsonl"
    r = run_maskwatch(["run", "-c", write_config(tmp_path / "c.yaml", model_path), "--source", videos["unmasked"],
                       "--headless", "--fast", "--events", events],
                      home=alsa_home(tmp_path, "{ type hw card 7 }"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "stopped (source ended): 206 frames" in r.stderr
    alarms = read_jsonl(events)
    assert len(alarms) == 1, "the event is logged although the sound failed"
    assert r.stderr.count("sound device unavailable") == 1
    assert "alarm sound played" not in r.stderr
    # the event tells the truth: nothing was played (ALSA has no card 7), and the report follows
    assert alarms[0]["sounded"] is False and alarms[0]["reason"] == "no_speaker", alarms[0]
    day = alarms[0]["time"][:10]
    rep = run_maskwatch(["report", "--day", day, "--events", events], home=tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert "alarms sounded: 0" in rep.stdout and "not sounded: no_speaker 1" in rep.stdout, rep.stdout
