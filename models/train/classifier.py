"""Train and export the secondary mask classifier (MobileNetV2 on face crops; see :mod:`edge.classifier`).

CLI::

    # train (resumable: re-run the same command after an interruption)
    python -m models.train.classifier train --data ../shared/data/face-mask-andrewmvd --out runs/cls \
        --imagenet ../shared/weights/imagenet/mobilenet_v2_1.0_imagenet_float.pth --epochs 10 --threads 1
    # choose detail_px on the validation split, then export with its metadata (role: classifier)
    python -m models.train.classifier detail-sweep --model runs/cls/model.onnx --data ../shared/data/face-mask-andrewmvd
    python -m models.train.classifier export --ckpt runs/cls/last.pt --out models/released/mask_classifier/model.onnx \
        --version 1.0.0 --detail-px 32 --eval models/released/mask_classifier/eval_val.json

Data: every labelled face of the training photos whose longer side is at least ``--min-face`` px, split
by the detectors' name-hash rule (:func:`models.data.split`, validation = md5(stem) starts with 0 or 1).
Each face is stored once as a context crop (the box's longer side x :data:`CTX_SCALE`, square, at
:data:`CTX_SIZE` px, grey outside the photo); a training sample re-crops it with a jittered box through
the runtime's own :func:`edge.classifier.crop_region`, so train and runtime share one geometry.

Augmentation (:func:`train_augment`, albumentations): box jitter (centre +-8 % of the side, width and
height x exp(N(0, 0.12)) each: the detector's boxes are looser and shifted), horizontal flip, lighting
(brightness/contrast, gamma, hue/saturation), blur (Gaussian or motion), JPEG quality 30-95, and low
resolution (the crop shrunk to 12-32 px, i.e. a face of about 9-23 px, and enlarged again).

Class imbalance (train: ~2,780 mask, ~640 no_mask, ~118 mask_incorrect faces) is handled by
square-root class-balanced sampling: a face of class ``c`` is drawn with weight ``n_c ** -0.5``, so an
epoch holds mask : no_mask : mask_incorrect about 53 : 25 : 11 instead of 79 : 18 : 3, without
repeating the 118 mask_incorrect faces 24 times (full balancing overfits them). The loss is plain
cross-entropy with label smoothing 0.05.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from torch import nn

from edge.classifier import crop_faces, crop_region, crop_square, crops_to_tensor
from edge.decoders import CLASS_NAMES
from edge.model import METADATA_KEY, ModelMeta
from models.data import Sample, read_voc, split
from models.nets.mobilenet import IMAGENET_MEAN, IMAGENET_STD, MobileNetV2, load_imagenet, unfold_batchnorm
from models.train.loop import warmup_cosine

log = logging.getLogger("models.train.classifier")

INPUT_SIZE = 96        #: network input side (px)
CROP_MARGIN = 0.2      #: crop = longer side + 20 % on each side
CTX_SCALE = 2.2        #: stored context crop = longer side x 2.2 (room for jitter)
CTX_SIZE = 144         #: stored context crop side (px)


# ---------------------------------------------------------------------------------------------- data
def face_records(samples: Sequence[Sample], min_face: float) -> List[Tuple[int, int, np.ndarray, int]]:
    """(sample index, face index, box, label) of every face whose longer side is >= ``min_face`` px."""
    out = []
    for si, s in enumerate(samples):
        for fi, (b, l) in enumerate(zip(s.boxes, s.labels)):
            if max(b[2] - b[0], b[3] - b[1]) >= min_face:
                out.append((si, fi, b.astype(np.float32), int(l)))
    return out


def context_crops(samples: Sequence[Sample], min_face: float) -> Dict[str, np.ndarray]:
    """Context crops of every face: ``ctx`` (N, CTX_SIZE, CTX_SIZE, 3) uint8 BGR, ``box`` (N, 4) the face
    box in context px, ``label`` (N,), ``face_px`` (N,) the longer side in the photo."""
    recs = face_records(samples, min_face)
    ctx = np.empty((len(recs), CTX_SIZE, CTX_SIZE, 3), np.uint8)
    boxes = np.empty((len(recs), 4), np.float32)
    labels = np.empty(len(recs), np.int64)
    face_px = np.empty(len(recs), np.float32)
    cur, img = -1, None
    margin = (CTX_SCALE - 1.0) / 2.0
    for i, (si, _, b, l) in enumerate(recs):
        if si != cur:
            cur, img = si, cv2.imread(str(samples[si].image), cv2.IMREAD_COLOR)
        x0, y0, x1, y1 = crop_square(b, margin)
        side = max(1, int(np.ceil(max(x1 - x0, y1 - y0))))
        x0, y0 = int(np.floor(x0)), int(np.floor(y0))
        ctx[i] = crop_region(img, (x0, y0, x0 + side, y0 + side), CTX_SIZE)
        s = CTX_SIZE / side
        boxes[i] = [(b[0] - x0) * s, (b[1] - y0) * s, (b[2] - x0) * s, (b[3] - y0) * s]
        labels[i] = l
        face_px[i] = max(b[2] - b[0], b[3] - b[1])
    return {"ctx": ctx, "box": boxes, "label": labels, "face_px": face_px}


def extra_crop_records(root: Path) -> Dict[str, np.ndarray]:
    """Context crops from ``mask-crops-chandrikadeb7`` (``tight_face_crop`` images only): the photo is taken
    as the margin crop itself, so the face box is the centre ``1 / (1 + 2 * CROP_MARGIN)`` of it."""
    man = json.loads((Path(root) / "manifest.json").read_text())
    keep = [m for m in man if m.get("tight_face_crop")]
    n = len(keep)
    ctx = np.full((n, CTX_SIZE, CTX_SIZE, 3), 128, np.uint8)
    boxes = np.empty((n, 4), np.float32)
    labels = np.empty(n, np.int64)
    inner = CTX_SIZE / CTX_SCALE * (1 + 2 * CROP_MARGIN)   # the image's side inside the context crop
    lo = (CTX_SIZE - inner) / 2
    face = inner / (1 + 2 * CROP_MARGIN)
    for i, m in enumerate(keep):
        img = cv2.imread(str(Path(root) / m["file"]), cv2.IMREAD_COLOR)
        side = int(round(inner))
        ctx[i, int(lo):int(lo) + side, int(lo):int(lo) + side] = cv2.resize(img, (side, side),
                                                                          interpolation=cv2.INTER_AREA)
        c = CTX_SIZE / 2
        boxes[i] = [c - face / 2, c - face / 2, c + face / 2, c + face / 2]
        labels[i] = CLASS_NAMES.index("mask" if m["label"] == "with_mask" else "no_mask")
    return {"ctx": ctx, "box": boxes, "label": labels, "face_px": np.full(n, 256, np.float32)}


def train_augment():
    """The photometric part of the augmentation (albumentations); geometry is :func:`jitter_box` + flip."""
    import albumentations as A

    return A.Compose([
        A.HorizontalFlip(p=0.5),
        A.OneOf([A.RandomBrightnessContrast(brightness_limit=0.3, contrast_limit=0.3),
                 A.RandomGamma(gamma_limit=(70, 150))], p=0.7),
        A.HueSaturationValue(hue_shift_limit=8, sat_shift_limit=25, val_shift_limit=10, p=0.3),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 7))], p=0.25),
        A.Downscale(scale_range=(12 / INPUT_SIZE, 32 / INPUT_SIZE), interpolation_pair={
            "downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}, p=0.3),
        A.ImageCompression(quality_range=(30, 95), p=0.4),
    ])


def jitter_box(box: np.ndarray, rng: np.random.Generator, shift: float = 0.08, scale: float = 0.12) -> np.ndarray:
    """A detector-like box around ``box``: centre moved by N(0, shift) x side, width and height each
    scaled by exp(N(0, scale)) (clipped to +-2.5 sigma)."""
    w, h = box[2] - box[0], box[3] - box[1]
    cx = (box[0] + box[2]) / 2 + np.clip(rng.normal(0, shift), -2.5 * shift, 2.5 * shift) * w
    cy = (box[1] + box[3]) / 2 + np.clip(rng.normal(0, shift), -2.5 * shift, 2.5 * shift) * h
    w = w * math.exp(np.clip(rng.normal(0, scale), -2.5 * scale, 2.5 * scale))
    h = h * math.exp(np.clip(rng.normal(0, scale), -2.5 * scale, 2.5 * scale))
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)


class CropDataset(torch.utils.data.Dataset):
    """Augmented training crops: (3, INPUT_SIZE, INPUT_SIZE) float32 RGB (x - 128) / 128, label."""

    def __init__(self, data: Dict[str, np.ndarray], seed: int = 0):
        self.data = data
        self.aug = train_augment()
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.data["label"])

    def __getitem__(self, i: int):
        box = jitter_box(self.data["box"][i], self.rng)
        crop = crop_region(self.data["ctx"][i], crop_square(box, CROP_MARGIN), INPUT_SIZE)
        crop = self.aug(image=crop)["image"]
        x = crops_to_tensor(crop[None], "RGB", IMAGENET_MEAN, IMAGENET_STD)[0]
        return torch.from_numpy(x), int(self.data["label"][i])


def gt_crops(samples: Sequence[Sample], min_face: float) -> Dict[str, np.ndarray]:
    """Runtime-geometry crops (:func:`edge.classifier.crop_faces`) of every ground-truth face >= ``min_face`` px:
    ``crops`` (N, S, S, 3) uint8 BGR, ``label`` (N,), ``face_px`` (N,)."""
    crops, labels, px = [], [], []
    for s in samples:
        L = np.maximum(s.boxes[:, 2] - s.boxes[:, 0], s.boxes[:, 3] - s.boxes[:, 1]) if len(s.boxes) else np.zeros(0)
        keep = L >= min_face
        if not keep.any():
            continue
        img = cv2.imread(str(s.image), cv2.IMREAD_COLOR)
        crops.append(crop_faces(img, s.boxes[keep], INPUT_SIZE, CROP_MARGIN))
        labels.append(s.labels[keep])
        px.append(L[keep])
    if not crops:
        return {"crops": np.zeros((0, INPUT_SIZE, INPUT_SIZE, 3), np.uint8), "label": np.zeros(0, np.int64),
                "face_px": np.zeros(0, np.float32)}
    return {"crops": np.concatenate(crops), "label": np.concatenate(labels).astype(np.int64),
            "face_px": np.concatenate(px).astype(np.float32)}


# ---------------------------------------------------------------------------------------------- model
class CropClassifier(nn.Module):
    """MobileNetV2 with a 3-way head; ``forward`` returns softmax probabilities (what the ONNX file outputs),
    ``logits`` the raw scores (training)."""

    def __init__(self, backbone: MobileNetV2):
        super().__init__()
        self.net = backbone

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


def torch_probs(model: CropClassifier, crops: np.ndarray, batch: int = 64) -> np.ndarray:
    """(N, S, S, 3) uint8 BGR crops -> (N, C) float32 probabilities (eval mode, no grad)."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(crops), batch):
            x = torch.from_numpy(crops_to_tensor(crops[i:i + batch], "RGB", IMAGENET_MEAN, IMAGENET_STD))
            out.append(model(x).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(CLASS_NAMES)), np.float32)


