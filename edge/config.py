"""The appliance configuration: one YAML file validated by a pydantic schema.

Every field has a default, a description and bounds, so an empty file (or no file)
is a valid configuration. Unknown keys are rejected. Errors name the key path, the
line in the file and what is allowed::

    alarm.cooldown_s (line 31): Input should be greater than or equal to 0 [got -5]; allowed: number >= 0, <= 3600

The documented example with every key is ``edge/config.example.yaml``.
"""
from __future__ import annotations

import difflib
import importlib.util
import logging
import os
import stat
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

EXAMPLE_CONFIG = Path(__file__).with_name("config.example.yaml")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")

#: an error echoes at most this many characters of a value or an unknown key from the file (escaped with
#: ``repr``), so a config that is a symlink to another file cannot print that file (docs/runtime.md, Guarantees)
ECHO_CHARS = 20
#: a path is echoed whole up to this many characters, else its first and last ``ECHO_PATH_CHARS // 2 - 5``
ECHO_PATH_CHARS = 80


def short_value(v: Any, limit: int = ECHO_CHARS) -> str:
    """``repr(v)`` cut to its first ``limit`` characters of content (``'abc'...(300 characters)``)."""
    if isinstance(v, str):
        return repr(v) if len(v) <= limit else repr(v[:limit]) + f"...({len(v)} characters)"
    if isinstance(v, (bool, int, float)) or v is None:
        r = repr(v)
        return r if len(r) <= limit else r[:limit] + "..."
    if isinstance(v, (list, tuple, dict)):
        return f"a {type(v).__name__} of {len(v)} item(s)"
    return f"a {type(v).__name__}"


def short_path(p: Any) -> str:
    """A path for an error message: escaped, whole up to :data:`ECHO_PATH_CHARS` characters, else its
    start and end with the length between."""
    s = str(p)
    if len(s) <= ECHO_PATH_CHARS:
        return repr(s)
    k = ECHO_PATH_CHARS // 2 - 5
    return repr(s[:k]) + f"...({len(s)} characters)..." + repr(s[-k:])


#: The released model ``model.path: null`` runs: a folder of the ``models`` package holding ``model.onnx``.
DEFAULT_MODEL = "ultralight_mask"


def _models_dirs() -> List[Path]:
    """Folders of released models, ``models/released/`` of the ``models`` package: found with ``importlib.util.find_spec`` (which does not import
    ``models``, so no torch), then the folder beside ``edge/`` in a source checkout."""
    dirs: List[Path] = []
    try:
        spec = importlib.util.find_spec("models")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(loc) / "released" for loc in spec.submodule_search_locations]
    dirs.append(Path(__file__).resolve().parent.parent / "models" / "released")
    return dirs


def released_models(role: str = "detector") -> List[str]:
    """Names of the released models of one ``role`` installed with the package (sorted): detectors
    (``ultralight_mask``, ...) by default, ``role="classifier"`` for the secondary mask classifiers."""
    return sorted({p.parent.name for d in _models_dirs() for p in d.glob("*/model.onnx") if model_role(p) == role})


_ROLE_CACHE: Dict[Tuple[str, float], str] = {}


def model_role(path: Path) -> str:
    """``"classifier"`` when the ONNX file's maskwatch metadata says ``"role": "classifier"``, else
    ``"detector"``. Reads only the file's tail (ONNX writes ``metadata_props`` after the graph), cached by
    path and mtime; no onnx/onnxruntime import."""
    p = Path(path)
    try:
        key = (str(p.resolve()), p.stat().st_mtime)
    except OSError:
        return "detector"
    if key not in _ROLE_CACHE:
        with open(str(p), "rb") as f:
            f.seek(max(0, p.stat().st_size - 65536))
            tail = f.read()
        _ROLE_CACHE[key] = "classifier" if b'"role": "classifier"' in tail else "detector"
    return _ROLE_CACHE[key]


def default_model_path(name: str = None) -> Path:
    """``models/released/<name>/model.onnx`` of a released model (default :data:`DEFAULT_MODEL`).

    Raises:
        FileNotFoundError: no released model of that name is installed (the message lists those that are).
    """
    name = name or DEFAULT_MODEL
    for d in _models_dirs():
        p = d / name / "model.onnx"
        if p.exists():
            return p
    raise FileNotFoundError(f"no released model {name!r}; installed: {released_models()}")


