"""YOLO-Lite-style student: ShuffleNetV2 backbone, small FPN/PAN neck, anchor-free heads at strides 8/16/32.

Sized like seed 000's YOLO-Lite-s student (Table I: ShuffleNetV2 blocks + C3 neck + 3 detect
heads, ~1.5 M parameters); ``width=1.0`` here is ~0.5 M parameters and ~1 GFLOP at 640x368,
the size that fits the appliance's 60 fps budget on a 2-core CPU.

Why anchor-free: faces are close to square (aspect 0.7-1.3 in the training labels), so anchor
shapes add nothing, and 746 training images are too few to tune them; one prediction per cell
(as YOLOX / FCOS) also makes the teacher-to-student matching of the distillation a plain grid
look-up (see :func:`edge.decoders.assign_yolo`).

Outputs, one raw tensor per level ``s`` in (8, 16, 32), shape ``(B, 5 + C, H/s, W/s)``:
channels 0-3 ``log(l, t, r, b) / s`` distances of the box sides from the cell centre,
channel 4 the objectness logit, channels 5.. the class logits. Decoding (NumPy) is
:func:`edge.decoders.decode_yolo`.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn
import torch.nn.functional as F

STRIDES: Tuple[int, ...] = (8, 16, 32)


def conv_bn(cin: int, cout: int, k: int = 1, s: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: List[nn.Module] = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleBlock(nn.Module):
    """ShuffleNetV2 unit (Ma et al., ECCV 2018, Fig. 3c/d): split, dw-separable branch, concat, shuffle."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        mid = cout // 2
        if stride == 2:
            self.left = nn.Sequential(conv_bn(cin, cin, 3, 2, groups=cin, act=False), conv_bn(cin, mid))
            bin_ = cin
        else:
            assert cin == cout
            self.left = None
            bin_ = mid
        self.right = nn.Sequential(conv_bn(bin_, mid), conv_bn(mid, mid, 3, stride, groups=mid, act=False), conv_bn(mid, mid))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            a, b = x.chunk(2, dim=1)
            out = torch.cat([a, self.right(b)], 1)
        else:
            out = torch.cat([self.left(x), self.right(x)], 1)
        return channel_shuffle(out)


class DWConv(nn.Sequential):
    """Depthwise 3x3 + pointwise 1x1, each with BN and ReLU."""

    def __init__(self, cin: int, cout: int, s: int = 1):
        super().__init__(conv_bn(cin, cin, 3, s, groups=cin), conv_bn(cin, cout))


class YoloStudent(nn.Module):
    """The student detector.

    Args:
        num_classes: C.
        width: channel multiplier (1.0: backbone 24/48/96/192, neck 64).
        depth: ShuffleNetV2 units per stage after the downsampling unit.

    ``forward(x (B,3,H,W) float32 RGB/255)`` returns a tuple of 3 tensors
    ``(B, 5 + C, H/s, W/s)`` for s = 8, 16, 32 (H, W multiples of 32).
    """

    def __init__(self, num_classes: int = 3, width: float = 1.0, depth: Sequence[int] = (2, 3, 2)):
        super().__init__()
        self.num_classes, self.width, self.depth = num_classes, width, tuple(depth)
        ch = [max(8, int(round(c * width / 8)) * 8) for c in (24, 48, 96, 192)]
        neck = max(16, int(round(64 * width / 8)) * 8)
        self.stem = nn.Sequential(conv_bn(3, ch[0], 3, 2), nn.MaxPool2d(3, 2, 1))            # /4
        stages = []
        for cin, cout, n in zip(ch[:-1], ch[1:], depth):
            stages.append(nn.Sequential(ShuffleBlock(cin, cout, 2), *[ShuffleBlock(cout, cout, 1) for _ in range(n)]))
        self.stage3, self.stage4, self.stage5 = stages                                     # /8 /16 /32
        self.lat3, self.lat4, self.lat5 = conv_bn(ch[1], neck), conv_bn(ch[2], neck), conv_bn(ch[3], neck)
        self.td4, self.td3 = DWConv(neck, neck), DWConv(neck, neck)                        # top-down (FPN)
        self.down3, self.down4 = DWConv(neck, neck, 2), DWConv(neck, neck, 2)              # bottom-up (PAN)
        self.bu4, self.bu5 = DWConv(neck, neck), DWConv(neck, neck)
        no = 5 + num_classes
        self.heads = nn.ModuleList([nn.Sequential(DWConv(neck, neck), nn.Conv2d(neck, no, 1)) for _ in STRIDES])
        for h, s in zip(self.heads, STRIDES):
            b = h[-1].bias.data
            b.zero_()
            b[:4] = 0.7            # exp(0.7) ~ 2 strides from centre to side: a box ~4 strides wide
            b[4] = -4.6            # prior objectness 0.01 (focal-loss init, Lin et al. 2017)
            b[5:] = 0.0

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c3 = self.stage3(self.stem(x))
        c4 = self.stage4(c3)
        c5 = self.stage5(c4)
        p5 = self.lat5(c5)
        p4 = self.td4(self.lat4(c4) + F.interpolate(p5, scale_factor=2.0, mode="nearest"))
        p3 = self.td3(self.lat3(c3) + F.interpolate(p4, scale_factor=2.0, mode="nearest"))
        n4 = self.bu4(p4 + self.down3(p3))
        n5 = self.bu5(p5 + self.down4(n4))
        return tuple(h(f) for h, f in zip(self.heads, (p3, n4, n5)))


def load_yolo(ck: Dict) -> YoloStudent:
    """Rebuild a :class:`YoloStudent` from a training checkpoint (``models.export`` LOADERS)."""
    cfg = ck["net"]
    m = YoloStudent(cfg["num_classes"], cfg["width"], cfg["depth"])
    m.load_state_dict(ck["ema"])
    return m
