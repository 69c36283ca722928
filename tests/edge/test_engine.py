"""TensorRT engine logic that runs without TensorRT: cache key, sidecar, stale-engine rejection, the INT8
calibration stream on the shared images, and the TensorRT backend's start-up error when TensorRT is absent.

Tests that need a real TensorRT and pycuda are marked ``jetson`` and skipped where ``tensorrt`` is not
importable. No fake ``tensorrt`` or ``pycuda`` module is ever inserted.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edge import engine as E
from edge.model import ModelMeta, preprocess
from edge_helpers import REPO

IMAGES = (REPO / ".." / "shared" / "data" / "face-mask-andrewmvd" / "images").resolve()
HAS_TRT = importlib.util.find_spec("tensorrt") is not None and importlib.util.find_spec("pycuda") is not None
needs_trt = pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT and pycuda (a Jetson)")


@pytest.fixture(scope="module")
def meta(model_path) -> ModelMeta:
    return E.read_onnx_meta(model_path)


@pytest.fixture(scope="module")
def key(model_path) -> E.EngineKey:
    return E.engine_key(model_path, "8.5.2.2", "fp16", device="NVIDIA Jetson Xavier NX Developer Kit")


@pytest.fixture
def images_dir():
    if not IMAGES.is_dir():
        pytest.fail(f"shared images missing at {IMAGES}")
    return IMAGES


def _fake_build(tmp_path, model_path, key, meta, payload=b"serialized engine bytes"):
    """Write an engine file (arbitrary bytes: the cache logic never parses it) and its sidecar, as the build does."""
    p = E.engine_path(tmp_path, model_path, key)
    p.write_bytes(payload)
    E.write_sidecar(p, key, meta, model_path, {"build_s": 1.0})
    return p


# ------------------------------------------------------------------------------------------- cache key

def test_key_hashes_the_model_file(model_path, key):
    import hashlib
    assert key.model_sha256 == hashlib.sha256(model_path.read_bytes()).hexdigest()
    assert key.short_hash == key.model_sha256[:12]


def test_engine_name_layout(key):
    name = key.engine_name("model")
    assert name == f"model.{key.short_hash}.trt8.5.2.2.nvidia-jetson-xavier-nx-developer-kit.fp16.engine"
    dla = dataclasses.replace(key, precision="int8", dla_core=1)
    assert dla.engine_name("model").endswith(".int8.dla1.engine")


@pytest.mark.parametrize("field, value", [
    ("model_sha256", "0" * 64), ("trt_version", "10.3.0"), ("device", "NVIDIA Jetson AGX Orin"),
    ("precision", "int8"), ("dla_core", 0)])
def test_every_key_component_changes_the_engine_name(key, field, value):
    other = dataclasses.replace(key, **{field: value})
    assert other != key
    assert other.engine_name("model") != key.engine_name("model")
    # and the same components always give the same name
    assert dataclasses.replace(key).engine_name("model") == key.engine_name("model")


def test_dla0_differs_from_gpu(key):
    assert dataclasses.replace(key, dla_core=0).engine_name("m") != key.engine_name("m")
    assert dataclasses.replace(key, dla_core=0).engine_name("m") != dataclasses.replace(key, dla_core=1).engine_name("m")


def test_calibration_cache_name_ignores_device_and_dla(key):
    a = key.calib_cache_name("model")
    assert a == dataclasses.replace(key, device="other", dla_core=1).calib_cache_name("model")
    assert a != dataclasses.replace(key, trt_version="10.3").calib_cache_name("model")
    assert a.endswith(".int8.calib") and key.short_hash in a


@pytest.mark.parametrize("kw, match", [
    ({"precision": "fp32"}, "precision"), ({"model_sha256": "abc"}, "model_sha256"),
    ({"trt_version": " "}, "trt_version"), ({"dla_core": -1}, "dla_core")])
def test_bad_keys_are_rejected(key, kw, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(key, **kw)


@pytest.mark.parametrize("raw, clean", [
    ("NVIDIA Jetson Xavier NX Developer Kit", "nvidia-jetson-xavier-nx-developer-kit"),
    ("  Xavier/../../etc ", "xavier-..-..-etc"), ("", "unknown"), ("8.5.2.2", "8.5.2.2"),
    ("NVIDIA H200\x00", "nvidia-h200")])
def test_sanitize(raw, clean):
    out = E.sanitize(raw)
    assert out == clean
    assert "/" not in out and " " not in out


def test_device_name_on_this_machine():
    name = E.device_name()
    assert name and E.sanitize(name) != "unknown"
    # the same on every call: the build and the runtime must agree
    assert E.device_name() == name


# ------------------------------------------------------------------------------------------- sidecar

def test_sidecar_round_trip(tmp_path, model_path, key, meta):
    p = _fake_build(tmp_path, model_path, key, meta)
    side = E.sidecar_path(p)
    assert side.name == p.name + ".json" and side.is_file()
    raw = json.loads(side.read_text(encoding="utf-8"))
    for f in ("model_sha256", "trt_version", "device", "precision", "dla_core", "onnx_path", "engine_sha256",
              "engine_bytes", "model_meta", "build"):
        assert f in raw, f
    doc = E.read_sidecar(p)
    assert doc["key"] == key
    assert doc["model_meta"] == meta
    assert doc["build"] == {"build_s": 1.0}
    assert doc["engine_bytes"] == p.stat().st_size
    assert E.validate_engine(p, key)["key"] == key
    found, notes = E.find_engine(tmp_path, model_path, key)
    assert found == p and notes == []
    path, doc2 = E.resolve_engine(model_path, key, tmp_path)
    assert path == p and doc2["model_meta"] == meta


@pytest.mark.parametrize("field, value", [
    ("model_sha256", "f" * 64), ("trt_version", "8.4.1"), ("device", "Jetson Nano"), ("precision", "int8"),
    ("dla_core", 1)])
def test_stale_engine_is_rejected(tmp_path, model_path, key, meta, field, value):
    """An engine built for another key, even if renamed to the expected file name, is never accepted."""
    old_key = dataclasses.replace(key, **{field: value})
    old = _fake_build(tmp_path, model_path, old_key, meta)
    with pytest.raises(E.StaleEngineError, match=field):
        E.validate_engine(old, key)
    found, notes = E.find_engine(tmp_path, model_path, key)
    assert found is None and any(old.name in n for n in notes)
    # renamed to the name the current key expects: the sidecar still gives it away
    want = E.engine_path(tmp_path, model_path, key)
    old.rename(want)
    E.sidecar_path(old).rename(E.sidecar_path(want))
    found, notes = E.find_engine(tmp_path, model_path, key)
    assert found is None and field in " ".join(notes)


def test_modified_or_truncated_engine_is_rejected(tmp_path, model_path, key, meta):
    p = _fake_build(tmp_path, model_path, key, meta)
    p.write_bytes(b"serialized engine bytez")           # same size, other bytes
    with pytest.raises(E.StaleEngineError, match="SHA-256"):
        E.validate_engine(p, key)
    p.write_bytes(b"short")
    with pytest.raises(E.StaleEngineError, match="size"):
        E.validate_engine(p, key)


def test_engine_without_sidecar_or_with_a_broken_one(tmp_path, model_path, key, meta):
    p = E.engine_path(tmp_path, model_path, key)
    p.write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="sidecar"):
        E.validate_engine(p, key)
    E.sidecar_path(p).write_text("{not json", encoding="utf-8")
    with pytest.raises(E.StaleEngineError, match="unreadable"):
        E.validate_engine(p, key)
    assert E.find_engine(tmp_path, model_path, key)[0] is None


def test_missing_engine_names_the_build_command(tmp_path, model_path, key, meta):
    with pytest.raises(E.EngineNotFoundError) as ei:
        E.resolve_engine(model_path, key, tmp_path / "engines")
    msg = str(ei.value)
    assert isinstance(ei.value, FileNotFoundError)
    assert f"maskwatch build-engine --model {model_path} --precision fp16 --out-dir {tmp_path / 'engines'}" in msg
    assert key.engine_name(model_path.stem) in msg
    int8 = dataclasses.replace(key, precision="int8", dla_core=0)
    _fake_build(tmp_path, model_path, key, meta)        # an fp16 engine is there, but int8 on DLA 0 is wanted
    with pytest.raises(E.EngineNotFoundError) as ei:
        E.resolve_engine(model_path, int8, tmp_path)
    msg = str(ei.value)
    assert "--precision int8" in msg and "--dla-core 0" in msg and "--calib-dir" in msg
    assert "Rejected:" in msg and "precision" in msg
    # with a calibration cache beside the engines the command needs no image folder
    (tmp_path / int8.calib_cache_name(model_path.stem)).write_bytes(b"cache")
    with pytest.raises(E.EngineNotFoundError) as ei:
        E.resolve_engine(model_path, int8, tmp_path)
    assert "--calib-dir" not in str(ei.value)


def test_explicit_engine_is_still_validated(tmp_path, model_path, key, meta):
    p = _fake_build(tmp_path, model_path, key, meta)
    assert E.resolve_engine(model_path, key, engine=p)[0] == p
    with pytest.raises(E.StaleEngineError):
        E.resolve_engine(model_path, dataclasses.replace(key, trt_version="10.0.1"), engine=p)


# ------------------------------------------------------------------------------------------- calibration

def test_list_images_is_deterministic_and_spread(images_dir):
    all_files = E.list_images(images_dir)
    assert len(all_files) > 100
    assert [p.name for p in all_files] == sorted(p.name for p in all_files)
    some = E.list_images(images_dir, 10)
    assert len(some) == 10 and some == E.list_images(images_dir, 10)
    assert some[0] == all_files[0] and some[-1] == all_files[-1]
    assert len(set(some)) == 10


def test_list_images_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        E.list_images(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no images"):
        E.list_images(tmp_path)


def test_calibration_batches_equal_the_runtime_preprocessing(images_dir, meta):
    batches = E.CalibrationBatches(images_dir, meta, max_count=4)
    assert len(batches) == 4 and batches.batch_size == 1
    assert batches.shape == (1, 3, meta.input_h, meta.input_w)
    assert batches.nbytes == 4 * 3 * meta.input_h * meta.input_w
    got = list(batches)
    assert len(got) == 4
    for path, x in zip(batches.files, got):
        assert x.shape == (1, 3, meta.input_h, meta.input_w)
        assert x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        want, _ = preprocess(img, meta)                  # exactly what the detector feeds the network
        np.testing.assert_array_equal(x, want)
        assert 0.0 <= x.min() and x.max() <= 1.0         # RGB / 255 for the released model
    # deterministic: a second pass gives the same tensors
    np.testing.assert_array_equal(np.concatenate(got), np.concatenate(list(batches)))


def test_calibration_batches_skip_unreadable_files(tmp_path, images_dir, meta):
    src = E.list_images(images_dir, 2)
    for p in src:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / "0000-broken.jpg").write_bytes(b"not a jpeg")
    batches = E.CalibrationBatches(tmp_path, meta)
    assert len(batches) == 3
    assert len(list(batches)) == 2


def test_read_frames_from_a_video(videos, meta):
    frames = list(E.read_frames(videos["unmasked"], 5))
    assert len(frames) == 5
    names = [n for n, _ in frames]
    assert names[0].endswith("#0") and len(set(names)) == 5
    for _, img in frames:
        assert img.ndim == 3 and img.dtype == np.uint8
    with pytest.raises(ValueError):
        list(E.read_frames(REPO / "README.md", 1))


# ------------------------------------------------------------------------------------------- TensorRT backend

def test_io_api_selection():
    from edge.backends.tensorrt import select_io_api, trt_major
    assert trt_major("8.5.2.2") == 8 and trt_major("10.3.0.26") == 10 and trt_major("x") == 0
    assert select_io_api("8.5.2.2", True, True) == "binding"      # JetPack 5.1: both exist, bindings used
    assert select_io_api("8.5.2.2", True, False) == "binding"
    assert select_io_api("10.3.0", False, True) == "tensor"       # TensorRT 10 removed the binding API
    assert select_io_api("10.3.0", True, True) == "tensor"
    with pytest.raises(RuntimeError, match="neither"):
        select_io_api("9.0", False, False)


def test_engine_and_backend_modules_never_import_tensorrt():
    code = ("import sys, edge.engine, edge.parity, edge.backends.tensorrt, edge.cli, edge.detector; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorrt', 'pycuda')))")
    r = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here: the missing-package error cannot happen")
def test_tensorrt_backend_fails_clearly_without_tensorrt(model_path):
    from edge.backends.tensorrt import BackendUnavailableError, TensorRTBackend
    from edge.detector import load_backend
    for make in (lambda: TensorRTBackend(model_path), lambda: load_backend("tensorrt", model_path),
                 lambda: E.build_engine(model_path, "fp16")):
        with pytest.raises(BackendUnavailableError) as ei:
            make()
        msg = str(ei.value)
        if importlib.util.find_spec("tensorrt") is None:
            assert "'tensorrt'" in msg and "apt-get install python3-libnvinfer" in msg
            assert "--system-site-packages" in msg
        if importlib.util.find_spec("pycuda") is None:
            assert "'pycuda'" in msg and "pip install pycuda" in msg


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_run_with_tensorrt_backend_exits_1_with_the_install_hint(tmp_path, model_path):
    cfg = tmp_path / "trt.yaml"
    cfg.write_text(f"model:\n  path: {model_path}\n  backend: tensorrt\n", encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "edge", "run", "-c", str(cfg), "--source", str(REPO), "--headless",
                        "--max-frames", "1"], cwd=str(REPO), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "python3-libnvinfer" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "edge", "build-engine", "-c", str(cfg), "--out-dir", str(tmp_path)],
                       cwd=str(REPO), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "python3-libnvinfer" in r.stderr and "Traceback" not in r.stderr


def test_config_engine_section_defaults():
    from edge.config import Config, default_engine_dir, parse
    e = Config().model.engine
    assert (e.precision, e.dla_core, e.workspace_mb, e.calib_count) == ("fp16", None, 1024, 300)
    assert e.resolved_dir() == default_engine_dir()
    c = parse("model:\n  backend: tensorrt\n  engine:\n    dir: /var/lib/maskwatch/engines\n    precision: int8\n"
              "    dla_core: 1\n")
    assert c.model.backend == "tensorrt" and c.model.engine.dla_core == 1
    assert str(c.model.engine.resolved_dir()) == "/var/lib/maskwatch/engines"


# ------------------------------------------------------------------------------------------- on a Jetson

@pytest.mark.jetson
@needs_trt
def test_build_and_load_fp16_engine_on_device(tmp_path, model_path, backend):
    """Builds the fp16 engine, loads it twice (second time from the cache), compares one image."""
    from edge.backends.tensorrt import TensorRTBackend
    path = E.build_engine(model_path, "fp16", out_dir=tmp_path)
    assert path.is_file() and E.sidecar_path(path).is_file()
    assert E.build_engine(model_path, "fp16", out_dir=tmp_path) == path          # up to date: reused
    trt_be = TensorRTBackend(model_path, engine_dir=tmp_path, precision="fp16")
    try:
        assert trt_be.meta == backend.meta
        img = cv2.imread(str(E.list_images(IMAGES, 1)[0]))
        x, _ = preprocess(img, backend.meta)
        a, b = backend.infer(x), trt_be.infer(x)
        assert set(a) == set(b)
        for k in a:
            assert a[k].shape == b[k].shape and b[k].dtype == np.float32
            assert np.abs(a[k] - b[k]).max() <= 0.03 * (a[k].max() - a[k].min())
    finally:
        trt_be.close()


@pytest.mark.jetson
@needs_trt
def test_build_int8_engine_writes_and_reuses_the_calibration_cache(tmp_path, model_path):
    path = E.build_engine(model_path, "int8", calib_dir=IMAGES, calib_count=20, out_dir=tmp_path)
    doc = E.read_sidecar(path)
    cache = tmp_path / doc["key"].calib_cache_name(model_path.stem)
    assert cache.is_file() and doc["build"]["calib_cache_reused"] is False
    again = E.build_engine(model_path, "int8", out_dir=tmp_path, force=True)   # no images: the cache is enough
    assert E.read_sidecar(again)["build"]["calib_cache_reused"] is True
