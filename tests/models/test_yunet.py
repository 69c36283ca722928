"""Our YuNet-n and YuNet-s definitions and loader reproduce the authors' ONNX files on a real frame, and the YOLO-convention
wrapper decodes (through edge's own decoder) to the same face boxes as YuNet's own decoding."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edge.decoders import ClusterParams, decode_yolo, nms
from models.nets.yunet import STRIDES, YuNetDetector, checkpoint_variant, load_yunet, onnx_layout

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
PTH = SHARED / "weights" / "yunet" / "yunet_n.pth"
ONNX = SHARED / "weights" / "yunet" / "yunet_n_dynamic.onnx"
VIDEO = SHARED / "data" / "videos" / "unmasked-man-outdoor-720p.mp4"
pytestmark = pytest.mark.skipif(not (PTH.exists() and ONNX.exists()), reason="needs ../shared/weights/yunet")


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    cap = cv2.VideoCapture(str(VIDEO))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 100)
    ok, f = cap.read()
    cap.release()
    assert ok
    return cv2.resize(f, (640, 352))


@pytest.fixture(scope="module")
def yunet():
    return load_yunet(PTH)


@pytest.mark.parametrize("variant", ["n", "s"])
def test_loader_reproduces_the_onnx_outputs_on_a_real_frame(frame, variant):
    import onnxruntime as ort

    pth = SHARED / "weights" / "yunet" / f"yunet_{variant}.pth"
    net = load_yunet(pth)
    assert net.variant == variant  # told by the checkpoint itself
    assert sum(p.numel() for p in net.parameters()) == {"n": 75856, "s": 54608}[variant]  # the README's counts
    x = frame.astype(np.float32).transpose(2, 0, 1)[None].copy()  # BGR 0-255, as the authors feed it
    sess = ort.InferenceSession(str(pth.with_name(f"yunet_{variant}_dynamic.onnx")), providers=["CPUExecutionProvider"])
    ref = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": x})))
    with torch.no_grad():
        ours = {k: v.numpy() for k, v in onnx_layout(net(torch.from_numpy(x))).items()}
    assert set(ours) == set(ref) and len(ref) == 12
    worst = max(float(np.abs(ref[k] - ours[k]).max()) for k in ref)
    print(f"YuNet-{variant}: max abs difference to the ONNX over 12 outputs = {worst:.2e}")
    assert worst < 1e-4
    assert max(float((ref[f"cls_{s}"] * ref[f"obj_{s}"]).max()) for s in STRIDES) > 0.8  # it sees the face


def test_variant_of_a_foreign_checkpoint_is_refused():
    sd = torch.load(str(PTH), map_location="cpu", weights_only=False)["state_dict"]
    sd = dict(sd, **{"backbone.model1.conv2.conv1.weight": torch.zeros(48, 16, 1, 1)})
    with pytest.raises(KeyError, match="width of 48"):
        checkpoint_variant(sd)


def test_yolo_convention_wrapper_decodes_like_yunet(frame, yunet):
    x = torch.from_numpy(frame.astype(np.float32).transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        raw = yunet(x)
        levels = YuNetDetector(3, yunet, cls_hidden=False).eval()(x.flip(1) / 255.0)  # takes RGB / 255
    # YuNet's own decoding: priors at (j s, i s), centre (j + dx) s, size exp(dw) s; score cls * obj
    boxes, scores = [], []
    for k, s in enumerate(STRIDES):
        cls, obj, box = (torch.sigmoid(raw["cls"][k][0, 0]), torch.sigmoid(raw["obj"][k][0, 0]), raw["box"][k][0])
        h, w = cls.shape
        jj, ii = np.meshgrid(np.arange(w), np.arange(h))
        cx, cy = (jj + box[0].numpy()) * s, (ii + box[1].numpy()) * s
        bw, bh = np.exp(box[2].numpy()) * s, np.exp(box[3].numpy()) * s
        boxes.append(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1).reshape(-1, 4))
        scores.append((cls * obj).numpy().ravel())
    b, s = np.concatenate(boxes), np.concatenate(scores)
    m = s >= 0.3
    k = nms(b[m], s[m], 0.45)
    ref_b, ref_s = b[m][k], s[m][k]
    ours_b, ours_s, ours_c = decode_yolo([l.numpy() for l in levels], (352, 640),
                                         cluster=ClusterParams(method="nms", conf_threshold=0.3, iou_threshold=0.45))
    ours_b, ours_s = ours_b[ours_c == 0], ours_s[ours_c == 0]  # all classes start equal to the face class
    assert len(ref_s) >= 1 and len(ours_s) == len(ref_s)
    assert np.allclose(ours_s, ref_s, atol=1e-5)
    assert np.abs(ours_b - ref_b).max() < 0.05  # px, at 640x352
    w = ref_b[0, 2] - ref_b[0, 0]
    assert 100 < w < 250  # the man's face, about 160 px at this size


def test_checkpoint_exports_to_onnx_that_edge_decodes_like_pytorch(frame, yunet, tmp_path):
    from edge.backends.onnxruntime import OnnxRuntimeBackend
    from edge.model import postprocess, preprocess
    from models.export import export_onnx, load_checkpoint
    from models.train.yunet import detector_meta, parse_args

    meta = detector_meta(parse_args(["--data", "x", "--out", "y"]))
    model = YuNetDetector(3, yunet).eval()
    ck = tmp_path / "best.pt"
    torch.save({"arch": "yunet_detector", "net": {"num_classes": 3, "cls_hidden": True}, "ema": model.state_dict(),
                "meta": meta.to_json()}, ck)
    loaded, meta2 = load_checkpoint(ck)  # through models.export.LOADERS
    onnx_path = export_onnx(loaded, meta2, tmp_path / "model.onnx", fp16_weights=False)
    be = OnnxRuntimeBackend(onnx_path, threads=1)
    x, lb = preprocess(frame, be.meta)
    got = be.infer(x)
    with torch.no_grad():
        ref = {r: t.numpy() for r, t in zip(meta.output_roles, model(torch.from_numpy(x)))}
    dets = [postprocess(o, be.meta, lb, (frame.shape[1], frame.shape[0])) for o in (got, ref)]
    assert len(dets[0][1]) == len(dets[1][1]) >= 1
    assert np.abs(dets[0][0] - dets[1][0]).max() < 0.1 and np.abs(dets[0][1] - dets[1][1]).max() < 1e-4
