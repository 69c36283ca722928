"""ONNX Runtime backend (CPU on any machine; the CI and dev reference)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np

from edge.backends.base import Backend
from edge.model import METADATA_KEY, ModelMeta
from edge.procstat import usable_cpus

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
        threads: intra-op threads (default: every core this process may run on, :func:`edge.procstat.usable_cpus`).
        providers: ONNX Runtime execution providers (default: CPU).
        spin: let idle intra-op (and inter-op) threads busy-wait for the next run, ONNX Runtime's own
            default. Off by default here (``session.intra_op.allow_spinning = "0"``): at a camera's pace
            the threads would spin through the idle part of every frame and take the cores from the
            capture thread and the frame loop's own stages. Measured with ``maskwatch bench --live`` on
            the 720p clip at 30 fps (docs/runtime.md, "Live pace"): 65-73 ms of CPU per processed frame
            with spinning, 25-31 ms without, and about twice the maximum fps on a loaded machine.
            True only for a pure inference benchmark.

    Raises:
        RuntimeError: onnxruntime is not installed.
        ValueError: the file has no maskwatch metadata.
    """

    def __init__(self, model_path: Union[str, Path, bytes], threads: Optional[int] = None,
                 providers: Optional[Sequence[str]] = None, spin: bool = False):
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - depends on the install
            raise RuntimeError("the onnxruntime backend needs the package 'onnxruntime' (pip install onnxruntime)") from e
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or usable_cpus()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
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
