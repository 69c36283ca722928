"""The appliance's top loop: capture -> detect -> track -> alarm policy -> sinks.

Read :meth:`Pipeline.run` first: the whole data path is on one page. Everything it
calls lives in its own module (sources, detector, tracking, policy, overlay, display,
audio, events, systemd).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Deque, Dict, List, Optional

import numpy as np

from edge.audio import NO_SPEAKER, AlarmPlayer, PlayRequest
from edge.backends.base import Backend
from edge.classifier import SecondaryClassifier, load_secondary
from edge.config import Config, ConfigError, diff, load
from edge.detector import Detector, load_backend
from edge.display import Display, VideoSink, display_available, open_display
from edge.events import EventLog, HourlyCounts, save_snapshot
from edge.model import model_label
from edge.mqtt import MqttPublisher, start_publisher
from edge.overlay import BANNERS, Overlay
from edge.policy import AlarmPolicy, size_limit_warnings
from edge.sources import Capture, Source, SourceError, make_source
from edge.systemd import Notifier
from edge.telemetry import Telemetry
from edge.tracking import Tracker
from edge.types import AlarmEvent

log = logging.getLogger(__name__)

#: the benchmark's stages, in data-path order
STAGES = ("capture", "preprocess", "inference", "decode_cluster", "track_policy", "classify", "overlay")

#: RunResult.alarms keeps the newest this many alarms (about 640 B each); a week-long run stays small
MAX_ALARMS_KEPT = 1000

#: an alarm's event waits at most this long (s) for the speaker to say whether its clip was handed to the device
SOUND_DECISION_S = 5.0
#: a reload whose reading has not finished after this long is given up (logged; the next SIGHUP starts anew)
RELOAD_TIMEOUT_S = 30.0

#: config keys that only take effect after a restart
RESTART_KEYS = ("model.path", "model.classifier", "model.backend", "model.engine", "model.threads", "display.enabled",
                "display.fullscreen", "display.window_", "display.save_video", "events.", "telemetry.", "mqtt")


@dataclass
class RunOptions:
    """Run-time switches that are not part of the config file.

    Attributes:
        max_frames: stop after this many processed frames (None: until the source ends or SIGTERM).
        config_path: the file SIGHUP reloads (None: built-in defaults, nothing to reload).
        overrides: command-line overrides re-applied on every reload (see :func:`with_overrides`).
        draw: draw the overlay even without a display or video sink (the benchmark measures it).
        sound: play alarms (the benchmark turns it off).
    """

    max_frames: Optional[int] = None
    config_path: Optional[str] = None
    overrides: Dict[str, object] = field(default_factory=dict)
    draw: bool = False
    sound: bool = True


@dataclass
class RunResult:
    frames: int = 0                 # frames processed
    captured: int = 0               # frames read from the source
    dropped: int = 0                # frames skipped because processing was slower (latest-frame mode)
    reconnects: int = 0
    alarms: List[AlarmEvent] = field(default_factory=list)  # the most recent MAX_ALARMS_KEPT alarms
    counts: Dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0            # from the first to the last processed frame
    reason: str = ""                # why the loop ended
    alarms_total: int = 0           # every alarm of the run (``alarms`` keeps only the newest)
    alarms_sounded: int = 0         # of those, the ones whose clip was handed to a working sound device

    def add_alarm(self, ev: AlarmEvent) -> None:
        """Keep ``ev``; ``alarms`` is bounded to :data:`MAX_ALARMS_KEPT` (the event log has them all)."""
        self.alarms_total += 1
        self.alarms.append(ev)
        if len(self.alarms) > MAX_ALARMS_KEPT:
            del self.alarms[:len(self.alarms) - MAX_ALARMS_KEPT]

    @property
    def fps(self) -> float:
        return (self.frames - 1) / self.seconds if self.frames > 1 and self.seconds > 0 else 0.0


def with_overrides(cfg: Config, source: Optional[str] = None, headless: bool = False, fast: bool = False,
                   events: Optional[str] = None, save_video: Optional[str] = None) -> Config:
    """``cfg`` with the command-line switches applied (validated like the file)."""
    d = cfg.model_dump()
    if source:
        d["camera"]["source"] = str(source)
    if fast:
        d["camera"]["realtime"] = False
    if headless:
        d["display"]["enabled"] = False
    if events:
        d["events"]["path"] = str(events)
    if save_video:
        d["display"]["save_video"] = str(save_video)
    return Config.model_validate(d)


class StageTimes:
    """Per-stage durations (s) of the most recent frames, for the benchmark and the log."""

    def __init__(self, keep: int = 20000):
        self.times = {s: collections.deque(maxlen=keep) for s in STAGES}  # type: Dict[str, Deque[float]]

    def add(self, stage: str, seconds: float) -> None:
        self.times.setdefault(stage, collections.deque(maxlen=20000)).append(seconds)

    def summary(self) -> Dict[str, Dict[str, float]]:
        out = {}
        for s, v in self.times.items():
            if v:
                a = np.asarray(v) * 1000.0
                out[s] = {"ms_median": round(float(np.median(a)), 3), "ms_p95": round(float(np.percentile(a, 95)), 3),
                          "n": len(a)}
        return out


class FpsMeter:
    """Smoothed processing rate (frames/s) and the time span from the first to the last frame."""

    def __init__(self) -> None:
        self.fps = 0.0
        self.first = self.last = None  # type: Optional[float]

    def tick(self) -> float:
        now = time.monotonic()
        if self.last is not None:
            rate = 1.0 / max(now - self.last, 1e-6)
            self.fps = 0.9 * self.fps + 0.1 * rate if self.fps else rate
        self.first = self.first if self.first is not None else now
        self.last = now
        return self.fps

    @property
    def span(self) -> float:
        return (self.last - self.first) if self.first is not None and self.last is not None else 0.0


class ReloadJob:
    """Reads and validates the config file in a background thread, so a SIGHUP never stalls the frame loop
    (the file is bounded too: :data:`edge.config.MAX_CONFIG_BYTES`).

    After :attr:`done` is set, :attr:`config` is the new :class:`Config` or :attr:`error` says why not
    (an empty file, a missing ``model.path``/``alarm.sound`` or an unreadable WAV are errors too).
    Everything the file can raise is caught here.
    """

    def __init__(self, path: str, overrides: Dict[str, object], old: Config):
        self.path, self.overrides, self.old = path, overrides, old
        self.config = None  # type: Optional[Config]
        self.error = ""
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="config-reload", daemon=True)

    def start(self) -> "ReloadJob":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:  # the check check-config and a start run (edge.validate): model, classifier, sounds, output files
            self.config = load(self.path, check_files=True, allow_empty=False,
                               transform=lambda c: with_overrides(c, **self.overrides))
        except ConfigError as e:
            self.error = str(e)
        except Exception as e:  # anything else a bad file can cause (a broken WAV, a validator error)
            self.error = f"{self.path}: {type(e).__name__}: {e}"[:2000]
        finally:
            self.done.set()


class Pipeline:
    """The appliance. ``run()`` blocks until the source ends, ``max_frames``, the window closes or :meth:`stop`.

    Args:
        cfg: the configuration (with command-line overrides applied).
        opts: run-time switches.
        backend: an already loaded backend (default: load ``cfg.model``).
        source: a source object (default: :func:`edge.sources.make_source` of ``cfg.camera.source``).
        notifier: sd_notify sender (default: from ``$NOTIFY_SOCKET``).
    """

    def __init__(self, cfg: Config, opts: Optional[RunOptions] = None, backend: Optional[Backend] = None,
                 source: Optional[Source] = None, notifier: Optional[Notifier] = None):
        self.cfg = cfg
        self.opts = opts or RunOptions()
        self.backend = backend
        self.source = source
        self.notifier = notifier or Notifier()
        self.stages = StageTimes()
        self.result = RunResult()
        self._stop = threading.Event()
        self._reload = False  # a reload is asked for (plain flags: a signal handler only sets them)
        self._signal_hup = 0  # SIGHUPs received (set by on_signal, read by the frame loop)
        self._signal_stop = None  # type: Optional[str]  # SIGTERM/SIGINT received (set by on_signal)
        self._reload_job = None  # type: Optional[ReloadJob]
        self._reload_t0 = 0.0
        self.stop_reason = ""
        self.capture = None  # type: Optional[Capture]
        self.tracker = self.counts = self.events = self.speaker = self.display = self.video = None
        self.secondary = None  # type: Optional[SecondaryClassifier]
        self.telemetry = None  # type: Optional[Telemetry]
        self.mqtt = None  # type: Optional[MqttPublisher]
        self._t_status = 0.0
        self._t_display = 0.0
        self._hung_since = None  # type: Optional[float]
        self._hung_frames = 0
        self._hung_cap = None  # type: Optional[Capture]
        self._watchdog_held = False  # the camera stayed hung past camera.stall_give_up_s
        self.in_view = {}  # type: Dict[str, int]  # people in view now, by their track's voted class
        self._unsounded = []  # type: List[tuple]  # (event, PlayRequest, monotonic deadline) awaiting the speaker

    # ------------------------------------------------------------------ control (signal handlers call these)
    def stop(self, reason: str = "stop requested") -> None:
        self.stop_reason = self.stop_reason or reason
        self._stop.set()

    def request_reload(self) -> None:
        self._reload = True

    def on_signal(self, signum: int) -> None:
        """The signal handler's whole work: set a flag (no logging, no lock; the frame loop logs and acts
        within one iteration, at most ~0.25 s without frames). SIGHUP asks for a reload, any other signal
        for a stop."""
        import signal as _signal
        if signum == _signal.SIGHUP:
            self._signal_hup += 1
        else:
            try:
                self._signal_stop = _signal.Signals(signum).name
            except ValueError:
                self._signal_stop = f"signal {signum}"

    def _take_signals(self) -> None:
        """Act on what :meth:`on_signal` recorded (called from the frame loop)."""
        if self._signal_stop and not self._stop.is_set():
            log.info("%s: stopping", self._signal_stop)
            self.stop(self._signal_stop)
        n, self._signal_hup = self._signal_hup, 0
        if n and not self._stop.is_set():
            log.info("SIGHUP%s: reloading %s", f" (x{n})" if n > 1 else "", self.opts.config_path or
                     "(no config file)")
            self._reload = True

    # ------------------------------------------------------------------ the loop
    def run(self) -> RunResult:
        cfg, res, opts = self.cfg, self.result, self.opts
        self.notifier.status("loading model")
        backend = self.backend or load_backend(cfg.model.backend, cfg.model.resolved_path(), cfg.model.threads,
                                                cfg.model.engine)
        backend.warmup()
        classes = list(backend.meta.classes)
        self.detector = Detector(backend, cfg.model, timer=self.stages.add)
        self.tracker = Tracker(cfg.tracker, num_classes=len(classes))
        self.secondary = load_secondary(cfg, classes)  # None: detector only (model.classifier: null)
        self.policy = AlarmPolicy(cfg.alarm, cfg.zone, classes)
        self.overlay = Overlay(classes, cfg.zone.polygon if cfg.display.show_zone else ())
        self.speaker = AlarmPlayer(cfg.alarm.sound, cfg.alarm.volume, cfg.alarm.audio_retry_s,
                                   prompts=cfg.alarm.prompts.model_dump()) if opts.sound else None
        # writer threads: the frame loop never waits for the disk (a slow, full or hung one)
        self.events = EventLog(cfg.events.resolved_path(), background=True)
        self.counts = HourlyCounts(cfg.events.resolved_counts_path(), classes, background=True)
        self.mqtt = start_publisher(cfg, backend.meta.version)  # None without an mqtt: section
        self.display = open_display(cfg.display.fullscreen, (cfg.display.window_width, cfg.display.window_height)) \
            if cfg.display.enabled else None
        self._t_display = time.monotonic()
        t = cfg.telemetry
        self.telemetry = Telemetry(t.interval_s, t.warn_temp_c).start() if t.enabled else None
        self.capture = self._start_capture(self.source or self._make_source(cfg))
        self.video = VideoSink(cfg.display.save_video, self.capture.source.fps) if cfg.display.save_video else None
        log.info("running: model %s (%s), classifier %s, source %s, display %s, events %s",
                 model_label(cfg.model.resolved_path(), backend.meta), cfg.model.backend,
                 model_label(cfg.model.resolved_classifier(), self.secondary.classifier.meta) if self.secondary
                 else "none", self.capture.source.name,
                 "on" if self.display else "off", self.events.path)
        t_start, meter, last_index = time.monotonic(), FpsMeter(), None
        try:
            while not self._stop.is_set():
                self._housekeeping(t_start, meter.fps)                      # SIGHUP, READY/WATCHDOG/STATUS
                if self._stop.is_set():
                    break
                frame = self.capture.read(timeout=0.25)                      # 1. capture (own thread)
                if frame is None:
                    if self.capture.done:
                        self.stop_reason = self.stop_reason or "source ended"
                        break
                    continue
                fps = meter.tick()
                if last_index is None:
                    self._check_face_limits(*frame.wh)                       #    (once, on the first frame)
                dets = self.detector(frame.image)                            # 2. pre-process, infer, decode
                t0 = time.perf_counter()
                dets = self.tracker.update(dets, frame.t, frame.wall, frame.image)  # 3. track + class vote
                if self.secondary is not None:                               # 3b. classifier on due tracks
                    t1 = time.perf_counter()
                    dets = self.secondary.update(frame.image, self.tracker, dets, frame.t)
                    dt = time.perf_counter() - t1
                    self.stages.add("classify", dt)
                    t0 += dt
                alarms = self.policy.update(dets, self.tracker, frame)       # 4. alarm policy
                still = self.tracker.picture_mask(dets, frame.t)             #    pictures: dimmed, not people
                self.in_view = self._people_in_view(dets, still)
                self._count(self.tracker.pop_finished())
                self.stages.add("track_policy", time.perf_counter() - t0)
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("frame %d: %s", frame.index, self._describe(dets))
                for ev in alarms:                                            # 5. event log, speaker
                    self._alarm(ev, frame.image)
                if self.display or self.video or opts.draw:                  # 6. monitor, video file
                    t0 = time.perf_counter()
                    health = self.telemetry.overlay_text() if self.telemetry and cfg.telemetry.overlay else ""
                    shown = self.overlay.draw(frame.image, dets, fps, self.policy.banner_active(frame.t),
                                              counts=self.in_view, telemetry=health, pictures=still,
                                              copy=bool(cfg.events.snapshots))  # else the frame's last reader
                    self.stages.add("overlay", time.perf_counter() - t0)
                    if self.display and not self.display.show(shown):
                        self.stop("window closed")
                    if self.video:
                        repeat = 1 if last_index is None else max(1, min(frame.index - last_index, 100))
                        for _ in range(repeat):  # keep the file in real time when frames were dropped
                            self.video.write(shown)
                last_index = frame.index
                res.frames += 1
                if opts.max_frames and res.frames >= opts.max_frames:
                    self.stop_reason = self.stop_reason or "max frames"
                    break
        finally:
            res.seconds = meter.span
            self._shutdown()
        return res

    # ------------------------------------------------------------------ helpers
    def _make_source(self, cfg: Config) -> Source:
        c = cfg.camera
        return make_source(c.source, c.width, c.height, c.fps, c.fourcc, c.backend, c.jpeg_decoder, c.by_id)

    def _start_capture(self, source: Source) -> Capture:
        c = self.cfg.camera
        recorded_fast = not source.live and not c.realtime
        cap = Capture(source, latest_only=not recorded_fast, pace=c.realtime, reconnect_min_s=c.reconnect_min_s,
                      reconnect_max_s=c.reconnect_max_s,
                      on_frame_time=lambda dt: self.stages.add("capture", dt)).start()
        if not source.live:  # a missing file is an error, not something to wait for
            deadline = time.monotonic() + 30
            while cap.open_attempts == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            if cap.ended and cap.error:
                cap.stop()
                raise SourceError(cap.error)
        return cap

    def _housekeeping(self, t_start: float, fps: float) -> None:
        """A pending SIGHUP reload; READY once the model is warm and the camera open; WATCHDOG every loop;
        STATUS every 2 s; reopening a camera that stalled."""
        self._take_signals()
        if self._reload or self._reload_job is not None:
            self._apply_reload()
        if self.display is not None and not self.display.pump():
            self.stop("window closed")
        d = self.cfg.display
        if (self.display is None and d.enabled and d.retry_s > 0 and display_available()
                and time.monotonic() - self._t_display >= d.retry_s):  # X not up yet at boot: try again
            self._t_display = time.monotonic()
            try:
                self.display = Display(d.fullscreen, (d.window_width, d.window_height))
                log.info("the display is up now")
            except Exception as e:  # pygame.error while the X server is not there yet; quiet, it is expected
                log.debug("display still unavailable: %s", e)
        cap, n = self.capture, self.notifier
        if not n.ready_sent and (cap.is_open or time.monotonic() - t_start > self.cfg.camera.ready_timeout_s):
            n.ready("running" if cap.is_open and not cap.error else f"waiting for camera: {self._camera_state()}")
            self._t_status = 0.0
        self._check_camera_hang()
        if n.ready_sent and not self._watchdog_held:
            n.watchdog()
        live = cap.source.live
        if live and cap.is_open and time.monotonic() - cap.last_frame_time > self.cfg.camera.stall_timeout_s:
            log.warning("no frame from %s for %.0f s; reopening", cap.source.name, self.cfg.camera.stall_timeout_s)
            cap.last_frame_time = time.monotonic()
            cap.request_reopen()
        self._write_decided()  # alarms whose speaker outcome is known now
        self.events.retry()  # events/counts waiting for the disk (cheap when nothing waits)
        self.counts.retry()
        if n.ready_sent and time.monotonic() - self._t_status >= 2.0:
            self._t_status = time.monotonic()
            t, v = self.counts.total, self.in_view
            cam = self._hang_status() or ("camera ok" if cap.is_open and not cap.error else
                                          f"camera lost ({self._camera_state()})")
            if self.mqtt is not None:
                self.mqtt.update(fps=fps, camera=cam, alarms=self.result.alarms_total)
            n.status(f"{fps:.1f} fps, {cam}, in view mask={v.get('mask', 0)} no_mask={v.get('no_mask', 0)} "
                     f"mask_incorrect={v.get('mask_incorrect', 0)}, people mask={t['mask']} no_mask={t['no_mask']} "
                     f"mask_incorrect={t['mask_incorrect']}, alarms={self.result.alarms_total} "
                     f"(sounded {self.result.alarms_sounded}), dropped={cap.dropped}"
                     + self._storage_status() + (self.video.status() if self.video else "")
                     + (f", {self.mqtt.status_text()}" if self.mqtt else ""))

    def _check_camera_hang(self) -> None:
        """A live source whose read (or open) has not returned for ``camera.stall_timeout_s``: abandon that
        capture thread and start a new one; once a frame comes again, it recovered. Still hung
        ``camera.stall_give_up_s`` after it was found: stop feeding the watchdog (systemd restarts us)."""
        cap, c = self.capture, self.cfg.camera
        if not cap.source.live:
            return
        now = time.monotonic()
        if self._hung_since is not None and self._hung_cap is not cap:  # the source was replaced (reload)
            self._hung_since, self._watchdog_held = None, False
        if self._hung_since is not None and cap.frames > self._hung_frames:  # a frame came again
            log.warning("camera %s recovered after %.0f s (%d abandoned capture threads)", cap.source.name,
                        now - self._hung_since, cap.hung_restarts)
            self._hung_since = None
            if self._watchdog_held:
                log.warning("feeding the systemd watchdog again")
                self._watchdog_held = False
            return
        blocked = cap.blocked_s()
        if blocked > c.stall_timeout_s:
            what = cap.blocked_in or "read"
            if self._hung_since is None:
                self._hung_since, self._hung_frames, self._hung_cap = now - blocked, cap.frames, cap
                log.error("camera %s: the %s has not returned for %.0f s (a hung driver?); abandoning that capture "
                          "thread and opening the camera again", cap.source.name, what, blocked)
            if not cap.restart_hung():
                log.debug("camera still hung; not starting another capture thread")
        if self._hung_since is not None and not self._watchdog_held and now - self._hung_since > c.stall_give_up_s:
            self._watchdog_held = True
            log.error("camera %s hung for %.0f s and reopening did not help (%d capture threads abandoned): no longer "
                      "feeding the systemd watchdog, so systemd restarts the service", cap.source.name,
                      now - self._hung_since, cap.hung_restarts)

    def _camera_state(self) -> str:
        """What is wrong with the camera, for STATUS: the last error (kept until a frame arrives), never
        ``None``."""
        cap = self.capture
        if cap.error:
            return f"{cap.error}; open, waiting for a frame" if cap.is_open else str(cap.error)
        return "open, waiting for the first frame" if cap.is_open else "opening"

    def _hang_status(self) -> str:
        """The STATUS camera part while the camera is hung ("" otherwise)."""
        if self._hung_since is None:
            return ""
        held = ", watchdog no longer fed" if self._watchdog_held else ""
        return f"camera stalled ({time.monotonic() - self._hung_since:.0f} s, read blocked{held})"

    def _storage_status(self) -> str:
        """``", event log not writable (N waiting)"`` while events or counts wait in memory, else ""."""
        bad = [f for f in (self.events.file, self.counts.file) if not f.writable]
        if not bad:
            return ""
        return f", event log not writable ({sum(f.pending for f in bad)} waiting: {bad[0].error})"

    def _describe(self, dets) -> str:
        classes = self.detector.classes
        return ", ".join(f"#{int(t)} {classes[int(c)]} {s:.2f} w{w:.0f}" for t, c, s, w in
                         zip(dets.track_id, dets.class_id, dets.scores, dets.width)) or "no faces"

    def _check_face_limits(self, w: int, h: int) -> None:
        """Warn at start-up (first frame, ``w`` x ``h`` px) when ``zone.min_face_frac``/``zone.max_face_frac``
        would exclude a face at a plausible entrance distance (:func:`edge.policy.size_limit_warnings`)."""
        for msg in size_limit_warnings(self.cfg.zone, w, h):
            log.warning("face size limits: %s", msg)

    def _alarm(self, ev: AlarmEvent, image: np.ndarray) -> None:
        """Sound first, then the disk: the speaker and the monitor never wait for (or fail with) the disk.
        The event is written once the speaker says whether its clip was handed to a working device
        (``sounded``; else ``reason: no_speaker``), normally within milliseconds, at most
        :data:`SOUND_DECISION_S`; the frame loop never waits for it."""
        self.result.add_alarm(ev)
        req = self._announce(ev)
        if self.cfg.events.snapshots:
            try:
                save_snapshot(image, ev, self.cfg.events.resolved_snapshot_dir())
            except Exception as e:  # a full disk or a bad folder must not stop the frame loop
                log.error("snapshot not saved: %s", e)
        if req is None:
            self._record(ev)
        else:
            self._unsounded.append((ev, req, time.monotonic() + SOUND_DECISION_S))
            self._write_decided()

    def _record(self, ev: AlarmEvent) -> None:
        self.result.alarms_sounded += int(ev.sounded)
        self.events.write(ev)  # never raises: a full disk keeps it in memory and retries
        if self.mqtt is not None:
            self.mqtt.event(ev)  # O(1): the publisher thread does the rest

    def _write_decided(self, wait_s: float = 0.0) -> None:
        """Write the events of alarms whose speaker outcome is known (waiting up to ``wait_s`` s for them; one
        undecided past its deadline is written as not sounded, ``no_speaker``)."""
        keep = []
        for ev, req, deadline in self._unsounded:
            if not req.done.wait(max(0.0, min(wait_s, deadline - time.monotonic()))) and time.monotonic() < deadline:
                keep.append((ev, req, deadline))
                continue
            ev.sounded, ev.reason = (True, None) if req.sounded else (False, req.reason or NO_SPEAKER)
            if not req.sounded:
                log.warning("alarm of track %d not sounded (%s%s)", ev.track_id, ev.reason,
                            f": {req.error}" if req.error else "")
            self._record(ev)
        self._unsounded = keep

    def _announce(self, ev: AlarmEvent) -> Optional[PlayRequest]:
        """Speaker and banner for an alarm the policy sounds (``ev.sounded``; not during the cooldown or
        quiet hours): the prompt and banner text of the alarm's class. Returns the speaker's request
        (``None``: nothing to wait for; ``ev`` already says why not sounded, ``no_speaker`` without a
        speaker)."""
        if not ev.sounded:
            return None
        self.overlay.alarm_text = BANNERS.get(ev.cls, self.overlay.alarm_text)
        if self.speaker is None:
            ev.sounded, ev.reason = False, NO_SPEAKER
            return None
        return self.speaker.submit(ev.cls)

    def _people_in_view(self, dets, still: np.ndarray) -> Dict[str, int]:
        """People in view now, per class: confirmed tracks by their voted class (the tracker has put the vote
        into ``class_id``), except ``still`` (:meth:`Tracker.picture_mask`: pictures, not live);
        tentative boxes and pictures are not people."""
        classes = self.detector.classes
        out = {c: 0 for c in classes}
        if dets.track_id is None:
            return out
        for c in dets.class_id[(dets.track_id > 0) & ~still]:
            if 0 <= c < len(classes):
                out[classes[int(c)]] += 1
        return out

    def _count(self, tracks) -> None:
        classes = self.detector.classes
        for tr in tracks:
            if self.policy.counts_as_person(tr.id):
                cls = classes[self.policy.person_class(tr.id, tr.lifetime_class)]  # forgets the track: once
                self.counts.add(cls, tr.first_wall)
                if self.mqtt is not None:
                    self.mqtt.person(cls, tr.first_wall)

    def _apply_reload(self) -> None:
        """SIGHUP: load the file again (in a :class:`ReloadJob` thread; this returns at once and is called
        again by the loop until the job is done); apply what can change live; on any error keep the
        running config."""
        path = self.opts.config_path
        if self._reload_job is None:
            self._reload = False
            if not path:
                log.warning("SIGHUP: no config file was given (built-in defaults); nothing to reload")
                return
            self.notifier.reloading()
            self._reload_job = ReloadJob(path, self.opts.overrides, self.cfg).start()
            self._reload_t0 = time.monotonic()
            return
        if not self._reload_job.done.is_set():
            if time.monotonic() - self._reload_t0 > RELOAD_TIMEOUT_S:  # a hung file system: give it up
                self._reload_job = None
                log.error("config reload: reading %s has not finished after %.0f s (a hung file system?); giving "
                          "it up and keeping the running config; the next SIGHUP tries again", path, RELOAD_TIMEOUT_S)
                self.notifier.notify("READY=1", "STATUS=config reload timed out, running config kept")
            return
        job, self._reload_job = self._reload_job, None
        if job.config is None:
            log.error("config reload failed; keeping the running config:\n%s", job.error)
            self.notifier.notify("READY=1", "STATUS=config reload failed, running config kept")
            return
        try:
            self._apply_config(job.config, path)
        except Exception:  # applying must never stop the frame loop
            log.exception("config reload: applying the new config failed; parts may be kept from the old one")
            self.notifier.notify("READY=1", "STATUS=config reload failed while applying")

    def _apply_config(self, new: Config, path: str) -> None:
        """Apply a validated config: live keys now, restart keys logged."""
        changed = diff(self.cfg, new)
        logging.getLogger().setLevel(new.log_level)
        self.detector.configure(new.model)
        self.tracker.configure(new.tracker)
        if self.secondary is not None:
            self.secondary.configure(new.classifier)
        self.policy.configure(new.alarm, new.zone)
        self.overlay.set_zone(new.zone.polygon if new.display.show_zone else ())
        if self.speaker is not None:
            self.speaker.configure(new.alarm.sound, new.alarm.volume, new.alarm.audio_retry_s,
                                   prompts=new.alarm.prompts.model_dump())
        if any(k.startswith("camera.") for k in changed) and self.source is None:
            log.info("camera settings changed: reopening the source")
            old_cfg, self.cfg = self.cfg, new
            self.capture.stop()
            try:
                self.capture = self._start_capture(self._make_source(new))
            except SourceError as e:
                log.error("cannot open the new source (%s); keeping %s", e, old_cfg.camera.source)
                self.cfg = old_cfg
                self.capture = self._start_capture(self._make_source(old_cfg))
                new = with_overrides(new.model_copy(update={"camera": old_cfg.camera}))
                changed = [k for k in changed if not k.startswith("camera.")]
        restart = [k for k in changed if any(k.startswith(p) for p in RESTART_KEYS)]
        if restart:
            log.warning("config reload: %s take effect after a restart", ", ".join(restart))
        self.cfg = new
        log.info("config reloaded from %s; changed: %s", path, ", ".join(changed) or "nothing")
        self.notifier.notify("READY=1", "STATUS=config reloaded")

    def _shutdown(self) -> None:
        self.notifier.stopping()
        job = self._reload_job
        if job is not None and not job.done.wait(5.0):  # (a model being loaded must not be cut off at exit)
            log.warning("a config reload was still reading its files at shutdown")
        if self.capture is not None:
            self.capture.stop()
        if self.tracker is not None and self.counts is not None:
            self._count(self.tracker.end_all())
            self.counts.flush()
            self.result.counts = dict(self.counts.total)
        if self._unsounded and self.events is not None:
            self._write_decided(wait_s=SOUND_DECISION_S)
        if self.telemetry is not None:
            self.telemetry.stop()
        for name in ("events", "mqtt", "speaker", "display", "video"):
            obj = getattr(self, name)
            if obj is not None:
                try:
                    if name == "speaker":
                        obj.wait(timeout=5.0)
                    obj.close()
                except Exception:  # one failing sink must not keep the others from closing
                    log.exception("closing %s failed", name)
        if self.capture is not None:
            self.result.captured, self.result.dropped = self.capture.frames, self.capture.dropped
            self.result.reconnects = self.capture.reconnects
        self.result.reason = self.stop_reason
        log.info("stopped (%s): %d frames, %.1f fps, %d dropped, %d alarms, people %s", self.stop_reason,
                 self.result.frames, self.result.fps, self.result.dropped, self.result.alarms_total,
                 dict(self.result.counts))