#: The released classifier ``model.classifier`` names by default (``null``: detector only). On since issue 20:
#: ilc2021-dev half a chose the cascade on with ultralight_mask 1.3.0 (models/released/ultralight_mask/MODEL_CARD.md).
DEFAULT_CLASSIFIER: Optional[str] = "mask_classifier"

#: The classifier's default weight in a track's class vote: chosen on ilc2021-dev half a for ultralight_mask
#: 1.3.0 (0.5 / 0.65 / 0.8 / 0.9 / 1.0 swept; issue 20, models/released/ultralight_mask/MODEL_CARD.md).
DEFAULT_CLASSIFIER_WEIGHT: float = 0.8


def default_state_dir() -> Path:
    """Where the event log lives: systemd's ``$STATE_DIRECTORY`` or ``~/.local/state/maskwatch``."""
    sd = os.environ.get("STATE_DIRECTORY")
    if sd:
        return Path(sd.split(":")[0])
    return Path.home() / ".local" / "state" / "maskwatch"


#: tracker keys of the replaced "stationary" rule: accepted with a warning and ignored
REMOVED_TRACKER_KEYS = ("stationary_s", "stationary_fraction", "stationary_change")


def _deprecated(message: str) -> None:
    """Log a deprecated-key warning (once per message and process: a reload re-validates the same file)."""
    if message not in _WARNED:
        _WARNED.add(message)
        logging.getLogger(__name__).warning("config: %s", message)


_WARNED = set()  # type: set


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
                                   "lost and is reopened (s); a read that has not returned for this long (a hung "
                                   "driver) is abandoned and a new capture thread opens the camera again")
    stall_give_up_s: float = Field(60.0, ge=1, le=3600, description="a camera still hung this long after the stall "
                                   "was found (no frame despite new capture threads): stop feeding the systemd "
                                   "watchdog so systemd restarts the service, and log why (s)")
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
    """A released model's name (``ultralight_mask``), not a file path."""
    return "/" not in v and "\\" not in v and not v.endswith(".onnx")


class ModelConfig(_Section):
    path: Optional[str] = Field(None, description="a released model's name (a folder of models/released/: "
                                "ultralight_mask (the default), detectnet_v2_r18, detectnet_v2_r18_pruned, yolo_student_baseline, yunet_student) or "
                                "the path of an .onnx file; null: the default released model")
    backend: Literal["onnxruntime", "tensorrt"] = Field(
        "onnxruntime", description="inference runtime: onnxruntime (CPU, any machine) or tensorrt (Jetson GPU/DLA; "
        "needs an engine from `maskwatch build-engine`, see docs/engine.md)")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="TensorRT engine (backend: tensorrt)")
    threads: int = Field(0, ge=0, le=64, description="CPU threads for inference; 0: all cores")
    thresholds: ThresholdsConfig = Field(default_factory=ThresholdsConfig, description="per-class score thresholds")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="box clustering overrides")
    classifier: Optional[str] = Field(DEFAULT_CLASSIFIER, description="the secondary mask classifier run on each "
                                      "track's full-resolution face crop: a released classifier's name "
                                      "(mask_classifier, the default) or the path of an .onnx file (role: "
                                      "classifier); null: detector only (see the classifier section)")

    @field_validator("classifier")
    @classmethod
    def _known_classifier(cls, v: Optional[str]) -> Optional[str]:
        if v and _is_model_name(v) and v not in released_models("classifier"):
            raise ValueError(f"no released classifier named {short_value(v)}; allowed: {released_models('classifier')}, a path "
                             "to an .onnx file, or null")
        return v

    def resolved_classifier(self) -> Optional[Path]:
        """The classifier's .onnx path, or ``None`` for detector only."""
        if not self.classifier:
            return None
        return default_model_path(self.classifier) if _is_model_name(self.classifier) \
            else Path(self.classifier).expanduser()

    @field_validator("path")
    @classmethod
    def _known_model(cls, v: Optional[str]) -> Optional[str]:
        if v and _is_model_name(v) and v not in released_models():
            raise ValueError(f"no released model named {short_value(v)}; allowed: {released_models()} or a path to an .onnx file")
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
    liveness_change: float = Field(0.01, ge=0, le=1, description="a face is live (a person, not a picture) when "
                                   "the picture of its face region changes by at least this much within "
                                   "liveness_window_s (1 - normalised cross-correlation of 16x16 grey thumbnails; "
                                   "raised to 3x the track's camera-noise floor); people 0.04-0.2, a print under "
                                   "0.001; 0: off (every face is live)")
    liveness_window_s: float = Field(0.25, gt=0, le=5, description="the face region is compared with the same "
                                     "place this long ago (s)")
    picture_s: float = Field(2.0, gt=0, le=600, description="a face seen this long without 2 frames of live "
                             "change in the last picture_s is a picture (poster, photo): it never alarms, is not "
                             "counted as a person and is drawn dimmed as 'picture' (s)")

    @model_validator(mode="before")
    @classmethod
    def _removed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            old = [k for k in REMOVED_TRACKER_KEYS if k in data]
            if old:
                _deprecated("tracker." + ", tracker.".join(old) + " no longer exist (the 'stationary' rule was "
                            "replaced by the liveness rule): ignored; see tracker.liveness_change, "
                            "tracker.liveness_window_s and tracker.picture_s")
                data = {k: v for k, v in data.items() if k not in REMOVED_TRACKER_KEYS}
        return data


