"""End to end with the cascade (the default detector + the released mask classifier, ``model.classifier``) on
the shared videos: one alarm for the unmasked man, none on the masked videos, and the ``classify`` stage
in ``maskwatch bench --json``."""
from __future__ import annotations

import json

import pytest

from edge.config import DEFAULT_MODEL, default_model_path, released_models
from edge.events import read_jsonl
from edge_helpers import alsa_home, run_maskwatch

pytestmark = pytest.mark.slow
CLASSIFIER = "mask_classifier"


def cascade_config(path, extra: str = ""):
    path.write_text(f"model:\n  path: {DEFAULT_MODEL}\n  classifier: {CLASSIFIER}\n{extra}", encoding="utf-8")
    return path


def test_the_classifier_is_released():
    assert CLASSIFIER in released_models("classifier") and CLASSIFIER not in released_models()
    assert default_model_path(CLASSIFIER).is_file()


def test_cascade_unmasked_man_one_alarm(tmp_path, videos):
    events = tmp_path / "events.jsonl"
    r = run_maskwatch(["run", "-c", cascade_config(tmp_path / "c.yaml"), "--source", videos["unmasked"], "--headless",
                       "--fast", "--events", events], home=alsa_home(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "stopped (source ended): 206 frames" in r.stderr
    alarms = read_jsonl(events)
    assert len(alarms) == 1 and alarms[0]["class"] == "no_mask", json.dumps(alarms, indent=1)
    assert r.stderr.count("alarm sound played") == 1


@pytest.mark.parametrize("video", ["masked_woman", "masked_man"])
def test_cascade_masked_videos_no_alarm(tmp_path, videos, video):
    events = tmp_path / "events.jsonl"
    r = run_maskwatch(["run", "-c", cascade_config(tmp_path / "c.yaml"), "--source", videos[video], "--headless",
                       "--fast", "--events", events], home=alsa_home(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "stopped (source ended)" in r.stderr
    assert read_jsonl(events) == [] and "alarm sound played" not in r.stderr


def test_bench_json_has_the_classify_stage(tmp_path, videos):
    r = run_maskwatch(["bench", "--source", videos["unmasked"], "-c", cascade_config(tmp_path / "c.yaml"), "--json"],
                      home=alsa_home(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    b = json.loads(r.stdout.strip().splitlines()[-1])
    c = b["stages"]["classify"]
    assert b["classifier"].endswith("mask_classifier/model.onnx")
    # one face, classified when its track is confirmed (about frame 80: the detector scores him near the
    # tracker's 0.5 start threshold) and every 10 frames after: well under one crop per frame, never none
    assert b["frames"] == 206 and 0.02 <= c["faces_per_frame"] <= 0.5 and c["faces"] >= 3
    assert c["ms_per_face"] > 0 and c["ms_median"] >= 0 and c["ms_p95"] >= c["ms_median"]


def test_check_parity_covers_the_classifier(tmp_path, face_mask_dir):
    """``maskwatch check-parity --model CLASSIFIER`` on real face crops (here ONNX Runtime against a second
    ONNX Runtime session; on a Jetson ``--backend tensorrt`` compares the classifier's engine)."""
    import cv2

    from edge.classifier import crop_faces
    from models.data import read_voc, split

    crops = tmp_path / "crops"
    crops.mkdir()
    _, va = split(read_voc(face_mask_dir))
    n = 0
    for s in va[:6]:
        img = cv2.imread(str(s.image))
        for c in crop_faces(img, s.boxes[:2], 96, 0.2):
            cv2.imwrite(str(crops / f"c{n:03d}.jpg"), c)
            n += 1
    model = default_model_path(CLASSIFIER)
    rep = tmp_path / "parity.json"
    r = run_maskwatch(["check-parity", "--model", model, "--images", crops, "--backend", "onnxruntime", "--json", rep],
                      home=alsa_home(tmp_path))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    d = json.loads(rep.read_text())
    assert "probs" in json.dumps(d) and d.get("images", n) == n


@pytest.mark.jetson
def test_classifier_engines_on_device(tmp_path, face_mask_dir):
    """On the Jetson: the classifier's FP16 engine and its INT8 engine calibrated on face crops build with
    the engine tools, load at batch 1 and agree with ONNX Runtime on real crops."""
    import cv2
    import numpy as np

    from edge import engine as E
    from edge.backends.tensorrt import TensorRTBackend
    from edge.classifier import Classifier, crop_faces
    from models.data import read_voc, split

    crops = tmp_path / "crops"
    crops.mkdir()
    tr, _ = split(read_voc(face_mask_dir))
    n = 0
    for s in tr[:40]:
        for c in crop_faces(cv2.imread(str(s.image)), s.boxes[:3], 96, 0.2):
            cv2.imwrite(str(crops / f"c{n:04d}.jpg"), c)
            n += 1
    model = default_model_path(CLASSIFIER)
    ref = Classifier(model)
    batch = np.stack([cv2.imread(str(p)) for p in sorted(crops.glob("*.jpg"))[:20]])
    for precision in ("fp16", "int8"):
        E.build_engine(model, precision, calib_dir=crops if precision == "int8" else None, out_dir=tmp_path)
        cls = Classifier(TensorRTBackend(model, engine_dir=tmp_path, precision=precision))
        assert cls.backend_batch == 1
        got = cls.probs_of_crops(batch)
        assert (got.argmax(1) == ref.probs_of_crops(batch).argmax(1)).mean() >= 0.9
