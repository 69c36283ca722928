"""Evaluation: COCO AP (faster-coco-eval), no_mask operating point, PR curves, confusion matrix.

CLI::

    python -m models.evaluation.evaluate --model models/released/detectnet_v2_r18/model.onnx \
        --data ../shared/data/face-mask-andrewmvd --out eval.json --plots eval_plots/

    python -m models.evaluation.evaluate --peer ../shared/weights/ultra-light/RFB-640-masked_face-v2.onnx \
        --data ../shared/data/ilc2021-dev --split all --out peer.json

``--split all`` takes every image of any VOC (or KITTI) folder; ``val`` / ``train`` apply the
md5-of-stem split of :func:`models.data.split`. The ``truth`` block of the JSON holds the
figures of :func:`truth_metrics`: VOC all-point AP@0.5 per class, 2-class (compliant /
non-compliant) AP@0.5, NC recall/precision at score 0.5 and at the model's own no_mask
threshold, and class-agnostic face recall by face width at 0.5 and 1.0 unmatched boxes per
photo. ``--peer`` measures the Ultra-Light masked-face detector with the same code.

A classifier model (metadata ``role: classifier``) gets the crop-level report, and ``--classifier CLS.onnx``
scores the detector + classifier cascade: both in :mod:`models.evaluation.classifier`.

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


def shipped_thresholds(meta: ModelMeta) -> np.ndarray:
    """(C,) float32 per-class operating thresholds the runtime applies (:func:`edge.model.apply_thresholds`):
    the model's embedded ``thresholds``, the decoder's ``conf_threshold`` for a class without one."""
    return np.array([meta.thresholds.get(c, meta.cluster.get("conf_threshold", 0.1)) for c in meta.classes], np.float32)


def evaluate(infer, meta: ModelMeta, samples, plots: Path = None, min_recall: float = 0.85) -> Dict:
    """Full evaluation of one model on ``samples`` (see module doc). Returns a JSON-ready dict.

    Headline (``as_output`` and the top-level ``AP50_*`` / ``precision`` / ``recall`` / confusion
    matrix): what the runtime emits, one class per face: the model's decoder with its decision rule
    (:func:`edge.model.postprocess` with the class-agnostic NMS and nested-box suppression, at a floor of
    0.05 for the ranking) and, for the operating point, the model's **shipped** per-class thresholds
    (:func:`edge.model.apply_thresholds`). ``per_class_scores`` (secondary, flattering): every face
    scored once per class with that class's score, as COCO/VOC detection benchmarks do; the appliance
    never outputs that. ``thresholds`` are *chosen* on this set (the exporter embeds them when this is the
    choosing set); no figure at them is reported here.
    """
    gts = [(s.boxes, s.labels) for s in samples]
    images = [s.image for s in samples]
    per_class = run_images(infer, meta, images, class_agnostic=False)
    deployed = run_images(infer, meta, images, class_agnostic=True)
    shipped = shipped_thresholds(meta)
    # chosen on this set: no_mask recall first (see choose_threshold), mask best F1, mask_incorrect
    # shares no_mask's. Stored for the exporter only: figures at them would be reported on the set
    # they were chosen on.
    thr = choose_threshold(gts, deployed, cls=1, min_recall=min_recall)[0]
    thr_mask = choose_threshold(gts, deployed, cls=0, min_recall=1.01, beta=1.0)[0]
    chosen = np.array([thr_mask, thr, thr], np.float32)
    cm = confusion(gts, deployed, shipped, len(meta.classes))
    C = len(meta.classes)
    tp = int(np.trace(cm[:C, :C]))  # right box and right class, at the shipped thresholds
    n_pred, n_gt = int(cm[:, :C].sum()), int(cm[:C, :].sum())
    result = {"n_images": len(samples), "n_faces": {n: int(sum((s.labels == k).sum() for s in samples))
                                                   for k, n in enumerate(meta.classes)},
              **coco_metrics(gts, deployed), "precision": tp / max(n_pred, 1), "recall": tp / max(n_gt, 1),
              "shipped_thresholds": {n: float(t) for n, t in zip(meta.classes, shipped)},
              "as_output": as_output_metrics(gts, deployed, shipped),
              "thresholds": {n: float(t) for n, t in zip(meta.classes, chosen)},
              "thresholds_note": "chosen on this set (for the exporter); never report figures at them here",
              "confusion_matrix": {"rows_gt": list(meta.classes) + ["background"],
                                   "cols_pred": list(meta.classes) + ["missed"], "counts": cm.tolist(),
                                   "at": "shipped thresholds"}}
    pcs = coco_metrics(gts, per_class)
    result["per_class_scores"] = {"note": "secondary: each face scored once per class with that class's score "
                                  "(not what the appliance outputs)", **pcs,
                                  **truth_metrics(gts, per_class, deployed, [0.5])}
    # compatibility: the issue-12 block (per-class-score AP, NC at 0.5 and at the shipped no_mask threshold)
    nc_thr = [0.5] + ([float(meta.thresholds["no_mask"])] if "no_mask" in meta.thresholds else [])
    result["truth"] = truth_metrics(gts, per_class, deployed, nc_thr)
    if plots is not None:
        save_plots(gts, deployed, meta, shipped, Path(plots))
    return result


def nc_at_thresholds(gts, output: Sequence[Dets], thresholds: np.ndarray) -> Dict[str, float]:
    """Non-compliant recall and precision of the boxes kept at their **class's** threshold.

    As :func:`nc_operating_point`, with ``keep = score >= thresholds[class]`` (what
    :func:`edge.model.apply_thresholds` keeps).
    """
    thresholds = np.asarray(thresholds, np.float32)
    tp = n_det = n_gt = 0
    for (gb, gl), (db, ds, dc) in zip(gts, output):
        gnc = np.isin(gl, NC_CLASSES)
        n_gt += int(gnc.sum())
        keep = ds >= thresholds[dc] if len(dc) else np.zeros(0, bool)
        _, dm = match(gb, gl, db[keep], ds[keep], dc[keep])
        dnc = np.isin(dc[keep], NC_CLASSES)
        n_det += int(dnc.sum())
        ok = dnc & (dm >= 0)
        ok[ok] = gnc[dm[ok]]
        tp += int(ok.sum())
    return {"thresholds": [float(t) for t in thresholds], "recall": tp / max(n_gt, 1),
            "precision": tp / n_det if n_det else 1.0, "n_nc_faces": n_gt, "n_nc_dets": n_det}


def class_points(gts, output: Sequence[Dets], thresholds: np.ndarray) -> Dict[str, Dict[str, float]]:
    """Per class: precision and recall of the boxes kept at their class's threshold (class-agnostic
    greedy match at IoU 0.5; a true positive has the face's class)."""
    thresholds = np.asarray(thresholds, np.float32)
    C = len(thresholds)
    tp, npred, ngt = np.zeros(C), np.zeros(C), np.zeros(C)
    for (gb, gl), (db, ds, dc) in zip(gts, output):
        keep = ds >= thresholds[dc] if len(dc) else np.zeros(0, bool)
        _, dm = match(gb, gl, db[keep], ds[keep], dc[keep])
        kc = dc[keep]
        for k in range(C):
            ngt[k] += int((np.asarray(gl) == k).sum())
            npred[k] += int((kc == k).sum())
            ok = (kc == k) & (dm >= 0)
            tp[k] += int((np.asarray(gl)[dm[ok]] == k).sum())
    return {n: {"threshold": float(thresholds[k]), "precision": float(tp[k] / npred[k]) if npred[k] else 1.0,
                "recall": float(tp[k] / max(ngt[k], 1)), "n_faces": int(ngt[k]), "n_dets": int(npred[k])}
            for k, n in enumerate(CLASS_NAMES[:C])}


