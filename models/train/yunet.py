"""Fine-tune a pretrained face detector (YuNet-n) into the 3-class mask detector, with face zoom,
difficulty-aware distillation and teacher pseudo-labels (issue 12).

CLI (the recipe of the retired yunet_mask release, docs/models.md: two stages of 4 epochs, one CPU thread)::

    C="--data ../shared/data/face-mask-andrewmvd --crop 256 --epochs 4"
    # no KD: hard labels only, from the pretrained YuNet-n (stage 1), then stage 2 from its best.pt
    python -m models.train.yunet $C --out runs/ft/nokd
    python -m models.train.yunet $C --out runs/ft/nokd_s2 --init-ckpt runs/ft/nokd/best.pt --lr 1e-3 --cls-lr-mult 5
    # KD from the ResNet-18 DetectNet_v2 (classes) with λ_i = sigmoid(conf_i - t)
    python -m models.train.yunet $C --out runs/ft/kd --teacher models/released/detectnet_v2_r18/model.onnx
    # KD + the YuNet teacher's confident unlabelled faces as pseudo-labels (or --pseudo ignore)
    python -m models.train.yunet $C --out runs/ft/kdpl --teacher models/released/detectnet_v2_r18/model.onnx \
        --pseudo label --pseudo-conf 0.5
    # the same schedule from random weights (the from-scratch comparison)
    python -m models.train.yunet $C --out runs/ft/scratch --init scratch

What it does:

* **Start**: :class:`models.nets.yunet.YuNetDetector` from ``../shared/weights/yunet/yunet_n.pth``
  (face boxes and objectness from the pretrained heads; the class head starts as the face class).
* **Data**: the training split (md5-of-stem, :func:`models.data.split`) of the updated photos; with
  probability ``--p-zoom`` a photo is rescaled so that one face is 40-250 px wide
  (:func:`models.train.augment.face_zoom`), else the global 0.6-2.5x scale jitter; then crop, flip and
  colour jitter (:func:`models.train.augment.train_transform`).
* **Hard labels**: :func:`finetune_loss` (the student's focal objectness + class BCE + GIoU).
* **Pseudo-labels** (:func:`unlabelled_faces`): faces the pretrained YuNet finds with confidence
  ``>= --pseudo-conf`` that match no label (IoU < 0.3 and less than half inside a label) are
  missing annotations. ``--pseudo ignore``: their cells are left out of the objectness loss;
  ``--pseudo label``: they are positives for objectness and box, with no class target.
* **KD** (seed 000, :func:`models.train.losses.kd_loss`): the ResNet-18 teacher's objects (cached once,
  ``teacher.npz``), ``λ_i = sigmoid(conf_i - t)``, box and softened-class terms.
* Validation every epoch on the validation split at the deployed input size, by
  :func:`models.evaluation.evaluate.truth_metrics` (VOC mAP@0.5 mask/no_mask picks ``best.pt``).

No bf16 autocast and no channels_last (the dev CPU has no AVX-512 BF16). Resumable (``--resume``).
"""
from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from edge.decoders import CLASS_NAMES, YoloParams, assign_yolo, box_iou, intersection_over_smaller, yolo_grid
from edge.model import ModelMeta, postprocess, preprocess
from models.train import augment
from models.data import Sample, class_counts, read_dataset, repeat_factors, split, write_split
from models.evaluation.evaluate import run_images, truth_metrics
from models.train.losses import flatten_levels, focal_objectness, giou_loss, kd_loss, yolo_decode_boxes
from models.nets.yunet import STRIDES, PwDw, YuNetDetector, checkpoint_variant, load_yunet
from models.train.loop import EMA, Loop, seed_everything, warmup_cosine
from models.train.yolo_student import teacher_cell_targets

log = logging.getLogger("models.train.yunet")
cv2.setNumThreads(1)

DEFAULT_YUNET = Path(__file__).resolve().parents[2].parent / "shared" / "weights" / "yunet" / "yunet_n.pth"
#: tgt_cls value of a pseudo-labelled face: an object whose class is unknown.
PSEUDO = -2


