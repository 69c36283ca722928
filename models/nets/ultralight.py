"""Ultra-Light-Fast RFB face / masked-face SSD detector (Linzaer, "Ultra-Light-Fast-Generic-Face-
Detector-1MB", MIT), our own definition, its SSD prior boxes and box coding, and its use as the
pretrained start of the 3-class mask detector (issue 12).

Architecture of ``version-RFB`` (re-written here from the authors' description, not copied):

* ``conv_bn(i, o, s)``: 3x3 conv (stride s, no bias) + BatchNorm + ReLU;
  ``conv_dw(i, o, s)``: depthwise 3x3 conv (stride s, no bias) + BN + ReLU, then 1x1 conv (no bias)
  + BN + ReLU (MobileNet, Howard et al. 2017);
* ``BasicRFB`` (receptive-field block, Liu, Huang, Wang, "Receptive Field Block Net", ECCV 2018):
  three branches on ``c / 8`` channels (1x1 reduce, 3x3, then a dilated 3x3 with dilation 2, 3
  and 5; the third branch has an extra 3x3), concatenated (6c/8), a 1x1 linear projection, plus a
  1x1 shortcut, then ReLU; every conv has BN (eps 1e-5, momentum 0.01), ReLU except after the
  reduce, the dilated and the projection convs;
* backbone (base 16 channels, 13 layers): ``conv_bn(3,16,2)``, ``dw(16,32,1)``, ``dw(32,32,2)``,
  ``dw(32,32,1)``, ``dw(32,64,2)``, ``dw(64,64,1)``, ``dw(64,64,1)``, ``RFB(64,64)`` -> stride-8
  source (64 ch), ``dw(64,128,2)``, ``dw(128,128,1)``, ``dw(128,128,1)`` -> stride 16 (128 ch),
  ``dw(128,256,2)``, ``dw(256,256,1)`` -> stride 32 (256 ch); one extra layer (1x1 256->64, ReLU,
  separable 3x3 stride 2 64->256, ReLU) -> stride 64 (256 ch);
* headers per level: a separable conv (depthwise 3x3 with bias, ReLU, 1x1 with bias) for the
  first three levels and a plain 3x3 conv for the last, giving ``A * 4`` box and ``A * K``
  class channels, ``A`` = the number of ``MIN_BOXES`` of the level (3, 2, 2, 3).

SSD (Liu et al., "SSD: Single Shot MultiBox Detector", ECCV 2016, Sec. 2.2 eq. 2): prior ``(cx,
cy, w, h)`` (normalised to the input), prediction ``(lx, ly, lw, lh)``; box centre ``cx + lx *
CENTER_VARIANCE * w``, size ``w * exp(lw * SIZE_VARIANCE)``. Class scores are a softmax over
background + K classes.

Input convention of the pretrained weights: RGB, ``(px - 127) / 128``, plain resize (trained at
640x480).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: strides of the four detection levels (input px per feature cell, before rounding up).
STRIDES: Tuple[int, ...] = (8, 16, 32, 64)
#: prior box sides in input px per level (square priors).
MIN_BOXES: Tuple[Tuple[int, ...], ...] = ((10, 16, 24), (32, 48), (64, 96), (128, 192, 256))
CENTER_VARIANCE = 0.1
SIZE_VARIANCE = 0.2
#: pretrained input normalisation: (px - MEAN) / STD on RGB 0-255.
MEAN, STD = 127.0, 128.0
#: class order of the masked-face weights.
PRETRAINED_CLASSES: Tuple[str, ...] = ("background", "face", "masked_face")
BASE = 16


def conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def conv_dw(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def separable(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """Depthwise 3x3 (bias) -> ReLU -> 1x1 (bias)."""
    return nn.Sequential(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin), nn.ReLU(), nn.Conv2d(cin, cout, 1))


class BasicConv(nn.Module):
    """conv (no bias) -> BatchNorm (eps 1e-5, momentum 0.01) -> [ReLU]."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                 relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.01)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class BasicRFB(nn.Module):
    """Receptive-field block (Liu et al. ECCV 2018) as the Ultra-Light authors modified it; see module doc.

    ``forward(x (B, cin, H, W)) -> (B, cout, H, W)`` (stride 1).
    """

    def __init__(self, cin: int, cout: int, scale: float = 1.0, map_reduce: int = 8, vision: int = 1):
        super().__init__()
        self.scale = scale
        m = cin // map_reduce
        self.branch0 = nn.Sequential(BasicConv(cin, m, 1, relu=False), BasicConv(m, 2 * m, 3, padding=1),
                                     BasicConv(2 * m, 2 * m, 3, padding=vision + 1, dilation=vision + 1, relu=False))
        self.branch1 = nn.Sequential(BasicConv(cin, m, 1, relu=False), BasicConv(m, 2 * m, 3, padding=1),
                                     BasicConv(2 * m, 2 * m, 3, padding=vision + 2, dilation=vision + 2, relu=False))
        self.branch2 = nn.Sequential(BasicConv(cin, m, 1, relu=False), BasicConv(m, (m // 2) * 3, 3, padding=1),
                                     BasicConv((m // 2) * 3, 2 * m, 3, padding=1),
                                     BasicConv(2 * m, 2 * m, 3, padding=vision + 4, dilation=vision + 4, relu=False))
        self.ConvLinear = BasicConv(6 * m, cout, 1, relu=False)
        self.shortcut = BasicConv(cin, cout, 1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ConvLinear(torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1))
        return F.relu(out * self.scale + self.shortcut(x))


#: backbone layers (exclusive end) after which a detection level's source is taken.
SOURCE_LAYERS: Tuple[int, ...] = (8, 11, 13)


class UltraLightRFB(nn.Module):
    """The RFB SSD network with raw outputs (state_dict keys as the authors' ``.pth``).

    Args:
        num_classes: K + 1 (background first): 3 for the masked-face weights.

    ``forward(x (B, 3, H, W) float32, RGB (px - 127) / 128)`` returns ``(conf (B, P, num_classes)
    logits, loc (B, P, 4) raw SSD offsets)``, P = :func:`num_priors` ``(W, H)``, ordered level by level,
    then row-major over cells, then over the level's ``MIN_BOXES`` (the order of :func:`priors`).
    """

    def __init__(self, num_classes: int = 3):
        super().__init__()
        b = BASE
        self.num_classes = num_classes
        self.base_net = nn.Sequential(
            conv_bn(3, b, 2), conv_dw(b, 2 * b, 1), conv_dw(2 * b, 2 * b, 2), conv_dw(2 * b, 2 * b, 1),
            conv_dw(2 * b, 4 * b, 2), conv_dw(4 * b, 4 * b, 1), conv_dw(4 * b, 4 * b, 1), BasicRFB(4 * b, 4 * b),
            conv_dw(4 * b, 8 * b, 2), conv_dw(8 * b, 8 * b, 1), conv_dw(8 * b, 8 * b, 1),
            conv_dw(8 * b, 16 * b, 2), conv_dw(16 * b, 16 * b, 1))
        self.extras = nn.ModuleList([nn.Sequential(nn.Conv2d(16 * b, 4 * b, 1), nn.ReLU(),
                                                   separable(4 * b, 16 * b, 2), nn.ReLU())])
        chans = (4 * b, 8 * b, 16 * b)
        na = [len(m) for m in MIN_BOXES]
        self.regression_headers = nn.ModuleList([separable(c, a * 4) for c, a in zip(chans, na)]
                                                + [nn.Conv2d(16 * b, na[3] * 4, 3, 1, 1)])
        self.classification_headers = nn.ModuleList([separable(c, a * num_classes) for c, a in zip(chans, na)]
                                                    + [nn.Conv2d(16 * b, na[3] * num_classes, 3, 1, 1)])

    def sources(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The four detection-level feature maps (strides 8, 16, 32, 64)."""
        out, start = [], 0
        for end in SOURCE_LAYERS:
            for layer in self.base_net[start:end]:
                x = layer(x)
            out.append(x)
            start = end
        out.append(self.extras[0](x))
        return out

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        conf, loc = [], []
        for k, f in enumerate(self.sources(x)):
            c = self.classification_headers[k](f)
            r = self.regression_headers[k](f)
            conf.append(c.permute(0, 2, 3, 1).reshape(c.shape[0], -1, self.num_classes))
            loc.append(r.permute(0, 2, 3, 1).reshape(r.shape[0], -1, 4))
        return torch.cat(conf, 1), torch.cat(loc, 1)


def load_ultralight(path: Union[str, Path], num_classes: int = 3) -> UltraLightRFB:
    """Build :class:`UltraLightRFB` from the authors' ``.pth`` (a plain state_dict, 244 tensors for
    ``RFB-640-masked_face-v2.pth``). Strict: a missing or unexpected key, or a shape mismatch,
    raises ``RuntimeError``. Returns the model in eval mode."""
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    model = UltraLightRFB(num_classes)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def feature_sizes(input_wh: Tuple[int, int]) -> List[Tuple[int, int]]:
    """(w, h) of each level's feature map for an input of ``input_wh`` px: every stride-2 conv (3x3,
    padding 1) maps n to ceil(n / 2), so level k has ``ceil(W / stride_k)`` after rounding at every step
    (640x480 -> 80x60, 40x30, 20x15, 10x8)."""
    w, h = int(input_wh[0]), int(input_wh[1])
    out = []
    for k in range(6):  # six stride-2 convs
        w, h = (w + 1) // 2, (h + 1) // 2
        if k >= 2:
            out.append((w, h))
    return out


def num_priors(input_wh: Tuple[int, int]) -> int:
    return sum(w * h * len(m) for (w, h), m in zip(feature_sizes(input_wh), MIN_BOXES))


def priors(input_wh: Tuple[int, int]) -> np.ndarray:
    """SSD prior boxes for an input of ``input_wh`` = (W, H) px.

    Per level (feature map ``fw x fh``), per cell ``(i, j)`` row-major, per side ``m`` of
    ``MIN_BOXES``: centre ``((i + 0.5) / fw, (j + 0.5) / fh)``, size ``(m / W, m / H)``, all
    normalised to the input and clamped to [0, 1] (the authors' ``generate_priors``).

    Returns:
        (P, 4) float32 ``(cx, cy, w, h)``; 17,640 rows at 640x480.
    """
    W, H = input_wh
    rows = []
    for (fw, fh), mins in zip(feature_sizes(input_wh), MIN_BOXES):
        jj, ii = np.meshgrid(np.arange(fh, dtype=np.float64), np.arange(fw, dtype=np.float64), indexing="ij")
        cx = np.repeat(((ii + 0.5) / fw).ravel(), len(mins))
        cy = np.repeat(((jj + 0.5) / fh).ravel(), len(mins))
        w = np.tile(np.asarray(mins, np.float64) / W, fw * fh)
        h = np.tile(np.asarray(mins, np.float64) / H, fw * fh)
        rows.append(np.stack([cx, cy, w, h], 1))
    return np.clip(np.concatenate(rows), 0.0, 1.0).astype(np.float32)


def decode_boxes(loc: torch.Tensor, pri: torch.Tensor, center_variance: float = CENTER_VARIANCE,
                 size_variance: float = SIZE_VARIANCE) -> torch.Tensor:
    """SSD box decoding (Liu et al. 2016, eq. 2 inverted): raw ``loc`` (..., P, 4) and priors (P, 4)
    ``(cx, cy, w, h)`` -> (..., P, 4) corner-form ``x1 y1 x2 y2`` in the priors' units (normalised)."""
    c = loc[..., :2] * center_variance * pri[..., 2:] + pri[..., :2]
    s = torch.exp(loc[..., 2:] * size_variance) * pri[..., 2:]
    return torch.cat([c - s / 2, c + s / 2], dim=-1)


def encode_boxes(boxes: torch.Tensor, pri: torch.Tensor, center_variance: float = CENTER_VARIANCE,
                 size_variance: float = SIZE_VARIANCE, eps: float = 1e-6) -> torch.Tensor:
    """Inverse of :func:`decode_boxes`: corner-form boxes (..., P, 4) matched to priors (P, 4) ->
    regression targets (..., P, 4) ``((bc - pc) / (v_c pw), log(bw / pw) / v_s)`` (Liu et al. 2016, eq. 2)."""
    c = (boxes[..., :2] + boxes[..., 2:]) / 2
    s = (boxes[..., 2:] - boxes[..., :2]).clamp(min=eps)
    return torch.cat([(c - pri[..., :2]) / (center_variance * pri[..., 2:]),
                      torch.log(s / pri[..., 2:]) / size_variance], dim=-1)


def reference_outputs(model: UltraLightRFB, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The authors' test-mode outputs: ``scores`` (B, P, K+1) softmax and ``boxes`` (B, P, 4)
    normalised corner form, for input ``x`` (B, 3, H, W) already normalised as :data:`MEAN` / :data:`STD`."""
    conf, loc = model(x)
    pri = torch.from_numpy(priors((x.shape[3], x.shape[2])))
    return F.softmax(conf, dim=2), decode_boxes(loc, pri)


# --------------------------------------------------------------------------------------------
# The 3-class mask detector built on it
# --------------------------------------------------------------------------------------------

#: logit offset of the new ``mask_incorrect`` class at initialisation: ln(0.03), its share of the
#: training faces (121 of 4,021 labels in the first release of the training photos).
MASK_INCORRECT_BIAS = float(np.log(0.03))


def _remap_class_conv(new: nn.Conv2d, old: nn.Conv2d, anchors: int) -> None:
    """Copy a pretrained class conv (``anchors * 3`` outputs: background, face, masked_face per prior)
    into one with ``anchors * 4`` outputs (background, mask, no_mask, mask_incorrect): background <-
    background, mask <- masked_face, no_mask <- face, mask_incorrect <- the mean of face and masked_face
    with the bias lowered by :data:`MASK_INCORRECT_BIAS` (see :class:`UltraLightDetector`)."""
    k_old = old.out_channels // anchors
    k_new = new.out_channels // anchors
    if k_old != 3 or k_new != 4:
        raise ValueError(f"class remap needs 3 pretrained and 4 new classes per prior, got {k_old} and {k_new}")
    wo = old.weight.view(anchors, 3, *old.weight.shape[1:])
    bo = old.bias.view(anchors, 3)
    w = torch.stack([wo[:, 0], wo[:, 2], wo[:, 1], (wo[:, 1] + wo[:, 2]) / 2], 1)
    b = torch.stack([bo[:, 0], bo[:, 2], bo[:, 1], (bo[:, 1] + bo[:, 2]) / 2 + MASK_INCORRECT_BIAS], 1)
    with torch.no_grad():
        new.weight.copy_(w.reshape(new.weight.shape))
        new.bias.copy_(b.reshape(-1))


class UltraLightDetector(nn.Module):
    """The RFB SSD with a (background + C)-class softmax head, in maskwatch's input convention, with
    the prior decoding inside the graph (edge decoder ``"ssd"``, :func:`edge.decoders.decode_ssd`).

    Args:
        num_classes: C (3: ``mask``, ``no_mask``, ``mask_incorrect``).
        base: a pretrained 3-way :class:`UltraLightRFB` (background, face, masked_face) or None (random
            initialisation). Backbone, extra layer, regression headers and the class headers' depthwise
            convs are copied; the class output convs are remapped per prior: background <- background,
            ``mask`` <- masked_face, ``no_mask`` <- face, and ``mask_incorrect`` (a mask worn under the
            nose or chin: a mask *and* an uncovered nose or mouth, between the two pretrained classes)
            <- the mean of the face and masked_face weights, its bias lowered by ln(0.03) (its share of
            the training faces) so that at the start it takes little probability from the other two and
            the zero-shot mask / no_mask scores stay close to the pretrained ones.
        input_rgb01: the graph takes ``RGB / 255`` as every maskwatch model and its first op converts to
            the pretrained ``(px - 127) / 128``.

    ``forward(x (B, 3, H, W) float32)`` returns ``(scores (B, P, 1 + C) softmax, background first;
    boxes (B, P, 4) float32 xyxy in input px)``, P = :func:`num_priors` ``(W, H)``; any H, W.
    :meth:`raw` gives the training outputs.
    """

    def __init__(self, num_classes: int = 3, base: UltraLightRFB = None, input_rgb01: bool = True):
        super().__init__()
        self.num_classes, self.input_rgb01 = num_classes, input_rgb01
        self.net = UltraLightRFB(1 + num_classes)
        self._priors = {}
        if base is not None:
            sd = {k: v for k, v in base.state_dict().items() if not k.startswith("classification_headers.")}
            missing, unexpected = self.net.load_state_dict(sd, strict=False)
            assert not unexpected and all(k.startswith("classification_headers.") for k in missing)
            for k, (new, old) in enumerate(zip(self.net.classification_headers, base.classification_headers)):
                a = len(MIN_BOXES[k])
                if isinstance(new, nn.Sequential):  # separable: depthwise copied, 1x1 remapped
                    new[0].load_state_dict(old[0].state_dict())
                    _remap_class_conv(new[2], old[2], a)
                else:
                    _remap_class_conv(new, old, a)

    def priors(self, w: int, h: int) -> torch.Tensor:
        """(P, 4) float32 normalised ``(cx, cy, w, h)`` priors for a W x H input (cached)."""
        if (w, h) not in self._priors:
            self._priors[(w, h)] = torch.from_numpy(priors((w, h)))
        return self._priors[(w, h)]

    def raw(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(conf (B, P, 1 + C) logits, loc (B, P, 4) raw SSD offsets, priors (P, 4))`` for input as forward."""
        if self.input_rgb01:
            x = x * (255.0 / STD) - MEAN / STD
        conf, loc = self.net(x)
        return conf, loc, self.priors(int(x.shape[3]), int(x.shape[2]))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        conf, loc, pri = self.raw(x)
        scale = torch.tensor([x.shape[3], x.shape[2], x.shape[3], x.shape[2]], dtype=loc.dtype)
        return F.softmax(conf, dim=2), decode_boxes(loc, pri) * scale


def load_ultralight_detector(ck) -> UltraLightDetector:
    """Rebuild a trained :class:`UltraLightDetector` from a training checkpoint (``models.export`` LOADERS)."""
    m = UltraLightDetector(ck["net"]["num_classes"])
    m.load_state_dict(ck["ema"])
    return m
