"""The appliance configuration: one YAML file validated by a pydantic schema.

Every field has a default, a description and bounds, so an empty file (or no file)
is a valid configuration. Unknown keys are rejected. Errors name the key path, the
line in the file and what is allowed::

    alarm.cooldown_s (line 31): Input should be greater than or equal to 0 [got -5]; allowed: number >= 0, <= 3600

The documented example with every key is ``edge/config.example.yaml``.
"""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

EXAMPLE_CONFIG = Path(__file__).with_name("config.example.yaml")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")

#: The released model ``model.path: null`` runs: a folder of the ``models`` package holding ``model.onnx``.
DEFAULT_MODEL = "yunet_mask"


def _models_dirs() -> List[Path]:
    """Folders of the ``models`` package: found with ``importlib.util.find_spec`` (which does not import
    ``models``, so no torch), then the folder beside ``edge/`` in a source checkout."""
    dirs: List[Path] = []
    try:
        spec = importlib.util.find_spec("models")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(loc) for loc in spec.submodule_search_locations]
    dirs.append(Path(__file__).resolve().parent.parent / "models")
    return dirs


def released_models() -> List[str]:
    """Names of the released models installed with the package (sorted), e.g. ``yolo_student_kd``."""
    return sorted({p.parent.name for d in _models_dirs() for p in d.glob("*/model.onnx")})


def default_model_path(name: str = None) -> Path:
    """``models/<name>/model.onnx`` of a released model (default :data:`DEFAULT_MODEL`).

    Raises:
        FileNotFoundError: no released model of that name is installed (the message lists those that are).
    """
    name = name or DEFAULT_MODEL
    for d in _models_dirs():
        p = d / name / "model.onnx"
        if p.exists():
            return p
    raise FileNotFoundError(f"no released model {name!r}; installed: {released_models()}")


def default_state_dir() -> Path:
    """Where the event log lives: systemd's ``$STATE_DIRECTORY`` or ``~/.local/state/maskwatch``."""
    sd = os.environ.get("STATE_DIRECTORY")
    if sd:
        return Path(sd.split(":")[0])
    return Path.home() / ".local" / "state" / "maskwatch"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CameraConfig(_Section):
    source: str = Field("/dev/video0", description="what to read: a V4L2 device (/dev/videoN or an index N), "
                        "a video file, a folder of images, or a GStreamer pipeline (a string containing '!')")
    width: int = Field(1280, ge=160, le=3840, description="requested capture width (px), cameras only")
    height: int = Field(720, ge=120, le=2160, description="requested capture height (px), cameras only")
    fps: float = Field(30.0, gt=0, le=120, description="requested camera rate (frames/s); for image folders the "
                       "rate the images are stamped and paced at")
    fourcc: str = Field("MJPG", min_length=4, max_length=4, description="camera pixel format (FOURCC), MJPG for "
                        "720p30/720p60 on a USB 2 webcam such as the C922")
    realtime: bool = Field(True, description="pace video files and image folders at their own frame rate like a "
                           "camera (false: as fast as possible, every frame processed)")
    reconnect_min_s: float = Field(0.5, gt=0, le=60, description="first wait before reopening a lost camera (s); "
                                   "doubles per failed attempt")
    reconnect_max_s: float = Field(10.0, gt=0, le=600, description="longest wait between reopen attempts (s)")
    stall_timeout_s: float = Field(5.0, gt=0, le=300, description="no frame for this long means the camera is "
                                   "lost and is reopened (s)")
    ready_timeout_s: float = Field(15.0, ge=0, le=600, description="tell systemd READY after this long even "
                                   "when the camera is not open yet, and keep retrying it (s)")
    backend: Literal["auto", "gstreamer", "v4l2"] = Field(
        "auto", description="how a camera is read: auto = GStreamer with hardware JPEG decode on a Jetson whose "
        "OpenCV has GStreamer, V4L2 through OpenCV otherwise; gstreamer or v4l2 force one")
    jpeg_decoder: Literal["nvv4l2decoder", "nvjpegdec"] = Field(
        "nvv4l2decoder", description="the Jetson's hardware MJPEG decoder element in the GStreamer camera pipeline")
    by_id: Optional[str] = Field("*C922*-video-index0", min_length=1, description="glob matched against "
                                 "/dev/v4l/by-id: a matching camera replaces a V4L2 source (stable across re-plugs "
                                 "and other USB devices); null: use source exactly as given")

    @model_validator(mode="after")
    def _order(self) -> "CameraConfig":
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(f"reconnect_max_s ({self.reconnect_max_s}) must be >= reconnect_min_s "
                             f"({self.reconnect_min_s})")
        return self


