"""The monitor window (pygame / SDL2), and the check that a display exists at all.

OpenCV's own window is not used: the pip OpenCV here is the headless build (the GUI
build aborts the process without a display). SDL draws into X11 or Wayland, and on a
Jetson without a desktop SDL's KMS/DRM video driver can drive the monitor directly
(``SDL_VIDEODRIVER=kmsdrm``).
"""
from __future__ import annotations

import logging
import os
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
    """Writes the annotated stream: ``.avi`` as MJPG, anything else (``.mp4``) as mp4v.

    The writer opens on the first frame (its size is not known before).
    """

    def __init__(self, path: str, fps: float):
        self.path = str(path)
        self.fps = fps if fps and fps > 0 else 25.0
        self.writer = None  # type: Optional[cv2.VideoWriter]
        self.frames = 0

    def write(self, image_bgr: np.ndarray) -> None:
        if self.writer is None:
            h, w = image_bgr.shape[:2]
            fourcc = "MJPG" if self.path.lower().endswith(".avi") else "mp4v"
            self.writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*fourcc), self.fps, (w, h))
            if not self.writer.isOpened():
                raise OSError(f"cannot write video {self.path} ({fourcc})")
            log.info("writing annotated video to %s (%s, %.1f fps)", self.path, fourcc, self.fps)
        self.writer.write(image_bgr)
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
