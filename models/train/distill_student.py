"""Distil the default detector (``ultralight_mask``, an SSD) into a YOLO-style student, YuNet-n (issue 21).

CLI (the ablation of ``docs/distillation.md``; one stage from the pretrained YuNet-n, one CPU thread)::

    C="--data ../shared/data/face-mask-andrewmvd --crop 256 --epochs 2 --cls-lr-mult 5 --threads 1"
    T="--teacher models/released/ultralight_mask/model.onnx --teacher-cache runs/ds/teacher_ultralight.npz"
    # no KD: hard labels only (the teacher cache is not read)
    python -m models.train.distill_student $C --out runs/ds/nokd_s0 --seed 0
    # KD: λ_i = sigmoid(conf_i - t) on the box and class terms (seed 000, eq. 4)
    python -m models.train.distill_student $C $T --kd --out runs/ds/kd_s0 --seed 0
    # KD + the teacher's confident faces that no label accounts for, merged in as labels
    python -m models.train.distill_student $C $T --kd --pseudo --out runs/ds/kdpl_s0 --seed 0
    # KD with the teacher run on every augmented crop (consistent teaching) instead of the cache
    python -m models.train.distill_student $C $T --kd --kd-online --out runs/ds/kdon_s0 --seed 0
    # the gradient norm of each loss term (label loss and its parts, KD box, KD class in both forms)
    python -m models.train.distill_student gradnorms $C $T --out /tmp/gn [--init-ckpt runs/ds/nokd_s0/best.pt]

What it does:

* **Student**: :class:`models.nets.yunet.YuNetDetector` (YuNet-n, anchor-free, strides 8 / 16 / 32)
  from ``../shared/weights/yunet/yunet_n.pth`` (:func:`models.train.yunet.build_model`), in the runtime's
  ``yolo`` decoder convention: ``models.export`` and ``scripts/release_finetuned.sh`` export its
  ``best.pt`` and ``edge/`` runs it unchanged, like ``yunet_mask``.
* **Teacher** (:func:`ssd_teacher_predictions`): the default detector's ONNX file run by ONNX Runtime
  once per training photo at its deployed input and decoded exactly as the runtime decodes it
  (:func:`edge.model.postprocess`: SSD decoder, per-class NMS, class-agnostic NMS, nested-box
  suppression: one box and one class per face), cached to ``--teacher-cache`` (.npz, the
  :mod:`models.train.yolo_student` format). Per object: box, confidence (its score) and class logits
  (:func:`ssd_class_logits`: the softmax of the priors that produced the box, background dropped).
  Optionally (``--class-teacher classifier | mean``) the secondary classifier ``mask_classifier``
  gives (or is averaged into) the class distribution of each teacher face, on the crop the runtime
  would cut.
* **KD** (seed 000 §III.B, Algorithm 1, eqs. 4-6; :func:`models.train.losses.kd_loss`):
  ``L = L_hard + w · Σ_i λ_i L_KD,i`` with ``λ_i = sigmoid(conf_i - t)`` weighting both the box term
  (squared centre/size error in strides, × ``--kd-box-weight``) and the temperature-softened class
  BCE (``--kd-class-form``: ``sigmoid``, on the probabilities the student's sigmoid head outputs, by
  default; ``softmax``, eq. 5 as printed); teacher objects are matched to student cells like labels
  (:func:`edge.decoders.assign_yolo`) and carried through the same augmentation
  (:class:`models.train.yunet.FaceSet`). At ``--kd-box-weight 1`` the box term's gradient is ~5× the
  whole label loss's at the pretrained start (``gradnorms``; this student decodes ``exp(raw) · stride``,
  so the stride-unit error is unbounded, unlike YOLOv5's offsets in seed 000) and the student's
  ``no_mask`` AP collapses; ``0.1`` brings it to about half the label loss's.
* **Pseudo-labels** (:func:`merge_pseudo_labels`): a teacher object with confidence ``>= --pseudo-conf``
  whose box has IoU ``<= --pseudo-iou`` with every label (and covers at most half of the smaller box of
  any label) is a face the annotators missed; it becomes a label of the teacher's class. With
  ``--pseudo-yunet-conf`` it must also be a face for the pretrained YuNet-n (IoU >= 0.5 with a YuNet
  face at that confidence: face presence from the face detector, class from the mask detector).
* **Hard labels** :func:`models.train.yunet.finetune_loss`; sampling, schedule, EMA, validation and
  checkpoints as :mod:`models.train.yunet` (resumable with ``--resume``). The repeat-factor sampling is
  computed from the original labels in every setting, so the three ablation rows draw the same photos.

Only the training split of the training photos is ever run through the teachers; ``ilc2021-dev`` is
never read here.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from edge.decoders import CLASS_NAMES, YoloParams, box_iou, yolo_grid
from edge.model import postprocess, preprocess
from models.data import Sample, class_counts
from models.train.yolo_student import TeacherDets, load_teacher, save_teacher
from models.train.yunet import (DEFAULT_YUNET, FaceSet, add_schedule_args, build_model, detector_meta, face_teacher,
                               finetune_loader, finetune_loop, finetune_loss, head_optimiser, load_faces, save_faces,
                               start_run, unlabelled_faces, yunet_step)
from models.train.losses import difficulty_weights, flatten_levels, kd_loss
from models.nets.yunet import STRIDES
from models.train.loop import warmup_cosine

log = logging.getLogger("models.train.distill_student")
cv2.setNumThreads(1)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TEACHER = REPO / "models" / "released" / "ultralight_mask" / "model.onnx"
DEFAULT_CLASSIFIER = REPO / "models" / "released" / "mask_classifier" / "model.onnx"


def lambda_weights(conf: np.ndarray, t: float = 0.5) -> np.ndarray:
    """Difficulty-aware weights of the teacher objects, ``λ_i = sigmoid(conf_i - t)`` (seed 000, eq. 4).

    Args:
        conf: (K,) float teacher confidences, 0-1.
        t: the threshold ``t`` of eq. 4.

    Returns:
        (K,) float32 weights in (0, 1): 0.5 at ``conf == t``, increasing in ``conf``; the same function
        :func:`models.train.losses.kd_loss` applies (:func:`models.train.losses.difficulty_weights`).
    """
    return difficulty_weights(torch.as_tensor(np.asarray(conf, np.float32)), t).numpy()


def ssd_class_logits(det_boxes: np.ndarray, prior_scores: np.ndarray, prior_boxes: np.ndarray,
                     min_iou: float = 0.7, eps: float = 1e-4) -> np.ndarray:
    """Class logits of SSD detections: the teacher's class distribution at each kept box.

    For every detection, the priors whose decoded box overlaps it at IoU ``>= min_iou`` (always
    including the prior that produced it, IoU 1) are averaged, each weighted by its face mass
    ``1 - p(background)``; the background column is dropped and the rest renormalised.

    Args:
        det_boxes: (K, 4) float32 xyxy in the network's input px (the decoder's boxes, before unletterboxing).
        prior_scores: (P, 1 + C) float32 softmax per prior, background first (``scores`` output, batch dropped).
        prior_boxes: (P, 4) float32 xyxy input px (``boxes`` output, batch dropped).
        min_iou: overlap of a prior that counts for a detection.
        eps: probabilities are clipped to ``[eps, 1 - eps]`` before the log.

    Returns:
        (K, C) float32 ``log p(c | face)``: the logits whose softmax is the teacher's class distribution.
    """
    det = np.asarray(det_boxes, np.float32).reshape(-1, 4)
    C = prior_scores.shape[1] - 1
    if not len(det):
        return np.zeros((0, C), np.float32)
    iou = box_iou(det, prior_boxes)  # (K, P)
    out = np.zeros((len(det), C), np.float32)
    for k in range(len(det)):
        sel = iou[k] >= min(min_iou, float(iou[k].max()))
        # Σ_priors (1 - p_bg) · p(c | face) = Σ_priors p(c), then normalised over the classes
        p = prior_scores[sel, 1:].sum(0)
        p = p / max(float(p.sum()), 1e-12)
        out[k] = np.log(np.clip(p, eps, 1 - eps))
    return out


def ssd_teacher_on_image(be, img: np.ndarray, min_conf: float) -> TeacherDets:
    """One BGR image through the SSD teacher, decoded as the appliance decodes it.

    Args:
        be: an :class:`edge.backends.onnxruntime.OnnxRuntimeBackend` of a ``decoder: ssd`` model.
        img: (H, W, 3) uint8 BGR (a photo, or an augmented training crop).
        min_conf: objects below this score are dropped.

    Returns:
        ``(boxes (K, 4) float32 xyxy px of img, scores (K,) float32 0-1, logits (K, C) float32
        log p(c | face))`` (:func:`ssd_class_logits`).
    """
    h, w = img.shape[:2]
    x, lb = preprocess(img, be.meta)
    raw = be.infer(x)
    boxes, scores, _ = postprocess(raw, be.meta, lb, (w, h))
    keep = scores >= min_conf
    boxes, scores = boxes[keep].astype(np.float32), scores[keep].astype(np.float32)
    inp = boxes * np.array([lb.scale_x, lb.scale_y] * 2, np.float32) + np.array([lb.pad_x, lb.pad_y] * 2, np.float32)
    return boxes, scores, ssd_class_logits(inp, raw["scores"][0], raw["boxes"][0])


class OnlineTeacher:
    """The SSD teacher run on every augmented crop the student sees ("consistent teaching": Beyer et al.,
    "Knowledge distillation: A good teacher is patient and consistent", CVPR 2022, sec. 3): the KD
    targets are the teacher's outputs on exactly the student's input, so every epoch's new crops give new
    targets, instead of the per-photo cache carried through the augmentation.

    Args:
        onnx_path: the teacher ONNX (``decoder: ssd``). min_conf: objects below this score are not distilled.
        threads: ONNX Runtime threads.

    Call: ``(H, W, 3) uint8 BGR crop -> (boxes (K, 4) float32 crop px, conf (K,), logits (K, C))``.
    """

    def __init__(self, onnx_path: Path, min_conf: float = 0.5, threads: int = 1):
        from edge.backends.onnxruntime import OnnxRuntimeBackend

        self.be = OnnxRuntimeBackend(onnx_path, threads=threads)
        if self.be.meta.decoder != "ssd":
            raise ValueError(f"{onnx_path}: decoder {self.be.meta.decoder!r}, the online teacher needs 'ssd'")
        self.min_conf = min_conf

    def __call__(self, img: np.ndarray) -> TeacherDets:
        return ssd_teacher_on_image(self.be, img, self.min_conf)


def ssd_teacher_predictions(onnx_path: Path, samples: Sequence[Sample], min_conf: float = 0.3,
                            classifier: Optional[Path] = None, class_teacher: str = "detector",
                            threads: int = 1) -> Dict[str, TeacherDets]:
    """Run the SSD teacher (ONNX Runtime) on every photo, decoded as the appliance decodes it.

    Args:
        onnx_path: a maskwatch detector ONNX file with ``decoder: ssd`` (``ultralight_mask``).
        samples: the photos (only their images are read).
        min_conf: objects below this score are not kept.
        classifier: the secondary classifier ONNX (``role: classifier``), needed unless
            ``class_teacher == "detector"``.
        class_teacher: ``detector`` (the SSD's own class distribution, :func:`ssd_class_logits`),
            ``classifier`` (the classifier's probabilities on the runtime's crop of each box) or
            ``mean`` (the average of the two distributions).
        threads: ONNX Runtime threads.

    Returns:
        Per image stem ``(boxes (K, 4) float32 xyxy photo px, conf (K,) float32 score 0-1,
        logits (K, C) float32 log-probabilities)`` (:data:`models.train.yolo_student.TeacherDets`).

    Raises:
        ValueError: the model's decoder is not ``ssd``, or ``class_teacher`` is unknown.
    """
    from edge.backends.onnxruntime import OnnxRuntimeBackend

    if class_teacher not in ("detector", "classifier", "mean"):
        raise ValueError(f"class_teacher must be one of detector, classifier, mean; got {class_teacher!r}")
    be = OnnxRuntimeBackend(onnx_path, threads=threads)
    meta = be.meta
    if meta.decoder != "ssd":
        raise ValueError(f"{onnx_path}: decoder {meta.decoder!r}, this teacher reader needs 'ssd'")
    cls = None
    if class_teacher != "detector":
        from edge.classifier import Classifier
        cls = Classifier(classifier or DEFAULT_CLASSIFIER, threads=threads, spin=False)
    out: Dict[str, TeacherDets] = {}
    for s in samples:
        img = cv2.imread(str(s.image))
        boxes, scores, logits = ssd_teacher_on_image(be, img, min_conf)
        if cls is not None and len(boxes):
            p = np.clip(cls.probs(img, boxes), 1e-4, 1.0)
            if class_teacher == "mean":
                p = (p + np.exp(logits)) / 2
            logits = np.log(np.clip(p / p.sum(1, keepdims=True), 1e-4, 1 - 1e-4)).astype(np.float32)
        out[s.image.stem] = (boxes, scores, logits.astype(np.float32))
    return out


def merge_pseudo_labels(gt_boxes: np.ndarray, gt_labels: np.ndarray, t_boxes: np.ndarray, t_conf: np.ndarray,
                        t_cls: np.ndarray, min_conf: float = 0.5, max_iou: float = 0.3, max_inside: float = 0.5,
                        faces: Optional[np.ndarray] = None, face_conf: Optional[np.ndarray] = None,
                        min_face_conf: float = 0.5, face_iou: float = 0.5
                        ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Teacher objects the labels miss, merged into the labels (the pseudo-label merge).

    A teacher object becomes a label when its confidence is ``>= min_conf`` and it matches no label:
    IoU ``<= max_iou`` with every label and its intersection with any label at most ``max_inside`` of
    the smaller box (:func:`models.train.yunet.unlabelled_faces`). With ``faces`` given (the face
    detector's boxes), it must also overlap one of them at IoU ``>= face_iou`` whose confidence is
    ``>= min_face_conf``.

    Args:
        gt_boxes: (N, 4) float32 xyxy labels; gt_labels: (N,) int64 their classes.
        t_boxes: (K, 4) float32 xyxy teacher boxes; t_conf: (K,) scores 0-1; t_cls: (K,) int64 classes.
        faces, face_conf: (F, 4) xyxy face-detector boxes and (F,) confidences, or None.

    Returns:
        ``(boxes (N + M, 4) float32, labels (N + M,) int64, added (M,) int64 indices into t_boxes)``:
        the labels first, unchanged, then the M pseudo-labels.
    """
    g = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    gl = np.asarray(gt_labels, np.int64).reshape(-1)
    tb = np.asarray(t_boxes, np.float32).reshape(-1, 4)
    added = unlabelled_faces(tb, np.asarray(t_conf, np.float32).reshape(-1), g, min_conf, max_iou, max_inside)
    if faces is not None and len(added):
        f = np.asarray(faces, np.float32).reshape(-1, 4)
        f = f[np.asarray(face_conf, np.float32).reshape(-1) >= min_face_conf]
        ok = box_iou(tb[added], f).max(1) >= face_iou if len(f) else np.zeros(len(added), bool)
        added = added[ok]
    boxes = np.concatenate([g, tb[added]]).astype(np.float32)
    labels = np.concatenate([gl, np.asarray(t_cls, np.int64).reshape(-1)[added]])
    return boxes, labels, added.astype(np.int64)


def pseudo_labelled(samples: Sequence[Sample], teacher: Dict[str, TeacherDets], min_conf: float, max_iou: float,
                    faces: Optional[Dict[str, Tuple[np.ndarray, np.ndarray]]] = None, min_face_conf: float = 0.5
                    ) -> Tuple[List[Sample], int]:
    """The samples with :func:`merge_pseudo_labels` applied (class = arg-max of the teacher's logits).

    Returns:
        (new :class:`models.data.Sample` list, same order; number of pseudo-labels added).
    """
    out, n = [], 0
    C = len(CLASS_NAMES)
    for s in samples:
        tb, tc, tl = teacher.get(s.image.stem, (np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                                                np.zeros((0, C), np.float32)))
        fb, fc = (faces.get(s.image.stem, (np.zeros((0, 4), np.float32), np.zeros(0, np.float32)))
                  if faces is not None else (None, None))
        b, l, added = merge_pseudo_labels(s.boxes, s.labels, tb, tc, tl.argmax(1) if len(tl) else np.zeros(0, np.int64),
                                          min_conf, max_iou, faces=fb, face_conf=fc, min_face_conf=min_face_conf)
        n += len(added)
        out.append(dataclasses.replace(s, boxes=b, labels=l))
    return out, n


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--yunet", type=Path, default=DEFAULT_YUNET, help="YuNet checkpoint: the student's start and face teacher")
    ap.add_argument("--teacher", type=Path, default=DEFAULT_TEACHER, help="SSD teacher ONNX (the default detector)")
    ap.add_argument("--teacher-cache", type=Path, help="teacher .npz (made from --teacher if missing; default OUT/teacher.npz)")
    ap.add_argument("--class-teacher", choices=["detector", "classifier", "mean"], default="detector",
                    help="class distribution of each teacher face: the SSD's, mask_classifier's, or their mean")
    ap.add_argument("--classifier", type=Path, default=DEFAULT_CLASSIFIER)
    ap.add_argument("--kd", action="store_true", help="distil (else the teacher is used only for --pseudo)")
    ap.add_argument("--teacher-min-conf", type=float, default=0.5, help="teacher objects distilled: score >= this")
    ap.add_argument("--kd-t", type=float, default=0.5, help="t of λ_i = sigmoid(conf_i - t)")
    ap.add_argument("--kd-weight", type=float, default=1.0)
    ap.add_argument("--kd-temperature", type=float, default=2.0)
    ap.add_argument("--kd-class-form", choices=["softmax", "sigmoid"], default="sigmoid",
                    help="class term of the KD loss (models.train.losses.kd_loss): sigmoid, as the student's head "
                         "is trained and read; softmax, seed 000's eq. 5 as printed")
    ap.add_argument("--kd-box-weight", type=float, default=0.1,
                    help="weight of the box term inside L_KD (1 in seed 000; see gradnorms)")
    ap.add_argument("--kd-online", action="store_true",
                    help="run the teacher on every augmented crop (consistent teaching) instead of the per-photo cache")
    ap.add_argument("--pseudo", action="store_true", help="merge the teacher's unlabelled faces into the labels")
    ap.add_argument("--pseudo-conf", type=float, default=0.6, help="teacher score of a pseudo-label")
    ap.add_argument("--pseudo-iou", type=float, default=0.3, help="a pseudo-label's IoU with every label is <= this")
    ap.add_argument("--pseudo-yunet-conf", type=float,
                    help="also require a YuNet-n face (IoU >= 0.5) of this confidence (default: not required)")
    ap.add_argument("--faces-cache", type=Path, help="YuNet face predictions .npz (made if missing)")
    ap.add_argument("--init", choices=["yunet", "scratch"], default="yunet")
    ap.add_argument("--no-cls-hidden", dest="cls_hidden", action="store_false")
    ap.add_argument("--cls-depth", type=int, default=1)
    ap.add_argument("--cls-pos-weight", type=float, nargs=3, metavar=("MASK", "NO_MASK", "MASK_INCORRECT"))
    add_schedule_args(ap)
    ap.set_defaults(epochs=4, crop=256)
    return ap.parse_args(argv)


def confident(teacher: Dict[str, TeacherDets], min_conf: float) -> Dict[str, TeacherDets]:
    """The teacher objects of each photo with score ``>= min_conf`` (the ones distilled)."""
    return {k: (b[c >= min_conf], c[c >= min_conf], l[c >= min_conf]) for k, (b, c, l) in teacher.items()}


def load_or_make_teacher(args, train_s: Sequence[Sample]) -> Dict[str, TeacherDets]:
    """The teacher objects of the training photos, from ``--teacher-cache`` or made (and cached) at score >= 0.3."""
    cache = args.teacher_cache or args.out / "teacher.npz"
    if cache.exists():
        return load_teacher(cache)
    t0 = time.time()
    t = ssd_teacher_predictions(args.teacher, train_s, 0.3, args.classifier, args.class_teacher, threads=args.threads)
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_teacher(cache, t)
    log.info("teacher %s on %d photos: %.0f s -> %s", args.teacher, len(train_s), time.time() - t0, cache)
    return t


def fit(args: argparse.Namespace) -> List[Dict]:
    """Train as configured by :func:`parse_args`; returns the history (one dict per epoch)."""
    train_s, val_s = start_run(args)
    teacher = None
    if args.pseudo or (args.kd and not args.kd_online):  # the online teacher needs no per-photo cache
        full = load_or_make_teacher(args, train_s)
        stems = {s.image.stem for s in train_s}
        teacher = {k: v for k, v in full.items() if k in stems}  # never a validation photo
    rf_samples = train_s  # sampling from the original labels in every setting
    n_pseudo = 0
    if args.pseudo:
        faces = None
        if args.pseudo_yunet_conf is not None:
            fc = args.faces_cache or args.out / "faces.npz"
            faces = load_faces(fc) if fc.exists() else face_teacher(train_s, args.yunet)
            if not fc.exists():
                save_faces(fc, faces)
        train_s, n_pseudo = pseudo_labelled(train_s, teacher, args.pseudo_conf, args.pseudo_iou, faces,
                                            args.pseudo_yunet_conf or 0.0)
    kd_teacher = confident(teacher, args.teacher_min_conf) if args.kd and not args.kd_online else None
    log.info("train %d images %s, val %d; KD %s (%d teacher objects, t %.2f); pseudo-labels %d",
             len(train_s), class_counts(train_s), len(val_s),
             ("online: the teacher on every crop" if args.kd_online else "on") if args.kd else "off",
             sum(len(v[0]) for v in kd_teacher.values()) if kd_teacher else 0, args.kd_t, n_pseudo)
    meta = detector_meta(args)
    model = build_model(args)
    net_cfg = {"num_classes": len(CLASS_NAMES), "cls_hidden": bool(args.cls_hidden), "variant": model.variant,
               "cls_depth": model.cls_depth}
    params = YoloParams(STRIDES)
    online = OnlineTeacher(args.teacher, args.teacher_min_conf, threads=1) if args.kd and args.kd_online else None
    ds = FaceSet(train_s, args.crop, teacher=kd_teacher, unlabelled=None, pseudo="none",
                 p_zoom=args.p_zoom, scale=args.scale, seed=args.seed, params=params, online_teacher=online)
    grid = torch.from_numpy(np.stack(yolo_grid((args.crop, args.crop), params), axis=1))
    g = torch.Generator().manual_seed(args.seed)
    dl = finetune_loader(ds, rf_samples, args, g)
    opt = head_optimiser(model, ("cls3.", "cls_branch."), args)
    sched = warmup_cosine(opt, args.epochs * len(dl), len(dl))
    step = yunet_step(model, grid, args, args.kd)

    def on_epoch_start(epoch: int) -> None:
        ds.set_random_seed(args.seed + 7919 * epoch)
        if epoch == loop.start_epoch and epoch > 0:  # resumed: a new shuffle order, as a fresh process would not repeat
            g.manual_seed(args.seed + 7919 * epoch)

    loop = finetune_loop(args, "yunet_detector", net_cfg, model, opt, sched, meta, val_s,
                         {"loss": "total", "hard": "L_hard", "kd": "Σ λ·L_KD"}, ("voc_m", "voc_AP50_2", "nc_", "face_"),
                         on_epoch_start, log)
    return loop.run(dl, step, {"pseudo_labels": n_pseudo})


def gradient_norms(args: argparse.Namespace, n_batches: int = 4) -> List[Dict[str, float]]:
    """The gradient norm (over all parameters) of each loss term on a few training batches (median).

    Tells whether a KD term can steer the student at all, or swamps the label loss: the loop clips the
    sum at norm 10 and AdamW normalises per parameter, so what decides is each term's share of the
    gradient. Rows: the label loss and its parts, then the KD box and class terms (λ-weighted, weight 1)
    for both class forms. The model is ``--init-ckpt`` (a run's EMA weights) if given, else the
    pretrained start; batches of ``--batch`` crops from the training split with the ``--teacher-cache``
    objects at score >= ``--teacher-min-conf``.

    Returns:
        One dict per term: ``{"term", "loss", "grad_norm"}`` (medians over ``n_batches`` batches).
    """
    train_s, _ = start_run(args)
    t = confident(load_or_make_teacher(args, train_s), args.teacher_min_conf)
    params = YoloParams(STRIDES)
    rng = np.random.default_rng(args.seed)
    pick = [train_s[i] for i in rng.choice(len(train_s), size=min(len(train_s), args.batch * n_batches), replace=False)]
    ds = FaceSet(pick, args.crop, teacher=t, params=params, seed=args.seed)
    grid = torch.from_numpy(np.stack(yolo_grid((args.crop, args.crop), params), axis=1))
    model = build_model(args).train()

    def terms(pred, batch):
        _, tgt_box, tgt_cls, ignore, t_box, t_logits, t_conf, t_cell_w = batch
        out = {}
        for name, kw in (("label loss", {}), ("label box (2 x GIoU)", dict(obj_weight=0, cls_weight=0)),
                         ("label objectness", dict(box_weight=0, cls_weight=0)),
                         ("label class", dict(box_weight=0, obj_weight=0))):
            out[name] = finetune_loss(pred, grid, tgt_box, tgt_cls, ignore, **kw)[0]
        for form in ("softmax", "sigmoid"):
            out[f"KD class, {form}"] = kd_loss(pred, grid, t_box, t_logits, t_conf, t_cell_w, args.kd_t, None,
                                               args.kd_temperature, 0.0, form)[0]
        kd_all = kd_loss(pred, grid, t_box, t_logits, t_conf, t_cell_w, args.kd_t, None, args.kd_temperature, 1.0,
                         "sigmoid")[0]
        out["KD box (stride units)"] = kd_all - out["KD class, sigmoid"]
        return out

    rows: Dict[str, List[Tuple[float, float]]] = {}
    for k in range(n_batches):
        batch = [torch.stack(x) for x in zip(*[ds[i] for i in range(k * args.batch, (k + 1) * args.batch)])]
        pred = flatten_levels(model(batch[0]))
        for name, loss in terms(pred, batch).items():
            model.zero_grad()
            loss.backward(retain_graph=True)
            g = torch.sqrt(sum((q.grad.float() ** 2).sum() for q in model.parameters() if q.grad is not None))
            rows.setdefault(name, []).append((float(loss.detach()), float(g)))
    return [{"term": n, "loss": float(np.median([a for a, _ in v])), "grad_norm": float(np.median([b for _, b in v]))}
            for n, v in rows.items()]


def summarize(runs: Sequence[Path]) -> str:
    """The ablation table (markdown) of finished runs: per setting (run folder name without ``_s<seed>``),
    mean ± half the range over seeds of VOC AP@0.5 mask, no_mask and their mean, as the appliance outputs
    (the ``as_output`` block of :mod:`models.evaluation.evaluate`), on the validation split and on
    ilc2021-dev half b (``eval_val.json`` / ``eval_ilc2021_dev_half_b.json`` of
    :file:`scripts/eval_distill_student.sh`), then one row per run. Runs without both files are listed as
    not measured."""
    import json
    import re
    rows, groups = [], {}
    keys = ("voc_AP50_mask", "voc_AP50_no_mask", "voc_mAP50_mask_no_mask")
    for r in sorted(Path(x) for x in runs):
        fv, fi = r / "eval_val.json", r / "eval_ilc2021_dev_half_b.json"
        if not (fv.exists() and fi.exists()):
            rows.append(f"| {r.name} | not measured |" + " |" * 6)
            continue
        v, i = json.loads(fv.read_text())["as_output"], json.loads(fi.read_text())["as_output"]
        ep = json.loads((r / "history.json").read_text())
        vals = [v[k] for k in keys] + [i[k] for k in keys]
        groups.setdefault(re.sub(r"_s\d+$", "", r.name), []).append(vals)
        rows.append(f"| {r.name} (best epoch {max(ep, key=lambda h: h.get('voc_mAP50_mask_no_mask', -1))['epoch']}"
                    f" of {len(ep)}, {ep[-1]['elapsed_s']:.0f} s) | " + " | ".join(f"{x:.3f}" for x in vals) + " |")
    head = ("| run | val AP mask | val AP no_mask | val mean | ilc b AP mask | ilc b AP no_mask | ilc b mean |\n"
            "| --- | --- | --- | --- | --- | --- | --- |")
    agg = []
    for name, vs in groups.items():
        a = np.asarray(vs)
        agg.append(f"| **{name}** (n = {len(a)}) | " + " | ".join(
            f"{m:.3f} ± {h:.3f}" for m, h in zip(a.mean(0), (a.max(0) - a.min(0)) / 2)) + " |")
    return "\n".join([head] + agg + rows)


def main(argv=None) -> int:
    import sys
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["summarize"]:  # python -m models.train.distill_student summarize runs/ds/*_s?
        print(summarize([Path(a) for a in argv[1:]]))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if argv[:1] == ["gradnorms"]:  # python -m models.train.distill_student gradnorms [training options]
        print("| term | loss | gradient norm |\n| --- | --- | --- |")
        for r in gradient_norms(parse_args(argv[1:])):
            print(f"| {r['term']} | {r['loss']:.3f} | {r['grad_norm']:.2f} |")
        return 0
    fit(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