class PromptsConfig(_Section):
    no_mask: Optional[str] = Field(None, min_length=1, description="WAV file (16-bit PCM) announced for a no_mask "
                                   "alarm; null: alarm.sound, or the built-in 'Please wear your mask'")
    mask_incorrect: Optional[str] = Field(None, min_length=1, description="WAV file (16-bit PCM) announced for a "
                                          "mask_incorrect alarm; null: alarm.sound, or the built-in 'Please cover "
                                          "your nose'")

    @field_validator("no_mask", "mask_incorrect")
    @classmethod
    def _wav(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not v.lower().endswith(".wav"):
            raise ValueError(f"a prompt must be a .wav file (16-bit PCM), got {short_value(v)}")
        return v


class ClassifierConfig(_Section):
    interval_frames: int = Field(10, ge=1, le=10000, description="a confirmed track is classified when confirmed, "
                                 "then again every this many processed frames")
    grow_fraction: float = Field(0.3, ge=0, le=10, description="... or sooner when its face's longer side has grown "
                                 "by this fraction since its last classification (0.3: 30 %)")
    min_crop_px: float = Field(24.0, ge=0, le=4096, description="faces whose longer side (full-resolution px) is "
                               "smaller are never classified and keep the detector's class")
    weight: float = Field(DEFAULT_CLASSIFIER_WEIGHT, ge=0, le=1, description="the classifier's weight in the track's "
                          "class vote: weight * classifier probabilities + (1 - weight) * detector vote share (0.8: "
                          "chosen on ilc2021-dev half a)")
    history: int = Field(3, ge=1, le=100, description="a track's classifier probabilities are the mean of its last "
                         "this many classifications")
    max_batch: int = Field(16, ge=1, le=256, description="most face crops per inference call")


class AlarmConfig(_Section):
    enabled: bool = Field(True, description="raise alarms at all (events and sound)")
    classes: List[Literal["no_mask", "mask_incorrect"]] = Field(
        default_factory=lambda: ["no_mask"], description="track classes that raise an alarm")
    vote_fraction: float = Field(0.6, gt=0, le=1, description="share of the track's vote the alarm class needs")
    min_frames: int = Field(5, ge=1, le=10000, description="frames the voted alarm class must be held")
    min_seconds: float = Field(0.5, ge=0, le=600, description="seconds the voted alarm class must be held "
                               "(both min_frames and min_seconds must be reached)")
    cooldown_s: float = Field(10.0, ge=0, le=3600, description="after an announced alarm the speaker and banner "
                              "stay quiet for this long (s), so one announcement covers a group; every alarm is "
                              "still logged at once (sounded: false, reason: cooldown); each track alarms once")
    quiet_hours: List[str] = Field(default_factory=list, description="local-time ranges 'HH:MM-HH:MM' (may wrap "
                                   "midnight) in which alarms are logged but not sounded")
    banner_s: float = Field(3.0, ge=0, le=60, description="how long the monitor shows the alarm banner (s)")
    sound: Optional[str] = Field(None, description="WAV file to play (16-bit PCM); null: the built-in chime and "
                                 "'Please wear your mask'")
    prompts: PromptsConfig = Field(default_factory=PromptsConfig, description="the spoken prompt per alarm class "
                                   "(a file set here wins over alarm.sound)")
    volume: float = Field(0.8, ge=0, le=1, description="playback volume (0-1, linear gain)")
    audio_retry_s: float = Field(30.0, gt=0, le=3600, description="after a sound-device error, wait this long "
                                 "before trying the device again (s)")

    @field_validator("quiet_hours")
    @classmethod
    def _hours(cls, v: List[str]) -> List[str]:
        for s in v:
            if not _HHMM.match(s):
                raise ValueError(f"quiet hour range {short_value(s)} must look like 'HH:MM-HH:MM' (00:00-23:59)")
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
    min_face_frac: float = Field(0.025, ge=0, le=1, description="ignore faces narrower than this fraction of the "
                                 "frame height (0.025: 18 px at 720p, 54 px at 4K; a face about 7 m from a "
                                 "70-degree camera)")
    max_face_frac: float = Field(0.7, gt=0, le=2, description="ignore faces wider than this fraction of the frame "
                                 "height (0.7: 504 px at 720p; a face about 0.3 m from a 70-degree camera, nearer "
                                 "than anyone walks past)")

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
        if self.max_face_frac <= self.min_face_frac:
            raise ValueError(f"max_face_frac ({self.max_face_frac}) must be > min_face_frac ({self.min_face_frac})")
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


_TOPIC_LEVEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class MqttTlsConfig(_Section):
    ca_file: Optional[str] = Field(None, min_length=1, description="PEM file of the CA that signed the broker's "
                                   "certificate; null: the system's CA certificates")
    cert_file: Optional[str] = Field(None, min_length=1, description="PEM client certificate, for a broker that "
                                     "asks for one (require_certificate); null: none")
    key_file: Optional[str] = Field(None, min_length=1, description="PEM private key of cert_file (readable only "
                                    "by the service); null: the key is inside cert_file")

    @model_validator(mode="after")
    def _pair(self) -> "MqttTlsConfig":
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file (the client certificate it belongs to)")
        return self


class HomeAssistantConfig(_Section):
    enabled: bool = Field(False, description="publish Home Assistant MQTT discovery messages (retained), so the "
                          "counts, the last alarm, the camera and the fps appear as sensors of one device")
    discovery_prefix: str = Field("homeassistant", min_length=1, max_length=64, description="Home Assistant's "
                                  "discovery prefix (its MQTT integration's default: homeassistant)")


class MqttConfig(_Section):
    host: str = Field(..., min_length=1, max_length=253, description="the site's MQTT broker: host name or IP "
                      "address (the only peer the appliance ever connects to)")
    port: Optional[int] = Field(None, ge=1, le=65535, description="broker port; null: 8883 with tls, 1883 without")
    entrance: str = Field(..., description="this box's entrance name, one topic level (letters, digits, _ . -), "
                          "e.g. main_door; unique per site")
    topic_prefix: Optional[str] = Field(None, min_length=1, max_length=200, description="topics start with this; "
                                        "null: maskwatch/<entrance>")
    client_id: Optional[str] = Field(None, min_length=1, max_length=128, description="MQTT client id, unique per "
                                     "broker; null: maskwatch-<entrance>")
    username: Optional[str] = Field(None, min_length=1, description="login name; null: anonymous")
    password: Optional[str] = Field(None, description="login password (prefer password_file)")
    password_file: Optional[str] = Field(None, min_length=1, description="file whose first line is the password, "
                                         "readable only by the service (chmod 600); exclusive with password")
    tls: Optional[MqttTlsConfig] = Field(None, description="TLS to the broker; null: plain TCP (a trusted LAN "
                                         "only); {} : TLS with the system's CA certificates")
    qos: Literal[0, 1, 2] = Field(1, description="QoS of events and counts: 1 = at least once (duplicates carry "
                                  "the same id), 2 = exactly once per connection, 0 = at most once")
    keepalive_s: int = Field(60, ge=5, le=3600, description="MQTT keepalive (s): a dead connection is found "
                             "within 1.5 x this")
    status_interval_s: float = Field(60.0, ge=5, le=3600, description="how often the retained status (camera, "
                                     "fps, model) is published (s)")
    queue_path: Optional[str] = Field(None, description="the on-disk queue (SQLite) of records waiting for the "
                                      "broker; null: mqtt-queue.sqlite beside the events file")
    queue_max: int = Field(100000, ge=100, le=10000000, description="most records kept while the broker is "
                           "unreachable (about 0.5 KB each); beyond it the oldest are dropped and logged")
    homeassistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig, description="Home Assistant "
                                               "MQTT discovery")

    @field_validator("entrance")
    @classmethod
    def _entrance(cls, v: str) -> str:
        if not _TOPIC_LEVEL.match(v):
            raise ValueError(f"entrance {v!r} must be one topic level: 1-64 letters, digits, '_', '.', '-', "
                             "starting with a letter or digit (no '/', '+', '#' or spaces)")
        return v

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and (any(c in v for c in "+#\0") or v.startswith(("/", "$")) or v.endswith("/")
                              or "//" in v or v != v.strip()):
            raise ValueError(f"topic_prefix {v!r} must be topic levels joined by '/': no '+', '#', no leading "
                             "'/' or '$', no trailing '/', no empty level")
        return v

    @model_validator(mode="after")
    def _secret(self) -> "MqttConfig":
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise ValueError("a password needs a username")
        return self

    def resolved_port(self) -> int:
        return self.port if self.port is not None else (8883 if self.tls is not None else 1883)

    def resolved_prefix(self) -> str:
        return self.topic_prefix or f"maskwatch/{self.entrance}"

    def resolved_client_id(self) -> str:
        return self.client_id or f"maskwatch-{self.entrance}"


