"""The parity check's comparison logic, on real images with ONNX Runtime on both sides.

Real behaviour, no stand-in TensorRT: the model against itself must agree exactly; the model fed its
input rounded to float16 (what an FP16 input binding does) must pass the fp16 tolerances and fail the
exact ones; the model fed BGR instead of RGB (a real pre-processing bug) must fail every profile.
The TensorRT comparison itself is marked ``jetson``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from edge import parity as P
from edge.engine import read_frames
from edge.backends.onnxruntime import OnnxRuntimeBackend
from edge.model import ModelMeta
from edge_helpers import REPO

IMAGES = (REPO / ".." / "shared" / "data" / "face-mask-andrewmvd" / "images").resolve()
HAS_TRT = importlib.util.find_spec("tensorrt") is not None and importlib.util.find_spec("pycuda") is not None
N_IMAGES = 3


class Memo:
    """The shared ONNX Runtime backend with its outputs remembered per input (the reference runs once per image)."""

    def __init__(self, backend):
        self.backend, self.meta, self.cache = backend, backend.meta, {}

    def infer(self, x):
        k = hashlib.sha1(x.tobytes()).hexdigest()
        if k not in self.cache:
            self.cache[k] = self.backend.infer(x)
        return self.cache[k]


class HalfInput:
    """The same model fed its input rounded to float16."""

    def __init__(self, backend):
        self.backend, self.meta = backend, backend.meta

    def infer(self, x):
        return self.backend.infer(x.astype(np.float16).astype(np.float32))


class SwappedChannels:
    """The same model fed BGR instead of RGB: a real pre-processing mistake."""

    def __init__(self, backend):
        self.backend, self.meta = backend, backend.meta

    def infer(self, x):
        return self.backend.infer(np.ascontiguousarray(x[:, ::-1]))


@pytest.fixture(scope="module")
def frames():
    if not IMAGES.is_dir():
        pytest.fail(f"shared images missing at {IMAGES}")
    out = list(read_frames(IMAGES, N_IMAGES))
    assert len(out) == N_IMAGES
    return out


@pytest.fixture(scope="module")
def reference(backend):
    return Memo(backend)


# ------------------------------------------------------------------------------------------- plain NumPy

def test_greedy_match_takes_the_best_pairs_first():
    a = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [100, 100, 110, 110]], np.float32)
    b = np.array([[21, 0, 31, 10], [0, 0, 10, 10], [1, 0, 11, 10], [200, 200, 210, 210]], np.float32)
    pairs = P.greedy_match(a, b, 0.5)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1), (1, 0)]          # exact match first; b[2] left over
    assert pairs[0][2] == pytest.approx(1.0) and pairs[1][2] == pytest.approx(9 * 10 / (11 * 10))
    assert P.greedy_match(a, b, 0.95) == [(0, 1, pytest.approx(1.0))]
    assert P.greedy_match(a[:0], b) == [] and P.greedy_match(a, b[:0]) == []


def test_greedy_match_is_one_to_one():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10]], np.float32)
    assert len(P.greedy_match(a, b)) == 1 and len(P.greedy_match(b, a)) == 1


def _meta():
    return ModelMeta(thresholds={"mask": 0.5, "no_mask": 0.5, "mask_incorrect": 0.5})


def test_compare_detections_counts_and_margin():
    box = np.array([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    ref = P.Dets(box, np.array([0.9, 0.52], np.float32), np.array([1, 0]))
    # same boxes shifted by 1 px, second one just under the threshold, first one of another class
    cand = P.Dets(box + [1, 0, 1, 0], np.array([0.88, 0.48], np.float32), np.array([0, 0]))
    strict = P.compare_detections(ref, cand, _meta(), margin=0.0)
    assert (strict.ref_count, strict.cand_count, strict.matched, strict.cand_confirmed) == (2, 1, 1, 1)
    assert strict.missed == 1 and strict.extra == 0 and strict.recall == 0.5
    loose = P.compare_detections(ref, cand, _meta(), margin=0.05)
    assert loose.matched == 2 and loose.recall == 1.0 and loose.precision == 1.0
    assert loose.mean_iou == pytest.approx(9 / 11) and loose.class_agreement == 0.5
    assert loose.mean_score_diff == pytest.approx((0.02 + 0.04) / 2, abs=1e-6)
    total = P.Agreement()
    total += strict
    total += loose
    assert total.ref_count == 4 and total.matched == 3


def test_empty_images_agree():
    empty = P.Dets(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    ag = P.compare_detections(empty, empty, _meta())
    assert ag.recall == ag.precision == ag.mean_iou == ag.class_agreement == 1.0


def test_output_diffs_rejects_mismatched_outputs():
    stats = {}
    with pytest.raises(ValueError, match="outputs differ"):
        P.output_diffs({"coverage": np.zeros(3)}, {"bbox": np.zeros(3)}, stats)
    with pytest.raises(ValueError, match="shape"):
        P.output_diffs({"coverage": np.zeros(3)}, {"coverage": np.zeros(4)}, stats)
    P.output_diffs({"c": np.array([0.0, 1.0, 2.0])}, {"c": np.array([0.0, 1.5, 2.0])}, stats)
    s = stats["c"]
    assert s.max_abs == 0.5 and s.mean_abs == pytest.approx(0.5 / 3) and s.range == 2.0


def test_tolerance_profiles_are_ordered():
    ex, f16, i8 = P.TOLERANCES["exact"], P.TOLERANCES["fp16"], P.TOLERANCES["int8"]
    assert ex.max_rel < f16.max_rel < i8.max_rel and ex.mean_rel < f16.mean_rel < i8.mean_rel
    assert ex.min_recall >= f16.min_recall >= i8.min_recall
    assert ex.score_margin <= f16.score_margin <= i8.score_margin


def test_no_images_is_a_failure():
    assert P.ParityReport().failures(P.TOLERANCES["int8"]) == ["no image was compared"]


# ------------------------------------------------------------------------------------------- real images

def test_model_against_itself_is_exact(reference, backend, frames):
    rep = P.run_parity(reference, backend, frames, P.TOLERANCES["exact"])
    assert rep.images == N_IMAGES
    assert set(rep.outputs) == set(backend.meta.outputs)
    for s in rep.outputs.values():
        assert s.max_abs <= 1e-6 and s.range > 0
    a = rep.agreement
    assert a.ref_count > 0 and a.matched == a.ref_count == a.cand_count
    assert a.mean_iou == pytest.approx(1.0) and a.class_agreement == 1.0
    for name in P.TOLERANCES:
        assert rep.failures(P.TOLERANCES[name]) == []
    text = P.format_report(rep, P.TOLERANCES["exact"])
    assert text.splitlines()[-1] == "PASS"
    d = json.loads(P.report_json(rep, P.TOLERANCES["exact"]))
    assert d["passed"] is True and d["detections"]["recall"] == 1.0


def test_float16_input_passes_fp16_and_fails_exact(reference, backend, frames):
    rep = P.run_parity(reference, HalfInput(backend), frames, P.TOLERANCES["fp16"])
    assert any(s.max_abs > 0 for s in rep.outputs.values())
    assert rep.failures(P.TOLERANCES["fp16"]) == []
    assert rep.failures(P.TOLERANCES["int8"]) == []
    exact = rep.failures(P.TOLERANCES["exact"])
    assert exact and any("max |d|" in f for f in exact)


def test_swapped_channels_fail_every_profile(reference, backend, frames):
    for name in ("int8", "fp16"):
        rep = P.run_parity(reference, SwappedChannels(backend), frames, P.TOLERANCES[name])
        fails = rep.failures(P.TOLERANCES[name])
        assert any(": max |d|" in f for f in fails), fails  # the raw outputs catch the swap
        # (the decoded detections need not: ultralight_mask 1.2.0's face score, 1 - p_background, and its class
        # priors give the same boxes and classes on these frames with the channels swapped)
        assert P.format_report(rep, P.TOLERANCES[name]).splitlines()[-1].startswith("FAIL")


def test_check_parity_cli(tmp_path, model_path):
    out = tmp_path / "parity.json"
    cmd = [sys.executable, "-m", "edge", "check-parity", "--model", str(model_path), "--images", str(IMAGES),
           "--count", "2", "--backend", "onnxruntime", "--json", str(out)]
    r = subprocess.run(cmd, cwd=str(REPO), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert all(name in r.stdout for name in OnnxRuntimeBackend(model_path).meta.outputs) and "recall 1.000" in r.stdout and r.stdout.strip().endswith("PASS")
    d = json.loads(out.read_text(encoding="utf-8"))
    assert d["passed"] is True and d["images"] == 2 and d["tolerance"]["name"] == "exact"
    r = subprocess.run(cmd[:-2] + ["--iou", "1.5"], cwd=str(REPO), capture_output=True, text=True, timeout=600)
    assert r.returncode == 2
    r = subprocess.run(cmd[:-4] + ["--images", str(tmp_path / "none")], cwd=str(REPO), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 3 and "cannot run" in r.stderr


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_check_parity_without_tensorrt_says_how_to_install(tmp_path, model_path):
    r = subprocess.run([sys.executable, "-m", "edge", "check-parity", "--model", str(model_path), "--images",
                        str(IMAGES), "--count", "1", "--engine-dir", str(tmp_path)],
                       cwd=str(REPO), capture_output=True, text=True, timeout=600)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "python3-libnvinfer" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.jetson
@pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT and pycuda (a Jetson)")
def test_tensorrt_fp16_parity_on_device(tmp_path, model_path):
    from edge.engine import build_engine
    build_engine(model_path, "fp16", out_dir=tmp_path)
    r = subprocess.run([sys.executable, "-m", "edge", "check-parity", "--model", str(model_path), "--images",
                        str(IMAGES), "--count", "50", "--engine-dir", str(tmp_path), "--precision", "fp16"],
                       cwd=str(REPO), capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
