"""One check of the files a config names, shared by ``check-config``, a SIGHUP reload and ``run`` at start.

What ``check-config`` accepts, ``run`` starts with: every file is opened and read by the loader ``run``
itself uses.

* **File type first.** :func:`open_regular` refuses anything but a regular file (a FIFO, a character or
  block device, a directory, a socket) *before* reading from it: ``stat`` first (nothing is opened that is
  not a regular file), then ``open(O_NONBLOCK)`` and ``fstat`` on the descriptor (a file swapped between the
  two is caught too), so no path can block the caller.
* **The model** (``model.path``) and the secondary classifier (``model.classifier``) are read from that
  descriptor and given to an ONNX Runtime ``InferenceSession``
  (:class:`edge.backends.onnxruntime.OnnxRuntimeBackend`, the runtime's own loader), then their maskwatch
  metadata is parsed and the role checked (detector / classifier, same classes).
* **Every sound** (``alarm.sound``, ``alarm.prompts.*``, the built-in prompts they replace) is decoded by
  :func:`edge.audio.load_wav`, which the speaker uses.
* **Output files**: ``display.save_video`` must be in an existing, writable folder and not be something
  other than a regular file; ``events.path`` / ``events.counts_path`` that exist must be regular files (a
  FIFO, ``/dev/full``, a folder are refused); their folder is created by ``run`` and one that is not
  writable is a warning only (the appliance runs and keeps events in memory, see docs/runtime.md).

Every ``OSError`` (ENAMETOOLONG, EACCES, ELOOP, ...) becomes one line naming the key and its line in the
file. Paths are echoed through :func:`edge.config.short_path`.
"""
from __future__ import annotations

import errno
import fcntl
import io
import os
import stat
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

#: the largest model file read (bytes); the released models are a few MB
MAX_MODEL_BYTES = 1 << 30
#: the largest WAV read (bytes); the built-in prompts are ~100 KiB
MAX_SOUND_BYTES = 64 << 20

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """A reader's name for the type in ``st_mode``: ``"a regular file"``, ``"a FIFO (named pipe)"``, ..."""
    if stat.S_ISREG(mode):
        return "a regular file"
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


class NotRegularFileError(OSError):
    """The path exists but is a FIFO, a device, a directory or a socket."""

    def __init__(self, path: Union[str, Path], mode: int):
        super().__init__(errno.EINVAL, f"not a regular file: it is {file_kind(mode)}", str(path))
        self.kind = file_kind(mode)


