"""What check-config accepts starts, and what it refuses never starts (issue 19): files that used to pass
check-config and then stop the next start (a garbage model, a half-truncated model, a WAV named as the
model, a sound that is not PCM, a save_video folder that does not exist), OSErrors that used to crash it (a
300-character path, a symlink loop), FIFOs and devices that used to block it, and errors that used to print
another file's content. Every file here is made by the test."""
from __future__ import annotations

import os
import signal
import struct
import subprocess
import threading
import time
import wave
from pathlib import Path

import pytest

from edge import cli
from edge import config as C
from edge.pipeline import ReloadJob
from edge_helpers import DAEMON_BASE as BASE, LogReader, REPO, alsa_home, maskwatch_cmd, run_env, sigterm, write_config

ASSETS = REPO / "edge" / "assets"


def _float_wav(path: Path) -> Path:
    """A valid 32-bit float WAV (format 3): a real sound file, but not 16-bit PCM."""
    data = struct.pack("<100f", *([0.1] * 100))
    fmt = struct.pack("<HHIIHH", 3, 1, 16000, 64000, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def _bad_files(tmp_path: Path, model_path: Path):
    """(name, YAML text, key, line, words of the error) for each file that used to pass check-config."""
    d = tmp_path / "files"
    d.mkdir()
    (d / "garbage.onnx").write_bytes(os.urandom(1024))
    raw = model_path.read_bytes()
    (d / "half.onnx").write_bytes(raw[:len(raw) // 2])
    (d / "wav.onnx").write_bytes((ASSETS / "alarm.wav").read_bytes())
    (d / "noise.wav").write_bytes(os.urandom(2000))
    (d / "text.wav").write_text("not a sound\n")
    (d / "empty.wav").write_bytes(b"")
    _float_wav(d / "float.wav")
    os.mkfifo(str(d / "fifo.onnx"))
    os.mkfifo(str(d / "fifo.wav"))
    os.symlink("loop2.onnx", str(d / "loop1.onnx"))
    os.symlink("loop1.onnx", str(d / "loop2.onnx"))
    (d / "folder.onnx").mkdir()
    long_name = "a" * 300
    clf = C.default_model_path("mask_classifier") if "mask_classifier" in C.released_models("classifier") else None
    cases = [
        ("garbage model", f"model:\n  path: {d}/garbage.onnx\n", "model.path", 2, "ONNX Runtime cannot load it"),
        ("half a model", f"model:\n  path: {d}/half.onnx\n", "model.path", 2, "ONNX Runtime cannot load it"),
        ("a WAV named as the model", f"model:\n  path: {d}/wav.onnx\n", "model.path", 2, "ONNX Runtime cannot"),
        ("a FIFO as the model", f"model:\n  path: {d}/fifo.onnx\n", "model.path", 2, "it is a FIFO"),
        ("a folder as the model", f"model:\n  path: {d}/folder.onnx\n", "model.path", 2, "it is a directory"),
        ("a symlink loop", f"model:\n  path: {d}/loop1.onnx\n", "model.path", 2, "Too many levels of symbolic"),
        ("300-char model path", f"model:\n  path: {d}/{long_name}.onnx\n", "model.path", 2, "File name too long"),
        ("random bytes as sound", f"alarm:\n  sound: {d}/noise.wav\n", "alarm.sound", 2, "not a PCM WAV"),
        ("text as sound", f"alarm:\n  sound: {d}/text.wav\n", "alarm.sound", 2, "not a PCM WAV"),
        ("empty sound", f"alarm:\n  sound: {d}/empty.wav\n", "alarm.sound", 2, "not a PCM WAV"),
        ("float WAV", f"alarm:\n  sound: {d}/float.wav\n", "alarm.sound", 2, "not a PCM WAV"),
        ("a FIFO as the sound", f"alarm:\n  sound: {d}/fifo.wav\n", "alarm.sound", 2, "it is a FIFO"),
        ("300-char sound path", f"alarm:\n  sound: {d}/{long_name}.wav\n", "alarm.sound", 2, "File name too long"),
        ("bad prompt", f"alarm:\n  prompts:\n    mask_incorrect: {d}/noise.wav\n", "alarm.prompts.mask_incorrect", 3,
         "not a PCM WAV"),
        ("save_video in a missing folder", f"display:\n  save_video: {d}/nope/out.mp4\n", "display.save_video", 2,
         "folder does not exist"),
        ("events in /dev/full", "events:\n  path: /dev/full\n", "events.path", 2, "it is a character device"),
        ("events into a FIFO", f"events:\n  path: {d}/fifo.wav\n", "events.path", 2, "it is a FIFO"),
        ("counts into a folder", f"events:\n  counts_path: {d}\n", "events.counts_path", 2, "it is a directory"),
    ]
    if clf is not None:
        cases.append(("the classifier as the detector", f"model:\n  path: {clf}\n", "model.path", 2,
                      "role 'classifier'"))
    return cases


def test_every_file_check_config_refuses_is_refused_by_run_and_reload_too(tmp_path, model_path, capsys):
    """check-config, run and a reload run one check: each bad file is a clear error naming key and line in
    all three (rc 2, no traceback); check-config answers at once even for a FIFO."""
    for name, text, key, line, words in _bad_files(tmp_path, model_path):
        cfg = tmp_path / "c.yaml"
        cfg.write_text(text, encoding="utf-8")
        t0 = time.monotonic()
        rc = cli.main(["check-config", str(cfg)])
        took = time.monotonic() - t0
        err = capsys.readouterr().err
        assert rc == 2, (name, err)
        assert f"{key} (line {line})" in err and words in err, (name, err)
        assert "Traceback" not in err and took < 20, (name, took)
        assert max(len(s) for s in err.splitlines()) <= C.MAX_ERROR_CHARS + 2, (name, err)
        # run refuses the same file before anything starts (no model loaded, no file created)
        rc = cli.main(["run", "-c", str(cfg), "--headless", "--max-frames", "1", "--source", str(tmp_path)])
        err = capsys.readouterr().err
        assert rc == 2 and f"{key} (line {line})" in err and words in err, (name, rc, err)
        # and so does a reload (the journal gets the same line)
        job = ReloadJob(str(cfg), {}, C.Config()).start()
        assert job.done.wait(20), name
        assert job.config is None and f"{key} (line {line})" in job.error and words in job.error, (name, job.error)
    assert not Path("/dev/counts.jsonl").exists(), "events.path: /dev/full must not create /dev/counts.jsonl"


def test_what_check_config_accepts_starts(tmp_path, model_path, videos, capsys):
    """A config naming real files (model, classifier when released, a PCM prompt, save_video in a folder
    that exists, events in a fresh folder): check-config OK, and run starts and processes frames."""
    out = tmp_path / "out"
    out.mkdir()
    extra = (f"alarm:\n  sound: {ASSETS / 'alarm.wav'}\n  prompts:\n    mask_incorrect: {ASSETS / 'cover_nose.wav'}\n"
             f"display:\n  enabled: false\n  save_video: {out}/annotated.avi\n"
             f"events:\n  path: {tmp_path}/new/state/events.jsonl\n")
    if "mask_classifier" in C.released_models("classifier"):
        extra = "log_level: INFO\n" + extra
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"model:\n  path: {model_path}\n  classifier: mask_classifier\n{extra}", encoding="utf-8")
    else:
        cfg = write_config(tmp_path / "c.yaml", model_path, extra)
    assert cli.main(["check-config", str(cfg)]) == 0, capsys.readouterr().err
    assert "OK" in capsys.readouterr().out
    rc = cli.main(["run", "-c", str(cfg), "--source", str(videos["unmasked"]), "--fast", "--max-frames", "5"])
    assert rc == 0, capsys.readouterr().err
    assert (out / "annotated.avi").stat().st_size > 0
    assert (tmp_path / "new" / "state" / "events.jsonl").exists()


SECRET = """TOPSECRET_KEY_abcdefghijklmnopqrstuvwxyz_0123456789: TOPSECRET_VALUE_ZYXWVUTSRQPONMLKJIHGFEDCBA
db_password_is_hunter2_and_more_TOPSECRET_words_here: 1
camera:
  TOPSECRET_NESTED_KEY_0123456789_abcdefghijklmnop: 2
  source: {unused: TOPSECRET_MAPPING_VALUE_0123456789_abcdefghijk}
log_level: TOPSECRET_LOGLEVEL_abcdefghijklmnopqrstuvwxyz
alarm:
  quiet_hours: ["TOPSECRET_QUIET_0123456789_abcdefghijklmnopqrstuvwxyz"]
  sound: TOPSECRET_SOUND_PATH_0123456789_abcdefghijklmnopqrstuvwxyz_0123456789_abcdefghijklmnopqrstuvwxyz
  prompts:
    no_mask: TOPSECRET_PROMPT_0123456789_abcdefghijklmnopqrstuvwxyz
model:
  path: TOPSECRET_MODEL_NAME_0123456789_abcdefghijklmnopqrstuvwxyz
"""
PASSWD = "root:$6$TOPSECRETSALT$TOPSECRETHASHabcdefghijklmnopqrstuvwxyz0123456789:19000:0:99999:7:::\n" * 3


def _leaks(text: str, secret: str, allowed: int) -> list:
    """Every run of more than ``allowed`` characters of a secret line (from TOPSECRET on) found in ``text``."""
    found = []
    for line in secret.splitlines():
        for word in line.replace(":", " ").replace('"', " ").replace("[", " ").replace("]", " ").replace(
                "{", " ").replace("}", " ").replace(",", " ").split():
            if "TOPSECRET" not in word:
                continue
            for i in range(0, max(1, len(word) - allowed)):
                piece = word[i:i + allowed + 1]
                if len(piece) > allowed and piece in text:
                    found.append(piece)
    return found


@pytest.mark.parametrize("content", [SECRET, PASSWD], ids=["yaml-like secret", "shadow-like secret"])
def test_a_config_symlinked_to_a_root_only_file_never_prints_it(tmp_path, content, capsys):
    """The config is a symlink to a mode-000 file the test writes (root reads it anyway): check-config and a
    reload echo at most ECHO_CHARS characters of any key or value of it, escaped (the file is not a
    valid config, so no file check runs and no path is echoed)."""
    secret = tmp_path / "shadow"
    secret.write_text(content, encoding="utf-8")
    os.chmod(str(secret), 0)
    cfg = tmp_path / "c.yaml"
    os.symlink(str(secret), str(cfg))
    rc = cli.main(["check-config", str(cfg)])
    err = capsys.readouterr().err
    assert rc == 2 and "INVALID" in err
    job = ReloadJob(str(cfg), {}, C.Config()).start()
    assert job.done.wait(20) and job.config is None
    for text in (err, job.error):
        assert not _leaks(text, content, C.ECHO_CHARS), text
    if content is SECRET:
        assert "log_level (line 6)" in err and "camera.'TOPSECRET_NESTED_KEY'...(48 characters) (line 4)" in err, err


def test_unknown_keys_get_did_you_mean():
    with pytest.raises(C.ConfigError) as ei:
        C.parse("camra:\n  fps: 10\nalarm:\n  cooldown: 3\n")
    text = "\n".join(ei.value.errors)
    assert "camra (line 1): unknown key; did you mean 'camera'?" in text
    assert "alarm.cooldown (line 4): unknown key; did you mean 'cooldown_s'?" in text


def test_a_fifo_config_is_refused_at_once(tmp_path):
    fifo = tmp_path / "c.yaml"
    os.mkfifo(str(fifo))
    t0 = time.monotonic()
    r = subprocess.run(maskwatch_cmd() + ["check-config", str(fifo)], capture_output=True, text=True, timeout=60,
                       cwd=str(REPO))
    assert r.returncode == 2 and "not a regular file: it is a FIFO" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 30
    with pytest.raises(C.ConfigError, match="it is a character device"):
        C.load("/dev/zero")


def test_fifo_config_on_sighup_and_200_sighups_keep_the_daemon_reloading(tmp_path, model_path):
    """A FIFO at the config path: the reload is refused at once (the reload thread does not hang) and later
    SIGHUPs still work. Then 200 SIGHUPs as fast as they can be sent: no 'Logging error' (the handler only
    sets a flag), and the daemon still reloads and stops cleanly."""
    cfg = write_config(tmp_path / "c.yaml", model_path, BASE)
    proc = subprocess.Popen(maskwatch_cmd() + ["run", "-c", str(cfg), "--headless", "--events",
                                               str(tmp_path / "ev.jsonl")],
                            cwd=str(REPO), env=run_env(alsa_home(tmp_path)), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    log = LogReader(proc.stderr)
    log.start()
    try:
        log.expect("running: model")
        good = cfg.read_text()
        cfg.unlink()
        os.mkfifo(str(cfg))
        proc.send_signal(signal.SIGHUP)
        log.expect("config reload failed; keeping the running config", timeout=30)
        assert "not a regular file: it is a FIFO" in log.text
        cfg.unlink()
        cfg.write_text(good.replace("cooldown_s: 10", "cooldown_s: 4"))
        proc.send_signal(signal.SIGHUP)
        log.expect("changed: alarm.cooldown_s", timeout=60)
        for _ in range(200):
            proc.send_signal(signal.SIGHUP)
        cfg.write_text(good.replace("cooldown_s: 10", "cooldown_s: 6"))
        time.sleep(1.0)
        proc.send_signal(signal.SIGHUP)
        end = time.monotonic() + 60
        while log.text.count("changed: alarm.cooldown_s") < 2 and time.monotonic() < end:
            time.sleep(0.1)
        assert log.text.count("changed: alarm.cooldown_s") >= 2, log.text[-3000:]
    finally:
        rc = sigterm(proc, log)
    assert rc == 0, log.text[-3000:]
    assert "Logging error" not in log.text and "reentrant call" not in log.text, log.text[-3000:]
    assert "stopped (SIGTERM)" in log.text


def test_200_sighups_while_the_loop_logs_every_frame_give_no_logging_error(tmp_path, model_path, videos):
    """The old handler logged 'SIGHUP: reloading' itself: a signal landing while the frame loop was inside
    the log stream's write gave '--- Logging error --- RuntimeError: reentrant call' (22 blocks for 200
    SIGHUPs here, with DEBUG lines every frame). Now the handler only sets a flag."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"log_level: DEBUG\nmodel:\n  path: {model_path}\ncamera:\n  source: {videos['unmasked']}\n",
                   encoding="utf-8")
    proc = subprocess.Popen(maskwatch_cmd() + ["run", "-c", str(cfg), "--headless", "--events",
                                               str(tmp_path / "ev.jsonl")],
                            cwd=str(REPO), env=run_env(alsa_home(tmp_path)), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    log = LogReader(proc.stderr)
    log.start()
    try:
        log.expect("running: model")
        for _ in range(200):
            if proc.poll() is not None:
                break
            proc.send_signal(signal.SIGHUP)
            time.sleep(0.0135)
        rc = proc.wait(120)
    finally:
        if proc.poll() is None:
            sigterm(proc, log)
    log.join(5)
    assert rc == 0, log.text[-3000:]
    assert "config reloaded" in log.text, log.text[-3000:]
    assert "Logging error" not in log.text and "reentrant call" not in log.text, log.text[-3000:]
