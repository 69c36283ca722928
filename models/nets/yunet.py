"""YuNet face detector (Wu, Peng, Yu, "YuNet: A Tiny Millisecond-level Face Detector", MIR 2023),
our own definition, and its use as the pretrained start of a 3-class mask detector.

Architecture (as libfacedetection.train's ``configs/yunet_n.py``, re-written here, not copied):

* a *PW-DW unit* is a 1x1 convolution then a depthwise 3x3 convolution (both with bias), then
  (except in the output convolutions) BatchNorm + ReLU;
* backbone: a stem (3x3 stride-2 conv + BN + ReLU, one PW-DW unit, 2x2 max-pool: stride 4), then
  five stages of two PW-DW units each, with a 2x2 max-pool after stages 2, 3 and 4; stages 3, 4
  and 5 give the stride-8, 16 and 32 features (64 channels each for YuNet-n);
* neck (TFPN): top-down, ``f5 = L5(c5)``, ``f4 = L4(c4 + up(f5))``, ``f3 = L3(c3 + up(f4))`` with
  ``L`` one PW-DW unit per level and ``up`` 2x nearest upsampling;
* head, per level: one shared PW-DW unit (YuNet-n; YuNet-s has none), then four output PW-DW
  units without BN: class (1), box (4), objectness (1) and landmarks (10).

Variants (:data:`VARIANTS`): YuNet-n (75,856 parameters) and YuNet-s (54,608: stages 1-2 narrower,
16 -> 32 -> 64 channels, and no shared head unit).

Raw face outputs per cell ``(i, j)`` of a level of stride ``s`` (priors at ``(j s, i s)``, no
half-cell offset): box centre ``(j + dx, i + dy) s``, size ``exp(dw) s, exp(dh) s``; face score
``sigmoid(cls) * sigmoid(obj)``.

:class:`YuNetDetector` turns it into our YOLO student's output convention
(:mod:`models.nets.yolo`, :func:`edge.decoders.decode_yolo`): per level ``(B, 5 + C, H/s, W/s)``
with channels 0-3 ``log(l, t, r, b) / s`` from the cell centre ``((j + 0.5) s, (i + 0.5) s)``,
channel 4 an objectness logit, channels 5.. class logits, so edge decodes it unchanged. The box
conversion is exact (a fixed, differentiable layer on top of the pretrained box head); the
objectness is YuNet's face score as a logit and the class head starts as YuNet's face-class
convolution copied to every class.

Input convention of the pretrained weights: BGR pixels 0-255, no normalisation.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

STRIDES: Tuple[int, ...] = (8, 16, 32)
#: initial BatchNorm scale of the class branch (see :class:`YuNetDetector`)
BRANCH_INIT_SCALE = 0.1
#: (in, out) channels of backbone stages 1..5 and the stem (in, mid, out), per variant.
#: ``shared``: whether the head has a shared PW-DW unit per level.
VARIANTS: Dict[str, Dict] = {
    "n": {"stem": (3, 16, 16), "stages": ((16, 64), (64, 64), (64, 64), (64, 64), (64, 64)), "neck": 64,
          "shared": True},
    "s": {"stem": (3, 16, 16), "stages": ((16, 32), (32, 64), (64, 64), (64, 64), (64, 64)), "neck": 64,
          "shared": False},
}


class PwDw(nn.Module):
    """1x1 conv -> depthwise 3x3 conv (both with bias) -> [BatchNorm -> ReLU]."""

    def __init__(self, cin: int, cout: int, bn_relu: bool = True):
        super().__init__()
        self.pw = nn.Conv2d(cin, cout, 1, 1, 0, bias=True)
        self.dw = nn.Conv2d(cout, cout, 3, 1, 1, bias=True, groups=cout)
        self.bn = nn.BatchNorm2d(cout) if bn_relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dw(self.pw(x))
        return F.relu(self.bn(x), inplace=True) if self.bn is not None else x


class YuNet(nn.Module):
    """The face detector with its four raw heads.

    ``forward(x (B,3,H,W) float32 BGR 0-255)``, H and W multiples of 32, returns a dict of lists
    (one tensor per stride 8/16/32, finest first): ``cls`` (B,1,h,w), ``box`` (B,4,h,w) ``(dx, dy,
    dw, dh)``, ``obj`` (B,1,h,w), ``kps`` (B,10,h,w); ``cls`` and ``obj`` are logits.
    """

    def __init__(self, variant: str = "n"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown YuNet variant {variant!r}; known: {sorted(VARIANTS)}")
        self.variant = variant
        v = VARIANTS[variant]
        ci, cm, co = v["stem"]
        self.stem_conv = nn.Conv2d(ci, cm, 3, 2, 1, bias=True)
        self.stem_bn = nn.BatchNorm2d(cm)
        self.stem_unit = PwDw(cm, co)
        self.stages = nn.ModuleList([nn.Sequential(PwDw(a, a), PwDw(a, b)) for a, b in v["stages"]])
        c = v["neck"]
        self.lateral = nn.ModuleList([PwDw(c, c) for _ in STRIDES])
        self.shared = nn.ModuleList([PwDw(c, c) for _ in STRIDES]) if v["shared"] else None
        self.cls = nn.ModuleList([PwDw(c, 1, False) for _ in STRIDES])
        self.box = nn.ModuleList([PwDw(c, 4, False) for _ in STRIDES])
        self.obj = nn.ModuleList([PwDw(c, 1, False) for _ in STRIDES])
        self.kps = nn.ModuleList([PwDw(c, 10, False) for _ in STRIDES])

    def features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Head input features (after the shared unit), one per stride."""
        x = self.stem_unit(F.relu(self.stem_bn(self.stem_conv(x)), inplace=True))
        x = F.max_pool2d(x, 2)                      # stride 4
        feats = []
        for k, stage in enumerate(self.stages):
            x = stage(x)
            if k >= 2:
                feats.append(x)                     # stages 3, 4, 5: strides 8, 16, 32
            if k in (1, 2, 3):
                x = F.max_pool2d(x, 2)
        f5 = self.lateral[2](feats[2])
        f4 = self.lateral[1](feats[1] + F.interpolate(f5, scale_factor=2.0, mode="nearest"))
        f3 = self.lateral[0](feats[0] + F.interpolate(f4, scale_factor=2.0, mode="nearest"))
        if self.shared is None:
            return [f3, f4, f5]
        return [sh(f) for sh, f in zip(self.shared, (f3, f4, f5))]

    def forward(self, x: torch.Tensor) -> Dict[str, List[torch.Tensor]]:
        f = self.features(x)
        return {name: [head[k](f[k]) for k in range(len(STRIDES))]
                for name, head in (("cls", self.cls), ("box", self.box), ("obj", self.obj), ("kps", self.kps))}


