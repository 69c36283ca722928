"""Pictures never alarm, on real footage the test builds (tests/edge/pasted_face.py): a real no_mask face
from the training photos (face-mask-andrewmvd, the photo's widest ``without_mask`` box with 35 % margin,
scaled to a 130 px face) is pasted at one place into every frame of a shared clip, written with
``cv2.VideoWriter``; optionally with camera-like degradations applied per frame (sensor noise, a slow
gain ramp, JPEG re-encoding, or all three).

* unmasked-man-outdoor-720p.mp4 + the photo: exactly the one alarm the clip gives (the man), and the
  photo never alarms, in a first run and after a restart (a second pipeline on the same file: the
  photo is in view from the first frame again), clean and with every degradation;
* masked-woman-laptop.mp4 + the photo: no alarm;
* the control: with the picture cue off (``tracker.liveness_change: 0``) the same photo does alarm: the
  pasted face is a face the model calls no_mask, so the checks above can fail.

The pipeline runs in process on the built-in defaults (plus the model path), headless, every frame, without
a speaker (so every event says ``sounded: false, reason: no_speaker``).
"""
from __future__ import annotations

import pytest

from edge.config import Config
from edge.events import read_jsonl
from edge.pipeline import Pipeline, RunOptions, with_overrides
from pasted_face import PHOTOS, on_photo, with_poster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def poster_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("poster")


def poster_video(poster_dir, videos, key, how="none"):
    out = poster_dir / f"{key}-poster-{how}.avi"
    frames, photo = with_poster(videos[key], out, *PHOTOS[key], how=how)
    return out, frames, photo


def run(video, events, model_path, extra=None, keep=None):
    """Run the pipeline on ``video``; ``keep``: a list the Pipeline object is appended to."""
    cfg = with_overrides(Config(), source=str(video), headless=True, fast=True, events=str(events))
    cfg.model.path = str(model_path)
    for section, values in (extra or {}).items():
        for k, v in values.items():
            setattr(getattr(cfg, section), k, v)
    pipe = Pipeline(cfg, RunOptions(sound=False))
    if keep is not None:
        keep.append(pipe)
    return pipe.run()


@pytest.mark.parametrize("how, restarts", [("none", 2), ("noise", 1), ("gain", 1), ("jpeg", 1), ("camera", 2)])
def test_a_pasted_photo_never_alarms_and_the_man_still_does(tmp_path, model_path, videos, poster_dir, how,
                                                            restarts):
    video, frames, photo = poster_video(poster_dir, videos, "unmasked", how)
    events = tmp_path / "events.jsonl"
    for restart in range(restarts):  # the second run is a restart: the photo is in view from frame 1 again
        pipes = []
        res = run(video, events, model_path, keep=pipes)
        assert res.frames == frames == 206 and res.reason == "source ended"
        alarms = read_jsonl(events)
        assert len(alarms) == restart + 1, alarms
        ev = alarms[-1]
        assert ev["class"] == "no_mask" and ev["sounded"] is False and ev["reason"] == "no_speaker"
        assert not on_photo(ev["box"], photo), f"alarm on the pasted photo: {ev}"
        assert 320 <= (ev["box"][0] + ev["box"][2]) / 2 <= 960, f"the alarm is not on the man: {ev}"
        # the photo is not a person: the man is the only no_mask person counted in this run, and the only
        # person in view in the last frame (the status line and STATUS)
        assert res.counts.get("no_mask") == 1 and res.counts.get("mask", 0) == 0, res.counts
        assert pipes[0].in_view == {"mask": 0, "no_mask": 1, "mask_incorrect": 0}


def test_a_pasted_photo_gives_no_alarm_in_a_masked_clip(tmp_path, model_path, videos, poster_dir):
    video, frames, _ = poster_video(poster_dir, videos, "masked_woman", "camera")
    events = tmp_path / "events.jsonl"
    res = run(video, events, model_path)
    assert res.frames == frames == 244 and res.reason == "source ended"
    assert read_jsonl(events) == [] and res.alarms == []
    assert res.counts.get("no_mask", 0) == 0, res.counts


@pytest.mark.parametrize("clip", ["masked_woman", "unmasked"])
def test_without_the_picture_cue_the_pasted_photo_does_alarm(tmp_path, model_path, videos, poster_dir, clip):
    """The control: the photo is a real no_mask trigger for the default model, so the tests above can fail."""
    video, _, photo = poster_video(poster_dir, videos, clip, "camera")
    events = tmp_path / "events.jsonl"
    run(video, events, model_path, {"tracker": {"liveness_change": 0.0}})
    alarms = read_jsonl(events)
    assert any(on_photo(ev["box"], photo) for ev in alarms), alarms
