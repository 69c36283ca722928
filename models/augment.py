"""Training augmentation (albumentations), box-aware.

Scale jitter 0.6-2.5x that also zooms in (the shared photos' median face is
22 px; an entrance camera's faces are about 20-125 px at the 640x368 input),
crops centred on a face most of the time, translation, horizontal flip, colour
and brightness jitter. Boxes are transformed with the image by albumentations.
"""
from __future__ import annotations

from typing import Tuple

import albumentations as A
import cv2
import numpy as np


def train_transform(crop: int = 320, scale: Tuple[float, float] = (0.6, 2.5), p_face_crop: float = 0.7) -> A.Compose:
    """Compose the training augmentation.

    Args:
        crop: square output crop side in px (a multiple of the stride).
        scale: (min, max) resize factor applied before cropping.
        p_face_crop: probability the crop is forced to contain at least one face.

    Returns:
        an ``A.Compose`` called as ``t(image=bgr_uint8, bboxes=(N,4) xyxy px, labels=(N,))``.
    """
    return A.Compose([
        A.RandomScale(scale_limit=(scale[0] - 1.0, scale[1] - 1.0), interpolation=cv2.INTER_LINEAR, p=1.0),
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
