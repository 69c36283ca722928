"""Our Ultra-Light RFB definition and loader reproduce the authors' ONNX on a real photo, and the SSD
prior generation / box coding behave as the authors' configuration says."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edge.decoders import box_iou
from models.data import read_dataset
from models.nets.ultralight import (MEAN, STD, decode_boxes, encode_boxes, feature_sizes, load_ultralight, priors,
                                    reference_outputs)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
PTH = SHARED / "weights" / "ultra-light" / "RFB-640-masked_face-v2.pth"
ONNX = SHARED / "weights" / "ultra-light" / "RFB-640-masked_face-v2.onnx"
DATA = SHARED / "data" / "face-mask-andrewmvd"
PHOTO = "maksssksksss182"  # one unmasked (122 px) and one masked (159 px) face
pytestmark = pytest.mark.skipif(not (PTH.exists() and ONNX.exists()), reason="needs ../shared/weights/ultra-light")


def test_priors_follow_the_authors_feature_maps():
    assert feature_sizes((640, 480)) == [(80, 60), (40, 30), (20, 15), (10, 8)]
    p = priors((640, 480))
    assert p.shape == (17640, 4)  # 80*60*3 + 40*30*2 + 20*15*2 + 10*8*3
    # first prior: cell (0, 0) of stride 8, side 10 px
    assert np.allclose(p[0], [0.5 / 80, 0.5 / 60, 10 / 640, 10 / 480])
    # the last level has 8 rows for 480 px (ceil(7.5)): centres at (j + 0.5) / 8, sides up to 256 px
    assert np.allclose(p[-1], [9.5 / 10, 7.5 / 8, 256 / 640, 256 / 480])
    assert feature_sizes((640, 352)) == [(80, 44), (40, 22), (20, 11), (10, 6)]


def test_box_coding_round_trips():
    pri = torch.from_numpy(priors((256, 256)))
    rng = np.random.default_rng(0)
    loc = torch.from_numpy(rng.normal(0, 1, (len(pri), 4)).astype(np.float32))
    boxes = decode_boxes(loc, pri)
    assert torch.allclose(encode_boxes(boxes, pri), loc, atol=1e-4)


def test_loader_reproduces_the_onnx_outputs_on_a_real_photo():
    import onnxruntime as ort

    sample = next(s for s in read_dataset(DATA) if s.image.stem == PHOTO)
    img = cv2.imread(str(sample.image))
    h, w = img.shape[:2]
    x = cv2.cvtColor(cv2.resize(img, (640, 480)), cv2.COLOR_BGR2RGB).astype(np.float32)
    x = ((x - MEAN) / STD).transpose(2, 0, 1)[None].copy()  # the authors' input convention
    sess = ort.InferenceSession(str(ONNX), providers=["CPUExecutionProvider"])
    ref_scores, ref_boxes = sess.run(["scores", "boxes"], {"input": x})
    model = load_ultralight(PTH)
    with torch.no_grad():
        scores, boxes = (t.numpy() for t in reference_outputs(model, torch.from_numpy(x)))
    ds, db = float(np.abs(scores - ref_scores).max()), float(np.abs(boxes - ref_boxes).max())
    print(f"Ultra-Light RFB-640: max abs difference to the ONNX: scores {ds:.2e}, boxes {db:.2e}")
    assert scores.shape == ref_scores.shape == (1, 17640, 3) and boxes.shape == ref_boxes.shape
    assert ds < 1e-4 and db < 1e-4
    # and it sees the two faces with the right class: face (unmasked) -> no_mask label, masked_face -> mask
    px = boxes[0] * np.array([w, h, w, h], np.float32)
    for gt, label in zip(sample.boxes, sample.labels):
        k = int(np.argmax(box_iou(gt[None], px)[0] * scores[0, :, 1:].max(1)))
        assert box_iou(gt[None], px[k:k + 1])[0, 0] > 0.5
        assert scores[0, k, 1:].argmax() == {0: 1, 1: 0}[int(label)]  # ours: 0 mask, 1 no_mask


def test_three_class_detector_starts_from_the_pretrained_classes_and_exports(tmp_path):
    import onnx

    from edge.backends.onnxruntime import OnnxRuntimeBackend
    from edge.model import METADATA_KEY, postprocess, preprocess
    from models.export import export_onnx, load_checkpoint, parity
    from models.train.ultralight import ARCH, detector_meta
    from models.nets.ultralight import UltraLightDetector

    base = load_ultralight(PTH)
    det = UltraLightDetector(3, base).eval()
    sample = next(s for s in read_dataset(DATA) if s.image.stem == PHOTO)
    img = cv2.imread(str(sample.image))
    x = cv2.cvtColor(cv2.resize(img, (640, 480)), cv2.COLOR_BGR2RGB).astype(np.float32)
    with torch.no_grad():
        ref_scores, ref_boxes = reference_outputs(base, torch.from_numpy(((x - MEAN) / STD).transpose(2, 0, 1)[None].copy()))
        scores, boxes = det(torch.from_numpy((x / 255.0).transpose(2, 0, 1)[None].copy()))  # RGB / 255
    # same boxes; background kept, mask = masked_face and no_mask = face up to the softmax's new denominator
    assert torch.allclose(boxes / torch.tensor([640, 480, 640, 480.0]), ref_boxes, atol=1e-5)
    faces = ref_scores[0, :, 1:].sum(1) > 0.5
    ratio = scores[0, faces, 1:3] / ref_scores[0, faces][:, [2, 1]]
    assert float(ratio.min()) > 0.9 and float(ratio.max()) <= 1.0 + 1e-5
    assert float(scores[0, faces, 3].max()) < 0.1  # mask_incorrect starts rare

    ck = {"arch": ARCH, "net": {"num_classes": 3}, "ema": det.state_dict(), "meta": detector_meta().to_json()}
    torch.save(ck, tmp_path / "best.pt")
    model, meta = load_checkpoint(tmp_path / "best.pt")
    meta.version = "0.0.1"
    out = export_onnx(model, meta, tmp_path / "m.onnx", fp16_weights=False)
    assert out.stat().st_size <= 10e6
    m = onnx.load(str(out))
    onnx.checker.check_model(m)
    assert METADATA_KEY in {p.key for p in m.metadata_props}
    images = [sample.image] + sorted((DATA / "images").glob("*.jpg"))[:2]
    diff = parity(model, out, images)
    print("Ultra-Light detector, torch vs ONNX Runtime:", diff)
    assert diff["scores_max_abs"] < 1e-4 and diff["boxes_max_abs"] < 1e-2  # px at 640x352
    be = OnnxRuntimeBackend(out)
    assert be.meta.decoder == "ssd" and be.meta.output_roles == ["scores", "boxes"]
    xin, lb = preprocess(img, be.meta)
    b, s, c = postprocess(be.infer(xin), be.meta, lb, (img.shape[1], img.shape[0]))
    top = s >= 0.5
    assert top.sum() == 2  # one box on each of the two faces, zero-shot
    iou = box_iou(sample.boxes, b[top])
    assert (iou.max(1) > 0.4).all()
    assert sorted(c[top][iou.argmax(1)].tolist()) == sorted(sample.labels.tolist())
