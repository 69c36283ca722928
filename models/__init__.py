"""maskwatch training side: data, augmentation, detector models, training, evaluation, export."""

import os as _os

# Privacy: stop onnxruntime's telemetry (network and ~/.cache/Microsoft) before anything imports it;
# see edge/__init__.py and docs/runtime.md#privacy.
_os.environ["ORT_DISABLE_TELEMETRY"] = "1"
