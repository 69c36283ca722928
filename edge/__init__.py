"""maskwatch edge runtime: camera -> detector -> tracker -> alarm -> monitor.

Runs on Python >= 3.8 (JetPack 5) with NumPy and OpenCV; never imports torch.
"""
from __future__ import annotations

import os as _os

# Privacy: onnxruntime >= 1.29 on Linux sends telemetry (DNS for a Microsoft host a few seconds after an
# InferenceSession is created) and writes a device id under ~/.cache/Microsoft/DeveloperTools/ unless
# ORT_DISABLE_TELEMETRY=1 is in the environment *before onnxruntime is first imported*
# (onnxruntime.disable_telemetry_events() does not stop it). Every entry point imports this package first
# (maskwatch, python -m edge, bench, doctor; models/ imports it too), so it is set here, always.
_os.environ["ORT_DISABLE_TELEMETRY"] = "1"

__version__ = "0.1.0"
