"""systemd integration without dependencies: the sd_notify protocol and journal-friendly logging.

sd_notify is one datagram of ``KEY=VALUE`` lines sent to the Unix socket named by
``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace). Outside systemd the
variable is unset and every call is a no-op. ``WATCHDOG=1`` is rate-limited to a
quarter of ``$WATCHDOG_USEC``, so it may be called on every frame.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
import time
from typing import Optional


class Notifier:
    """Sends sd_notify messages (READY, WATCHDOG, STATUS, STOPPING, RELOADING).

    Args:
        address: the notify socket; default ``$NOTIFY_SOCKET``.
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

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` as one message; False when not under systemd or the send failed."""
        if not self.address:
            return False
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


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr; under systemd without timestamps and with journal priorities."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    if under_journal():
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
