"""Evaluation of the secondary mask classifier: on ground-truth crops, and the cascade end to end.

Crop level (``python -m models.evaluation.evaluate --model CLS.onnx --data VOC_DIR --split all --out report.json``,
dispatched here when the model's metadata says ``role: classifier``): every ground-truth face whose
longer side is >= ``--min-face`` px (24 by default) is cut out with the runtime's own crop
(:func:`edge.classifier.crop_faces`) and classified; the report holds

* ``balanced_accuracy``: mask vs no_mask, the mean of the two recalls, each face of those two classes
  decided by the larger of its two probabilities;
* ``per_class``: ``{class: {precision, recall, n}}`` of the 3-way decision (:func:`edge.classifier.decide`);
* ``confusion``: rows ground truth, columns predicted;
* ``mask_incorrect_pr``: mask_incorrect recall at precision >= 0.60, sweeping its probability;
* with ``--plots DIR``: ``DIR/confusion_matrix.png``.

Cascade (``--model DET.onnx --classifier CLS.onnx``, or ``--cascade-default``): the detector's boxes at a
low score (0.05) are classified with :func:`edge.classifier.classify_detections` (the function the
runtime and ``models.evaluation.predict`` use); each box gives one scored detection per class, score =
detector score x combined class probability; then COCO AP@0.5 per class, mean AP over mask and
no_mask, and the non-compliant (no_mask or mask_incorrect) operating point: of the boxes kept at the
detector's operating thresholds whose decided class is non-compliant, ``nc_precision`` is the share
matched (IoU >= 0.5, greedy) to a non-compliant face, ``nc_recall`` the share of non-compliant faces so
matched.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, Optional, Sequence

import cv2
import numpy as np

from edge.classifier import Classifier, classify_detections, decide, face_px
from edge.decoders import CLASS_NAMES, box_iou, greedy_iou_match

log = logging.getLogger(__name__)


def crop_metrics(probs: np.ndarray, labels: np.ndarray, classes: Sequence[str] = CLASS_NAMES,
                 thresholds: Optional[Dict[str, float]] = None) -> Dict:
    """Crop-level figures from (N, C) probabilities and (N,) ground-truth class ids (see module doc)."""
    probs, labels = np.asarray(probs, np.float32).reshape(-1, len(classes)), np.asarray(labels, np.int64)
    C = len(classes)
    pred = decide(probs, classes, thresholds) if len(probs) else np.zeros(0, np.int64)
    cm = np.zeros((C, C), np.int64)
    np.add.at(cm, (labels, pred), 1)
    per = {}
    for k, c in enumerate(classes):
        n, npred = int(cm[k].sum()), int(cm[:, k].sum())
        per[c] = {"precision": float(cm[k, k] / npred) if npred else 0.0,
                  "recall": float(cm[k, k] / n) if n else 0.0, "n": n}
    im, inm = classes.index("mask"), classes.index("no_mask")
    sel = (labels == im) | (labels == inm)
    two = np.where(probs[sel, im] >= probs[sel, inm], im, inm)
    recs = [float((two[labels[sel] == k] == k).mean()) if (labels[sel] == k).any() else 0.0 for k in (im, inm)]
    present = [per[c]["recall"] for c in classes if per[c]["n"]]
    out = {"n": int(len(labels)), "balanced_accuracy": float(np.mean(recs)),
           "mean_recall": float(np.mean(present)) if present else 0.0, "per_class": per,
           "confusion": {"rows_gt": list(classes), "cols_pred": list(classes), "counts": cm.tolist()}}
    if "mask_incorrect" in classes:
        out["mask_incorrect_pr"] = recall_at_precision(probs[:, classes.index("mask_incorrect")],
                                                       labels == classes.index("mask_incorrect"), 0.60)
    return out


def recall_at_precision(score: np.ndarray, positive: np.ndarray, min_precision: float) -> Dict[str, float]:
    """Best recall over thresholds on ``score`` whose precision is >= ``min_precision``."""
    best = {"min_precision": min_precision, "recall": 0.0, "precision": 0.0, "threshold": 1.0}
    n_pos = int(positive.sum())
    if not n_pos:
        return best
    order = np.argsort(-score)
    tp = np.cumsum(positive[order])
    prec = tp / np.arange(1, len(order) + 1)
    rec = tp / n_pos
    ok = np.nonzero(prec >= min_precision)[0]
    if len(ok):
        j = ok[np.argmax(rec[ok])]
        best.update(recall=float(rec[j]), precision=float(prec[j]), threshold=float(score[order][j]))
    return best


def gt_crop_probs(cls: Classifier, samples, min_face: float) -> Dict[str, np.ndarray]:
    """Classifier probabilities of every ground-truth face >= ``min_face`` px: ``probs``, ``label``, ``face_px``."""
    probs, labels, px = [], [], []
    for s in samples:
        if not len(s.boxes):
            continue
        L = np.maximum(s.boxes[:, 2] - s.boxes[:, 0], s.boxes[:, 3] - s.boxes[:, 1])
        keep = L >= min_face
        if not keep.any():
            continue
        img = cv2.imread(str(s.image), cv2.IMREAD_COLOR)
        probs.append(cls.probs(img, s.boxes[keep]))
        labels.append(s.labels[keep])
        px.append(L[keep])
    C = len(cls.classes)
    if not probs:
        return {"probs": np.zeros((0, C), np.float32), "label": np.zeros(0, np.int64), "face_px": np.zeros(0)}
    return {"probs": np.concatenate(probs), "label": np.concatenate(labels), "face_px": np.concatenate(px)}


def save_confusion_png(cm: np.ndarray, classes: Sequence[str], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="k")
    ax.set_xticks(range(len(classes)), classes, rotation=30); ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted"); ax.set_ylabel("ground truth"); ax.set_title(title, fontsize=9)
    fig.tight_layout(); fig.savefig(path, dpi=110); plt.close(fig)


def evaluate_crops(cls: Classifier, samples, min_face: float = 24.0, plots: Optional[Path] = None) -> Dict:
    """The crop-level report (module doc) of ``cls`` on the ground-truth faces of ``samples``."""
    d = gt_crop_probs(cls, samples, min_face)
    res = {"model_version": cls.meta.version, "min_face_px": min_face, "n_images": len(samples),
           **crop_metrics(d["probs"], d["label"], list(cls.classes), cls.meta.thresholds)}
    by_size = {}
    for lo, hi in ((24, 48), (48, 96), (96, 1e9)):
        sel = (d["face_px"] >= lo) & (d["face_px"] < hi)
        if sel.any():
            m = crop_metrics(d["probs"][sel], d["label"][sel], list(cls.classes), cls.meta.thresholds)
            by_size[f"{lo}-{int(hi) if hi < 1e9 else 'inf'}"] = {
                "n": m["n"], "balanced_accuracy": m["balanced_accuracy"],
                "recall": {c: v["recall"] for c, v in m["per_class"].items()}}
    res["by_face_px"] = by_size
    if plots is not None:
        save_confusion_png(np.asarray(res["confusion"]["counts"]), cls.classes, Path(plots) / "confusion_matrix.png",
                           f"classifier on GT crops >= {min_face:g} px (n={res['n']})")
    return res


# ---------------------------------------------------------------------------------------------- cascade
def evaluate_cascade(detector, cls: Optional[Classifier], samples, min_crop_px: float = 24.0,
                     weight: float = 0.8, sweep: Sequence[float] = ()) -> Dict:
    """AP@0.5 per class and the non-compliant operating point of the detector + classifier cascade.

    The network outputs are computed once per photo; ``sweep`` lists further classifier weights whose
    headline figures go into ``weight_sweep`` (for choosing ``classifier.weight`` on the validation split).
    """
    from edge.model import apply_thresholds, postprocess, preprocess

    C = len(CLASS_NAMES)
    meta = detector.meta
    cached = []
    for s in samples:
        img = cv2.imread(str(s.image), cv2.IMREAD_COLOR)
        x, lb = preprocess(img, meta)
        boxes, scores, classes = postprocess(detector.infer(x), meta, lb, (img.shape[1], img.shape[0]),
                                             meta.cluster_params(conf_threshold=0.05), True)
        big = face_px(boxes) >= min_crop_px if cls is not None else np.zeros(len(boxes), bool)
        raw = cls.probs(img, boxes[big]) if big.any() else np.zeros((0, C), np.float32)
        keep = apply_thresholds(scores, classes, meta)
        cached.append((s, img.shape, boxes, scores, classes, raw, keep))
    res = {"n_images": len(samples), "classifier": cls.meta.version if cls else None,
           "min_crop_px": min_crop_px, "classifier_weight": weight if cls else None,
           **_cascade_figures(cached, weight, cls, min_crop_px)}
    if cls is not None and sweep:
        res["weight_sweep"] = [{"weight": w, **{k: v for k, v in _cascade_figures(cached, w, cls, min_crop_px).items()
                                                if k in ("mAP50_mask_no_mask", "AP50_mask", "AP50_no_mask",
                                                         "AP50_mask_incorrect", "nc_precision", "nc_recall")}}
                               for w in sweep]
    return res


def _cascade_figures(cached, weight: float, cls: Optional[Classifier], min_crop_px: float) -> Dict:
    """Headline ``as_output``: every box the detector emits (floor 0.05) with the class the cascade decides
    (:func:`edge.classifier.classify_detections` + :func:`edge.classifier.decide`) and the detector's score,
    one class per face, scored by :func:`models.evaluation.evaluate.as_output_metrics`; the operating point keeps the
    boxes at the detector's shipped thresholds (what :class:`edge.detector.Detector` passes to the tracker)
    with their decided class. Secondary ``per_class_scores``: COCO AP of every box repeated once per class
    with score ``detector score x combined probability`` (not what the appliance outputs)."""
    from models.evaluation.evaluate import as_output_metrics, coco_metrics, nc_operating_point

    C = len(CLASS_NAMES)
    nc = [CLASS_NAMES.index("no_mask"), CLASS_NAMES.index("mask_incorrect")]
    gts, dets, output, kept = [], [], [], []
    tp = n_pred = n_gt = 0
    for s, shape, boxes, scores, classes, raw, keep in cached:
        probs = classify_detections(cls, np.zeros((1, 1, 3), np.uint8), boxes, scores, classes, C, min_crop_px,
                                    weight, cls_probs=raw)  # the shared function, on the cached crops' outputs
        gts.append((s.boxes, s.labels))
        K = len(boxes)
        dets.append((np.repeat(boxes, C, axis=0).reshape(-1, 4), (scores[:, None] * probs).reshape(-1),
                     np.tile(np.arange(C), K)))
        dec_all = decide(probs, list(CLASS_NAMES), cls.meta.thresholds if cls else None) if K else np.zeros(0, np.int64)
        output.append((boxes, scores, dec_all))
        kept.append((boxes[keep], scores[keep], dec_all[keep]))
        dec = dec_all[keep]
        pb = boxes[keep][np.isin(dec, nc)]
        g_nc = np.isin(s.labels, nc)
        n_pred += len(pb)
        n_gt += int(g_nc.sum())
        if len(pb) and len(s.boxes):
            for r, c in greedy_iou_match(box_iou(pb, s.boxes), 0.5):
                tp += int(g_nc[c])
    head = as_output_metrics(gts, output, np.zeros(C, np.float32))
    # the operating point: boxes at the detector's shipped thresholds, cascade's class
    head["nc_at_shipped"] = {**nc_operating_point(gts, kept, 0.0), "thresholds": "detector's shipped"}
    head["per_class_at_shipped"] = _class_points_kept(gts, kept)
    return {"as_output": head, "mAP50_mask_no_mask": head["voc_mAP50_mask_no_mask"],
            "AP50_mask": head["voc_AP50_mask"], "AP50_no_mask": head["voc_AP50_no_mask"],
            "AP50_mask_incorrect": head["voc_AP50_mask_incorrect"],
            "per_class_scores": {"note": "secondary: each box once per class, score = detector score x combined "
                                 "probability (not what the appliance outputs)", **coco_metrics(gts, dets)},
            "nc_precision": tp / max(n_pred, 1), "nc_recall": tp / max(n_gt, 1), "nc_n_gt": n_gt, "nc_n_pred": n_pred}


def _class_points_kept(gts, kept) -> Dict:
    from models.evaluation.evaluate import class_points
    return class_points(gts, kept, np.zeros(len(CLASS_NAMES), np.float32))


def main_crops(model: Path, data: Path, split_name: str, out: Optional[Path], plots: Optional[Path],
               min_face: float = 24.0) -> int:
    """``models.evaluation.evaluate`` for a ``role: classifier`` model: the crop-level report."""
    from models.data import read_dataset, select

    cls = Classifier(model)
    samples = select(read_dataset(data), split_name)
    res = evaluate_crops(cls, samples, min_face, plots)
    text = json.dumps(res, indent=1)
    print(text)
    if out:
        Path(out).write_text(text)
    return 0


def main_cascade(detector_path: Path, classifier_path: Optional[Path], data: Path, split_name: str,
                 out: Optional[Path], min_crop_px: float = 24.0, weight: float = 0.8) -> int:
    """``models.evaluation.evaluate --classifier``: the cascade report."""
    from edge.backends.onnxruntime import OnnxRuntimeBackend
    from models.data import read_dataset, select

    det = OnnxRuntimeBackend(detector_path)
    cls = Classifier(classifier_path) if classifier_path else None
    samples = select(read_dataset(data), split_name)
    res = {"detector": str(Path(detector_path).parent.name),
           **evaluate_cascade(det, cls, samples, min_crop_px, weight, sweep=(0.5, 0.65, 0.8, 0.9, 1.0))}
    text = json.dumps(res, indent=1)
    print(text)
    if out:
        Path(out).write_text(text)
    return 0