def voc_ap_table(gts, dets) -> Dict:
    """VOC all-point AP@0.5 (:func:`voc_ap`) of ``dets`` against ``gts`` per class, their mean over mask /
    no_mask, and the two-class view (compliant = mask; non-compliant = no_mask + mask_incorrect).

    Args:
        gts: per image ``(boxes (G,4) float32 xyxy px, labels (G,) int64)``.
        dets: per image ``(boxes (K,4) float32 xyxy px, scores (K,) float32, classes (K,) int64)``.

    Returns:
        ``{"voc_AP50_<class>", "voc_mAP50_mask_no_mask", "voc_AP50_compliant", "voc_AP50_noncompliant",
        "voc_AP50_2class"}`` (floats; NaN for a class with no ground truth).
    """
    out: Dict = {}
    for k, name in enumerate(CLASS_NAMES):
        out[f"voc_AP50_{name}"] = voc_ap(gts, dets, k)
    out["voc_mAP50_mask_no_mask"] = float(np.nanmean([out["voc_AP50_mask"], out["voc_AP50_no_mask"]]))
    g2 = [(b, two_class(l)) for b, l in gts]
    d2 = [(b, s, two_class(c)) for b, s, c in dets]
    out["voc_AP50_compliant"], out["voc_AP50_noncompliant"] = voc_ap(g2, d2, 0), voc_ap(g2, d2, 1)
    out["voc_AP50_2class"] = float(np.nanmean([out["voc_AP50_compliant"], out["voc_AP50_noncompliant"]]))
    return out