class ThresholdsConfig(_Section):
    mask: Optional[float] = Field(None, ge=0, le=1, description="score threshold for 'mask' (0-1); "
                                  "null: the threshold embedded in the model")
    no_mask: Optional[float] = Field(None, ge=0, le=1, description="score threshold for 'no_mask' (0-1); null: model's")
    mask_incorrect: Optional[float] = Field(None, ge=0, le=1, description="score threshold for 'mask_incorrect' "
                                            "(0-1); null: model's")

    def as_dict(self) -> Dict[str, float]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class ClusterConfig(_Section):
    method: Optional[Literal["dbscan", "nms"]] = Field(None, description="how cell proposals merge into boxes; "
                                                      "null: the model's default")
    conf_threshold: Optional[float] = Field(None, ge=0, le=1, description="minimum coverage for a grid cell to "
                                            "propose a box (0-1); null: model's")
    iou_threshold: Optional[float] = Field(None, ge=0, le=1, description="NMS overlap limit (IoU 0-1); null: model's")
    dbscan_eps: Optional[float] = Field(None, gt=0, le=1, description="DBSCAN radius in 1-IoU (0-1); null: model's")
    dbscan_min_samples: Optional[float] = Field(None, ge=0, le=100, description="DBSCAN summed coverage for a "
                                                "core box; null: model's")
    max_detections: Optional[int] = Field(None, ge=1, le=1000, description="most faces per frame; null: model's")


def default_engine_dir() -> Path:
    """Where TensorRT engines are cached: ``engines/`` in the state directory (see :func:`default_state_dir`)."""
    return default_state_dir() / "engines"


class EngineConfig(_Section):
    dir: Optional[str] = Field(None, description="folder of TensorRT engines, looked up by cache key (model hash, "
                               "TensorRT version, device, precision, DLA core); null: $STATE_DIRECTORY/engines "
                               "(/var/lib/maskwatch/engines under systemd) or ~/.local/state/maskwatch/engines")
    precision: Literal["fp16", "int8"] = Field("fp16", description="engine precision: fp16, or int8 (calibrated "
                                               "on real images, needs calib_dir when built)")
    dla_core: Optional[int] = Field(None, ge=0, le=1, description="run on this DLA core (Xavier NX: 0 or 1) with "
                                    "GPU fallback; null: the GPU")
    workspace_mb: int = Field(1024, ge=16, le=16384, description="builder workspace memory limit (MiB), "
                              "build-engine only")
    calib_dir: Optional[str] = Field(None, description="folder of real images for int8 calibration, build-engine "
                                     "only; null: none (an existing calibration cache is reused)")
    calib_count: int = Field(300, ge=1, le=10000, description="most calibration images used (evenly spread over "
                             "the sorted folder), build-engine only")

    def resolved_dir(self) -> Path:
        return Path(self.dir).expanduser() if self.dir else default_engine_dir()


def _is_model_name(v: str) -> bool:
    """A released model's name (``yolo_student_kd``), not a file path."""
    return "/" not in v and "\\" not in v and not v.endswith(".onnx")


class ModelConfig(_Section):
    path: Optional[str] = Field(None, description="a released model's name (a folder of models/: "
                                "detectnet_v2_r18, detectnet_v2_r18_pruned, yolo_student_baseline, yolo_student_kd, yunet_mask (the default)) or "
                                "the path of an .onnx file; null: the default released model")
    backend: Literal["onnxruntime", "tensorrt"] = Field(
        "onnxruntime", description="inference runtime: onnxruntime (CPU, any machine) or tensorrt (Jetson GPU/DLA; "
        "needs an engine from `maskwatch build-engine`, see docs/engine.md)")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="TensorRT engine (backend: tensorrt)")
    threads: int = Field(0, ge=0, le=64, description="CPU threads for inference; 0: all cores")
    thresholds: ThresholdsConfig = Field(default_factory=ThresholdsConfig, description="per-class score thresholds")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="box clustering overrides")

    @field_validator("path")
    @classmethod
    def _known_model(cls, v: Optional[str]) -> Optional[str]:
        if v and _is_model_name(v) and v not in released_models():
            raise ValueError(f"no released model named {v!r}; allowed: {released_models()} or a path to an .onnx file")
        return v

    def resolved_path(self) -> Path:
        if not self.path:
            return default_model_path()
        return default_model_path(self.path) if _is_model_name(self.path) else Path(self.path).expanduser()


