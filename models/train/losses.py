"""DetectNet_v2 loss: coverage L2 plus coverage-weighted bbox L1 (seed 004 eq. 1-2)."""
from __future__ import annotations

from typing import Dict, Sequence, Tuple, Union

import torch


def detectnet_v2_loss(cov: torch.Tensor, bbox: torch.Tensor, cov_t: torch.Tensor, bbox_t: torch.Tensor,
                      pos_weight: Union[float, Sequence[float]] = 10.0, bbox_weight: float = 2.0
                      ) -> Tuple[torch.Tensor, Dict[str, float]]:
    """Loss for one batch.

    Args:
        cov, cov_t: (B, C, Hg, Wg) predicted / target coverage in [0, 1].
        bbox, bbox_t: (B, 4C, Hg, Wg) predicted / target normalised corner offsets.
        pos_weight: weight of positive cells in the coverage L2, one value or one per class
            (faces fill few cells; rare classes may be weighted up).
        bbox_weight: weight of the bbox term.

    Returns:
        (scalar loss, {"cov": float, "bbox": float}).

    With ``P = max(1, sum(cov_t))`` positive cells in the batch:
    coverage term ``sum(w * (cov - cov_t)^2) / P`` with ``w = 1 + (pos_weight_c - 1) * cov_t``;
    bbox term ``sum(cov_t * |bbox - bbox_t|) / P``, the L1 over the 4 corners weighted by the
    target coverage, so only cells that own a box regress it.
    """
    cov, bbox = cov.float(), bbox.float()
    pw = torch.as_tensor(pos_weight, dtype=torch.float32, device=cov.device).reshape(1, -1, 1, 1)
    n_pos = cov_t.sum().clamp(min=1.0)
    w = 1.0 + (pw - 1.0) * cov_t
    l_cov = (w * (cov - cov_t) ** 2).sum() / n_pos
    wb = cov_t.repeat_interleave(4, dim=1)
    l_bbox = (wb * (bbox - bbox_t).abs()).sum() / n_pos
    loss = l_cov + bbox_weight * l_bbox
    return loss, {"cov": float(l_cov.detach()), "bbox": float(l_bbox.detach())}


def flatten_levels(levels: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-level student outputs ``[(B, 5+C, H/s, W/s)]`` -> (B, A, 5+C) in :func:`edge.decoders.yolo_grid` order."""
    return torch.cat([x.flatten(2).transpose(1, 2) for x in levels], dim=1).float()


def yolo_decode_boxes(raw: torch.Tensor, grid: torch.Tensor, max_log: float = 6.0) -> torch.Tensor:
    """(..., 4) raw log-distances and (..., 3) grid ``(cx, cy, stride)`` -> (..., 4) xyxy px (torch twin of
    :func:`edge.decoders.yolo_boxes`)."""
    d = torch.exp(raw.clamp(max=max_log)) * grid[..., 2:3]
    cx, cy = grid[..., 0], grid[..., 1]
    return torch.stack([cx - d[..., 0], cy - d[..., 1], cx + d[..., 2], cy + d[..., 3]], dim=-1)


def giou_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``1 - GIoU`` of matching (N, 4) xyxy boxes (Rezatofighi et al., CVPR 2019, Alg. 1) -> (N,)."""
    lt, rb = torch.max(a[:, :2], b[:, :2]), torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area_a, area_b = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1), (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    union = area_a + area_b - inter + 1e-7
    hull = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).clamp(min=0).prod(1) + 1e-7
    return 1.0 - (inter / union - (hull - union) / hull)


