"""``maskwatch bench``: where the time goes, per stage, on one video file.

One run measures, on the same file:

1. **capture only**: decoding the video with OpenCV and nothing else (the ceiling);
2. **end to end**: the real pipeline, headless, every frame, overlay drawn, no sound,
   with the median and p95 milliseconds of each stage (capture/decode, pre-process,
   inference, decode and cluster, track and policy, classify (the secondary classifier, when
   ``model.classifier`` is set: also its mean ms per frame, faces per frame and ms per face), overlay).

Capture runs in its own thread in parallel with inference, so end-to-end frames/s
approaches the slower of the two.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional

import cv2
import numpy as np

from edge.config import Config
from edge.pipeline import STAGES, Pipeline, RunOptions, with_overrides


def capture_only(path: str, max_frames: Optional[int] = None) -> Dict[str, float]:
    """Decode ``path`` with OpenCV alone: frames/s and median ms per frame."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open video {path}")
    times = []
    t0 = time.perf_counter()
    while max_frames is None or len(times) < max_frames:
        t = time.perf_counter()
        ok, _ = cap.read()
        if not ok:
            break
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    cap.release()
    a = np.asarray(times) * 1000.0
    return {"frames": len(times), "fps": len(times) / total if total > 0 else 0.0,
            "ms_median": float(np.median(a)) if len(a) else 0.0}


def run_bench(source: str, cfg: Optional[Config] = None, max_frames: Optional[int] = None) -> Dict[str, Any]:
    """The benchmark as one JSON-ready dict: ``fps_end_to_end``, ``fps_capture_only``, ``stages``, ..."""
    cfg = cfg or Config()
    cap = capture_only(source, max_frames)
    with tempfile.TemporaryDirectory(prefix="maskwatch-bench-") as tmp:
        run_cfg = with_overrides(cfg, source=source, headless=True, fast=True, events=str(Path(tmp) / "events.jsonl"))
        run_cfg.display.save_video = None
        pipe = Pipeline(run_cfg, RunOptions(max_frames=max_frames, draw=True, sound=False))
        res = pipe.run()
    stages = pipe.stages.summary()
    med = {s: stages.get(s, {}).get("ms_median", 0.0) for s in STAGES}
    overhead = med["preprocess"] + med["decode_cluster"] + med["track_policy"] + med["overlay"]
    r = {
        "source": str(source),
        "model": str(cfg.model.resolved_path()),
        "frames": res.frames,
        "fps_end_to_end": round(res.fps, 2),
        "fps_capture_only": round(cap["fps"], 2),
        "capture_only_ms_median": round(cap["ms_median"], 3),
        "stages": {s: {"ms_median": stages[s]["ms_median"], "ms_p95": stages[s]["ms_p95"]} for s in STAGES
                   if s in stages},
        "classifier": str(cfg.model.resolved_classifier()) if cfg.model.classifier else None,
        "overhead_ms_median": round(overhead, 3),
        "overhead_vs_capture": round(overhead / cap["ms_median"], 2) if cap["ms_median"] else None,
        "alarms": len(res.alarms),
    }
    sec = pipe.secondary
    if sec is not None and "classify" in r["stages"]:
        a = np.asarray(pipe.stages.times["classify"]) * 1000.0
        r["stages"]["classify"].update(ms_mean=round(float(a.mean()), 3), faces_per_frame=round(sec.faces_per_frame, 3),
                                       faces=sec.faces, ms_per_face=round(float(a.sum()) / max(sec.faces, 1), 3))
    return r


def format_bench(r: Dict[str, Any]) -> str:
    lines = [f"maskwatch bench: {r['source']} ({r['frames']} frames), model {r['model']}",
             f"{'stage':<16}{'median ms':>10}{'p95 ms':>10}"]
    for s, v in r["stages"].items():
        extra = (f"   mean {v['ms_mean']:.2f} ms/frame, {v['faces_per_frame']:.2f} faces/frame, "
                 f"{v['ms_per_face']:.2f} ms/face") if "faces_per_frame" in v else ""
        lines.append(f"{s:<16}{v['ms_median']:>10.2f}{v['ms_p95']:>10.2f}{extra}")
    lines.append(f"end to end (headless): {r['fps_end_to_end']:.2f} fps")
    lines.append(f"capture only (decode): {r['fps_capture_only']:.2f} fps ({r['capture_only_ms_median']:.2f} ms/frame)")
    lines.append(f"pipeline overhead (pre-process + decode/cluster + track/policy + overlay): "
                 f"{r['overhead_ms_median']:.2f} ms = {r['overhead_vs_capture']}x capture-only decode time")
    return "\n".join(lines)
