"""Pre-processing on a real photo: the fast anti-aliased resize and the letterbox mapping."""
from __future__ import annotations

import cv2
import numpy as np

from edge.preprocess import letterbox, resize, unletterbox_boxes


def _frame(face_mask_dir):
    return cv2.resize(cv2.imread(str(face_mask_dir / "images" / "maksssksksss0.jpg")), (1280, 720))


def test_resize_matches_inter_area(face_mask_dir):
    img = _frame(face_mask_dir)
    # an integer factor is exactly OpenCV's INTER_AREA
    assert np.array_equal(resize(img, (640, 360)), cv2.resize(img, (640, 360), interpolation=cv2.INTER_AREA))
    # a 2.5x shrink stays within a grey level of INTER_AREA on average (no aliasing of plain INTER_LINEAR)
    area = cv2.resize(img, (512, 288), interpolation=cv2.INTER_AREA).astype(np.float32)
    ours = resize(img, (512, 288)).astype(np.float32)
    plain = cv2.resize(img, (512, 288), interpolation=cv2.INTER_NEAREST).astype(np.float32)
    assert ours.shape == (288, 512, 3)
    assert np.abs(ours - area).mean() < 1.5 < np.abs(plain - area).mean()
    # enlarging uses INTER_LINEAR
    small = img[:100, :160]
    assert np.array_equal(resize(small, (320, 200)), cv2.resize(small, (320, 200), interpolation=cv2.INTER_LINEAR))


def test_letterbox_round_trip(face_mask_dir):
    img = _frame(face_mask_dir)
    out, lb = letterbox(img, (512, 288))
    assert out.shape == (288, 512, 3) and lb.pad_y == 0 and abs(lb.scale_x - 0.4) < 1e-6
    out2, lb2 = letterbox(img, (640, 368))
    assert out2.shape == (368, 640, 3) and lb2.pad_y == 4 and (out2[:4] == 114).all()
    boxes = np.array([[100, 50, 300, 260]], np.float32)
    inp = boxes * lb2.scale_x + np.array([lb2.pad_x, lb2.pad_y] * 2, np.float32)
    np.testing.assert_allclose(unletterbox_boxes(inp, lb2, (1280, 720)), boxes, atol=1e-3)
