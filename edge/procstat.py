"""What this process costs: CPU time per thread and resident memory, read from Linux ``/proc``.

Used by ``maskwatch bench --live`` (:func:`edge.bench.run_live`). Standard library only (no psutil).
Where ``/proc`` is missing (not Linux) the per-thread figures are empty and the process total comes
from :func:`os.times`.

Thread names: Python names its threads (``capture``, ``telemetry``, ...) but the kernel still calls
them all ``python3``; :func:`set_native_name` copies the name to the kernel (``PR_SET_NAME``) so
``top -H``, ``htop`` and ``ps -L`` show it too.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from typing import Dict, Optional, Tuple

_PR_SET_NAME = 15
_libc = None  # type: Optional[ctypes.CDLL]


def set_native_name(name: str) -> bool:
    """Give the calling thread the kernel name ``name`` (first 15 bytes; Linux ``prctl(PR_SET_NAME)``).

    Returns False (and does nothing) where that is not available. Never raises."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return _libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode("utf-8", "replace")[:15]), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _ticks() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 100.0


TICKS = _ticks()


def usable_cpus() -> int:
    """CPU cores this process may run on: its affinity mask (``taskset``, systemd ``CPUAffinity=``, a cgroup
    cpuset), else :func:`os.cpu_count`; at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def process_cpu_s() -> float:
    """CPU seconds (user + system) of the whole process so far, ended threads included."""
    t = os.times()
    return t.user + t.system


def thread_cpu_s() -> Dict[int, Tuple[str, float]]:
    """``{tid: (kernel thread name, CPU seconds user + system)}`` for every live thread of this process
    (``/proc/self/task/<tid>/stat`` fields 14 and 15, in clock ticks of 1/``SC_CLK_TCK`` s: 10 ms
    resolution); empty without ``/proc``."""
    out = {}  # type: Dict[int, Tuple[str, float]]
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as f:
                raw = f.read().decode("utf-8", "replace")
        except OSError:  # the thread ended meanwhile
            continue
        # "tid (comm) state ppid ...": comm may contain spaces and parentheses, so split at the last ')'
        head, _, rest = raw.rpartition(")")
        comm = head.partition("(")[2]
        fields = rest.split()
        try:  # fields[0] is field 3 (state): utime is field 14, stime field 15
            out[int(tid)] = (comm, (int(fields[11]) + int(fields[12])) / TICKS)
        except (IndexError, ValueError):
            continue
    return out


def python_thread_names() -> Dict[int, str]:
    """``{native thread id: Python thread name}`` of the live Python threads (``MainThread``, ``capture``...)."""
    out = {}  # type: Dict[int, str]
    for t in threading.enumerate():
        nid = getattr(t, "native_id", None)
        if nid is not None:
            out[nid] = t.name
    return out


def rss_mib() -> Tuple[float, float]:
    """``(resident set size now, peak resident set size)`` of the process in MiB (``VmRSS``, ``VmHWM`` of
    ``/proc/self/status``); ``(0.0, peak from getrusage)`` without ``/proc``."""
    now = peak = 0.0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    now = int(line.split()[1]) / 1024.0
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) / 1024.0
    except OSError:
        try:
            import resource
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        except (ImportError, OSError):
            pass
    return now, peak
