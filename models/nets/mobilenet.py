"""MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018).

Our own definition with the torchvision module layout (``features.0`` ... ``features.18``,
``classifier``), so the ImageNet ``state_dict`` in ``../shared/weights/imagenet`` loads by name.
That file is the TFLite ``mobilenet_v2_1.0_224_quant`` dequantised: input RGB, ``(x - 128) / 128``,
1001 classes (index 0 = background), conv biases folded into the BatchNorm biases, symmetric padding.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

#: (expand ratio t, output channels c, repeats n, first stride s): Table 2 of the paper.
SETTINGS: Sequence[Tuple[int, int, int, int]] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def conv_bn_relu6(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU6, padding ``k // 2`` on every side."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """Expand 1x1 (skipped when ``t == 1``) -> depthwise 3x3 -> linear 1x1 (conv + BN, one ``Sequential`` as in
    the weight file); a residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, t: int):
        super().__init__()
        hidden = cin * t
        layers: List[nn.Module] = [] if t == 1 else [conv_bn_relu6(cin, hidden, 1)]
        layers += [conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Sequential(nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))]  # linear bottleneck
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 width 1.0: ``features`` (stride 32, 1280 channels), global average pool, ``classifier``.

    Args:
        num_classes: outputs of the final linear layer (1001 for the ImageNet file).
        dropout: dropout before the classifier (training only; 0 keeps the torchvision-free layout exact).

    Input (N, 3, H, W) float32, any H, W >= 32; output (N, num_classes) logits.
    """

    def __init__(self, num_classes: int = 1001, dropout: float = 0.0):
        super().__init__()
        layers: List[nn.Module] = [conv_bn_relu6(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn_relu6(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean(dim=(2, 3))
        return self.classifier(self.dropout(x))


IMAGENET_MEAN = (128.0, 128.0, 128.0)  #: pixel-unit normalisation of the ImageNet file: (x - 128) / 128
IMAGENET_STD = (128.0, 128.0, 128.0)


def load_imagenet(path: Path, num_classes: Optional[int] = None, dropout: float = 0.0) -> MobileNetV2:
    """MobileNetV2 with the ImageNet weights of ``path`` (a torchvision-layout ``state_dict``).

    With ``num_classes`` other than 1001 the classifier is a fresh ``Linear(1280, num_classes)``
    (zero bias, small normal weights) and only ``features`` are loaded.

    Raises:
        RuntimeError: a missing or mis-shaped key in the file (strict loading).
    """
    sd = torch.load(Path(path), map_location="cpu", weights_only=True)
    n = 1001 if num_classes is None else num_classes
    model = MobileNetV2(n, dropout)
    if n != sd["classifier.weight"].shape[0]:
        sd = {k: v for k, v in sd.items() if not k.startswith("classifier.")}
        nn.init.normal_(model.classifier.weight, std=0.01)
        nn.init.zeros_(model.classifier.bias)
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if unexpected or any(not k.startswith("classifier.") for k in missing):
            raise RuntimeError(f"MobileNetV2 state_dict mismatch: missing {missing}, unexpected {unexpected}")
    else:
        model.load_state_dict(sd, strict=True)
    return model


def unfold_batchnorm(model: nn.Module, batches) -> None:
    """Give the folded BatchNorm layers of the ImageNet file real statistics without changing the function.

    The file's BatchNorms are identity + bias (weight 1, mean 0, var 1 - eps): in training mode they
    would normalise by batch statistics, a different network, and fine-tuning stalls (measured: the
    loss stays at ln 3 for a whole epoch). This measures each layer's input mean and variance on
    ``batches`` (an iterable of (N, 3, H, W) tensors, cumulative average), then sets
    ``weight = sqrt(var + eps)`` and ``bias += mean``, so ``BN(x) = x + bias`` exactly as before, now
    with running statistics that match the batch statistics training will see.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [b.momentum for b in bns]
    for b in bns:
        b.momentum = None
        b.reset_running_stats()
    was = model.training
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
        for b, mom in zip(bns, saved):
            b.bias += b.running_mean
            b.weight.copy_(torch.sqrt(b.running_var + b.eps))
            b.momentum = mom
    model.train(was)
