#!/usr/bin/env python3
"""Play a WAV once with simpleaudio or sounddevice and wait for the end; print one JSON line.

Used for the sounddevice-vs-simpleaudio table in docs/runtime.md. Run it with each Python in a
fresh venv holding the package, with ``$HOME/.asoundrc`` pointing the ALSA default at the device
to try (``pcm.!default { type null }``: plays without hardware; ``{ type hw card 7 }``: missing)::

    HOME=/tmp/null-home venv/bin/python scripts/audio_probe.py simpleaudio edge/assets/alarm.wav; echo rc=$?

A crash in the library shows as the exit code (139: segmentation fault) with no JSON line.
"""
import json
import sys
import time
import wave


def main() -> None:
    lib, wav = sys.argv[1], sys.argv[2]
    out = {"python": sys.version.split()[0], "lib": lib}
    t0 = time.monotonic()
    try:
        if lib == "simpleaudio":
            import simpleaudio as sa
            wo = sa.WaveObject.from_wave_file(wav)
            t = time.monotonic()
            po = wo.play()
            out["play_call_ms"] = round((time.monotonic() - t) * 1000, 1)
            po.wait_done()
        else:
            import numpy as np
            import sounddevice as sd
            out["version"] = sd.__version__
            with wave.open(wav) as w:
                data, rate = np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getframerate()
            t = time.monotonic()
            sd.play(data, rate)
            out["play_call_ms"] = round((time.monotonic() - t) * 1000, 1)
            sd.wait()
        out["result"] = "played"
    except Exception as e:  # the device errors each library raises
        out["result"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    out["total_s"] = round(time.monotonic() - t0, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
