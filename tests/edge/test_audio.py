"""The speaker through a real ALSA null device (no sound card needed), and through a missing device.

Each case runs in a fresh Python process: PortAudio reads the ALSA configuration (``$HOME/.asoundrc``)
when it initialises, so HOME must be set before ``sounddevice`` loads."""
from __future__ import annotations

import json
import subprocess
import sys
import wave

import numpy as np
import pytest

from edge.audio import DEFAULT_SOUND, load_wav
from edge_helpers import REPO, alsa_home, run_env

PLAYER_SCRIPT = r"""
import json, logging, sys, time
logging.basicConfig(level=logging.INFO)
from edge.audio import AlarmPlayer
p = AlarmPlayer(volume=0.5, retry_s=float(sys.argv[1]))
out = {"duration": p.duration}
t = time.monotonic(); out["first"] = p.play(); out["play_call_s"] = time.monotonic() - t
time.sleep(0.2)
out["second_while_busy"] = p.play()
p.wait(10)
out["after"] = {"played": p.played, "failed": p.failed, "skipped": p.skipped, "device_ok": p.device_ok}
time.sleep(float(sys.argv[2]))
out["third"] = p.play(); p.wait(10)
out["end"] = {"played": p.played, "failed": p.failed, "skipped": p.skipped}
p.close()
print(json.dumps(out))
"""


def run_player(tmp_path, pcm, retry_s=0.3, sleep_s=0.5):
    home = alsa_home(tmp_path, pcm)
    r = subprocess.run([sys.executable, "-c", PLAYER_SCRIPT, str(retry_s), str(sleep_s)], cwd=str(REPO),
                       env=run_env(home), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


def test_builtin_alarm_sound_is_small_mono_16k_speech_length():
    data, rate = load_wav(DEFAULT_SOUND)
    assert rate == 16000 and data.shape[1] == 1
    assert 1.5 < len(data) / rate < 6.0
    assert DEFAULT_SOUND.stat().st_size < 200 * 1024
    assert np.abs(data).max() > 0.5  # not silent
    with wave.open(str(DEFAULT_SOUND)) as w:
        assert w.getsampwidth() == 2


def test_alarm_plays_once_on_a_null_device_without_overlap(tmp_path):
    out, log = run_player(tmp_path, "{ type null }", sleep_s=0.0)
    assert out["first"] is True and out["play_call_s"] < 0.1, "play() must not block"
    assert out["second_while_busy"] is False, "a second alarm must not overlap the first"
    assert out["after"] == {"played": 1, "failed": 0, "skipped": 1, "device_ok": True}
    assert out["third"] is True and out["end"]["played"] == 2
    assert "sound device unavailable" not in log


def test_missing_device_is_logged_once_and_retried_later(tmp_path):
    # the default device is a sound card that does not exist
    out, log = run_player(tmp_path, "{ type hw card 7 }", retry_s=0.3, sleep_s=0.5)
    assert out["first"] is True and out["play_call_s"] < 0.1
    assert out["after"]["played"] == 0 and out["after"]["failed"] == 1 and not out["after"]["device_ok"]
    assert out["end"]["failed"] == 2, "the device is tried again after retry_s"
    assert log.count("sound device unavailable") == 1, log


def test_bad_sound_file_is_rejected(tmp_path):
    from edge.audio import AlarmPlayer
    bad = tmp_path / "x.wav"
    bad.write_bytes(b"RIFF....not a wav")
    with pytest.raises(ValueError, match="not a PCM WAV"):
        AlarmPlayer(sound=bad)


def test_resample_keeps_pitch_and_length():
    from edge.audio import resample
    t = np.arange(16000) / 16000.0
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)[:, None]
    out = resample(tone, 16000, 48000)
    assert out.shape == (48000, 1) and out.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(out[:, 0]))
    assert abs(np.argmax(spectrum) * 48000 / len(out) - 440) < 2