class TrackerConfig(_Section):
    high_score: float = Field(0.5, ge=0, le=1, description="detections at or above this score are matched first "
                              "and may start tracks; lower ones only extend existing tracks (ByteTrack)")
    match_iou: float = Field(0.2, gt=0, le=1, description="minimum IoU between a track's predicted box and a "
                             "detection to match them")
    min_hits: int = Field(3, ge=1, le=100, description="matched frames before a track is confirmed (gets an id)")
    max_age_s: float = Field(1.0, ge=0, le=60, description="a track not matched for this long is ended (s)")
    vote_window: int = Field(15, ge=1, le=300, description="a track's class is the score-weighted vote over its "
                             "last this many matched frames")


class AlarmConfig(_Section):
    enabled: bool = Field(True, description="raise alarms at all (events and sound)")
    classes: List[Literal["no_mask", "mask_incorrect"]] = Field(
        default_factory=lambda: ["no_mask"], description="track classes that raise an alarm")
    vote_fraction: float = Field(0.6, gt=0, le=1, description="share of the track's vote the alarm class needs")
    min_frames: int = Field(5, ge=1, le=10000, description="frames the voted alarm class must be held")
    min_seconds: float = Field(0.5, ge=0, le=600, description="seconds the voted alarm class must be held "
                               "(both min_frames and min_seconds must be reached)")
    cooldown_s: float = Field(10.0, ge=0, le=3600, description="after an alarm, no new alarm for this long (s); "
                              "each track alarms at most once anyway")
    quiet_hours: List[str] = Field(default_factory=list, description="local-time ranges 'HH:MM-HH:MM' (may wrap "
                                   "midnight) in which alarms are logged but not sounded")
    banner_s: float = Field(3.0, ge=0, le=60, description="how long the monitor shows the alarm banner (s)")
    sound: Optional[str] = Field(None, description="WAV file to play (16-bit PCM); null: the built-in chime and "
                                 "'Please wear your mask'")
    volume: float = Field(0.8, ge=0, le=1, description="playback volume (0-1, linear gain)")
    audio_retry_s: float = Field(30.0, gt=0, le=3600, description="after a sound-device error, wait this long "
                                 "before trying the device again (s)")

    @field_validator("quiet_hours")
    @classmethod
    def _hours(cls, v: List[str]) -> List[str]:
        for s in v:
            if not _HHMM.match(s):
                raise ValueError(f"quiet hour range {s!r} must look like 'HH:MM-HH:MM' (00:00-23:59)")
        return v

    def quiet_ranges(self) -> List[Tuple[int, int]]:
        """Quiet hours as (start, end) minutes after midnight."""
        out = []
        for s in self.quiet_hours:
            m = _HHMM.match(s)
            out.append((int(m.group(1)) * 60 + int(m.group(2)), int(m.group(3)) * 60 + int(m.group(4))))
        return out


class ZoneConfig(_Section):
    polygon: List[Tuple[float, float]] = Field(
        default_factory=list, description="entrance zone as [x, y] points in fractions of the frame (0-1); only "
        "faces whose centre lies inside count; empty: the whole frame")
    min_face_px: int = Field(20, ge=0, le=4000, description="ignore faces narrower than this (px in the frame)")
    max_face_px: int = Field(480, ge=1, le=8000, description="ignore faces wider than this (px in the frame); "
                             "480 px is a face about 0.5 m from a C922 at 720p, nearer than anyone walks past")

    @field_validator("polygon")
    @classmethod
    def _poly(cls, v: List[Tuple[float, float]]) -> List[Tuple[float, float]]:
        if v and len(v) < 3:
            raise ValueError(f"a zone polygon needs at least 3 points, got {len(v)}")
        for x, y in v:
            if not (0 <= x <= 1 and 0 <= y <= 1):
                raise ValueError(f"zone point [{x}, {y}] must lie in 0-1 (fractions of the frame)")
        return v

    @model_validator(mode="after")
    def _order(self) -> "ZoneConfig":
        if self.max_face_px <= self.min_face_px:
            raise ValueError(f"max_face_px ({self.max_face_px}) must be > min_face_px ({self.min_face_px})")
        return self


