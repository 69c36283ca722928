"""The detector: model metadata drives pre-processing, one backend runs the network,
the shared NumPy decoder turns its outputs into :class:`~edge.types.Detections`."""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Callable, Optional, Tuple, Union

import numpy as np

from edge.backends.base import Backend
from edge.config import ModelConfig
from edge.model import ModelMeta, apply_thresholds, postprocess
from edge.preprocess import Letterbox, letterbox
from edge.types import Detections

log = logging.getLogger(__name__)

BACKENDS = ("onnxruntime",)


def load_backend(name: str, path: Union[str, Path], threads: int = 0) -> Backend:
    """Load ``path`` with the named backend (one module per runtime under :mod:`edge.backends`).

    Raises:
        ValueError: an unknown backend name.
        FileNotFoundError: no model file at ``path``.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {list(BACKENDS)}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"no model file at {path}")
    from edge.backends.onnxruntime import OnnxRuntimeBackend
    return OnnxRuntimeBackend(path, threads=threads or None)


def to_tensor_fast(image_bgr: np.ndarray, color: str = "RGB", mean=(0.0, 0.0, 0.0),
                   std=(255.0, 255.0, 255.0)) -> np.ndarray:
    """Same result as :func:`edge.preprocess.to_tensor` (to float32 rounding), about 10x faster.

    (H, W, 3) uint8 BGR -> (1, 3, H, W) float32 ``(px - mean) / std``: each channel plane is converted
    straight into its slot of the output, instead of a float copy of the whole image, a strided
    channel flip and a transposing copy.
    """
    mean = np.asarray(mean, np.float32)
    inv_std = 1.0 / np.asarray(std, np.float32)
    order = (2, 1, 0) if color == "RGB" else (0, 1, 2)
    h, w = image_bgr.shape[:2]
    out = np.empty((1, 3, h, w), np.float32)
    for c, src in enumerate(order):
        plane = out[0, c]
        plane[...] = image_bgr[:, :, src]
        if mean[c]:
            plane -= mean[c]
        plane *= inv_std[c]
    return out


def fast_preprocess(frame_bgr: np.ndarray, meta: ModelMeta) -> Tuple[np.ndarray, Letterbox]:
    """:func:`edge.model.preprocess` with :func:`to_tensor_fast` (the shared letterbox is unchanged)."""
    img, lb = letterbox(frame_bgr, (meta.input_w, meta.input_h), meta.resize)
    return to_tensor_fast(img, meta.color, meta.mean, meta.std), lb


class Detector:
    """Frame in, thresholded detections out.

    Args:
        backend: a loaded backend (its ``meta`` drives everything).
        cfg: thresholds and cluster overrides; :meth:`configure` swaps them at run time.
        timer: called as ``timer(stage, seconds)`` for ``preprocess``, ``inference`` and ``decode_cluster``.
    """

    def __init__(self, backend: Backend, cfg: Optional[ModelConfig] = None,
                 timer: Optional[Callable[[str, float], None]] = None):
        self.backend = backend
        self.timer = timer
        self.configure(cfg or ModelConfig())

    @property
    def classes(self):
        return self.backend.meta.classes

    def configure(self, cfg: ModelConfig) -> None:
        """Apply per-class thresholds and cluster overrides (the model's own values where unset)."""
        meta = self.backend.meta
        thresholds = dict(meta.thresholds)
        thresholds.update(cfg.thresholds.as_dict())
        self.meta = dataclasses.replace(meta, thresholds=thresholds)  # type: ModelMeta
        self.cluster = meta.cluster_params(**cfg.cluster.model_dump())

    def _t(self, stage: str, t0: float) -> float:
        t1 = time.perf_counter()
        if self.timer is not None:
            self.timer(stage, t1 - t0)
        return t1

    def __call__(self, image: np.ndarray) -> Detections:
        """(H, W, 3) uint8 BGR frame -> detections at or above their class thresholds, in frame px."""
        t0 = time.perf_counter()
        x, lb = fast_preprocess(image, self.meta)
        t0 = self._t("preprocess", t0)
        outputs = self.backend.infer(x)
        t0 = self._t("inference", t0)
        h, w = image.shape[:2]
        boxes, scores, classes = postprocess(outputs, self.meta, lb, (w, h), self.cluster)
        keep = apply_thresholds(scores, classes, self.meta)
        dets = Detections(boxes[keep], scores[keep], classes[keep])
        self._t("decode_cluster", t0)
        return dets
