"""Video sources (V4L2 camera, video file, image folder, GStreamer) and the capture thread.

A :class:`Source` opens, reads one BGR frame at a time and closes. :class:`Capture`
runs a source in its own thread:

* **latest-frame** mode (cameras, paced files): when the consumer is slower than the
  source, older frames are overwritten and counted as dropped, so latency stays one
  frame;
* **every-frame** mode (files run as fast as possible): the thread decodes the next
  frame while the consumer works on the current one, and waits for it, so no frame
  is lost and results are reproducible.

A live source that fails or stops delivering is closed and reopened with exponential
back-off; the thread never gives up while the appliance runs. The back-off is kept across
open-then-fail cycles (a camera that opens but fails every read is retried at most every
``reconnect_max_s``), and resets only once the source has delivered frames for
:data:`STABLE_S` seconds; repeated failures are logged at a bounded rate.

A read (or open) that never returns (a hung driver) cannot be interrupted from Python: the
consumer sees it with :meth:`Capture.blocked_s` and calls :meth:`Capture.restart_hung`, which
abandons the stuck thread (it exits without touching anything when its call returns) and starts
a new one that opens the source again.

Frames a source returns are checked (:func:`normalise_frame`): grey and BGRA frames are converted
to BGR; empty, wrongly shaped or non-uint8 frames are counted in :attr:`Capture.bad_frames`,
logged at a bounded rate and skipped, never handed on.
"""
from __future__ import annotations

import abc
import fnmatch
import logging
import os
import re
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Callable, List, Optional, Tuple, Union

import cv2
import numpy as np

from edge.procstat import set_native_name
from edge.types import Frame

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class SourceError(RuntimeError):
    """A source cannot be opened or read."""


#: a reopened live source must deliver frames this long (s) before the reconnect back-off starts over
STABLE_S = 5.0
#: at most this many abandoned (hung) capture threads at once; beyond that no new one is started
MAX_ABANDONED = 8


class RateLimitedLog:
    """Logs a message the first time and then at most once per ``every_s`` seconds, saying how many were
    left out in between (a failing camera must not write a million log lines)."""

    def __init__(self, logger: logging.Logger, every_s: float = 30.0):
        self.logger, self.every_s = logger, every_s
        self._last = -1e18
        self.suppressed = 0

    def __call__(self, level: int, msg: str, *args: object) -> bool:
        now = time.monotonic()
        if now - self._last < self.every_s:
            self.suppressed += 1
            return False
        if self.suppressed:
            msg += f" ({self.suppressed} more like this in the last {now - self._last:.0f} s)"
        self._last, self.suppressed = now, 0
        self.logger.log(level, msg, *args)
        return True


def normalise_frame(img: object) -> Tuple[Optional[np.ndarray], str]:
    """``(frame, problem)``: a (H, W, 3) uint8 BGR frame made from what a source returned, or ``(None, why)``.

    (H, W) and (H, W, 1) grey frames are converted with ``cv2.COLOR_GRAY2BGR``, (H, W, 4) BGRA with
    ``cv2.COLOR_BGRA2BGR``; a frame that is not a NumPy array, is empty, smaller than 2x2 px, not uint8
    or of any other shape is refused. ``problem`` says what was converted or why it was refused.
    """
    if not isinstance(img, np.ndarray):
        return None, f"not an image ({type(img).__name__})"
    if img.size == 0 or img.ndim not in (2, 3) or img.shape[0] < 2 or img.shape[1] < 2:
        return None, f"empty or wrongly shaped frame {img.shape}"
    if img.dtype != np.uint8:
        return None, f"frame of dtype {img.dtype}, not uint8"
    if img.ndim == 2 or img.shape[2] == 1:
        return cv2.cvtColor(np.ascontiguousarray(img.reshape(img.shape[:2])), cv2.COLOR_GRAY2BGR), "grey"
    if img.shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGRA2BGR), "BGRA"
    if img.shape[2] != 3:
        return None, f"frame with {img.shape[2]} channels {img.shape}"
    return (img if img.flags["C_CONTIGUOUS"] else np.ascontiguousarray(img)), ""


