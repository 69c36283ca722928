"""Export a trained checkpoint to ONNX with its description embedded, and check parity.

CLI::

    python -m models.export --ckpt runs/r18/best.pt --out models/released/detectnet_v2_r18/model.onnx \
        --eval eval.json --version 1.0.0 --parity-images ../shared/data/face-mask-andrewmvd/images

Opset 13, static batch 1, input ``input`` (1, 3, H, W) float32 RGB/255, outputs
``coverage`` (1, C, H/16, W/16) and ``bbox`` (1, 4C, H/16, W/16): the graph TensorRT
8.5's ONNX parser reads. The :class:`edge.model.ModelMeta` JSON goes into the ONNX
``metadata_props`` under ``maskwatch``.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Dict, Sequence

import cv2
import numpy as np
import onnx
import torch

from edge.model import METADATA_KEY, ModelMeta, preprocess
from models.nets import DetectNetV2

log = logging.getLogger("models.export")


def load_checkpoint(path: Path):
    """(model in eval mode with EMA weights, ModelMeta) from ``best.pt`` or ``last.pt``."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    meta = ModelMeta.from_json(ck["meta"])
    arch = ck.get("arch", "detectnet_v2")
    if arch != "detectnet_v2":
        import importlib

        mod, fn = LOADERS[arch].split(":")
        return getattr(importlib.import_module(mod), fn)(ck).eval(), meta
    model = DetectNetV2(len(meta.classes), ck["widths"])
    model.load_state_dict(ck["ema"])
    return model.eval(), meta


#: checkpoint ``arch`` -> "module:function" that builds the nn.Module with its weights from the
#: checkpoint dict (imported on demand, so this module does not import every architecture).
LOADERS: Dict[str, str] = {
    "detectnet_v2_pruned": "models.train.prune:load_pruned",
    "yolo": "models.nets.yolo:load_yolo",
    "yunet_detector": "models.nets.yunet:load_yunet_detector",
    "ultralight_detector": "models.nets.ultralight:load_ultralight_detector",
}


def store_weights_fp16(m: onnx.ModelProto, min_elements: int = 256) -> int:
    """Store large float32 initializers as float16, each followed by a ``Cast`` to float32.

    The graph still computes in float32 (ONNX Runtime and TensorRT fold the casts at
    load), but the file is half the size: the full-width ResNet-18 is 44.7 MB in float32
    and must ship under 25 MB. Returns the number of initializers converted.
    """
    from onnx import TensorProto, helper, numpy_helper

    g = m.graph
    casts, n = [], 0
    for init in list(g.initializer):
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "__fp16")
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT, name=init.name + "__cast"))
        g.initializer.remove(init)
        g.initializer.append(half)
        n += 1
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    return n


