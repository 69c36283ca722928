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