def as_output_metrics(gts, output: Sequence[Dets], thresholds: np.ndarray) -> Dict:
    """The headline figures of what the appliance outputs: one class per face.

    Args:
        gts: per image (boxes (N,4) xyxy px, labels (N,) canonical ids).
        output: per image the runtime's detections (one box and one class per face, after its decision
            rule), ``(boxes (K,4) float32 xyxy px, scores (K,), classes (K,) int64)``, down to a low floor
            so that the AP sees the whole ranking.
        thresholds: (C,) the shipped per-class operating thresholds.

    Returns:
        ``{"voc_AP50_<class>", "voc_mAP50_mask_no_mask", "voc_AP50_compliant", "voc_AP50_noncompliant",
        "voc_AP50_2class", "nc_at_shipped" (:func:`nc_at_thresholds`), "per_class_at_shipped"
        (:func:`class_points`), "nc_at_0.5" (:func:`nc_operating_point`), "face_recall"
        (:func:`face_recall_by_width`)}``. VOC all-point AP@0.5 (:func:`voc_ap`): a face found with the
        wrong class is a miss of its class and a false positive of the said one.
    """
    out = voc_ap_table(gts, output)
    out["nc_at_shipped"] = nc_at_thresholds(gts, output, thresholds)
    out["per_class_at_shipped"] = class_points(gts, output, thresholds)
    out["nc_at_0.5"] = nc_operating_point(gts, output, 0.5)
    out["face_recall"] = face_recall_by_width(gts, output)
    return out


# --------------------------------------------------------------------------------------------
# "Evaluation that tells the truth" (issue 12): VOC all-point AP, 2-class AP, non-compliant (NC)
# recall/precision at fixed thresholds, class-agnostic face recall by face width at a stated
# number of unmatched boxes per photo, and a peer detector measured by the same code.
# --------------------------------------------------------------------------------------------

#: Non-compliant classes (no_mask, mask_incorrect): the ones that raise an alarm.
NC_CLASSES: Tuple[int, ...] = (1, 2)
#: Face-width bins in original image px: [lo, hi).
WIDTH_BINS: Tuple[Tuple[float, float], ...] = ((0, 16), (16, 32), (32, 64), (64, 128), (128, float("inf")))


def width_bin_name(lo: float, hi: float) -> str:
    return f"<{int(hi)}" if lo == 0 else (f">={int(lo)}" if hi == float("inf") else f"{int(lo)}-{int(hi)}")