class Source(abc.ABC):
    """One video source. ``read`` returns a (H, W, 3) uint8 BGR frame, or ``None`` at the end.

    Attributes:
        name: what to show in logs.
        live: a camera-like source: a failure or end means "reopen", never "done".
        fps: nominal frames/s (0 when unknown).
    """

    name: str = ""
    live: bool = False
    fps: float = 0.0

    @abc.abstractmethod
    def open(self) -> None:
        """Open the source; raise :class:`SourceError` when that fails."""

    @abc.abstractmethod
    def read(self) -> Optional[np.ndarray]:
        """The next frame, or ``None`` when the source has none (end of file, camera lost)."""

    def close(self) -> None:
        """Release the source; it may be opened again."""

    def timestamp(self, index: int) -> float:
        """Timestamp of frame ``index`` (s): media time for recorded sources, monotonic for live ones."""
        return time.monotonic() if self.live or not self.fps else index / self.fps


class OpenCVSource(Source):
    """A source read with ``cv2.VideoCapture``: a V4L2 camera, a video file or a GStreamer pipeline.

    Args:
        target: device path, camera index, file path or pipeline string.
        kind: ``"camera"``, ``"file"`` or ``"gstreamer"``.
        width, height, fps, fourcc: requested camera mode (cameras only).
        camera_backend: how a camera is read: ``"auto"`` (GStreamer with hardware JPEG decode on a
            Jetson whose OpenCV has GStreamer, else V4L2), ``"gstreamer"`` or ``"v4l2"``.
        jpeg_decoder: the Jetson's MJPEG decoder element, ``"nvv4l2decoder"`` or ``"nvjpegdec"``.
        by_id: a glob matched in ``/dev/v4l/by-id`` (e.g. ``*C922*-video-index0``): when a device
            matches, it replaces ``target`` (stable across re-plugs); ``None``: ``target`` as given.

    After :meth:`open`, :attr:`path` says how frames are read (``"v4l2"``, ``"gstreamer"`` or ``"file"``)
    and :attr:`device` which device node was opened (cameras).
    """

    def __init__(self, target: str, kind: str, width: int = 1280, height: int = 720, fps: float = 30.0,
                 fourcc: str = "MJPG", camera_backend: str = "v4l2", jpeg_decoder: str = "nvv4l2decoder",
                 by_id: Optional[str] = None):
        if kind not in ("camera", "file", "gstreamer"):
            raise ValueError(f"kind must be camera, file or gstreamer, got {kind!r}")
        if camera_backend not in ("auto", "gstreamer", "v4l2"):
            raise ValueError(f"camera_backend must be auto, gstreamer or v4l2, got {camera_backend!r}")
        self.target, self.kind = target, kind
        self.width, self.height, self.req_fps, self.fourcc = width, height, fps, fourcc
        self.camera_backend, self.jpeg_decoder, self.by_id = camera_backend, jpeg_decoder, by_id
        self.live = kind != "file"
        self.name = f"{kind} {target}"
        self.fps = fps if self.live else 0.0
        self.path = "file" if kind == "file" else "gstreamer" if kind == "gstreamer" else ""
        self.device = ""
        self.cap = None  # type: Optional[cv2.VideoCapture]

    def open(self) -> None:
        if self.kind == "file":
            if not Path(self.target).is_file():
                raise SourceError(f"no such video file: {self.target}")
            cap = cv2.VideoCapture(self.target)
        elif self.kind == "gstreamer":
            if not gstreamer_available():
                raise SourceError("this OpenCV build has no GStreamer support (pip wheels never have it); "
                                  "on the Jetson use the system OpenCV (apt python3-opencv)")
            cap = cv2.VideoCapture(self.target, cv2.CAP_GSTREAMER)
        else:
            cap = self._open_camera()
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.name}")
        self.cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        if fps and fps > 0 and (self.kind == "file" or fps < 1000):
            self.fps = float(fps)
        log.info("opened %s: %dx%d at %.1f fps%s", self.name, cap.get(cv2.CAP_PROP_FRAME_WIDTH),
                 cap.get(cv2.CAP_PROP_FRAME_HEIGHT), self.fps,
                 f" (path: {self.path}, device {self.device})" if self.kind == "camera" else "")

    def _open_camera(self) -> "cv2.VideoCapture":
        """Resolve the device (stable by-id name first), pick GStreamer or V4L2, open it."""
        dev = resolve_camera_device(self.target, self.by_id)
        if not dev.isdigit() and not os.path.exists(dev):
            raise SourceError(f"no camera at {dev}")
        if dev != self.target:
            log.info("camera %s: using the stable device %s", self.target, dev)
        self.device = dev
        use_gst = choose_camera_path(self.camera_backend, gstreamer_available(), jetson_model() is not None)
        if use_gst == "gstreamer":
            node = dev if not dev.isdigit() else f"/dev/video{dev}"
            pipeline = jetson_camera_pipeline(node, self.width, self.height, self.req_fps, self.jpeg_decoder)
            log.info("camera path: GStreamer, hardware JPEG decode (%s): %s", self.jpeg_decoder, pipeline)
            cap = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
            if cap.isOpened():
                self.path = "gstreamer"
                return cap
            cap.release()
            if self.camera_backend == "gstreamer":
                raise SourceError(f"cannot open the GStreamer camera pipeline for {dev}: {pipeline}")
            log.warning("the GStreamer camera pipeline did not open; falling back to V4L2 (CPU JPEG decode)")
        log.info("camera path: V4L2 through OpenCV (%s %dx%d at %g fps requested)", self.fourcc, self.width,
                 self.height, self.req_fps)
        cap = cv2.VideoCapture(int(dev) if dev.isdigit() else os.path.realpath(dev), cv2.CAP_V4L2)
        if cap.isOpened():
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.req_fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self.path = "v4l2"
        return cap

    def read(self) -> Optional[np.ndarray]:
        if self.cap is None:
            raise SourceError(f"{self.name} is not open")
        ok, img = self.cap.read()
        return img if ok and img is not None else None

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class ImageFolderSource(Source):
    """The images of a folder in name order (jpg, png, bmp, webp, tif), stamped at ``fps``."""

    def __init__(self, folder: str, fps: float = 30.0):
        self.folder = Path(folder)
        self.fps = float(fps)
        self.name = f"images {folder}"
        self._files = []  # type: List[Path]
        self._i = 0

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"no such folder: {self.folder}")
        self._files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self._files:
            raise SourceError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {self.folder}")
        self._i = 0
        log.info("opened %s: %d images", self.name, len(self._files))

    def read(self) -> Optional[np.ndarray]:
        while self._i < len(self._files):
            p = self._files[self._i]
            self._i += 1
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is not None:
                return img
            log.warning("skipping unreadable image %s", p)
        return None


