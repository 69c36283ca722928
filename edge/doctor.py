"""``maskwatch doctor``: the self-test an installer runs at the entrance.

Each check returns a :class:`Check` row (PASS, FAIL, WARN or SKIP) with what it found and, when it
did not pass, the fix. A *required* check that fails is FAIL and makes the exit code 1; an optional
one is WARN. On a machine that is not a Jetson the Jetson-only rows (TensorRT engine, jtop service)
are SKIP with "not a Jetson".

Rows: config, camera (fps over a few seconds; ``--source`` lets a video file stand in), model,
engine (Jetson), display, speaker (plays the alarm; asks "did you hear it?" only on a terminal),
disk space for the event log, MQTT broker (only with an ``mqtt:`` section), jtop service (Jetson), clock
synchronised, service enabled.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from edge.config import Config, ConfigError, load

log = logging.getLogger(__name__)

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"
SYSTEM_CONFIG = Path("/etc/maskwatch/config.yaml")
SYSTEM_STATE_DIR = Path("/var/lib/maskwatch")
UNIT = "maskwatch.service"
JTOP_UNIT = "jtop.service"
NOT_JETSON = "not a Jetson"


@dataclass
class Check:
    """One row of the doctor's table.

    Attributes:
        name: short row name.
        status: PASS, FAIL (a required check failed), WARN (an optional one failed) or SKIP.
        detail: what was found.
        fix: what to do about it (empty when it passed).
    """

    name: str
    status: str
    detail: str
    fix: str = ""


def _result(name: str, ok: bool, required: bool, detail: str, fix: str) -> Check:
    if ok:
        return Check(name, PASS, detail)
    return Check(name, FAIL if required else WARN, detail, fix)


def _run(cmd: List[str], timeout: float = 10.0) -> Tuple[Optional[int], str]:
    """(exit code, stripped stdout+stderr) of a command; (None, why) when it cannot run."""
    if shutil.which(cmd[0]) is None:
        return None, f"{cmd[0]} not found"
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                           timeout=timeout)
    except (OSError, subprocess.SubprocessError) as e:
        return None, str(e)
    lines = r.stdout.strip().splitlines()
    return r.returncode, " ".join(lines[:1]).strip()  # the first line says it; systemctl adds hints after


# ---------------------------------------------------------------------------------------------- rows

def check_config(path: Optional[str]) -> Tuple[Check, Config]:
    """The config file loads and validates (``None``: ``/etc/maskwatch/config.yaml`` when it exists)."""
    if path is None and SYSTEM_CONFIG.is_file():
        path = str(SYSTEM_CONFIG)
    if path is None:
        return Check("config", WARN, f"no config file ({SYSTEM_CONFIG} does not exist): built-in defaults",
                     f"install one: sudo cp {Path(__file__).with_name('config.example.yaml')} {SYSTEM_CONFIG} "
                     "(scripts/install.sh does)"), Config()
    try:
        cfg = load(path)
    except ConfigError as e:
        return Check("config", FAIL, f"{path}: " + "; ".join(e.errors[:3]) + (" ..." if len(e.errors) > 3 else ""),
                     f"fix the file (maskwatch check-config -c {path} lists every error with its line); the other "
                     "checks use the built-in defaults"), Config()
    return Check("config", PASS, f"{path} is valid"), cfg


def check_camera(cfg: Config, source: Optional[str] = None, seconds: float = 3.0) -> Check:
    """Open the camera (or ``source``) and read frames for ``seconds``: PASS at >= 90 % of the target rate
    (``camera.fps`` for a camera, the file's own rate for a file), WARN below, FAIL without frames."""
    from edge.sources import SourceError, make_source
    c = cfg.camera
    spec = source or c.source
    try:
        src = make_source(spec, c.width, c.height, c.fps, c.fourcc, c.backend, c.jpeg_decoder, c.by_id)
        src.open()
    except (SourceError, OSError, ValueError) as e:
        return Check("camera", FAIL, f"{spec}: {e}",
                     "plug the C922 into a USB port, check `v4l2-ctl --list-devices`, set camera.source; "
                     "if the service is running it holds the camera: sudo systemctl stop maskwatch")
    try:
        n, t_first, t_last, shape = 0, None, None, None
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            img = src.read()
            if img is None:
                break
            now = time.monotonic()
            t_first = now if t_first is None else t_first
            t_last, shape, n = now, img.shape, n + 1
    finally:
        src.close()
    how = getattr(src, "path", "") or type(src).__name__
    if n == 0:
        return Check("camera", FAIL, f"{src.name} ({how}) opened but delivered no frame",
                     "replug the camera; check `v4l2-ctl -d DEVICE --list-formats-ext` offers MJPG "
                     f"{c.width}x{c.height}; try camera.backend: v4l2")
    span = (t_last - t_first) if t_first is not None and t_last is not None else 0.0
    fps = (n - 1) / span if n > 1 and span > 0 else 0.0
    target = src.fps if not src.live and src.fps else c.fps
    detail = (f"{src.name} ({how}): {shape[1]}x{shape[0]}, {n} frames, {fps:.1f} fps over {span:.1f} s "
              f"(target {target:g})")
    if fps >= 0.9 * target:
        return Check("camera", PASS, detail)
    return Check("camera", WARN, detail,
                 "the camera runs slow: more light (the C922 halves its rate in the dark with auto exposure), "
                 "or `v4l2-ctl -d DEVICE -c exposure_auto_priority=0`; check camera.fps and the USB port (USB 2 "
                 "needs MJPG)")


def check_model(cfg: Config) -> Check:
    """The model file loads in its backend and runs one inference."""
    from edge.detector import load_backend
    from edge.model import model_label
    path = cfg.model.resolved_path()
    try:
        if cfg.model.backend == "tensorrt":  # the service's engine folder, as the engine row looks at it
            engine = cfg.model.engine.model_copy(update={"dir": str(engine_dir(cfg))})
            be = load_backend(cfg.model.backend, path, cfg.model.threads, engine)
        else:
            be = load_backend(cfg.model.backend, path, cfg.model.threads)
        try:
            be.warmup(1)
            t0 = time.perf_counter()
            be.warmup(1)
            ms = (time.perf_counter() - t0) * 1000
            meta = be.meta
        finally:
            be.close()
    except Exception as e:  # ImportError, FileNotFoundError, a runtime's own errors: all mean "does not load"
        return Check("model", FAIL, f"{path} ({cfg.model.backend}): {str(e).splitlines()[0] if str(e) else e!r}",
                     "reinstall the package (sudo scripts/install.sh) or set model.path to an .onnx file")
    return Check("model", PASS, f"{model_label(path, meta)} ({cfg.model.backend}, {path}): loads, {meta.input_w}x"
                 f"{meta.input_h}, {ms:.0f} ms per inference")


def engine_dir(cfg: Config) -> Path:
    """Where the service keeps its TensorRT engines: ``model.engine.dir``, or ``engines/`` in the service's
    state directory (``/var/lib/maskwatch/engines`` once installed) when it is left to the default."""
    e = getattr(cfg.model, "engine", None)
    if e is None or (e.dir is None and not os.environ.get("STATE_DIRECTORY") and SYSTEM_STATE_DIR.is_dir()):
        return SYSTEM_STATE_DIR / "engines"
    return e.resolved_dir()


def engine_status(model: Path, folder: Path, precision: str, dla_core: Optional[int] = None,
                  device: Optional[str] = None) -> Tuple[bool, str]:
    """(ok, detail): an engine of ``model`` for ``precision``/``dla_core`` on this device is in ``folder`` (its
    sidecar says so), and ``folder/parity.json`` (``maskwatch check-parity --json``, run by the installer after
    the build) passed for that model and precision after the engine was built. Plain files only: the
    TensorRT version is checked when the runtime loads the engine (the model row)."""
    from edge.engine import device_name, file_sha256, read_sidecar
    device = device if device is not None else device_name()
    sha = file_sha256(model)
    found = None
    for eng in sorted(Path(folder).glob("*.engine")):
        try:
            key = read_sidecar(eng)["key"]
        except Exception:  # no sidecar or an unreadable one: not an engine of ours
            continue
        if (key.model_sha256, key.precision, key.dla_core, key.device) == (sha, precision, dla_core, device):
            found = (eng, key.trt_version)
    if found is None:
        return False, f"not built: no {precision} engine of {model.name} ({sha[:12]}) for {device!r} in {folder}"
    eng, trt = found
    what = f"{eng.name} (TensorRT {trt})"
    report = Path(folder) / "parity.json"
    try:
        doc = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, f"{what}; parity not checked (no {report})"
    if report.stat().st_mtime < eng.stat().st_mtime:
        return False, f"{what}; parity not checked since the engine was built ({report} is older)"
    if doc.get("precision") != precision or Path(str(doc.get("model", ""))).name != model.name:
        return False, f"{what}; {report} is for {doc.get('model')} {doc.get('precision')}, not this engine"
    if not doc.get("passed"):
        fails = "; ".join(doc.get("failures") or []) or "beyond tolerance"
        return False, f"{what}; parity FAILED on {doc.get('images')} images: {fails}"
    return True, f"{what}; parity passed on {doc.get('images')} images"


def check_engine(cfg: Config, jetson: Optional[str]) -> Check:
    """Jetson only: a TensorRT engine was built for this model and its parity with ONNX Runtime was checked."""
    if jetson is None:
        return Check("engine", SKIP, f"{NOT_JETSON}: TensorRT engines are built on the device")
    if cfg.model.backend != "tensorrt":
        return Check("engine", SKIP, f"model.backend is {cfg.model.backend}: no engine used")
    e = cfg.model.engine
    folder = engine_dir(cfg)
    fix = (f"sudo -u maskwatch maskwatch build-engine -c {SYSTEM_CONFIG} --out-dir {folder}, then sudo -u "
           f"maskwatch maskwatch check-parity -c {SYSTEM_CONFIG} --images DIR --json {folder}/parity.json "
           "(scripts/install.sh does both; docs/engine.md)")
    try:
        ok, detail = engine_status(cfg.model.resolved_path(), folder, e.precision, e.dla_core)
    except Exception as err:  # the model file missing, the engine helpers missing: "not built"
        return Check("engine", FAIL, f"not built: {err}", fix)
    return _result("engine", ok, True, detail, fix)


def check_display() -> Check:
    """A display is named (DISPLAY, WAYLAND_DISPLAY or SDL_VIDEODRIVER) and SDL can open it."""
    from edge.display import display_available
    named = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("SDL_VIDEODRIVER")
    fix = ("the appliance shows its window on the local X display :0 of the auto-login session "
           "(docs/jetson.md, set up by scripts/install.sh); check the monitor is on and the desktop is up, then "
           "run DISPLAY=:0 maskwatch doctor")
    if not display_available():
        return Check("display", FAIL, "no display (DISPLAY, WAYLAND_DISPLAY and SDL_VIDEODRIVER unset)", fix)
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame
        pygame.display.init()
        try:
            info = pygame.display.Info()
            driver = pygame.display.get_driver()
            size = f"{info.current_w}x{info.current_h}"
        finally:
            pygame.display.quit()
    except ImportError:
        return Check("display", FAIL, f"{named}: pygame is not installed", "pip install pygame (in the venv)")
    except Exception as e:  # pygame.error: the display does not answer or refuses this user
        return Check("display", FAIL, f"{named}: cannot open ({e})",
                     fix + "; the X server must let the maskwatch user in: xhost +SI:localuser:maskwatch")
    return Check("display", PASS, f"{named}: {driver}, {size}")


def check_speaker(cfg: Config, ask: Optional[Callable[[str], str]] = None, timeout: float = 15.0) -> Check:
    """Play the alarm sound on the default ALSA device; ``ask`` (a terminal's ``input``) confirms it was heard."""
    from edge.audio import AlarmPlayer

    errors = []  # type: List[str]

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                errors.append(record.getMessage())

    fix = ("connect the speaker (USB or the monitor's HDMI audio), make it the ALSA default (`aplay -l`, "
           "/etc/asound.conf), raise the volume in alsamixer; check with `speaker-test -t wav -c 2`")
    audio_log = logging.getLogger("edge.audio")
    handler = Catch()
    level, propagate = audio_log.level, audio_log.propagate
    audio_log.addHandler(handler)
    audio_log.setLevel(logging.WARNING)  # the player's device error is what this row reports ...
    audio_log.propagate = False          # ... in the table, not a second time in the log
    try:
        try:
            # the retry pause `maskwatch run` uses (alarm.audio_retry_s), so the row says what the service does
            player = AlarmPlayer(cfg.alarm.sound, cfg.alarm.volume, retry_s=cfg.alarm.audio_retry_s)
        except (OSError, ValueError) as e:
            return Check("speaker", FAIL, f"alarm sound: {e}", "set alarm.sound to a 16-bit PCM WAV or null")
        try:
            player.play()
            end = time.monotonic() + player.duration + timeout
            while player.played == 0 and player.failed == 0 and time.monotonic() < end:
                time.sleep(0.05)
            played, failed = player.played, player.failed
        finally:
            player.close()
    finally:
        audio_log.removeHandler(handler)
        audio_log.setLevel(level)
        audio_log.propagate = propagate
    name = Path(player.path).name
    if failed or not played:
        why = errors[0] if errors else "playback did not finish"
        return Check("speaker", FAIL, f"{name}: {why}", fix)
    detail = f"played {name} ({player.duration:.1f} s, volume {cfg.alarm.volume:g}) on the default device"
    if ask is not None:
        answer = ask("did you hear the chime and \"Please wear your mask\"? [y/n] ").strip().lower()
        if not answer.startswith("y"):
            return Check("speaker", FAIL, detail + "; not heard", fix)
        detail += "; heard"
    return Check("speaker", PASS, detail)


def events_dir(cfg: Config) -> Path:
    """Where the service writes its event log: ``events.path``'s folder, or the service's state directory
    (``/var/lib/maskwatch`` once installed) when the path is left to the default."""
    if cfg.events.path is None and not os.environ.get("STATE_DIRECTORY") and SYSTEM_STATE_DIR.is_dir():
        return SYSTEM_STATE_DIR
    return cfg.events.resolved_path().parent


def check_disk(folder: Path, min_free_mb: float = 200.0) -> Check:
    """At least ``min_free_mb`` MiB free on the file system of the event log ``folder``."""
    p = Path(folder)
    existing = p
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(str(existing)).free / 2 ** 20
    where = str(p) if existing == p else f"{p} (not created yet; {existing})"
    detail = f"{free / 1024:.1f} GiB free at {where}"
    return _result("disk", free >= min_free_mb, True, detail + f", need {min_free_mb:g} MiB",
                   "free space (old logs: journalctl --vacuum-size=200M; events.snapshots: false) or point "
                   "events.path at a larger disk")


def check_mqtt(cfg: Config) -> Check:
    """With an ``mqtt:`` section: one login to the broker as the appliance makes it (TLS and password included).
    A refused login or a TLS failure is FAIL (it will not fix itself); an unreachable broker (DNS, refused,
    no route) is WARN: the appliance queues records on disk until it returns. Without the section: SKIP."""
    if cfg.mqtt is None:
        return Check("mqtt", SKIP, "no mqtt section: nothing is published, no network socket is opened")
    from edge.mqtt import probe
    ok, kind, detail, fix = probe(cfg.mqtt)
    if ok:
        return Check("mqtt", PASS, detail)
    network = kind in ("dns", "refused", "unreachable", "timeout")
    return Check("mqtt", WARN if network else FAIL, detail, fix)


def check_jtop(jetson: Optional[str]) -> Check:
    """Jetson only: jetson-stats is importable and ``jtop.service`` is active (optional row)."""
    if jetson is None:
        return Check("jtop", SKIP, f"{NOT_JETSON}: no telemetry service")
    fix = "sudo pip3 install jetson-stats (installs and starts jtop.service), or sudo systemctl enable --now jtop"
    from edge.telemetry import jtop_available
    why = jtop_available()
    if why is not None:
        return Check("jtop", WARN, why, fix)
    rc, out = _run(["systemctl", "is-active", JTOP_UNIT])
    return _result("jtop", rc == 0 and out == "active", False, f"{JTOP_UNIT}: {out or 'unknown'}", fix)


def clock_synchronised() -> Tuple[Optional[bool], str]:
    """(synchronised?, how it was found): ``timedatectl show -p NTPSynchronized``, else the flag file
    ``/run/systemd/timesync/synchronized`` that systemd-timesyncd writes; (None, why) when unknown."""
    rc, out = _run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
    if rc == 0 and out in ("yes", "no"):
        return out == "yes", f"timedatectl: NTPSynchronized={out}"
    flag = Path("/run/systemd/timesync/synchronized")
    if flag.exists():
        return True, f"{flag} exists"
    return None, f"timedatectl unavailable ({out or rc}) and no {flag}"


def check_clock(cfg: Config) -> Check:
    """The clock is synchronised; required only when ``alarm.quiet_hours`` depend on it."""
    synced, how = clock_synchronised()
    required = bool(cfg.alarm.quiet_hours)
    now = time.strftime("%Y-%m-%d %H:%M %Z")
    fix = ("give the box network once for NTP (systemd-timesyncd) or set it: sudo timedatectl set-time "
           "'YYYY-MM-DD HH:MM:SS'; a coin cell in the carrier board's RTC keeps it across power cuts")
    if not required:
        fix += " (needed for alarm.quiet_hours)"
    return _result("clock", bool(synced), required, f"{now}; {how}", fix)


def check_service(jetson: Optional[str], unit: str = UNIT) -> Check:
    """``systemctl is-enabled maskwatch.service`` says enabled (required on a Jetson)."""
    rc, out = _run(["systemctl", "is-enabled", unit])
    fix = f"sudo systemctl enable --now {unit} (scripts/install.sh installs and enables it)"
    return _result("service", rc == 0 and out == "enabled", jetson is not None, f"{unit}: {out or 'unknown'}", fix)


# ---------------------------------------------------------------------------------------------- runner

@dataclass
class Report:
    checks: List[Check]
    machine: str

    @property
    def failed(self) -> List[Check]:
        return [c for c in self.checks if c.status == FAIL]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def as_dict(self) -> dict:
        return {"machine": self.machine, "ok": not self.failed, "checks": [asdict(c) for c in self.checks]}


def run_doctor(config: Optional[str] = None, source: Optional[str] = None, seconds: float = 3.0,
               sound: bool = True, ask: Optional[Callable[[str], str]] = None,
               progress: Optional[Callable[[Check], None]] = None) -> Report:
    """Run every check in order; ``progress`` is called with each row as it completes."""
    from edge.sources import jetson_model
    jetson = jetson_model()
    machine = f"{platform.machine()}, {jetson}" if jetson else f"{platform.machine()}, {NOT_JETSON}"
    checks = []  # type: List[Check]

    def add(c: Check) -> None:
        checks.append(c)
        if progress is not None:
            progress(c)

    row, cfg = check_config(config)
    add(row)
    add(check_camera(cfg, source, seconds))
    add(check_model(cfg))
    add(check_engine(cfg, jetson))
    add(check_display())
    add(check_speaker(cfg, ask) if sound else Check("speaker", SKIP, "--no-sound"))
    add(check_disk(events_dir(cfg)))
    add(check_mqtt(cfg))
    add(check_jtop(jetson))
    add(check_clock(cfg))
    add(check_service(jetson))
    return Report(checks, machine)


def format_table(report: Report) -> str:
    """The pass/fail table, then the fix for every row that did not pass."""
    w = max(len(c.name) for c in report.checks)
    lines = [f"maskwatch doctor ({report.machine})", f"{'check'.ljust(w)}  result  detail",
             f"{'-' * w}  ------  {'-' * 40}"]
    lines += [f"{c.name.ljust(w)}  {c.status.ljust(6)}  {c.detail}" for c in report.checks]
    fixes = [c for c in report.checks if c.fix and c.status in (FAIL, WARN)]
    if fixes:
        lines += ["", "to fix:"]
        lines += [f"  {c.name} ({c.status}): {c.fix}" for c in fixes]
    n_fail = len(report.failed)
    lines += ["", f"{n_fail} required check(s) failed" if n_fail else "all required checks passed"]
    return "\n".join(lines)


def main(config: Optional[str] = None, source: Optional[str] = None, seconds: float = 3.0, sound: bool = True,
         as_json: bool = False) -> int:
    """The ``maskwatch doctor`` command: prints the table (or JSON) and returns the exit code."""
    ask = input if (sound and not as_json and sys.stdin is not None and sys.stdin.isatty()) else None
    progress = TerminalProgress(sys.stderr) if not as_json and _isatty(sys.stderr) else None
    try:
        report = run_doctor(config, source, seconds, sound, ask, progress)
    finally:
        if progress is not None:
            progress.clear()
    print(json.dumps(report.as_dict(), indent=1) if as_json else format_table(report))
    return report.exit_code


def _isatty(stream) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


class TerminalProgress:
    """The row last finished, on one line of a terminal that the next row overwrites and :meth:`clear` erases,
    so the table is the only summary left on the screen (the camera and speaker rows take seconds)."""

    def __init__(self, stream) -> None:
        self.stream, self.done = stream, 0

    def __call__(self, c: Check) -> None:
        self.done += 1
        self.stream.write(f"\r\x1b[K  doctor: {self.done} checks done, last {c.name} {c.status} ...")
        self.stream.flush()

    def clear(self) -> None:
        self.stream.write("\r\x1b[K")
        self.stream.flush()
