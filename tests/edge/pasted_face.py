"""Test videos with a pasted face (a real no_mask face from the training photos, at one place in every
frame of a shared clip), optionally with camera-like degradations applied per frame after pasting:

* ``noise``: Gaussian sensor noise, sigma 6 grey levels, new every frame (a webcam indoors);
* ``gain``: a slow gain ramp over the whole clip, x0.6 -> x1.3 (a door opening, auto-exposure);
* ``jpeg``: every frame JPEG re-encoded at quality 50 (an MJPG camera at a low setting);
* ``camera``: all three together (noise, then gain, then JPEG).

Written with ``cv2.VideoWriter`` (MJPG .avi). Used by tests/edge/test_stationary.py and
tests/edge/test_liveness.py.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np

from conftest import DATA

#: per clip: the training photo and the top-left corner (px) where its face is pasted, left of the person;
#: both faces are detected as no_mask there (see the control tests)
PHOTOS = {"unmasked": ("maksssksksss148", (40, 380)), "masked_woman": ("maksssksksss609", (40, 60))}
DEGRADATIONS = ("none", "noise", "gain", "jpeg", "camera")


def face_crop(name: str, width: int = 130, pad: float = 0.35) -> np.ndarray:
    """The widest ``without_mask`` face of a training photo, with ``pad`` margin, scaled to a ``width`` px face."""
    root = ET.parse(DATA / "face-mask-andrewmvd" / "annotations" / f"{name}.xml").getroot()
    boxes = [[int(float(o.find("bndbox").find(k).text)) for k in ("xmin", "ymin", "xmax", "ymax")]
             for o in root.findall("object") if o.find("name").text == "without_mask"]
    x1, y1, x2, y2 = max(boxes, key=lambda b: b[2] - b[0])
    img = cv2.imread(str(DATA / "face-mask-andrewmvd" / "images" / f"{name}.jpg"))
    assert img is not None
    w, h = x2 - x1, y2 - y1
    crop = img[max(0, int(y1 - pad * h)):int(y2 + pad * h), max(0, int(x1 - pad * w)):int(x2 + pad * w)]
    s = width / float(w)
    return cv2.resize(crop, (int(crop.shape[1] * s), int(crop.shape[0] * s)), interpolation=cv2.INTER_AREA)


def degrade(img: np.ndarray, how: str, i: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Frame ``i`` of ``n`` with degradation ``how`` (one of :data:`DEGRADATIONS`) applied."""
    if how == "none":
        return img
    out = img.astype(np.float32)
    if how in ("noise", "camera"):
        out += rng.normal(0.0, 6.0, out.shape).astype(np.float32)
    if how in ("gain", "camera"):
        out *= 0.6 + 0.7 * i / max(n - 1, 1)
    out = np.clip(out, 0, 255).astype(np.uint8)
    if how in ("jpeg", "camera"):
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 50])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


def with_poster(src, out, name, at, how: str = "none"):
    """``src`` with the face of photo ``name`` pasted at ``at`` in every frame, degraded by ``how``, written to
    ``out`` (MJPG .avi). Returns (frames, the photo's (x1, y1, x2, y2) in px)."""
    patch = face_crop(name)
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS)
    n_total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    rng = np.random.default_rng(0)
    writer = None
    n = 0
    x, y = at
    while True:
        ok, img = cap.read()
        if not ok:
            break
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, (img.shape[1], img.shape[0]))
        img[y:y + patch.shape[0], x:x + patch.shape[1]] = patch
        writer.write(degrade(img, how, n, n_total, rng))
        n += 1
    cap.release()
    writer.release()
    return n, (x, y, x + patch.shape[1], y + patch.shape[0])


def on_photo(box, photo) -> bool:
    """Whether the centre of the xyxy ``box`` lies on the pasted photo (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return photo[0] <= cx <= photo[2] and photo[1] <= cy <= photo[3]


def scaled(src, out: Path, size, max_frames=None) -> int:
    """``src`` resized to ``size`` (w, h) with INTER_LINEAR, written to ``out`` (MJPG .avi); returns frames."""
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, tuple(size))
    n = 0
    while max_frames is None or n < max_frames:
        ok, img = cap.read()
        if not ok:
            break
        writer.write(cv2.resize(img, tuple(size), interpolation=cv2.INTER_LINEAR))
        n += 1
    cap.release()
    writer.release()
    return n
