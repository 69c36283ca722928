"""The backend interface: load a model file, warm up, run raw inference, close."""
from __future__ import annotations

import abc
from pathlib import Path
from typing import Dict, Union

import numpy as np

from edge.model import ModelMeta


class Backend(abc.ABC):
    """A loaded model.

    Subclasses load the file in ``__init__`` and set :attr:`meta`; :meth:`infer`
    returns the raw outputs keyed by decoder role (``coverage``, ``bbox``), never
    decoded boxes: decoding is shared NumPy code in :mod:`edge.decoders`.
    """

    #: the model's embedded description
    meta: ModelMeta

    @abc.abstractmethod
    def __init__(self, model_path: Union[str, Path]):
        ...

    @abc.abstractmethod
    def infer(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        """Run one batch.

        Args:
            x: (1, 3, input_h, input_w) float32, pre-processed by :func:`edge.model.preprocess`.

        Returns:
            decoder role -> float32 array, e.g. ``coverage`` (1, C, H/16, W/16), ``bbox`` (1, 4C, H/16, W/16).
        """

    def warmup(self, runs: int = 2) -> None:
        """Run ``runs`` inferences on a mid-grey input so the first real frame is not slow."""
        x = np.full((1, 3, self.meta.input_h, self.meta.input_w), 0.5, np.float32)
        for _ in range(runs):
            self.infer(x)

    def close(self) -> None:
        """Release the runtime's resources."""
