"""Shared test fixtures: paths to the real data beside the checkout."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
FACE_MASK = SHARED_DATA / "face-mask-andrewmvd"
VIDEOS = SHARED_DATA / "videos"
RELEASED_MODEL = REPO / "models" / "detectnet_v2_r18" / "model.onnx"


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
