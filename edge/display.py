"""The monitor window (pygame / SDL2), and the check that a display exists at all.

OpenCV's own window is not used: the pip OpenCV here is the headless build (the GUI
build aborts the process without a display). SDL draws into X11 or Wayland, and on a
Jetson without a desktop SDL's KMS/DRM video driver can drive the monitor directly
(``SDL_VIDEODRIVER=kmsdrm``).
"""
from __future__ import annotations

import logging
import os
import time
from typing import Optional, Tuple

import cv2
import numpy as np

log = logging.getLogger(__name__)


def display_available() -> bool:
    """Whether a display server is reachable by name: ``DISPLAY`` or ``WAYLAND_DISPLAY`` is set,
    or the admin forced an SDL video driver (``SDL_VIDEODRIVER``, e.g. ``kmsdrm``)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or
                os.environ.get("SDL_VIDEODRIVER", "") not in ("", "dummy", "offscreen"))


class Display:
    """A fullscreen (or windowed) pygame window showing BGR frames, letterboxed to fit.

    Use :func:`open_display`, which returns ``None`` (and logs why) instead of raising.

    Args:
        fullscreen: fill the monitor; otherwise a ``size`` window.
        size: (width, height) of the window when not fullscreen.
        title: window caption.
    """

    def __init__(self, fullscreen: bool = True, size: Tuple[int, int] = (1280, 720), title: str = "maskwatch"):
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame  # lazy: headless runs never load SDL
        self.pg = pygame
        pygame.display.init()  # not pygame.init(): that would also open the audio mixer
        flags = pygame.FULLSCREEN if fullscreen else 0
        self.screen = pygame.display.set_mode((0, 0) if fullscreen else tuple(size), flags)
        pygame.display.set_caption(title)
        pygame.mouse.set_visible(not fullscreen)
        self.size = self.screen.get_size()
        self.closed = False
        log.info("display open: %dx%d %s (%s)", self.size[0], self.size[1], "fullscreen" if fullscreen else "window",
                 pygame.display.get_driver())

    def pump(self) -> bool:
        """Handle window events (also while no frame arrives, so the window stays responsive);
        False once the user closed it (Esc, q or the close button)."""
        pg = self.pg
        for ev in pg.event.get():
            if ev.type == pg.QUIT or (ev.type == pg.KEYDOWN and ev.key in (pg.K_ESCAPE, pg.K_q)):
                self.closed = True
        return not self.closed

    def show(self, image_bgr: np.ndarray) -> bool:
        """Draw one frame; returns False once the user closed the window (Esc, q or the close button)."""
        pg = self.pg
        if not self.pump():
            return False
        sw, sh = self.size
        h, w = image_bgr.shape[:2]
        s = min(sw / w, sh / h)
        nw, nh = max(1, int(w * s)), max(1, int(h * s))
        img = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        rgb = np.ascontiguousarray(img[:, :, ::-1])
        surf = pg.image.frombuffer(rgb.tobytes(), (nw, nh), "RGB")
        self.screen.fill((0, 0, 0))
        self.screen.blit(surf, ((sw - nw) // 2, (sh - nh) // 2))
        pg.display.flip()
        return True

    def close(self) -> None:
        try:
            self.pg.display.quit()
        except Exception:  # closing must never fail the shutdown
            log.debug("display close failed", exc_info=True)


def open_display(fullscreen: bool = True, size: Tuple[int, int] = (1280, 720)) -> Optional[Display]:
    """A :class:`Display`, or ``None`` (logged) when no display exists or it cannot be opened."""
    if not display_available():
        log.warning("no display (DISPLAY / WAYLAND_DISPLAY not set): running headless")
        return None
    try:
        return Display(fullscreen, size)
    except ImportError:
        log.warning("pygame is not installed: running headless (pip install pygame)")
    except Exception as e:  # SDL reports a missing or refused display as pygame.error
        log.warning("cannot open the display (%s): running headless", e)
    return None


class VideoSink:
    """Writes the annotated stream: ``.avi`` as MJPG, anything else (``.mp4``) as mp4v. Never raises.

    The writer opens on the first frame (its size is not known before). A frame of another size (the source
    changed resolution) is letterboxed to the size the file was opened with (logged once per new size), so
    the file stays playable and no frame is lost. OpenCV's writer reports no write error (it prints
    ``Failed to write frame`` for each), so the free space of the folder is checked before every frame
    (``statvfs``, microseconds): under ``min_free_bytes`` free, or when opening or writing fails, the writer
    is closed, the failure logged once (then at most every ``log_every_s``) and shown by :meth:`status`, and
    writing is tried again every ``retry_s`` into a new file (``name-2.mp4``, ...) so what was written stays.

    Attributes:
        frames: frames written; error: why nothing is written now ("" while writing); files: paths opened.
    """

    def __init__(self, path: str, fps: float, retry_s: float = 30.0, log_every_s: float = 60.0,
                 min_free_bytes: int = 1 << 20):
        self.path = str(path)
        self.fps = fps if fps and fps > 0 else 25.0
        self.retry_s, self.log_every_s, self.min_free_bytes = retry_s, log_every_s, min_free_bytes
        self.writer = None  # type: Optional[cv2.VideoWriter]
        self.frames = 0
        self.size = None  # type: Optional[Tuple[int, int]]
        self.error = ""
        self.files = []  # type: list
        self._t_fail = self._t_log = -1e18
        self._sizes_seen = set()  # type: set

    def status(self) -> str:
        """``", video not written (why)"`` while writing fails, else "" (for STATUS)."""
        return f", video not written ({self.error})" if self.error else ""

    def _fail(self, why: str) -> None:
        now = time.monotonic()
        first = not self.error
        self.error, self._t_fail = why, now
        if self.writer is not None:
            try:
                self.writer.release()
            except Exception:  # releasing on a full disk may fail too
                pass
            self.writer = None
        if first or now - self._t_log >= self.log_every_s:
            self._t_log = now
            log.error("%s annotated video %s: %s; %d frames written so far; trying again every %.0f s",
                      "cannot write the" if first else "still cannot write the", self.files[-1] if self.files
                      else self.path, why, self.frames, self.retry_s)

    def _free_problem(self) -> str:
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            st = os.statvfs(folder)
        except OSError as e:
            return f"{folder}: {e.strerror or e}"
        free = st.f_bavail * st.f_frsize
        return "" if free >= self.min_free_bytes else f"no space left on device ({free // 1024} KiB free)"

    def _open(self, w: int, h: int) -> bool:
        path = self.path
        if self.files:  # after a failure: a new file, so what was written stays
            stem, ext = os.path.splitext(self.path)
            path = f"{stem}-{len(self.files) + 1}{ext}"
        fourcc = "MJPG" if path.lower().endswith(".avi") else "mp4v"
        self.files.append(path)
        try:
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), self.fps, (w, h))
            ok = writer.isOpened()
        except cv2.error as e:
            writer, ok = None, False
            log.debug("VideoWriter: %s", e)
        if not ok:
            self._fail(f"cannot open {path} ({fourcc})")
            return False
        self.writer, self.size = writer, (w, h)
        self._sizes_seen = {(w, h)}
        if self.error:
            log.warning("writing the annotated video again, to %s", path)
            self.error = ""
        else:
            log.info("writing annotated video to %s (%s, %.1f fps)", path, fourcc, self.fps)
        return True

    def write(self, image_bgr: np.ndarray) -> bool:
        """Write one frame; False (never an exception) when it was not written."""
        if self.error and time.monotonic() - self._t_fail < self.retry_s:
            return False
        problem = self._free_problem()
        if problem:
            self._fail(problem)
            return False
        h, w = image_bgr.shape[:2]
        if self.writer is None and not self._open(w, h):
            return False
        if (w, h) != self.size:
            if (w, h) not in self._sizes_seen:
                self._sizes_seen.add((w, h))
                log.warning("the annotated video is %dx%d; frames of %dx%d are scaled to fit (the source changed "
                            "resolution)", self.size[0], self.size[1], w, h)
            image_bgr = _fit(image_bgr, self.size)
        try:
            self.writer.write(image_bgr)
        except cv2.error as e:
            self._fail(f"write failed ({str(e).strip().splitlines()[-1][:100]})")
            return False
        self.frames += 1
        return True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None


def _fit(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """``image`` letterboxed (scaled, aspect kept, black borders) to ``size`` = (width, height)."""
    tw, th = size
    h, w = image.shape[:2]
    s = min(tw / w, th / h)
    nw, nh = max(1, min(tw, int(round(w * s)))), max(1, min(th, int(round(h * s))))
    out = np.zeros((th, tw, 3), np.uint8)
    x, y = (tw - nw) // 2, (th - nh) // 2
    out[y:y + nh, x:x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else
                                         cv2.INTER_LINEAR)
    return out
