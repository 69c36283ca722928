"""``maskwatch report`` streams its files (issue 19): its memory does not grow with the events file, and a
missing events file is an error, not a day of zeros. Speed is measured by scripts/bench_report.py."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from edge_helpers import REPO, maskwatch_cmd


def _bench():
    spec = importlib.util.spec_from_file_location("bench_report", str(REPO / "scripts" / "bench_report.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_report_memory_stays_bounded_on_a_50_mb_events_file(tmp_path):
    bench = _bench()
    events = bench.write_files(tmp_path, 50)
    wall, rss_mib, rc, err = bench.measure(events, REPO)
    assert rc == 0, err
    # the whole-file reader needed about 7.6x the file size (1.53 GB for 200 MB); streaming stays near the
    # interpreter's own ~45 MiB (pydantic, numpy, yaml imported)
    assert rss_mib < 200, f"peak RSS {rss_mib:.0f} MiB on a 50 MB file"
    r = subprocess.run(maskwatch_cmd() + ["report", "--day", bench.DAY, "--events", str(events), "--json"],
                       capture_output=True, text=True, timeout=600, cwd=str(REPO))
    import json
    rep = json.loads(r.stdout)
    assert rep["alarms_raised"] == 50 and rep["total"]["mask"] == 200, rep


def test_report_on_a_missing_events_file_is_an_error(tmp_path):
    r = subprocess.run(maskwatch_cmd() + ["report", "--day", "2026-03-04", "--events", str(tmp_path / "nope.jsonl")],
                       capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert r.returncode == 1 and "no events file at" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_report_refuses_a_fifo_at_once(tmp_path):
    import os
    fifo = tmp_path / "events.jsonl"
    os.mkfifo(str(fifo))
    r = subprocess.run(maskwatch_cmd() + ["report", "--day", "2026-03-04", "--events", str(fifo)],
                       capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert r.returncode == 1 and "not a regular file" in r.stderr, r.stderr