def focal_objectness(obj_logits: torch.Tensor, obj_t: torch.Tensor, n_pos: torch.Tensor, alpha: float = 0.25,
                     gamma: float = 2.0, keep: torch.Tensor = None) -> torch.Tensor:
    """Sigmoid focal loss of the objectness (Lin et al., ICCV 2017, eq. 5), summed and divided by ``n_pos``.

    Args:
        obj_logits: (B, A) objectness logits; obj_t: (B, A) float targets in {0, 1}.
        n_pos: scalar tensor, the number of positive cells (at least 1).
        keep: (B, A) bool cells that count (None: all; ``False`` marks ignore regions).
    """
    import torch.nn.functional as F

    p = torch.sigmoid(obj_logits)
    ce = F.binary_cross_entropy_with_logits(obj_logits, obj_t, reduction="none")
    p_t = p * obj_t + (1 - p) * (1 - obj_t)
    a_t = alpha * obj_t + (1 - alpha) * (1 - obj_t)
    loss = a_t * (1 - p_t) ** gamma * ce
    if keep is not None:
        loss = loss * keep.float()
    return loss.sum() / n_pos


def yolo_loss(pred: torch.Tensor, grid: torch.Tensor, tgt_box: torch.Tensor, tgt_cls: torch.Tensor,
              box_weight: float = 2.0, obj_weight: float = 1.0, cls_weight: float = 1.0,
              focal_alpha: float = 0.25, focal_gamma: float = 2.0) -> Tuple[torch.Tensor, Dict[str, float]]:
    """Hard-label loss ``L_hard`` of the YOLO student for one batch.

    Args:
        pred: (B, A, 5+C) raw outputs (:func:`flatten_levels`).
        grid: (A, 3) float32 ``(cx, cy, stride)`` px of every cell.
        tgt_box: (B, A, 4) float32 xyxy px of each cell's assigned box (ignored where ``tgt_cls < 0``).
        tgt_cls: (B, A) int64 class of each cell's assigned box, -1 for background.

    Returns:
        (scalar loss, {"box", "obj", "cls": float}). With P positive cells: objectness sigmoid
        focal loss over all cells (Lin et al., ICCV 2017, eq. 5) / P, class BCE over positive
        cells / P, ``1 - GIoU`` over positive cells / P.
    """
    import torch.nn.functional as F

    pos = tgt_cls >= 0
    n_pos = pos.sum().clamp(min=1).float()
    l_obj = focal_objectness(pred[..., 4], pos.float(), n_pos, focal_alpha, focal_gamma)
    if pos.any():
        pp = pred[pos]
        onehot = F.one_hot(tgt_cls[pos], pp.shape[-1] - 5).float()
        l_cls = F.binary_cross_entropy_with_logits(pp[:, 5:], onehot, reduction="sum") / n_pos
        boxes = yolo_decode_boxes(pp[:, :4], grid.unsqueeze(0).expand(pred.shape[0], -1, -1)[pos])
        l_box = giou_loss(boxes, tgt_box[pos]).sum() / n_pos
    else:
        l_cls = l_box = pred.sum() * 0.0
    loss = box_weight * l_box + obj_weight * l_obj + cls_weight * l_cls
    return loss, {"box": float(l_box.detach()), "obj": float(l_obj.detach()), "cls": float(l_cls.detach())}


def difficulty_weights(conf: torch.Tensor, t: float) -> torch.Tensor:
    """``λ_i = sigmoid(conf_i - t)`` (seed 000 §III.B, eq. 4): teacher-confident objects weigh more."""
    return torch.sigmoid(conf - t)


