"""Telemetry: the path without jtop for real (jtop is not installed on x86), and the parsing, throttling,
log and overlay logic on plain dictionaries in the format jtop 4.x returns (``jetson.stats``,
``jetson.gpu``) on a Xavier NX. Sampling a live jtop service is a `jetson` test."""
from __future__ import annotations

import datetime
import logging
import subprocess
import sys
import time

import numpy as np
import pytest

from edge.overlay import Overlay
from edge.sources import jetson_model
from edge.telemetry import Sample, Telemetry, format_sample, jtop_available, overlay_text, parse_stats
from edge.types import Detections
from edge_helpers import REPO, alsa_home, run_env, write_config

# jetson.stats of a Xavier NX (jetson-stats 4.2, JetPack 5.1, 20 W mode) at full GPU load
XAVIER_NX_STATS = {
    "time": datetime.datetime(2026, 11, 22, 7, 0, 0), "uptime": datetime.timedelta(hours=3),
    "CPU1": 31, "CPU2": 27, "CPU3": 22, "CPU4": 25, "CPU5": "OFF", "CPU6": "OFF",
    "RAM": 0.41, "SWAP": 0.0, "EMC": 38, "GPU": 96.0,
    "APE": "OFF", "NVDEC": 268.8, "NVJPG": "OFF", "NVJPG1": "OFF",
    "Fan pwmfan0": 43.1,
    "Temp AO": 43.5, "Temp AUX": 44.0, "Temp CPU": 46.5, "Temp GPU": 47.0, "Temp PMIC": -256,
    "Temp thermal": 45.6,
    "Power VDD_CPU_GPU_CV": 5623, "Power VDD_SOC": 1807, "Power TOT": 10534,
    "jetson_clocks": "OFF", "nvp model": "MODE_20W_6CORE",
}
# jetson.gpu: clock in kHz
GPU_FULL_CLOCK = {"gpu": {"type": "integrated", "status": {"railgate": False, "tpc_pg_mask": False,
                                                          "3d_scaling": True, "load": 96.0},
                          "freq": {"governor": "nvhost_podgov", "cur": 1100000, "max": 1100000, "min": 114750,
                                   "GPC": [1100000]}, "power_control": "auto"}}
GPU_HELD_DOWN = {"gpu": dict(GPU_FULL_CLOCK["gpu"], freq={"governor": "nvhost_podgov", "cur": 599250,
                                                          "max": 1100000, "min": 114750, "GPC": [599250]})}


def test_parse_xavier_nx_stats():
    s = parse_stats(XAVIER_NX_STATS, warn_temp_c=85, gpu=GPU_FULL_CLOCK, t=123.0)
    assert s.temps == {"AO": 43.5, "AUX": 44.0, "CPU": 46.5, "GPU": 47.0, "thermal": 45.6}  # PMIC offline: out
    assert s.power_w == pytest.approx(10.534)
    assert s.rails_w == {"VDD_CPU_GPU_CV": pytest.approx(5.623), "VDD_SOC": pytest.approx(1.807)}
    assert s.gpu_load == 96.0 and s.gpu_freq_khz == 1100000 and s.gpu_freq_max_khz == 1100000
    assert (s.nvpmodel, s.jetson_clocks, s.t) == ("MODE_20W_6CORE", "OFF", 123.0)
    assert s.hottest == ("GPU", 47.0)
    assert s.throttling == []


def test_throttling_by_temperature_threshold():
    hot = dict(XAVIER_NX_STATS, **{"Temp GPU": 86.0, "Temp CPU": 85.0})
    s = parse_stats(hot, warn_temp_c=85)
    assert s.throttling == ["CPU 85.0 C >= 85 C", "GPU 86.0 C >= 85 C"]
    assert parse_stats(hot, warn_temp_c=90).throttling == []


def test_throttling_by_gpu_clock_only_under_load():
    s = parse_stats(XAVIER_NX_STATS, gpu=GPU_HELD_DOWN)
    assert s.throttling == ["GPU clock 599 MHz < 85% of 1100 MHz at 96% load"]
    idle = dict(XAVIER_NX_STATS, GPU=12.0)  # a low clock at low load is the DVFS governor saving power
    assert parse_stats(idle, gpu=GPU_HELD_DOWN).throttling == []


def test_missing_and_odd_values_are_tolerated():
    s = parse_stats({"GPU": "OFF", "Temp CPU": "n/a", "Power TOT": None, 7: 1})
    assert s.temps == {} and s.power_w is None and s.gpu_load is None and s.hottest is None
    assert format_sample(s) == "no readings" and overlay_text(s) == ""
    assert overlay_text(None) == ""