#: libfacedetection.train (mmdet) state_dict key prefixes -> ours.
_RENAMES: Sequence[Tuple[str, str]] = (
    (r"^backbone\.model0\.conv1\.", "stem_conv."),
    (r"^backbone\.model0\.bn1\.", "stem_bn."),
    (r"^backbone\.model0\.conv2\.", "stem_unit."),
    (r"^backbone\.model(\d)\.conv(\d)\.", lambda m: f"stages.{int(m.group(1)) - 1}.{int(m.group(2)) - 1}."),
    (r"^neck\.lateral_convs\.(\d)\.", r"lateral.\1."),
    (r"^bbox_head\.multi_level_share_convs\.(\d)\.0\.", r"shared.\1."),
    (r"^bbox_head\.multi_level_cls\.(\d)\.", r"cls.\1."),
    (r"^bbox_head\.multi_level_bbox\.(\d)\.", r"box.\1."),
    (r"^bbox_head\.multi_level_obj\.(\d)\.", r"obj.\1."),
    (r"^bbox_head\.multi_level_kps\.(\d)\.", r"kps.\1."),
)


def _rename(key: str) -> str:
    for pat, rep in _RENAMES:
        new, n = re.subn(pat, rep, key)
        if n:
            key = new
            break
    else:
        raise KeyError(f"unexpected YuNet checkpoint key {key!r}")
    return key.replace(".conv1.", ".pw.").replace(".conv2.", ".dw.")


def checkpoint_variant(sd: Dict[str, torch.Tensor]) -> str:
    """The YuNet variant (``"n"`` or ``"s"``) of a libfacedetection.train ``state_dict``, told by
    the width of backbone stage 1 (64 channels: n, 32: s). Raises ``KeyError`` for another layout."""
    width = int(sd["backbone.model1.conv2.conv1.weight"].shape[0])
    for name, v in VARIANTS.items():
        if v["stages"][0][1] == width:
            return name
    raise KeyError(f"no YuNet variant has a stage-1 width of {width}")


def load_yunet(path: Union[str, Path], variant: str = None) -> YuNet:
    """Build :class:`YuNet` from a libfacedetection.train checkpoint (``yunet_n.pth`` or
    ``yunet_s.pth``, mmdet format); ``variant`` None reads it from the checkpoint
    (:func:`checkpoint_variant`).

    Every tensor of the checkpoint's ``state_dict`` must land in the model and every model tensor
    must be filled (strict), else ``KeyError`` / ``RuntimeError``. Returns the model in eval mode.
    """
    ck = torch.load(str(path), map_location="cpu", weights_only=False)
    sd = ck.get("state_dict", ck)
    model = YuNet(variant or checkpoint_variant(sd))
    model.load_state_dict({_rename(k): v for k, v in sd.items()}, strict=True)
    return model.eval()


