"""DetectNet_v2 target encoding, decoding and box clustering (NumPy only).

One module for both sides: ``models/`` encodes ground truth with it and scores
its predictions with it; ``edge/`` decodes the deployed network with it. The
two can therefore never disagree about what a box is.

DetectNet_v2 (NVIDIA TAO; seed 004 §3.3) predicts, on a grid of stride ``s``:

* a **coverage map** ``cov`` (C, Hg, Wg) float32 in [0, 1]: per-class sigmoid,
  1 where a cell lies in the central region of an object of that class;
* a **bbox head** ``bbox`` (4C, Hg, Wg) float32: for class ``c`` the channels
  ``4c..4c+3`` hold the box corners relative to the cell centre,
  ``(x1 - cx, y1 - cy, x2 - cx, y2 - cy) / bbox_norm`` (px / px).

Every cell above the coverage threshold proposes one box; the proposals are
clustered per class by DBSCAN (as TAO and DeepStream do) or NMS.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

CLASS_NAMES: Tuple[str, ...] = ("mask", "no_mask", "mask_incorrect")


@dataclass(frozen=True)
class DetectNetV2Params:
    """Geometry of the DetectNet_v2 output grid.

    Attributes:
        stride: input px per grid cell (16).
        bbox_norm: px per unit of the bbox head's output.
        cov_shrink: fraction of the box width/height (centred) whose cells are
            positive in the coverage map; the cell holding the box centre is
            always positive, so a face smaller than one cell still gets one.
    """

    stride: int = 16
    bbox_norm: float = 35.0
    cov_shrink: float = 0.5


@dataclass(frozen=True)
class ClusterParams:
    """Clustering of per-cell proposals into boxes.

    Attributes:
        method: ``"dbscan"`` or ``"nms"``.
        conf_threshold: minimum coverage (0-1) for a cell to propose a box.
        iou_threshold: NMS: suppress a box whose IoU with a kept box is above this.
        dbscan_eps: DBSCAN: neighbourhood radius in ``1 - IoU`` distance.
        dbscan_min_samples: DBSCAN: minimum summed coverage of a core point's
            neighbourhood (TAO's confidence-weighted ``min_samples``).
        max_detections: cap per image, highest score first.
        nested_overlap: after the class-agnostic NMS (one class per face), a box whose
            intersection with a higher-scored kept box covers more than this fraction of the
            *smaller* box's area is dropped (:func:`suppress_nested`): a face box nested in a
            head box, or two boxes of different size on one face, whose IoU is too low for NMS.
            1.0 disables it.
        class_priors: SSD only (:func:`decode_ssd`), the decision rule that lets every class be said:
            empty (the default, every model before ``ultralight_mask`` 1.2.0): every prior proposes
            each class whose softmax score reaches ``conf_threshold``. ``(C,)`` weights ``w``: every
            prior proposes **one** class, ``argmax_c w_c p_c`` (:func:`prior_decision`; Bayes' rule
            with the training class priors replaced, Duda, Hart & Stork, *Pattern Classification*,
            2nd ed., sec. 2.2), so a mask_incorrect or no_mask face whose probability is outweighed by
            ``mask`` can still be said. Read from the model's ONNX metadata ``cluster`` dict.
        class_score: with ``class_priors``: the score of that proposal. ``"face"``: ``1 - p_background``,
            the probability that the prior holds a face of any class, so the class decision can never
            lose a face (a face whose probability is split between mask and no_mask keeps its full
            score); ``"class"``: ``(1 - p_bg) * w_c p_c / sum_k w_k p_k``, the re-weighted class
            posterior.
    """

    method: str = "dbscan"
    conf_threshold: float = 0.1
    iou_threshold: float = 0.4
    dbscan_eps: float = 0.6
    dbscan_min_samples: float = 0.0
    max_detections: int = 100
    nested_overlap: float = 0.7
    class_priors: Tuple[float, ...] = ()
    class_score: str = "face"

    def __post_init__(self) -> None:
        # JSON metadata gives a list: keep the dataclass hashable and the value immutable
        object.__setattr__(self, "class_priors", tuple(float(v) for v in (self.class_priors or ())))
        if self.class_score not in ("face", "class"):
            raise ValueError(f"class_score must be 'face' or 'class', got {self.class_score!r}")


def grid_centres(grid_hw: Tuple[int, int], stride: int) -> Tuple[np.ndarray, np.ndarray]:
    """Cell-centre coordinates in input px: ``(cx (Wg,), cy (Hg,))`` float32."""
    gh, gw = grid_hw
    cx = (np.arange(gw, dtype=np.float32) + 0.5) * stride
    cy = (np.arange(gh, dtype=np.float32) + 0.5) * stride
    return cx, cy


def encode_detectnet_v2(boxes: np.ndarray, labels: np.ndarray, input_hw: Tuple[int, int], num_classes: int,
                        params: DetectNetV2Params = DetectNetV2Params()) -> Tuple[np.ndarray, np.ndarray]:
    """Ground-truth boxes -> (coverage map, bbox targets).

    Args:
        boxes: (N, 4) float32 xyxy in input px.
        labels: (N,) int class ids in ``[0, num_classes)``.
        input_hw: network input (height, width) in px, multiples of ``stride``.
        num_classes: C.

    Returns:
        cov (C, Hg, Wg) float32 in {0, 1} and bbox (4C, Hg, Wg) float32 (zero where
        coverage is 0). Where boxes of one class overlap, the smaller box owns the
        cell (it is drawn last).
    """
    s = params.stride
    gh, gw = input_hw[0] // s, input_hw[1] // s
    cov = np.zeros((num_classes, gh, gw), np.float32)
    bbox = np.zeros((4 * num_classes, gh, gw), np.float32)
    if len(boxes) == 0:
        return cov, bbox
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    cxs, cys = grid_centres((gh, gw), s)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in np.argsort(-areas):  # largest first: smaller boxes overwrite
        x1, y1, x2, y2 = boxes[i]
        c = int(labels[i])
        bx, by = (x1 + x2) / 2, (y1 + y2) / 2
        hw, hh = (x2 - x1) * params.cov_shrink / 2, (y2 - y1) * params.cov_shrink / 2
        xs = np.nonzero(np.abs(cxs - bx) <= max(hw, 1e-3))[0]
        ys = np.nonzero(np.abs(cys - by) <= max(hh, 1e-3))[0]
        ix_c = int(np.clip(bx // s, 0, gw - 1))
        iy_c = int(np.clip(by // s, 0, gh - 1))
        if len(xs) == 0:
            xs = np.array([ix_c])
        if len(ys) == 0:
            ys = np.array([iy_c])
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        yy, xx = yy.ravel(), xx.ravel()
        cov[c, yy, xx] = 1.0
        bbox[4 * c + 0, yy, xx] = (x1 - cxs[xx]) / params.bbox_norm
        bbox[4 * c + 1, yy, xx] = (y1 - cys[yy]) / params.bbox_norm
        bbox[4 * c + 2, yy, xx] = (x2 - cxs[xx]) / params.bbox_norm
        bbox[4 * c + 3, yy, xx] = (y2 - cys[yy]) / params.bbox_norm
    return cov, bbox


def _overlap(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 4), (M, 4) xyxy boxes -> ((N, M) intersection areas, (N,) areas of a, (M,) areas of b), float32 px²."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    # per coordinate (no (N, M, 2) temporaries, no np.prod): NMS calls this on every frame
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    area_a = np.maximum(a[:, 2] - a[:, 0], 0) * np.maximum(a[:, 3] - a[:, 1], 0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    return inter, area_a, area_b


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of (N, 4) and (M, 4) xyxy boxes -> (N, M) float32."""
    inter, area_a, area_b = _overlap(a, b)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)



