"""The mask classifier's training side: crops shared with the runtime, export to ONNX and ONNX Runtime parity
on real face crops, and the crop-level report of ``models.evaluation.evaluate`` on a classifier model."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edge.classifier import Classifier, crop_faces, crop_region, crop_square
from edge.config import model_role
from models.train.classifier import (CROP_MARGIN, INPUT_SIZE, CropClassifier, CropDataset, build_meta, context_crops,
                               export_classifier, gt_crops, torch_probs)
from models.data import read_voc, split
from models.nets.mobilenet import load_imagenet

REPO = Path(__file__).resolve().parents[2]
IMAGENET = (REPO / ".." / "shared" / "weights" / "imagenet" / "mobilenet_v2_1.0_imagenet_float.pth").resolve()
RELEASED = REPO / "models" / "released" / "mask_classifier" / "model.onnx"


@pytest.fixture(scope="module")
def val_samples(face_mask_dir):
    _, va = split(read_voc(face_mask_dir))
    return va[:12]


def test_training_crops_match_the_runtime_crop(val_samples):
    """A training sample is re-cut from a stored context crop; without jitter it must be the runtime's crop."""
    data = context_crops(val_samples, min_face=24)
    assert len(data["label"]) > 5 and data["ctx"].shape[1:] == (144, 144, 3)
    runtime = gt_crops(val_samples, min_face=24)
    assert np.array_equal(runtime["label"], data["label"])
    diffs = []
    for i in range(len(data["label"])):
        c = crop_region(data["ctx"][i], crop_square(data["box"][i], CROP_MARGIN), INPUT_SIZE)
        diffs.append(np.abs(c.astype(np.int16) - runtime["crops"][i]).mean())
    assert np.median(diffs) < 6, diffs  # two resamplings vs one; same region
    ds = CropDataset(data, seed=1)
    x, y = ds[0]
    assert x.shape == (3, INPUT_SIZE, INPUT_SIZE) and x.dtype == torch.float32 and -1.01 <= float(x.min())
    assert y == int(data["label"][0])


def test_export_and_onnxruntime_parity_on_real_crops(tmp_path, val_samples):
    torch.manual_seed(0)
    model = CropClassifier(load_imagenet(IMAGENET, 3, dropout=0.2)).eval()
    torch.nn.init.normal_(model.net.classifier.weight, std=0.05)  # a head that separates the crops a little
    meta = build_meta("9.9.9", {"note": "test"})
    out = export_classifier(model, meta, tmp_path / "cls.onnx")
    assert model_role(out) == "classifier"
    cls = Classifier(out, threads=1)
    assert cls.meta.role == "classifier" and cls.meta.crop_margin == CROP_MARGIN and cls.size == INPUT_SIZE
    assert cls.meta.version == "9.9.9" and cls.classes == ["mask", "no_mask", "mask_incorrect"]
    crops = gt_crops(val_samples, 24)["crops"][:10]
    ref = torch_probs(model, crops)
    got = cls.probs_of_crops(crops)           # one batch of 10 (dynamic batch axis)
    assert got.shape == (len(crops), 3) and np.allclose(got.sum(1), 1.0, atol=1e-5)
    assert np.abs(ref - got).max() < 1e-4     # float32 weights and compute
    cls.max_batch = 3                          # batches of 3, 3, 3, 1: the same numbers
    assert np.abs(cls.probs_of_crops(crops) - got).max() < 1e-5
    img = cv2.imread(str(val_samples[0].image))
    assert np.abs(cls.probs(img, val_samples[0].boxes[:2]) - cls.probs_of_crops(
        crop_faces(img, val_samples[0].boxes[:2], INPUT_SIZE, CROP_MARGIN))).max() < 1e-6


@pytest.mark.skipif(not RELEASED.is_file(), reason="the released classifier is not built yet")
def test_models_evaluate_dispatches_on_the_classifier_role(tmp_path, face_mask_dir):
    out = tmp_path / "report.json"
    r = subprocess.run([sys.executable, "-m", "models.evaluation.evaluate", "--model", str(RELEASED), "--data", str(face_mask_dir),
                        "--split", "val", "--out", str(out), "--plots", str(tmp_path / "plots")],
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(out.read_text())
    _, va = split(read_voc(face_mask_dir))
    n = {c: 0 for c in ("mask", "no_mask", "mask_incorrect")}
    for s in va:
        L = np.maximum(s.boxes[:, 2] - s.boxes[:, 0], s.boxes[:, 3] - s.boxes[:, 1])
        for lab in s.labels[L >= 24]:
            n[["mask", "no_mask", "mask_incorrect"][lab]] += 1
    assert {c: v["n"] for c, v in rep["per_class"].items()} == n
    assert np.asarray(rep["confusion"]["counts"]).sum() == sum(n.values())
    assert set(rep["per_class"]["mask"]) == {"precision", "recall", "n"}
    assert 0.8 <= rep["balanced_accuracy"] <= 1.0       # mask vs no_mask on the validation faces >= 24 px
    assert (tmp_path / "plots" / "confusion_matrix.png").stat().st_size > 1000


@pytest.mark.skipif(not RELEASED.is_file(), reason="the released classifier is not built yet")
def test_predict_applies_the_cascade_and_defaults_to_the_appliance(tmp_path, face_mask_dir):
    from edge.classifier import classify_detections
    from edge.config import Config, default_model_path
    from models.evaluation import predict as P

    _, va = split(read_voc(face_mask_dir))
    src = tmp_path / "imgs"
    src.mkdir()
    for s in va[:4]:
        (src / s.image.name).symlink_to(s.image)
    det = default_model_path()
    casc = P.predict(det, src, classifier=RELEASED)
    plain = P.predict(det, src)
    assert len(casc) == len(plain) > 0                       # the classifier never adds or drops a face
    assert all("probs" in d for d in casc) and not any("probs" in d for d in plain)
    names = ["mask", "no_mask", "mask_incorrect"]
    for d in casc:
        assert d["category"] == names[int(np.argmax(d["probs"]))] and abs(sum(d["probs"]) - 1) < 1e-3
        if max(d["bbox"][2:]) < Config().classifier.min_crop_px:  # small faces keep the detector's class
            assert max(d["probs"]) == 1.0
    # one face, recomputed through the shared function, gives the same probabilities
    big = max(casc, key=lambda d: d["bbox"][2])
    img = cv2.imread(str(src / big["file_name"]))
    x, y, w, h = big["bbox"]
    plain_cls = next(p for p in plain if p["file_name"] == big["file_name"] and p["bbox"] == big["bbox"])["category"]
    p = classify_detections(Classifier(RELEASED), img, np.array([[x, y, x + w, y + h]], np.float32), np.array([1.0]),
                            np.array([names.index(plain_cls)]), 3)
    assert np.abs(p[0] - np.array(big["probs"])).max() < 2e-3  # bbox rounded to 0.1 px in the JSON
    # without --model: the appliance's defaults, exactly as `maskwatch run` with no config loads them
    out = tmp_path / "d.json"
    assert P.main(["--images", str(src), "--out", str(out)]) == 0
    mc = Config().model
    assert json.loads(out.read_text()) == P.predict(mc.resolved_path(), src, classifier=mc.resolved_classifier())
