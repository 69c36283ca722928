"""Our MobileNetV2 definition loads the shared ImageNet weights and gives the expected top-1 labels."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.nets.mobilenet import IMAGENET_MEAN, IMAGENET_STD, load_imagenet

WEIGHTS = (Path(__file__).resolve().parents[2] / ".." / "shared" / "weights" / "imagenet").resolve()


@pytest.fixture(scope="module")
def imagenet_dir() -> Path:
    if not (WEIGHTS / "mobilenet_v2_1.0_imagenet_float.pth").is_file():
        pytest.fail(f"shared weights missing at {WEIGHTS}")
    return WEIGHTS


def test_top1_on_the_six_test_photos(imagenet_dir):
    torch.set_num_threads(1)
    model = load_imagenet(imagenet_dir / "mobilenet_v2_1.0_imagenet_float.pth").eval()
    names = [l.split(",")[0].strip() for l in (imagenet_dir / "imagenet_labels.txt").read_text().splitlines()]
    assert len(names) == 1001 and names[0] == "background"
    expected = {k: v for k, v in json.loads((imagenet_dir / "test_images" / "labels.json").read_text()).items()
                if not k.startswith("_")}
    assert len(expected) == 6
    got = {}
    for name in expected:
        img = cv2.imread(str(imagenet_dir / "test_images" / name))[:, :, ::-1]
        img = cv2.resize(img, (224, 224), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        x = torch.from_numpy((img - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)).permute(2, 0, 1)[None]
        with torch.no_grad():
            got[name] = names[int(model(x).argmax())]
    assert got == expected


def test_new_head_keeps_the_features(imagenet_dir):
    sd = torch.load(imagenet_dir / "mobilenet_v2_1.0_imagenet_float.pth", map_location="cpu", weights_only=True)
    model = load_imagenet(imagenet_dir / "mobilenet_v2_1.0_imagenet_float.pth", num_classes=3)
    assert model.classifier.weight.shape == (3, 1280)
    assert torch.equal(model.state_dict()["features.17.conv.2.0.weight"], sd["features.17.conv.2.0.weight"])
    with torch.no_grad():
        out = model.eval()(torch.zeros(2, 3, 96, 96))
    assert out.shape == (2, 3)
