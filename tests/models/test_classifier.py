"""The mask classifier's training side: crops shared with the runtime, export to ONNX and ONNX Runtime parity
on real face crops, and the crop-level report of ``models.evaluate`` on a classifier model."""
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
from models.classifier import (CROP_MARGIN, INPUT_SIZE, CropClassifier, CropDataset, build_meta, context_crops,
                               export_classifier, gt_crops, torch_probs)
from models.data import read_voc, split
from models.nets.mobilenet import load_imagenet

REPO = Path(__file__).resolve().parents[2]
IMAGENET = (REPO / ".." / "shared" / "weights" / "imagenet" / "mobilenet_v2_1.0_imagenet_float.pth").resolve()
RELEASED = REPO / "models" / "mask_classifier" / "model.onnx"


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
    r = subprocess.run([sys.executable, "-m", "models.evaluate", "--model", str(RELEASED), "--data", str(face_mask_dir),
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
