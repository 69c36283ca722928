"""Synthetic masks from YuNet's 5 landmarks (models.train.synth_masks) on a real training face."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from models.train.synth_masks import (KINDS, SHAPES, FaceFrame, augment_photo, mask_polygon, match_landmarks, point_in,
                                synthesize, yunet_faces)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DATA = SHARED / "data" / "face-mask-andrewmvd"
YUNET = SHARED / "weights" / "yunet" / "yunet_n.pth"
#: a training photo (md5 split: not validation) with one large unmasked face
PHOTO = "maksssksksss609"


@pytest.fixture(scope="module")
def face():
    if not YUNET.exists() or not (DATA / "images" / f"{PHOTO}.jpg").exists():
        pytest.skip("shared data not available")
    from models.data import is_validation, read_voc
    from models.nets.yunet import load_yunet

    assert not is_validation(PHOTO)
    s = [x for x in read_voc(DATA) if x.stem == PHOTO][0]
    img = cv2.imread(str(s.image))
    boxes, scores, kps = yunet_faces(load_yunet(YUNET), img, long_side=1280)
    lm = match_landmarks(s.boxes, boxes, kps)
    nm = [i for i in lm if s.labels[i] == 1]
    assert nm, "YuNet finds no labelled no_mask face on the photo"
    i = max(nm, key=lambda k: s.boxes[k][2] - s.boxes[k][0])
    return img, s.boxes[i], lm[i], s.labels


def test_landmarks_lie_on_the_face(face):
    img, box, kps, _ = face
    x1, y1, x2, y2 = box
    assert (kps[:, 0] > x1 - 2).all() and (kps[:, 0] < x2 + 2).all() and (kps[:, 1] > y1 - 2).all()
    assert kps[0, 0] < kps[1, 0] and kps[3, 0] < kps[4, 0]  # eyes and mouth corners left to right
    assert kps[2, 1] > kps[:2, 1].max() and kps[3:, 1].min() > kps[2, 1] - 1  # nose below the eyes, mouth below


@pytest.mark.parametrize("shape", SHAPES)
def test_worn_mask_covers_nose_tip_and_mouth_corners(face, shape):
    _, _, kps, _ = face
    fr = FaceFrame.from_landmarks(kps)
    rng = np.random.default_rng(0)
    for _ in range(20):  # whatever the random variation of the outline
        poly = mask_polygon(fr, shape, "worn", rng)
        assert point_in(poly, kps[2]) and point_in(poly, kps[3]) and point_in(poly, kps[4])
        assert not point_in(poly, kps[0]) and not point_in(poly, kps[1])  # the eyes stay free
        for placement in ("under_nose", "chin"):
            bad = mask_polygon(fr, shape, placement, rng)
            assert not point_in(bad, kps[2]), placement  # mask_incorrect: the nose tip is uncovered
        assert not point_in(mask_polygon(fr, shape, "chin", rng), kps[3])  # on the chin: the mouth too


def test_synthesis_draws_on_the_face_and_relabels(face, tmp_path):
    img, box, kps, labels = face
    rng = np.random.default_rng(1)
    x1, y1, x2, y2 = (int(v) for v in box)
    for kind, label in KINDS.items():
        im = img.copy()
        lab, poly = synthesize(im, kps, kind, rng)
        assert lab == label
        diff = np.abs(im.astype(int) - img.astype(int)).sum(2) > 0
        assert diff.any(), kind
        ys, xs = np.nonzero(diff)
        pad = 0.6 * (x2 - x1)  # ear loops / a hand may reach past the face box, not far
        assert xs.min() >= x1 - pad and xs.max() <= x2 + pad and ys.min() >= y1 - pad, kind
    # a photo-level draw: only no_mask faces with landmarks change label, the photo itself is not modified
    i = int(np.nonzero(labels == 1)[0][0])
    before = img.copy()
    out, lab = augment_photo(img, labels, {i: kps}, np.random.default_rng(3), p_face=1.0)
    assert (img == before).all() and lab[i] in (0, 1, 2) and (np.delete(lab, i) == np.delete(labels, i)).all()