def voc_ap(gts: Sequence[Tuple[np.ndarray, np.ndarray]], dets: Sequence[Dets], cls: int,
           iou_thr: float = 0.5) -> float:
    """Pascal VOC (2010+) all-point interpolated AP of class ``cls``.

    As the VOC devkit: detections of ``cls`` over all images in decreasing score order; each
    takes the ``cls`` ground-truth box of its image with the highest IoU; it is a true positive
    when that IoU is ``>= iou_thr`` and the box is not taken yet, else a false positive. AP is the
    area under the precision envelope (Everingham et al., IJCV 2010, sec. 4.2).

    Returns:
        AP in [0, 1]; ``nan`` when no image holds a ``cls`` face.
    """
    scores, tps, n_gt = [], [], 0
    for (gb, gl), (db, ds, dc) in zip(gts, dets):
        g = np.asarray(gb, np.float32).reshape(-1, 4)[np.asarray(gl) == cls]
        n_gt += len(g)
        m = np.asarray(dc) == cls
        b, s = np.asarray(db, np.float32).reshape(-1, 4)[m], np.asarray(ds, np.float32)[m]
        if not len(s):
            continue
        order = np.argsort(-s, kind="stable")
        b, s = b[order], s[order]
        tp = np.zeros(len(s), bool)
        if len(g):
            iou = box_iou(b, g)
            taken = np.zeros(len(g), bool)
            for i in range(len(s)):
                j = int(np.argmax(iou[i]))
                if iou[i, j] >= iou_thr and not taken[j]:
                    taken[j] = tp[i] = True
        scores.append(s); tps.append(tp)
    if n_gt == 0:
        return float("nan")
    if not scores:
        return 0.0
    s, tp = np.concatenate(scores), np.concatenate(tps)
    order = np.argsort(-s, kind="stable")
    tp = tp[order].astype(np.float64)
    ctp, cfp = np.cumsum(tp), np.cumsum(1.0 - tp)
    rec = ctp / n_gt
    prec = ctp / np.maximum(ctp + cfp, 1e-12)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def two_class(labels: np.ndarray) -> np.ndarray:
    """Canonical class ids -> 0 compliant (mask), 1 non-compliant (no_mask, mask_incorrect)."""
    return np.isin(np.asarray(labels, np.int64), NC_CLASSES).astype(np.int64)


def nc_operating_point(gts, deployed: Sequence[Dets], threshold: float) -> Dict[str, float]:
    """Non-compliant recall and precision with every detection kept at ``score >= threshold``.

    Kept detections are matched class-agnostically to the faces (greedy, IoU >= 0.5, as
    :func:`match`); an NC detection is a true positive when its face is NC (no_mask or
    mask_incorrect, either way: both raise the alarm).

    Returns:
        ``{"threshold", "recall", "precision", "n_nc_faces", "n_nc_dets"}``.
    """
    out = nc_at_thresholds(gts, deployed, np.full(len(CLASS_NAMES), threshold, np.float32))
    del out["thresholds"]
    return {"threshold": float(threshold), **out}


def face_recall_by_width(gts, deployed: Sequence[Dets], fp_per_image: Sequence[float] = (0.5, 1.0),
                         fixed_thresholds: Sequence[float] = (0.5,), iou_thr: float = 0.5) -> List[Dict]:
    """Class-agnostic face recall per face width at a stated number of unmatched boxes per photo.

    Every detection (any class) is matched greedily, highest score first, to any face (IoU >=
    ``iou_thr``). Greedy matching by score makes the matches of the detections above a threshold
    independent of those below it, so one matching serves every threshold. For each target
    ``f`` in ``fp_per_image`` the threshold is the lowest score at which the unmatched
    detections per image are ``<= f`` (unannotated real faces count against the model); the
    thresholds in ``fixed_thresholds`` are reported as they are.

    Returns:
        one dict per operating point: ``{"fp_per_image_target" or None, "threshold",
        "fp_per_image", "recall", "recall_ge32", "by_width": {bin: recall}, "n_by_width": {bin: n},
        "by_class": {class: recall}}`` (the face's labelled class; the detection's class is ignored);
        widths in original image px, bins :data:`WIDTH_BINS`.
    """
    gt_score, gt_w, det_s, det_ok = [], [], [], []
    for (gb, gl), (db, ds, dc) in zip(gts, deployed):
        gm, dm = match(gb, gl, db, ds, dc, iou_thr)
        gt_score.append(np.where(gm >= 0, ds[np.maximum(gm, 0)] if len(ds) else -1.0, -np.inf))
        gt_w.append(np.asarray(gb, np.float32).reshape(-1, 4)[:, 2] - np.asarray(gb, np.float32).reshape(-1, 4)[:, 0])
        det_s.append(np.asarray(ds, np.float64)); det_ok.append(dm >= 0)
    n_img = max(len(gts), 1)
    gs, gw = np.concatenate(gt_score) if gt_score else np.zeros(0), np.concatenate(gt_w) if gt_w else np.zeros(0)
    us = np.sort(np.concatenate([s[~o] for s, o in zip(det_s, det_ok)]) if det_s else np.zeros(0))[::-1]

    gc = np.concatenate([np.asarray(gl, np.int64) for _, gl in gts]) if gts else np.zeros(0, np.int64)

    def point(t: float, target) -> Dict:
        found = gs >= t
        by, nb = {}, {}
        by_class = {n: float(found[gc == k].mean()) if (gc == k).any() else float("nan") for k, n in enumerate(CLASS_NAMES)}
        for lo, hi in WIDTH_BINS:
            m = (gw >= lo) & (gw < hi)
            by[width_bin_name(lo, hi)] = float(found[m].mean()) if m.any() else float("nan")
            nb[width_bin_name(lo, hi)] = int(m.sum())
        big = gw >= 32
        return {"fp_per_image_target": target, "threshold": float(t), "fp_per_image": float((us >= t).sum() / n_img),
                "recall": float(found.mean()) if len(found) else float("nan"),
                "recall_ge32": float(found[big].mean()) if big.any() else float("nan"), "by_width": by, "n_by_width": nb,
                "by_class": by_class}

    out = []
    for f in fp_per_image:
        k = int(np.floor(f * n_img))  # at most k unmatched detections in all
        # lowest threshold keeping <= k unmatched: just above the (k+1)-th highest unmatched score
        t = float(np.nextafter(us[k], np.inf)) if k < len(us) else 0.0
        out.append(point(t, f))
    for t in fixed_thresholds:
        out.append(point(float(t), None))
    return out