def greedy_iou_match(iou: np.ndarray, min_iou: float) -> List[Tuple[int, int]]:
    """Greedy one-to-one matching on an (N, M) IoU matrix, highest IoU first.

    Returns:
        ``[(row, col), ...]`` with each row and column used at most once and ``iou >= min_iou``, in
        decreasing IoU order (ties: lower row, then lower column first).
    """
    rows, cols = np.nonzero(iou >= min_iou)
    order = np.argsort(-iou[rows, cols], kind="stable")  # np.nonzero is row-major: ties stay (row, col) ordered
    used_r, used_c, pairs = set(), set(), []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r in used_r or c in used_c:
            continue
        used_r.add(r)
        used_c.add(c)
        pairs.append((r, c))
    return pairs

def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression.

    Args:
        boxes: (N, 4) float32 xyxy. scores: (N,) float32.
        iou_threshold: a box overlapping a kept, higher-scored box by more is dropped.

    Returns:
        (K,) int64 indices of kept boxes, highest score first.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: List[int] = []
    iou = box_iou(boxes, boxes)
    suppressed = np.zeros(len(order), bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= iou[i] > iou_threshold
    return np.asarray(keep, np.int64)


def dbscan(boxes: np.ndarray, weights: np.ndarray, eps: float, min_samples: float) -> np.ndarray:
    """DBSCAN over boxes with distance ``1 - IoU`` (Ester et al., KDD 1996).

    A box is a core point when the summed ``weights`` (coverage) of its
    ``eps``-neighbourhood (itself included) reach ``min_samples``.

    Args:
        boxes: (N, 4) float32 xyxy. weights: (N,) float32 coverage values.

    Returns:
        (N,) int64 cluster labels, ``-1`` for noise.
    """
    n = len(boxes)
    labels = np.full(n, -1, np.int64)
    if n == 0:
        return labels
    neigh = (1.0 - box_iou(boxes, boxes)) <= eps
    core = (neigh * np.asarray(weights, np.float32)[None, :]).sum(axis=1) >= min_samples
    cluster = 0
    for i in np.argsort(-np.asarray(weights)):
        if labels[i] != -1 or not core[i]:
            continue
        labels[i] = cluster
        stack = [int(i)]
        while stack:
            j = stack.pop()
            if not core[j]:
                continue
            for k in np.nonzero(neigh[j] & (labels == -1))[0]:
                labels[k] = cluster
                stack.append(int(k))
        cluster += 1
    return labels


def cluster_boxes(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                  params: ClusterParams) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cluster per-cell proposals per class.

    DBSCAN merges each cluster into its coverage-weighted mean box with the
    cluster's maximum coverage as score; NMS keeps the best proposal.

    Args:
        boxes: (N, 4) float32 xyxy. scores: (N,) float32. classes: (N,) int64.

    Returns:
        ``(boxes (K, 4) float32, scores (K,) float32, classes (K,) int64)``, best first.

    Raises:
        ValueError: on an unknown ``params.method``.
    """
    if params.method not in ("dbscan", "nms"):
        raise ValueError(f"clustering method must be 'dbscan' or 'nms', got {params.method!r}")
    out_b, out_s, out_c = [], [], []
    for c in np.unique(classes):
        m = classes == c
        b, s = boxes[m], scores[m]
        if params.method == "nms":
            k = nms(b, s, params.iou_threshold)
            out_b.append(b[k]); out_s.append(s[k]); out_c.append(np.full(len(k), c, np.int64))
            continue
        lab = dbscan(b, s, params.dbscan_eps, params.dbscan_min_samples)
        for L in np.unique(lab[lab >= 0]):
            mm = lab == L
            w = s[mm] / s[mm].sum()
            out_b.append((b[mm] * w[:, None]).sum(axis=0, keepdims=True))
            out_s.append(s[mm].max(keepdims=True))
            out_c.append(np.array([c], np.int64))
    if not out_b:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    b = np.concatenate(out_b).astype(np.float32)
    s = np.concatenate(out_s).astype(np.float32)
    c = np.concatenate(out_c)
    order = np.argsort(-s, kind="stable")[: params.max_detections]
    return b[order], s[order], c[order]


def decode_detectnet_v2(cov: np.ndarray, bbox: np.ndarray, params: DetectNetV2Params = DetectNetV2Params(),
                        cluster: ClusterParams = ClusterParams()) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Network outputs for one image -> clustered detections in input px.

    Args:
        cov: (C, Hg, Wg) float32 coverage (after sigmoid); a leading batch axis of 1 is accepted.
        bbox: (4C, Hg, Wg) float32 bbox head output.

    Returns:
        ``(boxes (K, 4) float32 xyxy in input px, scores (K,) float32, classes (K,) int64)``.
    """
    cov = np.asarray(cov, np.float32)
    bbox = np.asarray(bbox, np.float32)
    if cov.ndim == 4:
        cov, bbox = cov[0], bbox[0]
    C, gh, gw = cov.shape
    if bbox.shape != (4 * C, gh, gw):
        raise ValueError(f"bbox head shape {bbox.shape} does not match coverage {cov.shape}")
    c_idx, ys, xs = np.nonzero(cov >= cluster.conf_threshold)
    if len(c_idx) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    cxs, cys = grid_centres((gh, gw), params.stride)
    off = bbox.reshape(C, 4, gh, gw)[c_idx, :, ys, xs] * params.bbox_norm  # (N, 4)
    boxes = np.stack([cxs[xs] + off[:, 0], cys[ys] + off[:, 1], cxs[xs] + off[:, 2], cys[ys] + off[:, 3]], axis=1)
    boxes[:, 2] = np.maximum(boxes[:, 2], boxes[:, 0] + 1e-3)
    boxes[:, 3] = np.maximum(boxes[:, 3], boxes[:, 1] + 1e-3)
    scores = cov[c_idx, ys, xs]
    return cluster_boxes(boxes.astype(np.float32), scores, c_idx.astype(np.int64), cluster)


def class_agnostic_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                       iou_threshold: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep one class per face: NMS across classes, (K,4)/(K,)/(K,) as in :func:`cluster_boxes`."""
    if len(boxes) == 0:
        return boxes, scores, classes
    k = nms(boxes, scores, iou_threshold)
    return boxes[k], scores[k], classes[k]


def intersection_over_smaller(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) and (M, 4) xyxy boxes -> (N, M) float32 intersection area / the smaller box's area.

    1.0 when one box lies wholly inside the other, whatever their sizes (IoU would be the area
    ratio); 0 for disjoint boxes; a degenerate (zero-area) box gives 0.
    """
    inter, area_a, area_b = _overlap(a, b)
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    return np.where(smaller > 0, inter / np.maximum(smaller, 1e-9), 0.0).astype(np.float32)


def suppress_nested(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                    overlap: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One box per face: greedy, class-agnostic suppression by intersection over the smaller box.

    Highest score first; a box is dropped when its intersection with an already kept box
    exceeds ``overlap`` of the smaller of the two boxes' areas (so a small box inside a large
    one, or a large one around a small one, goes whichever scored lower). Run after NMS, which
    misses such pairs: a 40-px box inside a 100-px box has IoU 0.16. ``overlap >= 1`` keeps all.

    Args:
        boxes: (K, 4) float32 xyxy. scores: (K,) float32. classes: (K,) int64.

    Returns:
        ``(boxes, scores, classes)`` of the kept boxes, highest score first.
    """
    if len(boxes) < 2 or overlap >= 1.0:
        return boxes, scores, classes
    order = np.argsort(-np.asarray(scores), kind="stable")
    ios = intersection_over_smaller(boxes, boxes)
    keep: List[int] = []
    for i in order:
        if keep and (ios[i, keep] > overlap).any():
            continue
        keep.append(int(i))
    k = np.asarray(keep, np.int64)
    return boxes[k], scores[k], classes[k]



# --------------------------------------------------------------------------------------------
# YOLO-style anchor-free student (models/nets/yolo.py)
#
# One prediction per grid cell on levels of stride 8, 16 and 32. For a cell with centre
# (cx, cy) on a level of stride s the raw outputs are (5 + C) values:
#   channels 0-3: log(l / s), log(t / s), log(r / s), log(b / s), the distances from the
#                 cell centre to the box sides (as FCOS, Tian et al. ICCV 2019, eq. 1);
#   channel 4:    objectness logit;  channels 5..: class logits.
# Score of class c = sigmoid(obj) * sigmoid(cls_c) (YOLOv5). Each ground-truth (or teacher)
# box is assigned to one level by its size and to the cells near its centre on that level.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class YoloParams:
    """Geometry of the YOLO student's output levels.

    Attributes:
        strides: input px per cell of each level, finest first.
        size_bounds: a box whose longer side is <= ``size_bounds[k]`` px goes to level ``k``
            (larger than all of them: the last level).
        centre_radius: cells whose centre lies within this many strides of the box centre
            (and inside the box) are positives; the cell holding the centre always is.
        max_log: raw box outputs are clipped to this before ``exp`` (exp(6) = 403 strides).
    """

    strides: Tuple[int, ...] = (8, 16, 32)
    size_bounds: Tuple[float, ...] = (48.0, 112.0)
    centre_radius: float = 1.5
    max_log: float = 6.0


@functools.lru_cache(maxsize=8)
def yolo_grid(input_hw: Tuple[int, int], params: YoloParams = YoloParams()) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All cells of all levels, level by level, row-major.

    Computed once per (input size, params) and cached (the frame loop decodes every frame); the
    arrays are read-only.

    Returns:
        ``(cx (A,) float32 px, cy (A,) float32 px, stride (A,) float32 px)`` with
        ``A = sum(H/s * W/s)``; the order matches :func:`flatten_yolo`.
    """
    h, w = input_hw
    cxs, cys, ss = [], [], []
    for s in params.strides:
        cx, cy = grid_centres((h // s, w // s), s)
        gx, gy = np.meshgrid(cx, cy)
        cxs.append(gx.ravel()); cys.append(gy.ravel()); ss.append(np.full(gx.size, s, np.float32))
    out = (np.concatenate(cxs), np.concatenate(cys), np.concatenate(ss))
    for a in out:
        a.setflags(write=False)
    return out


def flatten_yolo(levels) -> np.ndarray:
    """Per-level outputs ``[(5+C, H/s, W/s)]`` (a leading batch axis of 1 is accepted) -> (A, 5+C) float32."""
    out = []
    for x in levels:
        x = np.asarray(x, np.float32)
        if x.ndim == 4:
            x = x[0]
        out.append(x.reshape(x.shape[0], -1).T)
    return np.concatenate(out, axis=0)


def assign_yolo(boxes: np.ndarray, input_hw: Tuple[int, int], params: YoloParams = YoloParams()) -> np.ndarray:
    """Assign boxes to the student's cells (training targets and teacher matching).

    Each box goes to the level its longer side selects (``params.size_bounds``) and to that
    level's cells whose centres lie inside the box and within ``params.centre_radius``
    strides of the box centre, plus always the cell holding the box centre. A cell claimed by
    several boxes keeps the smallest (as FCOS).

    Args:
        boxes: (N, 4) float32 xyxy in input px.
        input_hw: (H, W) network input size in px, multiples of the largest stride.

    Returns:
        (A,) int64: for every cell (order of :func:`yolo_grid`) the index of its box, or -1.
    """
    cx, cy, st = yolo_grid(input_hw, params)
    owner = np.full(len(cx), -1, np.int64)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if len(boxes) == 0:
        return owner
    area = np.full(len(cx), np.inf, np.float32)
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    level = np.searchsorted(np.asarray(params.size_bounds, np.float32), side, side="left")
    strides = np.asarray(params.strides, np.float32)
    for i, (b, lv) in enumerate(zip(boxes, level)):
        s = strides[lv]
        bx, by = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        r = params.centre_radius * s
        on = st == s
        m = on & (cx > b[0]) & (cx < b[2]) & (cy > b[1]) & (cy < b[3]) & (np.abs(cx - bx) <= r) & (np.abs(cy - by) <= r)
        centre = on & (np.abs(cx - bx) <= s / 2) & (np.abs(cy - by) <= s / 2)
        if not centre.any():  # box centre outside the grid (clipped box at the border)
            centre = on & (np.abs(cx - np.clip(bx, cx[on].min(), cx[on].max())) <= s / 2) \
                & (np.abs(cy - np.clip(by, cy[on].min(), cy[on].max())) <= s / 2)
        m |= centre
        a = (b[2] - b[0]) * (b[3] - b[1])
        take = m & (a < area)
        owner[take] = i
        area[take] = a
    return owner


def yolo_boxes(raw_box: np.ndarray, cx: np.ndarray, cy: np.ndarray, stride: np.ndarray,
               params: YoloParams = YoloParams()) -> np.ndarray:
    """Raw box channels (A, 4) -> (A, 4) float32 xyxy in input px."""
    d = np.exp(np.minimum(raw_box, params.max_log)) * stride[:, None]
    return np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], axis=1).astype(np.float32)


def decode_yolo(levels, input_hw: Tuple[int, int], params: YoloParams = YoloParams(),
                cluster: ClusterParams = ClusterParams(method="nms", iou_threshold=0.5)
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Student outputs for one image -> detections in input px.

    Args:
        levels: one raw array per stride, ``(5 + C, H/s, W/s)`` float32 (batch axis of 1 accepted).
        input_hw: (H, W) network input size in px.
        cluster: ``conf_threshold`` on ``sigmoid(obj) * sigmoid(cls)``; at most
            ``10 * max_detections`` best cells are clustered, per class, by ``cluster.method``
            (NMS for this head; DBSCAN also works).

    Returns:
        ``(boxes (K, 4) float32 xyxy in input px, scores (K,) float32, classes (K,) int64)``.
    """
    for x, s in zip(levels, params.strides):
        hw = np.shape(x)[-2:]
        if tuple(hw) != (input_hw[0] // s, input_hw[1] // s):
            raise ValueError(f"YOLO level of stride {s} has grid {tuple(hw)}, expected "
                             f"{(input_hw[0] // s, input_hw[1] // s)} for input {input_hw}: outputs out of order?")
    p = flatten_yolo(levels)
    cx, cy, st = yolo_grid(input_hw, params)
    if len(p) != len(cx):
        raise ValueError(f"YOLO outputs hold {len(p)} cells, input {input_hw} with strides {params.strides} gives {len(cx)}")
    obj = 1.0 / (1.0 + np.exp(-p[:, 4]))
    keep = obj >= cluster.conf_threshold  # score <= obj: cheap pre-filter
    p, cx, cy, st, obj = p[keep], cx[keep], cy[keep], st[keep], obj[keep]
    cls_p = 1.0 / (1.0 + np.exp(-p[:, 5:]))
    c = cls_p.argmax(axis=1)
    scores = (obj * cls_p[np.arange(len(c)), c]).astype(np.float32)
    m = scores >= cluster.conf_threshold
    if not m.any():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    if m.sum() > 10 * cluster.max_detections:  # bound the NMS cost: keep the best 10x max_detections cells
        m[np.argsort(-np.where(m, scores, -1.0), kind="stable")[10 * cluster.max_detections:]] = False
    boxes = yolo_boxes(p[m, :4], cx[m], cy[m], st[m], params)
    return cluster_boxes(boxes, scores[m], c[m].astype(np.int64), cluster)


# --------------------------------------------------------------------------------------------
# SSD (Liu et al., "SSD: Single Shot MultiBox Detector", ECCV 2016): the Ultra-Light RFB detector
# (models/nets/ultralight.py). The graph decodes its priors itself: per prior a softmax over
# background + C classes and one box in input px; the decoder only selects and suppresses.
# --------------------------------------------------------------------------------------------


def decode_ssd(scores: np.ndarray, boxes: np.ndarray,
               cluster: ClusterParams = ClusterParams(method="nms", iou_threshold=0.5)
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SSD outputs for one image -> per-class detections in input px (SSD's test-time step, Sec. 2.2).

    Every prior proposes one box for every class whose softmax score reaches
    ``cluster.conf_threshold`` (column 0, background, is never a detection) or, when the model carries
    ``cluster.class_priors``, one box of the class :func:`prior_decision` decides; at most
    ``10 * cluster.max_detections`` best proposals are kept, then clustered per class by
    ``cluster.method`` (NMS at ``cluster.iou_threshold``). The class-agnostic NMS and
    :func:`suppress_nested` (one box per face) follow in :func:`edge.model.postprocess`, as for the
    other decoders.

    Args:
        scores: (P, 1 + C) float32 softmax, background first (a leading batch axis of 1 is accepted).
        boxes: (P, 4) float32 xyxy in input px (batch axis of 1 accepted).

    Returns:
        ``(boxes (K, 4) float32 xyxy in input px, scores (K,) float32, classes (K,) int64)``, class ids
        ``0..C-1`` (the score column minus one), best first.

    Raises:
        ValueError: when scores and boxes disagree in shape.
    """
    scores = np.asarray(scores, np.float32)
    boxes = np.asarray(boxes, np.float32)
    if scores.ndim == 3:
        scores, boxes = scores[0], boxes[0]
    if scores.ndim != 2 or scores.shape[1] < 2 or boxes.shape != (scores.shape[0], 4):
        raise ValueError(f"SSD outputs must be scores (P, 1 + C) and boxes (P, 4), got {scores.shape} and {boxes.shape}")
    if cluster.class_priors:
        cls, sc = prior_decision(scores, cluster.class_priors, cluster.class_score)
        p_idx = np.nonzero(sc >= cluster.conf_threshold)[0]
        c_idx, s = cls[p_idx], sc[p_idx]
    else:
        p_idx, c_idx = np.nonzero(scores[:, 1:] >= cluster.conf_threshold)
        s = scores[p_idx, c_idx + 1]
    if len(p_idx) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    cap = 10 * cluster.max_detections
    if len(s) > cap:  # bound the NMS cost
        k = np.argsort(-s, kind="stable")[:cap]
        p_idx, c_idx, s = p_idx[k], c_idx[k], s[k]
    b = boxes[p_idx].copy()
    b[:, 2] = np.maximum(b[:, 2], b[:, 0] + 1e-3)
    b[:, 3] = np.maximum(b[:, 3], b[:, 1] + 1e-3)
    return cluster_boxes(b, s.astype(np.float32), c_idx.astype(np.int64), cluster)


def prior_decision(scores: np.ndarray, priors, mode: str = "face") -> Tuple[np.ndarray, np.ndarray]:
    """One class and one score per SSD prior under re-weighted class priors.

    The network's softmax ``p`` was learnt under the training photos' class frequencies (mask 79 %,
    no_mask 18 %, mask_incorrect 3 % of the faces), so ``mask`` wins the argmax of faces that lie
    between classes. Multiplying each class probability by a weight ``w_c`` and renormalising is
    Bayes' rule with the class priors replaced (Duda, Hart & Stork, *Pattern Classification*, 2nd ed.,
    sec. 2.2: ``P'(c|x) ∝ P(c|x) P'(c) / P(c)``); the weights are chosen on a held-out set
    (``models.evaluation.decision``). Weights all 1 give the plain argmax.

    Args:
        scores: (P, 1 + C) float32 softmax, background first.
        priors: (C,) positive weights of the C foreground classes.
        mode: ``"face"``: score ``1 - p_bg``; ``"class"``: ``(1 - p_bg) * w_c p_c / sum_k w_k p_k``
            (see :class:`ClusterParams`).

    Returns:
        ``(classes (P,) int64 in 0..C-1, scores (P,) float32)``.

    Raises:
        ValueError: when ``priors`` does not hold C positive weights.
    """
    scores = np.asarray(scores, np.float32)
    w = np.asarray(priors, np.float32).reshape(-1)
    C = scores.shape[1] - 1
    if len(w) != C or not (w > 0).all():
        raise ValueError(f"class_priors must hold {C} positive weights (one per class), got {list(w)}")
    fg = scores[:, 1:] * w
    cls = fg.argmax(axis=1).astype(np.int64)
    face = 1.0 - scores[:, 0]
    if mode == "face":
        return cls, face.astype(np.float32)
    post = fg[np.arange(len(cls)), cls] / np.maximum(fg.sum(axis=1), 1e-12)
    return cls, (face * post).astype(np.float32)
