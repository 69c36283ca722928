"""Training augmentation (albumentations), box-aware.

Scale jitter 0.6-2.5x that also zooms in (the shared photos' median face is
22 px; an entrance camera's faces are about 20-125 px at the 640x368 input),
crops centred on a face most of the time, translation, horizontal flip, colour
and brightness jitter. Boxes are transformed with the image by albumentations.

:func:`face_zoom` adds what a global jitter cannot reach: it rescales a photo so
that one of its faces (picked at random) gets a width drawn log-uniformly from a
target range (40-250 px by default, the entrance camera's near faces), then the
crop/flip/colour steps of :func:`train_transform` (``scale=None``) follow.
"""
from __future__ import annotations

from typing import Optional, Tuple

import albumentations as A
import cv2
import numpy as np


def train_transform(crop: int = 320, scale: Optional[Tuple[float, float]] = (0.6, 2.5),
                    p_face_crop: float = 0.7) -> A.Compose:
    """Compose the training augmentation.

    Args:
        crop: square output crop side in px (a multiple of the stride).
        scale: (min, max) resize factor applied before cropping; ``None`` for no rescale (the
            image was already rescaled by :func:`face_zoom`).
        p_face_crop: probability the crop is forced to contain at least one face.

    Returns:
        an ``A.Compose`` called as ``t(image=bgr_uint8, bboxes=(N,4) xyxy px, labels=(N,))``.
    """
    rescale = [] if scale is None else [
        A.RandomScale(scale_limit=(scale[0] - 1.0, scale[1] - 1.0), interpolation=cv2.INTER_LINEAR, p=1.0)]
    return A.Compose([
        *rescale,
        A.Affine(translate_percent=(-0.1, 0.1), border_mode=cv2.BORDER_CONSTANT, fill=114, p=0.3),
        A.PadIfNeeded(min_height=crop, min_width=crop, border_mode=cv2.BORDER_CONSTANT, fill=114),
        A.OneOf([A.AtLeastOneBBoxRandomCrop(height=crop, width=crop, p=p_face_crop),
                 A.RandomCrop(height=crop, width=crop, p=1.0 - p_face_crop)], p=1.0),
        A.HorizontalFlip(p=0.5),
        A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03, p=0.8),
        A.ToGray(p=0.05),
    ], bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=0.4, min_area=4.0),
        seed=None)


def apply(t: A.Compose, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run ``t``; returns (image (S,S,3) uint8, boxes (K,4) float32 xyxy px, labels (K,) int64)."""
    h, w = image.shape[:2]
    b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
    ok = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    out = t(image=image, bboxes=b[ok], labels=np.asarray(labels)[ok])
    return (out["image"], np.asarray(out["bboxes"], np.float32).reshape(-1, 4),
            np.asarray(out["labels"], np.int64).reshape(-1))


def face_zoom(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator,
              target: Tuple[float, float] = (40.0, 250.0), max_scale: float = 8.0) -> Tuple[np.ndarray, np.ndarray]:
    """Rescale ``image`` so one random face gets a width log-uniform in ``target`` px.

    Args:
        image: (H, W, 3) uint8 BGR.
        boxes: (N, 4) float32 xyxy in px; with N = 0 the image is returned unchanged.
        rng: the random generator (seeded by the caller).
        target: (min, max) face width in px after the rescale.
        max_scale: bound on the zoom factor (and ``1 / max_scale`` on the shrink), so a 2-px box
            cannot blow an image up 100x.

    Returns:
        ``(image, boxes)`` rescaled by the same factor (boxes (N, 4) float32 xyxy px).
    """
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    w = b[:, 2] - b[:, 0]
    ok = np.flatnonzero(w >= 4)
    if not len(ok):
        return image, b
    face_w = float(w[rng.choice(ok)])
    want = float(np.exp(rng.uniform(np.log(target[0]), np.log(target[1]))))
    s = float(np.clip(want / face_w, 1.0 / max_scale, max_scale))
    h0, w0 = image.shape[:2]
    size = (max(1, int(round(w0 * s))), max(1, int(round(h0 * s))))
    out = cv2.resize(image, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    return out, b * np.array([size[0] / w0, size[1] / h0, size[0] / w0, size[1] / h0], np.float32)
