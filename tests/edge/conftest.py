"""Shared fixtures for the edge runtime tests: the model file, the shared videos, helpers."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from edge.config import default_model_path

REPO = Path(__file__).resolve().parents[2]
DATA = (REPO / ".." / "shared" / "data").resolve()
VIDEOS = DATA / "videos"
RELEASED_MODEL = default_model_path()  # the default released model (edge.config.DEFAULT_MODEL)
DEV_MODEL = REPO / "runs" / "dev" / "model.onnx"

UNMASKED = VIDEOS / "unmasked-man-outdoor-720p.mp4"
MASKED_WOMAN = VIDEOS / "masked-woman-laptop.mp4"
MASKED_MAN = VIDEOS / "masked-man-shop-1080p.mp4"


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The released model when it exists, otherwise the development checkpoint (runs/dev, git-ignored)."""
    for p in (RELEASED_MODEL, DEV_MODEL):
        if p.is_file():
            return p
    pytest.fail(f"no model: neither {RELEASED_MODEL} nor {DEV_MODEL} exists")


@pytest.fixture(scope="session")
def backend(model_path):
    """One loaded ONNX Runtime backend shared by the in-process tests (loading costs seconds)."""
    from edge.backends.onnxruntime import OnnxRuntimeBackend
    b = OnnxRuntimeBackend(model_path)
    b.warmup(1)
    yield b
    b.close()


@pytest.fixture(scope="session")
def videos() -> dict:
    for v in (UNMASKED, MASKED_WOMAN, MASKED_MAN):
        if not v.is_file():
            pytest.fail(f"shared test video missing: {v} (../shared/data beside the checkout)")
    return {"unmasked": UNMASKED, "masked_woman": MASKED_WOMAN, "masked_man": MASKED_MAN}




@pytest.fixture
def network_guard(monkeypatch):
    """Fail the test if any socket but an AF_UNIX one (the sd_notify socket) is created in this process.

    Yields the list of (family, type) of every socket created."""
    created = []
    real_socket = socket.socket

    class GuardedSocket(real_socket):
        def __init__(self, family=socket.AF_INET, type=socket.SOCK_STREAM, proto=0, fileno=None):
            created.append((family, type))
            if family != socket.AF_UNIX:
                raise AssertionError(f"a network socket was opened: family={family!r} type={type!r}")
            super().__init__(family, type, proto, fileno)

    monkeypatch.setattr(socket, "socket", GuardedSocket)
    yield created