def open_regular(path: Union[str, Path], flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """Open ``path`` only if it is a regular file; never blocks on a FIFO or a device.

    ``os.stat`` first (a FIFO or device is never opened), then ``os.open(flags | O_NONBLOCK | O_NOCTTY |
    O_CLOEXEC)`` and ``os.fstat`` on the descriptor (catches a file swapped in between); ``O_NONBLOCK`` is
    cleared again before returning. ``flags`` may include ``O_CREAT`` (a new file is regular).

    Returns:
        the file descriptor (the caller closes it).

    Raises:
        NotRegularFileError: the path is not a regular file.
        OSError: anything ``open`` raises (ENOENT, EACCES, ENAMETOOLONG, ELOOP, ...).
    """
    p = str(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if not flags & os.O_CREAT:
            raise
    else:
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(p, st.st_mode)
    fd = os.open(p, flags | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(p, st.st_mode)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: Union[str, Path], max_bytes: int) -> bytes:
    """The bytes of a regular file (see :func:`open_regular`).

    Raises:
        OSError: not a regular file, cannot be opened or read, or larger than ``max_bytes``
            (``EFBIG``).
    """
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise OSError(errno.EFBIG, f"larger than {max_bytes} bytes", str(path))
    return data


def _oserror(e: OSError) -> str:
    if isinstance(e, NotRegularFileError):
        return e.strerror
    return e.strerror or type(e).__name__


def check_model(path: Union[str, Path], role: str = "detector"):
    """Load a model file as ``run`` does (ONNX Runtime session, maskwatch metadata) and check its role.

    Returns:
        the :class:`edge.model.ModelMeta`; ``None`` where onnxruntime is not installed (a TensorRT-only
        install: only the file itself is checked).

    Raises:
        OSError: the file cannot be opened (or is not a regular file).
        ValueError: ONNX Runtime refuses it, it has no maskwatch metadata, or its role is not ``role``.
    """
    data = read_regular(path, MAX_MODEL_BYTES)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:  # a TensorRT-only install: the file is a readable regular file, the engine build checks it
        return None
    from edge.backends.onnxruntime import OnnxRuntimeBackend
    try:
        backend = OnnxRuntimeBackend(data, threads=1, spin=False)
    except (ValueError, RuntimeError) as e:
        raise ValueError(_ort_message(e)) from None
    except Exception as e:  # onnxruntime's own exception types (InvalidProtobuf, InvalidGraph, Fail, ...)
        raise ValueError(_ort_message(e)) from None
    meta = backend.meta
    backend.close()
    if meta.role != role:
        raise ValueError(f"the model's metadata says role {meta.role!r}, this key needs a {role}")
    return meta


def _ort_message(e: Exception) -> str:
    """ONNX Runtime's error, first line only, bounded (it can quote the file's bytes)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    text = text.split(" : ", 1)[-1] if " : " in text else text
    if "maskwatch" in text and "metadata" in text:
        return text[:120]
    return f"ONNX Runtime cannot load it ({type(e).__name__}: {text[:100]})"


def check_sound(path: Union[str, Path]) -> None:
    """Decode a WAV as the speaker does (:func:`edge.audio.load_wav`).

    Raises:
        OSError: cannot be opened, not a regular file, too big.
        ValueError: not a 16-bit PCM WAV.
    """
    from edge.audio import load_wav
    data = read_regular(path, MAX_SOUND_BYTES)
    try:
        load_wav(io.BytesIO(data), name="")
    except ValueError as e:
        raise ValueError(str(e)[2:] if str(e).startswith(": ") else str(e)) from None


def _check_output_file(path: Path) -> Optional[str]:
    """The problem with an existing path an appender or writer would open, or None."""
    try:
        st = os.stat(str(path))
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return f"not a regular file: it is {file_kind(st.st_mode)}"
    return None


def check_files(cfg, lines: Optional[Dict[Tuple, int]] = None) -> Tuple[List[str], List[str]]:
    """``(errors, warnings)`` for the files ``cfg`` names, one line each: ``key (line N): problem``.

    ``lines`` maps key paths to lines (from :func:`edge.config.parse`); a key not in the file (a default,
    a command-line override) says ``(not in the file)``; ``None``: no line numbers. Never raises.
    """
    from edge.audio import BUILTIN_PROMPTS
    from edge.config import short_path

    errors, warnings = [], []  # type: List[str], List[str]

    def where(*key: str) -> str:
        if lines is None:
            return ".".join(key)
        for n in range(len(key), 0, -1):
            if key[:n] in lines:
                return f"{'.'.join(key)} (line {lines[key[:n]]})"
        return f"{'.'.join(key)} (not in the file)"

    def fail(key: Tuple[str, ...], path: Union[str, Path], problem: str) -> None:
        errors.append(f"{where(*key)}: {short_path(path)}: {problem}")

    # the model and the classifier: ONNX Runtime, metadata, role
    meta = None
    try:
        model = cfg.model.resolved_path()
    except (OSError, ValueError) as e:
        errors.append(f"{where('model', 'path')}: {e}")
        model = None
    if model is not None:
        try:
            meta = check_model(model, "detector")
        except OSError as e:
            fail(("model", "path"), model, f"cannot open the model: {_oserror(e)}")
        except (ValueError, RuntimeError) as e:
            fail(("model", "path"), model, f"not a usable maskwatch detector: {e}")
    if cfg.model.classifier:
        try:
            clf = cfg.model.resolved_classifier()
            cmeta = check_model(clf, "classifier")
            if meta is not None and cmeta is not None and list(cmeta.classes) != list(meta.classes):
                fail(("model", "classifier"), clf, f"its classes {cmeta.classes} differ from the detector's "
                     f"{list(meta.classes)}")
        except OSError as e:
            fail(("model", "classifier"), cfg.model.classifier, f"cannot open the classifier: {_oserror(e)}")
        except (ValueError, RuntimeError) as e:
            fail(("model", "classifier"), cfg.model.classifier, f"not a usable maskwatch classifier: {e}")

    # every sound the speaker may play
    sounds = []  # type: List[Tuple[Tuple[str, ...], Path]]
    prompts = cfg.alarm.prompts.model_dump()
    for cls, builtin in BUILTIN_PROMPTS.items():
        if prompts.get(cls):
            sounds.append((("alarm", "prompts", cls), Path(prompts[cls]).expanduser()))
        elif cfg.alarm.sound:
            sounds.append((("alarm", "sound"), Path(cfg.alarm.sound).expanduser()))
        else:
            sounds.append((("alarm", "sound"), builtin))
    seen = set()
    for key, p in sounds:
        if (key, str(p)) in seen:
            continue
        seen.add((key, str(p)))
        try:
            check_sound(p)
        except OSError as e:
            fail(key, p, f"cannot open the sound: {_oserror(e)}")
        except ValueError as e:
            fail(key, p, str(e)[:120])

    # the annotated video
    if cfg.display.save_video:
        p = Path(cfg.display.save_video).expanduser()
        try:
            problem = _check_output_file(p)
            folder = p.parent
            if problem:
                fail(("display", "save_video"), p, problem)
            elif not folder.is_dir():
                fail(("display", "save_video"), p, "its folder does not exist (or is not a folder)")
            elif not os.access(str(folder), os.W_OK | os.X_OK):
                fail(("display", "save_video"), p, "its folder is not writable")
        except OSError as e:
            fail(("display", "save_video"), p, _oserror(e))

    # the event log and the counts
    for key, p in ((("events", "path"), cfg.events.resolved_path()),
                   (("events", "counts_path"), cfg.events.resolved_counts_path())):
        try:
            problem = _check_output_file(p)
            if problem:
                fail(key, p, problem)
                continue
            folder = p.parent
            while not folder.exists() and folder != folder.parent:
                folder = folder.parent
            if not folder.is_dir():
                fail(key, p, f"{short_path(folder)} is not a folder")
            elif not os.access(str(folder), os.W_OK | os.X_OK):
                warnings.append(f"{where(*key)}: {short_path(p)}: the folder is not writable now; the appliance "
                                "runs and keeps events in memory until it is")
        except OSError as e:
            fail(key, p, _oserror(e))
    if cfg.events.snapshots:
        p = cfg.events.resolved_snapshot_dir()
        try:
            if p.exists() and not p.is_dir():
                fail(("events", "snapshot_dir"), p, "not a folder")
        except OSError as e:
            fail(("events", "snapshot_dir"), p, _oserror(e))
    return errors, warnings
