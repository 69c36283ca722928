"""TensorRT backend (the Jetson's GPU or DLA), behind :class:`edge.backends.base.Backend`.

The engine is looked up by its cache key (:mod:`edge.engine`: model SHA-256, TensorRT version, device,
precision, DLA core) in the engine folder; a missing or stale engine is an
:class:`~edge.engine.EngineNotFoundError` whose message is the exact ``maskwatch build-engine`` command.
The model's :class:`~edge.model.ModelMeta` comes from the engine's sidecar.

Buffers: one page-locked host array and one device allocation per input/output tensor, allocated once
at load; :meth:`TensorRTBackend.infer` copies the input in asynchronously, executes and copies the
outputs back on one CUDA stream, then synchronises. Two I/O APIs are supported explicitly:

* TensorRT 8.x (JetPack 5.1 ships 8.5): the binding API: ``num_bindings``, ``get_binding_index``,
  ``binding_is_input``, ``get_binding_shape``/``dtype``, ``execute_async_v2(bindings, stream_handle)``;
* TensorRT 10.x: the tensor-name API: ``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``,
  ``get_tensor_shape``/``dtype``, ``set_tensor_address``, ``execute_async_v3(stream_handle)``.

:func:`select_io_api` picks one from the version and the engine's attributes. ``tensorrt`` and
``pycuda`` are imported only here (and, through :func:`import_tensorrt_and_pycuda`, by
:func:`edge.engine.build_engine`); importing this module never imports them.
"""
from __future__ import annotations

import atexit
import logging
import weakref
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from edge.backends.base import Backend
from edge.engine import engine_key, resolve_engine

log = logging.getLogger(__name__)

BACKEND_KEY = "tensorrt"

TENSORRT_HELP = ("the Python package 'tensorrt' (TensorRT 8.5 on JetPack 5.1) is not importable: install it with "
                 "`sudo apt-get install python3-libnvinfer` (part of `sudo apt-get install nvidia-jetpack`) and run "
                 "maskwatch from a virtual environment created with `python3 -m venv --system-site-packages`, "
                 "which sees the system TensorRT; or set `model.backend: onnxruntime`")
PYCUDA_HELP = ("the Python package 'pycuda' is not importable: inside the maskwatch virtual environment run "
               "`PATH=/usr/local/cuda/bin:$PATH pip install pycuda` (it builds against the CUDA toolkit JetPack "
               "installs in /usr/local/cuda); or set `model.backend: onnxruntime`")


class BackendUnavailableError(RuntimeError):
    """A runtime package the backend needs is missing; the message says how to install it."""


def import_tensorrt_and_pycuda() -> Tuple[Any, Any]:
    """Import ``tensorrt`` and ``pycuda.driver``; return the two modules.

    Raises:
        BackendUnavailableError: either is missing (or fails to load its native library); the message
            names every missing package, the original import error and the install command.
    """
    problems: List[str] = []
    trt = cuda = None
    try:
        import tensorrt as trt
    except ImportError as e:
        problems.append(f"{TENSORRT_HELP} [{type(e).__name__}: {e}]")
    try:
        import pycuda.driver as cuda
    except ImportError as e:
        problems.append(f"{PYCUDA_HELP} [{type(e).__name__}: {e}]")
    if problems:
        raise BackendUnavailableError("TensorRT cannot be used: " + " ALSO: ".join(problems))
    return trt, cuda


def trt_major(version: str) -> int:
    """The major number of a TensorRT version string (``"8.5.2.2"`` -> 8); 0 when unparseable."""
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


def select_io_api(version: str, has_binding_api: bool, has_tensor_api: bool) -> str:
    """Which I/O API to drive an engine with: ``"binding"`` (TensorRT 8.x) or ``"tensor"`` (10.x).

    TensorRT 8.5 has both (the tensor-name API arrived there, the binding API is still the proven one
    on JetPack 5.1), so versions below 10 use the binding API when present; 10 and later removed it and
    use the tensor-name API.

    Raises:
        RuntimeError: neither API is available.
    """
    if trt_major(version) < 10 and has_binding_api:
        return "binding"
    if has_tensor_api:
        return "tensor"
    if has_binding_api:
        return "binding"
    raise RuntimeError(f"TensorRT {version}: the engine offers neither the binding API (execute_async_v2) nor the "
                       f"tensor-name API (execute_async_v3)")


def _dims(d: Any) -> Tuple[int, ...]:
    return tuple(int(v) for v in d)


