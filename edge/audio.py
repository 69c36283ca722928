"""The speaker: plays the alarm WAV in its own thread, never blocking the frame loop.

* :meth:`AlarmPlayer.play` returns at once; while a clip is still playing a new
  request is ignored (no overlapping alarms).
* One spoken prompt per alarm class (:func:`prompt_paths`): ``alarm.prompts.<class>``, else
  ``alarm.sound``, else the built-in clip of the class (``assets/alarm.wav``: "Please wear your
  mask", ``assets/cover_nose.wav``: "Please cover your nose"; both rendered by
  ``scripts/make_alarm_wav.py``).
* The volume is a linear gain applied to the samples.
* A missing or failing sound device is logged once, retried after ``retry_s`` seconds,
  and never raises into the caller: display and event log keep working.
* :meth:`AlarmPlayer.submit` returns a :class:`PlayRequest` that tells, once the audio thread has
  tried, whether the clip was really handed to a working output device (the stream opened and
  started) or why not: the event log's ``sounded``/``reason`` come from it.

Playback goes through ``sounddevice`` (PortAudio, apt ``libportaudio2``) to the ALSA
default device.
"""
from __future__ import annotations

import logging
import os
import struct
import threading
import time
import wave
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_SOUND = Path(__file__).with_name("assets") / "alarm.wav"
#: the built-in prompt per alarm class
BUILTIN_PROMPTS = {"no_mask": DEFAULT_SOUND, "mask_incorrect": Path(__file__).with_name("assets") / "cover_nose.wav"}


def prompt_paths(sound: Union[str, Path, None] = None,
                 prompts: Optional[Dict[str, Optional[str]]] = None) -> Dict[str, Path]:
    """The WAV file announced for each alarm class: ``prompts[cls]`` if set, else ``sound`` if set, else
    :data:`BUILTIN_PROMPTS` (``prompts`` is ``alarm.prompts`` as a dict, ``sound`` is ``alarm.sound``)."""
    prompts = prompts or {}
    out = {}
    for cls, builtin in BUILTIN_PROMPTS.items():
        chosen = prompts.get(cls) or sound
        out[cls] = Path(chosen).expanduser() if chosen else builtin
    return out


def load_wav(path, name: Optional[str] = None) -> Tuple[np.ndarray, int]:
    """A 16-bit PCM WAV -> ((frames, channels) float32 in [-1, 1], sample rate).

    ``path`` is a file name or a binary file object (``name`` then names it in errors). A file name is
    opened only if it is a regular file (:func:`edge.validate.open_regular`: a FIFO or a device never blocks).

    Raises:
        ValueError: not a 16-bit PCM WAV (also an empty, truncated or non-PCM file).
        OSError: the file cannot be opened or read, or is not a regular file.
    """
    if hasattr(path, "read"):
        f, name = path, (name if name is not None else getattr(path, "name", "the sound"))
    else:
        from edge.validate import open_regular
        name = name or str(path)
        f = os.fdopen(open_regular(path), "rb")
    try:
        with wave.open(f, "rb") as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"{name}: only 16-bit PCM WAV is supported, got {8 * w.getsampwidth()}-bit")
            rate, ch = w.getframerate(), w.getnchannels()
            if rate <= 0 or ch <= 0:
                raise ValueError(f"{name}: a WAV with {ch} channel(s) at {rate} Hz")
            data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    except (wave.Error, EOFError, struct.error) as e:
        raise ValueError(f"{name}: not a PCM WAV file ({str(e) or 'the file ends early'})") from None
    finally:
        f.close()
    if len(data) % ch:
        data = data[:len(data) - len(data) % ch]
    return (data.reshape(-1, ch).astype(np.float32) / 32768.0), rate