def val_metrics(probs: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """Balanced accuracy mask vs no_mask (argmax over those two, on faces of those classes), per-class
    recall (3-way argmax) and their mean."""
    from models.evaluation.classifier import crop_metrics

    m = crop_metrics(probs, labels, list(CLASS_NAMES))
    return {"balanced_accuracy": m["balanced_accuracy"], "mean_recall": m["mean_recall"],
            **{f"recall_{c}": v["recall"] for c, v in m["per_class"].items()}}


# ---------------------------------------------------------------------------------------------- train
def build_meta(version: str = "0.0.0", metrics: Optional[Dict] = None, detail_px: int = 0) -> ModelMeta:
    """The classifier's :class:`edge.model.ModelMeta` (role ``classifier``)."""
    return ModelMeta(classes=list(CLASS_NAMES), input_name="input", input_w=INPUT_SIZE, input_h=INPUT_SIZE,
                     color="RGB", mean=IMAGENET_MEAN, std=IMAGENET_STD, resize="stretch", decoder="classifier",
                     outputs={"probs": "probs"}, cluster={}, version=version, metrics=metrics or {},
                     role="classifier", crop_margin=CROP_MARGIN, detail_px=int(detail_px))


def fit(a: argparse.Namespace) -> Dict:
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    a.out.mkdir(parents=True, exist_ok=True)
    cache = a.out / "crops_cache.npz"
    samples = read_voc(a.data)
    train_s, val_s = split(samples, a.val_hex)
    if cache.exists():
        z = np.load(cache)
        tr = {k[3:]: z[k] for k in z.files if k.startswith("tr_")}
        va = {k[3:]: z[k] for k in z.files if k.startswith("va_")}
    else:
        t0 = time.time()
        tr, va = context_crops(train_s, a.min_face), gt_crops(val_s, a.val_min_face)
        np.savez(cache, **{"tr_" + k: v for k, v in tr.items()}, **{"va_" + k: v for k, v in va.items()})
        log.info("crops: %d train, %d val in %.0f s", len(tr["label"]), len(va["label"]), time.time() - t0)
    if a.extra_crops:
        ex = extra_crop_records(a.extra_crops)
        tr = {k: np.concatenate([tr[k], ex[k]]) for k in tr}
        log.info("added %d crops from %s", len(ex["label"]), a.extra_crops)
    counts = np.bincount(tr["label"], minlength=len(CLASS_NAMES))
    w = counts.astype(np.float64) ** -0.5
    sampler = torch.utils.data.WeightedRandomSampler(w[tr["label"]], num_samples=len(tr["label"]), replacement=True,
                                                     generator=torch.Generator().manual_seed(a.seed))
    ds = CropDataset(tr, a.seed)
    dl = torch.utils.data.DataLoader(ds, batch_size=a.batch, sampler=sampler, num_workers=0, drop_last=True)
    model = CropClassifier(load_imagenet(a.imagenet, len(CLASS_NAMES), dropout=0.2))
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    sched = warmup_cosine(opt, a.epochs * len(dl), len(dl))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    start, history, best = 0, [], -1.0
    last = a.out / "last.pt"
    if last.exists():
        ck = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"]); opt.load_state_dict(ck["opt"]); sched.load_state_dict(ck["sched"])
        start, history, best = ck["epoch"] + 1, ck["history"], ck["best"]
        ds.rng = np.random.default_rng(a.seed + start)
        log.info("resumed at epoch %d", start)
    else:
        it = iter(dl)
        unfold_batchnorm(model, (next(it)[0] for _ in range(8)))  # see unfold_batchnorm: fine-tuning stalls without
    for ep in range(start, a.epochs):
        model.train()
        t0, tot, n = time.time(), 0.0, 0
        for x, y in dl:
            loss = loss_fn(model.logits(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(y); n += len(y)
        probs = torch_probs(model, va["crops"])
        m = val_metrics(probs, va["label"])
        score = m["balanced_accuracy"] + 0.5 * m["mean_recall"]  # checkpoint rule: mask/no_mask first
        rec = {"epoch": ep, "loss": tot / max(n, 1), "seconds": time.time() - t0, **m, "score": score}
        history.append(rec)
        log.info("epoch %d %s", ep, json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in rec.items()}))
        ck = {"model": model.state_dict(), "epoch": ep, "history": history, "args": vars(a) | {"data": str(a.data),
              "out": str(a.out), "imagenet": str(a.imagenet), "extra_crops": str(a.extra_crops) if a.extra_crops else None}}
        if score > best:
            best = score
            torch.save(ck | {"best": best}, a.out / "best.pt")
        torch.save(ck | {"opt": opt.state_dict(), "sched": sched.state_dict(), "best": best}, last)
        (a.out / "history.json").write_text(json.dumps(history, indent=1))
    return {"history": history, "best": best}


# ---------------------------------------------------------------------------------------------- export
def load_classifier(ckpt: Path) -> CropClassifier:
    ck = torch.load(ckpt, map_location="cpu", weights_only=False)
    model = CropClassifier(MobileNetV2(len(CLASS_NAMES), dropout=0.2))
    model.load_state_dict(ck["model"])
    return model.eval()


def export_classifier(model: CropClassifier, meta: ModelMeta, out: Path, opset: int = 13) -> Path:
    """ONNX: input ``input`` (N, 3, S, S) float32 (dynamic batch N), output ``probs`` (N, C) softmax;
    the :class:`ModelMeta` JSON under ``maskwatch`` and ``role`` = ``classifier`` in ``metadata_props``."""
    import onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.float().eval()
    torch.onnx.export(model, (torch.zeros(1, 3, meta.input_h, meta.input_w),), str(out), input_names=["input"],
                      output_names=["probs"], dynamic_axes={"input": {0: "batch"}, "probs": {0: "batch"}},
                      opset_version=opset, do_constant_folding=True, dynamo=False)
    m = onnx.load(str(out))  # weights stay float32 (9 MB): float16 storage moved probabilities by up to 0.015
    m.metadata_props.clear()
    for k, v in {METADATA_KEY: meta.to_json(), "role": "classifier", "classes": ",".join(meta.classes),
                 "version": meta.version}.items():
        p = m.metadata_props.add(); p.key, p.value = k, v
    m.producer_name, m.doc_string = "maskwatch", f"maskwatch mask classifier {meta.version}"
    onnx.checker.check_model(m)
    onnx.save(m, str(out))
    return out


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--imagenet", type=Path, required=True, help="mobilenet_v2_1.0_imagenet_float.pth")
    t.add_argument("--extra-crops", type=Path, help="mask-crops-chandrikadeb7 folder (tight face crops only)")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--min-face", type=float, default=10.0, help="train on faces whose longer side is >= this (px)")
    t.add_argument("--val-min-face", type=float, default=16.0, help="validate on faces >= this (px)")
    t.add_argument("--val-hex", default="01")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    e = sub.add_parser("export")
    e.add_argument("--ckpt", type=Path, required=True)
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--version", default="0.0.0")
    e.add_argument("--detail-px", type=int, default=0, help="store this detail cap (edge.classifier.cap_detail) in "
                   "the metadata; 0: off")
    e.add_argument("--eval", type=Path, action="append", default=[],
                   help="crop-level report(s) from models.evaluation.evaluate to embed as metrics (name: file stem)")
    c = sub.add_parser("crops", help="write ground-truth face crops as JPEG files (INT8 calibration images for "
                       "`maskwatch build-engine --model models/released/mask_classifier/model.onnx --precision int8 --calib-dir`, "
                       "or `maskwatch check-parity --model ... --images`)")
    c.add_argument("--data", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--split", default="train", choices=["train", "val", "all"])
    c.add_argument("--min-face", type=float, default=24.0)
    c.add_argument("--count", type=int, default=300, help="at most this many crops, evenly spread")
    d = sub.add_parser("detail-sweep", help="validation balanced accuracy of an exported classifier for each "
                       "detail_px (how the release's value was chosen)")
    d.add_argument("--model", type=Path, required=True)
    d.add_argument("--data", type=Path, required=True)
    d.add_argument("--values", type=int, nargs="+", default=[0, 64, 48, 40, 32, 24])
    a = ap.parse_args(argv)
    if a.cmd == "detail-sweep":
        from edge.classifier import Classifier, cap_detail
        from models.evaluation.classifier import crop_metrics

        va = gt_crops(split(read_voc(a.data))[1], 24.0)
        cls = Classifier(a.model)
        for v in a.values:
            m = crop_metrics(cls.probs_of_crops(cap_detail(va["crops"], v)), va["label"], cls.classes)
            print(json.dumps({"detail_px": v, "balanced_accuracy": round(m["balanced_accuracy"], 4),
                              "recall": {c: round(r["recall"], 3) for c, r in m["per_class"].items()}}))
        return 0
    if a.cmd == "crops":
        tr, va = split(read_voc(a.data))
        d = gt_crops({"train": tr, "val": va, "all": tr + va}[a.split], a.min_face)
        idx = np.unique(np.linspace(0, len(d["label"]) - 1, min(a.count, len(d["label"]))).round().astype(int)) \
            if len(d["label"]) else []
        a.out.mkdir(parents=True, exist_ok=True)
        for k, i in enumerate(idx):
            cv2.imwrite(str(a.out / f"crop_{k:04d}_{CLASS_NAMES[d['label'][i]]}.jpg"), d["crops"][i])
        log.info("wrote %d crops to %s", len(idx), a.out)
        return 0
    if a.cmd == "train":
        res = fit(a)
        print(json.dumps(res["history"][-1] if res["history"] else {}, indent=1))
        return 0
    metrics = {}
    for p in a.eval:
        ev = json.loads(p.read_text())
        metrics[p.stem] = {k: ev[k] for k in ("balanced_accuracy", "mean_recall", "n") if k in ev}
        metrics[p.stem]["recall"] = {c: v["recall"] for c, v in ev.get("per_class", {}).items()}
    model = load_classifier(a.ckpt)
    out = export_classifier(model, build_meta(a.version, metrics, a.detail_px), a.out)
    log.info("wrote %s (%.1f MB)", out, out.stat().st_size / 1e6)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
