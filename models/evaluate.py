"""Evaluation: COCO AP (faster-coco-eval), no_mask operating point, PR curves, confusion matrix.

CLI::

    python -m models.evaluate --model models/detectnet_v2_r18/model.onnx \
        --data ../shared/data/face-mask-andrewmvd --out eval.json --plots eval_plots/

A classifier model (metadata ``role: classifier``) gets the crop-level report, and ``--classifier CLS.onnx``
scores the detector + classifier cascade: both in :mod:`models.evaluate_classifier`.

AP@0.5 per class, mAP@0.5 and mAP@0.5:0.95 come from faster-coco-eval's COCOeval
(101-point interpolated precision, as pycocotools). The operating point, PR
curves and confusion matrix use greedy IoU >= 0.5 matching of the detections the
appliance would keep (class-agnostic NMS, one class per face).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import cv2
import numpy as np

from edge.decoders import CLASS_NAMES, box_iou
from edge.model import ModelMeta, postprocess, preprocess

log = logging.getLogger(__name__)
#: A detection list for one image: (boxes (K,4) float32 xyxy px, scores (K,), classes (K,) int64).
Dets = Tuple[np.ndarray, np.ndarray, np.ndarray]


def coco_metrics(gts: Sequence[Tuple[np.ndarray, np.ndarray]], dets: Sequence[Dets],
                 classes: Sequence[str] = CLASS_NAMES, max_dets: int = 300) -> Dict[str, float]:
    """COCO bbox metrics with faster-coco-eval.

    Args:
        gts: per image (boxes (N,4) xyxy px, labels (N,) int64).
        dets: per image (boxes (K,4) xyxy px, scores (K,), classes (K,)).
        max_dets: detections per image kept by COCOeval (crowd photos hold > 100 faces).

    Returns:
        ``{"AP50_<class>", "mAP50", "mAP50_mask_no_mask", "mAP50_95"}``; a class with no
        ground truth gets AP ``nan`` and is left out of the means.
    """
    from faster_coco_eval import COCO, COCOeval_faster

    images, anns, results = [], [], []
    for i, ((gb, gl), (db, ds, dc)) in enumerate(zip(gts, dets)):
        images.append({"id": i, "width": 10000, "height": 10000})
        for b, l in zip(np.asarray(gb).reshape(-1, 4), gl):
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(l), "bbox": [float(b[0]), float(b[1]), w, h],
                         "area": w * h, "iscrowd": 0})
        for b, s, c in zip(np.asarray(db).reshape(-1, 4), ds, dc):
            results.append({"image_id": i, "category_id": int(c), "score": float(s),
                            "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": i, "name": n} for i, n in enumerate(classes)]}
    gt.createIndex()
    out: Dict[str, float] = {}
    if not results:
        out.update({f"AP50_{n}": 0.0 for n in classes})
        out.update(mAP50=0.0, mAP50_mask_no_mask=0.0, mAP50_95=0.0)
        return out
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval_faster(gt, dt, "bbox")
        ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate(); ev.accumulate(); ev.summarize()
    prec = np.asarray(ev.eval["precision"])  # (T IoUs, R recalls, K classes, A areas, M maxDets)
    ap50, ap5095 = [], []
    for k, name in enumerate(classes):
        p50 = prec[0, :, k, 0, -1]
        pall = prec[:, :, k, 0, -1]
        has_gt = any(int(l) == k for _, gl in gts for l in gl)
        a50 = float(p50[p50 > -1].mean()) if has_gt and (p50 > -1).any() else float("nan")
        a = float(pall[pall > -1].mean()) if has_gt and (pall > -1).any() else float("nan")
        out[f"AP50_{name}"] = a50
        ap50.append(a50); ap5095.append(a)
    out["mAP50"] = float(np.nanmean(ap50))
    out["mAP50_mask_no_mask"] = float(np.nanmean(ap50[:2]))
    out["mAP50_95"] = float(np.nanmean(ap5095))
    return out


def match(gt_boxes: np.ndarray, gt_labels: np.ndarray, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
          iou_thr: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """Greedy class-agnostic matching, highest score first.

    Returns:
        ``(gt_match (N,) int64: index of the detection matched to each GT or -1,
        det_match (K,) int64: index of the GT matched to each detection or -1)``.
    """
    gt_match = np.full(len(gt_boxes), -1, np.int64)
    det_match = np.full(len(boxes), -1, np.int64)
    if len(gt_boxes) == 0 or len(boxes) == 0:
        return gt_match, det_match
    iou = box_iou(boxes, gt_boxes)
    for d in np.argsort(-scores):
        cand = np.where(gt_match == -1, iou[d], -1.0)
        g = int(np.argmax(cand))
        if cand[g] >= iou_thr:
            gt_match[g], det_match[d] = d, g
    return gt_match, det_match


def class_pr(gts: Sequence[Tuple[np.ndarray, np.ndarray]], dets: Sequence[Dets], cls: int,
             thresholds: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Precision and recall of class ``cls`` at each score threshold, (T,) float64 each.

    A true positive is a detection of ``cls`` matched (IoU >= 0.5, class-agnostic greedy)
    to a GT of ``cls``.
    """
    tp = np.zeros(len(thresholds)); fp = np.zeros(len(thresholds)); n_gt = 0
    for (gb, gl), (db, ds, dc) in zip(gts, dets):
        n_gt += int((gl == cls).sum())
        for ti, t in enumerate(thresholds):
            keep = ds >= t
            _, dm = match(gb, gl, db[keep], ds[keep], dc[keep])
            is_c = dc[keep] == cls
            ok = (dm >= 0) & is_c
            ok[ok] = gl[dm[ok]] == cls
            tp[ti] += ok.sum(); fp[ti] += (is_c & ~ok).sum()
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    recall = tp / max(n_gt, 1)
    return precision, recall


