"""ONNX Runtime backend (CPU on any machine; the CI and dev reference)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np

from edge.backends.base import Backend
from edge.model import METADATA_KEY, ModelMeta

BACKEND_KEY = "onnxruntime"


def read_meta(session) -> ModelMeta:
    """The :class:`ModelMeta` embedded in an ONNX Runtime session's model.

    Raises:
        ValueError: when the file carries no maskwatch metadata.
    """
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise ValueError(f"model has no {METADATA_KEY!r} metadata; export it with `python -m models.export`")
    return ModelMeta.from_json(props[METADATA_KEY])


class OnnxRuntimeBackend(Backend):
    """Runs a maskwatch ONNX model with ONNX Runtime.

    Args:
        model_path: the ``.onnx`` file, or its bytes (:mod:`edge.validate` reads them from a checked descriptor).
        threads: intra-op threads (default: all cores).
        providers: ONNX Runtime execution providers (default: CPU).
        spin: let idle intra-op threads busy-wait for the next run (ONNX Runtime's default); False for a
            second, occasional session (the mask classifier) so its threads do not take the cores from
            the detector between its runs.

    Raises:
        RuntimeError: onnxruntime is not installed.
        ValueError: the file has no maskwatch metadata.
    """

    def __init__(self, model_path: Union[str, Path, bytes], threads: Optional[int] = None,
                 providers: Optional[Sequence[str]] = None, spin: bool = True):
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - depends on the install
            raise RuntimeError("the onnxruntime backend needs the package 'onnxruntime' (pip install onnxruntime)") from e
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        model = model_path if isinstance(model_path, bytes) else str(model_path)
        self.session = ort.InferenceSession(model, opts, providers=list(providers or ["CPUExecutionProvider"]))
        self.meta = read_meta(self.session)
        self._names = [o.name for o in self.session.get_outputs()]
        role_of = {v: k for k, v in self.meta.outputs.items()}
        self._roles = [role_of.get(n, n) for n in self._names]

    def infer(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        outs = self.session.run(self._names, {self.meta.input_name: x})
        return dict(zip(self._roles, outs))

    def close(self) -> None:
        self.session = None