class TensorRTBackend(Backend):
    """Runs a maskwatch model as a TensorRT engine built by ``maskwatch build-engine``.

    Args:
        model_path: the ``.onnx`` file the engine was built from (hashed for the cache key).
        engine_dir: folder of engines (looked up by key); ignored when ``engine`` is given.
        precision: ``"fp16"`` or ``"int8"``.
        dla_core: DLA core the engine was built for (None: GPU).
        engine: an explicit ``.engine`` file; still validated against the key through its sidecar.
        device_id: CUDA device ordinal (0 on a Jetson).
        warmup_runs: inferences on a mid-grey input at load.

    Raises:
        BackendUnavailableError: ``tensorrt`` or ``pycuda`` missing (message has the install command).
        FileNotFoundError: no model file.
        EngineNotFoundError: no engine for the key, or only stale ones; the message is the build command.
        StaleEngineError: an explicit ``engine`` was built for another key.
        RuntimeError: deserialisation failed, or the engine's inputs/outputs do not match the model metadata.
    """

    def __init__(self, model_path: Union[str, Path], engine_dir: Optional[Union[str, Path]] = None,
                 precision: str = "fp16", dla_core: Optional[int] = None, engine: Optional[Union[str, Path]] = None,
                 device_id: int = 0, warmup_runs: int = 2):
        trt, cuda = import_tensorrt_and_pycuda()
        self._trt, self._cuda = trt, cuda
        self._ctx = None
        self.context = self.engine = self.runtime = self.stream = None
        self._done = None
        self._closed = False
        model_path = Path(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(f"no model file at {model_path}")
        key = engine_key(model_path, trt.__version__, precision, dla_core)
        self.engine_file, doc = resolve_engine(model_path, key, engine_dir, engine)
        self.meta = doc["model_meta"]
        self.key = key
        self.sidecar = doc

        cuda.init()
        self._ctx = cuda.Device(int(device_id)).retain_primary_context()
        self._ctx.push()
        try:
            self._load(trt, cuda, dla_core)
        except BaseException:
            try:
                self._release()
            finally:
                self._ctx.pop()
                self._ctx.detach()
                self._ctx = None
                self._closed = True
            raise
        self._ctx.pop()
        _close_at_exit(self)
        log.info("TensorRT %s engine %s loaded (%s API, %s%s)", trt.__version__, self.engine_file.name, self.api,
                 precision, "" if dla_core is None else f", DLA core {dla_core}")
        if warmup_runs:
            self.warmup(warmup_runs)

    # ------------------------------------------------------------------------------------- loading
    def _load(self, trt: Any, cuda: Any, dla_core: Optional[int]) -> None:
        self._logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(self._logger, "")
        self.runtime = trt.Runtime(self._logger)
        if dla_core is not None:
            self.runtime.DLA_core = int(dla_core)
        self.engine = self.runtime.deserialize_cuda_engine(self.engine_file.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT {trt.__version__} could not deserialize {self.engine_file} (built by "
                               f"another TensorRT version or device?); rebuild it with "
                               f"`maskwatch build-engine --force`")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise RuntimeError(f"TensorRT could not create an execution context for {self.engine_file}")
        self.api = select_io_api(trt.__version__, hasattr(self.engine, "get_binding_index"),
                                 hasattr(self.context, "execute_async_v3"))
        self.stream = cuda.Stream()
        # wait for the GPU by blocking, not spinning: the primary context's default schedule (one context,
        # fewer contexts than cores) spin-waits, a CPU core busy for the whole inference (docs/jetson.md,
        # "CPU budget at live pace"); an event with BLOCKING_SYNC lets the frame loop's thread sleep instead
        try:
            self._done = cuda.Event(cuda.event_flags.BLOCKING_SYNC | cuda.event_flags.DISABLE_TIMING)
        except Exception as e:  # an old pycuda without event flags: the spinning stream wait still works
            log.warning("no blocking CUDA event (%s); waiting for the GPU with a spin-wait", e)
            self._done = None
        in_shape = (1, 3, int(self.meta.input_h), int(self.meta.input_w))
        describe = self._describe_binding if self.api == "binding" else self._describe_tensor
        tensors = describe(trt, in_shape)
        inputs = [t for t in tensors if t["input"]]
        if [t["name"] for t in inputs] != [self.meta.input_name]:
            raise RuntimeError(f"engine inputs {[t['name'] for t in inputs]} do not match the model input "
                               f"{self.meta.input_name!r}")
        if inputs[0]["shape"] != in_shape:
            raise RuntimeError(f"engine input shape {inputs[0]['shape']} != model input {in_shape}")
        role_of = {name: role for role, name in self.meta.outputs.items()}
        outs = [t for t in tensors if not t["input"]]
        missing = sorted(set(self.meta.outputs.values()) - {t["name"] for t in outs})
        if missing:
            raise RuntimeError(f"engine outputs {[t['name'] for t in outs]} lack the model outputs {missing} "
                               f"(roles {self.meta.outputs})")
        # allocate once: page-locked host arrays and device buffers, in binding / I/O-tensor order
        for t in tensors:
            t["host"] = cuda.pagelocked_empty(t["shape"], t["dtype"])
            t["device"] = cuda.mem_alloc(t["host"].nbytes)
            t["role"] = role_of.get(t["name"], t["name"])
        self._tensors = tensors
        self._input = inputs[0]
        self._outputs = [t for t in tensors if not t["input"]]
        if self.api == "binding":
            self._bindings = [0] * len(tensors)
            for t in tensors:
                self._bindings[t["index"]] = int(t["device"])
        else:
            for t in tensors:
                if not self.context.set_tensor_address(t["name"], int(t["device"])):
                    raise RuntimeError(f"set_tensor_address failed for {t['name']!r}")

    def _describe_binding(self, trt: Any, in_shape: Tuple[int, ...]) -> List[Dict[str, Any]]:
        """TensorRT 8.x: one dict per binding (name, index, input, shape, numpy dtype)."""
        eng, ctx = self.engine, self.context
        out = []
        for i in range(eng.num_bindings):
            is_in = bool(eng.binding_is_input(i))
            shape = _dims(eng.get_binding_shape(i))
            if is_in and any(s < 0 for s in shape):
                if not ctx.set_binding_shape(i, in_shape):
                    raise RuntimeError(f"engine rejects input shape {in_shape}")
            out.append({"name": eng.get_binding_name(i), "index": i, "input": is_in,
                        "dtype": np.dtype(trt.nptype(eng.get_binding_dtype(i)))})
        for t in out:  # after the input shapes are set, so outputs of dynamic engines are resolved
            t["shape"] = _dims(ctx.get_binding_shape(t["index"]))
            if eng.get_binding_index(t["name"]) != t["index"]:
                raise RuntimeError(f"binding {t['name']!r} index mismatch")
        return out

    def _describe_tensor(self, trt: Any, in_shape: Tuple[int, ...]) -> List[Dict[str, Any]]:
        """TensorRT 10.x: one dict per I/O tensor (name, index, input, shape, numpy dtype)."""
        eng, ctx = self.engine, self.context
        out = []
        for i in range(eng.num_io_tensors):
            name = eng.get_tensor_name(i)
            is_in = eng.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            if is_in and any(s < 0 for s in _dims(eng.get_tensor_shape(name))):
                if not ctx.set_input_shape(name, in_shape):
                    raise RuntimeError(f"engine rejects input shape {in_shape}")
            out.append({"name": name, "index": i, "input": is_in,
                        "dtype": np.dtype(trt.nptype(eng.get_tensor_dtype(name)))})
        for t in out:
            t["shape"] = _dims(ctx.get_tensor_shape(t["name"]))
        return out

    # ------------------------------------------------------------------------------------- inference
    def infer(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        """(1, 3, input_h, input_w) float32 -> role -> float32 array (copies; the host buffers are reused).

        Raises:
            ValueError: wrong input shape.
            RuntimeError: the backend is closed or TensorRT reports an execution failure.
        """
        if self._closed:
            raise RuntimeError("the TensorRT backend is closed")
        inp = self._input
        if tuple(x.shape) != inp["shape"]:
            raise ValueError(f"input shape {tuple(x.shape)} != engine input {inp['shape']}")
        cuda = self._cuda
        self._ctx.push()
        try:
            np.copyto(inp["host"], x, casting="same_kind")
            cuda.memcpy_htod_async(inp["device"], inp["host"], self.stream)
            if self.api == "binding":
                ok = self.context.execute_async_v2(bindings=self._bindings, stream_handle=self.stream.handle)
            else:
                ok = self.context.execute_async_v3(stream_handle=self.stream.handle)
            if not ok:
                raise RuntimeError(f"TensorRT execution failed ({self.api} API)")
            for t in self._outputs:
                cuda.memcpy_dtoh_async(t["host"], t["device"], self.stream)
            if self._done is not None:
                self._done.record(self.stream)
                self._done.synchronize()  # sleeps until the copies and the kernels are done
            else:
                self.stream.synchronize()
        finally:
            self._ctx.pop()
        return {t["role"]: np.array(t["host"], dtype=np.float32) for t in self._outputs}

    # ------------------------------------------------------------------------------------- teardown
    def _release(self) -> None:
        """Free TensorRT objects and device memory while our context is current, then release the context."""
        for t in getattr(self, "_tensors", []) or []:
            dev = t.pop("device", None)
            if dev is not None:
                dev.free()
            t.pop("host", None)
        self._tensors = []
        self._done = None
        self.context = self.engine = self.runtime = self.stream = None

    def close(self) -> None:
        """Release the engine, buffers and the CUDA context (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._ctx is None:
            return
        try:
            self._ctx.push()
            try:
                self._release()
            finally:
                self._ctx.pop()
        finally:
            self._ctx.detach()
            self._ctx = None


def _close_at_exit(backend: TensorRTBackend) -> None:
    """Close ``backend`` at interpreter exit (before CUDA tears down) unless it was closed or collected."""
    ref = weakref.ref(backend)

    def _close() -> None:
        b = ref()
        if b is not None:
            try:
                b.close()
            except Exception:  # pragma: no cover - exit path on a device
                pass

    atexit.register(_close)
