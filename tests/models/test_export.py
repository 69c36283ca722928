"""ONNX export: metadata embedded, static batch-1 graph, fp16 weight storage, PyTorch/ONNX Runtime parity."""
from __future__ import annotations

import onnx
import pytest
import torch

from edge.backends.onnxruntime import OnnxRuntimeBackend
from edge.model import ModelMeta
from models.export import export_onnx, model_stats, parity
from models.nets import DetectNetV2


@pytest.fixture(scope="module")
def trained_like_model():
    torch.manual_seed(0)
    m = DetectNetV2(3, (32, 64, 128, 256)).eval()
    # give BN non-trivial statistics so folding is exercised
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2); mod.running_var.uniform_(0.5, 1.5); mod.weight.uniform_(0.5, 1.5)
    return m


@pytest.mark.parametrize("fp16", [False, True])
def test_export_embeds_metadata_and_matches_pytorch(trained_like_model, face_mask_dir, tmp_path, fp16):
    meta = ModelMeta(version="9.9.9", thresholds={"no_mask": 0.3}, metrics={"mAP50": 0.5})
    path = export_onnx(trained_like_model, meta, tmp_path / "m.onnx", fp16_weights=fp16)
    m = onnx.load(str(path))
    assert m.opset_import[0].version >= 13
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 368, 640]
    be = OnnxRuntimeBackend(path)
    assert be.meta == meta
    images = sorted((face_mask_dir / "images").glob("*.jpg"))[:3]
    diff = parity(trained_like_model, path, images)
    print("parity", "fp16 weights" if fp16 else "fp32 weights", diff)
    tol = 2e-2 if fp16 else 1e-4
    assert diff["coverage_max_abs"] < tol and diff["bbox_max_abs"] < 10 * tol


def test_fp16_storage_halves_the_file(trained_like_model, tmp_path):
    a = export_onnx(trained_like_model, ModelMeta(), tmp_path / "a.onnx", fp16_weights=False).stat().st_size
    b = export_onnx(trained_like_model, ModelMeta(), tmp_path / "b.onnx", fp16_weights=True).stat().st_size
    assert b < 0.55 * a


def test_model_stats_count_resnet18_macs():
    s = model_stats(DetectNetV2(), ModelMeta())
    assert 11.0 < s["params_M"] < 11.3
    assert 13.0 < s["GMACs"] < 16.0  # ResNet-18 at stride 16 on 640x368 (~1.8 GMACs at 224x224 without layer4 stride)