def onnx_layout(out: Dict[str, List[torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """Raw heads -> the tensors of libfacedetection's ONNX export: ``cls_8`` ... ``kps_32``, each
    (B, h*w, k) row-major over cells; ``cls`` and ``obj`` through a sigmoid, ``bbox`` and ``kps`` raw."""
    res = {}
    for name, onnx_name, sig in (("cls", "cls", True), ("obj", "obj", True), ("box", "bbox", False), ("kps", "kps", False)):
        for s, t in zip(STRIDES, out[name]):
            t = t.flatten(2).transpose(1, 2)
            res[f"{onnx_name}_{s}"] = torch.sigmoid(t) if sig else t
    return res


def yunet_to_yolo_box(box: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """YuNet box channels ``(dx, dy, dw, dh)`` (B,4,h,w) -> our ``log(l, t, r, b) / s`` (B,4,h,w).

    With priors at the cell corner and our cells centred half a cell further:
    ``l / s = 0.5 + dx... `` precisely ``l / s = 0.5 - dx + exp(dw) / 2``, ``r / s = dx - 0.5 +
    exp(dw) / 2`` (and the same in y). A distance <= 0 (the box does not contain the cell
    centre) is clamped to ``eps`` strides before the log.
    """
    dx, dy, dw, dh = box.unbind(1)
    hw, hh = torch.exp(dw.clamp(max=8.0)) / 2, torch.exp(dh.clamp(max=8.0)) / 2
    d = torch.stack([0.5 - dx + hw, 0.5 - dy + hh, dx - 0.5 + hw, dy - 0.5 + hh], dim=1)
    return torch.log(d.clamp(min=eps))


class YuNetDetector(nn.Module):
    """YuNet with a C-class head, in the YOLO student's output convention (see module doc).

    Args:
        num_classes: C.
        base: a pretrained :class:`YuNet` (its landmark heads are dropped), or None for random init.
        input_rgb01: the exported graph takes ``RGB / 255`` as every maskwatch model; the first
            layer converts to YuNet's BGR 0-255.
        variant: ``"n"`` or ``"s"`` (:data:`VARIANTS`) when ``base`` is None; else ``base``'s.
        cls_hidden: give the classes a branch of their own (residual PW-DW units on the head features).
        cls_depth: PW-DW units in that branch.

    ``forward(x (B,3,H,W))`` returns a tuple of 3 tensors ``(B, 5 + C, H/s, W/s)``, s = 8, 16, 32.
    """

    def __init__(self, num_classes: int = 3, base: YuNet = None, input_rgb01: bool = True, cls_hidden: bool = True,
                 variant: str = "n", cls_depth: int = 1):
        super().__init__()
        self.num_classes, self.input_rgb01, self.cls_hidden = num_classes, input_rgb01, cls_hidden
        self.net = base if base is not None else YuNet(variant)
        self.variant = self.net.variant
        self.net.kps = None  # landmarks are not used
        c = self.net.cls[0].pw.in_channels
        # a class branch of its own (one PW-DW unit with BN + ReLU per level, identity-like start),
        # so that mask / no_mask features can form without pulling the pretrained box features
        self.cls_depth = cls_depth
        self.cls_branch = nn.ModuleList([self._branch(c, cls_depth) for _ in STRIDES]) if cls_hidden else None
        self.cls3 = nn.ModuleList([PwDw(c, num_classes, False) for _ in STRIDES])
        if base is not None:  # every class starts as the face class: score = YuNet's face score
            with torch.no_grad():
                for new, old in zip(self.cls3, base.cls):
                    new.pw.weight.copy_(old.pw.weight.repeat(num_classes, 1, 1, 1))
                    new.pw.bias.copy_(old.pw.bias.repeat(num_classes))
                    new.dw.weight.copy_(old.dw.weight.repeat(num_classes, 1, 1, 1))
                    new.dw.bias.copy_(old.dw.bias.repeat(num_classes))

    @staticmethod
    def _branch(c: int, depth: int) -> nn.Module:
        """``depth`` PW-DW units (one is the unit itself, for the checkpoints of 1.0.0). The last unit's
        BatchNorm scale starts small, not zero: the branch adds little at the start (the face class is
        nearly kept), and a zero scale before the ReLU would never get a gradient (a dead branch)."""
        units = [PwDw(c, c) for _ in range(depth)]
        nn.init.constant_(units[-1].bn.weight, BRANCH_INIT_SCALE)
        return units[0] if depth == 1 else nn.Sequential(*units)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if self.input_rgb01:
            x = x.flip(1) * 255.0
        f = self.net.features(x)
        out = []
        for k in range(len(STRIDES)):
            box = yunet_to_yolo_box(self.net.box[k](f[k]))
            obj = self.net.obj[k](f[k])
            fc = f[k] + self.cls_branch[k](f[k]) if self.cls_hidden else f[k]  # residual: starts near f
            out.append(torch.cat([box, obj, self.cls3[k](fc)], dim=1))
        return tuple(out)


def load_yunet_detector(ck: Dict) -> YuNetDetector:
    """Rebuild a trained :class:`YuNetDetector` from a training checkpoint (``models.export`` LOADERS)."""
    m = YuNetDetector(ck["net"]["num_classes"], cls_hidden=ck["net"].get("cls_hidden", False),
                      variant=ck["net"].get("variant", "n"), cls_depth=ck["net"].get("cls_depth", 1))
    m.load_state_dict(ck["ema"])
    return m