def truth_metrics(gts, dets: Sequence[Dets], deployed: Sequence[Dets],
                  nc_thresholds: Sequence[float] = (0.5,)) -> Dict:
    """The issue-12 figures for one model on one set (see the section comment above).

    Args:
        gts: per image (boxes (N,4) xyxy px, labels (N,) canonical ids).
        dets: per-class detections (several classes may sit on one face), for AP.
        deployed: what the appliance keeps (one class per face), for recall and NC figures.
        nc_thresholds: score thresholds at which NC recall/precision are reported.

    Returns:
        ``{"voc_AP50_<class>", "voc_mAP50_mask_no_mask", "voc_AP50_compliant", "voc_AP50_noncompliant",
        "voc_AP50_2class" (their mean), "nc": [nc_operating_point ...], "face_recall": [...]}``.
    """
    out = voc_ap_table(gts, dets)
    out["nc"] = [nc_operating_point(gts, deployed, t) for t in nc_thresholds]
    out["face_recall"] = face_recall_by_width(gts, deployed)
    return out


class UltraLightPeer:
    """The Ultra-Light-Fast masked-face detector (Linzaer, MIT) as a comparison row.

    Runs the authors' ONNX file where it lies (``../shared/weights/ultra-light``; never copied):
    input (1, 3, 480, 640) RGB, plain resize, ``(px - 127) / 128``; outputs ``scores`` (1, P, 3)
    softmax over (background, face, masked_face) and ``boxes`` (1, P, 4) normalised xyxy.
    ``masked_face`` is reported as ``mask``, ``face`` as ``no_mask``; it never says
    ``mask_incorrect``. Boxes are kept from ``conf`` and suppressed by hard NMS at IoU 0.3, the
    authors' default.
    """

    def __init__(self, path: Path, threads: int = 1, conf: float = 0.05, nms_iou: float = 0.3):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.conf, self.nms_iou = conf, nms_iou

    def __call__(self, img_bgr: np.ndarray) -> Tuple[Dets, Dets]:
        """(H, W, 3) uint8 BGR -> (per-class detections, deployed detections) in image px."""
        from edge.decoders import nms

        h, w = img_bgr.shape[:2]
        x = cv2.cvtColor(cv2.resize(img_bgr, (640, 480)), cv2.COLOR_BGR2RGB).astype(np.float32)
        x = ((x - 127.0) / 128.0).transpose(2, 0, 1)[None]
        scores, boxes = self.session.run(None, {self.input_name: x})
        boxes = boxes[0] * np.array([w, h, w, h], np.float32)
        probs = scores[0][:, 1:]  # (P, 2): face, masked_face
        ours = np.array([1, 0], np.int64)  # face -> no_mask, masked_face -> mask

        def keep(b, s, c):
            m = s >= self.conf
            b, s, c = b[m], s[m], c[m]
            k = nms(b, s, self.nms_iou) if len(s) else np.zeros(0, np.int64)
            return b[k].astype(np.float32), s[k].astype(np.float32), c[k]

        per = [keep(boxes, probs[:, j], np.full(len(boxes), ours[j])) for j in range(2)]
        per_class = tuple(np.concatenate(a) for a in zip(*per))
        j = probs.argmax(1)
        deployed = keep(boxes, probs[np.arange(len(j)), j], ours[j])
        return per_class, deployed


