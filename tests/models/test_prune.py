"""Structured pruning (models/train/prune.py): channel consistency, reload, ONNX export, threshold mode, released model."""
from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import onnx
import pytest
import torch

from edge.backends.onnxruntime import OnnxRuntimeBackend
from edge.decoders import box_iou
from edge.model import ModelMeta, apply_thresholds, postprocess, preprocess
from models.export import export_onnx, load_checkpoint, model_stats, parity
from models.nets import DetectNetV2
from models.nets.resnet import BasicBlock
from models.train.prune import (ARCH, load_pruned, prune_ratio, prune_threshold,
                          residual_add_channels, save_pruned)
from tests.conftest import REPO
from tests.models.training_cli import run_cli

WIDTHS = (16, 32, 64, 128)
PRUNED_MODEL = REPO / "models" / "released" / "detectnet_v2_r18_pruned" / "model.onnx"
# a validation image (md5 split) with three large faces, 2 mask and 1 no_mask
REAL_IMAGE = "maksssksksss83"


def small_model(seed: int = 0) -> DetectNetV2:
    """A small-width DetectNetV2 with random weights and non-trivial BN statistics, in eval mode."""
    torch.manual_seed(seed)
    m = DetectNetV2(3, WIDTHS).eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2); mod.running_var.uniform_(0.5, 1.5); mod.weight.uniform_(0.5, 1.5)
    return m


def add_operand_channels(model: DetectNetV2, x: torch.Tensor):
    """Run ``model`` and record, for every residual block, the channel counts of the two ``add`` operands."""
    seen, hooks = {}, []
    for name, blk in model.named_modules():
        if isinstance(blk, BasicBlock):
            def pre(mod, inp, name=name):
                seen.setdefault(name, {})["in"] = inp[0].shape[1]
            hooks.append(blk.register_forward_pre_hook(pre))
            hooks.append(blk.bn2.register_forward_hook(lambda mod, i, o, name=name: seen[name].__setitem__("branch", o.shape[1])))
            if blk.downsample is not None:
                hooks.append(blk.downsample.register_forward_hook(
                    lambda mod, i, o, name=name: seen[name].__setitem__("shortcut", o.shape[1])))
    with torch.no_grad():
        out = model(x)
    for h in hooks:
        h.remove()
    return out, {n: (d["branch"], d.get("shortcut", d["in"])) for n, d in seen.items()}


def test_ratio_pruning_keeps_residual_channels_consistent_and_outputs_fixed():
    m = small_model()
    x = torch.rand(1, 3, 96, 160)
    (cov0, bbox0), _ = add_operand_channels(m, x)
    before = model_stats(m, ModelMeta(input_w=160, input_h=96))
    prune_ratio(m, 0.5, granularity=4)
    (cov, bbox), ops = add_operand_channels(m, x)
    assert len(ops) == 8
    for name, (branch, shortcut) in ops.items():
        assert branch == shortcut, (name, branch, shortcut)
    assert [r[1] for r in residual_add_channels(m)] == [8, 8, 16, 16, 32, 32, 64, 64]
    assert all(r[1] % 4 == 0 for r in residual_add_channels(m))
    assert cov.shape == cov0.shape == (1, 3, 6, 10) and bbox.shape == bbox0.shape == (1, 12, 6, 10)
    assert m.cov_head.out_channels == 3 and m.bbox_head.out_channels == 12 and m.cov_head.in_channels == 64
    after = model_stats(m, ModelMeta(input_w=160, input_h=96))
    assert 0.2 < after["params_M"] / before["params_M"] < 0.3  # half the channels: about a quarter of the weights


