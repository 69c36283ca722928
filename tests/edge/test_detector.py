"""The detector on real frames: the fast tensor conversion equals the shared pre-processing, and
detections come back as a typed structure in frame pixels."""
from __future__ import annotations


import cv2
import numpy as np
import pytest

from edge.config import ModelConfig, ThresholdsConfig
from edge.detector import Detector, load_backend
from edge.preprocess import letterbox
from edge.model import ModelMeta, preprocess


def first_frame(path):
    cap = cv2.VideoCapture(str(path))
    ok, img = cap.read()
    cap.release()
    assert ok
    return img


@pytest.mark.parametrize("meta", [ModelMeta(), ModelMeta(color="BGR"),
                                  ModelMeta(mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4)),
                                  ModelMeta(resize="stretch", input_w=320, input_h=320)])
def test_preprocess_equals_the_plain_formula(videos, meta):
    for v in videos.values():
        img = first_frame(v)
        x, lb = preprocess(img, meta)
        boxed = letterbox(img, (meta.input_w, meta.input_h), meta.resize)[0]
        rgb = boxed[:, :, ::-1] if meta.color == "RGB" else boxed
        ref = ((rgb.astype(np.float64) - np.asarray(meta.mean)) / np.asarray(meta.std)).transpose(2, 0, 1)[None]
        assert x.shape == ref.shape and x.dtype == np.float32 and x.flags.c_contiguous
        np.testing.assert_allclose(x, ref, rtol=1e-5, atol=1e-5)


def test_detector_returns_frame_pixel_detections(backend, videos):
    img = first_frame(videos["masked_man"])
    times = {}
    det = Detector(backend, ModelConfig(), timer=lambda s, t: times.setdefault(s, t))
    d = det(img)
    assert set(times) == {"preprocess", "inference", "decode_cluster"}
    assert d.track_id is None and d.xyxy.dtype == np.float32
    if len(d):
        assert (d.xyxy[:, [0, 2]] <= 1920).all() and (d.xyxy[:, [1, 3]] <= 1080).all()
        assert (d.xyxy[:, 2] > d.xyxy[:, 0]).all()
    # a class threshold from the config overrides the model's
    strict = Detector(backend, ModelConfig(thresholds=ThresholdsConfig(mask=1.0, no_mask=1.0, mask_incorrect=1.0)))
    assert len(strict(img)) == 0
    loose = Detector(backend, ModelConfig(thresholds=ThresholdsConfig(mask=0.0, no_mask=0.0, mask_incorrect=0.0)))
    assert len(loose(img)) >= len(d)


def test_load_backend_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown backend"):
        load_backend("tensorflow", tmp_path / "m.onnx")
    with pytest.raises(FileNotFoundError, match="no model file"):
        load_backend("onnxruntime", tmp_path / "m.onnx")