class DisplayConfig(_Section):
    enabled: bool = Field(True, description="show the monitor window when a display exists (DISPLAY or "
                          "WAYLAND_DISPLAY set); without one the appliance runs headless and logs it")
    fullscreen: bool = Field(True, description="fill the attached monitor")
    window_width: int = Field(1280, ge=160, le=7680, description="window width when not fullscreen (px)")
    window_height: int = Field(720, ge=120, le=4320, description="window height when not fullscreen (px)")
    save_video: Optional[str] = Field(None, description="also write the annotated stream to this file "
                                      "(.mp4: mp4v, .avi: MJPG); null: off")
    show_zone: bool = Field(True, description="draw the entrance zone on the monitor")
    retry_s: float = Field(5.0, ge=0, le=600, description="while a named display (DISPLAY) cannot be opened yet "
                           "(the X session is still starting at boot), try again this often (s); 0: never")


class EventsConfig(_Section):
    path: Optional[str] = Field(None, description="alarm events, JSON lines, appended; null: "
                                "$STATE_DIRECTORY/events.jsonl or ~/.local/state/maskwatch/events.jsonl")
    counts_path: Optional[str] = Field(None, description="hourly per-person counts, JSON lines, appended; null: "
                                       "counts.jsonl beside the events file")
    snapshots: bool = Field(False, description="save a JPEG of the frame for each alarm (personal data: off by "
                            "default)")
    snapshot_dir: Optional[str] = Field(None, description="where snapshots go; null: snapshots/ beside the events "
                                        "file")

    def resolved_path(self) -> Path:
        return Path(self.path).expanduser() if self.path else default_state_dir() / "events.jsonl"

    def resolved_counts_path(self) -> Path:
        return Path(self.counts_path).expanduser() if self.counts_path else \
            self.resolved_path().with_name("counts.jsonl")

    def resolved_snapshot_dir(self) -> Path:
        return Path(self.snapshot_dir).expanduser() if self.snapshot_dir else \
            self.resolved_path().with_name("snapshots")


class TelemetryConfig(_Section):
    enabled: bool = Field(True, description="sample Jetson temperatures, power, GPU load and throttling through "
                          "jtop (jetson-stats) when its service runs; elsewhere this logs once and does nothing")
    interval_s: float = Field(5.0, ge=1, le=300, description="seconds between samples (each is logged at DEBUG, "
                              "a summary at INFO every minute)")
    warn_temp_c: float = Field(85.0, ge=40, le=110, description="warn (log and overlay) when any sensor reaches "
                               "this temperature (deg C)")
    overlay: bool = Field(True, description="show the hottest temperature and the board power on the monitor")


class Config(_Section):
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="logging verbosity")
    camera: CameraConfig = Field(default_factory=CameraConfig, description="the video source")
    model: ModelConfig = Field(default_factory=ModelConfig, description="the detector")
    tracker: TrackerConfig = Field(default_factory=TrackerConfig, description="face tracking and class vote")
    alarm: AlarmConfig = Field(default_factory=AlarmConfig, description="when and how to alarm")
    zone: ZoneConfig = Field(default_factory=ZoneConfig, description="which faces count")
    display: DisplayConfig = Field(default_factory=DisplayConfig, description="the monitor")
    events: EventsConfig = Field(default_factory=EventsConfig, description="event log and counts")
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig, description="Jetson temperatures, power "
                                       "and throttling (jtop)")


class ConfigError(ValueError):
    """A config file failed to load; ``errors`` holds one line per problem."""

    def __init__(self, path: Union[str, Path, None], errors: List[str]):
        self.path = path
        self.errors = errors
        where = f"{path}: " if path else ""
        super().__init__(where + f"{len(errors)} error(s)\n" + "\n".join("  " + e for e in errors))


# ---------------------------------------------------------------------------------------------- loading

class _Loader(yaml.SafeLoader):
    pass


