"""Face-size limits follow the camera: they are fractions of the frame height (``zone.min_face_frac`` /
``zone.max_face_frac``), so the unmasked man gives exactly one alarm at 720p and on the same clip scaled
by the test to 1920x1080 and 3840x2160 (the 4K copy is the first 3 s, his alarm comes at 0.9 s; with the
old absolute ``max_face_px: 480`` his ~800 px face at 4K gave none). The old pixel keys are converted at
``camera.height`` with a warning naming both keys; limits that would drop a face at an entrance
distance are warned about at start-up."""
from __future__ import annotations

import logging

import pytest

from edge.config import Config, ConfigError, ZoneConfig, parse
from edge.events import read_jsonl
from edge.pipeline import Pipeline, RunOptions, with_overrides
from edge.policy import face_frac_at, size_limit_warnings
from pasted_face import scaled


def run(video, events, model_path):
    cfg = with_overrides(Config(), source=str(video), headless=True, fast=True, events=str(events))
    cfg.model.path = str(model_path)
    return Pipeline(cfg, RunOptions(sound=False)).run()


@pytest.mark.slow
@pytest.mark.parametrize("size, frames", [(None, 206), ((1920, 1080), 206), ((3840, 2160), 75)],
                         ids=["720p", "1080p", "4k"])
def test_the_unmasked_man_alarms_once_at_every_resolution(tmp_path, model_path, videos, size, frames, caplog):
    video = videos["unmasked"]
    if size is not None:
        video = tmp_path / f"unmasked-{size[1]}p.avi"
        assert scaled(videos["unmasked"], video, size, max_frames=frames) == frames
    events = tmp_path / "events.jsonl"
    with caplog.at_level(logging.WARNING, logger="edge.pipeline"):
        res = run(video, events, model_path)
    assert res.frames == frames and res.reason == "source ended"
    alarms = read_jsonl(events)
    assert len(alarms) == 1, alarms
    ev = alarms[0]
    x1, y1, x2, y2 = ev["box"]
    scale = 1.0 if size is None else size[1] / 720.0
    assert ev["class"] == "no_mask" and 320 * scale <= (x1 + x2) / 2 <= 960 * scale, ev
    assert "face size limits" not in caplog.text, "the defaults suit every resolution"


def test_old_pixel_keys_are_converted_at_the_camera_height_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="edge.config"):
        cfg = parse("camera:\n  height: 1080\nzone:\n  min_face_px: 27\n  max_face_px: 540\n", "old.yaml")
    assert cfg.zone.min_face_frac == 0.025 and cfg.zone.max_face_frac == 0.5
    assert "zone.max_face_px: 540 is deprecated" in caplog.text and "write zone.max_face_frac" in caplog.text
    assert "zone.min_face_px: 27 is deprecated" in caplog.text
    with pytest.raises(ConfigError, match="zone.max_face_px .* was replaced by zone.max_face_frac"):
        parse("zone:\n  max_face_px: 480\n  max_face_frac: 0.5\n", "both.yaml")


def test_removed_stationary_keys_are_ignored_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="edge.config"):
        cfg = parse("tracker:\n  stationary_s: 3.0\n  stationary_change: 0.02\n", "old.yaml")
    assert cfg.tracker.liveness_change == Config().tracker.liveness_change
    assert "tracker.stationary_s, tracker.stationary_change no longer exist" in caplog.text


def test_limits_that_drop_a_face_at_an_entrance_distance_are_warned_about():
    assert size_limit_warnings(ZoneConfig(), 1280, 720) == []
    assert size_limit_warnings(ZoneConfig(), 3840, 2160) == []
    # the old absolute 480 px at 4K: 0.22 of the height, a face at 0.5 m is 0.38
    warn = size_limit_warnings(ZoneConfig(max_face_frac=480 / 2160), 3840, 2160)
    assert len(warn) == 1 and "zone.max_face_frac" in warn[0] and "raise it" in warn[0]
    warn = size_limit_warnings(ZoneConfig(min_face_frac=0.1), 1280, 720)
    assert len(warn) == 1 and "zone.min_face_frac" in warn[0] and "lower it" in warn[0]
    assert abs(face_frac_at(1.0, 1280, 720) - 0.19) < 0.01
