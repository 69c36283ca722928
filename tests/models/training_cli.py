"""Run a training CLI (models.train.detectnet_v2 / distill / prune) in a child process.

Training runs through oneDNN, whose crashes (SIGSEGV in a convolution backward, seen with
``channels_last`` on a Zen-4 EPYC) cannot be caught in Python: in-process they would end the whole
test session with no report. In a child process the crash becomes this test's failure, with the
signal's name and the tail of the child's log.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Sequence

import pytest

from tests.conftest import REPO


def run_cli(module: str, args: Sequence[object], timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m module *args`` from the repository root; fails the test unless it exits 0.

    Returns the completed process (stdout and stderr as text).
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", module] + [str(a) for a in args], cwd=str(REPO), env=env,
                       capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        why = (f"killed by {signal.Signals(-r.returncode).name} (a native crash: see models/train/precision.py)"
               if r.returncode < 0 else f"exit status {r.returncode}")
        pytest.fail(f"python -m {module} {' '.join(map(str, args))}: {why}\n--- stderr (tail) ---\n{r.stderr[-3000:]}")
    return r
