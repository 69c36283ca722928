"""Train the YOLO student, alone (baseline) or with difficulty-aware knowledge distillation.

CLI (the released student's recipe; see models/released/yolo_student_baseline/MODEL_CARD.md)::

    # baseline: hard labels only
    python -m models.train.yolo_student --data ../shared/data/face-mask-andrewmvd --out runs/student_base --epochs 60
    # distilled from the ResNet-18 DetectNet_v2 teacher, λ_i = sigmoid(conf_i - t)
    python -m models.train.yolo_student --data ../shared/data/face-mask-andrewmvd --out runs/student_kd --epochs 60 \\
        --teacher models/released/detectnet_v2_r18/model.onnx --kd-t 0.5

Distillation follows seed 000 §III.B (Algorithm 1): ``L_total = L_hard + Σ_i λ_i · L_KD,i`` with
``λ_i = sigmoid(conf_i - t)`` (eq. 4) and ``L_KD`` the squared box error plus the BCE between the
temperature-softened class distributions (eqs. 5-6); see :func:`models.train.losses.kd_loss`.

**Teacher predictions.** The teacher (a different architecture: DetectNet_v2 coverage/bbox grid at
stride 16) is run once per training image, on the whole photo at its deployed input size, and its
clustered detections with confidence >= ``--teacher-min-conf`` are cached (``teacher.npz`` in the
run folder): box, confidence and the per-class coverage at the box centre as class logits. Each
training crop then carries the teacher's boxes through the *same* albumentations transform as the
ground truth, so teacher and label boxes stay aligned under scale, crop and flip.

**Matching teacher to student.** A teacher box is assigned to student cells exactly like a
ground-truth box (:func:`edge.decoders.assign_yolo`: level by its longer side, cells near its
centre on that level); ``L_KD,i`` is averaged over those cells. The baseline passes the teacher
boxes through the augmentation too (and ignores them), so both runs see identical crops.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from edge.decoders import CLASS_NAMES, YoloParams, assign_yolo, yolo_grid
from edge.model import ModelMeta, postprocess, preprocess
from models.train import augment
from models.data import Sample, class_counts, read_dataset, split, write_split
from models.train.losses import flatten_levels, kd_loss, yolo_loss
from models.nets.yolo import STRIDES, YoloStudent
from models.train import precision as precision_
from models.train.detectnet_v2 import validate
from models.train.loop import EMA, Loop, seed_everything, warmup_cosine

log = logging.getLogger("models.train.yolo_student")
cv2.setNumThreads(1)  # the data-loader worker shares 2 cores with training

#: What the teacher cache holds per image stem: (boxes (K,4) xyxy px of the photo, conf (K,), logits (K,C)).
TeacherDets = Tuple[np.ndarray, np.ndarray, np.ndarray]


def teacher_predictions(onnx_path: Path, samples: Sequence[Sample], min_conf: float = 0.3) -> Dict[str, TeacherDets]:
    """Run the teacher model (ONNX Runtime) on every photo and keep its objects.

    Returns per image stem: boxes (K, 4) float32 xyxy in photo px, confidence (K,) float32 (the
    clustered coverage score, 0-1), class logits (K, C) float32 = ``logit`` of the teacher's
    per-class coverage, max-pooled over the 3x3 cells around the box centre.
    """
    from edge.backends.onnxruntime import OnnxRuntimeBackend

    be = OnnxRuntimeBackend(onnx_path)
    meta = be.meta
    out: Dict[str, TeacherDets] = {}
    for s in tqdm(samples, desc="teacher", mininterval=5):
        img = cv2.imread(str(s.image))
        x, lb = preprocess(img, meta)
        raw = be.infer(x)
        boxes, scores, classes = postprocess(raw, meta, lb, (img.shape[1], img.shape[0]))
        keep = scores >= min_conf
        boxes, scores = boxes[keep], scores[keep]
        cov = raw["coverage"][0]
        gh, gw = cov.shape[1:]
        logits = np.zeros((len(boxes), cov.shape[0]), np.float32)
        for k, b in enumerate(boxes):
            cx = ((b[0] + b[2]) / 2 * lb.scale_x + lb.pad_x) / meta.stride
            cy = ((b[1] + b[3]) / 2 * lb.scale_y + lb.pad_y) / meta.stride
            i, j = int(np.clip(cy, 0, gh - 1)), int(np.clip(cx, 0, gw - 1))
            v = cov[:, max(0, i - 1): i + 2, max(0, j - 1): j + 2].reshape(cov.shape[0], -1).max(1)
            v = np.clip(v, 1e-4, 1 - 1e-4)
            logits[k] = np.log(v / (1 - v))
        out[s.image.stem] = (boxes.astype(np.float32), scores.astype(np.float32), logits)
    return out


def save_teacher(path: Path, dets: Dict[str, TeacherDets]) -> None:
    arrays = {}
    for stem, (b, c, l) in dets.items():
        arrays[f"{stem}/boxes"], arrays[f"{stem}/conf"], arrays[f"{stem}/logits"] = b, c, l
    np.savez_compressed(path, **arrays)


def load_teacher(path: Path) -> Dict[str, TeacherDets]:
    z = np.load(path)
    stems = {k.rsplit("/", 1)[0] for k in z.files}
    return {s: (z[f"{s}/boxes"], z[f"{s}/conf"], z[f"{s}/logits"]) for s in stems}


class StudentSet(Dataset):
    """Augmented crops with YOLO targets and matched teacher targets.

    Items (A = cells of all levels of an S x S crop):
    ``image (3,S,S) float32 RGB/255, tgt_box (A,4) float32 xyxy px, tgt_cls (A,) int64 (-1 background),
    t_box (A,4) float32, t_logits (A,C) float32, t_conf (A,) float32, t_cell_w (A,) float32``.
    """

    def __init__(self, samples: Sequence[Sample], crop: int, teacher: Dict[str, TeacherDets] = None,
                 scale=(0.6, 2.5), params: YoloParams = YoloParams()):
        self.samples = list(samples)
        self.images = [cv2.imread(str(s.image)) for s in self.samples]
        self.crop, self.params = crop, params
        self.teacher = teacher or {}
        self.t = augment.train_transform(crop, scale)
        self.C = len(CLASS_NAMES)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples[i]
        tb, tc, tl = self.teacher.get(s.image.stem, (np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                                                     np.zeros((0, self.C), np.float32)))
        n_gt = len(s.boxes)
        boxes = np.concatenate([np.asarray(s.boxes, np.float32).reshape(-1, 4), tb.reshape(-1, 4)])
        img, boxes, idx = augment.apply(self.t, self.images[i], boxes, np.arange(len(boxes)))
        is_gt = idx < n_gt
        hw = (self.crop, self.crop)
        A = len(yolo_grid(hw, self.params)[0])
        gb, gl = boxes[is_gt], np.asarray(s.labels)[idx[is_gt]]
        own = assign_yolo(gb, hw, self.params)
        tgt_box = np.zeros((A, 4), np.float32)
        tgt_cls = np.full(A, -1, np.int64)
        tgt_box[own >= 0], tgt_cls[own >= 0] = gb[own[own >= 0]], gl[own[own >= 0]]
        t_box, t_logits, t_conf, t_cell_w = teacher_cell_targets(boxes[~is_gt], idx[~is_gt] - n_gt, tc, tl, hw, self.params)
        x = img[:, :, ::-1].astype(np.float32).transpose(2, 0, 1) / 255.0
        return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in
                     (x, tgt_box, tgt_cls, t_box, t_logits, t_conf, t_cell_w))


def teacher_cell_targets(boxes: np.ndarray, src: np.ndarray, conf: np.ndarray, logits: np.ndarray,
                         hw: Tuple[int, int], params: YoloParams) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The KD targets of one augmented crop: teacher objects matched to cells like labels.

    Args:
        boxes: (K, 4) float32 xyxy px, the teacher boxes that survived the augmentation.
        src: (K,) int64 index of each box in the photo's teacher objects (rows of ``conf`` and ``logits``).
        conf: (N,) float32 teacher scores 0-1; logits: (N, C) float32 class logits.
        hw: the crop's (H, W) px. params: the student's strides.

    Returns:
        ``t_box (A, 4) float32 xyxy px, t_logits (A, C), t_conf (A,), t_cell_w (A,)``: per cell of the
        :func:`edge.decoders.assign_yolo` assignment the object's box, logits and score, and ``1 / (cells
        of the object)`` (0 where no object), the inputs of :func:`models.train.losses.kd_loss`.
    """
    A = len(yolo_grid(hw, params)[0])
    own = assign_yolo(boxes, hw, params)
    t_box = np.zeros((A, 4), np.float32)
    t_logits = np.zeros((A, np.shape(logits)[1]), np.float32)
    t_conf = np.zeros(A, np.float32)
    t_cell_w = np.zeros(A, np.float32)
    m = own >= 0
    if m.any():
        k = own[m]
        t_box[m], t_logits[m], t_conf[m] = boxes[k], logits[src[k]], conf[src[k]]
        t_cell_w[m] = 1.0 / np.bincount(k, minlength=len(boxes))[k]
    return t_box, t_logits, t_conf, t_cell_w