def test_pruned_checkpoint_reloads_and_exports_to_onnx_the_runtime_decodes(face_mask_dir, tmp_path):
    m = small_model(1)
    prune_ratio(m, 0.4, granularity=8)
    meta = ModelMeta(version="0.0.1", thresholds={"mask": 0.5, "no_mask": 0.5, "mask_incorrect": 0.5})
    path = save_pruned(tmp_path / "stage1.pt", m, meta, WIDTHS)
    ck = torch.load(path, weights_only=False)
    assert ck["arch"] == ARCH and ck["channels"]["backbone.layer4.1.conv2"] == [72, 72]  # 128 - int(0.4 * 128) = 77, rounded down to 8s
    x = torch.rand(1, 3, 64, 96)
    re = load_pruned(ck).eval()
    via_export, meta2 = load_checkpoint(path)  # models.export dispatches on arch through LOADERS
    assert meta2 == meta
    with torch.no_grad():
        ref = m(x)
        for got in (re(x), via_export(x)):
            for a, b in zip(ref, got):
                torch.testing.assert_close(a, b)
    onnx_path = export_onnx(via_export, meta2, tmp_path / "pruned.onnx")
    be = OnnxRuntimeBackend(onnx_path)
    assert be.meta == meta and be.meta.decoder == "detectnet_v2"
    img_path = face_mask_dir / "images" / f"{REAL_IMAGE}.jpg"
    diff = parity(via_export, onnx_path, [img_path])
    assert diff["coverage_max_abs"] < 2e-2 and diff["bbox_max_abs"] < 0.2, diff
    img = cv2.imread(str(img_path))
    xi, lb = preprocess(img, be.meta)
    out = be.infer(xi)
    assert out["coverage"].shape == (1, 3, 23, 40) and out["bbox"].shape == (1, 12, 23, 40)
    boxes, scores, classes = postprocess(out, be.meta, lb, (img.shape[1], img.shape[0]))
    assert boxes.dtype == np.float32 and boxes.shape == (len(scores), 4) and classes.dtype == np.int64


def test_export_cli_names_the_outputs_of_a_reloaded_checkpoint_correctly(tmp_path):
    m = small_model(5)
    prune_ratio(m, 0.25, granularity=8)
    path = save_pruned(tmp_path / "stage1.pt", m, ModelMeta(), WIDTHS)
    from models.export import main as export_main
    export_main(["--ckpt", str(path), "--out", str(tmp_path / "m.onnx")])
    shapes = {o.name: o.type.tensor_type.shape.dim[1].dim_value for o in onnx.load(str(tmp_path / "m.onnx")).graph.output}
    assert shapes == {"coverage": 3, "bbox": 12}


def test_threshold_mode_removes_exactly_the_channels_below_the_threshold():
    m = small_model(2)
    bb = m.backbone
    with torch.no_grad():
        bb.layer1[0].conv1.weight[[1, 4, 9, 12]] *= 0.05          # an internal group: these 4 filters go
        bb.layer2[0].conv2.weight[3] *= 0.05                      # residual group, one producer only: union keeps it
        for conv in (bb.layer2[0].conv2, bb.layer2[0].downsample[0], bb.layer2[1].conv2):
            conv.weight[7] *= 0.05                                # weak in every producer: removed
    orig = copy.deepcopy(m)
    report = prune_threshold(m, 0.3, granularity=1, min_channels=1)
    assert sum(r["below"] for r in report.values()) == 5
    assert bb.layer1[0].conv1.out_channels == 12 and bb.layer1[0].bn1.num_features == 12
    keep1 = [i for i in range(16) if i not in (1, 4, 9, 12)]
    torch.testing.assert_close(bb.layer1[0].conv1.weight, orig.backbone.layer1[0].conv1.weight[keep1])
    torch.testing.assert_close(bb.layer1[0].conv2.weight, orig.backbone.layer1[0].conv2.weight[:, keep1])
    keep2 = [i for i in range(32) if i != 7]
    assert [r[1] for r in residual_add_channels(m)] == [16, 16, 31, 31, 64, 64, 128, 128]
    for name in ("layer2.0.conv2", "layer2.0.downsample.0", "layer2.1.conv2"):
        torch.testing.assert_close(m.backbone.get_submodule(name).weight,
                                   orig.backbone.get_submodule(name).weight[keep2])
    torch.testing.assert_close(bb.layer3[0].conv1.weight, orig.backbone.layer3[0].conv1.weight[:, keep2])
    # every other conv keeps its shape
    for (n, a), (_, b) in zip(m.named_modules(), orig.named_modules()):
        if isinstance(a, torch.nn.Conv2d) and not n.startswith(("backbone.layer1.0.conv", "backbone.layer2", "backbone.layer3.0")):
            assert a.weight.shape == b.weight.shape, n


