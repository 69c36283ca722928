"""SIGHUP reloads the config without a restart; an invalid file keeps the running config and says
why; SIGTERM exits cleanly. The daemon runs against a camera that is not there, so it keeps running
(and retrying the camera) for as long as the test needs."""
from __future__ import annotations

import signal
import subprocess
import time

from edge_helpers import DAEMON_BASE as BASE, LogReader, sigterm, REPO, alsa_home, maskwatch_cmd, run_env, write_config



def test_sighup_reload_and_invalid_reload_and_sigterm(tmp_path, model_path):
    cfg = write_config(tmp_path / "c.yaml", model_path, BASE)
    events = tmp_path / "events.jsonl"
    proc = subprocess.Popen(maskwatch_cmd() + ["run", "-c", str(cfg), "--headless", "--events", str(events)],
                            cwd=str(REPO), env=run_env(alsa_home(tmp_path)), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    log = LogReader(proc.stderr)
    log.start()
    try:
        log.expect("no camera at /dev/video98")
        log.expect("running: model")
        # 1. a valid change: applied live
        write_config(cfg, model_path, BASE.replace("cooldown_s: 10", "cooldown_s: 3") + "log_level: DEBUG\n")
        proc.send_signal(signal.SIGHUP)
        log.expect("changed: alarm.cooldown_s, log_level")
        assert proc.poll() is None
        # 2. an invalid file: the running config stays, the error names key and line
        cfg.write_text(cfg.read_text().replace("cooldown_s: 3", "cooldown_s: -1"))
        proc.send_signal(signal.SIGHUP)
        log.expect("config reload failed; keeping the running config")
        assert "alarm.cooldown_s (line 9)" in log.text
        time.sleep(0.5)
        assert proc.poll() is None, "an invalid reload must not stop the appliance"
        # 3. a restart-only key is reported as such
        write_config(cfg, model_path, BASE + "events:\n  snapshots: true\n")
        proc.send_signal(signal.SIGHUP)
        log.expect("events.snapshots take effect after a restart")
        # 4. another camera: the source is reopened live
        write_config(cfg, model_path, BASE.replace("/dev/video98", "/dev/video96"))
        proc.send_signal(signal.SIGHUP)
        log.expect("camera settings changed: reopening the source")
        log.expect("no camera at /dev/video96")
        assert proc.poll() is None
    finally:
        rc = sigterm(proc, log)
    assert rc == 0, log.text[-3000:]
    assert "stopped (SIGTERM)" in log.text
    assert events.exists(), "the event log is created and closed on exit"