def student_meta(args) -> ModelMeta:
    """The metadata the student ships with (decoder ``yolo``)."""
    return ModelMeta(input_w=args.input_w, input_h=args.input_h, decoder="yolo",
                     outputs={f"p{s}": f"p{s}" for s in STRIDES}, strides=list(STRIDES),
                     cluster={"method": "nms", "conf_threshold": 0.1, "iou_threshold": 0.5, "dbscan_eps": 0.6,
                              "dbscan_min_samples": 0.0, "max_detections": 100})


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="VOC or KITTI dataset folder")
    ap.add_argument("--out", type=Path, required=True, help="run folder")
    ap.add_argument("--teacher", type=Path, help="teacher ONNX model (DetectNet_v2); omit for the baseline")
    ap.add_argument("--teacher-cache", type=Path, help="teacher predictions .npz (made from --teacher if missing)")
    ap.add_argument("--teacher-min-conf", type=float, default=0.5,
                    help="teacher objects below this confidence are not distilled (at 0.5 the r18 teacher's objects "
                         "on the training split have precision 0.42 and recall 0.76 at IoU 0.5)")
    ap.add_argument("--kd-t", type=float, default=0.5, help="t of λ_i = sigmoid(conf_i - t) (seed 000 eq. 4)")
    ap.add_argument("--kd-fixed-lambda", type=float, help="constant λ instead of the adaptive one (ablation)")
    ap.add_argument("--kd-weight", type=float, default=1.0, help="multiplies Σ λ_i L_KD,i")
    ap.add_argument("--kd-temperature", type=float, default=2.0)
    ap.add_argument("--kd-box-weight", type=float, default=1.0,
                    help="weight of the box term inside L_KD (1: seed 000; 0: distil the class distributions only)")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=4e-3, help="AdamW peak learning rate (cosine, 1 epoch warm-up)")
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--crop", type=int, default=320, help="square training crop, px (multiple of 32)")
    ap.add_argument("--input-w", type=int, default=512, help="deployed input width, px (multiple of 32)")
    ap.add_argument("--input-h", type=int, default=288, help="deployed input height, px (multiple of 32)")
    ap.add_argument("--width", type=float, default=1.5, help="student width multiplier")
    ap.add_argument("--scale", type=float, nargs=2, default=[0.6, 2.5])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-hex", default="01")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--val-every", type=int, default=1, help="validate every N epochs (and at the last)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (smoke tests)")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training images (smoke tests)")
    ap.add_argument("--no-val", action="store_true")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    precision_.add_args(ap)
    return ap.parse_args(argv)