def export_onnx(model: torch.nn.Module, meta: ModelMeta, out: Path, opset: int = 13, fp16_weights: bool = True) -> Path:
    """Write ``model`` to ``out`` as ONNX with ``meta`` embedded; returns ``out``.

    With ``fp16_weights`` the weights are stored as float16 (see :func:`store_weights_fp16`).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    x = torch.zeros(1, 3, meta.input_h, meta.input_w)
    model = model.float().eval().to(memory_format=torch.contiguous_format)
    torch.onnx.export(model, (x,), str(out), input_names=[meta.input_name],
                      output_names=[meta.outputs[r] for r in meta.output_roles], opset_version=opset,
                      do_constant_folding=True, dynamo=False)
    m = onnx.load(str(out))
    if fp16_weights:
        store_weights_fp16(m)
    m.metadata_props.clear()
    for k, v in {METADATA_KEY: meta.to_json(), "role": meta.role, "classes": ",".join(meta.classes), "decoder": meta.decoder,
                 "version": meta.version}.items():
        p = m.metadata_props.add(); p.key, p.value = k, v
    m.producer_name, m.doc_string = "maskwatch", f"maskwatch {meta.decoder} model {meta.version}"
    onnx.checker.check_model(m)
    onnx.save(m, str(out))
    return out


def parity(model: torch.nn.Module, onnx_path: Path, images: Sequence[Path]) -> Dict[str, float]:
    """Max / mean absolute difference of each output, PyTorch fp32 vs ONNX Runtime, on real images."""
    from edge.backends.onnxruntime import OnnxRuntimeBackend

    be = OnnxRuntimeBackend(onnx_path)
    worst: Dict[str, float] = {}
    for p in images:
        x, _ = preprocess(cv2.imread(str(p)), be.meta)
        with torch.no_grad():
            out = model(torch.from_numpy(x))
        ref = {role: t.numpy() for role, t in zip(be.meta.output_roles, out)}
        got = be.infer(x)
        for k in ref:
            d = np.abs(ref[k] - got[k])
            worst[f"{k}_max_abs"] = max(worst.get(f"{k}_max_abs", 0.0), float(d.max()))
            worst[f"{k}_mean_abs"] = max(worst.get(f"{k}_mean_abs", 0.0), float(d.mean()))
    return worst


def model_stats(model: torch.nn.Module, meta: ModelMeta) -> Dict[str, float]:
    """Parameters and multiply-accumulates (MACs, counted over conv and linear layers) at the deployed size."""
    macs = 0

    def hook(m, i, o):
        nonlocal macs
        if isinstance(m, torch.nn.Conv2d):
            macs += o.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, meta.input_h, meta.input_w))
    for h in hs:
        h.remove()
    return {"params_M": sum(p.numel() for p in model.parameters()) / 1e6, "GMACs": macs / 1e9, "GFLOPs": 2 * macs / 1e9}


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--eval", type=Path, help="metrics JSON from models.evaluation.evaluate to embed (thresholds, AP)")
    ap.add_argument("--version", default="0.0.0")
    ap.add_argument("--opset", type=int, default=13)
    ap.add_argument("--cluster-method", choices=["dbscan", "nms"], help="default clustering stored in the model")
    ap.add_argument("--dbscan-eps", type=float)
    ap.add_argument("--dbscan-min-samples", type=float)
    ap.add_argument("--iou-threshold", type=float, help="NMS IoU threshold stored in the model")
    ap.add_argument("--conf-threshold", type=float, help="lowest score the decoder keeps (before the per-class "
                    "operating thresholds), stored in the model")
    ap.add_argument("--fp32-weights", action="store_true", help="store weights as float32 (twice the file size)")
    ap.add_argument("--parity-images", type=Path, help="folder of real images for the PyTorch/ONNX parity check")
    ap.add_argument("--parity-count", type=int, default=8)
    ap.add_argument("--input-w", type=int, help="deployed input width (default: the checkpoint's; fully "
                    "convolutional networks whose graph builds its priors from the input size only, e.g. SSD)")
    ap.add_argument("--input-h", type=int, help="deployed input height (see --input-w)")
    a = ap.parse_args(argv)
    model, meta = load_checkpoint(a.ckpt)
    meta.version = a.version
    meta.input_w, meta.input_h = a.input_w or meta.input_w, a.input_h or meta.input_h
    for key, val in (("method", a.cluster_method), ("dbscan_eps", a.dbscan_eps),
                     ("dbscan_min_samples", a.dbscan_min_samples), ("iou_threshold", a.iou_threshold),
                     ("conf_threshold", a.conf_threshold)):
        if val is not None:
            meta.cluster[key] = val
    if a.eval:
        ev = json.loads(a.eval.read_text())
        meta.thresholds = ev["thresholds"]
        meta.metrics = {k: ev[k] for k in ev if k.startswith(("AP", "mAP", "no_mask_"))}
    export_onnx(model, meta, a.out, a.opset, fp16_weights=not a.fp32_weights)
    stats = model_stats(model, meta)
    log.info("wrote %s (%.1f MB): %.2f M params, %.2f GFLOPs at %dx%d", a.out, a.out.stat().st_size / 1e6,
             stats["params_M"], stats["GFLOPs"], meta.input_w, meta.input_h)
    if a.parity_images:
        imgs = sorted(a.parity_images.glob("*.jpg"))[: a.parity_count]
        res = parity(model, a.out, imgs)
        print(json.dumps({"parity": res, **stats}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
