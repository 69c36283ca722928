"""Fine-tuning from the pretrained YuNet-n: pseudo-label selection and the loss with pseudo-labels /
ignore regions on hand-made teacher outputs, and a tiny training run on real photos that lowers the loss."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edge.decoders import yolo_grid
from models.train.yunet import PSEUDO, FaceSet, finetune_loss, unlabelled_faces
from models.train.losses import kd_loss

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DATA = SHARED / "data" / "face-mask-andrewmvd"
YUNET = SHARED / "weights" / "yunet" / "yunet_n.pth"


def test_unlabelled_faces_are_confident_teacher_faces_that_match_no_label():
    gt = np.array([[10, 10, 50, 50], [100, 100, 200, 200]], np.float32)
    faces = np.array([[12, 12, 52, 52],        # the first label (IoU 0.82)
                      [120, 110, 170, 160],    # inside the second label (IoU 0.25, wholly inside)
                      [300, 300, 340, 340],    # a real face nobody labelled, confident
                      [400, 400, 440, 440],    # unlabelled but weak
                      [40, 40, 80, 80]], np.float32)  # overlaps the first label a little: unlabelled
    conf = np.array([0.95, 0.9, 0.9, 0.4, 0.8], np.float32)
    assert unlabelled_faces(faces, conf, gt, min_conf=0.7).tolist() == [2, 4]
    assert unlabelled_faces(faces, conf, gt, min_conf=0.3).tolist() == [2, 3, 4]
    assert unlabelled_faces(faces, conf, np.zeros((0, 4), np.float32), 0.7).tolist() == [0, 1, 2, 4]
    assert unlabelled_faces(faces[:0], conf[:0], gt).tolist() == []


def _grid(hw=(64, 64)):
    return torch.from_numpy(np.stack(yolo_grid(hw), axis=1))


def test_loss_pseudo_label_trains_objectness_not_class_and_ignore_drops_the_cell():
    grid = _grid()
    A = grid.shape[0]
    torch.manual_seed(0)
    pred = torch.randn(1, A, 8) * 0.1
    pred[0, 0, 4] = 3.0   # a confident object at cell 0 (an unlabelled face the model already finds)
    tgt_box = torch.zeros(1, A, 4)
    tgt_box[0, 0] = torch.tensor([0.0, 0.0, 8.0, 8.0])
    bg = torch.full((1, A), -1, dtype=torch.long)
    no_ign = torch.zeros(1, A, dtype=torch.bool)
    # as background, the confident cell costs objectness loss; as a pseudo-label it is a positive with
    # no class term; ignored, it costs nothing
    l_bg, p_bg = finetune_loss(pred, grid, tgt_box, bg, no_ign)
    ps = bg.clone(); ps[0, 0] = PSEUDO
    l_ps, p_ps = finetune_loss(pred, grid, tgt_box, ps, no_ign)
    ign = no_ign.clone(); ign[0, 0] = True
    l_ig, p_ig = finetune_loss(pred, grid, tgt_box, bg, ign)
    assert p_ps["cls"] == 0.0 and p_ps["box"] > 0.0 and p_bg["box"] == 0.0
    assert p_ig["obj"] < p_bg["obj"]
    assert p_ps["obj"] < p_bg["obj"]
    # a labelled cell does get a class term, and gradients flow to the class logits
    lab = bg.clone(); lab[0, 0] = 1
    pred.requires_grad_(True)
    l, parts = finetune_loss(pred, grid, tgt_box, lab, no_ign)
    l.backward()
    assert parts["cls"] > 0 and pred.grad[0, 0, 5:].abs().sum() > 0


def test_kd_weights_follow_teacher_confidence():
    # λ_i = sigmoid(conf_i - t): the same student error on a confident teacher object costs more
    grid = _grid()
    A = grid.shape[0]
    pred = torch.zeros(1, A, 8)
    t_box = torch.zeros(1, A, 4); t_box[0, 0] = torch.tensor([0.0, 0.0, 20.0, 20.0])
    t_logits = torch.zeros(1, A, 3); t_logits[0, 0] = torch.tensor([-4.0, 4.0, -4.0])
    w = torch.zeros(1, A); w[0, 0] = 1.0
    lo, plo = kd_loss(pred, grid, t_box, t_logits, torch.full((1, A), 0.2), w, t=0.5)
    hi, phi = kd_loss(pred, grid, t_box, t_logits, torch.full((1, A), 0.95), w, t=0.5)
    assert phi["lambda_mean"] == pytest.approx(float(torch.sigmoid(torch.tensor(0.45))), abs=1e-6)
    assert plo["lambda_mean"] == pytest.approx(float(torch.sigmoid(torch.tensor(-0.3))), abs=1e-6)
    assert float(hi) > float(lo) > 0


@pytest.mark.skipif(not (DATA.exists() and YUNET.exists()), reason="needs ../shared data and YuNet weights")
def test_tiny_training_run_from_the_pretrained_start_lowers_the_loss():
    from models.data import read_dataset, split
    from models.train.yunet import YuNetDetector, load_yunet
    from models.train.losses import flatten_levels

    torch.manual_seed(0)
    torch.set_num_threads(1)
    train, _ = split(read_dataset(DATA))
    ds = FaceSet(train[:4], 160, p_zoom=1.0, seed=0, pseudo="label",
                 unlabelled={train[0].image.stem: np.array([[0, 0, 30, 30]], np.float32)})
    batch = [torch.stack(t) for t in zip(*[ds[i] for i in range(4)])]
    x, tgt_box, tgt_cls, ignore = batch[:4]
    assert x.shape == (4, 3, 160, 160) and (tgt_cls >= 0).any()
    model = YuNetDetector(3, load_yunet(YUNET)).train()
    grid = torch.from_numpy(np.stack(yolo_grid((160, 160)), axis=1))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss, _ = finetune_loss(flatten_levels(model(x)), grid, tgt_box, tgt_cls, ignore)
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(float(loss.detach()))
    print("tiny run losses", [round(v, 3) for v in losses])
    assert losses[-1] < 0.8 * losses[0]


def test_class_branch_learns_from_the_first_step():
    # the class branch's BatchNorm scale starts small but not 0: a 0 scale before a ReLU gets no gradient
    from models.nets.yunet import BRANCH_INIT_SCALE, YuNetDetector

    torch.manual_seed(0)
    m = YuNetDetector(3).train()
    out = m(torch.rand(2, 3, 64, 64))
    sum(o[:, 5:].sum() for o in out).backward()
    for u in m.cls_branch:
        assert float(u.bn.weight.detach()[0]) == pytest.approx(BRANCH_INIT_SCALE)
        assert float(u.bn.weight.grad.abs().sum()) > 0


def test_deeper_class_branch_learns_from_the_first_step_and_round_trips():
    from models.nets.yunet import BRANCH_INIT_SCALE, YuNetDetector, load_yunet_detector

    torch.manual_seed(0)
    m = YuNetDetector(3, cls_depth=2).train()
    out = m(torch.rand(2, 3, 64, 64))
    sum(o[:, 5:].sum() for o in out).backward()
    for b in m.cls_branch:
        assert len(b) == 2
        assert float(b[-1].bn.weight.detach()[0]) == pytest.approx(BRANCH_INIT_SCALE)
        assert float(b[0].bn.weight.grad.abs().sum()) > 0 and float(b[-1].bn.weight.grad.abs().sum()) > 0
    m.eval()
    again = load_yunet_detector({"net": {"num_classes": 3, "cls_hidden": True, "cls_depth": 2}, "ema": m.state_dict()})
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(m(x), again.eval()(x)))


def test_class_positive_weight_scales_the_rare_class_term_only():
    grid = _grid()
    A = grid.shape[0]
    torch.manual_seed(0)
    pred = torch.randn(1, A, 8) * 0.1
    tgt_box = torch.zeros(1, A, 4)
    tgt_box[0, :2] = torch.tensor([0.0, 0.0, 8.0, 8.0])
    no_ign = torch.zeros(1, A, dtype=torch.bool)
    cls = torch.full((1, A), -1, dtype=torch.long)
    cls[0, 0] = 2  # mask_incorrect
    _, base = finetune_loss(pred, grid, tgt_box, cls, no_ign)
    _, w = finetune_loss(pred, grid, tgt_box, cls, no_ign, cls_pos_weight=[1.0, 1.0, 4.0])
    _, same = finetune_loss(pred, grid, tgt_box, cls, no_ign, cls_pos_weight=[4.0, 4.0, 1.0])
    assert w["cls"] > base["cls"] * 1.5      # the mask_incorrect positive counts 4x
    assert same["cls"] == pytest.approx(base["cls"])  # weights of absent positives change nothing