def build_has_gstreamer(build_info: str) -> bool:
    """Whether an OpenCV build-information text (``cv2.getBuildInformation()``) lists GStreamer as
    enabled: its ``Video I/O`` section has a line ``GStreamer: YES (1.16.3)`` (or ``NO``)."""
    for line in build_info.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "GStreamer":
            return value.strip().upper().startswith("YES")
    return False


def gstreamer_available() -> bool:
    """Whether this OpenCV was built with GStreamer."""
    return build_has_gstreamer(cv2.getBuildInformation())


def jetson_model(root: Union[str, Path] = "/") -> Optional[str]:
    """The Jetson's model name, or ``None`` when this is not a Jetson.

    A Jetson (L4T) has ``/etc/nv_tegra_release``; its ``/proc/device-tree/model`` names the board
    (``NVIDIA Jetson Xavier NX Developer Kit``). ``root`` lets tests point at a fake tree.
    """
    root = Path(root)
    model = ""
    try:
        raw = (root / "proc/device-tree/model").read_bytes()
        model = raw.replace(b"\0", b"").decode("utf-8", "replace").strip()
    except OSError:
        pass
    release = root / "etc/nv_tegra_release"
    if release.is_file():
        first = release.read_text(encoding="utf-8", errors="replace").split(",")[0].strip("# \n")
        return model or f"Jetson ({first})"
    if "jetson" in model.lower() or "tegra" in model.lower():
        return model
    return None


def choose_camera_path(backend: str, has_gstreamer: bool, is_jetson: bool) -> str:
    """``"gstreamer"`` or ``"v4l2"`` for a camera: ``auto`` takes GStreamer (hardware JPEG decode) only on a
    Jetson whose OpenCV has GStreamer; ``gstreamer``/``v4l2`` force one (GStreamer needs the OpenCV support)."""
    if backend == "gstreamer":
        if not has_gstreamer:
            raise SourceError("camera.backend is gstreamer but this OpenCV has no GStreamer (pip wheels never "
                              "have it); on the Jetson use the system OpenCV (venv with --system-site-packages)")
        return "gstreamer"
    if backend == "auto" and has_gstreamer and is_jetson:
        return "gstreamer"
    return "v4l2"


