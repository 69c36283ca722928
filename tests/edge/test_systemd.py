"""sd_notify through a real NOTIFY_SOCKET datagram socket, the unit file, journal logging."""
from __future__ import annotations

import configparser
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from edge.systemd import Notifier, _JournalFormatter, under_journal
from edge_helpers import REPO, alsa_home, drain, maskwatch_cmd, notify_receiver, run_env, write_config

UNIT = REPO / "systemd" / "maskwatch.service"
ENGINE_UNIT = REPO / "systemd" / "maskwatch-engine.service"
CLOCKS_UNIT = REPO / "systemd" / "maskwatch-clocks.service"




def test_notifier_protocol(tmp_path):
    sock = notify_receiver(tmp_path / "notify")
    n = Notifier(str(tmp_path / "notify"))
    assert n.ready("warm") and n.status("7.0 fps") and n.watchdog(force=True) and n.stopping()
    assert drain(sock) == ["READY=1\nSTATUS=warm", "STATUS=7.0 fps", "WATCHDOG=1", "STOPPING=1"]
    n.close()
    sock.close()


def test_notifier_abstract_socket_and_absent_socket():
    name = f"maskwatch-test-{os.getpid()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(1)
    assert Notifier("@" + name).ready()
    assert s.recv(100) == b"READY=1"
    s.close()
    assert Notifier("").ready() is False  # not under systemd: a no-op


def test_watchdog_is_rate_limited_by_watchdog_usec(tmp_path, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    sock = notify_receiver(tmp_path / "n")
    n = Notifier(str(tmp_path / "n"))
    assert n.watchdog_interval == 1.0
    assert n.watchdog() and not n.watchdog() and not n.watchdog()
    assert drain(sock) == ["WATCHDOG=1"]
    sock.close()


def test_daemon_sends_ready_then_watchdog_and_status(tmp_path, model_path, videos):
    sock = notify_receiver(tmp_path / "notify")
    msgs = []
    stop = threading.Event()

    def listen():  # like systemd, read as messages come (a datagram socket queues only ~10)
        while not stop.is_set():
            msgs.extend(drain(sock))

    t = threading.Thread(target=listen)
    t.start()
    cfg = write_config(tmp_path / "c.yaml", model_path)
    try:
        proc = subprocess.run(maskwatch_cmd() + ["run", "-c", str(cfg), "--source", str(videos["masked_woman"]),
                                                 "--headless", "--fast", "--max-frames", "12",
                                                 "--events", str(tmp_path / "ev.jsonl")],
                              cwd=str(REPO), capture_output=True, text=True, timeout=600,
                              env=run_env(alsa_home(tmp_path), NOTIFY_SOCKET=str(tmp_path / "notify"),
                                          WATCHDOG_USEC="2000000"))
    finally:
        stop.set()
        t.join()
        sock.close()
    assert proc.returncode == 0, proc.stderr
    kinds = [m.split("=")[0] for m in msgs]
    assert kinds[0] == "STATUS" and "loading model" in msgs[0]
    ready = kinds.index("READY")
    assert "WATCHDOG" not in kinds[:ready], "no watchdog ping before READY"
    assert "WATCHDOG" in kinds[ready:]
    statuses = [m for m in msgs[ready:] if m.startswith("STATUS=") and "fps" in m]
    assert statuses and "people mask=" in statuses[-1] and "alarms=" in statuses[-1]
    assert "in view mask=" in statuses[-1], "STATUS counts the people in view (confirmed, not stationary tracks)"
    assert msgs[-1] == "STOPPING=1"


def unit(path):
    """A unit file as {section: {key: [values]}} (keys such as DeviceAllow repeat)."""
    out, section = {}, None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = out.setdefault(line.strip("[]"), {})
            continue
        k, _, v = line.partition("=")
        section.setdefault(k, []).append(v)
    return out


def test_unit_file_keys():
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(UNIT)
    svc = cp["Service"]
    assert svc["Type"] == "notify"
    assert int(svc["WatchdogSec"]) > 0
    assert svc["PrivateNetwork"] == "yes"
    assert "maskwatch run" in svc["ExecStart"]
    assert "kill -HUP" in svc["ExecReload"]


def test_unit_restarts_with_a_start_limit_and_is_hardened():
    u = unit(UNIT)
    svc, un = u["Service"], u["Unit"]
    assert svc["Restart"] == ["always"] and float(svc["RestartSec"][0]) >= 1
    # 5 starts in 5 minutes at most: a broken camera cannot spin the CPU
    assert int(un["StartLimitBurst"][0]) <= 10 and int(un["StartLimitIntervalSec"][0]) >= 60
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes"),
                       ("PrivateNetwork", "yes"), ("DevicePolicy", "closed"), ("ProtectHome", "yes")):
        assert svc[key] == [value], key
    assert svc["ReadWritePaths"] == ["/var/lib/maskwatch"] and svc["StateDirectory"] == ["maskwatch"]
    assert svc["ReadOnlyPaths"] == ["-/var/lib/maskwatch/engines"]
    devices = " ".join(svc["DeviceAllow"])
    for dev in ("char-video4linux", "char-alsa", "/dev/nvmap", "/dev/nvhost-ctrl-gpu", "/dev/nvhost-gpu",
                "/dev/nvhost-nvdec", "/dev/nvhost-vic", "/dev/nvhost-nvdla0", "char-nvhost*"):
        assert dev in devices, dev
    assert "/tmp/.X11-unix" in svc["BindReadOnlyPaths"][0] and svc["Environment"][0].startswith("DISPLAY=:0")
    # the engine is built (or found up to date) first
    assert "maskwatch-engine.service" in un["Wants"][0] and "maskwatch-engine.service" in un["After"][0]


