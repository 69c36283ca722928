"""Shared test fixtures: paths to the real data beside the checkout."""
from __future__ import annotations

import os
from pathlib import Path

# Privacy: no onnxruntime telemetry from the tests either (set before anything imports onnxruntime).
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
FACE_MASK = SHARED_DATA / "face-mask-andrewmvd"
VIDEOS = SHARED_DATA / "videos"
RELEASED_MODEL = REPO / "models" / "released" / "detectnet_v2_r18" / "model.onnx"


@pytest.fixture(scope="session")
def face_mask_dir() -> Path:
    if not FACE_MASK.is_dir():
        pytest.fail(f"shared data missing at {FACE_MASK}: CI and dev machines must have ../shared/data")
    return FACE_MASK


@pytest.fixture(scope="session")
def videos_dir() -> Path:
    if not VIDEOS.is_dir():
        pytest.fail(f"shared videos missing at {VIDEOS}")
    return VIDEOS


def on_jetson() -> bool:
    """A Jetson (L4T) board: ``/etc/nv_tegra_release`` exists or the device tree names one."""
    model = Path("/proc/device-tree/model")
    return Path("/etc/nv_tegra_release").exists() or (model.exists() and "jetson" in model.read_text(errors="ignore").lower())


def pytest_collection_modifyitems(config, items):
    """Tests marked ``jetson`` need the device (TensorRT, pycuda, the hardware decoders): skipped elsewhere."""
    if on_jetson():
        return
    skip = pytest.mark.skip(reason="needs a Jetson (TensorRT, pycuda, nvv4l2decoder); not a Jetson")
    for item in items:
        if "jetson" in item.keywords:
            item.add_marker(skip)