def confusion(gts: Sequence[Tuple[np.ndarray, np.ndarray]], dets: Sequence[Dets], thresholds: np.ndarray,
              n_classes: int = 3) -> np.ndarray:
    """(C+1, C+1) int64 confusion matrix: rows GT class (+ background), columns predicted (+ missed).

    Detections are kept at their class's threshold ``thresholds[c]``.
    """
    cm = np.zeros((n_classes + 1, n_classes + 1), np.int64)
    for (gb, gl), (db, ds, dc) in zip(gts, dets):
        keep = ds >= thresholds[dc] if len(dc) else np.zeros(0, bool)
        gm, dm = match(gb, gl, db[keep], ds[keep], dc[keep])
        for g, d in enumerate(gm):
            cm[gl[g], dc[keep][d] if d >= 0 else n_classes] += 1
        for d in np.nonzero(dm < 0)[0]:
            cm[n_classes, dc[keep][d]] += 1
    return cm


def choose_threshold(gts, dets, cls: int = 1, min_recall: float = 0.85, beta: float = 2.0) -> Tuple[float, float, float]:
    """Operating threshold for ``cls``: the highest score threshold whose recall reaches
    ``min_recall``; if none does, the one with the best F-beta (``beta = 2`` weighs recall twice
    as much as precision: a missed unmasked person is the costly error; ``beta = 1`` is F1).

    Returns:
        (threshold, precision, recall) at that threshold.
    """
    ts = np.round(np.arange(0.05, 0.951, 0.025), 3)
    p, r = class_pr(gts, dets, cls, ts)
    ok = np.nonzero(r >= min_recall)[0]
    b2 = beta * beta
    f = (1 + b2) * p * r / np.maximum(b2 * p + r, 1e-9)
    i = int(ok[-1]) if len(ok) else int(np.argmax(f))
    return float(ts[i]), float(p[i]), float(r[i])