def evaluate_peer(peer: UltraLightPeer, samples) -> Dict:
    """A peer detector on ``samples``: ``as_output`` (its one class per face, operating point at score 0.5,
    :func:`as_output_metrics`) and ``per_class_scores`` (:func:`truth_metrics`, secondary)."""
    gts = [(s.boxes, s.labels) for s in samples]
    pc, dep = [], []
    for s in samples:
        a, b = peer(cv2.imread(str(s.image)))
        pc.append(a); dep.append(b)
    return {"n_images": len(samples), "model": "ultra-light RFB-640-masked_face-v2 (peer)",
            "as_output": as_output_metrics(gts, dep, np.full(len(CLASS_NAMES), 0.5, np.float32)),
            "per_class_scores": truth_metrics(gts, pc, dep)}


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
    from models.data import read_dataset, select

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="ONNX model file (or --peer)")
    ap.add_argument("--peer", type=Path, help="instead of --model: the Ultra-Light masked-face ONNX "
                    "(../shared/weights/ultra-light/RFB-640-masked_face-v2.onnx), measured by the same code")
    ap.add_argument("--data", required=True, type=Path, help="VOC or KITTI dataset folder")
    ap.add_argument("--split", default="val", choices=["val", "train", "all", "half-a", "half-b"],
                    help="val / train: md5 split of the training photos; all: every image; half-a / half-b: the two "
                    "fixed halves of any set by md5 of the file stem (models.data.half: a = first hex digit 0-7), "
                    "e.g. choose on ilc2021-dev half-a and report on half-b")
    ap.add_argument("--out", type=Path, help="write the metrics JSON here")
    ap.add_argument("--plots", type=Path, help="folder for pr_curve.png and confusion_matrix.png")
    ap.add_argument("--min-recall", type=float, default=0.85, help="no_mask recall the threshold must keep")
    ap.add_argument("--cluster", choices=["dbscan", "nms"], help="override the model's clustering method")
    ap.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: all cores)")
    ap.add_argument("--sweep", action="store_true", help="only compare clustering variants (AP table) and exit")
    ap.add_argument("--classifier", type=Path, help="secondary classifier .onnx (role: classifier): score the "
                    "detector + classifier cascade (models.evaluation.classifier); 'none': the same report for the "
                    "detector alone")
    ap.add_argument("--min-face", type=float, default=24.0, help="classifier: ground-truth crops >= this (px); "
                    "cascade: faces under this keep the detector's class")
    a = ap.parse_args(argv)
    if (a.model is None) == (a.peer is None):
        ap.error("give exactly one of --model and --peer")
    from edge.config import model_role
    if a.model is not None and (model_role(a.model) == "classifier" or a.classifier):
        from models.evaluation import classifier as ec  # crop-level report / cascade
        if a.classifier is None:
            return ec.main_crops(a.model, a.data, a.split, a.out, a.plots, a.min_face)
        return ec.main_cascade(a.model, None if str(a.classifier) == "none" else a.classifier, a.data, a.split, a.out,
                               a.min_face)
    samples = select(read_dataset(a.data), a.split)
    if a.peer is not None:
        return _write(evaluate_peer(UltraLightPeer(a.peer, a.threads or 1), samples), a.out)
    from edge.backends.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(a.model, threads=a.threads)
    if a.cluster:
        backend.meta.cluster["method"] = a.cluster
    if a.sweep:
        for r in sweep_clustering(backend.infer, backend.meta, samples):
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}))
        return 0
    res = evaluate(backend.infer, backend.meta, samples, a.plots, a.min_recall)
    return _write(res, a.out)


def _write(res: Dict, out: Path = None) -> int:
    text = json.dumps(res, indent=1)
    print(text)
    if out:
        out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
