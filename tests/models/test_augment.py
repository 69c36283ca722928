"""Augmentation keeps boxes on the faces."""
from __future__ import annotations

import cv2
import numpy as np

from models.train import augment
from models.data import read_voc


def test_boxes_follow_the_faces_through_scale_crop_flip_and_colour():
    # white "faces" of 12-150 px on black: after augmentation each box must still frame white pixels
    rng = np.random.default_rng(0)
    img = np.zeros((480, 640, 3), np.uint8)
    boxes = np.array([[40, 40, 52, 52], [200, 100, 260, 170], [400, 200, 550, 350], [100, 300, 130, 330]], np.float32)
    for x1, y1, x2, y2 in boxes.astype(int):
        img[y1:y2, x1:x2] = 255
    t = augment.train_transform(crop=320)
    t.set_random_seed(1)
    checked = 0
    for _ in range(40):
        out, b, l = augment.apply(t, img, boxes, np.arange(4))
        assert out.shape == (320, 320, 3)
        assert len(b) == len(l)
        for x1, y1, x2, y2 in b:
            assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 320
            if x2 - x1 < 8 or y2 - y1 < 8:
                continue
            inner = out[int(y1) + 2:int(y2) - 2, int(x1) + 2:int(x2) - 2].mean(axis=2)
            assert (inner > 100).mean() > 0.9, "box lost its face"
            above = out[int(y1) - 4:int(y1) - 1, int(x1):int(x2)] if y1 >= 4 else out[:0]
            below = out[int(y2) + 1:int(y2) + 4, int(x1):int(x2)]
            ring = np.concatenate([above.reshape(-1, 3), below.reshape(-1, 3)])
            if len(ring):
                bright = (ring.mean(axis=1) > 100).mean()
                assert bright < 0.5, "box is larger than its face"
            checked += 1
    assert checked > 40


def test_scale_jitter_zooms_in_and_out_on_real_images(face_mask_dir):
    samples = read_voc(face_mask_dir)[:30]
    t = augment.train_transform(crop=320)
    t.set_random_seed(2)
    widths, orig = [], np.concatenate([s.boxes[:, 2] - s.boxes[:, 0] for s in samples])
    for s in samples:
        img = cv2.imread(str(s.image))
        for _ in range(3):
            _, b, _ = augment.apply(t, img, s.boxes, s.labels)
            widths += (b[:, 2] - b[:, 0]).tolist()
    widths = np.array(widths)
    assert len(widths) > 100
    # faces come out both smaller than the originals' lower quartile and beyond twice their upper quartile
    assert np.percentile(widths, 5) < np.percentile(orig, 25)
    assert np.percentile(widths, 95) > 2 * np.percentile(orig, 75)


def test_face_zoom_brings_a_face_into_the_entrance_range_on_real_photos(face_mask_dir):
    # the shared photos' faces are ~22 px; face_zoom must give one of them 40-250 px, and every box
    # must scale with the image (checked against the white-patch frame in the first test's style)
    samples = read_voc(face_mask_dir)[:40]
    rng = np.random.default_rng(0)
    hit = 0
    for s in samples:
        img = cv2.imread(str(s.image))
        out, b = augment.face_zoom(img, s.boxes, rng, (40.0, 250.0))
        sx, sy = out.shape[1] / img.shape[1], out.shape[0] / img.shape[0]
        np.testing.assert_allclose(b, s.boxes * np.array([sx, sy, sx, sy], np.float32), rtol=1e-5)
        w = b[:, 2] - b[:, 0]
        hit += bool(((w >= 40 * 0.98) & (w <= 250 * 1.02)).any())
    # a face under 5 px cannot reach 40 px within the 8x bound; nearly every photo has a bigger one
    assert hit >= 36


def test_face_zoom_then_crop_keeps_boxes_on_the_faces():
    img = np.zeros((300, 400, 3), np.uint8)
    boxes = np.array([[50, 50, 70, 70], [200, 120, 230, 150]], np.float32)
    for x1, y1, x2, y2 in boxes.astype(int):
        img[y1:y2, x1:x2] = 255
    rng = np.random.default_rng(3)
    t = augment.train_transform(crop=320, scale=None)
    t.set_random_seed(3)
    big = 0
    for _ in range(20):
        z, zb = augment.face_zoom(img, boxes, rng, (60.0, 200.0))
        out, b, _ = augment.apply(t, z, zb, np.arange(2))
        for x1, y1, x2, y2 in b:
            if x2 - x1 < 8 or y2 - y1 < 8:
                continue
            inner = out[int(y1) + 2:int(y2) - 2, int(x1) + 2:int(x2) - 2].mean(axis=2)
            assert (inner > 100).mean() > 0.9
            big += (x2 - x1) >= 55
    assert big >= 10