def unlabelled_faces(faces: np.ndarray, conf: np.ndarray, gt_boxes: np.ndarray, min_conf: float = 0.7,
                     max_iou: float = 0.3, max_inside: float = 0.5) -> np.ndarray:
    """Teacher faces that no label accounts for: the training photos' missing annotations.

    Args:
        faces: (K, 4) float32 xyxy teacher boxes. conf: (K,) teacher confidence 0-1.
        gt_boxes: (N, 4) float32 xyxy labelled faces of the same photo.
        min_conf: keep teacher faces at or above this confidence.
        max_iou: a teacher face with IoU above this with any label is that label.
        max_inside: ... as is one whose intersection with a label covers more than this of the smaller box.

    Returns:
        (M,) int64 indices into ``faces`` of the unlabelled ones.
    """
    faces = np.asarray(faces, np.float32).reshape(-1, 4)
    ok = np.asarray(conf) >= min_conf
    g = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    if len(g) and len(faces):
        ok &= box_iou(faces, g).max(1) <= max_iou
        ok &= intersection_over_smaller(faces, g).max(1) <= max_inside
    return np.flatnonzero(ok)


@torch.no_grad()
def face_teacher(samples: Sequence[Sample], weights: Path, long_side: int = 640, min_conf: float = 0.3
                 ) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Run the pretrained YuNet-n on every photo (letterboxed to ``long_side``, multiples of 32).

    Returns per image stem ``(boxes (K,4) float32 xyxy photo px, conf (K,) float32)`` (face score
    ``sigmoid(cls) * sigmoid(obj)``, NMS 0.45, class-agnostic).
    """
    net = YuNetDetector(1, load_yunet(weights)).eval()
    out = {}
    for s in samples:
        img = cv2.imread(str(s.image))
        h, w = img.shape[:2]
        k = long_side / max(h, w)
        iw, ih = int(math.ceil(w * k / 32) * 32), int(math.ceil(h * k / 32) * 32)
        meta = ModelMeta(input_w=iw, input_h=ih, decoder="yolo", outputs={f"p{x}": f"p{x}" for x in STRIDES},
                         classes=["face"], cluster={"method": "nms", "conf_threshold": min_conf, "iou_threshold": 0.45})
        x, lb = preprocess(img, meta)
        lv = net(torch.from_numpy(x))
        b, sc, _ = postprocess({f"p{st}": t.numpy() for st, t in zip(STRIDES, lv)}, meta, lb, (w, h))
        out[s.image.stem] = (b.astype(np.float32), sc.astype(np.float32))
    return out


def save_faces(path: Path, faces: Dict[str, Tuple[np.ndarray, np.ndarray]]) -> None:
    arrays = {}
    for stem, (b, c) in faces.items():
        arrays[f"{stem}/boxes"], arrays[f"{stem}/conf"] = b, c
    np.savez_compressed(path, **arrays)


def load_faces(path: Path) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    z = np.load(path)
    stems = {k.rsplit("/", 1)[0] for k in z.files}
    return {s: (z[f"{s}/boxes"], z[f"{s}/conf"]) for s in stems}


def training_unlabelled_faces(samples: Sequence[Sample], yunet: Path, cache: Path, min_conf: float
                              ) -> Dict[str, np.ndarray]:
    """Per photo stem, the (M, 4) float32 xyxy photo-px faces the pretrained YuNet (``yunet``) finds at
    confidence ``>= min_conf`` that no label accounts for (:func:`unlabelled_faces`). The YuNet
    predictions are read from ``cache`` (.npz, :func:`save_faces`), or made and written there."""
    faces = load_faces(cache) if cache.exists() else face_teacher(samples, yunet)
    if not cache.exists():
        save_faces(cache, faces)
    none = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    out = {}
    for s in samples:
        b, c = faces.get(s.image.stem, none)
        out[s.image.stem] = b[unlabelled_faces(b, c, s.boxes, min_conf)]
    return out


def finetune_loss(pred: torch.Tensor, grid: torch.Tensor, tgt_box: torch.Tensor, tgt_cls: torch.Tensor,
                  ignore: torch.Tensor, box_weight: float = 2.0, obj_weight: float = 1.0, cls_weight: float = 1.0,
                  focal_alpha: float = 0.25, focal_gamma: float = 2.0, cls_pos_weight: Sequence[float] = None
                  ) -> Tuple[torch.Tensor, Dict[str, float]]:
    """Hard-label loss with pseudo-labels and ignore regions.

    As :func:`models.train.losses.yolo_loss` (focal objectness over all cells / P, class BCE and
    ``1 - GIoU`` over positives / P), and:

    Args:
        tgt_cls: (B, A) int64: class id ``>= 0``; :data:`PSEUDO` (-2) an object of unknown class
            (objectness and box targets, no class target); -1 background.
        ignore: (B, A) bool: cells left out of the objectness loss (unlabelled teacher faces with
            ``--pseudo ignore``).
        cls_pos_weight: (C,) weight of each class's positive term in the class BCE (``pos_weight`` of
            ``binary_cross_entropy_with_logits``); None = 1. A rare class (``mask_incorrect``: 118 of
            3,535 training faces) otherwise never wins the decoder's arg-max over classes.

    Returns:
        (scalar loss, {"box", "obj", "cls": float}).
    """
    import torch.nn.functional as F

    pos = tgt_cls != -1
    known = tgt_cls >= 0
    n_pos = pos.sum().clamp(min=1).float()
    l_obj = focal_objectness(pred[..., 4], pos.float(), n_pos, focal_alpha, focal_gamma, keep=~ignore)
    if known.any():
        pk = pred[known]
        onehot = F.one_hot(tgt_cls[known], pk.shape[-1] - 5).float()
        pw = None if cls_pos_weight is None else torch.as_tensor(cls_pos_weight, dtype=pk.dtype)
        l_cls = F.binary_cross_entropy_with_logits(pk[:, 5:], onehot, reduction="sum", pos_weight=pw) / n_pos
    else:
        l_cls = pred.sum() * 0.0
    if pos.any():
        boxes = yolo_decode_boxes(pred[pos][:, :4], grid.unsqueeze(0).expand(pred.shape[0], -1, -1)[pos])
        l_box = giou_loss(boxes, tgt_box[pos]).sum() / n_pos
    else:
        l_box = pred.sum() * 0.0
    loss = box_weight * l_box + obj_weight * l_obj + cls_weight * l_cls
    return loss, {"box": float(l_box.detach()), "obj": float(l_obj.detach()), "cls": float(l_cls.detach())}


class FaceSet(Dataset):
    """Augmented square crops with targets.

    Items (A = cells of all levels of an S x S crop): ``image (3,S,S) float32 RGB/255, tgt_box
    (A,4) float32 xyxy px, tgt_cls (A,) int64 (class, PSEUDO or -1), ignore (A,) bool, t_box (A,4),
    t_logits (A,C), t_conf (A,), t_cell_w (A,)`` (the KD targets as :class:`models.train.yolo_student.StudentSet`):
    from ``teacher`` (per-photo objects carried through the augmentation) or, with ``online_teacher``
    (a callable ``(S, S, 3) uint8 BGR crop -> (boxes, conf, logits)``), made on the crop itself.
    """

    def __init__(self, samples: Sequence[Sample], crop: int, teacher=None, unlabelled=None, pseudo: str = "none",
                 p_zoom: float = 0.5, scale=(0.6, 2.5), seed: int = 0, params: YoloParams = YoloParams(),
                 online_teacher: Callable = None):
        self.online_teacher = online_teacher  # crop -> (boxes, conf, logits): KD targets made on the crop itself
        self.samples = list(samples)
        self.images = [cv2.imread(str(s.image)) for s in self.samples]
        self.crop, self.params, self.pseudo, self.p_zoom = crop, params, pseudo, p_zoom
        self.teacher = teacher or {}
        self.unlabelled = unlabelled or {}
        self.t_scale = augment.train_transform(crop, tuple(scale))
        self.t_zoom = augment.train_transform(crop, None)
        self.C = len(CLASS_NAMES)
        self.A = len(yolo_grid((crop, crop), params)[0])
        self.set_random_seed(seed)  # the photo-level draws and both albumentations pipelines: reproducible

    def set_random_seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.t_scale.set_random_seed(seed)
        self.t_zoom.set_random_seed(seed + 1)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples[i]
        C = self.C
        tb, tc, tl = self.teacher.get(s.image.stem, (np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                                                     np.zeros((0, C), np.float32)))
        ub = self.unlabelled.get(s.image.stem, np.zeros((0, 4), np.float32)) if self.pseudo != "none" \
            else np.zeros((0, 4), np.float32)
        gt = np.asarray(s.boxes, np.float32).reshape(-1, 4)
        n_gt, n_t = len(gt), len(tb)
        boxes = np.concatenate([gt, tb.reshape(-1, 4), ub.reshape(-1, 4)])
        img = self.images[i]
        if len(gt) and self.rng.random() < self.p_zoom:
            h0, w0 = img.shape[:2]
            img, _ = augment.face_zoom(img, gt, self.rng)  # one labelled face to 40-250 px
            boxes = boxes * np.array([img.shape[1] / w0, img.shape[0] / h0] * 2, np.float32)
            t = self.t_zoom
        else:
            t = self.t_scale
        img, boxes, idx = augment.apply(t, img, boxes, np.arange(len(boxes)))
        hw = (self.crop, self.crop)
        A = self.A
        is_gt, is_t, is_u = idx < n_gt, (idx >= n_gt) & (idx < n_gt + n_t), idx >= n_gt + n_t
        # labels and unlabelled faces share one assignment (the smaller box owns a shared cell)
        lab_boxes = np.concatenate([boxes[is_gt], boxes[is_u]])
        lab_cls = np.concatenate([np.asarray(s.labels, np.int64)[idx[is_gt]], np.full(int(is_u.sum()), PSEUDO, np.int64)])
        own = assign_yolo(lab_boxes, hw, self.params)
        tgt_box = np.zeros((A, 4), np.float32)
        tgt_cls = np.full(A, -1, np.int64)
        m = own >= 0
        tgt_box[m], tgt_cls[m] = lab_boxes[own[m]], lab_cls[own[m]]
        ignore = np.zeros(A, bool)
        if self.pseudo == "ignore":
            ignore = tgt_cls == PSEUDO
            tgt_cls[ignore] = -1
        if self.online_teacher is not None:  # the teacher sees exactly the student's input
            tb, tc, tl = self.online_teacher(np.ascontiguousarray(img))
            t_box, t_logits, t_conf, t_cell_w = teacher_cell_targets(tb, np.arange(len(tb)), tc, tl, hw, self.params)
        else:
            t_box, t_logits, t_conf, t_cell_w = teacher_cell_targets(boxes[is_t], idx[is_t] - n_gt, tc, tl, hw,
                                                                     self.params)
        x = img[:, :, ::-1].astype(np.float32).transpose(2, 0, 1) / 255.0
        return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in
                     (x, tgt_box, tgt_cls, ignore, t_box, t_logits, t_conf, t_cell_w))


def detector_meta(args) -> ModelMeta:
    """The metadata the fine-tuned detector ships with (decoder ``yolo``, input RGB / 255)."""
    return ModelMeta(input_w=args.input_w, input_h=args.input_h, decoder="yolo",
                     outputs={f"p{s}": f"p{s}" for s in STRIDES}, strides=list(STRIDES),
                     cluster={"method": "nms", "conf_threshold": 0.1, "iou_threshold": 0.5, "dbscan_eps": 0.6,
                              "dbscan_min_samples": 0.0, "max_detections": 100, "nested_overlap": 0.7})


def torch_infer_fp32(model: torch.nn.Module, meta: ModelMeta):
    """``(1,3,H,W) float32 ndarray -> {p8, p16, p32: ndarray}`` in plain fp32 (no autocast, no channels_last)."""
    @torch.no_grad()
    def infer(x: np.ndarray) -> Dict[str, np.ndarray]:
        return {r: o.numpy() for r, o in zip(meta.output_roles, model(torch.from_numpy(x)))}
    return infer


def validate(model: torch.nn.Module, meta: ModelMeta, samples: Sequence[Sample]) -> Dict[str, float]:
    """Issue-12 figures of ``model`` on ``samples`` at the deployed input size (flat dict for the history)."""
    model.eval()
    infer = torch_infer_fp32(model, meta)
    imgs = [s.image for s in samples]
    gts = [(s.boxes, s.labels) for s in samples]
    per = run_images(infer, meta, imgs, class_agnostic=False)
    dep = run_images(infer, meta, imgs, class_agnostic=True)
    t = truth_metrics(gts, per, dep)
    rec = {k: v for k, v in t.items() if k.startswith("voc_")}
    rec["nc_recall_050"], rec["nc_precision_050"] = t["nc"][0]["recall"], t["nc"][0]["precision"]
    fr = t["face_recall"][0]
    rec["face_recall_ge32_fppi05"] = fr["recall_ge32"]
    return rec


def add_schedule_args(ap: argparse.ArgumentParser) -> None:
    """The options every fine-tuning CLI shares (this module's and :mod:`models.train.ultralight`'s): data,
    output, the second-stage start, sampling, optimiser and schedule, augmentation, input size, seed,
    threads and the smoke-test limits. Callers set their own defaults with ``ap.set_defaults``."""
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--init-ckpt", type=Path, help="start from this run's best.pt / last.pt EMA weights")
    ap.add_argument("--rfs", type=float, default=0.3, help="repeat-factor sampling threshold (0: uniform)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3, help="AdamW peak learning rate (cosine, 1 epoch warm-up)")
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--cls-lr-mult", type=float, default=1.0, help="learning-rate factor of the new class head(ers)")
    ap.add_argument("--crop", type=int, default=320)
    ap.add_argument("--p-zoom", type=float, default=0.5)
    ap.add_argument("--scale", type=float, nargs=2, default=[0.6, 2.5])
    ap.add_argument("--input-w", type=int, default=640)
    ap.add_argument("--input-h", type=int, default=352)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-hex", default="01")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (smoke tests)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N training images (smoke tests)")
    ap.add_argument("--no-val", action="store_true")
    ap.add_argument("--resume", action="store_true")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", choices=["yunet", "scratch"], default="yunet")
    ap.add_argument("--yunet", type=Path, default=DEFAULT_YUNET, help="YuNet checkpoint, n or s (start and face teacher)")
    ap.add_argument("--teacher", type=Path, help="3-class teacher ONNX (DetectNet_v2) for KD; omit for no KD")
    ap.add_argument("--teacher-cache", type=Path, help="teacher .npz (made from --teacher if missing)")
    ap.add_argument("--teacher-min-conf", type=float, default=0.5)
    ap.add_argument("--kd-t", type=float, default=0.5, help="t of λ_i = sigmoid(conf_i - t)")
    ap.add_argument("--kd-weight", type=float, default=1.0)
    ap.add_argument("--kd-temperature", type=float, default=2.0)
    ap.add_argument("--kd-class-form", choices=["softmax", "sigmoid"], default="softmax",
                    help="class term of the KD loss (models.train.losses.kd_loss): the printed softmax or the sigmoid head's")
    ap.add_argument("--kd-box-weight", type=float, default=1.0)
    ap.add_argument("--pseudo", choices=["none", "ignore", "label"], default="none")
    ap.add_argument("--pseudo-conf", type=float, default=0.7, help="YuNet confidence of an unlabelled face")
    ap.add_argument("--faces-cache", type=Path, help="YuNet face predictions .npz (made if missing)")
    ap.add_argument("--no-cls-hidden", dest="cls_hidden", action="store_false",
                    help="class head straight on the shared features (no class branch of its own)")
    ap.add_argument("--cls-depth", type=int, default=1, help="PW-DW units in the class branch")
    ap.add_argument("--cls-pos-weight", type=float, nargs=3, metavar=("MASK", "NO_MASK", "MASK_INCORRECT"),
                    help="positive weight per class in the class BCE (default 1 1 1)")
    add_schedule_args(ap)
    ap.set_defaults(epochs=12, crop=320)
    return ap.parse_args(argv)


def build_model(args) -> YuNetDetector:
    """The detector to train: from ``--init-ckpt`` (a finished run's EMA weights, its own variant), else
    from the pretrained ``--yunet`` checkpoint (YuNet-n or -s, told by the file), else random
    (``--init scratch``, the variant of ``--yunet``)."""
    if getattr(args, "init_ckpt", None):  # continue from a finished run's EMA weights (a second stage)
        ck = torch.load(args.init_ckpt, map_location="cpu", weights_only=False)
        model = YuNetDetector(len(CLASS_NAMES), None, cls_hidden=args.cls_hidden,
                              variant=ck["net"].get("variant", "n"), cls_depth=ck["net"].get("cls_depth", 1))
        model.load_state_dict(ck["ema"])
        if model.cls_branch is not None:
            from models.nets.yunet import BRANCH_INIT_SCALE
            with torch.no_grad():
                for b in model.cls_branch:  # a branch saved dead (BN scale 0: no gradient) is revived
                    u = b if isinstance(b, PwDw) else b[-1]
                    if float(u.bn.weight.abs().max()) == 0.0:
                        u.bn.weight.fill_(BRANCH_INIT_SCALE)
        return model
    if args.init == "yunet":
        return YuNetDetector(len(CLASS_NAMES), load_yunet(args.yunet), cls_hidden=args.cls_hidden,
                             cls_depth=args.cls_depth)
    sd = torch.load(args.yunet, map_location="cpu", weights_only=False)
    return YuNetDetector(len(CLASS_NAMES), None, cls_hidden=args.cls_hidden,
                         variant=checkpoint_variant(sd.get("state_dict", sd)), cls_depth=args.cls_depth)


def fit(args: argparse.Namespace) -> List[Dict]:
    """Train as configured by :func:`parse_args`; returns the history (one dict per epoch)."""
    train_s, val_s = start_run(args)
    teacher = None
    if args.teacher or args.teacher_cache:
        from models.train.yolo_student import load_teacher, save_teacher, teacher_predictions
        if args.teacher_cache and args.teacher_cache.exists():
            teacher = load_teacher(args.teacher_cache)
        else:
            teacher = teacher_predictions(args.teacher, train_s, args.teacher_min_conf)
            save_teacher(args.teacher_cache or args.out / "teacher.npz", teacher)
        teacher = {k: (b[c >= args.teacher_min_conf], c[c >= args.teacher_min_conf], l[c >= args.teacher_min_conf])
                   for k, (b, c, l) in teacher.items()}
    unlabelled = None
    if args.pseudo != "none":
        unlabelled = training_unlabelled_faces(train_s, args.yunet, args.faces_cache or args.out / "faces.npz",
                                               args.pseudo_conf)
    distil = teacher is not None
    log.info("train %d images %s, val %d; KD %s (%d teacher objects); pseudo %s (%d unlabelled faces)",
             len(train_s), class_counts(train_s), len(val_s), "on" if distil else "off",
             sum(len(v[0]) for v in teacher.values()) if teacher else 0, args.pseudo,
             sum(len(v) for v in unlabelled.values()) if unlabelled else 0)
    meta = detector_meta(args)
    model = build_model(args)
    net_cfg = {"num_classes": len(CLASS_NAMES), "cls_hidden": bool(args.cls_hidden), "variant": model.variant,
               "cls_depth": model.cls_depth}
    params = YoloParams(STRIDES)
    ds = FaceSet(train_s, args.crop, teacher, unlabelled, args.pseudo, args.p_zoom, args.scale, args.seed, params)
    ds.set_random_seed(args.seed)
    grid = torch.from_numpy(np.stack(yolo_grid((args.crop, args.crop), params), axis=1))
    g = torch.Generator().manual_seed(args.seed)
    dl = finetune_loader(ds, train_s, args, g)
    opt = head_optimiser(model, ("cls3.", "cls_branch."), args)
    sched = warmup_cosine(opt, args.epochs * len(dl), len(dl))

    step = yunet_step(model, grid, args, distil)

    loop = finetune_loop(args, "yunet_detector", net_cfg, model, opt, sched, meta, val_s,
                         {"loss": "total", "hard": "L_hard", "kd": "Σ λ·L_KD"}, ("voc_m", "voc_AP50_2", "nc_", "face_"),
                         lambda epoch: ds.set_random_seed(args.seed + 7919 * epoch))
    return loop.run(dl, step)


def start_run(args: argparse.Namespace) -> Tuple[List[Sample], List[Sample]]:
    """The start of a fine-tuning run (this module's and :mod:`models.train.ultralight`'s): seeds, threads,
    the output folder, the md5-of-stem training / validation split (written to ``split.json``), and
    ``--limit``. Returns ``(training samples, validation samples)``."""
    seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    train_s, val_s = split(read_dataset(args.data), args.val_hex)
    write_split(args.out / "split.json", train_s, val_s, args.val_hex)
    return (train_s[: args.limit] if args.limit else train_s), val_s


def finetune_loader(ds: Dataset, samples: Sequence[Sample], args: argparse.Namespace, g: torch.Generator) -> DataLoader:
    """The batches of a fine-tuning run: with ``--rfs`` > 0 drawn with replacement by the repeat-factor of
    each photo of ``samples`` (LVIS, Gupta et al. 2019: photos with no_mask / mask_incorrect more often), else
    shuffled; ``drop_last``; ``g`` seeds the order."""
    bs = min(args.batch, len(ds))
    if args.rfs > 0:
        from torch.utils.data import WeightedRandomSampler
        sampler = WeightedRandomSampler(torch.from_numpy(repeat_factors(samples, args.rfs)), num_samples=len(ds),
                                        replacement=True, generator=g)
        return DataLoader(ds, batch_size=bs, sampler=sampler, drop_last=True, num_workers=args.workers)
    return DataLoader(ds, batch_size=bs, shuffle=True, drop_last=True, generator=g, num_workers=args.workers)


def head_optimiser(model: torch.nn.Module, head_prefixes: Tuple[str, ...], args: argparse.Namespace) -> torch.optim.AdamW:
    """AdamW with the class head (parameters named with ``head_prefixes``) at ``--cls-lr-mult`` × ``--lr``: the
    new 3-class head learns faster than the pretrained body."""
    head = [p for n, p in model.named_parameters() if n.startswith(head_prefixes)]
    head_ids = {id(p) for p in head}
    rest = [p for p in model.parameters() if id(p) not in head_ids]
    return torch.optim.AdamW([{"params": rest}, {"params": head, "lr": args.lr * args.cls_lr_mult}],
                             lr=args.lr, weight_decay=args.weight_decay)


def yunet_step(model: torch.nn.Module, grid: torch.Tensor, args: argparse.Namespace, distil: bool):
    """The training step of a YuNet-n detector (this module's and :mod:`models.train.distill_student`'s):
    :func:`finetune_loss` on the labels, plus ``--kd-weight`` × the difficulty-weighted KD loss
    (:func:`models.train.losses.kd_loss`) when ``distil``. Returns a :data:`models.train.loop.StepFn`."""
    def step(batch):
        x, tgt_box, tgt_cls, ignore, t_box, t_logits, t_conf, t_cell_w = batch
        pred = flatten_levels(model(x))
        hard, parts = finetune_loss(pred, grid, tgt_box, tgt_cls, ignore, cls_pos_weight=args.cls_pos_weight)
        loss = hard
        if distil:
            kd, kparts = kd_loss(pred, grid, t_box, t_logits, t_conf, t_cell_w, args.kd_t, None,
                                 args.kd_temperature, args.kd_box_weight, args.kd_class_form)
            loss = hard + args.kd_weight * kd
            parts.update(kparts, kd=float(kd.detach()))
        return loss, {**parts, "hard": float(hard.detach())}
    return step


def finetune_loop(args: argparse.Namespace, arch: str, net_cfg: Dict, model: torch.nn.Module, opt, sched,
                  meta: ModelMeta, val_s: Sequence[Sample], losses: Dict[str, str], log_prefixes: Tuple[str, ...],
                  on_epoch_start: Callable[[int], None], logger: logging.Logger = log) -> Loop:
    """The :class:`models.train.loop.Loop` of a fine-tuning run (this module's, :mod:`models.train.ultralight`'s
    and :mod:`models.train.distill_student`'s): EMA decay 0.99 (a short schedule), :func:`validate` on the
    validation split unless ``--no-val``, ``best.pt`` by the validation mean AP@0.5 of mask and no_mask
    (``voc_mAP50_mask_no_mask``), checkpoints that name the network as ``{"arch": arch, "net": net_cfg}``
    for :func:`models.export.load_checkpoint`."""
    return Loop(args, model, opt, sched, EMA(model, decay=0.99), meta, {"arch": arch, "net": net_cfg},
                None if args.no_val else (lambda m: validate(m, meta, val_s)), "voc_mAP50_mask_no_mask", losses,
                log_prefixes, f"training loss ({Path(args.out).name})", ap_prefix="voc_",
                on_epoch_start=on_epoch_start, progress=False, logger=logger)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    fit(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
