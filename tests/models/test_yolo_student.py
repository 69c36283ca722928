"""The YOLO student: target assignment, NumPy decode + NMS, the distillation loss, a tiny distillation run,
and the ONNX export the runtime runs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edge.decoders import ClusterParams, YoloParams, assign_yolo, decode_yolo, yolo_grid
from models.train.losses import difficulty_weights, flatten_levels, kd_loss, yolo_loss

HW = (96, 128)  # input (H, W): levels 12x16, 6x8, 3x4
P = YoloParams()


def raw_levels_for(boxes, classes, hw=HW, num_classes=3):
    """Hand-made raw outputs that encode ``boxes`` exactly at their assigned cells."""
    cx, cy, st = yolo_grid(hw, P)
    owner = assign_yolo(boxes, hw, P)
    flat = np.full((len(cx), 5 + num_classes), -8.0, np.float32)
    for a in np.nonzero(owner >= 0)[0]:
        b = boxes[owner[a]]
        flat[a, :4] = np.log(np.array([cx[a] - b[0], cy[a] - b[1], b[2] - cx[a], b[3] - cy[a]]) / st[a])
        flat[a, 4] = 4.0
        flat[a, 5 + classes[owner[a]]] = 4.0
    levels, i = [], 0
    for s in P.strides:
        h, w = hw[0] // s, hw[1] // s
        levels.append(flat[i: i + h * w].T.reshape(1, 5 + num_classes, h, w)); i += h * w
    return levels


def test_assign_picks_level_by_size_and_centre_cells():
    boxes = np.array([[10, 10, 30, 30],      # 20 px -> stride 8
                      [40, 20, 110, 90]],    # 70 px -> stride 16
                     np.float32)
    cx, cy, st = yolo_grid(HW, P)
    own = assign_yolo(boxes, HW, P)
    assert set(st[own == 0]) == {8.0} and set(st[own == 1]) == {16.0}
    # the cell holding the small box's centre (20, 20) is positive; every positive lies in its box
    assert own[(st == 8) & (cx == 20) & (cy == 20)] == 0
    for i, b in enumerate(boxes):
        m = own == i
        assert ((cx[m] >= b[0]) & (cx[m] <= b[2]) & (cy[m] >= b[1]) & (cy[m] <= b[3])).all()
        assert (np.abs(cx[m] - (b[0] + b[2]) / 2) <= 1.5 * st[m]).all()
    # a 4 px face smaller than a cell still gets exactly its centre cell
    tiny = assign_yolo(np.array([[50, 50, 54, 54]], np.float32), HW, P)
    assert (tiny == 0).sum() == 1
    # nested boxes on the same level: the shared cells go to the smaller one
    nested = np.array([[0, 0, 40, 40], [8, 8, 32, 32]], np.float32)
    own2 = assign_yolo(nested, HW, P)
    assert own2[(st == 8) & (cx == 20) & (cy == 20)] == 1


def test_decode_nms_round_trip_on_hand_made_outputs():
    boxes = np.array([[10, 12, 30, 34], [40, 20, 110, 90], [0, 0, 128, 96]], np.float32)
    classes = np.array([1, 0, 2])
    got_b, got_s, got_c = decode_yolo(raw_levels_for(boxes, classes), HW, P,
                                      ClusterParams(method="nms", conf_threshold=0.3, iou_threshold=0.5))
    assert len(got_b) == 3  # every cell of a box proposes the same box: NMS keeps one per face
    order = np.argsort(got_b[:, 0] + got_b[:, 1])
    np.testing.assert_allclose(got_b[order], boxes[[2, 0, 1]], atol=1e-3)
    assert got_c[order].tolist() == [2, 1, 0]
    expected = 1 / (1 + np.exp(-4.0)) ** 2
    np.testing.assert_allclose(got_s, expected, rtol=1e-5)
    # nothing above threshold: empty, typed output
    b, s, c = decode_yolo(raw_levels_for(np.zeros((0, 4), np.float32), np.zeros(0, int)), HW, P)
    assert b.shape == (0, 4) and s.dtype == np.float32 and c.dtype == np.int64
    with pytest.raises(ValueError, match="grid"):
        decode_yolo(raw_levels_for(boxes, classes), (64, 128), P)


def _student_pred(hw=HW, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = len(yolo_grid(hw, P)[0])
    return (torch.randn(1, A, 8, generator=g) * 0.3).requires_grad_(True)


def _one_teacher_object(hw, conf):
    cx, cy, st = yolo_grid(hw, P)
    own = assign_yolo(np.array([[40, 20, 110, 90]], np.float32), hw, P)
    A = len(cx)
    m = torch.from_numpy(own == 0)
    t_box = torch.zeros(1, A, 4); t_box[0, m] = torch.tensor([40.0, 20.0, 110.0, 90.0])
    t_logits = torch.zeros(1, A, 3); t_logits[0, m] = torch.tensor([2.0, -1.0, -3.0])
    t_conf = torch.zeros(1, A); t_conf[0, m] = conf
    t_w = torch.zeros(1, A); t_w[0, m] = 1.0 / m.sum()
    return t_box, t_logits, t_conf, t_w


def test_kd_lambda_follows_sigmoid_of_conf_minus_t_and_gradient_reaches_only_the_student():
    grid = torch.from_numpy(np.stack(yolo_grid(HW, P), axis=1))
    pred = _student_pred()
    losses = {}
    for conf in (0.2, 0.9):
        t_box, t_logits, t_conf, t_w = _one_teacher_object(HW, conf)
        for x in (t_box, t_logits, t_conf):
            x.requires_grad_(True)
        loss, parts = kd_loss(pred, grid, t_box, t_logits, t_conf, t_w, t=0.5)
        losses[conf] = float(loss)
        np.testing.assert_allclose(parts["lambda_mean"], 1 / (1 + np.exp(-(conf - 0.5))), rtol=1e-5)
        pred.grad = None
        loss.backward()
        assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
        assert t_box.grad is None and t_logits.grad is None and t_conf.grad is None
    # same object, same student: the loss scales exactly with λ
    ratio = losses[0.9] / losses[0.2]
    expected = float(difficulty_weights(torch.tensor(0.9), 0.5) / difficulty_weights(torch.tensor(0.2), 0.5))
    assert ratio == pytest.approx(expected, rel=1e-5)
    # a fixed λ ignores the teacher's confidence
    t_box, t_logits, t_conf, t_w = _one_teacher_object(HW, 0.2)
    l_fixed, p_fixed = kd_loss(pred, grid, t_box, t_logits, t_conf, t_w, fixed_lambda=0.5)
    assert p_fixed["lambda_mean"] == pytest.approx(0.5)
    # a student that reproduces the teacher's box and class logits has only the BCE floor left
    perfect = pred.detach().clone()
    own = t_w[0] > 0
    cx, cy, st = (torch.tensor(a) for a in yolo_grid(HW, P))
    b = torch.tensor([40.0, 20.0, 110.0, 90.0])
    perfect[0, own, :4] = torch.log(torch.stack([cx[own] - b[0], cy[own] - b[1], b[2] - cx[own], b[3] - cy[own]], 1)
                                    / st[own, None])
    perfect[0, own, 5:] = torch.tensor([2.0, -1.0, -3.0])
    _, pp = kd_loss(perfect, grid, t_box, t_logits, t_conf, t_w, t=0.5)
    assert pp["kd_box"] < 1e-8 and pp["kd_cls"] < p_fixed["kd_cls"]


def test_hard_loss_is_low_for_the_encoded_truth():
    boxes = np.array([[10, 12, 30, 34], [40, 20, 110, 90]], np.float32)
    classes = np.array([1, 0])
    grid = torch.from_numpy(np.stack(yolo_grid(HW, P), axis=1))
    own = assign_yolo(boxes, HW, P)
    tgt_box = torch.zeros(1, len(own), 4); tgt_cls = torch.full((1, len(own)), -1, dtype=torch.long)
    tgt_box[0, own >= 0] = torch.from_numpy(boxes[own[own >= 0]]); tgt_cls[0, own >= 0] = torch.from_numpy(classes[own[own >= 0]])
    good = flatten_levels([torch.from_numpy(x) for x in raw_levels_for(boxes, classes)])
    l_good, parts = yolo_loss(good, grid, tgt_box, tgt_cls)
    l_bad, _ = yolo_loss(_student_pred().detach(), grid, tgt_box, tgt_cls)
    assert parts["box"] < 1e-4 and float(l_good) < 0.1 * float(l_bad)


def test_tiny_distillation_run_decreases_loss_and_exports(face_mask_dir, tmp_path):
    from edge.backends.onnxruntime import OnnxRuntimeBackend
    from edge.model import postprocess, preprocess
    from models.export import export_onnx, load_checkpoint, parity
    from tests.conftest import RELEASED_MODEL
    from tests.models.training_cli import run_cli
    import cv2

    out = tmp_path / "kd"
    run_cli("models.train.yolo_student", ["--data", face_mask_dir, "--out", out, "--teacher", RELEASED_MODEL,
                               "--epochs", "6", "--batch", "4", "--limit", "8", "--crop", "160", "--width", "0.5",
                               "--workers", "0", "--no-val", "--threads", "2", "--input-w", "256", "--input-h", "160"])
    hist = json.loads((out / "history.json").read_text())
    assert len(hist) == 6 and all(h["kd"] > 0 for h in hist) and 0.3 < hist[0]["lambda_mean"] < 0.75
    assert min(h["loss"] for h in hist[-2:]) < 0.8 * hist[0]["loss"], [h["loss"] for h in hist]
    assert (out / "teacher.npz").stat().st_size > 1000
    model, meta = load_checkpoint(out / "best.pt")
    onnx_path = export_onnx(model, meta, tmp_path / "student.onnx", fp16_weights=False)
    imgs = sorted((face_mask_dir / "images").glob("*.jpg"))[:2]
    worst = parity(model, onnx_path, imgs)
    assert max(v for k, v in worst.items() if k.endswith("max_abs")) < 1e-4, worst
    be = OnnxRuntimeBackend(onnx_path)
    assert be.meta.decoder == "yolo" and be.meta.input_w == 256
    frame = cv2.imread(str(imgs[0]))
    x, lb = preprocess(frame, be.meta)
    boxes, scores, classes = postprocess(be.infer(x), be.meta, lb, (frame.shape[1], frame.shape[0]))
    assert boxes.dtype == np.float32 and boxes.shape[1] == 4 and len(boxes) == len(scores) == len(classes)