def fps_fraction(fps: float) -> Tuple[int, int]:
    """A frame rate as the (numerator, denominator) GStreamer caps use: 30 -> (30, 1), 29.97 -> (2997, 100)."""
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    f = Fraction(fps).limit_denominator(1001)
    return f.numerator, f.denominator


_DEVICE_RE = re.compile(r"^[A-Za-z0-9_./:+-]+$")


def jetson_camera_pipeline(device: str, width: int = 1280, height: int = 720, fps: float = 30.0,
                           decoder: str = "nvv4l2decoder") -> str:
    """The GStreamer pipeline for a USB MJPEG camera (Logitech C922) on a Jetson.

    ``v4l2src`` asks the camera for MJPEG at ``width``x``height`` and ``fps``; the JPEGs are decoded by the
    hardware decoder (``nvv4l2decoder mjpeg=1``, or ``nvjpegdec``), ``nvvidconv`` converts out of NVMM
    memory to BGRx, ``videoconvert`` drops the padding byte to BGR for OpenCV; the ``appsink`` keeps only
    the newest frame (``drop=true max-buffers=1``) and does not sync to the clock.
    """
    if not _DEVICE_RE.match(device):
        raise ValueError(f"device path {device!r} has characters a GStreamer pipeline string cannot carry")
    if decoder == "nvv4l2decoder":
        dec = "nvv4l2decoder mjpeg=1"
    elif decoder == "nvjpegdec":
        dec = "nvjpegdec"
    else:
        raise ValueError(f"decoder must be nvv4l2decoder or nvjpegdec, got {decoder!r}")
    num, den = fps_fraction(fps)
    return (f"v4l2src device={device} ! image/jpeg,width={int(width)},height={int(height)},framerate={num}/{den} "
            f"! {dec} ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR "
            f"! appsink drop=true max-buffers=1 sync=false")


BY_ID_DIR = "/dev/v4l/by-id"


def find_by_id(pattern: str, by_id_dir: Union[str, Path] = BY_ID_DIR) -> Optional[str]:
    """The first entry (in name order) of ``by_id_dir`` whose name matches the glob ``pattern`` and that
    points at an existing device, as a path inside ``by_id_dir`` (the stable name); ``None`` if none."""
    d = Path(by_id_dir)
    try:
        names = sorted(os.listdir(str(d)))
    except OSError:
        return None
    for name in names:
        if fnmatch.fnmatchcase(name, pattern) and (d / name).exists():
            return str(d / name)
    return None


def resolve_camera_device(target: str, by_id: Optional[str], by_id_dir: Union[str, Path] = BY_ID_DIR) -> str:
    """The camera device to open: the ``by_id`` match in ``by_id_dir`` when there is one, else ``target``."""
    if by_id:
        found = find_by_id(by_id, by_id_dir)
        if found:
            return found
    return target


def make_source(spec: str, width: int = 1280, height: int = 720, fps: float = 30.0, fourcc: str = "MJPG",
                camera_backend: str = "v4l2", jpeg_decoder: str = "nvv4l2decoder",
                by_id: Optional[str] = None) -> Source:
    """Pick the source type for ``spec``.

    * a string containing ``!`` is a GStreamer pipeline;
    * digits (``0``) or ``/dev/video*`` or ``/dev/v4l/...`` is a camera (read as ``camera_backend`` says,
      the ``by_id`` device preferred);
    * an existing folder is an image folder;
    * anything else is a video file.
    """
    spec = str(spec).strip()
    if "!" in spec:
        return OpenCVSource(spec, "gstreamer", width, height, fps, fourcc)
    if spec.isdigit() or spec.startswith("/dev/video") or spec.startswith("/dev/v4l/"):
        return OpenCVSource(spec, "camera", width, height, fps, fourcc, camera_backend, jpeg_decoder, by_id)
    if Path(spec).is_dir():
        return ImageFolderSource(spec, fps)
    return OpenCVSource(spec, "file", width, height, fps, fourcc)