def test_log_line_and_overlay_text():
    s = parse_stats(XAVIER_NX_STATS, gpu=GPU_FULL_CLOCK)
    line = format_sample(s)
    assert line.startswith("AO=43.5C AUX=44.0C CPU=46.5C GPU=47.0C thermal=45.6C, power 10.53 W, GPU 96%")
    assert "1100/1100 MHz" in line and "nvpmodel MODE_20W_6CORE" in line and "THROTTLING" not in line
    assert overlay_text(s) == "47C 10.5W"
    hot = parse_stats(dict(XAVIER_NX_STATS, **{"Temp GPU": 91.0}))
    assert overlay_text(hot) == "91C 10.5W THROTTLED" and "THROTTLING: GPU 91.0 C >= 85 C" in format_sample(hot)


def test_throttling_is_warned_once_per_episode(caplog):
    t = Telemetry(interval_s=5, warn_temp_c=85, summary_s=3600)
    calm = parse_stats(XAVIER_NX_STATS)
    hot = parse_stats(dict(XAVIER_NX_STATS, **{"Temp GPU": 90.0}))
    with caplog.at_level(logging.DEBUG, logger="edge.telemetry"):
        for s in (calm, hot, hot, hot, calm):
            t._take(s, since_summary=0.0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "throttling" in warnings[0].getMessage()
    assert any("no longer throttling" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    assert t.samples == 5 and t.latest is calm and t.overlay_text() == "47C 10.5W"


def test_overlay_shows_temperature_and_power(videos):
    import cv2
    cap = cv2.VideoCapture(str(videos["unmasked"]))
    ok, img = cap.read()
    cap.release()
    ov = Overlay(["mask", "no_mask", "mask_incorrect"])
    plain = ov.draw(img, Detections.empty(), fps=20.0)
    health = ov.draw(img, Detections.empty(), fps=20.0, telemetry="47C 10.5W")
    hot = ov.draw(img, Detections.empty(), fps=20.0, telemetry="91C 10.5W THROTTLED")
    diff = np.abs(health.astype(int) - plain.astype(int)).max(axis=2)
    ys, xs = np.nonzero(diff)
    assert len(xs) and ys.max() < 40 and xs.min() > 300, "drawn in the top bar, right of the status text"
    orange = (np.abs(hot[:40].astype(int) - (0, 160, 255)).max(axis=2) < 40).sum()
    assert orange > 20 and (np.abs(health[:40].astype(int) - (0, 160, 255)).max(axis=2) < 40).sum() == 0


@pytest.mark.skipif(jtop_available() is None, reason="jtop is installed here")
def test_without_jtop_it_logs_once_and_carries_on(caplog):
    assert "jtop (jetson-stats) is not installed" in jtop_available()
    with caplog.at_level(logging.INFO, logger="edge.telemetry"):
        t = Telemetry(interval_s=1).start()
        time.sleep(0.2)
        t.stop()
    assert not t.running and t.latest is None and t.overlay_text() == ""
    assert "not installed" in t.status
    msgs = [r.getMessage() for r in caplog.records if "no telemetry" in r.getMessage()]
    assert len(msgs) == 1
    assert ("not a Jetson" in msgs[0]) == (jetson_model() is None)


@pytest.mark.skipif(jtop_available() is None, reason="jtop is installed here")
def test_the_appliance_runs_without_jtop(tmp_path, model_path, videos):
    cfg = write_config(tmp_path / "c.yaml", model_path)
    args = ["run", "-c", cfg, "--source", videos["masked_woman"], "--headless", "--fast", "--max-frames", "3",
            "--events", tmp_path / "ev.jsonl"]
    r = subprocess.run([sys.executable, "-m", "edge"] + [str(a) for a in args], cwd=str(REPO),
                       env=run_env(alsa_home(tmp_path)), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("no telemetry") == 1 and "stopped (max frames)" in r.stderr


@pytest.mark.jetson
def test_live_jtop_sample_on_the_jetson():
    if jetson_model() is None or jtop_available() is not None:
        pytest.skip("needs a Jetson with jetson-stats and jtop.service")
    t = Telemetry(interval_s=1).start()
    try:
        end = time.monotonic() + 10
        while t.latest is None and time.monotonic() < end:
            time.sleep(0.1)
    finally:
        t.stop()
    assert t.status == "running" and isinstance(t.latest, Sample)
    assert t.latest.temps and t.latest.power_w and t.latest.power_w > 1
