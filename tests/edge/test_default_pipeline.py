"""The released default pipeline (issue 20): ``ultralight_mask`` 1.3.0 at 640x480 with the ``mask_classifier``
cascade on at weight 0.8 (both chosen on ilc2021-dev half a), run from a config file that sets nothing: one
no_mask alarm for the unmasked man with its box on his face, none on the masked clips."""
from __future__ import annotations

import json

import pytest

from edge.config import DEFAULT_CLASSIFIER, DEFAULT_MODEL, Config, parse
from edge.events import read_jsonl
from edge_helpers import alsa_home, run_maskwatch


def defaults_config(path):
    path.write_text("# nothing set: the built-in defaults\n", encoding="utf-8")
    return path


def test_the_defaults_are_the_released_cascade():
    from edge.backends.onnxruntime import OnnxRuntimeBackend

    cfg = Config()
    assert parse("# nothing\n") == cfg
    assert DEFAULT_MODEL == "ultralight_mask" and DEFAULT_CLASSIFIER == "mask_classifier"
    assert cfg.model.classifier == "mask_classifier" and cfg.classifier.weight == pytest.approx(0.8)
    assert cfg.model.resolved_classifier().is_file()
    meta = OnnxRuntimeBackend(cfg.model.resolved_path(), threads=1).meta
    assert (meta.version, meta.input_w, meta.input_h) == ("1.3.0", 640, 480)


@pytest.mark.slow
def test_default_pipeline_one_alarm_on_the_unmasked_man_on_his_face(tmp_path, videos):
    events = tmp_path / "events.jsonl"
    r = run_maskwatch(["run", "-c", defaults_config(tmp_path / "c.yaml"), "--source", videos["unmasked"], "--headless",
                       "--fast", "--events", events], home=alsa_home(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "stopped (source ended): 206 frames" in r.stderr
    alarms = read_jsonl(events)
    assert len(alarms) == 1 and alarms[0]["class"] == "no_mask", json.dumps(alarms, indent=1)
    x1, y1, x2, y2 = alarms[0]["box"]
    assert 500 <= (x1 + x2) / 2 <= 800 and 150 <= x2 - x1 <= 500, f"alarm box {alarms[0]['box']} not on his face"
    assert r.stderr.count("alarm sound played") == 1


@pytest.mark.slow
@pytest.mark.parametrize("video", ["masked_woman", "masked_man"])
def test_default_pipeline_no_alarm_on_the_masked_clips(tmp_path, videos, video):
    events = tmp_path / "events.jsonl"
    r = run_maskwatch(["run", "-c", defaults_config(tmp_path / "c.yaml"), "--source", videos[video], "--headless",
                       "--fast", "--events", events], home=alsa_home(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "stopped (source ended)" in r.stderr
    assert read_jsonl(events) == [] and "alarm sound played" not in r.stderr