def test_engine_unit_runs_build_engine_before_the_appliance():
    u = unit(ENGINE_UNIT)
    svc = u["Service"]
    assert svc["Type"] == ["oneshot"] and svc["User"] == ["maskwatch"]
    assert svc["ExecStart"][0].endswith("maskwatch build-engine -c /etc/maskwatch/config.yaml")
    assert u["Unit"]["Before"] == ["maskwatch.service"] and u["Install"]["WantedBy"] == ["maskwatch.service"]
    assert svc["ProtectSystem"] == ["strict"] and svc["PrivateNetwork"] == ["yes"]
    assert svc["ReadWritePaths"] == ["/var/lib/maskwatch"]
    assert "char-video4linux" not in " ".join(svc["DeviceAllow"]) and "/dev/nvmap" in " ".join(svc["DeviceAllow"])


def test_systemd_analyze_verify(tmp_path):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (apt systemd)")
    installed = shutil.which("maskwatch") or pytest.skip("the maskwatch console script is not installed")
    units = []
    for src in (UNIT, ENGINE_UNIT, CLOCKS_UNIT):  # as installed: ExecStart pointing at this machine's programs
        u = tmp_path / src.name
        u.write_text(src.read_text().replace("/usr/local/bin/maskwatch", installed)
                     .replace("/usr/bin/jetson_clocks", shutil.which("true")))  # jetson_clocks: Jetson only
        units.append(str(u))
    r = subprocess.run([exe, "verify"] + units, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for src in (UNIT, ENGINE_UNIT, CLOCKS_UNIT):
        assert src.name not in r.stderr, r.stderr  # unknown keys and bad values only warn: none allowed


def test_clocks_unit_is_an_opt_in_oneshot_before_the_appliance():
    u = unit(CLOCKS_UNIT)
    assert u["Service"]["Type"] == ["oneshot"] and u["Service"]["ExecStart"] == ["/usr/bin/jetson_clocks"]
    assert "maskwatch.service" in u["Unit"]["Before"][0] and u["Install"]["WantedBy"] == ["multi-user.target"]


def test_journal_logging_priorities(tmp_path):
    rec = logging.LogRecord("edge.x", logging.WARNING, __file__, 1, "camera lost", None, None)
    assert _JournalFormatter("%(name)s: %(message)s").format(rec) == "<4>edge.x: camera lost"
    # systemd announces the journal by the dev:inode of stderr
    code = ("import os, sys; from edge.systemd import under_journal; st = os.fstat(2); "
            "os.environ['JOURNAL_STREAM'] = f'{st.st_dev}:{st.st_ino}'; print(under_journal())")
    err = open(tmp_path / "err", "w")
    r = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=err, text=True, cwd=str(REPO))
    assert r.stdout.strip() == "True"
    assert under_journal() is False or os.environ.get("JOURNAL_STREAM")