def run_images(infer: Callable[[np.ndarray], Dict[str, np.ndarray]], meta: ModelMeta, images: Sequence,
               class_agnostic: bool, conf: float = 0.05) -> List[Dets]:
    """Run ``infer`` ((1,3,H,W) float32 -> {role: array}) over images (paths or BGR arrays)."""
    out = []
    cluster = meta.cluster_params(conf_threshold=conf)
    for im in images:
        img = cv2.imread(str(im)) if not isinstance(im, np.ndarray) else im
        x, lb = preprocess(img, meta)
        out.append(postprocess(infer(x), meta, lb, (img.shape[1], img.shape[0]), cluster, class_agnostic))
    return out


def save_plots(gts, dets, meta: ModelMeta, thresholds: np.ndarray, out_dir: Path) -> None:
    """Write ``pr_curve.png`` and ``confusion_matrix.png`` to ``out_dir``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    ts = np.round(np.arange(0.05, 0.951, 0.025), 3)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for k, name in enumerate(meta.classes):
        p, r = class_pr(gts, dets, k, ts)
        ax.plot(r, p, marker=".", label=name)
        t = thresholds[k]
        j = int(np.argmin(np.abs(ts - t)))
        ax.scatter([r[j]], [p[j]], s=60, edgecolors="k", zorder=3)
    ax.set_xlabel("recall"); ax.set_ylabel("precision"); ax.set_xlim(0, 1); ax.set_ylim(0, 1.02)
    ax.set_title("PR at IoU 0.5 (dots: operating thresholds)"); ax.grid(alpha=0.3); ax.legend()
    fig.tight_layout(); fig.savefig(out_dir / "pr_curve.png", dpi=110); plt.close(fig)

    cm = confusion(gts, dets, thresholds, len(meta.classes))
    labels = list(meta.classes) + ["(none)"]
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="k")
    ax.set_xticks(range(len(labels)), labels, rotation=30); ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted (none = missed)"); ax.set_ylabel("ground truth (none = false positive)")
    ax.set_title("Confusion at operating thresholds, IoU 0.5")
    fig.tight_layout(); fig.savefig(out_dir / "confusion_matrix.png", dpi=110); plt.close(fig)


def evaluate(infer, meta: ModelMeta, samples, plots: Path = None, min_recall: float = 0.85) -> Dict:
    """Full evaluation of one model on ``samples`` (see module doc). Returns a JSON-ready dict.

    ``precision`` and ``recall`` are over all classes at the operating thresholds: a true
    positive is a kept detection matched (IoU >= 0.5) to a face of the same class.
    """
    gts = [(s.boxes, s.labels) for s in samples]
    images = [s.image for s in samples]
    ap = coco_metrics(gts, run_images(infer, meta, images, class_agnostic=False))
    deployed = run_images(infer, meta, images, class_agnostic=True)
    # no_mask: recall first (see choose_threshold); mask: best F1; mask_incorrect: too few faces to
    # tune (3 in the shared validation split), so it shares the no_mask threshold.
    thr, p, r = choose_threshold(gts, deployed, cls=1, min_recall=min_recall)
    thr_mask = choose_threshold(gts, deployed, cls=0, min_recall=1.01, beta=1.0)[0]
    thresholds = np.array([thr_mask, thr, thr], np.float32)
    cm = confusion(gts, deployed, thresholds, len(meta.classes))
    C = len(meta.classes)
    tp = int(np.trace(cm[:C, :C]))  # right box and right class, at the operating thresholds
    n_pred, n_gt = int(cm[:, :C].sum()), int(cm[:C, :].sum())
    result = {"n_images": len(samples), "n_faces": {n: int(sum((s.labels == k).sum() for s in samples))
                                                   for k, n in enumerate(meta.classes)},
              **ap, "precision": tp / max(n_pred, 1), "recall": tp / max(n_gt, 1),
              "no_mask_threshold": thr, "no_mask_precision": p, "no_mask_recall": r,
              "thresholds": {n: float(t) for n, t in zip(meta.classes, thresholds)},
              "confusion_matrix": {"rows_gt": list(meta.classes) + ["background"],
                                   "cols_pred": list(meta.classes) + ["missed"], "counts": cm.tolist()}}
    if plots is not None:
        save_plots(gts, deployed, meta, thresholds, Path(plots))
    return result


CLUSTER_SWEEP = [{"method": "nms", "iou_threshold": 0.4}, {"method": "nms", "iou_threshold": 0.5},
                 {"method": "dbscan", "dbscan_eps": 0.6, "dbscan_min_samples": 0.0},
                 {"method": "dbscan", "dbscan_eps": 0.5, "dbscan_min_samples": 0.0},
                 {"method": "dbscan", "dbscan_eps": 0.4, "dbscan_min_samples": 0.0},
                 {"method": "dbscan", "dbscan_eps": 0.3, "dbscan_min_samples": 0.3},
                 {"method": "dbscan", "dbscan_eps": 0.5, "dbscan_min_samples": 0.5}]


def sweep_clustering(infer, meta: ModelMeta, samples, variants=CLUSTER_SWEEP) -> List[Dict]:
    """AP of each clustering variant; the network runs once per image (outputs cached)."""
    outs = []
    for s in samples:
        img = cv2.imread(str(s.image))
        x, lb = preprocess(img, meta)
        outs.append((infer(x), lb, (img.shape[1], img.shape[0])))
    gts = [(s.boxes, s.labels) for s in samples]
    rows = []
    for v in variants:
        cl = meta.cluster_params(conf_threshold=0.05, **v)
        dets = [postprocess(o, meta, lb, wh, cl, class_agnostic=False) for o, lb, wh in outs]
        rows.append({**v, **coco_metrics(gts, dets)})
    return rows


def main(argv=None) -> int:
    from models.data import read_dataset, split

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path, help="ONNX model file")
    ap.add_argument("--data", required=True, type=Path, help="VOC or KITTI dataset folder")
    ap.add_argument("--split", default="val", choices=["val", "train", "all"])
    ap.add_argument("--out", type=Path, help="write the metrics JSON here")
    ap.add_argument("--plots", type=Path, help="folder for pr_curve.png and confusion_matrix.png")
    ap.add_argument("--min-recall", type=float, default=0.85, help="no_mask recall the threshold must keep")
    ap.add_argument("--cluster", choices=["dbscan", "nms"], help="override the model's clustering method")
    ap.add_argument("--sweep", action="store_true", help="only compare clustering variants (AP table) and exit")
    ap.add_argument("--classifier", type=Path, help="secondary classifier .onnx (role: classifier): score the "
                    "detector + classifier cascade (models.evaluate_classifier); 'none': the same report for the "
                    "detector alone")
    ap.add_argument("--min-face", type=float, default=24.0, help="classifier: ground-truth crops >= this (px); "
                    "cascade: faces under this keep the detector's class")
    a = ap.parse_args(argv)
    from edge.config import model_role
    if model_role(a.model) == "classifier" or a.classifier:  # crop-level report / cascade: models.evaluate_classifier
        from models import evaluate_classifier as ec
        if a.classifier is None:
            return ec.main_crops(a.model, a.data, a.split, a.out, a.plots, a.min_face)
        return ec.main_cascade(a.model, None if str(a.classifier) == "none" else a.classifier, a.data, a.split, a.out,
                               a.min_face)
    from edge.backends.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(a.model)
    if a.cluster:
        backend.meta.cluster["method"] = a.cluster
    samples = read_dataset(a.data)
    tr, va = split(samples)
    samples = {"val": va, "train": tr, "all": samples}[a.split]
    if a.sweep:
        for r in sweep_clustering(backend.infer, backend.meta, samples):
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}))
        return 0
    res = evaluate(backend.infer, backend.meta, samples, a.plots, a.min_recall)
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        a.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
