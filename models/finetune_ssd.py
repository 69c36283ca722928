"""Fine-tune the pretrained Ultra-Light RFB masked-face SSD into the 3-class mask detector (issue 12:
the second pretrained starting point, next to YuNet-n in :mod:`models.finetune`).

CLI (the same data and schedule as models/yunet_mask/MODEL_CARD.md: two stages of 4 epochs, one thread)::

    C="--data ../shared/data/face-mask-andrewmvd --crop 256 --epochs 4"
    python -m models.finetune_ssd $C --out runs/ul/s1
    python -m models.finetune_ssd $C --out runs/ul/s2 --init-ckpt runs/ul/s1/best.pt --lr 1e-3
    python -m models.finetune_ssd --data ../shared/data/face-mask-andrewmvd --out runs/ul/zeroshot --zero-shot

What it does:

* **Start**: :class:`models.nets.ultralight.UltraLightDetector` from
  ``../shared/weights/ultra-light/RFB-640-masked_face-v2.pth`` (backbone, boxes pretrained; classes
  remapped: mask <- masked_face, no_mask <- face, mask_incorrect <- their mean, lowered).
* **Data**: :class:`models.finetune.FaceSet`'s pipeline unchanged (training split by md5 of the stem,
  face zoom to 40-250 px on ``--p-zoom`` of the photos else the 0.6-2.5x scale jitter, crop, flip,
  colour jitter, repeat-factor sampling); only the targets differ: SSD prior matching
  (:func:`match_priors`) instead of the YOLO cell assignment.
* **Loss**: :func:`multibox_loss` (Liu et al. SSD, ECCV 2016, Sec. 2.2: smooth L1 on the positives'
  encoded offsets + softmax cross-entropy with hard-negative mining at 3 negatives per positive).
* Validation every epoch on the validation split at the deployed 640x352 letterbox by
  :func:`models.finetune.validate` (VOC mAP@0.5 mask/no_mask picks ``best.pt``), the same figures as
  the YuNet runs.

No bf16 autocast and no channels_last. Resumable (``--resume``).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from edge.decoders import CLASS_NAMES
from edge.model import ModelMeta
from models import augment
from models.nets.ultralight import UltraLightDetector, encode_boxes, load_ultralight, priors

log = logging.getLogger("models.finetune_ssd")

DEFAULT_WEIGHTS = (Path(__file__).resolve().parents[1].parent / "shared" / "weights" / "ultra-light"
                   / "RFB-640-masked_face-v2.pth")
ARCH = "ultralight_detector"


def detector_meta(input_w: int = 640, input_h: int = 352) -> ModelMeta:
    """The metadata the fine-tuned SSD ships with: decoder ``ssd``, input RGB / 255 letterbox, the same
    clustering as ``yunet_mask`` (per-class NMS 0.5, class-agnostic NMS 0.6, nested boxes > 0.7 dropped)."""
    return ModelMeta(input_w=input_w, input_h=input_h, decoder="ssd", outputs={"scores": "scores", "boxes": "boxes"},
                     strides=[8, 16, 32, 64],
                     cluster={"method": "nms", "conf_threshold": 0.1, "iou_threshold": 0.5, "dbscan_eps": 0.6,
                              "dbscan_min_samples": 0.0, "max_detections": 100, "nested_overlap": 0.7})
