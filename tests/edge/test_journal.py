"""systemd-python where installed, the plain-socket fallback where not, against a real notify socket
(a Unix datagram socket the test binds); journal logging with structured fields; and no log line lost
while sounddevice points fd 2 at /dev/null.

The fallback is selected the way a machine without the package selects it: ``import systemd`` fails
(``sys.modules['systemd'] = None`` in a fresh interpreter)."""
from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from edge.config import AlarmConfig, TrackerConfig, ZoneConfig
from edge.policy import AlarmPolicy
from edge.systemd import Notifier
from edge.tracking import Tracker
from edge.types import Detections, Frame
from edge_helpers import REPO, alsa_home, drain, notify_receiver, run_env

BLOCK_SYSTEMD = "import sys; sys.modules['systemd'] = None\n"




def python(code, env=None, **kw):
    return subprocess.run([sys.executable, "-c", code], cwd=str(REPO), env=env or run_env(Path.home()),
                          capture_output=True, text=True, timeout=120, **kw)


NOTIFY_SCRIPT = """
from edge.systemd import Notifier
n = Notifier()
print(n.backend)
assert n.ready("warm") and n.status("7.0 fps") and n.watchdog(force=True) and n.stopping()
print(n.sent)
"""
EXPECTED = ["READY=1\nSTATUS=warm", "STATUS=7.0 fps", "WATCHDOG=1", "STOPPING=1"]


