"""No network: the pipeline (capture, inference, tracking, policy, overlay, video file, speaker, event log,
sd_notify) runs in this process under a guard that fails on any socket but the AF_UNIX notify socket.
The whole-video version is in test_e2e.py; PrivateNetwork=yes in the unit is the OS-level guarantee."""
from __future__ import annotations

import socket

import pytest

from edge.config import Config
from edge.pipeline import Pipeline, RunOptions, with_overrides
from edge.systemd import Notifier


def test_the_guard_catches_a_network_socket(network_guard):
    with pytest.raises(AssertionError, match="network socket"):
        socket.create_connection(("127.0.0.1", 9), timeout=0.1)
    with pytest.raises(AssertionError, match="network socket"):
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)


def test_pipeline_opens_no_network_socket(tmp_path, backend, videos, network_guard):
    notify = tmp_path / "notify"
    cfg = with_overrides(Config(), source=str(videos["unmasked"]), headless=True, fast=True,
                         events=str(tmp_path / "events.jsonl"), save_video=str(tmp_path / "out.avi"))
    before = len(network_guard)
    pipe = Pipeline(cfg, RunOptions(max_frames=8, sound=True), backend=backend, notifier=Notifier(str(notify)))
    res = pipe.run()
    assert res.frames == 8 and (tmp_path / "out.avi").stat().st_size > 0
    assert network_guard[before:] == [(socket.AF_UNIX, socket.SOCK_DGRAM)], network_guard