class Config(_Section):
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="logging verbosity")
    camera: CameraConfig = Field(default_factory=CameraConfig, description="the video source")
    model: ModelConfig = Field(default_factory=ModelConfig, description="the detector")
    tracker: TrackerConfig = Field(default_factory=TrackerConfig, description="face tracking and class vote")
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig, description="when the secondary "
                                         "classifier (model.classifier) runs and how its vote counts")
    alarm: AlarmConfig = Field(default_factory=AlarmConfig, description="when and how to alarm")
    zone: ZoneConfig = Field(default_factory=ZoneConfig, description="which faces count")
    display: DisplayConfig = Field(default_factory=DisplayConfig, description="the monitor")
    events: EventsConfig = Field(default_factory=EventsConfig, description="event log and counts")
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig, description="Jetson temperatures, power "
                                       "and throttling (jtop)")
    mqtt: Optional[MqttConfig] = Field(None, description="publish events, counts and state to the site's own "
                                       "MQTT broker; null (the default): off, no network socket is ever opened")

    @model_validator(mode="before")
    @classmethod
    def _face_px(cls, data: Any) -> Any:
        """Migrate ``zone.min_face_px``/``zone.max_face_px`` (px, before 2026-12) to the fractions of the frame
        height, at ``camera.height``, with a warning naming both keys; both the old and the new key: an error."""
        if not isinstance(data, dict) or not isinstance(data.get("zone"), dict):
            return data
        zone = data["zone"]
        old = [k for k in ("min_face_px", "max_face_px") if k in zone]
        if not old:
            return data
        cam = data.get("camera") if isinstance(data.get("camera"), dict) else {}
        height = cam.get("height", CameraConfig.model_fields["height"].default)
        if not isinstance(height, int) or isinstance(height, bool) or height <= 0:
            return data  # camera.height is invalid itself: its own error says so
        zone = dict(zone)
        for k in old:
            new = k.replace("_px", "_frac")
            if new in zone:
                raise ValueError(f"zone.{k} (px) was replaced by zone.{new} (a fraction of the frame height); "
                                 f"remove zone.{k}")
            v = zone.pop(k)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise ValueError(f"zone.{k} (px) was replaced by zone.{new} (a fraction of the frame height, 0-1)")
            zone[new] = round(float(v) / height, 4)
            _deprecated(f"zone.{k}: {v} is deprecated (pixels do not follow the camera resolution); read as "
                        f"zone.{new}: {zone[new]} ({v} px / camera.height {height}); write zone.{new} instead")
        data = dict(data)
        data["zone"] = zone
        return data


