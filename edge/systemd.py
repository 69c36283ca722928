"""systemd integration: the sd_notify protocol and logging to the journal.

sd_notify is one datagram of ``KEY=VALUE`` lines sent to the Unix socket named by
``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace). Outside systemd the
variable is unset and every call is a no-op. ``WATCHDOG=1`` is rate-limited to a
quarter of ``$WATCHDOG_USEC``, so it may be called on every frame.

Where ``systemd-python`` is installed (JetPack: apt ``python3-systemd``, seen by a venv made with
``--system-site-packages``; elsewhere ``pip install systemd-python``), notifications go through
``systemd.daemon.notify`` (libsystemd's ``sd_notify``) and, under systemd, log records through
``systemd.journal.JournalHandler`` with structured fields (``MASKWATCH_EVENT``, ``TRACK_ID``,
``CLASS`` on alarms: ``journalctl -u maskwatch MASKWATCH_EVENT=alarm``). Without the package the
same protocol is spoken over a plain socket here, and logs go to stderr with syslog priority
prefixes, which journald reads.

Log lines never go through file descriptor 2 directly: sounddevice points fd 2 at /dev/null
while PortAudio initialises (about 18 ms, 5 ms on a retry), and a log line written then would be
lost. The stderr handler writes to a duplicate of fd 2 made at start-up (:func:`log_stream`).
"""
from __future__ import annotations

import logging
import os
import socket
import sys
import time
from typing import Optional, TextIO

#: the stream :func:`setup_logging` writes to (a duplicate of fd 2, made once)
_LOG_STREAM = None  # type: Optional[TextIO]


def _systemd_daemon():
    """``systemd.daemon`` of systemd-python, or ``None`` where it is not installed (or blocked)."""
    try:
        from systemd import daemon
    except ImportError:
        return None
    return daemon


def _journal_handler(identifier: str = "maskwatch") -> Optional[logging.Handler]:
    """A ``systemd.journal.JournalHandler`` (``SYSLOG_IDENTIFIER=identifier``), or ``None`` without systemd-python."""
    try:
        from systemd import journal
    except ImportError:
        return None
    return journal.JournalHandler(SYSLOG_IDENTIFIER=identifier)


class Notifier:
    """Sends sd_notify messages (READY, WATCHDOG, STATUS, STOPPING, RELOADING).

    Args:
        address: the notify socket; default ``$NOTIFY_SOCKET``.

    Attributes:
        backend: ``"systemd-python"`` (``systemd.daemon.notify``; used when the package is installed and
            ``address`` is ``$NOTIFY_SOCKET``, which is what libsystemd reads) or ``"socket"`` (this module's
            own datagram socket); ``""`` when not under systemd.
    """

    def __init__(self, address: Optional[str] = None):
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        self.watchdog_interval = int(usec) / 1e6 / 4 if usec.isdigit() and (not pid or pid == str(os.getpid())) \
            else 1.0
        self._last_watchdog = 0.0
        self._sock = None  # type: Optional[socket.socket]
        self.sent = 0
        self.ready_sent = False
        self._daemon = _systemd_daemon() if self.address and self.address == os.environ.get("NOTIFY_SOCKET") \
            else None
        self.backend = "" if not self.address else ("systemd-python" if self._daemon is not None else "socket")

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` as one message; False when not under systemd or the send failed."""
        if not self.address:
            return False
        if self._daemon is not None:
            try:
                ok = bool(self._daemon.notify("\n".join(lines)))
            except (OSError, ValueError) as e:
                logging.getLogger(__name__).debug("sd_notify failed: %s", e)
                return False
            self.sent += ok
            return ok
        addr = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(lines).encode("utf-8"), addr)
        except OSError as e:
            logging.getLogger(__name__).debug("sd_notify failed: %s", e)
            return False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> bool:
        self.ready_sent = True
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self, force: bool = False) -> bool:
        """Ping the watchdog (at most every ``watchdog_interval`` s unless ``force``)."""
        now = time.monotonic()
        if not force and now - self._last_watchdog < self.watchdog_interval:
            return False
        self._last_watchdog = now
        return self.notify("WATCHDOG=1")

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class _JournalFormatter(logging.Formatter):
    """``<priority>logger: message``: journald reads the syslog priority prefix from stderr."""

    PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prio = self.PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


def under_journal() -> bool:
    """Whether stderr is connected to the journal (systemd sets ``$JOURNAL_STREAM`` to its dev:inode)."""
    js = os.environ.get("JOURNAL_STREAM", "")
    if not js:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return js == f"{st.st_dev}:{st.st_ino}"


def log_stream() -> TextIO:
    """A line-buffered text stream on a duplicate of fd 2, made once per process, so that a library
    pointing fd 2 elsewhere for a moment (sounddevice, while PortAudio initialises) cannot swallow log
    lines; ``sys.stderr`` itself where it has no file descriptor."""
    global _LOG_STREAM
    if _LOG_STREAM is None:
        try:
            fd = os.dup(sys.stderr.fileno())
        except (OSError, ValueError, AttributeError):
            return sys.stderr
        _LOG_STREAM = open(fd, "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                           errors="backslashreplace")
    return _LOG_STREAM


def setup_logging(level: str = "INFO") -> None:
    """Log to the journal under systemd (``JournalHandler`` with systemd-python; else stderr with journal
    priorities, no timestamps), otherwise to stderr with timestamps; never through fd 2 itself
    (:func:`log_stream`)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    journal = under_journal()
    handler = _journal_handler() if journal else None
    if handler is not None:
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(log_stream())
        if journal:
            handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
        else:
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
