"""DetectNet_v2-style detector: ResNet-18 (stride 16) + coverage head + bbox head.

Outputs, for C classes on a (H/16, W/16) grid:
  * ``coverage`` (B, C, H/16, W/16): per-class sigmoid coverage map;
  * ``bbox`` (B, 4C, H/16, W/16): corner offsets from the cell centre / bbox_norm
    (see :mod:`edge.decoders`).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn

from models.nets.resnet import ResNet18


class DetectNetV2(nn.Module):
    """DetectNet_v2 (NVIDIA TAO; seed 004 §3.3) with a project-written ResNet-18.

    Args:
        num_classes: C.
        widths: backbone widths (see :class:`ResNet18`).
    """

    def __init__(self, num_classes: int = 3, widths: Sequence[int] = (64, 128, 256, 512)):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = ResNet18(widths)
        c = self.backbone.out_channels
        self.cov_head = nn.Conv2d(c, num_classes, 1)
        self.bbox_head = nn.Conv2d(c, 4 * num_classes, 1)
        nn.init.normal_(self.cov_head.weight, std=0.01)
        nn.init.constant_(self.cov_head.bias, -4.0)  # start near empty coverage
        nn.init.normal_(self.bbox_head.weight, std=0.01)
        nn.init.zeros_(self.bbox_head.bias)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        f = self.backbone(x)
        return torch.sigmoid(self.cov_head(f)), self.bbox_head(f)