#: the largest config file read (bytes): the example is ~10 KiB; bigger files are refused before parsing,
#: so a reload can never stall the frame loop on a huge file
MAX_CONFIG_BYTES = 64 * 1024
#: most aliases (``*name``) in a file, deepest nesting of mappings/lists, and most values after
#: expanding every alias: bounds on what a small file may make the parser build (alias bombs)
MAX_ALIASES = 100
MAX_DEPTH = 32
MAX_NODES = 20000
#: an error line is cut to this many characters, and at most this many lines are kept
MAX_ERROR_CHARS = 300
MAX_ERRORS = 30


def _bounded(errors: List[str]) -> List[str]:
    """``errors`` with each line cut to :data:`MAX_ERROR_CHARS` and at most :data:`MAX_ERRORS` lines."""
    out = []
    for e in errors[:MAX_ERRORS]:
        e = " ".join(str(e).split("\n")) if "\n" in str(e) else str(e)
        out.append(e if len(e) <= MAX_ERROR_CHARS else e[:MAX_ERROR_CHARS - 25] + f"... ({len(e)} characters)")
    if len(errors) > MAX_ERRORS:
        out.append(f"... and {len(errors) - MAX_ERRORS} more error(s)")
    return out


class ConfigError(ValueError):
    """A config file failed to load; ``errors`` holds one line per problem (each at most
    :data:`MAX_ERROR_CHARS` characters, at most :data:`MAX_ERRORS` + 1 lines)."""

    def __init__(self, path: Union[str, Path, None], errors: List[str]):
        self.path = path
        errors = _bounded(list(errors))
        self.errors = errors
        where = f"{path}: " if path else ""
        super().__init__(where + f"{len(errors)} error(s)\n" + "\n".join("  " + e for e in errors))


