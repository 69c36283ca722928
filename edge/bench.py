"""``maskwatch bench``: where the time goes, per stage, on one video file.

One run measures, on the same file:

1. **capture only**: decoding the video with OpenCV and nothing else (the ceiling);
2. **end to end**: the real pipeline, headless, every frame, overlay drawn, no sound,
   with the median and p95 milliseconds of each stage (capture/decode, pre-process,
   inference, decode and cluster, track and policy, classify (the secondary classifier, when
   ``model.classifier`` is set: also its mean ms per frame, faces per frame and ms per face), overlay).

Capture runs in its own thread in parallel with inference, so end-to-end frames/s
approaches the slower of the two.

``maskwatch bench --live`` (:func:`run_live`) measures what the appliance costs instead of how fast it
can go: the file is delivered like a camera, at its own frame rate or at ``--fps`` (the camera's
``camera.fps``), frames are dropped when the loop is late, the overlay is drawn, and the run reports the
CPU cores used (process CPU time / wall time, in total and per thread), peak and steady RSS, frames
dropped and the per-stage medians. docs/runtime.md ("Live pace") says how to read them.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import cv2
import numpy as np

from edge import procstat
from edge.config import Config
from edge.detector import load_backend
from edge.pipeline import STAGES, Pipeline, RunOptions, with_overrides
from edge.sources import OpenCVSource, Source


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


# ---------------------------------------------------------------------------------------------- live pace
class PacedFile(Source):
    """A video file delivered like a camera: at ``fps`` (default: the file's own rate), looped until
    ``max_frames`` frames were delivered (default: one pass). :class:`edge.sources.Capture` paces it
    (``Source.timestamp(i) = i / fps``) and drops frames the frame loop has not taken in time.

    Raises (from :meth:`open`): :class:`edge.sources.SourceError` when the file cannot be opened.
    """

    live = False

    def __init__(self, path: str, fps: Optional[float] = None, max_frames: Optional[int] = None):
        self.inner = OpenCVSource(str(path), "file")
        self.name = f"file {path} (live pace)"
        self.req_fps, self.max_frames = fps, max_frames
        self.delivered = 0
        self.fps = 0.0

    def open(self) -> None:
        self.inner.open()
        self.fps = float(self.req_fps or self.inner.fps or 25.0)

    def read(self) -> Optional[np.ndarray]:
        if self.max_frames is not None and self.delivered >= self.max_frames:
            return None
        img = self.inner.read()
        if img is None and self.max_frames is not None and self.delivered > 0:  # loop the file
            self.inner.close()
            self.inner.open()
            img = self.inner.read()
        if img is not None:
            self.delivered += 1
        return img

    def close(self) -> None:
        self.inner.close()


class CpuSampler:
    """Samples the process every ``interval`` s in its own thread (``bench-sampler``): wall clock, process
    CPU seconds, per-thread CPU seconds, RSS, and ``progress()`` (frames processed, frames captured)."""

    def __init__(self, progress: Callable[[], "tuple"], interval: float = 0.25):
        self.progress, self.interval = progress, interval
        self.samples = []  # type: List[Dict[str, Any]]
        self.threads_seen = {}  # type: Dict[int, tuple]  # tid -> last (comm, cpu_s), ended threads kept
        self.names = {}  # type: Dict[int, str]  # tid -> Python thread name, ended threads kept
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def sample(self) -> Dict[str, Any]:
        tasks = procstat.thread_cpu_s()
        self.threads_seen.update(tasks)
        self.names.update(procstat.python_thread_names())
        rss, _ = procstat.rss_mib()
        done, captured = self.progress()
        s = {"t": time.monotonic(), "cpu": procstat.process_cpu_s(), "tasks": tasks, "rss": rss,
             "frames": done, "captured": captured}
        self.samples.append(s)
        return s

    def _run(self) -> None:
        procstat.set_native_name("bench-sampler")
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> "CpuSampler":
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)


#: thread names (:func:`live_figures` rows) counted as the frame loop: the loop itself and the inference pool
FRAME_LOOP_THREADS = ("main", "onnxruntime", "tensorrt")


def live_figures(samples: List[Dict[str, Any]], labels: Dict[int, str], cpu_count: int,
                 target_fps: Optional[float] = None) -> Dict[str, Any]:
    """The live benchmark's arithmetic over the steady window of ``samples`` (:class:`CpuSampler`): from the
    first sample with a processed frame to the last sample in which frames still came.

    Returns ``cpu_cores`` (process CPU s / wall s, 0 to ``cpu_count``), ``threads`` (per thread: name,
    tid, CPU s, cores; largest first), ``fps_processed``, ``fps_captured`` (the pace, measured from the
    first captured frame to the last), ``window_s``,
    ``rss_mib_steady`` (median RSS over the window's second half), and the cores split into
    ``cpu_cores_capture`` (the capture thread and the decoder threads it started: per captured frame),
    ``cpu_cores_frame_loop`` (:data:`FRAME_LOOP_THREADS`: per processed frame) and ``cpu_cores_other``.
    ``cpu_cores_no_drop_estimate``: the cores the same per-frame costs would take with no frame dropped at
    ``target_fps`` (capture share scaled by ``target_fps / fps_captured``, frame-loop share by
    ``target_fps / fps_processed``); ``None`` without ``target_fps``. On a loaded machine, where frames are
    dropped, it is the figure to compare with a target at full rate.

    Raises:
        ValueError: fewer than two samples in the window (the run was shorter than the sampling interval).
    """
    start = next((i for i, s in enumerate(samples) if s["frames"] >= 1), None)
    end = None
    for i in range(len(samples) - 1, 0, -1):
        if samples[i]["frames"] > samples[i - 1]["frames"]:
            end = i
            break
    if start is None or end is None or end <= start:
        raise ValueError("the live run was too short to measure (fewer than two samples while frames came)")
    a, b = samples[start], samples[end]
    wall = b["t"] - a["t"]
    last = {}  # type: Dict[int, tuple]  # each thread's last sample in the window (ended threads too)
    for s in samples[start:end + 1]:
        last.update(s["tasks"])
    threads = [(tid, comm, cpu - a["tasks"].get(tid, (comm, 0.0))[1]) for tid, (comm, cpu) in last.items()]
    rows = [{"name": labels.get(tid, f"video decode ({comm})" if comm.startswith("av:") else f"{comm} (native)"), "tid": tid, "cpu_s": round(cpu, 3),
             "cores": round(cpu / wall, 3)} for tid, comm, cpu in threads]
    rows.sort(key=lambda r: -r["cpu_s"])
    half = samples[start + (end - start) // 2:end + 1]
    frames, captured = b["frames"] - a["frames"], b["captured"] - a["captured"]
    # the pace itself: from the first captured frame to the last sample in which one came (the processing
    # window above can outlast the source's end by the loop's last frames)
    c0 = next((s for s in samples if s["captured"] >= 1), a)
    c1 = next((samples[i] for i in range(len(samples) - 1, 0, -1)
               if samples[i]["captured"] > samples[i - 1]["captured"]), b)
    fps_captured = (c1["captured"] - c0["captured"]) / (c1["t"] - c0["t"]) if c1["t"] > c0["t"] else 0.0
    cap = sum(r["cpu_s"] for r in rows if r["name"].startswith(("capture", "video decode"))) / wall
    loop = sum(r["cpu_s"] for r in rows if r["name"] in FRAME_LOOP_THREADS) / wall
    other = (b["cpu"] - a["cpu"]) / wall - cap - loop
    est = None
    if target_fps and frames > 0 and captured > 0:
        est = round(cap * target_fps * wall / captured + loop * target_fps * wall / frames + max(other, 0.0), 3)
    return {
        "window_s": round(wall, 3),
        "cpu_s": round(b["cpu"] - a["cpu"], 3),
        "cpu_cores": round((b["cpu"] - a["cpu"]) / wall, 3),
        "cpu_ms_per_frame": round(1000.0 * (b["cpu"] - a["cpu"]) / max(b["frames"] - a["frames"], 1), 2),
        "cpu_count": cpu_count,
        "threads": rows,
        "frames_in_window": b["frames"] - a["frames"],
        "fps_processed": round((b["frames"] - a["frames"]) / wall, 2),
        "fps_captured": round(fps_captured, 2),
        "rss_mib_steady": round(statistics.median(s["rss"] for s in half), 1),
        "cpu_cores_capture": round(cap, 3),
        "cpu_cores_frame_loop": round(loop, 3),
        "cpu_cores_other": round(other, 3),
        "cpu_cores_no_drop_estimate": est,
    }


def run_live(source: str, cfg: Optional[Config] = None, fps: Optional[float] = None,
             seconds: Optional[float] = None, interval: float = 0.25) -> Dict[str, Any]:
    """Run the real pipeline on ``source`` (a video file) at live pace and measure what it costs.

    Args:
        source: a video file.
        cfg: the configuration (model, classifier, thresholds); the source, display (off), events (a
            temporary file) and pacing (on) are set here. The overlay is drawn as for a monitor; no sound.
        fps: deliver frames at this rate (a camera's ``camera.fps``); None: the file's own rate.
        seconds: loop the file until this many seconds of frames were delivered; None: one pass.
        interval: CPU/RSS sampling period (s).

    Returns:
        A JSON-ready dict: ``cpu_cores`` (process CPU time / wall time over the steady window),
        ``threads`` (the same per thread: ``main`` is the frame loop, ``capture`` the decode thread,
        ``onnxruntime`` the inference thread pool), ``rss_mib_peak``, ``rss_mib_steady``, ``frames``,
        ``captured``, ``dropped``, ``fps_target``, ``fps_captured``, ``fps_processed``, ``stages``
        (median and p95 ms), ``load_avg`` (1-minute load at start and end).

    Raises:
        FileNotFoundError, edge.sources.SourceError: the file cannot be opened.
        ValueError: the run was too short to measure.
    """
    cfg = cfg or Config()
    if not Path(source).is_file():
        raise FileNotFoundError(f"no such video file: {source}")
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    probe = PacedFile(source, fps)
    probe.open()
    rate = probe.fps
    probe.close()
    max_frames = int(round(seconds * rate)) if seconds else None
    with tempfile.TemporaryDirectory(prefix="maskwatch-bench-") as tmp:
        run_cfg = with_overrides(cfg, source=source, headless=True, events=str(Path(tmp) / "events.jsonl"))
        run_cfg.display.save_video = None
        run_cfg.camera.realtime = True
        before = set(procstat.thread_cpu_s())
        backend = load_backend(run_cfg.model.backend, run_cfg.model.resolved_path(), run_cfg.model.threads,
                               run_cfg.model.engine)
        runtime_tids = set(procstat.thread_cpu_s()) - before  # the inference runtime's thread pool
        pipe = Pipeline(run_cfg, RunOptions(draw=True, sound=False), backend=backend,
                        source=PacedFile(source, fps, max_frames))

        def progress() -> tuple:
            cap = pipe.capture
            return pipe.result.frames, (cap.frames if cap is not None else 0)

        sampler = CpuSampler(progress, interval).start()
        try:
            res = pipe.run()
        finally:
            sampler.sample()
            sampler.stop()
    labels = {tid: ("main" if name == "MainThread" else name) for tid, name in sampler.names.items()}
    labels.update({tid: run_cfg.model.backend for tid in runtime_tids})
    labels[os.getpid()] = "main"
    fig = live_figures(sampler.samples, labels, procstat.usable_cpus(), rate)
    stages = pipe.stages.summary()
    _, peak = procstat.rss_mib()
    peak = max([peak] + [s["rss"] for s in sampler.samples])  # VmHWM is updated lazily by the kernel
    r = {
        "mode": "live",
        "source": str(source),
        "model": str(cfg.model.resolved_path()),
        "classifier": str(cfg.model.resolved_classifier()) if cfg.model.classifier else None,
        "fps_target": round(rate, 3),
        "frames": res.frames,
        "captured": res.captured,
        "dropped": res.dropped,
        "fps_captured": fig["fps_captured"],
        "fps_processed": fig["fps_processed"],
        "window_s": fig["window_s"],
        "cpu_s": fig["cpu_s"],
        "cpu_cores": fig["cpu_cores"],
        "cpu_ms_per_frame": fig["cpu_ms_per_frame"],
        "cpu_count": fig["cpu_count"],
        "cpu_cores_capture": fig["cpu_cores_capture"],
        "cpu_cores_frame_loop": fig["cpu_cores_frame_loop"],
        "cpu_cores_other": fig["cpu_cores_other"],
        "cpu_cores_no_drop_estimate": fig["cpu_cores_no_drop_estimate"],
        "threads": fig["threads"],
        "rss_mib_peak": round(peak, 1),
        "rss_mib_steady": fig["rss_mib_steady"],
        "stages": {s: {"ms_median": stages[s]["ms_median"], "ms_p95": stages[s]["ms_p95"]} for s in STAGES
                   if s in stages},
        "load_avg": [load0, os.getloadavg()[0] if hasattr(os, "getloadavg") else None],
    }
    return r


def format_live(r: Dict[str, Any]) -> str:
    """The live benchmark as a table (the same figures as the JSON)."""
    lines = [f"maskwatch bench --live: {r['source']} at {r['fps_target']:.2f} fps, model {r['model']}"
             + (f", classifier {r['classifier']}" if r["classifier"] else ""),
             f"frames: {r['captured']} captured ({r['fps_captured']:.2f}/s), {r['frames']} processed "
             f"({r['fps_processed']:.2f}/s), {r['dropped']} dropped",
             f"CPU: {r['cpu_cores']:.3f} cores of {r['cpu_count']} ({r['cpu_s']:.2f} s CPU in {r['window_s']:.2f} s, "
             f"steady window from the first frame to the last; {r['cpu_ms_per_frame']:.1f} ms CPU per processed frame)",
             f"  capture + decode {r['cpu_cores_capture']:.3f}, frame loop + inference {r['cpu_cores_frame_loop']:.3f}, "
             f"other {r['cpu_cores_other']:.3f}"
             + (f"; with no frame dropped: {r['cpu_cores_no_drop_estimate']:.3f} cores (estimate)"
                if r["cpu_cores_no_drop_estimate"] is not None and r["dropped"] else ""),
             f"{'thread':<28}{'tid':>8}{'cores':>8}"]
    for t in r["threads"]:
        if t["cpu_s"] > 0 or t["name"] in ("main", "capture"):
            lines.append(f"{t['name']:<28}{t['tid']:>8}{t['cores']:>8.3f}")
    idle = sum(1 for t in r["threads"] if t["cpu_s"] <= 0 and t["name"] not in ("main", "capture"))
    if idle:
        lines.append(f"({idle} more threads used no CPU)")
    lines.append(f"memory: RSS {r['rss_mib_steady']:.1f} MiB steady, {r['rss_mib_peak']:.1f} MiB peak")
    lines.append(f"{'stage':<16}{'median ms':>10}{'p95 ms':>10}")
    for s, v in r["stages"].items():
        lines.append(f"{s:<16}{v['ms_median']:>10.2f}{v['ms_p95']:>10.2f}")
    la = r.get("load_avg") or []
    if la and la[0] is not None:
        lines.append(f"load average (1 min): {la[0]:.2f} at start, {la[1]:.2f} at end")
    return "\n".join(lines)