def test_min_channels_and_granularity_bound_threshold_pruning():
    m = small_model(3)
    report = prune_threshold(m, 2.0, granularity=8, min_channels=12)  # every channel is below 2.0
    assert all(r["below"] == r["before"] and r["kept"] == 16 for r in report.values())
    assert [r[1] for r in residual_add_channels(m)] == [16] * 8
    assert m(torch.rand(1, 3, 32, 32))[0].shape == (1, 3, 2, 2)


def test_chain_cli_prunes_fine_tunes_and_writes_loadable_stages(face_mask_dir, tmp_path):
    m = small_model(4)
    meta = ModelMeta()
    base = tmp_path / "base.pt"
    torch.save({"ema": m.state_dict(), "widths": list(WIDTHS), "meta": meta.to_json()}, base)
    out = tmp_path / "prune"
    # a child process: oneDNN's SIGSEGV in this fine-tuning's backward (channels_last, Zen 4) fails this test
    # with its signal instead of killing the test session; the run uses the precision models.train.precision chooses
    run_cli("models.train.prune", ["--ckpt", base, "--out", out, "--data", face_mask_dir, "--ratio", "0.25", "0.25",
                             "--epochs", "1", "0", "--max-steps", "1", "--limit", "4", "--batch", "4", "--no-val",
                             "--workers", "0"])
    rows = json.loads((out / "chain.json").read_text())
    assert [r["stage"] for r in rows] == [0, 1, 2]
    assert rows[0]["params_M"] > rows[1]["params_M"] > rows[2]["params_M"]
    assert rows[1]["fine_tune"]["epochs"] == 1 and "fine_tune" not in rows[2]
    for k in (1, 2):
        model, meta_k = load_checkpoint(out / f"stage{k}.pt")
        assert meta_k == meta
        assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(rows[k]["params_M"])
    assert (out / "stage1" / "history.json").exists()
    ck = torch.load(out / "stage1" / "best.pt", weights_only=False)
    assert ck["arch"] == ARCH


def _voc_boxes(path):
    root = ET.parse(path).getroot()
    out = []
    for o in root.iter("object"):
        b = o.find("bndbox")
        out.append((o.find("name").text, [float(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]))
    return out


@pytest.mark.skipif(not PRUNED_MODEL.exists(), reason="no released pruned model yet")
def test_released_pruned_model_is_small_and_finds_the_faces_of_a_real_image(face_mask_dir):
    m = onnx.load(str(PRUNED_MODEL))
    n_weights = sum(int(np.prod(t.dims)) for t in m.graph.initializer)
    assert n_weights < 0.35 * 11.18e6  # the released stage keeps about 30 % of the weights or fewer
    assert PRUNED_MODEL.stat().st_size < 10e6
    be = OnnxRuntimeBackend(PRUNED_MODEL)
    meta = be.meta
    assert meta.decoder == "detectnet_v2" and meta.classes == ["mask", "no_mask", "mask_incorrect"]
    assert (meta.input_w, meta.input_h) == (640, 368) and set(meta.thresholds) == set(meta.classes)
    assert 0.0 < meta.metrics["mAP50_mask_no_mask"] <= 1.0
    img = cv2.imread(str(face_mask_dir / "images" / f"{REAL_IMAGE}.jpg"))
    x, lb = preprocess(img, meta)
    boxes, scores, classes = postprocess(be.infer(x), meta, lb, (img.shape[1], img.shape[0]))
    keep = apply_thresholds(scores, classes, meta)
    boxes, classes = boxes[keep], classes[keep]
    gt = _voc_boxes(face_mask_dir / "annotations" / f"{REAL_IMAGE}.xml")
    gt_boxes = np.array([b for _, b in gt], np.float32)
    iou = box_iou(gt_boxes, boxes) if len(boxes) else np.zeros((len(gt), 0))
    found = iou.max(1) >= 0.5 if len(boxes) else np.zeros(len(gt), bool)
    assert found.sum() >= 2, (gt, boxes, classes)