# ---------------------------------------------------------------------------------------------- loading

class _LimitError(Exception):
    """The file exceeds a parse limit (aliases, depth); ``line`` is 1-based."""

    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.line = line


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with bounded composition (aliases, depth) and constructor errors that
    carry the line of the node that failed (a bad ``!!timestamp`` raises a bare ValueError in PyYAML)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise _LimitError(f"more than {MAX_ALIASES} aliases (*name); write the values out", mark.line + 1)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _LimitError(f"nested more than {MAX_DEPTH} levels deep", mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node, deep=False):  # type: ignore[override]
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as e:  # e.g. ValueError/AttributeError from a malformed !!timestamp
            raise yaml.constructor.ConstructorError(None, None, f"cannot read the value {node.tag} "
                                                    f"({type(e).__name__}: {e})", node.start_mark) from None


def _check_graph(node: yaml.Node) -> None:
    """Refuse a node graph that refers to itself (a recursive alias) or expands to more than
    :data:`MAX_NODES` values; linear in the number of distinct nodes."""
    size: Dict[int, int] = {}
    active: set = set()

    def walk(n: yaml.Node) -> int:
        k = id(n)
        if k in size:
            return size[k]
        if k in active:
            raise _LimitError("a recursive alias (a value that contains itself)", n.start_mark.line + 1)
        active.add(k)
        total = 1
        if isinstance(n, yaml.MappingNode):
            for a, b in n.value:
                total += walk(a) + walk(b)
        elif isinstance(n, yaml.SequenceNode):
            for a in n.value:
                total += walk(a)
        active.discard(k)
        if total > MAX_NODES:
            raise _LimitError(f"the file expands to more than {MAX_NODES} values (aliases repeated inside "
                              f"aliases?)", n.start_mark.line + 1)
        size[k] = total
        return total

    walk(node)