class Capture:
    """Runs a :class:`Source` in a background thread.

    Args:
        source: the source.
        latest_only: latest-frame semantics (drop old frames) instead of handing over every frame.
        pace: deliver recorded sources at their own frame rate, like a camera.
        reconnect_min_s, reconnect_max_s: back-off between reopen attempts of a live source (doubles per failure).
        on_frame_time: called with the seconds each ``source.read`` took (for the benchmark).
    """

    def __init__(self, source: Source, latest_only: bool = True, pace: bool = False, reconnect_min_s: float = 0.5,
                 reconnect_max_s: float = 10.0, on_frame_time: Optional[Callable[[float], None]] = None):
        self.source = source
        self.latest_only = latest_only
        self.pace = pace
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self.on_frame_time = on_frame_time
        self.frames = 0          # frames read from the source
        self.dropped = 0         # frames overwritten before the consumer took them
        self.reconnects = 0      # times a live source was reopened after a failure
        self.open_attempts = 0
        self.is_open = False
        self.ended = False       # a recorded source reached its end (or failed to open)
        self.error = None        # type: Optional[str]
        self.last_frame_time = time.monotonic()
        self.bad_frames = 0      # malformed frames skipped (empty, wrong shape, wrong dtype)
        self.converted_frames = 0  # grey or BGRA frames converted to BGR
        self.hung_restarts = 0   # times a blocked read/open was abandoned for a new thread
        self._slot = None        # type: Optional[Frame]
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._reopen = threading.Event()
        self._thread = None      # type: Optional[threading.Thread]
        self._gen = 0            # the current thread's generation; an abandoned thread has an older one
        self._abandoned = []     # type: List[threading.Thread]
        self._busy_since = None  # type: Optional[float]
        self._busy_what = ""
        self._backoff = reconnect_min_s
        self._index = 0
        self._log_lost = RateLimitedLog(log)
        self._log_open = RateLimitedLog(log)
        self._log_bad = RateLimitedLog(log)
        self._back_pending = False  # reopened after a failure; "is back" is logged at its first frame

    # ------------------------------------------------------------------ consumer side
    def start(self) -> "Capture":
        self._thread = threading.Thread(target=self._run, args=(self._gen,), name="capture", daemon=True)
        self._thread.start()
        return self

    def blocked_s(self) -> float:
        """How long the current thread's ``source.read()`` / ``open()`` has been running without returning
        (s); 0 when it is not inside one."""
        since = self._busy_since
        return 0.0 if since is None else max(0.0, time.monotonic() - since)

    @property
    def blocked_in(self) -> str:
        """``"read"`` or ``"open"`` while :meth:`blocked_s` counts, else ""."""
        return self._busy_what if self._busy_since is not None else ""

    def restart_hung(self) -> bool:
        """Abandon the current thread (stuck in a source call that does not return) and start a new one
        that opens the source again. The stuck thread exits without touching the source or the slot once
        its call returns. False (nothing done) when :data:`MAX_ABANDONED` stuck threads are still alive or
        the capture is stopping."""
        self._abandoned = [t for t in self._abandoned if t.is_alive()]
        if self._stop.is_set() or len(self._abandoned) >= MAX_ABANDONED:
            return False
        with self._cond:
            self._gen += 1
            if self._thread is not None:
                self._abandoned.append(self._thread)
            self._busy_since = None
            self.is_open = False
            self.error = f"{self.source.name}: {self._busy_what or 'read'} blocked"
            self.reconnects += 1
            self.hung_restarts += 1
        self._thread = threading.Thread(target=self._run, args=(self._gen,), name="capture", daemon=True)
        self._thread.start()
        return True

    def read(self, timeout: float = 0.5) -> Optional[Frame]:
        """The newest frame not yet taken, waiting up to ``timeout`` s; ``None`` if there is none."""
        with self._cond:
            if self._slot is None and not self.ended:
                self._cond.wait(timeout)
            frame, self._slot = self._slot, None
            self._cond.notify_all()
            return frame

    @property
    def done(self) -> bool:
        """A recorded source ended and its last frame was taken."""
        with self._cond:
            return self.ended and self._slot is None

    def request_reopen(self) -> None:
        """Ask the thread to close and reopen the source after its current read (a stalled camera)."""
        self._reopen.set()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("capture thread did not stop within %.1f s (source read blocked)", timeout)
        if self._thread is None or not self._thread.is_alive():
            self.source.close()

    # ------------------------------------------------------------------ thread
    def _call(self, gen: int, what: str, fn: Callable[[], object]) -> object:
        """Run a source call, marking it busy so a hang can be seen from outside (:meth:`blocked_s`)."""
        if gen == self._gen:
            self._busy_what, self._busy_since = what, time.monotonic()
        try:
            return fn()
        finally:
            if gen == self._gen:
                self._busy_since = None

    def _open(self, gen: int = 0) -> bool:
        try:
            self._call(gen, "open", self.source.open)
        except Exception as e:  # a camera can fail in many ways; all mean "try again later"
            if gen != self._gen:
                return False
            msg = f"{e}"
            if msg != self.error and self.source.live:
                self._log_open(logging.WARNING, "%s: %s; retrying with back-off", self.source.name, msg)
            self.error = msg
            self.open_attempts += 1
            return False
        if gen != self._gen:
            return False
        # "is back" only once a frame arrives (a camera that opens but never delivers is not back); until
        # then ``error`` keeps the last failure, so STATUS says what is wrong
        self._back_pending = self._back_pending or bool(self.error)
        self.is_open = True
        self.open_attempts += 1
        self.last_frame_time = time.monotonic()
        return True

    def _lost(self, why: str) -> None:
        self._log_lost(logging.WARNING, "%s lost (%s); reopening in %.1f s", self.source.name, why, self._backoff)
        self.error = why
        self.is_open = False
        self.reconnects += 1
        try:
            self.source.close()
        except Exception:  # closing a broken device may fail too
            log.debug("close failed", exc_info=True)

    def _wait_backoff(self) -> None:
        """Sleep the current back-off (interrupted by stop) and double it up to ``reconnect_max_s``."""
        self._stop.wait(self._backoff)
        self._backoff = min(self._backoff * 2, self.reconnect_max_s)

    def _run(self, gen: int = 0) -> None:
        set_native_name("capture")  # top -H / ps -L show it (docs/runtime.md, Live pace)
        t_start = None  # type: Optional[float]
        t_open = time.monotonic()
        while not self._stop.is_set() and gen == self._gen:
            if not self.is_open:
                if self._open(gen):
                    t_start = None
                    t_open = time.monotonic()
                elif gen != self._gen:
                    return
                elif not self.source.live:
                    self.ended = True
                    break
                else:
                    self._wait_backoff()
                    continue
            t0 = time.perf_counter()
            try:
                img = self._call(gen, "read", self.source.read)
            except Exception as e:
                if gen != self._gen:
                    return  # abandoned while blocked: the new thread owns the source now
                if not self.source.live:
                    log.error("%s: read failed: %s", self.source.name, e)
                    self.error = str(e)
                    self.ended = True
                    break
                self._lost(f"read failed: {e}")
                self._wait_backoff()  # also after an open that "worked": no reopen storm
                continue
            if gen != self._gen:
                return
            dt = time.perf_counter() - t0
            if img is None:
                if self.source.live:
                    self._lost("opened, but delivered no frame")
                    self._wait_backoff()
                    continue
                self.ended = True
                break
            if self._reopen.is_set():
                self._reopen.clear()
                self._lost("stalled")
                self._wait_backoff()
                continue
            img, problem = normalise_frame(img)
            if img is None:
                self.bad_frames += 1
                self._log_bad(logging.WARNING, "%s: skipping a malformed frame: %s (%d so far)", self.source.name,
                              problem, self.bad_frames)
                continue
            if problem:
                self.converted_frames += 1
                if self.converted_frames == 1:
                    log.info("%s delivers %s frames; converting them to BGR", self.source.name, problem)
            if self.on_frame_time is not None:
                self.on_frame_time(dt)
            index = self._index
            frame = Frame(img, index, self.source.timestamp(index), time.time())
            self._index += 1
            self.frames += 1
            self.last_frame_time = time.monotonic()
            if self._back_pending or self.error:
                if self._back_pending:
                    log.info("%s is back", self.source.name)
                self._back_pending, self.error = False, None
            if self.source.live and self._backoff != self.reconnect_min_s and \
                    self.last_frame_time - t_open >= STABLE_S:
                self._backoff = self.reconnect_min_s  # delivering steadily again: the next loss starts over
            if self.pace and not self.source.live and self.source.fps > 0:
                if t_start is None:
                    t_start = time.monotonic() - frame.t
                delay = t_start + frame.t - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
            self._put(frame)
        if gen != self._gen:
            return
        with self._cond:
            self.ended = self.ended or not self.source.live
            self._cond.notify_all()

    def _put(self, frame: Frame) -> None:
        with self._cond:
            if self.latest_only:
                if self._slot is not None:
                    self.dropped += 1
            else:
                while self._slot is not None and not self._stop.is_set():
                    self._cond.wait(0.1)
            self._slot = frame
            self._cond.notify_all()
