"""The overlay on a real frame: class colours, labels, banner, status line and zone."""
from __future__ import annotations

import cv2
import numpy as np

from edge.overlay import COLORS, Overlay
from edge.types import Detections

CLASSES = ["mask", "no_mask", "mask_incorrect"]


def frame(videos):
    cap = cv2.VideoCapture(str(videos["unmasked"]))
    ok, img = cap.read()
    cap.release()
    return img


def close_to(px, color, tol=10):
    return np.abs(px.astype(int) - np.asarray(color)).max() <= tol


def test_boxes_coloured_by_class_with_labels(videos):
    img = frame(videos)
    d = Detections([[100, 200, 300, 400], [700, 200, 900, 400], [1000, 500, 1100, 600]], [0.9, 0.8, 0.7],
                   [0, 1, 2], [1, 2, -1])
    out = Overlay(CLASSES).draw(img, d, fps=12.5)
    assert out is not img and np.array_equal(img, frame(videos)), "the source frame is not modified"
    assert close_to(out[300, 100], COLORS["mask"]) and close_to(out[300, 700], COLORS["no_mask"])
    assert close_to(out[550, 1000], COLORS["mask_incorrect"])
    assert not close_to(img[300, 700], COLORS["no_mask"])
    # a filled label bar above each box
    bar = out[200 - 22:200 - 4, 702:800].reshape(-1, 3)
    assert (np.abs(bar.astype(int) - COLORS["no_mask"]).max(axis=1) <= 10).mean() > 0.5
    # the status line (black bar, white text) in the top-left corner
    corner = out[:30, :300]
    assert (corner.max(axis=2) < 10).mean() > 0.5 and (corner.min(axis=2) > 200).any()


def test_banner_only_while_alarm_and_zone_drawn(videos):
    img = frame(videos)
    ov = Overlay(CLASSES, zone=[(0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75)])
    calm = ov.draw(img, Detections.empty(), alarm=False)
    loud = ov.draw(img, Detections.empty(), alarm=True)
    bottom = loud[-60:, :, :].reshape(-1, 3)
    assert (np.abs(bottom.astype(int) - (0, 0, 200)).max(axis=1) < 10).mean() > 0.6, "red banner at the bottom"
    assert not np.array_equal(calm[-60:], loud[-60:])
    assert close_to(calm[180, 640], (255, 200, 0), tol=60), "zone edge drawn at y = 0.25 * 720"


def test_picture_boxes_are_dimmed_and_the_status_line_shows_the_counts_given(videos):
    from edge.overlay import DIM
    img = frame(videos)
    d = Detections([[100, 200, 300, 400], [700, 200, 900, 400]], [0.8, 0.8], [1, 1], [1, 2])
    out = Overlay(CLASSES).draw(img, d, pictures=np.array([True, False]))
    dim = tuple(int(round(DIM * v)) for v in COLORS["no_mask"])
    assert close_to(out[300, 100], dim) and not close_to(out[300, 100], COLORS["no_mask"], tol=40)
    assert close_to(out[300, 700], COLORS["no_mask"])
    # the status line: the given people-in-view counts, not one per box
    a = Overlay(CLASSES).draw(img, d, counts={"mask": 0, "no_mask": 1, "mask_incorrect": 0})
    b = Overlay(CLASSES).draw(img, d)  # no counts: both boxes counted
    assert not np.array_equal(a[:30, :400], b[:30, :400])
    c = Overlay(CLASSES).draw(img, d[np.array([1])], counts=None)  # one no_mask box: the same text as a
    assert np.array_equal(a[:30, :400], c[:30, :400])