def fit(args: argparse.Namespace) -> List[Dict]:
    """Train as configured by :func:`parse_args`; returns the history (one dict per epoch)."""
    seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    samples = read_dataset(args.data)
    train_s, val_s = split(samples, args.val_hex)
    write_split(args.out / "split.json", train_s, val_s, args.val_hex)
    if args.limit:
        train_s = train_s[: args.limit]
    teacher = None
    if args.teacher_cache and args.teacher_cache.exists():
        teacher = {k: (b[c >= args.teacher_min_conf], c[c >= args.teacher_min_conf], l[c >= args.teacher_min_conf])
                   for k, (b, c, l) in load_teacher(args.teacher_cache).items()}
    elif args.teacher:
        teacher = teacher_predictions(args.teacher, train_s, args.teacher_min_conf)
        save_teacher(args.teacher_cache or args.out / "teacher.npz", teacher)
    distil = args.teacher is not None
    log.info("train %d images %s, val %d; teacher objects %s; distillation %s", len(train_s), class_counts(train_s),
             len(val_s), sum(len(v[0]) for v in teacher.values()) if teacher else 0, "on" if distil else "off")
    meta = student_meta(args)
    model = YoloStudent(len(CLASS_NAMES), args.width)
    net_cfg = {"num_classes": len(CLASS_NAMES), "width": args.width, "depth": list(model.depth)}
    prec = precision_.choose(torch.device("cpu"), getattr(args, "bf16", "auto"), getattr(args, "channels_last", "auto"))
    log.info("precision: %s", prec.describe())
    model = prec.model(model)
    params = YoloParams(STRIDES)
    ds = StudentSet(train_s, args.crop, teacher, tuple(args.scale), params)
    grid = torch.from_numpy(np.stack(yolo_grid((args.crop, args.crop), params), axis=1))
    g = torch.Generator().manual_seed(args.seed)
    dl = DataLoader(ds, batch_size=min(args.batch, len(ds)), shuffle=True, drop_last=True, generator=g,
                    num_workers=args.workers, persistent_workers=args.workers > 0,
                    worker_init_fn=lambda w: ds.t.set_random_seed(args.seed * 1000 + w))
    if args.workers == 0:
        ds.t.set_random_seed(args.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = warmup_cosine(opt, args.epochs * len(dl), len(dl))

    def step(batch):
        x, tgt_box, tgt_cls, t_box, t_logits, t_conf, t_cell_w = batch
        with prec.autocast():  # bf16 measured 1.5x faster on an AVX-512 BF16 CPU; off where emulated
            levels = model(prec.input(x))
        pred = flatten_levels(levels)  # losses in float32
        hard, parts = yolo_loss(pred, grid, tgt_box, tgt_cls)
        loss = hard
        if distil:
            kd, kparts = kd_loss(pred, grid, t_box, t_logits, t_conf, t_cell_w, args.kd_t, args.kd_fixed_lambda,
                                 args.kd_temperature, getattr(args, "kd_box_weight", 1.0))
            loss = hard + args.kd_weight * kd
            parts.update(kparts, kd=float(kd.detach()))
        return loss, {**parts, "hard": float(hard.detach())}

    val = None if args.no_val else (
        lambda m: validate(m, meta, val_s, torch.device("cpu"), amp=False, channels_last=prec.channels_last))
    loop = Loop(args, model, opt, sched, EMA(model), meta, {"arch": "yolo", "net": net_cfg}, val, "mAP50_mask_no_mask",
                {"loss": "total", "hard": "L_hard", "kd": "Σ λ·L_KD"}, ("AP", "mAP", "lambda"),
                f"training loss ({'distilled' if distil else 'baseline'})", val_every=args.val_every)
    return loop.run(dl, step)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    fit(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
