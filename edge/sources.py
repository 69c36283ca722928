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
back-off; the thread never gives up while the appliance runs.
"""
from __future__ import annotations

import abc
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

import cv2
import numpy as np

from edge.types import Frame

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class SourceError(RuntimeError):
    """A source cannot be opened or read."""


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
    """

    def __init__(self, target: str, kind: str, width: int = 1280, height: int = 720, fps: float = 30.0,
                 fourcc: str = "MJPG"):
        if kind not in ("camera", "file", "gstreamer"):
            raise ValueError(f"kind must be camera, file or gstreamer, got {kind!r}")
        self.target, self.kind = target, kind
        self.width, self.height, self.req_fps, self.fourcc = width, height, fps, fourcc
        self.live = kind != "file"
        self.name = f"{kind} {target}"
        self.fps = fps if self.live else 0.0
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
            dev = int(self.target) if self.target.isdigit() else self.target
            if isinstance(dev, str) and not os.path.exists(dev):
                raise SourceError(f"no camera at {dev}")
            cap = cv2.VideoCapture(dev, cv2.CAP_V4L2)
            if cap.isOpened():
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
                cap.set(cv2.CAP_PROP_FPS, self.req_fps)
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.name}")
        self.cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        if fps and fps > 0 and (self.kind == "file" or fps < 1000):
            self.fps = float(fps)
        log.info("opened %s: %dx%d at %.1f fps", self.name, cap.get(cv2.CAP_PROP_FRAME_WIDTH),
                 cap.get(cv2.CAP_PROP_FRAME_HEIGHT), self.fps)

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


def gstreamer_available() -> bool:
    """Whether this OpenCV was built with GStreamer."""
    for line in cv2.getBuildInformation().splitlines():
        if "GStreamer" in line and ":" in line:
            return "YES" in line.split(":", 1)[1].upper()
    return False


def make_source(spec: str, width: int = 1280, height: int = 720, fps: float = 30.0, fourcc: str = "MJPG") -> Source:
    """Pick the source type for ``spec``.

    * a string containing ``!`` is a GStreamer pipeline;
    * digits (``0``) or ``/dev/video*`` is a V4L2 camera;
    * an existing folder is an image folder;
    * anything else is a video file.
    """
    spec = str(spec).strip()
    if "!" in spec:
        return OpenCVSource(spec, "gstreamer", width, height, fps, fourcc)
    if spec.isdigit() or spec.startswith("/dev/video"):
        return OpenCVSource(spec, "camera", width, height, fps, fourcc)
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
        self._slot = None        # type: Optional[Frame]
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._reopen = threading.Event()
        self._thread = None      # type: Optional[threading.Thread]

    # ------------------------------------------------------------------ consumer side
    def start(self) -> "Capture":
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()
        return self

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
    def _open(self) -> bool:
        try:
            self.source.open()
        except Exception as e:  # a camera can fail in many ways; all mean "try again later"
            msg = f"{e}"
            if msg != self.error and self.source.live:
                log.warning("%s: %s; retrying with back-off", self.source.name, msg)
            self.error = msg
            self.open_attempts += 1
            return False
        if self.error:
            log.info("%s is back", self.source.name)
        self.error = None
        self.is_open = True
        self.open_attempts += 1
        self.last_frame_time = time.monotonic()
        return True

    def _lost(self, why: str) -> None:
        log.warning("%s lost (%s); reopening", self.source.name, why)
        self.error = why
        self.is_open = False
        self.reconnects += 1
        try:
            self.source.close()
        except Exception:  # closing a broken device may fail too
            log.debug("close failed", exc_info=True)

    def _run(self) -> None:
        backoff = self.reconnect_min_s
        index = 0
        t_start = None  # type: Optional[float]
        while not self._stop.is_set():
            if not self.is_open:
                if self._open():
                    backoff = self.reconnect_min_s
                    t_start = None
                elif not self.source.live:
                    self.ended = True
                    break
                else:
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.reconnect_max_s)
                    continue
            t0 = time.perf_counter()
            try:
                img = self.source.read()
            except Exception as e:
                if not self.source.live:
                    log.error("%s: read failed: %s", self.source.name, e)
                    self.error = str(e)
                    self.ended = True
                    break
                self._lost(f"read failed: {e}")
                continue
            dt = time.perf_counter() - t0
            if img is None:
                if self.source.live:
                    self._lost("no frame")
                    continue
                self.ended = True
                break
            if self._reopen.is_set():
                self._reopen.clear()
                self._lost("stalled")
                continue
            if self.on_frame_time is not None:
                self.on_frame_time(dt)
            frame = Frame(img, index, self.source.timestamp(index), time.time())
            index += 1
            self.frames += 1
            self.last_frame_time = time.monotonic()
            if self.pace and not self.source.live and self.source.fps > 0:
                if t_start is None:
                    t_start = time.monotonic() - frame.t
                delay = t_start + frame.t - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
            self._put(frame)
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