def resample(samples: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """(frames, channels) float32 at ``rate`` -> the same sound at ``new_rate`` (linear interpolation)."""
    if rate == new_rate or len(samples) == 0:
        return samples
    n = int(round(len(samples) * new_rate / float(rate)))
    t_old = np.arange(len(samples)) / float(rate)
    t_new = np.arange(n) / float(new_rate)
    return np.stack([np.interp(t_new, t_old, samples[:, c]) for c in range(samples.shape[1])],
                    axis=1).astype(np.float32)


#: why a clip was not played: no working output device (none, a failed open, or the retry pause after one)
NO_SPEAKER = "no_speaker"
#: ... or another clip was still playing (one announcement covers a group, like the cooldown)
BUSY = "cooldown"


class PlayRequest:
    """The outcome of one :meth:`AlarmPlayer.submit`: :attr:`done` is set once known; then :attr:`sounded` is
    True when the clip was handed to a working output device (the stream started), else :attr:`reason`
    (:data:`NO_SPEAKER`, :data:`BUSY`) and :attr:`error` say why."""

    def __init__(self, cls: Optional[str] = None):
        self.cls = cls
        self.accepted = False  # handed to the audio thread (not refused at once: busy, retry pause)
        self.done = threading.Event()
        self.sounded = False
        self.reason = None  # type: Optional[str]
        self.error = ""

    def finish(self, sounded: bool, reason: Optional[str] = None, error: str = "") -> "PlayRequest":
        self.sounded, self.reason, self.error = sounded, (None if sounded else reason), error
        self.done.set()
        return self


class AlarmPlayer:
    """Non-blocking, non-overlapping alarm playback.

    Args:
        sound: WAV file (16-bit PCM); ``None``: the built-in chime + "Please wear your mask".
        volume: linear gain 0-1.
        retry_s: after a device error, skip playback for this long before trying again.
        prompts: per-class WAV files (``alarm.prompts`` as a dict; see :func:`prompt_paths`);
            ``play(cls)`` announces the class's clip.
    """

    def __init__(self, sound: Union[str, Path, None] = None, volume: float = 0.8, retry_s: float = 30.0,
                 prompts: Optional[Dict[str, Optional[str]]] = None):
        self.played = 0            # clips played to the end
        self.failed = 0            # attempts that hit a device error
        self.skipped = 0           # requests ignored: busy, or device in its retry pause
        self.device_ok = True
        self._failed_at = None     # type: Optional[float]
        self._logged_failure = False
        self._sd = None
        self._busy = threading.Event()
        self._request = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._clip = None  # type: Optional[str]
        self._pending = None  # type: Optional[PlayRequest]
        self.configure(sound, volume, retry_s, prompts)
        self._thread = threading.Thread(target=self._run, name="audio", daemon=True)
        self._thread.start()

    def configure(self, sound: Union[str, Path, None] = None, volume: float = 0.8, retry_s: float = 30.0,
                  prompts: Optional[Dict[str, Optional[str]]] = None) -> None:
        """Load a (new) sound file, per-class prompts and volume; raises ``ValueError``/``OSError`` for a bad
        file (nothing is changed then)."""
        path = Path(sound).expanduser() if sound else DEFAULT_SOUND
        data, rate = load_wav(path)
        clips = {}
        for cls, p in prompt_paths(sound, prompts).items():
            d, r = (data, rate) if p == path else load_wav(p)
            clips[cls] = (p, np.clip(d * float(volume), -1.0, 1.0).astype(np.float32), r, len(d) / float(r))
        with self._lock:
            self.path, self.rate, self.volume, self.retry_s = path, rate, float(volume), float(retry_s)
            self.samples = np.clip(data * self.volume, -1.0, 1.0).astype(np.float32)
            self.duration = len(data) / float(rate)
            self.clips = clips  # type: Dict[str, Tuple[Path, np.ndarray, int, float]]

    @property
    def busy(self) -> bool:
        return self._busy.is_set()

    def play(self, cls: Optional[str] = None) -> bool:
        """Start the alarm clip (the prompt of alarm class ``cls``; ``None`` or an unknown class: the
        ``sound`` clip) in the background. Returns False (and does nothing) while one is still playing or
        the device is in its retry pause."""
        return self.submit(cls).accepted

    def submit(self, cls: Optional[str] = None) -> PlayRequest:
        """Like :meth:`play`, returning the request: already done (not sounded, ``reason``) when a clip is
        still playing or the device is in its retry pause; otherwise done by the audio thread as soon as the
        clip is handed to the device or the device fails (milliseconds)."""
        req = PlayRequest(cls)
        if self._busy.is_set():
            self.skipped += 1
            return req.finish(False, BUSY, "another clip is still playing")
        if self._failed_at is not None and time.monotonic() - self._failed_at < self.retry_s:
            self.skipped += 1
            log.debug("sound device failed %.0f s ago; not retrying yet", time.monotonic() - self._failed_at)
            return req.finish(False, NO_SPEAKER, f"the sound device failed {time.monotonic() - self._failed_at:.0f} "
                                                 f"s ago; retried after {self.retry_s:.0f} s")
        self._busy.set()
        self._clip = cls
        req.accepted = True
        self._pending = req
        self._request.set()
        return req

    def wait(self, timeout: float = 10.0) -> bool:
        """Wait until no clip is playing; True if idle."""
        end = time.monotonic() + timeout
        while self._busy.is_set() and time.monotonic() < end:
            time.sleep(0.01)
        return not self._busy.is_set()

    def close(self) -> None:
        self._stop.set()
        self._request.set()
        self._thread.join(2.0)

    def _device(self):
        """The sounddevice module, with PortAudio re-initialised after a failure (so a device plugged in
        later is found)."""
        if self._sd is None:
            import sounddevice  # lazy: raises OSError when libportaudio2 is missing
            self._sd = sounddevice
        elif self._failed_at is not None:
            self._sd._terminate()
            self._sd._initialize()
        return self._sd

    def _run(self) -> None:
        while True:
            self._request.wait()
            self._request.clear()
            if self._stop.is_set():
                if self._pending is not None:
                    self._pending.finish(False, NO_SPEAKER, "the player was closed")
                return
            req, self._pending = self._pending, None
            req = req or PlayRequest(self._clip)
            with self._lock:
                samples, rate, duration, name = self.samples, self.rate, self.duration, self.path.name
                if self._clip in self.clips:
                    p, samples, rate, duration = self.clips[self._clip]
                    name = p.name
            t0 = time.monotonic()
            try:
                sd = self._device()
                try:
                    sd.play(samples, rate)  # opens and starts the stream (raises when the device fails)
                except sd.PortAudioError as e:  # a raw hw: device may not take 16 kHz: use its own rate
                    if "sample rate" not in str(e).lower():
                        raise
                    dev_rate = int(sd.query_devices(kind="output")["default_samplerate"])
                    sd.play(resample(samples, rate, dev_rate), dev_rate)
                req.finish(True)  # the clip is in the device's hands
                sd.wait()
            except Exception as e:  # OSError (no PortAudio), sounddevice.PortAudioError (no device), ...
                if not req.done.is_set():
                    req.finish(False, NO_SPEAKER, str(e).splitlines()[0] if str(e) else type(e).__name__)
                self.failed += 1
                self.device_ok = False
                self._failed_at = time.monotonic()
                if not self._logged_failure:
                    log.warning("sound device unavailable (%s); alarms stay silent, retrying every %.0f s",
                                str(e).splitlines()[0] if str(e) else type(e).__name__, self.retry_s)
                    self._logged_failure = True
                self._busy.clear()
                continue
            log.info("alarm sound played (%s, %.1f s, volume %.2f)", name, duration, self.volume)
            if self._failed_at is not None:
                log.info("sound device is back")
            self._failed_at = None
            self._logged_failure = False
            self.device_ok = True
            # a device that does not pace playback (ALSA null) still holds the clip's length: no overlap
            rest = duration - (time.monotonic() - t0)
            if rest > 0:
                self._stop.wait(rest)
            self.played += 1
            self._busy.clear()


def sound_info(path: Union[str, Path, None] = None) -> str:
    data, rate = load_wav(path or DEFAULT_SOUND)
    return f"{os.fspath(path or DEFAULT_SOUND)}: {len(data) / rate:.2f} s, {rate} Hz, {data.shape[1]} ch"
