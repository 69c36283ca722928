"""Fine-tuning the Ultra-Light SSD: prior matching and the multibox loss on hand-made boxes, and a tiny
training run on real photos from the pretrained start that lowers the loss."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.train.ultralight import match_priors, multibox_loss
from models.nets.ultralight import decode_boxes, encode_boxes, priors

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DATA = SHARED / "data" / "face-mask-andrewmvd"
PTH = SHARED / "weights" / "ultra-light" / "RFB-640-masked_face-v2.pth"


def _corners(p):
    return np.concatenate([p[:, :2] - p[:, 2:] / 2, p[:, :2] + p[:, 2:] / 2], 1)


def test_every_label_gets_its_best_prior_and_priors_at_iou_035_join():
    pri = priors((256, 256))
    # a 24 px face exactly on a prior of stride 8 (cell (4, 4): centre 36 px), a tiny 4 px face no prior
    # reaches 0.35 IoU with, and a 100 px face of class mask_incorrect
    boxes = np.array([[24, 24, 48, 48], [200, 10, 204, 14], [100, 120, 200, 220]], np.float32) / 256
    lab, matched = match_priors(boxes, np.array([1, 0, 2]), pri, 0.35)
    corners = _corners(pri)
    from edge.decoders import box_iou
    iou = box_iou(corners, boxes)
    for n, c in enumerate([1, 0, 2]):
        best = int(iou[:, n].argmax())
        assert lab[best] == c + 1 and np.allclose(matched[best], boxes[n])  # forced, however low its IoU
    assert iou[:, 1].max() < 0.35 and (lab == 1).sum() == 1  # the tiny face: only its best prior
    exact = int(np.flatnonzero(np.all(np.isclose(corners, boxes[0]), 1))[0])
    assert lab[exact] == 2 and iou[exact, 0] == pytest.approx(1.0)
    # every other positive overlaps its label by >= 0.35, every background prior overlaps all labels less
    forced = set(iou.argmax(0).tolist())
    for p in np.flatnonzero(lab > 0):
        if p not in forced:
            assert iou[p].max() >= 0.35
    assert (iou[lab == 0].max(1) < 0.35).all()
    assert (lab == 3).sum() > 1  # the big face has several priors of 96 / 128 px
    # the encoded targets decode back to the labels
    t = encode_boxes(torch.from_numpy(matched), torch.from_numpy(pri))
    back = decode_boxes(t, torch.from_numpy(pri)).numpy()
    assert np.allclose(back[lab > 0], matched[lab > 0], atol=1e-5)
    empty_l, empty_b = match_priors(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), pri)
    assert (empty_l == 0).all() and not empty_b.any()


def test_multibox_loss_mines_three_hard_negatives_per_positive():
    P = 20
    conf = torch.zeros(1, P, 4)
    conf[0, :, 0] = torch.arange(P, dtype=torch.float32) / 4  # background logit: priors 0.. are the hardest negatives
    labels = torch.zeros(1, P, dtype=torch.long)
    labels[0, 19] = 2  # one positive (no_mask)
    loc = torch.zeros(1, P, 4, requires_grad=True)
    tgt = torch.zeros(1, P, 4)
    tgt[0, 19] = torch.tensor([0.5, 0.0, 0.0, 2.0])
    conf.requires_grad_(True)
    loss, parts = multibox_loss(conf, loc, labels, tgt, 3.0)
    loss.backward()
    # only the positive and the three lowest-background-logit priors (0, 1, 2) get a class gradient
    touched = conf.grad[0].abs().sum(1) > 0
    assert touched.nonzero().flatten().tolist() == [0, 1, 2, 19]
    assert loc.grad[0, :19].abs().sum() == 0 and loc.grad[0, 19].abs().sum() > 0
    assert parts["loc"] == pytest.approx(0.125 + 1.5)  # smooth L1: 0.5 * 0.5^2 + (2 - 0.5)
    # no positive: no negatives either, a zero loss
    loss0, _ = multibox_loss(conf.detach(), loc.detach(), torch.zeros(1, P, dtype=torch.long), tgt)
    assert float(loss0) == 0.0


@pytest.mark.skipif(not PTH.exists(), reason="needs ../shared/weights/ultra-light")
def test_tiny_training_run_from_the_pretrained_start_lowers_the_loss():
    from models.data import read_dataset, split
    from models.train.ultralight import _face_set_class
    from models.nets.ultralight import UltraLightDetector, load_ultralight

    torch.manual_seed(0)
    torch.set_num_threads(1)
    train, _ = split(read_dataset(DATA))
    ds = _face_set_class()(train[:4], 160, p_zoom=1.0, seed=0)
    x, tgt_loc, tgt_labels = [torch.stack(t) for t in zip(*[ds[i] for i in range(4)])]
    assert x.shape == (4, 3, 160, 160) and tgt_labels.shape == (4, len(priors((160, 160))))
    # the zoomed crops hold faces (30 % of crops are random, and a face zoomed past the crop can be cut away)
    assert int((tgt_labels > 0).any(1).sum()) >= 2
    model = UltraLightDetector(3, load_ultralight(PTH)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(8):
        conf, loc, _ = model.raw(x)
        loss, _ = multibox_loss(conf, loc, tgt_labels, tgt_loc)
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(float(loss.detach()))
    print("tiny run losses", [round(v, 3) for v in losses])
    assert losses[-1] < 0.8 * losses[0]


def test_min_neg_mines_background_only_images_and_ignored_priors_are_never_negatives():
    P = 20
    conf = torch.zeros(2, P, 4)
    conf[:, :, 0] = torch.arange(P, dtype=torch.float32) / 4  # priors 0.. are the hardest negatives
    labels = torch.zeros(2, P, dtype=torch.long)
    labels[0, 19] = 1               # image 0: one face; image 1: background only (a shelf, a sign)
    labels[:, 0] = -1               # prior 0 lies on an unlabelled face in both images
    loc, tgt = torch.zeros(2, P, 4), torch.zeros(2, P, 4)
    conf.requires_grad_(True)
    loss, _ = multibox_loss(conf, loc, labels, tgt, 3.0, min_neg=5)
    loss.backward()
    touched = [(conf.grad[b].abs().sum(1) > 0).nonzero().flatten().tolist() for b in range(2)]
    assert touched[0] == [1, 2, 3, 4, 5, 19]   # max(3 x 1, 5) hardest negatives, prior 0 skipped, + the face
    assert touched[1] == [1, 2, 3, 4, 5]       # the background-only image now teaches 5 negatives
    conf.grad = None
    multibox_loss(conf, loc, labels, tgt, 3.0)[0].backward()  # SSD's rule: the background image adds nothing
    assert conf.grad[1].abs().sum() == 0 and (conf.grad[0].abs().sum(1) > 0).nonzero().flatten().tolist() == [1, 2, 3, 19]


def test_priors_on_an_unlabelled_face_are_ignored():
    from models.train.ultralight import ignored_priors

    pri = priors((256, 256))
    face = np.array([[100, 100, 148, 148]], np.float32) / 256
    ign = ignored_priors(face, pri)
    corners = _corners(pri)
    from edge.decoders import box_iou
    iou = box_iou(corners, face)[:, 0]
    assert ign[iou >= 0.35].all() and ign.sum() >= (iou >= 0.35).sum() >= 1
    far = (corners[:, 0] > 160 / 256) | (corners[:, 2] < 90 / 256)
    assert not ign[far].any()
    assert not ignored_priors(np.zeros((0, 4), np.float32), pri).any()


def test_dataset_marks_unlabelled_faces_as_ignored_priors():
    from models.data import read_dataset, split
    from models.train.ultralight import _face_set_class

    train, _ = split(read_dataset(DATA))
    import cv2

    # a photo that fits the crop at half size, so that no crop cuts the boxes (only padding)
    s, h, w = next((t, *cv2.imread(str(t.image)).shape[:2]) for t in train
                   if len(t.boxes) >= 1 and max(cv2.imread(str(t.image)).shape[:2]) <= 500)
    # an "unlabelled face" as large as the photo: every prior on the photo lies in it
    ub = {s.image.stem: np.array([[0, 0, w, h]], np.float32)}
    plain = _face_set_class()([s], 256, p_zoom=0.0, scale=(0.5, 0.5), seed=3)[0][2]
    withu = _face_set_class()([s], 256, p_zoom=0.0, scale=(0.5, 0.5), seed=3, unlabelled=ub)[0][2]
    assert (plain >= 0).all() and not (plain == -1).any()
    assert torch.equal(withu > 0, plain > 0) and (withu > 0).any()  # the labelled faces stay positives
    ign = withu == -1
    assert bool((plain[ign] == 0).all())               # only background priors become ignored ...
    assert int(ign.sum()) > 0.15 * len(withu)          # ... all those on the photo (it fills part of the crop)
