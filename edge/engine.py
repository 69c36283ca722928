"""TensorRT engines: the cache key, the metadata sidecar, the INT8 calibration stream and the build.

Everything here except :func:`build_engine` is plain Python/NumPy and runs (and is tested) on any
machine. ``tensorrt`` and ``pycuda`` are imported only inside :func:`build_engine` (and in
:mod:`edge.backends.tensorrt`); TensorRT engines are specific to the GPU and the TensorRT version
that built them, so they are built on the Jetson itself, from the ONNX model.

Engine cache (as jetson-inference does it, plus the model's hash)::

    <engine_dir>/<model stem>.<sha256[:12]>.trt<TensorRT version>.<device>.<precision>[.dla<N>].engine
    <engine_dir>/<same name>.engine.json      # sidecar: ModelMeta + key + build facts

for example ``model.3f9a1c0e2b7d.trt8.5.2.2.nvidia-jetson-xavier-nx-developer-kit.fp16.engine``.
An engine is used only when its file name *and* its sidecar match the current key (full model
SHA-256, TensorRT version, device, precision, DLA core) and the engine file's own SHA-256 matches
the sidecar; anything else is stale and is never loaded. See ``docs/engine.md``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import platform
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from edge.model import METADATA_KEY, ModelMeta, preprocess

log = logging.getLogger(__name__)

PRECISIONS = ("fp16", "int8")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")
SIDECAR_SUFFIX = ".json"
ENGINE_SUFFIX = ".engine"
SIDECAR_FORMAT = 1
DEFAULT_WORKSPACE_MB = 1024
DEFAULT_CALIB_COUNT = 300

_DEVICE_TREE_MODEL = (Path("/proc/device-tree/model"), Path("/sys/firmware/devicetree/base/model"))
_NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


class EngineError(Exception):
    """Base class of the engine errors below."""


class StaleEngineError(EngineError):
    """An engine file exists but was built for another model, TensorRT version, device or precision."""


class EngineNotFoundError(EngineError, FileNotFoundError):
    """No usable engine for the current key; the message names the command that builds one."""


# ------------------------------------------------------------------------------------------- cache key

def file_sha256(path: Union[str, Path], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (64 lowercase hex characters).

    Raises:
        FileNotFoundError: no such file.
    """
    h = hashlib.sha256()
    with open(str(path), "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sanitize(text: str, max_len: int = 48) -> str:
    """A file-name-safe token: lowercase, runs of anything but ``[a-z0-9.]`` become ``-``, trimmed.

    ``"NVIDIA Jetson Xavier NX Developer Kit"`` -> ``"nvidia-jetson-xavier-nx-developer-kit"``;
    an empty result becomes ``"unknown"``.
    """
    s = re.sub(r"[^a-z0-9.]+", "-", str(text).strip().lower()).strip("-.")
    s = s[:max_len].strip("-.")
    return s or "unknown"


def device_name() -> str:
    """The name of the machine's accelerator, read from plain files (no CUDA import).

    In order: the device-tree model of a Jetson (``/proc/device-tree/model``, e.g. ``"NVIDIA Jetson
    Xavier NX Developer Kit"``), the first NVIDIA driver GPU model (``/proc/driver/nvidia/gpus/*/
    information``, desktop GPUs), else ``"cpu-<machine>"`` (e.g. ``"cpu-x86_64"``). The build and the
    runtime both use this function, so they always agree on the key.
    """
    for p in _DEVICE_TREE_MODEL:
        try:
            text = p.read_bytes().replace(b"\x00", b"").decode("utf-8", "replace").strip()
        except OSError:
            continue
        if text:
            return text
    try:
        for info in sorted(_NVIDIA_GPUS.glob("*/information")):
            for line in info.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.lower().startswith("model:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"cpu-{platform.machine() or 'unknown'}"


@dataclass(frozen=True)
class EngineKey:
    """What an engine depends on; any change means a rebuild.

    Attributes:
        model_sha256: 64-hex SHA-256 of the ``.onnx`` file's bytes.
        trt_version: ``tensorrt.__version__`` of the builder, e.g. ``"8.5.2.2"``.
        device: :func:`device_name` (raw; sanitised in the file name).
        precision: ``"fp16"`` or ``"int8"``.
        dla_core: DLA core the engine runs on (0 or 1 on a Xavier NX), or None for the GPU.

    Raises:
        ValueError: an unknown precision, a malformed hash, a negative DLA core or an empty version.
    """

    model_sha256: str
    trt_version: str
    device: str
    precision: str
    dla_core: Optional[int] = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if not re.fullmatch(r"[0-9a-f]{64}", self.model_sha256 or ""):
            raise ValueError(f"model_sha256 must be 64 lowercase hex characters, got {self.model_sha256!r}")
        if not str(self.trt_version).strip():
            raise ValueError("trt_version must not be empty")
        if self.dla_core is not None and (isinstance(self.dla_core, bool) or int(self.dla_core) < 0):
            raise ValueError(f"dla_core must be None or an integer >= 0, got {self.dla_core!r}")

    @property
    def short_hash(self) -> str:
        """The first 12 hex characters of the model hash (48 bits: collisions are not a concern)."""
        return self.model_sha256[:12]

    def engine_name(self, model_stem: str) -> str:
        """The engine file name for a model file stem (``"model"`` for ``model.onnx``)."""
        parts = [sanitize(model_stem, 40), self.short_hash, "trt" + sanitize(self.trt_version, 24),
                 sanitize(self.device), self.precision]
        if self.dla_core is not None:
            parts.append(f"dla{int(self.dla_core)}")
        return ".".join(parts) + ENGINE_SUFFIX

    def calib_cache_name(self, model_stem: str) -> str:
        """The INT8 calibration cache file name: model hash and TensorRT version (not device or DLA)."""
        return f"{sanitize(model_stem, 40)}.{self.short_hash}.trt{sanitize(self.trt_version, 24)}.int8.calib"

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def engine_key(onnx_path: Union[str, Path], trt_version: str, precision: str, dla_core: Optional[int] = None,
               device: Optional[str] = None) -> EngineKey:
    """The :class:`EngineKey` of an ONNX file for this machine (``device``: :func:`device_name`).

    Raises:
        FileNotFoundError: no file at ``onnx_path``.
        ValueError: see :class:`EngineKey`.
    """
    return EngineKey(file_sha256(onnx_path), str(trt_version), device if device is not None else device_name(),
                     precision, None if dla_core is None else int(dla_core))


def engine_path(engine_dir: Union[str, Path], onnx_path: Union[str, Path], key: EngineKey) -> Path:
    """Where the engine for ``key`` lives (or will be written) in ``engine_dir``."""
    return Path(engine_dir) / key.engine_name(Path(onnx_path).stem)


def sidecar_path(engine: Union[str, Path]) -> Path:
    """The metadata file beside an engine: ``<engine file name>.json``."""
    p = Path(engine)
    return p.with_name(p.name + SIDECAR_SUFFIX)


# --------------------------------------------------------------------------------------------- sidecar

def write_sidecar(engine: Union[str, Path], key: EngineKey, meta: ModelMeta, onnx_path: Union[str, Path],
                  build: Optional[Dict[str, Any]] = None) -> Path:
    """Write the JSON sidecar beside ``engine`` (which must already be written) and return its path.

    Content: ``format``, ``key`` (:meth:`EngineKey.as_dict`), the key fields at top level
    (``model_sha256``, ``trt_version``, ``device``, ``precision``, ``dla_core``), ``onnx_path``,
    ``engine_file``, ``engine_bytes``, ``engine_sha256``, ``model_meta`` (the model's
    :class:`~edge.model.ModelMeta` JSON text, as embedded in the ONNX file) and ``build`` (free-form
    facts: build time UTC, duration s, workspace MB, calibration images, ...). Written to a temporary
    file and renamed, so a reader never sees half a file.
    """
    e = Path(engine)
    doc = {
        "format": SIDECAR_FORMAT,
        "key": key.as_dict(),
        "engine_file": e.name,
        "engine_bytes": e.stat().st_size,
        "engine_sha256": file_sha256(e),
        "onnx_path": str(Path(onnx_path).resolve()),
        "model_meta": meta.to_json(),
        "build": dict(build or {}),
    }
    doc.update(key.as_dict())
    out = sidecar_path(e)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(out)
    return out


def read_sidecar(engine: Union[str, Path]) -> Dict[str, Any]:
    """The sidecar of ``engine`` as a dict, with ``model_meta`` parsed into a :class:`ModelMeta`.

    Raises:
        FileNotFoundError: no sidecar.
        StaleEngineError: the sidecar is not valid JSON, has an unknown format or lacks the key.
    """
    p = sidecar_path(engine)
    text = p.read_text(encoding="utf-8")
    try:
        doc = json.loads(text)
        if doc.get("format") != SIDECAR_FORMAT:
            raise ValueError(f"sidecar format {doc.get('format')!r}, this runtime reads {SIDECAR_FORMAT}")
        doc["key"] = EngineKey(**doc["key"])
        doc["model_meta"] = ModelMeta.from_json(doc["model_meta"])
    except (ValueError, KeyError, TypeError) as e:
        raise StaleEngineError(f"{p}: unreadable engine metadata ({e}); rebuild the engine") from None
    return doc


def validate_engine(engine: Union[str, Path], key: EngineKey, check_bytes: bool = True) -> Dict[str, Any]:
    """Check that ``engine`` was built for ``key``; return its sidecar (see :func:`read_sidecar`).

    Args:
        engine: the ``.engine`` file.
        key: what the runtime needs now.
        check_bytes: also compare the engine file's size and SHA-256 with the sidecar (a truncated or
            replaced engine is rejected).

    Raises:
        FileNotFoundError: the engine or its sidecar is missing.
        StaleEngineError: any key field, the size or the hash differs; the message lists each difference.
    """
    e = Path(engine)
    if not e.is_file():
        raise FileNotFoundError(f"no engine file at {e}")
    if not sidecar_path(e).is_file():
        raise FileNotFoundError(f"engine {e} has no metadata sidecar {sidecar_path(e).name}; rebuild it")
    doc = read_sidecar(e)
    have = doc["key"]
    diffs = [f"{f}: engine {getattr(have, f)!r}, needed {getattr(key, f)!r}"
             for f in ("model_sha256", "trt_version", "device", "precision", "dla_core")
             if getattr(have, f) != getattr(key, f)]
    if check_bytes and not diffs:
        size = e.stat().st_size
        if size != doc.get("engine_bytes"):
            diffs.append(f"engine size {size} B, sidecar says {doc.get('engine_bytes')} B")
        elif file_sha256(e) != doc.get("engine_sha256"):
            diffs.append("engine file SHA-256 differs from the sidecar's")
    if diffs:
        raise StaleEngineError(f"stale engine {e.name}: " + "; ".join(diffs))
    return doc


def find_engine(engine_dir: Union[str, Path], onnx_path: Union[str, Path], key: EngineKey
                ) -> Tuple[Optional[Path], List[str]]:
    """Look for a usable engine for ``key`` in ``engine_dir``.

    Returns:
        ``(path or None, notes)``: ``path`` is the engine whose name and sidecar match ``key``; ``notes``
        explains every rejected candidate (the expected file's problem and any other engine of the same
        model stem, which is stale by construction), for the error message.
    """
    d = Path(engine_dir)
    want = engine_path(d, onnx_path, key)
    notes: List[str] = []
    if want.is_file():
        try:
            validate_engine(want, key)
            return want, notes
        except (FileNotFoundError, StaleEngineError) as err:
            notes.append(str(err))
    stem = sanitize(Path(onnx_path).stem, 40)
    if d.is_dir():
        for other in sorted(d.glob(f"{stem}.*{ENGINE_SUFFIX}")):
            if other == want:
                continue
            try:
                validate_engine(other, key, check_bytes=False)
                notes.append(f"{other.name}: matches the key but has an unexpected name; ignored")
            except (FileNotFoundError, StaleEngineError) as err:
                notes.append(str(err))
    return None, notes


def build_command(onnx_path: Union[str, Path], precision: str, engine_dir: Union[str, Path],
                  dla_core: Optional[int] = None, config: Optional[Union[str, Path]] = None,
                  calib_cache_exists: bool = False) -> str:
    """The shell command that builds the engine the runtime is looking for (paths shell-quoted).

    For ``int8`` without an existing calibration cache the command carries ``--calib-dir
    /path/to/real/images``: the folder of real images must be filled in.
    """
    import shlex

    cmd = ["maskwatch", "build-engine"]
    if config:
        cmd += ["-c", str(config)]
    cmd += ["--model", str(onnx_path), "--precision", precision, "--out-dir", str(engine_dir)]
    if precision == "int8" and not calib_cache_exists:
        cmd += ["--calib-dir", "/path/to/real/images"]
    if dla_core is not None:
        cmd += ["--dla-core", str(dla_core)]
    return " ".join(shlex.quote(c) for c in cmd)


def resolve_engine(onnx_path: Union[str, Path], key: EngineKey, engine_dir: Optional[Union[str, Path]] = None,
                   engine: Optional[Union[str, Path]] = None) -> Tuple[Path, Dict[str, Any]]:
    """The engine the runtime must load for ``key``, and its sidecar (see :func:`read_sidecar`).

    Args:
        onnx_path: the model the engine must have been built from.
        key: what the runtime needs now (:func:`engine_key`).
        engine_dir: folder searched by :func:`find_engine` (default: the model's folder).
        engine: an explicit engine file instead of the search; still validated against ``key``.

    Raises:
        EngineNotFoundError: nothing usable in ``engine_dir``; the message gives the expected file, why each
            candidate was rejected and the exact ``maskwatch build-engine`` command.
        FileNotFoundError, StaleEngineError: an explicit ``engine`` is missing or stale.
    """
    if engine is not None:
        return Path(engine), validate_engine(engine, key)
    onnx_path = Path(onnx_path)
    folder = Path(engine_dir) if engine_dir is not None else onnx_path.parent
    found, notes = find_engine(folder, onnx_path, key)
    if found is None:
        calib = folder / key.calib_cache_name(onnx_path.stem)
        why = (" Rejected: " + " | ".join(notes) + ".") if notes else ""
        raise EngineNotFoundError(
            f"no TensorRT engine for {onnx_path} ({key.precision}, TensorRT {key.trt_version}, device {key.device!r}"
            f"{'' if key.dla_core is None else f', DLA core {key.dla_core}'}): expected "
            f"{engine_path(folder, onnx_path, key)}.{why} Build it with: "
            f"{build_command(onnx_path, key.precision, folder, key.dla_core, calib_cache_exists=calib.is_file())}")
    return found, validate_engine(found, key, check_bytes=False)  # find_engine has checked the bytes


# --------------------------------------------------------------------------------- calibration stream

def list_images(folder: Union[str, Path], max_count: Optional[int] = None) -> List[Path]:
    """Image files (jpg, jpeg, png, bmp; any case) directly in ``folder``, in a deterministic order.

    Sorted by file name; with ``max_count`` below the number found, ``max_count`` files evenly spread
    over the sorted list (first and last included), so a small calibration set still covers the folder.

    Raises:
        FileNotFoundError: ``folder`` is not a directory.
        ValueError: it holds no image, or ``max_count`` < 1.
    """
    d = Path(folder)
    if not d.is_dir():
        raise FileNotFoundError(f"no image folder at {d}")
    files = sorted((p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: p.name)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {d}")
    if max_count is None or max_count >= len(files):
        return files
    if max_count < 1:
        raise ValueError(f"max_count must be >= 1, got {max_count}")
    idx = np.linspace(0, len(files) - 1, int(max_count)).round().astype(int)
    return [files[i] for i in idx]


def read_frames(source: Union[str, Path], max_count: Optional[int] = None) -> Iterator[Tuple[str, np.ndarray]]:
    """(name, (H, W, 3) uint8 BGR image) pairs from a folder of images or a video file.

    A folder: :func:`list_images` order; unreadable files are skipped with a warning. A video:
    ``max_count`` frames evenly spread over the file (all frames without ``max_count``), named
    ``<file>#<frame index>``.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: a file that is not a known video type, or a video OpenCV cannot open.
    """
    import cv2

    src = Path(source)
    if src.is_dir():
        for p in list_images(src, max_count):
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None or img.size == 0:
                log.warning("skipping unreadable image %s", p)
                continue
            yield p.name, img
        return
    if not src.is_file():
        raise FileNotFoundError(f"no image folder or video at {src}")
    if src.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"{src}: expected a folder of images or a video ({', '.join(VIDEO_SUFFIXES)})")
    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
        raise ValueError(f"OpenCV cannot open the video {src}")
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        wanted = None
        if max_count is not None and n > 0:
            wanted = set(np.linspace(0, n - 1, min(int(max_count), n)).round().astype(int).tolist())
        i = 0
        got = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if wanted is None or i in wanted:
                yield f"{src.name}#{i}", frame
                got += 1
                if max_count is not None and got >= max_count:
                    break
            i += 1
    finally:
        cap.release()


class CalibrationBatches:
    """The INT8 calibration data: real images pre-processed exactly as the runtime does.

    Each batch is :func:`edge.model.preprocess` of one image with the model's :class:`ModelMeta`
    (letterbox to ``input_w`` x ``input_h``, colour order, ``(px - mean) / std``): a C-contiguous
    (1, 3, input_h, input_w) float32 array, batch size 1 like the engine's static input.

    Args:
        folder: a folder of images (jpg/jpeg/png/bmp), read in :func:`list_images` order.
        meta: the model's metadata (from the ONNX file or the engine sidecar).
        max_count: at most this many images (evenly spread over the sorted folder).

    Raises:
        FileNotFoundError, ValueError: see :func:`list_images`.
    """

    batch_size = 1

    def __init__(self, folder: Union[str, Path], meta: ModelMeta, max_count: Optional[int] = DEFAULT_CALIB_COUNT):
        self.meta = meta
        self.files = list_images(folder, max_count)
        self.shape = (1, 3, int(meta.input_h), int(meta.input_w))
        self.nbytes = int(np.prod(self.shape)) * np.dtype(np.float32).itemsize

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[np.ndarray]:
        import cv2

        for p in self.files:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None or img.size == 0:
                log.warning("calibration: skipping unreadable image %s", p)
                continue
            x, _ = preprocess(img, self.meta)
            yield np.ascontiguousarray(x, dtype=np.float32)


def read_onnx_meta(onnx_path: Union[str, Path]) -> ModelMeta:
    """The :class:`ModelMeta` embedded in an ONNX file, read with ONNX Runtime (no ``onnx`` package).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file carries no maskwatch metadata.
    """
    p = Path(onnx_path)
    if not p.is_file():
        raise FileNotFoundError(f"no model file at {p}")
    import onnxruntime as ort

    sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    props = sess.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise ValueError(f"{p} has no {METADATA_KEY!r} metadata; export it with `python -m models.export`")
    return ModelMeta.from_json(props[METADATA_KEY])


# ----------------------------------------------------------------------------------- the build (TensorRT)

class _Heartbeat(threading.Thread):
    """Prints ``  ... <what>: N s`` every ``every`` seconds until stopped (TensorRT 8.5 has no progress API)."""

    def __init__(self, what: str, every: float = 30.0):
        super().__init__(daemon=True)
        self.what, self.every, self._stop_ev, self.t0 = what, every, threading.Event(), time.monotonic()

    def run(self) -> None:
        while not self._stop_ev.wait(self.every):
            print(f"  ... {self.what}: {time.monotonic() - self.t0:.0f} s", flush=True)

    def stop(self) -> None:
        self._stop_ev.set()


def build_engine(onnx_path: Union[str, Path], precision: str = "fp16", calib_dir: Optional[Union[str, Path]] = None,
                 cache: Optional[Union[str, Path]] = None, dla_core: Optional[int] = None,
                 workspace_mb: int = DEFAULT_WORKSPACE_MB, out_dir: Optional[Union[str, Path]] = None,
                 calib_count: int = DEFAULT_CALIB_COUNT, force: bool = False) -> Path:
    """Build (or reuse) the TensorRT engine of an ONNX model on this machine and return its path.

    Steps: parse the ONNX file into an explicit-batch network; builder config with a workspace pool
    limit, FP16 (``fp16``) or INT8 plus FP16 (``int8``: layers without an INT8 kernel fall back to FP16,
    not FP32) with an entropy calibrator (``IInt8EntropyCalibrator2``) over :class:`CalibrationBatches`;
    optionally a DLA core with GPU fallback; ``build_serialized_network``; the engine is written next
    to its JSON sidecar (:func:`write_sidecar`). Progress lines and the total duration are printed.

    Args:
        onnx_path: the maskwatch ``.onnx`` file (its ``ModelMeta`` is stored in the sidecar).
        precision: ``"fp16"`` or ``"int8"``.
        calib_dir: folder of real images for INT8 calibration; needed for ``int8`` unless the
            calibration cache already exists.
        cache: INT8 calibration cache file; default ``<out_dir>/<stem>.<hash12>.trt<ver>.int8.calib``.
            Read when present (no calibration is run), written after calibration.
        dla_core: DLA core (0 or 1 on a Xavier NX) with GPU fallback; None: GPU only.
        workspace_mb: builder workspace memory pool limit in MiB (>= 1).
        out_dir: where the engine, sidecar and calibration cache go (default: the model's folder).
        calib_count: at most this many calibration images.
        force: rebuild even when a valid engine for the same key exists (otherwise it is reused).

    Returns:
        the ``.engine`` path.

    Raises:
        ImportError: ``tensorrt`` or ``pycuda`` is not installed (message says how to install them).
        FileNotFoundError: no model file, or ``int8`` without a calibration folder and without a cache.
        ValueError: bad precision, workspace or DLA core (e.g. this device has no DLA).
        RuntimeError: the ONNX parser or the builder failed (parser errors are printed).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if int(workspace_mb) < 1:
        raise ValueError(f"workspace_mb must be >= 1, got {workspace_mb}")
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"no model file at {onnx_path}")
    from edge.backends.tensorrt import import_tensorrt_and_pycuda, trt_major  # names the install commands

    trt, cuda = import_tensorrt_and_pycuda()
    t_start = time.monotonic()
    out = Path(out_dir) if out_dir is not None else onnx_path.parent
    out.mkdir(parents=True, exist_ok=True)
    key = engine_key(onnx_path, trt.__version__, precision, dla_core)
    target = engine_path(out, onnx_path, key)
    if not force:
        found, _notes = find_engine(out, onnx_path, key)
        if found is not None:
            print(f"build-engine: up to date: {found} (use --force to rebuild)", flush=True)
            return found
    meta = read_onnx_meta(onnx_path)
    cache_path = Path(cache) if cache is not None else out / key.calib_cache_name(onnx_path.stem)
    if precision == "int8" and calib_dir is None and not cache_path.is_file():
        raise FileNotFoundError(f"int8 needs --calib-dir (a folder of real images) or an existing calibration cache "
                                f"at {cache_path}")
    print(f"build-engine: {onnx_path} -> {target.name}: TensorRT {trt.__version__}, device {key.device!r}, "
          f"{precision}{'' if dla_core is None else f', DLA core {dla_core} with GPU fallback'}, "
          f"workspace {workspace_mb} MiB", flush=True)

    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    cuda.init()
    cu_ctx = cuda.Device(0).retain_primary_context()
    cu_ctx.push()
    calibrator = builder = network = parser = config = None
    try:
        builder = trt.Builder(logger)
        # explicit batch: required on TensorRT 8.x, the only mode (flag deprecated) on 10.x
        explicit = 0 if trt_major(trt.__version__) >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(explicit)
        parser = trt.OnnxParser(network, logger)
        print("  parsing the ONNX model", flush=True)
        if not parser.parse(onnx_path.read_bytes()):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            for e in errors:
                print(f"  ONNX parser error: {e}", flush=True)
            raise RuntimeError(f"TensorRT's ONNX parser failed on {onnx_path}: " + "; ".join(errors))
        inp = network.get_input(0)
        want_shape = (1, 3, int(meta.input_h), int(meta.input_w))
        shape, profile = tuple(inp.shape), None
        if meta.role == "classifier" and shape[0] == -1 and shape[1:] == want_shape[1:]:
            # the classifier's ONNX has a dynamic batch (ONNX Runtime batches a frame's crops); the engine
            # runs batch 1 (edge.classifier.Classifier sends one crop per call to a TensorRT backend)
            profile = builder.create_optimization_profile()
            profile.set_shape(inp.name, want_shape, want_shape, want_shape)
            shape = want_shape
        if network.num_inputs != 1 or inp.name != meta.input_name or shape != want_shape:
            raise RuntimeError(f"network input {inp.name!r} {tuple(inp.shape)} (of {network.num_inputs}) does not "
                               f"match the model metadata {meta.input_name!r} {want_shape}")

        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        if profile is not None:
            config.add_optimization_profile(profile)
        if not builder.platform_has_fast_fp16:
            print("  warning: this GPU has no fast FP16; the engine will be slow", flush=True)
        config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            if not builder.platform_has_fast_int8:
                print("  warning: this GPU has no fast INT8", flush=True)
            config.set_flag(trt.BuilderFlag.INT8)
            batches = CalibrationBatches(calib_dir, meta, calib_count) if calib_dir is not None else None
            calibrator = _entropy_calibrator(trt, cuda, batches, cache_path)
            config.int8_calibrator = calibrator
            if profile is not None:
                config.set_calibration_profile(profile)
            if cache_path.is_file():
                print(f"  INT8: reusing the calibration cache {cache_path}", flush=True)
            else:
                print(f"  INT8: calibrating on {len(batches)} images from {calib_dir}; cache -> {cache_path}",
                      flush=True)
        if dla_core is not None:
            n_dla = int(builder.num_DLA_cores)
            if not 0 <= int(dla_core) < n_dla:
                raise ValueError(f"dla_core {dla_core} requested but this device has {n_dla} DLA core(s)")
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = int(dla_core)
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

        print("  building (minutes on a Xavier NX; a line every 30 s)", flush=True)
        beat = _Heartbeat("building")
        beat.start()
        t_build = time.monotonic()
        try:
            serialized = builder.build_serialized_network(network, config)
        finally:
            beat.stop()
        if serialized is None:
            raise RuntimeError("TensorRT failed to build the engine (see the TensorRT messages above)")
        build_s = time.monotonic() - t_build
        tmp = target.with_name(target.name + ".tmp")
        with open(str(tmp), "wb") as f:
            f.write(serialized)
        tmp.replace(target)
        del serialized
    finally:
        if calibrator is not None:
            calibrator.free()
        builder = network = parser = config = None  # TensorRT objects go while the context is current
        cu_ctx.pop()
        cu_ctx.detach()
    total_s = time.monotonic() - t_start
    build = {
        "built_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_s": round(build_s, 1),
        "total_s": round(total_s, 1),
        "workspace_mb": int(workspace_mb),
        "calib_dir": None if calib_dir is None else str(Path(calib_dir).resolve()),
        "calib_images": None if calibrator is None or calibrator.batches is None else len(calibrator.batches),
        "calib_cache": None if precision != "int8" else str(cache_path.resolve()),
        "calib_cache_reused": None if calibrator is None else calibrator.cache_reused,
        "gpu_fallback": dla_core is not None,
        "host": platform.node(),
    }
    write_sidecar(target, key, meta, onnx_path, build)
    print(f"build-engine: wrote {target} ({target.stat().st_size / 1e6:.1f} MB) and {sidecar_path(target).name} "
          f"in {total_s:.1f} s (build {build_s:.1f} s)", flush=True)
    return target


def _entropy_calibrator(trt: Any, cuda: Any, batches: Optional[CalibrationBatches], cache_path: Path) -> Any:
    """An ``IInt8EntropyCalibrator2`` over ``batches`` (the class is defined here: it needs TensorRT)."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """Feeds :class:`CalibrationBatches` to TensorRT through one device buffer; reads/writes the cache."""

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = batches
            self.cache_reused = False
            self._it = iter(batches) if batches is not None else iter(())
            self._n = 0
            self._device = cuda.mem_alloc(batches.nbytes) if batches is not None else None

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: List[str]) -> Optional[List[int]]:
            x = next(self._it, None)
            if x is None or self._device is None:
                return None
            cuda.memcpy_htod(self._device, x)
            self._n += 1
            if self._n == 1 or self._n % 25 == 0 or self._n == len(self.batches):
                print(f"  calibration batch {self._n}/{len(self.batches)}", flush=True)
            return [int(self._device)]

        def read_calibration_cache(self) -> Optional[bytes]:
            if cache_path.is_file():
                self.cache_reused = True
                return cache_path.read_bytes()
            return None

        def free(self) -> None:
            if self._device is not None:
                self._device.free()
                self._device = None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            with open(str(cache_path), "wb") as f:
                f.write(cache)  # a buffer (IHostMemory-like) in TensorRT 8.x
            print(f"  wrote the calibration cache {cache_path}", flush=True)

    return EntropyCalibrator()


def cli_build_engine(args: Any) -> int:
    """``maskwatch build-engine``: arguments override the config's ``model.path`` and ``model.engine.*``.

    Exit codes: 0 built (or already up to date), 1 failed (no model or images, TensorRT/pycuda missing,
    parser or builder error; the reason is printed), 2 invalid config or arguments.
    """
    import sys

    from edge.backends.tensorrt import BackendUnavailableError
    from edge.config import load

    cfg = load(args.config)
    e = cfg.model.engine
    model = Path(args.model).expanduser() if args.model else cfg.model.resolved_path()
    precision = args.precision or e.precision
    dla = args.dla_core if args.dla_core is not None else e.dla_core
    calib_dir = args.calib_dir or e.calib_dir
    out_dir = Path(args.out_dir).expanduser() if args.out_dir else e.resolved_dir()
    workspace = args.workspace_mb if args.workspace_mb is not None else e.workspace_mb
    count = args.calib_count if args.calib_count is not None else e.calib_count
    if workspace < 1 or count < 1 or (dla is not None and dla < 0):
        print("build-engine: --workspace-mb and --calib-count must be >= 1, --dla-core >= 0", file=sys.stderr)
        return 2
    try:
        build_engine(model, precision, calib_dir=calib_dir, cache=args.calib_cache, dla_core=dla,
                     workspace_mb=workspace, out_dir=out_dir, calib_count=count, force=args.force)
    except (BackendUnavailableError, FileNotFoundError, RuntimeError) as err:
        print(f"build-engine: {err}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"build-engine: {err}", file=sys.stderr)
        return 2
    return 0
