#!/usr/bin/env python3
"""`maskwatch bench --json` on one clip for several configs, interleaved, N runs each; medians and the load
average at every run (issue 20: cascade on vs off, 640x352 vs 640x480).

    PYTHONPATH=$PWD python3 scripts/bench_interleaved.py --source ../shared/data/videos/unmasked-man-outdoor-720p.mp4 \
        --runs 5 on=default off=runs/bench/off.yaml [--json out.json]

Each config is NAME=PATH (a YAML for ``-c``) or NAME=default (the built-in defaults, no ``-c``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def bench_once(source: str, cfg: str, max_frames: int | None) -> dict:
    cmd = [sys.executable, "-m", "edge", "bench", "--source", source, "--json"]
    if cfg != "default":
        cmd += ["-c", cfg]
    if max_frames:
        cmd += ["--max-frames", str(max_frames)]
    load0 = os.getloadavg()
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    b = json.loads(r.stdout.strip().splitlines()[-1])
    b["loadavg_before"] = [round(x, 2) for x in load0]
    b["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return b


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--json", default=None, help="write every run and the medians here")
    ap.add_argument("configs", nargs="+", help="NAME=PATH or NAME=default")
    a = ap.parse_args(argv)
    cfgs = [c.split("=", 1) for c in a.configs]
    runs: dict = {n: [] for n, _ in cfgs}
    for i in range(a.runs):
        for name, cfg in cfgs:
            b = bench_once(a.source, cfg, a.max_frames)
            runs[name].append(b)
            st = b["stages"]
            print(f"{time.strftime('%H:%M:%S', time.gmtime())} run {i + 1} {name:>8}: {b['fps_end_to_end']:6.2f} fps, "
                  f"inference {st.get('inference', {}).get('ms_median', float('nan')):.2f} ms, classify "
                  f"{st.get('classify', {}).get('ms_median', 0.0):.2f} ms median, alarms {b['alarms']}, "
                  f"load {b['loadavg_before'][0]:.2f} -> {b['loadavg_after'][0]:.2f}", flush=True)
    summary = {}
    for name, bs in runs.items():
        fps = [b["fps_end_to_end"] for b in bs]
        summary[name] = {
            "config": dict(cfgs)[name], "runs": len(bs), "fps_median": statistics.median(fps), "fps": fps,
            "inference_ms_median": statistics.median(b["stages"]["inference"]["ms_median"] for b in bs),
            "classify_ms_mean_median": statistics.median(b["stages"].get("classify", {}).get("ms_mean", 0.0) for b in bs),
            "load1_min_max": [min(b["loadavg_before"][0] for b in bs), max(b["loadavg_after"][0] for b in bs)],
            "model": bs[0]["model"], "classifier": bs[0]["classifier"], "alarms": [b["alarms"] for b in bs],
        }
        s = summary[name]
        print(f"{name}: median {s['fps_median']:.2f} fps over {len(fps)} runs ({min(fps):.2f}-{max(fps):.2f}), "
              f"inference median {s['inference_ms_median']:.2f} ms, classify mean {s['classify_ms_mean_median']:.2f} ms/frame, "
              f"load1 {s['load1_min_max'][0]:.2f}-{s['load1_min_max'][1]:.2f}; model {s['model']}, classifier {s['classifier']}")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump({"source": a.source, "summary": summary, "runs": runs}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
