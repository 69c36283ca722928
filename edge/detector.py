"""The detector: model metadata drives pre-processing, one backend runs the network,
the shared NumPy decoder turns its outputs into :class:`~edge.types.Detections`."""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from edge.backends.base import Backend
from edge.config import EngineConfig, ModelConfig
from edge.model import ModelMeta, apply_thresholds, postprocess, preprocess
from edge.types import Detections

log = logging.getLogger(__name__)

BACKENDS = ("onnxruntime", "tensorrt")


def load_backend(name: str, path: Union[str, Path], threads: int = 0, engine: Optional[EngineConfig] = None
                 ) -> Backend:
    """Load ``path`` with the named backend (one module per runtime under :mod:`edge.backends`).

    Args:
        name: ``"onnxruntime"`` or ``"tensorrt"``.
        path: the ``.onnx`` model (for TensorRT: the model the engine was built from).
        threads: ONNX Runtime CPU threads (0: all cores).
        engine: TensorRT engine folder, precision and DLA core (default: :class:`EngineConfig` defaults).

    Raises:
        ValueError: an unknown backend name.
        FileNotFoundError: no model file at ``path``; for TensorRT also no (or only a stale) engine, as
            :class:`edge.engine.EngineNotFoundError` whose message is the ``maskwatch build-engine`` command.
        edge.backends.tensorrt.BackendUnavailableError: tensorrt or pycuda is not installed.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {list(BACKENDS)}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"no model file at {path}")
    if name == "tensorrt":
        from edge.backends.tensorrt import TensorRTBackend
        e = engine or EngineConfig()
        return TensorRTBackend(path, engine_dir=e.resolved_dir(), precision=e.precision, dla_core=e.dla_core)
    from edge.backends.onnxruntime import OnnxRuntimeBackend
    return OnnxRuntimeBackend(path, threads=threads or None)


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
        x, lb = preprocess(image, self.meta)
        t0 = self._t("preprocess", t0)
        outputs = self.backend.infer(x)
        t0 = self._t("inference", t0)
        h, w = image.shape[:2]
        boxes, scores, classes = postprocess(outputs, self.meta, lb, (w, h), self.cluster)
        keep = apply_thresholds(scores, classes, self.meta)
        dets = Detections(boxes[keep], scores[keep], classes[keep])
        self._t("decode_cluster", t0)
        return dets
