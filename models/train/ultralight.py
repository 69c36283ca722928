"""Fine-tune the pretrained Ultra-Light RFB masked-face SSD into the 3-class mask detector (issue 12:
the second pretrained starting point, next to YuNet-n in :mod:`models.train.yunet`).

CLI (the same data and schedule as the retired yunet_mask, docs/models.md: two stages of 4 epochs, one thread)::

    C="--data ../shared/data/face-mask-andrewmvd --crop 256 --epochs 4"
    python -m models.train.ultralight $C --out runs/ul/s1
    python -m models.train.ultralight $C --out runs/ul/s2 --init-ckpt runs/ul/s1/best.pt --lr 1e-3
    python -m models.train.ultralight --data ../shared/data/face-mask-andrewmvd --out runs/ul/zeroshot --zero-shot

What it does:

* **Start**: :class:`models.nets.ultralight.UltraLightDetector` from
  ``../shared/weights/ultra-light/RFB-640-masked_face-v2.pth`` (backbone, boxes pretrained; classes
  remapped: mask <- masked_face, no_mask <- face, mask_incorrect <- their mean, lowered).
* **Data**: :class:`models.train.yunet.FaceSet`'s pipeline unchanged (training split by md5 of the stem,
  face zoom to 40-250 px on ``--p-zoom`` of the photos else the 0.6-2.5x scale jitter, crop, flip,
  colour jitter, repeat-factor sampling); only the targets differ: SSD prior matching
  (:func:`match_priors`) instead of the YOLO cell assignment.
* **Loss**: :func:`multibox_loss` (Liu et al. SSD, ECCV 2016, Sec. 2.2: smooth L1 on the positives'
  encoded offsets + softmax cross-entropy with hard-negative mining at 3 negatives per positive).
  ``--min-neg K``: every crop contributes at least K hard negatives, also a crop without a face
  (SSD's rule gives those none: the photos' shelves, signs and foliage would never be negatives).
* **Ignore regions** (``--pseudo ignore``): priors on faces the pretrained YuNet finds and no label
  accounts for (:func:`models.train.yunet.unlabelled_faces`) are neither positives nor negatives, so
  the missing annotations are not mined as hard negatives.
* Validation every epoch on the validation split at the deployed 640x352 letterbox by
  :func:`models.train.yunet.validate` (VOC mAP@0.5 mask/no_mask picks ``best.pt``), the same figures as
  the YuNet runs.

No bf16 autocast and no channels_last. Resumable (``--resume``).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from edge.decoders import CLASS_NAMES
from edge.model import ModelMeta
from models.train import augment
from models.train.yunet import (DEFAULT_YUNET, add_schedule_args, finetune_loader, finetune_loop, head_optimiser,
                               start_run, training_unlabelled_faces, validate)
from models.nets.ultralight import UltraLightDetector, encode_boxes, load_ultralight, priors

log = logging.getLogger("models.train.ultralight")

DEFAULT_WEIGHTS = (Path(__file__).resolve().parents[2].parent / "shared" / "weights" / "ultra-light"
                   / "RFB-640-masked_face-v2.pth")
ARCH = "ultralight_detector"


def detector_meta(input_w: int = 640, input_h: int = 352) -> ModelMeta:
    """The metadata the fine-tuned SSD ships with: decoder ``ssd``, input RGB / 255 letterbox, the same
    clustering as ``yunet_mask`` (per-class NMS 0.5, class-agnostic NMS 0.6, nested boxes > 0.7 dropped)."""
    return ModelMeta(input_w=input_w, input_h=input_h, decoder="ssd", outputs={"scores": "scores", "boxes": "boxes"},
                     strides=[8, 16, 32, 64],
                     cluster={"method": "nms", "conf_threshold": 0.1, "iou_threshold": 0.5, "dbscan_eps": 0.6,
                              "dbscan_min_samples": 0.0, "max_detections": 100, "nested_overlap": 0.7})


def prior_corners(pri: np.ndarray) -> np.ndarray:
    """(P, 4) float32 priors ``(cx, cy, w, h)`` -> (P, 4) float32 ``xyxy``, both normalised to the input."""
    return np.concatenate([pri[:, :2] - pri[:, 2:] / 2, pri[:, :2] + pri[:, 2:] / 2], 1)


def match_priors(boxes: np.ndarray, labels: np.ndarray, pri: np.ndarray, iou_threshold: float = 0.35
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """SSD's matching strategy (Liu et al. 2016, Sec. 2.2 "Matching strategy").

    Every label is matched to the prior of highest IoU with it (so each face gets at least one
    positive, however small), and every other prior to the label it overlaps most, when that IoU is
    ``>= iou_threshold`` (0.35 as the Ultra-Light authors train; SSD used 0.5). A prior that is the
    best prior of two labels goes to the later one.

    Args:
        boxes: (N, 4) float32 xyxy labels, normalised to the input (0-1).
        labels: (N,) int64 class ids ``0..C-1``.
        pri: (P, 4) float32 priors ``(cx, cy, w, h)`` normalised (:func:`models.nets.ultralight.priors`).

    Returns:
        ``(prior_labels (P,) int64: 0 background, c + 1 for class c; matched (P, 4) float32 xyxy of the
        matched label, zeros for background)``.
    """
    from edge.decoders import box_iou

    P = len(pri)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    out_l = np.zeros(P, np.int64)
    out_b = np.zeros((P, 4), np.float32)
    if len(boxes) == 0:
        return out_l, out_b
    corners = prior_corners(pri)
    iou = box_iou(corners, boxes)                # (P, N)
    best_t = iou.argmax(1)
    best_iou = iou[np.arange(P), best_t]
    for n, p in enumerate(iou.argmax(0)):        # each label's best prior, forced
        best_t[p], best_iou[p] = n, 2.0
    pos = best_iou >= iou_threshold
    out_l[pos] = np.asarray(labels, np.int64)[best_t[pos]] + 1
    out_b[pos] = boxes[best_t[pos]]
    return out_l, out_b


def ignored_priors(boxes: np.ndarray, pri: np.ndarray, iou_threshold: float = 0.35) -> np.ndarray:
    """Priors that overlap an unlabelled face: IoU ``>= iou_threshold`` (the positive rule of
    :func:`match_priors`) or more than half of the prior inside the face.

    Args:
        boxes: (K, 4) float32 xyxy unlabelled faces, normalised to the input (0-1).
        pri: (P, 4) float32 priors ``(cx, cy, w, h)`` normalised.

    Returns:
        (P,) bool.
    """
    from edge.decoders import _overlap, box_iou

    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros(len(pri), bool)
    corners = prior_corners(pri)
    inter = _overlap(corners, boxes)[0]
    area = (corners[:, 2] - corners[:, 0]) * (corners[:, 3] - corners[:, 1])
    return ((box_iou(corners, boxes) >= iou_threshold) | (inter / area[:, None] > 0.5)).any(1)


def multibox_loss(conf: torch.Tensor, loc: torch.Tensor, tgt_labels: torch.Tensor, tgt_loc: torch.Tensor,
                  neg_pos_ratio: float = 3.0, min_neg: int = 0) -> Tuple[torch.Tensor, Dict[str, float]]:
    """SSD's multibox loss (Liu et al. 2016, eq. 1 with alpha = 1, and Sec. 2.2 "Hard negative mining").

    ``L = (L_loc + L_conf) / N`` over the N positive priors of the batch: ``L_loc`` the smooth L1 of
    the positives' predicted vs encoded offsets (:func:`models.nets.ultralight.encode_boxes`, variances
    0.1 / 0.2); ``L_conf`` the softmax cross-entropy over the positives and, per image, the
    ``max(neg_pos_ratio x its positives, min_neg)`` background priors with the highest background
    loss (hard negatives). With ``min_neg`` 0, as in SSD, an image without positives contributes
    none, so the crops of the training photos' background (shelves, signs, clothes) never teach
    the detector what is not a face; ``min_neg > 0`` mines them too.

    Args:
        conf: (B, P, 1 + C) class logits, background first. loc: (B, P, 4) raw offsets.
        tgt_labels: (B, P) int64, 0 background, c + 1 for class c, -1 ignored (neither positive nor
            negative: an unlabelled face the pretrained face detector found, ``--pseudo ignore``).
            tgt_loc: (B, P, 4) encoded offsets.
        neg_pos_ratio: hard negatives per positive. min_neg: hard negatives per image at least.

    Returns:
        (scalar loss, {"loc", "cls", "n_pos": float}).
    """
    pos = tgt_labels > 0
    n_pos_img = pos.sum(1, keepdim=True)
    with torch.no_grad():
        bg_loss = -F.log_softmax(conf, dim=2)[..., 0]
        bg_loss[pos | (tgt_labels < 0)] = -math.inf
        rank = bg_loss.argsort(1, descending=True).argsort(1)
        n_neg = (n_pos_img * neg_pos_ratio).clamp(min=min_neg)
        neg = (rank < n_neg) & (tgt_labels == 0)
    keep = pos | neg
    n = pos.sum().clamp(min=1).float()
    l_cls = F.cross_entropy(conf[keep], tgt_labels[keep], reduction="sum") / n
    l_loc = F.smooth_l1_loss(loc[pos], tgt_loc[pos], reduction="sum") / n if pos.any() else loc.sum() * 0.0
    return l_loc + l_cls, {"loc": float(l_loc.detach()), "cls": float(l_cls.detach()), "n_pos": float(pos.sum())}


def _face_set_class():
    from models.train.yunet import FaceSet

    class SSDFaceSet(FaceSet):
        """:class:`models.train.yunet.FaceSet`'s photos and augmentation with SSD targets.

        Items: ``image (3, S, S) float32 RGB / 255, tgt_loc (P, 4) float32 encoded offsets, tgt_labels (P,)
        int64`` (0 background, c + 1 for class c) for the priors of an S x S crop.
        """

        def __init__(self, samples, crop: int, p_zoom: float = 0.5, scale=(0.6, 2.5), seed: int = 0,
                     iou_threshold: float = 0.35, unlabelled=None, synth=None, p_synth: float = 0.0):
            self.synth, self.p_synth = synth or {}, p_synth  # stem -> {label index: (5, 2) landmarks}
            super().__init__(samples, crop, unlabelled=unlabelled, pseudo="ignore" if unlabelled else "none",
                             p_zoom=p_zoom, scale=scale, seed=seed)
            self.pri = priors((crop, crop))
            self.pri_t = torch.from_numpy(self.pri)
            self.iou_threshold = iou_threshold

        def set_random_seed(self, seed: int) -> None:
            super().set_random_seed(seed)
            # its own generator: with --synth 0 the other draws are those of the runs without synthesis
            self.synth_rng = np.random.default_rng(seed + 7919)

        def __getitem__(self, i: int):
            s = self.samples[i]
            gt = np.asarray(s.boxes, np.float32).reshape(-1, 4)
            ub = np.asarray(self.unlabelled.get(s.image.stem, np.zeros((0, 4), np.float32)), np.float32).reshape(-1, 4)
            n_gt = len(gt)
            boxes = np.concatenate([gt, ub])
            img = self.images[i]
            labels = np.asarray(s.labels, np.int64)
            if self.p_synth > 0 and s.image.stem in self.synth:  # synthetic masks / beards / hands (models.train.synth_masks)
                from models.train.synth_masks import augment_photo
                img, labels = augment_photo(img, labels, self.synth[s.image.stem], self.synth_rng, self.p_synth)
            if n_gt and self.rng.random() < self.p_zoom:  # as FaceSet: one labelled face to 40-250 px
                h0, w0 = img.shape[:2]
                img, _ = augment.face_zoom(img, gt, self.rng)
                boxes = boxes * np.array([img.shape[1] / w0, img.shape[0] / h0] * 2, np.float32)
                t = self.t_zoom
            else:
                t = self.t_scale
            img, boxes, idx = augment.apply(t, img, boxes, np.arange(len(boxes)))
            is_gt = idx < n_gt
            lab, matched = match_priors(boxes[is_gt] / self.crop, labels[idx[is_gt]],
                                        self.pri, self.iou_threshold)
            if (~is_gt).any():  # priors on an unlabelled face are neither positives nor negatives
                lab[(lab == 0) & ignored_priors(boxes[~is_gt] / self.crop, self.pri, self.iou_threshold)] = -1
            tgt_loc = encode_boxes(torch.from_numpy(matched), self.pri_t)
            tgt_loc[torch.from_numpy(lab <= 0)] = 0.0
            x = img[:, :, ::-1].astype(np.float32).transpose(2, 0, 1) / 255.0
            return torch.from_numpy(np.ascontiguousarray(x)), tgt_loc, torch.from_numpy(lab)

    return SSDFaceSet


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="Ultra-Light masked-face .pth (start)")
    ap.add_argument("--init", choices=["pretrained", "scratch"], default="pretrained")
    ap.add_argument("--zero-shot", action="store_true", help="only validate the starting network (zeroshot.json)")
    ap.add_argument("--iou-threshold", type=float, default=0.35, help="prior matching IoU")
    ap.add_argument("--neg-pos-ratio", type=float, default=3.0)
    ap.add_argument("--min-neg", type=int, default=0,
                    help="hard negatives per image at least (0: as SSD; images without faces then teach nothing)")
    ap.add_argument("--pseudo", choices=["none", "ignore"], default="none",
                    help="ignore: priors on faces the pretrained YuNet finds and no label accounts for are "
                         "neither positives nor negatives (models.train.yunet.unlabelled_faces)")
    ap.add_argument("--pseudo-conf", type=float, default=0.5, help="YuNet confidence of an unlabelled face")
    ap.add_argument("--faces-cache", type=Path, help="YuNet face predictions .npz (models.train.yunet; made if missing)")
    ap.add_argument("--yunet", type=Path, default=DEFAULT_YUNET, help="YuNet checkpoint of the face teacher")
    ap.add_argument("--synth", type=float, default=0.0,
                    help="synthetic masks (models.train.synth_masks): probability that a training no_mask face with YuNet "
                         "landmarks is drawn on in a sample (worn mask -> mask, under the nose / on the chin -> "
                         "mask_incorrect, beard / hand over the mouth -> no_mask); 0: off")
    ap.add_argument("--synth-cache", type=Path, help="YuNet landmarks .npz (models.train.synth_masks; made if missing; "
                    "default OUT/landmarks.npz)")
    add_schedule_args(ap)
    ap.set_defaults(epochs=4, crop=256)
    return ap.parse_args(argv)


def build_model(args) -> UltraLightDetector:
    model = UltraLightDetector(len(CLASS_NAMES), load_ultralight(args.weights) if args.init == "pretrained" else None)
    if args.init_ckpt:  # a second stage: continue from a finished run's EMA weights
        model.load_state_dict(torch.load(args.init_ckpt, map_location="cpu", weights_only=False)["ema"])
    return model


def fit(args: argparse.Namespace) -> List[Dict]:
    """Train as configured by :func:`parse_args`; returns the history (one dict per epoch)."""
    from models.data import class_counts
    from models.train.loop import warmup_cosine

    train_s, val_s = start_run(args)
    meta = detector_meta(args.input_w, args.input_h)
    model = build_model(args)
    if args.zero_shot:
        rec = validate(model, meta, val_s)
        (args.out / "zeroshot.json").write_text(json.dumps(rec, indent=1))
        log.info("zero-shot %s", json.dumps(rec))
        return [rec]
    unlabelled = None
    if args.pseudo == "ignore":
        unlabelled = training_unlabelled_faces(train_s, args.yunet, args.faces_cache or args.out / "faces.npz",
                                               args.pseudo_conf)
    log.info("train %d images %s, val %d; pseudo %s (%d unlabelled faces); hard negatives >= %d per image",
             len(train_s), class_counts(train_s), len(val_s), args.pseudo,
             sum(len(v) for v in unlabelled.values()) if unlabelled else 0, args.min_neg)
    synth = None
    if args.synth > 0:  # landmarks of the training photos only
        from models.train.synth_masks import face_landmarks
        synth = face_landmarks(train_s, args.yunet, args.synth_cache or args.out / "landmarks.npz")
        log.info("synthesis on %d no_mask faces (p %.2f)", sum(len(v) for v in synth.values()), args.synth)
    ds = _face_set_class()(train_s, args.crop, args.p_zoom, args.scale, args.seed, args.iou_threshold, unlabelled,
                           synth, args.synth)
    ds.set_random_seed(args.seed)
    dl = finetune_loader(ds, train_s, args, torch.Generator().manual_seed(args.seed))
    opt = head_optimiser(model, ("net.classification_headers.",), args)
    sched = warmup_cosine(opt, args.epochs * len(dl), len(dl))

    def step(batch):
        x, tgt_loc, tgt_labels = batch
        conf, loc, _ = model.raw(x)
        return multibox_loss(conf, loc, tgt_labels, tgt_loc, args.neg_pos_ratio, args.min_neg)

    loop = finetune_loop(args, ARCH, {"num_classes": len(CLASS_NAMES)}, model, opt, sched, meta, val_s,
                         {"loss": "total", "loc": "L_loc (smooth L1)", "cls": "L_conf (CE, 3:1 mining)"},
                         ("voc_m", "voc_AP50_", "nc_", "face_"), lambda epoch: ds.set_random_seed(args.seed + 7919 * epoch),
                         log)
    return loop.run(dl, step)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    fit(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
