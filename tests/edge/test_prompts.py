"""The spoken prompt per alarm class: the built-in WAVs, the config (alarm.prompts), which file wins,
and playback of each class's clip through a real ALSA null device."""
from __future__ import annotations

import subprocess
import sys
import wave

import numpy as np
import pytest

from edge.audio import BUILTIN_PROMPTS, DEFAULT_SOUND, load_wav, prompt_paths
from edge.config import ConfigError, parse
from edge_helpers import REPO, alsa_home, run_env


def mono(path):
    """(samples,) float32 of a mono WAV and its rate."""
    data, rate = load_wav(path)
    return data[:, 0], rate


def test_builtin_prompts_are_small_mono_16k_and_differ():
    nose = BUILTIN_PROMPTS["mask_incorrect"]
    assert BUILTIN_PROMPTS["no_mask"] == DEFAULT_SOUND and nose.name == "cover_nose.wav" and nose.is_file()
    for p in BUILTIN_PROMPTS.values():
        data, rate = load_wav(p)
        assert rate == 16000 and data.shape[1] == 1 and 1.5 < len(data) / rate < 6.0
        assert p.stat().st_size < 200 * 1024 and np.abs(data).max() > 0.5
        with wave.open(str(p)) as w:
            assert w.getsampwidth() == 2
    a, _ = mono(DEFAULT_SOUND)
    b, _ = mono(nose)
    # the same chime opens both (first 1.2 s), the spoken words after it differ
    n = int(1.2 * 16000)
    assert np.abs(a[:n] - b[:n]).max() < 1e-3
    m = min(len(a), len(b))
    assert np.abs(a[n:m] - b[n:m]).mean() > 0.02


def test_prompt_precedence(tmp_path):
    own = tmp_path / "own.wav"
    assert prompt_paths() == BUILTIN_PROMPTS
    assert prompt_paths(sound=str(own)) == {"no_mask": own, "mask_incorrect": own}
    assert prompt_paths(sound=str(own), prompts={"no_mask": None, "mask_incorrect": "/x/nose.wav"}) == {
        "no_mask": own, "mask_incorrect": __import__("pathlib").Path("/x/nose.wav")}


def test_prompts_config_is_validated():
    cfg = parse("alarm:\n  classes: [no_mask, mask_incorrect]\n  prompts:\n    mask_incorrect: /srv/nose.wav\n")
    assert cfg.alarm.prompts.mask_incorrect == "/srv/nose.wav" and cfg.alarm.prompts.no_mask is None
    with pytest.raises(ConfigError, match=r"alarm\.prompts\.no_mask \(line 3\).*\.wav"):
        parse("alarm:\n  prompts:\n    no_mask: /srv/please.mp3\n")
    with pytest.raises(ConfigError, match=r"alarm\.prompts\.masked .*known keys: no_mask, mask_incorrect"):
        parse("alarm:\n  prompts:\n    masked: /srv/a.wav\n")


PLAY_SCRIPT = r"""
import logging, sys
logging.basicConfig(level=logging.INFO)
from edge.audio import AlarmPlayer
p = AlarmPlayer(volume=0.5, retry_s=1)
for cls in sys.argv[1:]:
    assert p.play(cls if cls != "-" else None), cls
    p.wait(10)
print(p.played)
p.close()
"""


def test_each_class_plays_its_own_prompt(tmp_path):
    r = subprocess.run([sys.executable, "-c", PLAY_SCRIPT, "mask_incorrect", "no_mask", "-"], cwd=str(REPO),
                       env=run_env(alsa_home(tmp_path)), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "3"
    played = [line.split("alarm sound played (")[1].split(",")[0] for line in r.stderr.splitlines()
              if "alarm sound played (" in line]
    assert played == ["cover_nose.wav", "alarm.wav", "alarm.wav"], r.stderr


def test_a_bad_prompt_file_is_rejected_and_the_running_prompts_stay(tmp_path):
    from edge.audio import AlarmPlayer
    bad = tmp_path / "nose.wav"
    bad.write_bytes(b"RIFF....not a wav")
    p = AlarmPlayer()
    try:
        before = {c: v[0] for c, v in p.clips.items()}
        assert before == BUILTIN_PROMPTS
        with pytest.raises(ValueError, match="not a PCM WAV"):
            p.configure(prompts={"mask_incorrect": str(bad)})
        assert {c: v[0] for c, v in p.clips.items()} == before
        with pytest.raises(FileNotFoundError):
            AlarmPlayer(prompts={"no_mask": str(tmp_path / "missing.wav")})
    finally:
        p.close()
