#!/usr/bin/env python3
"""Render the built-in alarm sound ``edge/assets/alarm.wav``: a two-tone chime and a spoken
"Please wear your mask" (espeak-ng), mono 16-bit PCM at 16 kHz.

Needs apt ``espeak-ng`` and ``sox``. Run from the repository root:

    python3 scripts/make_alarm_wav.py [--out edge/assets/alarm.wav] [--text "..."]
"""
import argparse
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

RATE = 16000


def chime(rate: int = RATE) -> np.ndarray:
    """Two soft bell tones (E6 then C6) with a few inharmonic partials and exponential decay."""
    out = []
    for f0, dur in ((1318.5, 0.45), (1046.5, 0.7)):
        t = np.arange(int(rate * dur)) / rate
        tone = sum(a * np.sin(2 * np.pi * f0 * k * t) * np.exp(-t * d)
                   for k, a, d in ((1.0, 1.0, 4.0), (2.0, 0.35, 7.0), (2.76, 0.15, 9.0), (0.5, 0.25, 3.0)))
        attack = np.minimum(1.0, t / 0.005)
        out.append(tone * attack)
    return np.concatenate(out)


def speech(text: str, rate: int = RATE) -> np.ndarray:
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install espeak-ng sox")
    with tempfile.TemporaryDirectory() as tmp:
        raw, res = Path(tmp) / "raw.wav", Path(tmp) / "res.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-a", "180", "-w", str(raw), text], check=True)
        subprocess.run(["sox", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(res)], check=True)
        with wave.open(str(res), "rb") as w:
            return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "edge" / "assets" / "alarm.wav")
    ap.add_argument("--text", default="Please wear your mask.")
    args = ap.parse_args()
    c = chime()
    c = 0.6 * c / np.abs(c).max()
    s = speech(args.text)
    s = 0.9 * s / max(np.abs(s).max(), 1e-9)
    gap = np.zeros(int(0.15 * RATE))
    audio = np.concatenate([np.zeros(int(0.05 * RATE)), c, gap, s, np.zeros(int(0.1 * RATE))])
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(args.out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    print(f"wrote {args.out}: {len(pcm) / RATE:.2f} s, {args.out.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
