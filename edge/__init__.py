"""maskwatch edge runtime: camera -> detector -> tracker -> alarm -> monitor.

Runs on Python >= 3.8 (JetPack 5) with NumPy and OpenCV; never imports torch.
"""
from __future__ import annotations

__version__ = "0.1.0"