def _node_lines(node: yaml.Node, path: Tuple = (), out: Optional[Dict[Tuple, int]] = None,
                dups: Optional[List[str]] = None) -> Dict[Tuple, int]:
    """Map each key path (tuple of keys / list indices) to its 1-based line number."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                if dups is not None:
                    dups.append(f"{_fmt(path)} (line {k.start_mark.line + 1}): a key must be a plain name, "
                                f"not a {'list' if isinstance(k, yaml.SequenceNode) else 'mapping'}")
                continue
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


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_]{1,%d}$" % ECHO_CHARS)


def _key(p: Any) -> str:
    """A key of the file for an error: a plain short name as is, anything else escaped and cut
    (:func:`short_value`)."""
    return p if isinstance(p, str) and _PLAIN_KEY.match(p) else short_value(p if isinstance(p, str) else str(p))


def _fmt(loc: Tuple) -> str:
    s = ""
    for p in loc:
        s += f"[{p}]" if isinstance(p, int) else (("." if s else "") + _key(p))
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
        if get_origin(ann) is Union:  # Optional[Section]: the section
            ann = next((a for a in get_args(ann) if isinstance(a, type) and issubclass(a, BaseModel)), ann)
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


def _did_you_mean(loc: Tuple) -> str:
    """``"; did you mean 'camera'?"`` for a key close to a known key of its section (difflib), else ""."""
    parent, _ = _field_for(loc[:-1]) if len(loc) > 1 else (Config, None)
    if not (isinstance(parent, type) and issubclass(parent, BaseModel)) or not isinstance(loc[-1], str):
        return ""
    close = difflib.get_close_matches(loc[-1][:64], list(parent.model_fields), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _line_of(lines: Dict[Tuple, int], loc: Tuple) -> Optional[int]:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _yaml_error(e: Exception) -> str:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    line = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
    problem = str(getattr(e, "problem", None) or type(e).__name__)
    problem = problem if len(problem) <= 120 else problem[:120] + "..."  # PyYAML may quote the file's text
    return f"YAML error at {line}: {problem}" if isinstance(e, yaml.constructor.ConstructorError) \
        else f"YAML syntax error at {line}: {problem}"


def referenced_file_errors(cfg: Config, lines: Optional[Dict[Tuple, int]] = None) -> List[str]:
    """Problems with the files the config names, one line each with the key and its line: the model and
    classifier loaded by ONNX Runtime with their metadata and role, every sound decoded, output files
    and folders checked (:func:`edge.validate.check_files`, the same check for check-config, a reload and
    ``run``). Warnings (an events folder not writable now) are not errors."""
    from edge.validate import check_files
    out = check_files(cfg, lines)[0]
    if cfg.mqtt is not None:
        out += _mqtt_file_errors(cfg.mqtt, lines or {})
    return out


def _mqtt_file_errors(m: "MqttConfig", lines: Dict[Tuple, int]) -> List[str]:
    """The files ``mqtt`` names exist (TLS CA, certificate, key; password file), and the password file and the
    key are readable only by their owner (the service user)."""
    out = []
    files = [(("mqtt", "password_file"), m.password_file, "password file", True)]
    if m.tls is not None:
        files += [(("mqtt", "tls", "ca_file"), m.tls.ca_file, "CA file", False),
                  (("mqtt", "tls", "cert_file"), m.tls.cert_file, "client certificate", False),
                  (("mqtt", "tls", "key_file"), m.tls.key_file, "key file", True)]
    for loc, value, what, secret in files:
        if not value:
            continue
        p = Path(value).expanduser()
        where = f"{_fmt(loc)} (line {_line_of(lines, loc)})"
        try:
            st = p.stat()
        except OSError as e:  # missing, too long a name, a loop, no permission: an error, never a crash
            shown = str(p) if len(str(p)) <= 120 else str(p)[:117] + "..."
            out.append(f"{where}: no such {what}: {shown} ({e.strerror or type(e).__name__})")
            continue
        if not stat.S_ISREG(st.st_mode):
            out.append(f"{where}: the {what} is not a regular file")
        elif secret and st.st_mode & 0o077:
            out.append(f"{where}: {what} is readable by other users (mode {st.st_mode & 0o777:o}); "
                       f"chmod 600 it and chown it to the service user")
    return out


def parse(text: str, path: Union[str, Path, None] = None, check_files: bool = False,
          allow_empty: bool = True, transform: Optional[Callable[[Config], Config]] = None) -> Config:
    """Validate YAML ``text``; raise :class:`ConfigError` listing every problem with key path and line.

    Only plain YAML is read (safe loader; ``!!python/...`` tags are errors). A text over
    :data:`MAX_CONFIG_BYTES`, more than :data:`MAX_ALIASES` aliases, nesting over :data:`MAX_DEPTH`, a
    recursive alias or more than :data:`MAX_NODES` values after alias expansion is refused, so parsing
    is bounded (milliseconds). ``check_files``: also require the files named by ``model.path`` and
    ``alarm.sound`` to exist (:func:`referenced_file_errors`). ``allow_empty=False``: an empty or
    comments-only text is an error instead of the built-in defaults (a reload uses this; ``{}`` still
    asks for the defaults explicitly). ``transform``: applied to the validated config before the files are
    checked (``run`` and a reload apply the command-line overrides, so ``--events`` is checked too). Never
    raises anything but :class:`ConfigError`.
    """
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(path, [f"the file is {len(text)} characters; the most a config may have is "
                                 f"{MAX_CONFIG_BYTES} (the documented example is about 10 KiB)"])
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except _LimitError as e:
            raise ConfigError(path, [f"(line {e.line}): {e}"]) from None
        except yaml.YAMLError as e:
            raise ConfigError(path, [_yaml_error(e)]) from None
        except RecursionError:
            raise ConfigError(path, [f"nested more than {MAX_DEPTH} levels deep"]) from None
        if node is None:
            if not allow_empty:
                raise ConfigError(path, ["the file is empty (or only comments): refusing to reset every setting to "
                                         "its default; write '{}' to ask for the built-in defaults"])
            return _finish(Config(), {}, path, check_files, transform)
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(path, [f"(top level) (line {node.start_mark.line + 1}): the file must be a mapping "
                                     f"of keys (known keys: {', '.join(Config.model_fields)})"])
        try:
            _check_graph(node)
        except _LimitError as e:
            raise ConfigError(path, [f"(line {e.line}): {e}"]) from None
        dups: List[str] = []
        lines = _node_lines(node, dups=dups)
        if dups:
            raise ConfigError(path, dups)
        try:
            data = loader.construct_document(node)
        except yaml.YAMLError as e:
            raise ConfigError(path, [_yaml_error(e)]) from None
    finally:
        loader.dispose()
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        errors = []
        for err in e.errors():
            loc = tuple(err["loc"])
            line = _line_of(lines, loc)
            got = err.get("input")
            got_s = "" if err["type"] in ("extra_forbidden",) or isinstance(got, dict) else f" [got {short_value(got)}]"
            allowed = _allowed(loc, err["type"])
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key" + _did_you_mean(loc)
            label = "" if err["type"] == "extra_forbidden" else "allowed: "
            errors.append(f"{_fmt(loc)} (line {line}): {msg}{got_s}" + (f"; {label}{allowed}" if allowed else ""))
        raise ConfigError(path, errors) from None
    except Exception as e:  # a validator tripping over an odd value must still be a config error
        raise ConfigError(path, [f"(top level): cannot validate the file ({type(e).__name__}: {str(e)[:60]})"]) from None
    return _finish(cfg, lines, path, check_files, transform)


def _finish(cfg: Config, lines: Dict[Tuple, int], path: Union[str, Path, None], check_files: bool,
            transform: Optional[Callable[[Config], Config]]) -> Config:
    if transform is not None:
        try:
            cfg = transform(cfg)
        except ValidationError as e:
            raise ConfigError(path, [f"{_fmt(tuple(err['loc']))} (command line): {err['msg']}"
                                     for err in e.errors()]) from None
    if check_files:
        missing = referenced_file_errors(cfg, lines)
        if missing:
            raise ConfigError(path, missing)
    return cfg


def load(path: Union[str, Path, None], check_files: bool = False, allow_empty: bool = True,
         transform: Optional[Callable[[Config], Config]] = None) -> Config:
    """Load and validate a config file; ``None`` gives the built-in defaults.

    ``check_files``, ``allow_empty`` and ``transform``: see :func:`parse` (``check-config``, ``run`` and a
    reload check the referenced files; a reload refuses an empty file). At most :data:`MAX_CONFIG_BYTES`
    are read, and only from a regular file (a FIFO or a device is refused at once, never read:
    :func:`edge.validate.open_regular`).

    Raises:
        ConfigError: the file is missing, unreadable, not a regular file, too big, not YAML, or invalid
            (never anything else).
    """
    if path is None:
        return _finish(Config(), {}, None, check_files, transform)
    from edge.validate import open_regular
    p = Path(path)
    try:
        with os.fdopen(open_regular(p), "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            size = p.stat().st_size
            raise ConfigError(path, [f"the file is {size} bytes; the most a config may have is {MAX_CONFIG_BYTES} "
                                     f"(the documented example is about 10 KiB)"])
        text = raw.decode("utf-8")
    except OSError as e:
        raise ConfigError(path, [f"cannot read the file: {e.strerror or e}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError(path, [f"the file is not UTF-8 text: {e}"]) from None
    return parse(text, path, check_files=check_files, allow_empty=allow_empty, transform=transform)


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
