"""The ``maskwatch`` command (also ``python -m edge``).

    maskwatch run [-c config.yaml] [--source SRC] [--headless] [--fast] [--max-frames N]
                  [--events FILE] [--save-video FILE]
    maskwatch check-config [-c] FILE
    maskwatch bench --source FILE [-c config.yaml] [--max-frames N] [--json] [--live [--fps F|camera] [--seconds S]]
    maskwatch report [--day YYYY-MM-DD] [-c config.yaml] [--events FILE] [--png out.png] [--json]
    maskwatch doctor [-c config.yaml] [--source SRC] [--seconds S] [--no-sound] [--json]
    maskwatch build-engine [-c config.yaml] [--model M] [--precision fp16|int8] [--calib-dir DIR] [--calib-count N]
                           [--calib-cache FILE] [--dla-core N] [--workspace-mb MB] [--out-dir DIR] [--force]
    maskwatch check-parity --images DIR|VIDEO [-c config.yaml] [--model M] [--backend tensorrt|onnxruntime]
                           [--precision fp16|int8] [--tolerance exact|fp16|int8] [--count N] [--json FILE]

Every subcommand that reads a config takes ``-c/--config FILE``; ``report`` shows today unless ``--day`` says
otherwise.

Exit codes: 0 ok, 1 runtime error (source missing), 2 invalid config or arguments (also a model, sound or output file
the config names that cannot be used: the check check-config runs);
check-parity: 1 beyond tolerance, 3 could not run (see :mod:`edge.parity`).
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from typing import List, Optional

from edge import __version__
from edge.config import EXAMPLE_CONFIG, Config, ConfigError, load
from edge.systemd import setup_logging

log = logging.getLogger("maskwatch")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="maskwatch", description="Offline face-mask detection appliance.")
    ap.add_argument("--version", action="version", version=f"maskwatch {__version__}")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True

    r = sub.add_parser("run", help="run the appliance")
    r.add_argument("-c", "--config", help=f"YAML config (default: built-in defaults; example: {EXAMPLE_CONFIG})")
    r.add_argument("--source", help="camera (/dev/video0, 0), video file, image folder or GStreamer pipeline")
    r.add_argument("--headless", action="store_true", help="no window")
    r.add_argument("--fast", action="store_true", help="files: process every frame as fast as possible, no pacing")
    r.add_argument("--max-frames", type=int, metavar="N", help="stop after N processed frames")
    r.add_argument("--events", metavar="FILE", help="alarm events as JSON lines (overrides events.path)")
    r.add_argument("--save-video", metavar="FILE", help="write the annotated stream (.mp4 or .avi)")

    c = sub.add_parser("check-config", help="validate a config file: prints OK or every error")
    c.add_argument("file", nargs="?", help="the YAML config (or give it with -c)")
    c.add_argument("-c", "--config", dest="config", help="the YAML config (same as FILE)")

    b = sub.add_parser("bench", help="per-stage timings and frames/s on a video file")
    b.add_argument("--source", required=True, help="a video file")
    b.add_argument("-c", "--config", help="YAML config (model, thresholds, ...)")
    b.add_argument("--max-frames", type=int, metavar="N", help="only the first N frames")
    b.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    b.add_argument("--live", action="store_true", help="at live pace instead of as fast as possible: CPU cores used "
                   "(total and per thread), RSS, frames dropped, stage medians (docs/runtime.md, Live pace)")
    b.add_argument("--fps", metavar="F|camera", help="--live: deliver frames at F/s, or at camera.fps with 'camera' "
                   "(default: the file's own rate)")
    b.add_argument("--seconds", type=float, metavar="S", help="--live: loop the file for S seconds (default: one pass)")

    p = sub.add_parser("report", help="a day's people counts per hour and its alarms (and a bar chart PNG)")
    p.add_argument("--day", help="YYYY-MM-DD (default: today, local time)")
    p.add_argument("-c", "--config", help="YAML config (for the event log paths)")
    p.add_argument("--events", metavar="FILE", help="the alarm events file (default: from the config)")
    p.add_argument("--counts", metavar="FILE", help="the counts file (default: from the config)")
    p.add_argument("--png", metavar="FILE", help="also save a bar chart (needs matplotlib)")
    p.add_argument("--json", action="store_true", help="print JSON")

    d = sub.add_parser("doctor", help="self-test: camera, model, engine, display, speaker, config, disk, mqtt, jtop, "
                       "clock, service; a pass/fail table with fixes (exit 1 if a required check fails)")
    d.add_argument("-c", "--config", help="YAML config (default: /etc/maskwatch/config.yaml when it exists)")
    d.add_argument("--source", help="camera or video file to test instead of camera.source")
    d.add_argument("--seconds", type=float, default=3.0, help="how long to read the camera (default 3)")
    d.add_argument("--no-sound", action="store_true", help="skip the speaker test")
    d.add_argument("--json", action="store_true", help="print JSON")

    g = sub.add_parser("build-engine", help="build the TensorRT engine of the model on this device (Jetson); "
                       "defaults from the config's model.engine section, see docs/engine.md")
    g.add_argument("-c", "--config", help="YAML config (model.path, model.engine.*)")
    g.add_argument("--model", help="the .onnx model (default: model.path)")
    g.add_argument("--precision", choices=["fp16", "int8"], help="default: model.engine.precision")
    g.add_argument("--calib-dir", metavar="DIR", help="folder of real images for int8 calibration")
    g.add_argument("--calib-count", type=int, metavar="N", help="most calibration images (default 300)")
    g.add_argument("--calib-cache", metavar="FILE", help="int8 calibration cache (default: beside the engine)")
    g.add_argument("--dla-core", type=int, metavar="N", help="DLA core (Xavier NX: 0 or 1) with GPU fallback")
    g.add_argument("--workspace-mb", type=int, metavar="MB", help="builder workspace limit in MiB (default 1024)")
    g.add_argument("--out-dir", metavar="DIR", help="engine folder (default: model.engine.dir)")
    g.add_argument("--force", action="store_true", help="rebuild even when an up-to-date engine exists")

    q = sub.add_parser("check-parity", help="compare ONNX Runtime (CPU) with the TensorRT engine on real images: "
                       "output differences and detection agreement; exit 1 beyond the tolerances")
    q.add_argument("--images", required=True, metavar="DIR|VIDEO", help="folder of images or a video file")
    q.add_argument("-c", "--config", help="YAML config (model.path, model.engine.*)")
    q.add_argument("--model", help="the .onnx model (default: model.path)")
    q.add_argument("--backend", choices=["tensorrt", "onnxruntime"], default="tensorrt",
                   help="the backend compared with ONNX Runtime (default tensorrt)")
    q.add_argument("--precision", choices=["fp16", "int8"], help="engine precision (default: model.engine.precision)")
    q.add_argument("--tolerance", choices=["exact", "fp16", "int8"], help="default: the precision for tensorrt, "
                   "exact for onnxruntime")
    q.add_argument("--engine", metavar="FILE", help="an explicit engine file (still checked against the key)")
    q.add_argument("--engine-dir", metavar="DIR", help="engine folder (default: model.engine.dir)")
    q.add_argument("--dla-core", type=int, metavar="N", help="DLA core the engine was built for")
    q.add_argument("--count", type=int, default=50, metavar="N", help="images compared (default 50)")
    q.add_argument("--iou", type=float, default=0.5, help="IoU a detection pair needs (default 0.5)")
    q.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: all cores)")
    q.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    return ap


def _load(path: Optional[str]) -> Config:
    cfg = load(path)
    return cfg


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the file and the files it names (:func:`edge.validate.check_files`: the model and classifier
    loaded by ONNX Runtime, every sound decoded, output files checked), exactly as ``run`` and a reload do;
    every error is one bounded line."""
    if args.file and args.config and args.file != args.config:
        print(f"check-config: two files given ({args.file}, {args.config}); give one", file=sys.stderr)
        return 2
    args.file = args.file or args.config
    if not args.file:
        print("check-config: give the file: maskwatch check-config -c FILE", file=sys.stderr)
        return 2
    try:
        cfg = load(args.file, check_files=True)
    except ConfigError as e:
        print(f"{args.file}: INVALID", file=sys.stderr)
        for line in e.errors:
            print(f"  {line}", file=sys.stderr)
        return 2
    try:
        empty = load(args.file, allow_empty=False) is None
    except ConfigError:
        empty = True
    print(f"{args.file}: OK" + (" (empty: every key has its built-in default; a reload refuses an empty file)"
                                if empty else ""))
    from edge.validate import check_files
    for line in check_files(cfg)[1]:
        print(f"  warning: {line}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from edge.pipeline import Pipeline, RunOptions, with_overrides
    from edge.sources import SourceError

    overrides = {"source": args.source, "headless": args.headless, "fast": args.fast, "events": args.events,
                 "save_video": args.save_video}
    # the check that check-config and a reload run: what it accepts starts, what it refuses never starts
    cfg = load(args.config, check_files=True, transform=lambda c: with_overrides(c, **overrides))
    setup_logging(cfg.log_level)
    pipe = Pipeline(cfg, RunOptions(max_frames=args.max_frames, config_path=args.config, overrides=overrides))

    def on_signal(signum, _frame):  # only sets a flag: logging here could re-enter the log stream's lock
        pipe.on_signal(signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    from edge.backends.tensorrt import BackendUnavailableError
    try:
        pipe.run()
    except (FileNotFoundError, SourceError, BackendUnavailableError) as e:
        log.error("%s", e)
        return 1
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from edge.bench import format_bench, run_bench
    cfg = _load(args.config)
    setup_logging("WARNING")
    if args.live:
        return _bench_live(args, cfg)
    try:
        r = run_bench(args.source, cfg, args.max_frames)
    except (FileNotFoundError, OSError) as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    print(json.dumps(r) if args.json else format_bench(r))
    return 0


def _bench_live(args: argparse.Namespace, cfg: Config) -> int:
    from edge.bench import format_live, run_live
    from edge.sources import SourceError
    fps = None
    if args.fps:
        try:
            fps = float(cfg.camera.fps) if args.fps == "camera" else float(args.fps)
        except ValueError:
            fps = -1.0
        if not 0 < fps <= 240:
            print(f"bench: --fps must be a rate in frames/s (0-240] or 'camera', got {args.fps!r}", file=sys.stderr)
            return 2
    if args.seconds is not None and not args.seconds > 0:
        print(f"bench: --seconds must be > 0, got {args.seconds}", file=sys.stderr)
        return 2
    try:
        r = run_live(args.source, cfg, fps=fps, seconds=args.seconds)
    except (FileNotFoundError, OSError, SourceError, ValueError) as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    print(json.dumps(r) if args.json else format_live(r))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from edge.events import day_report, format_report, save_report_png
    cfg = _load(args.config)
    events = Path(args.events) if args.events else cfg.events.resolved_path()
    counts = Path(args.counts) if args.counts else (events.with_name("counts.jsonl") if args.events
                                                     else cfg.events.resolved_counts_path())
    import datetime
    if args.day is None:
        args.day = datetime.date.today().isoformat()  # local time, as the event log's hours are
    try:
        datetime.datetime.strptime(args.day, "%Y-%m-%d")
    except ValueError:
        print(f"report: --day must be YYYY-MM-DD, got {args.day!r}", file=sys.stderr)
        return 2
    if not events.exists():  # a wrong --events or -c: zeros would look like a quiet day
        print(f"report: no events file at {events} (the appliance creates it when it starts; check --events or "
              f"-c)", file=sys.stderr)
        return 1
    try:
        rep = day_report(args.day, counts, events)
    except OSError as e:
        print(f"report: cannot read {e.filename or 'the event log'}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(json.dumps(rep) if args.json else format_report(rep))
    if args.png:
        out = save_report_png(rep, args.png)
        if not args.json:
            print(f"chart: {out}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from edge.doctor import main as doctor
    setup_logging("ERROR")  # the table says what went wrong; the modules' own warnings would repeat it
    return doctor(args.config, args.source, args.seconds, not args.no_sound, args.json)


def cmd_build_engine(args: argparse.Namespace) -> int:
    from edge.engine import cli_build_engine
    setup_logging("INFO")
    return cli_build_engine(args)


def cmd_check_parity(args: argparse.Namespace) -> int:
    from edge.parity import cli_check_parity
    setup_logging("WARNING")
    return cli_check_parity(args)


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "check-config":
        return cmd_check_config(args)
    if args.cmd == "doctor":
        return cmd_doctor(args)
    try:
        return {"run": cmd_run, "bench": cmd_bench, "report": cmd_report, "build-engine": cmd_build_engine,
                "check-parity": cmd_check_parity}[args.cmd](args)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
