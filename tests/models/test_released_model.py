"""The released model: file size, embedded description, and real detections on the shared videos."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edge.backends.onnxruntime import OnnxRuntimeBackend
from edge.model import apply_thresholds, postprocess, preprocess
from models.evaluation.predict import main as predict_main
from edge.config import DEFAULT_MODEL, default_model_path, released_models
from tests.conftest import RELEASED_MODEL

#: Known model errors, recorded as strict xfails per (video, model) so a fix shows up as XPASS.
KNOWN_FAILURES = {
    ("unmasked-man-outdoor-720p.mp4", "detectnet_v2_r18"): "known defect of detectnet_v2_r18 1.1.0: this large "
    "(~165 px at the input) bearded face gets mask_incorrect 0.96 / mask 0.95 (1.0.0: mask 0.96); the same run's "
    "epoch-38 weights said no_mask 0.95-0.97; see its MODEL_CARD.md 'Known failures'",
}


@pytest.fixture(scope="module", params=released_models())
def released(request):
    """(name, backend) of every released model in turn."""
    return request.param, OnnxRuntimeBackend(default_model_path(request.param))


@pytest.fixture(scope="module")
def backend():
    return OnnxRuntimeBackend(RELEASED_MODEL)


def read_frames(path, indices):
    cap = cv2.VideoCapture(str(path))
    out, i = {}, 0
    while len(out) < len(indices):
        ok, f = cap.read()
        if not ok:
            break
        if i in indices:
            out[i] = f
        i += 1
    return [out[i] for i in indices]


def best_detection(backend, frame):
    x, lb = preprocess(frame, backend.meta)
    boxes, scores, classes = postprocess(backend.infer(x), backend.meta, lb, (frame.shape[1], frame.shape[0]))
    keep = apply_thresholds(scores, classes, backend.meta)
    boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    if len(scores) == 0:
        return None
    i = int(np.argmax(scores))
    return backend.meta.classes[int(classes[i])], float(scores[i]), boxes[i]


def test_released_file_is_small_and_self_describing(released):
    name, be = released
    path = default_model_path(name)
    assert path.stat().st_size < (10e6 if name == DEFAULT_MODEL else 25e6)
    m = be.meta
    assert m.classes == ["mask", "no_mask", "mask_incorrect"] and m.decoder in ("detectnet_v2", "yolo", "ssd")
    if m.decoder == "detectnet_v2":
        assert (m.input_w, m.input_h) == (640, 368) and m.stride == 16 and set(m.outputs) == {"coverage", "bbox"}
    elif m.decoder == "ssd":
        assert m.input_w % 32 == 0 and m.input_h % 32 == 0 and set(m.outputs) == {"scores", "boxes"}
    else:
        assert m.input_w % 32 == 0 and m.input_h % 32 == 0 and set(m.outputs) == {f"p{s}" for s in m.strides}
    assert set(m.thresholds) == set(m.classes)
    for k in ("AP50_mask", "AP50_no_mask", "mAP50", "mAP50_95", "no_mask_recall"):
        assert 0.0 <= m.metrics[k] <= 1.0


@pytest.mark.parametrize("video,expected", [("unmasked-man-outdoor-720p.mp4", "no_mask"),
                                            ("masked-woman-laptop.mp4", "mask"),
                                            ("masked-man-shop-1080p.mp4", "mask")])
def test_released_model_classifies_the_face_in_real_footage(request, released, videos_dir, video, expected):
    name, be = released
    reason = KNOWN_FAILURES.get((video, name))
    if reason:
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))
    frames = read_frames(videos_dir / video, [30, 90, 150])
    found = [best_detection(be, f) for f in frames]
    print(name, video, [(d[0], round(d[1], 2), d[2].round().tolist()) if d else None for d in found])
    hits = [d for d in found if d is not None and d[0] == expected]
    assert len(hits) >= 2, found
    for cls, score, box in hits:  # a face-sized box, not the whole frame
        w = box[2] - box[0]
        assert 0.04 * frames[0].shape[1] < w < 0.6 * frames[0].shape[1]


def test_predict_cli_writes_coco_results_for_images_and_video(tmp_path, face_mask_dir, videos_dir):
    img_dir = tmp_path / "imgs"; img_dir.mkdir()
    for p in sorted((face_mask_dir / "images").glob("*.jpg"))[:3]:
        cv2.imwrite(str(img_dir / p.name), cv2.imread(str(p)))  # a temporary copy, removed with tmp_path
    out = tmp_path / "det.json"
    assert predict_main(["--model", str(RELEASED_MODEL), "--images", str(img_dir), "--out", str(out),
                         "--draw", str(tmp_path / "draw")]) == 0
    dets = json.loads(out.read_text())
    assert dets and set(dets[0]) == {"file_name", "bbox", "score", "category"}
    assert {d["category"] for d in dets} <= {"mask", "no_mask", "mask_incorrect"}
    assert len(list((tmp_path / "draw").glob("*.jpg"))) == 3
    # a short video clip made by the test
    cap = cv2.VideoCapture(str(videos_dir / "unmasked-man-outdoor-720p.mp4"))
    clip = tmp_path / "clip.mp4"
    wr = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25, (1280, 720))
    for _ in range(3):
        wr.write(cap.read()[1])
    wr.release()
    out2 = tmp_path / "vid.json"
    assert predict_main(["--model", str(RELEASED_MODEL), "--images", str(clip), "--out", str(out2),
                         "--draw", str(tmp_path / "vdraw")]) == 0
    vd = json.loads(out2.read_text())
    assert {d["frame"] for d in vd} <= {0, 1, 2}
    widths = [d["bbox"][2] for d in vd]
    assert widths and 100 < max(widths) < 700  # the man's face, about 330 px wide in the 1280x720 frame
    assert (tmp_path / "vdraw" / "clip_annotated.mp4").stat().st_size > 10_000
