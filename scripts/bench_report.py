#!/usr/bin/env python3
"""Time and peak memory of ``maskwatch report`` on a big events file this script writes.

    python3 scripts/bench_report.py --mb 200 [--runs 3] [--code DIR]

Writes ``--mb`` MB of alarm events (realistic records, spread over a year, one asked day with 50
events) and a counts file into a temporary folder, then runs ``python -m edge report --day DAY --events
FILE`` in a child process ``--runs`` times and prints the median wall time and the peak RSS
(``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` of each child, measured in a fresh wrapper process).
``--code DIR`` runs the ``edge`` package found in DIR (e.g. an older checkout) instead of this one.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAY = "2026-03-04"

_WRAPPER = """
import resource, subprocess, sys, time
t0 = time.perf_counter()
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
dt = time.perf_counter() - t0
print(dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)
sys.stderr.write(r.stderr[-2000:])
"""


def write_files(folder: Path, mb: float) -> Path:
    """``events.jsonl`` of about ``mb`` MB (and ``counts.jsonl``) in ``folder``; returns the events path."""
    events, counts = folder / "events.jsonl", folder / "counts.jsonl"
    start = datetime.datetime(2026, 1, 1)
    target = int(mb * 1e6)
    size, i = 0, 0
    with open(events, "w", encoding="utf-8") as f:
        while size < target:
            t = start + datetime.timedelta(seconds=(i * 9973) % (365 * 86400))
            if t.strftime("%Y-%m-%d") == DAY:
                t += datetime.timedelta(days=1)
            rec = {"type": "alarm", "time": t.isoformat(timespec="milliseconds") + "+00:00", "frame": i,
                   "track_id": i, "class": "no_mask", "score": 0.83, "duration_s": 1.2, "source_t": 12.5,
                   "suppressed": False, "sounded": i % 3 == 0, "reason": None if i % 3 == 0 else "cooldown",
                   "box": [412.5, 120.25, 518.0, 260.75]}
            line = json.dumps(rec) + "\n"
            f.write(line)
            size += len(line)
            i += 1
        for k in range(50):  # the asked day
            f.write(json.dumps(dict(rec, time=f"{DAY}T{8 + k % 10:02d}:{k:02d}:00.000+00:00", track_id=k)) + "\n")
    with open(counts, "w", encoding="utf-8") as f:
        for k in range(200):
            f.write(json.dumps({"type": "counts", "hour": f"{DAY}T{8 + k % 10:02d}", "mask": 1, "no_mask": 0,
                                "mask_incorrect": 0}) + "\n")
    return events


def measure(events: Path, code: Path) -> tuple:
    env = dict(os.environ, PYTHONPATH=str(code))
    out = subprocess.run([sys.executable, "-c", _WRAPPER, sys.executable, "-m", "edge", "report", "--day", DAY,
                          "--events", str(events)], capture_output=True, text=True, env=env, cwd=str(code))
    wall, rss_kb, rc = out.stdout.split()
    return float(wall), int(rss_kb) / 1024.0, int(rc), out.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=200.0, help="size of the events file (MB)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--code", type=Path, default=REPO, help="folder holding the edge package to measure")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        events = write_files(Path(tmp), args.mb)
        print(f"wrote {events.stat().st_size / 1e6:.1f} MB of events in {time.perf_counter() - t0:.1f} s")
        res = [measure(events, args.code) for _ in range(args.runs)]
    for wall, rss, rc, err in res:
        print(f"  run: {wall:.2f} s, peak RSS {rss:.0f} MiB, rc {rc}")
        if rc:
            print(err)
    print(f"maskwatch report ({args.code}): median {statistics.median(r[0] for r in res):.2f} s, "
          f"peak RSS median {statistics.median(r[1] for r in res):.0f} MiB over {len(res)} runs, "
          f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