def _node_lines(node: yaml.Node, path: Tuple = (), out: Optional[Dict[Tuple, int]] = None,
                dups: Optional[List[str]] = None) -> Dict[Tuple, int]:
    """Map each key path (tuple of keys / list indices) to its 1-based line number."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for k, v in node.value:
            key = k.value
            if key in seen and dups is not None:
                dups.append(f"{_fmt(path + (key,))} (line {k.start_mark.line + 1}): duplicate key")
            seen.add(key)
            out[path + (key,)] = k.start_mark.line + 1
            _node_lines(v, path + (key,), out, dups)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _node_lines(v, path + (i,), out, dups)
    return out


def _fmt(loc: Tuple) -> str:
    s = ""
    for p in loc:
        s += f"[{p}]" if isinstance(p, int) else (("." if s else "") + str(p))
    return s or "(top level)"


def _field_for(loc: Tuple) -> Tuple[Optional[type], Optional[Any]]:
    """(section model, FieldInfo) for a pydantic error location, as far as it goes."""
    model: Any = Config
    info = None
    for p in loc:
        if isinstance(p, int) or not (isinstance(model, type) and issubclass(model, BaseModel)):
            break
        if p not in model.model_fields:
            return model, None
        info = model.model_fields[p]
        ann = info.annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return model, info


def _type_name(ann: Any) -> str:
    """A reader's name for a field type: 'number', 'one of 'a', 'b'', 'list of number', ..."""
    origin, args = get_origin(ann), get_args(ann)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is Union:
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin in (list, List):
        return "list of " + (_type_name(args[0]) if args else "values")
    if origin in (tuple, Tuple):
        return "[" + ", ".join(_type_name(a) for a in args) + "]"
    names = {int: "integer", float: "number", str: "text", bool: "true/false"}
    if ann in names:
        return names[ann]
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "a mapping with keys " + ", ".join(ann.model_fields)
    return str(ann)


def _allowed(loc: Tuple, err_type: str) -> str:
    section, info = _field_for(loc)
    if err_type == "extra_forbidden":
        parent, _ = _field_for(loc[:-1]) if len(loc) > 1 else (Config, None)
        if isinstance(parent, type) and issubclass(parent, BaseModel):
            return "known keys: " + ", ".join(parent.model_fields)
        return ""
    if info is None:
        return ""
    bits = []
    for m in info.metadata:
        for name, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "length >="),
                          ("max_length", "length <=")):
            if getattr(m, name, None) is not None:
                bits.append(f"{sym} {getattr(m, name)}")
    ann = _type_name(info.annotation)
    desc = info.description or ""
    return f"{ann}{(' ' + ', '.join(bits)) if bits else ''}" + (f" ({desc})" if desc else "")


def _line_of(lines: Dict[Tuple, int], loc: Tuple) -> Optional[int]:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def parse(text: str, path: Union[str, Path, None] = None) -> Config:
    """Validate YAML ``text``; raise :class:`ConfigError` listing every problem with key path and line."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(path, [f"YAML syntax error at {line}: {problem}"]) from None
    if node is None:
        return Config()
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(path, [f"(top level) (line {node.start_mark.line + 1}): the file must be a mapping of "
                                 f"keys (known keys: {', '.join(Config.model_fields)})"])
    dups: List[str] = []
    lines = _node_lines(node, dups=dups)
    if dups:
        raise ConfigError(path, dups)
    data = _Loader(text).get_single_data()
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        errors = []
        for err in e.errors():
            loc = tuple(err["loc"])
            line = _line_of(lines, loc)
            got = err.get("input")
            got_s = "" if err["type"] in ("extra_forbidden",) or isinstance(got, dict) else f" [got {got!r}]"
            allowed = _allowed(loc, err["type"])
            msg = err["msg"]
            errors.append(f"{_fmt(loc)} (line {line}): {msg}{got_s}" + (f"; allowed: {allowed}" if allowed else ""))
        raise ConfigError(path, errors) from None


def load(path: Union[str, Path, None]) -> Config:
    """Load and validate a config file; ``None`` gives the built-in defaults.

    Raises:
        ConfigError: the file is missing, unreadable, not YAML, or invalid.
    """
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(path, [f"cannot read the file: {e.strerror or e}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError(path, [f"the file is not UTF-8 text: {e}"]) from None
    return parse(text, path)


def diff(old: Config, new: Config) -> List[str]:
    """Dotted keys whose values differ between two configs (for reload logs)."""
    out: List[str] = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
        elif a != b:
            out.append(prefix)

    walk(old.model_dump(), new.model_dump(), "")
    return out