def test_notify_through_systemd_python(tmp_path, monkeypatch):
    pytest.importorskip("systemd.daemon", reason="systemd-python is not installed")
    sock = notify_receiver(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    n = Notifier()
    assert n.backend == "systemd-python"
    assert n.ready("warm") and n.status("7.0 fps") and n.watchdog(force=True) and n.stopping()
    assert drain(sock) == EXPECTED and n.sent == 4
    sock.close()
    # an abstract socket (leading @) through libsystemd too
    name = f"maskwatch-test-{uuid.uuid4().hex}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(1)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    n = Notifier()
    assert n.backend == "systemd-python" and n.ready()
    assert s.recv(100) == b"READY=1"
    s.close()


def test_notify_an_explicit_other_socket_uses_the_fallback(tmp_path, monkeypatch):
    """libsystemd only reads $NOTIFY_SOCKET: an explicitly given other address goes through the socket path."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    sock = notify_receiver(tmp_path / "n")
    n = Notifier(str(tmp_path / "n"))
    assert n.backend == "socket" and n.ready("warm")
    assert drain(sock) == ["READY=1\nSTATUS=warm"]
    sock.close()


def test_notify_fallback_without_systemd_python(tmp_path):
    sock = notify_receiver(tmp_path / "notify")
    r = python(BLOCK_SYSTEMD + NOTIFY_SCRIPT, env=run_env(tmp_path, NOTIFY_SOCKET=str(tmp_path / "notify")))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["socket", "4"]
    assert drain(sock) == EXPECTED
    sock.close()


def test_alarm_log_records_carry_the_journal_fields(caplog):
    """The policy's ALARM record carries MASKWATCH_EVENT, TRACK_ID and CLASS, which JournalHandler sends as
    journal fields (it sends every record attribute)."""
    tr = Tracker(TrackerConfig(min_hits=2), num_classes=3)
    pol = AlarmPolicy(AlarmConfig(), ZoneConfig(), ["mask", "no_mask", "mask_incorrect"])
    img = np.zeros((720, 1280, 3), np.uint8)
    with caplog.at_level(logging.INFO, logger="edge.policy"):
        for i in range(50):
            x = 500 + 30 * np.sin(2 * np.pi * i / 25)
            d = tr.update(Detections([[x, 200, x + 120, 320]], [0.8], [1]), i / 25, time.time())
            pol.update(d, tr, Frame(img, i, i / 25, time.time()))
    alarms = [r for r in caplog.records if r.getMessage().startswith("ALARM")]
    assert len(alarms) == 1
    rec = alarms[0]
    assert (rec.MASKWATCH_EVENT, rec.TRACK_ID, rec.CLASS) == ("alarm", 1, "no_mask")


SETUP_SCRIPT = """
import logging, os, sys
st = os.fstat(2)
os.environ['JOURNAL_STREAM'] = f'{st.st_dev}:{st.st_ino}'
from edge.systemd import setup_logging, _JournalFormatter
setup_logging('INFO')
h = logging.getLogger().handlers[0]
print(type(h).__name__, type(h.formatter).__name__)
"""


def test_under_systemd_logs_go_to_the_journal_handler_else_to_stderr_with_priorities(tmp_path):
    err = open(tmp_path / "err", "w")  # a real file as stderr, as the journal stream is for systemd
    with_pkg = subprocess.run([sys.executable, "-c", SETUP_SCRIPT], cwd=str(REPO), env=run_env(tmp_path),
                              stdout=subprocess.PIPE, stderr=err, text=True, timeout=60)
    without = subprocess.run([sys.executable, "-c", BLOCK_SYSTEMD + SETUP_SCRIPT], cwd=str(REPO),
                             env=run_env(tmp_path), stdout=subprocess.PIPE, stderr=err, text=True, timeout=60)
    err.close()
    assert with_pkg.returncode == 0 and without.returncode == 0, (tmp_path / "err").read_text()
    try:
        import systemd.journal  # noqa: F401
        assert with_pkg.stdout.split() == ["JournalHandler", "Formatter"]
    except ImportError:
        assert with_pkg.stdout.split() == ["StreamHandler", "_JournalFormatter"]
    assert without.stdout.split() == ["StreamHandler", "_JournalFormatter"]


REDIRECT_SCRIPT = """
import logging, os
from edge.systemd import setup_logging
setup_logging('INFO')
log = logging.getLogger('edge.policy')
# what sounddevice._initialize does around Pa_Initialize: fd 2 -> /dev/null, then back
saved = os.dup(2)
devnull = os.open(os.devnull, os.O_WRONLY)
os.dup2(devnull, 2)
os.close(devnull)
os.write(2, b'written to fd 2 directly\\n')
log.info('ALARM track 7 no_mask score 0.80 held 0.5 s (13 frames)')
os.dup2(saved, 2)
os.close(saved)
log.info('after the redirect')
"""


def test_an_alarm_log_line_is_not_lost_while_fd2_points_at_dev_null(tmp_path):
    r = python(REDIRECT_SCRIPT, env=run_env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "written to fd 2 directly" not in r.stderr, "the redirect did take fd 2 away (the control)"
    assert "ALARM track 7 no_mask" in r.stderr and "after the redirect" in r.stderr


HAMMER_SCRIPT = """
import logging, threading, sys
from edge.systemd import setup_logging
setup_logging('INFO')
import sounddevice as sd
log = logging.getLogger('edge.policy')
done = threading.Event()
cycles = [0]
def reinit():  # what AlarmPlayer._device does after a failure, as fast as it goes
    while not done.is_set():
        sd._terminate(); sd._initialize(); cycles[0] += 1
t = threading.Thread(target=reinit); t.start()
for i in range(300):
    log.info('ALARM track %d no_mask score 0.80', i)
    if i % 10 == 0:
        while cycles[0] < i // 10:
            pass
done.set(); t.join()
print(cycles[0])
"""


def test_no_alarm_log_line_is_lost_while_portaudio_reinitialises(tmp_path):
    """300 ALARM lines logged while another thread re-initialises PortAudio (fd 2 -> /dev/null each time)
    in a loop, through an ALSA null device: every line arrives."""
    try:
        import sounddevice  # noqa: F401
    except OSError as e:
        pytest.skip(f"no PortAudio: {e}")
    r = python(HAMMER_SCRIPT, env=run_env(alsa_home(tmp_path)))
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.split()[-1]) >= 29, "PortAudio was re-initialised throughout"
    got = {int(line.split("ALARM track ")[1].split()[0]) for line in r.stderr.splitlines() if "ALARM track " in line}
    assert got == set(range(300))


def journal_readable() -> bool:
    if shutil.which("journalctl") is None or not Path("/run/systemd/journal/socket").exists():
        return False
    r = subprocess.run(["journalctl", "-n", "1", "-q", "--no-pager"], capture_output=True, text=True, timeout=30)
    return r.returncode == 0


@pytest.mark.skipif(not journal_readable(), reason="no journald here (no /run/systemd/journal/socket or "
                    "journalctl cannot read it)")
def test_alarm_fields_in_the_journal(tmp_path):
    pytest.importorskip("systemd.journal", reason="systemd-python is not installed")
    tag = uuid.uuid4().hex
    code = (
        "import logging\nfrom edge.systemd import _journal_handler\n"
        "root = logging.getLogger(); root.addHandler(_journal_handler('maskwatch-test')); root.setLevel('INFO')\n"
        f"logging.getLogger('edge.policy').info('ALARM track 5 no_mask {tag}', "
        "extra={'MASKWATCH_EVENT': 'alarm', 'TRACK_ID': 5, 'CLASS': 'no_mask'})\n")
    r = python(code, env=run_env(tmp_path))
    assert r.returncode == 0, r.stderr
    entries = []
    for _ in range(50):  # journald writes asynchronously
        q = subprocess.run(["journalctl", "-o", "json", "--no-pager", "SYSLOG_IDENTIFIER=maskwatch-test",
                            "MASKWATCH_EVENT=alarm"], capture_output=True, text=True, timeout=30)
        entries = [json.loads(line) for line in q.stdout.splitlines() if tag in line]
        if entries:
            break
        time.sleep(0.1)
    assert entries, "the ALARM line is not in the journal"
    e = entries[-1]
    assert (e["MASKWATCH_EVENT"], e["TRACK_ID"], e["CLASS"]) == ("alarm", "5", "no_mask")
    assert e["PRIORITY"] == "6" and e["MESSAGE"].startswith("edge.policy: ALARM track 5")
