"""Model description (ONNX metadata) and the pre/post-processing it drives.

The exporter writes one JSON document into the ONNX ``metadata_props`` under the
key ``maskwatch``; a runtime needs nothing but the model file.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

import numpy as np

from edge.decoders import (ClusterParams, DetectNetV2Params, YoloParams, class_agnostic_nms, decode_detectnet_v2,
                           decode_ssd, decode_yolo, suppress_nested)
from edge.preprocess import Letterbox, letterbox, letterbox_tensor, to_tensor, unletterbox_boxes

METADATA_KEY = "maskwatch"


def _default_cluster() -> Dict[str, Any]:
    """:class:`ClusterParams` defaults as metadata; the SSD class-prior rule's keys only where a model sets
    them (``class_priors``, ``class_score``), so a model exported without them stays readable by older
    runtimes."""
    return {k: v for k, v in asdict(ClusterParams()).items() if k not in ("class_priors", "class_score")}


@dataclass
class ModelMeta:
    """Everything a runtime must know to run a maskwatch model file.

    Attributes:
        classes: class names in output order.
        input_name: ONNX input tensor name; input is (1, 3, input_h, input_w) float32.
        input_w, input_h: network input size in px.
        color: channel order fed to the network, ``"RGB"`` or ``"BGR"``.
        mean, std: per-channel normalisation in 0-255 pixel units: ``(px - mean) / std``.
        resize: ``"letterbox"`` or ``"stretch"``.
        decoder: ``"detectnet_v2"``, ``"yolo"`` or ``"ssd"`` (:func:`edge.decoders.decode_ssd`: the graph
            decodes its SSD priors itself).
        outputs: decoder role -> ONNX output name: ``coverage``, ``bbox`` for DetectNet_v2;
            ``p8``, ``p16``, ``p32`` (one per level, finest first) for YOLO; ``scores`` (1, P, 1 + C)
            softmax with background first and ``boxes`` (1, P, 4) xyxy in input px for SSD.
        stride, bbox_norm, cov_shrink: DetectNet_v2 grid geometry (see :mod:`edge.decoders`).
        strides: YOLO level strides in px (see :class:`edge.decoders.YoloParams`).
        cluster: default clustering parameters (see :class:`edge.decoders.ClusterParams`).
        class_agnostic_iou: IoU above which boxes of different classes are merged (one class per face).
        thresholds: per-class operating score threshold chosen at evaluation.
        version: model version string.
        metrics: evaluation figures the model reached.
        role: ``"detector"`` (frames in, boxes out) or ``"classifier"`` (face crops in, class probabilities
            out: :mod:`edge.classifier`; ``decoder`` is ``"classifier"``, output role ``probs``).
        crop_margin: classifier only: the crop is the face box's longer side plus this fraction of it on
            every side, as a square (:func:`edge.classifier.crop_square`).
        detail_px: classifier only: every crop is first reduced to this side (area interpolation) and
            enlarged back to the input size, so a large sharp face looks like the small faces the model
            learned from (:func:`edge.classifier.cap_detail`); 0: off.
    """

    classes: List[str] = field(default_factory=lambda: ["mask", "no_mask", "mask_incorrect"])
    input_name: str = "input"
    input_w: int = 640
    input_h: int = 368
    color: str = "RGB"
    mean: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: Tuple[float, float, float] = (255.0, 255.0, 255.0)
    resize: str = "letterbox"
    decoder: str = "detectnet_v2"
    outputs: Dict[str, str] = field(default_factory=lambda: {"coverage": "coverage", "bbox": "bbox"})
    stride: int = 16
    bbox_norm: float = 35.0
    cov_shrink: float = 0.5
    strides: List[int] = field(default_factory=lambda: [8, 16, 32])
    cluster: Dict[str, Any] = field(default_factory=lambda: _default_cluster())
    class_agnostic_iou: float = 0.6
    thresholds: Dict[str, float] = field(default_factory=dict)
    version: str = "0.0.0"
    metrics: Dict[str, Any] = field(default_factory=dict)
    role: str = "detector"
    crop_margin: float = 0.0
    detail_px: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelMeta":
        """Parse the JSON written by :meth:`to_json`; raise ``ValueError`` on unknown keys."""
        d = json.loads(text)
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model metadata keys {sorted(unknown)}; known: {sorted(known)}")
        meta = cls(**d)
        meta.mean, meta.std = tuple(meta.mean), tuple(meta.std)
        return meta

    @property
    def detectnet(self) -> DetectNetV2Params:
        return DetectNetV2Params(self.stride, self.bbox_norm, self.cov_shrink)

    @property
    def output_roles(self) -> List[str]:
        """Output roles in the order the network returns its outputs (the ONNX graph's output order):
        ``coverage, bbox`` for DetectNet_v2; ``p8, p16, p32`` (finest first) for YOLO; ``scores, boxes``
        for SSD. Never the order of
        the ``outputs`` dict, which the JSON round trip sorts by key."""
        if self.decoder == "yolo":
            return [f"p{s}" for s in self.strides]
        if self.decoder == "ssd":
            return ["scores", "boxes"]
        if self.role == "classifier":
            return ["probs"]
        return ["coverage", "bbox"]

    @property
    def yolo(self) -> YoloParams:
        return YoloParams(tuple(self.strides))

    def cluster_params(self, **overrides: Any) -> ClusterParams:
        d = dict(self.cluster)
        d.update({k: v for k, v in overrides.items() if v is not None})
        return ClusterParams(**d)


def model_label(path: Union[str, Path], meta: "ModelMeta") -> str:
    """How logs and ``maskwatch doctor`` name a model: ``"ultralight_mask 1.1.0"``.

    The name is the release folder for a released model (``models/released/<name>/model.onnx``), else the file's
    stem (``mine.onnx`` -> ``mine``); the version is the one in the file's metadata (:attr:`ModelMeta.version`).
    """
    p = Path(path)
    name = p.parent.name if p.stem == "model" and p.parent.name else p.stem
    return f"{name} {meta.version}"


def preprocess(frame_bgr: np.ndarray, meta: ModelMeta) -> Tuple[np.ndarray, Letterbox]:
    """(H, W, 3) uint8 BGR frame -> ((1, 3, input_h, input_w) float32, letterbox mapping)."""
    return letterbox_tensor(frame_bgr, (meta.input_w, meta.input_h), meta.resize, color=meta.color, mean=meta.mean,
                            std=meta.std)


def postprocess(outputs: Dict[str, np.ndarray], meta: ModelMeta, lb: Letterbox, frame_wh: Tuple[int, int],
                cluster: ClusterParams = None, class_agnostic: bool = True
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw network outputs (by role name) -> detections in frame px.

    With ``class_agnostic`` (what the appliance runs) the boxes then go through the
    class-agnostic NMS at ``meta.class_agnostic_iou`` and :func:`edge.decoders.suppress_nested` at
    ``cluster.nested_overlap``: one box, and one class, per face.

    Returns:
        ``(boxes (K, 4) float32 xyxy in frame px, scores (K,) float32, class ids (K,) int64)``.

    Raises:
        ValueError: for a decoder this runtime does not know.
    """
    cluster = cluster or meta.cluster_params()
    if meta.decoder == "detectnet_v2":
        boxes, scores, classes = decode_detectnet_v2(outputs["coverage"], outputs["bbox"], meta.detectnet, cluster)
    elif meta.decoder == "yolo":
        boxes, scores, classes = decode_yolo([outputs[k] for k in meta.output_roles], (meta.input_h, meta.input_w),
                                             meta.yolo, cluster)
    elif meta.decoder == "ssd":
        boxes, scores, classes = decode_ssd(outputs["scores"], outputs["boxes"], cluster)
    else:
        raise ValueError(f"unknown decoder {meta.decoder!r} in model metadata; known: ['detectnet_v2', 'yolo', 'ssd']")
    if class_agnostic and len(boxes):
        boxes, scores, classes = class_agnostic_nms(boxes, scores, classes, meta.class_agnostic_iou)
        boxes, scores, classes = suppress_nested(boxes, scores, classes, cluster.nested_overlap)
    return unletterbox_boxes(boxes, lb, frame_wh), scores, classes


def apply_thresholds(scores: np.ndarray, classes: np.ndarray, meta: ModelMeta,
                     override: float = None) -> np.ndarray:
    """(K,) bool mask of detections at or above their class's operating threshold."""
    if override is not None:
        return scores >= override
    thr = np.array([meta.thresholds.get(c, meta.cluster.get("conf_threshold", 0.1)) for c in meta.classes], np.float32)
    return scores >= thr[classes] if len(scores) else np.zeros(0, bool)

