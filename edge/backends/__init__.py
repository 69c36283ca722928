"""Inference backends: one module per runtime, all behind :class:`edge.backends.base.Backend`."""
from __future__ import annotations