def kd_loss(pred: torch.Tensor, grid: torch.Tensor, t_box: torch.Tensor, t_logits: torch.Tensor, t_conf: torch.Tensor,
            t_cell_w: torch.Tensor, t: float = 0.5, fixed_lambda: float = None, temperature: float = 2.0,
            box_weight: float = 1.0, class_form: str = "softmax") -> Tuple[torch.Tensor, Dict[str, float]]:
    """Difficulty-aware distillation term ``Σ_i λ_i · L_KD,i`` (seed 000 Algorithm 1, eqs. 4-6).

    Teacher objects are matched to student cells by :func:`edge.decoders.assign_yolo` (the same
    level-by-size and centre-cell rule as the ground truth); ``L_KD,i`` is the mean over object
    ``i``'s cells of

    * ``(x_t - x_s)^2 + (y_t - y_s)^2 + (w_t - w_s)^2 + (h_t - h_s)^2`` with centre and size in
      units of the level's stride (eq. 5, first line), plus
    * ``BCE(softmax(D_t / T), softmax(D_s / T))`` averaged over classes (eqs. 5-6), with ``D_t``
      the teacher's per-class coverage logits at the object and ``D_s`` the student's class logits
      (``class_form="softmax"``, the equation as printed), or
    * with ``class_form="sigmoid"``, the same BCE on the probabilities a sigmoid class head outputs:
      ``BCE(sigmoid(logit(p_t) / T), sigmoid(D_s / T))`` per class, ``p_t = softmax(D_t)`` the
      teacher's class distribution. This is the form for a head trained with per-class sigmoid BCE and
      read by the runtime as ``sigmoid(obj) * sigmoid(cls)`` (:func:`edge.decoders.decode_yolo`): a
      softmax of such logits is shift-invariant, so the printed form constrains only logit differences
      and leaves each class's sigmoid score to the label loss.

    Args:
        pred: (B, A, 5+C) raw student outputs. grid: (A, 3) ``(cx, cy, stride)``.
        t_box: (B, A, 4) teacher box xyxy px at each matched cell.
        t_logits: (B, A, C) teacher class logits. t_conf: (B, A) teacher confidence of the object (0-1).
        t_cell_w: (B, A) ``1 / (cells of the object)`` at matched cells, 0 elsewhere.
        t: eq. 4 threshold. fixed_lambda: use this constant λ instead (the ablation's baseline).
        temperature: T of the softened class distributions.
        box_weight: weight of the box term inside ``L_KD`` (1 in seed 000; 0 distils the classes only).
        class_form: ``"softmax"`` or ``"sigmoid"`` (above).

    Returns:
        (scalar ``Σ_i λ_i L_KD,i / n_objects``, {"kd_box", "kd_cls", "lambda_mean": float}). The teacher
        tensors are detached: gradients reach only the student.

    Raises:
        ValueError: ``class_form`` is neither ``"softmax"`` nor ``"sigmoid"``.
    """
    if class_form not in ("softmax", "sigmoid"):
        raise ValueError(f"class_form must be 'softmax' or 'sigmoid', got {class_form!r}")
    t_box, t_logits, t_conf, t_cell_w = (x.detach().float() for x in (t_box, t_logits, t_conf, t_cell_w))
    m = t_cell_w > 0
    if not m.any():
        z = pred.sum() * 0.0
        return z, {"kd_box": 0.0, "kd_cls": 0.0, "lambda_mean": 0.0}
    g = grid.unsqueeze(0).expand(pred.shape[0], -1, -1)[m]
    s = yolo_decode_boxes(pred[m][:, :4], g)
    st = g[:, 2:3]

    def xywh(b):
        return torch.cat([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], dim=1) / st

    sq = ((xywh(t_box[m]) - xywh(s)) ** 2).sum(1)
    if class_form == "softmax":
        d_t = torch.softmax(t_logits[m] / temperature, dim=1)
        d_s = torch.softmax(pred[m][:, 5:] / temperature, dim=1).clamp(1e-6, 1 - 1e-6)
    else:
        p_t = torch.softmax(t_logits[m], dim=1).clamp(1e-6, 1 - 1e-6)
        d_t = torch.sigmoid(torch.logit(p_t) / temperature)
        d_s = torch.sigmoid(pred[m][:, 5:] / temperature).clamp(1e-6, 1 - 1e-6)
    bce = -(d_t * torch.log(d_s) + (1 - d_t) * torch.log(1 - d_s)).mean(1)
    lam = torch.full_like(sq, fixed_lambda) if fixed_lambda is not None else difficulty_weights(t_conf[m], t)
    w = t_cell_w[m]
    n_obj = w.sum().clamp(min=1e-6)
    loss = (lam * w * (box_weight * sq + bce)).sum() / n_obj
    with torch.no_grad():
        parts = {"kd_box": float((w * sq).sum() / n_obj), "kd_cls": float((w * bce).sum() / n_obj),
                 "lambda_mean": float((lam * w).sum() / n_obj)}
    return loss, parts
