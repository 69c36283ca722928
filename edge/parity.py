"""Parity check: the ONNX model in ONNX Runtime (CPU, the reference) against a second backend.

``maskwatch check-parity`` runs both backends on the same real images (a folder or a video), fed the
*same* pre-processed tensor (:func:`edge.model.preprocess`), and reports

* per raw output (by decoder role, e.g. ``coverage`` and ``bbox``): the largest and the mean absolute
  difference, also as a share of the reference output's range (max - min over the images), so one rule
  fits outputs of any scale;
* detection agreement after the runtime's own post-processing (:func:`edge.model.postprocess` with the
  model's clustering and class thresholds): reference detections at or above their class threshold are
  matched greedily (highest IoU first, class-agnostic) to candidate detections at or above the threshold
  minus a score margin, and the other way round; a pair needs IoU >= 0.5. Reported: matched count,
  recall (reference detections found), precision (candidate detections confirmed), mean IoU of the
  pairs, class agreement of the pairs and the mean score difference.

The score margin keeps a detection scored 0.901 by one backend and 0.899 by the other (threshold 0.9)
from counting as a disagreement; a detection that moves further than the margin does count.

Tolerances (fail, exit 1, when any is exceeded):

    profile  max|d|/range  mean|d|/range  recall  precision  mean IoU  class agreement  score margin
    exact    0.01 %        0.001 %        1.00    1.00       0.99      1.00             0.00
    fp16     3 %           0.3 %          0.95    0.95       0.90      0.98             0.05
    int8     25 %          2.5 %          0.85    0.85       0.80      0.90             0.10

``exact`` is ONNX Runtime against itself (float32; CI and the tool's self-test). ``fp16``: half
precision keeps about 3 significant digits; accumulated through a ResNet-18 the per-element error is
expected at or below about 1 % of an output's range, so 3 % max and 0.3 % mean leave headroom. Measured on
this repository's CI machine with the released model on 3 shared images: rounding only the *input* to
float16 moves the outputs by at most 0.08 % (coverage) and 0.02 % (bbox) of their range (passes fp16,
fails exact), while feeding BGR instead of RGB moves them by 96 % and 42 % and loses 98 % of the
detections (fails every profile). ``int8``: per-tensor entropy calibration can move single cells by a
fifth of the range, so the raw-output limits are loose and the detection agreement carries the
decision. The fp16 and int8 limits are first settings from this reasoning, **not yet measured on a
Xavier NX**: record the first unit's report (``--json``) in docs/engine.md and tighten them.

Plain NumPy (plus the two backends), so the comparison logic is tested in CI with ONNX Runtime on both
sides.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np

from edge.backends.base import Backend
from edge.decoders import box_iou, greedy_iou_match
from edge.model import ModelMeta, apply_thresholds, postprocess, preprocess


@dataclass(frozen=True)
class Tolerance:
    """Limits of one parity profile (see the module docstring's table).

    Attributes:
        name: ``exact``, ``fp16`` or ``int8``.
        max_rel: largest |difference| of any element, as a share of the reference output's range.
        mean_rel: mean |difference| per output, as a share of its range.
        min_recall, min_precision: shares of thresholded detections matched (0-1).
        min_mean_iou: mean IoU of the matched pairs (0-1).
        min_class_agreement: share of matched pairs with the same class (0-1).
        score_margin: candidate detections down to ``threshold - score_margin`` may confirm a match.
    """

    name: str
    max_rel: float
    mean_rel: float
    min_recall: float
    min_precision: float
    min_mean_iou: float
    min_class_agreement: float
    score_margin: float


TOLERANCES: Dict[str, Tolerance] = {
    "exact": Tolerance("exact", 1e-4, 1e-5, 1.0, 1.0, 0.99, 1.0, 0.0),
    "fp16": Tolerance("fp16", 0.03, 0.003, 0.95, 0.95, 0.90, 0.98, 0.05),
    "int8": Tolerance("int8", 0.25, 0.025, 0.85, 0.85, 0.80, 0.90, 0.10),
}


# ------------------------------------------------------------------------------------------- matching

def greedy_match(a: np.ndarray, b: np.ndarray, iou_threshold: float = 0.5) -> List[Tuple[int, int, float]]:
    """Greedy one-to-one matching of (N, 4) and (M, 4) xyxy boxes by IoU, highest IoU first.

    Returns:
        ``[(i, j, iou), ...]`` with each ``i`` (row of ``a``) and ``j`` (row of ``b``) used at most once and
        ``iou >= iou_threshold``, in decreasing IoU order (ties: lower ``i``, then lower ``j`` first).
    """
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    if not len(a) or not len(b):
        return []
    iou = box_iou(a, b)
    return [(i, j, float(iou[i, j])) for i, j in greedy_iou_match(iou, iou_threshold)]


@dataclass
class Dets:
    """Post-processed detections of one image: (K, 4) float32 xyxy px, (K,) float32 scores, (K,) int64 classes."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


@dataclass
class Agreement:
    """Detection agreement summed over images (see :func:`compare_detections`)."""

    ref_count: int = 0        # reference detections at or above their class threshold
    cand_count: int = 0       # candidate detections at or above their class threshold
    matched: int = 0          # reference detections matched (recall side)
    cand_confirmed: int = 0   # candidate detections matched (precision side)
    iou_sum: float = 0.0
    same_class: int = 0
    score_diff_sum: float = 0.0

    def __iadd__(self, other: "Agreement") -> "Agreement":
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    @property
    def missed(self) -> int:
        return self.ref_count - self.matched

    @property
    def extra(self) -> int:
        return self.cand_count - self.cand_confirmed

    @property
    def recall(self) -> float:
        return self.matched / self.ref_count if self.ref_count else 1.0

    @property
    def precision(self) -> float:
        return self.cand_confirmed / self.cand_count if self.cand_count else 1.0

    @property
    def mean_iou(self) -> float:
        return self.iou_sum / self.matched if self.matched else 1.0

    @property
    def class_agreement(self) -> float:
        return self.same_class / self.matched if self.matched else 1.0

    @property
    def mean_score_diff(self) -> float:
        return self.score_diff_sum / self.matched if self.matched else 0.0

    def as_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(missed=self.missed, extra=self.extra, recall=self.recall, precision=self.precision,
                 mean_iou=self.mean_iou, class_agreement=self.class_agreement, mean_score_diff=self.mean_score_diff)
        return d


def _lowered(meta: ModelMeta, margin: float) -> ModelMeta:
    """``meta`` with every class threshold lowered by ``margin`` (the runtime's threshold rule otherwise)."""
    base = {c: meta.thresholds.get(c, meta.cluster.get("conf_threshold", 0.1)) for c in meta.classes}
    return dataclasses.replace(meta, thresholds={c: max(0.0, t - margin) for c, t in base.items()})


def compare_detections(ref: Dets, cand: Dets, meta: ModelMeta, margin: float = 0.0,
                       iou_threshold: float = 0.5) -> Agreement:
    """Agreement of two backends' detections on one image.

    Recall side: reference detections at or above their class threshold (``meta.thresholds``, the
    runtime's rule) against candidate detections at or above ``threshold - margin``; precision side the
    other way round. Matching is :func:`greedy_match` (class-agnostic, IoU >= ``iou_threshold``); IoU,
    class agreement and |score difference| are taken over the recall-side pairs.
    """
    loose_meta = _lowered(meta, margin)

    def split(d: Dets) -> Tuple[np.ndarray, np.ndarray]:
        if not len(d.scores):
            return np.zeros(0, bool), np.zeros(0, bool)
        return apply_thresholds(d.scores, d.classes, meta), apply_thresholds(d.scores, d.classes, loose_meta)

    r_strong, r_loose = split(ref)
    c_strong, c_loose = split(cand)
    ri, ci = np.flatnonzero(r_strong), np.flatnonzero(c_loose)
    pairs = greedy_match(ref.boxes[ri], cand.boxes[ci], iou_threshold)
    back = greedy_match(cand.boxes[np.flatnonzero(c_strong)], ref.boxes[np.flatnonzero(r_loose)], iou_threshold)
    ag = Agreement(ref_count=int(r_strong.sum()), cand_count=int(c_strong.sum()), matched=len(pairs),
                   cand_confirmed=len(back))
    for i, j, iou in pairs:
        a, b = ri[i], ci[j]
        ag.iou_sum += iou
        ag.same_class += int(ref.classes[a] == cand.classes[b])
        ag.score_diff_sum += abs(float(ref.scores[a]) - float(cand.scores[b]))
    return ag


# ------------------------------------------------------------------------------------------- raw outputs

@dataclass
class OutputStats:
    """|reference - candidate| of one output role over all images."""

    max_abs: float = 0.0
    abs_sum: float = 0.0
    count: int = 0
    ref_min: float = float("inf")
    ref_max: float = float("-inf")

    def add(self, ref: np.ndarray, cand: np.ndarray) -> None:
        d = np.abs(ref.astype(np.float64) - cand.astype(np.float64))
        self.max_abs = max(self.max_abs, float(d.max()) if d.size else 0.0)
        self.abs_sum += float(d.sum())
        self.count += int(d.size)
        if ref.size:
            self.ref_min = min(self.ref_min, float(ref.min()))
            self.ref_max = max(self.ref_max, float(ref.max()))

    @property
    def mean_abs(self) -> float:
        return self.abs_sum / self.count if self.count else 0.0

    @property
    def range(self) -> float:
        """max - min of the reference output (1e-12 at least, so a constant output still divides)."""
        return max(self.ref_max - self.ref_min, 1e-12) if self.count else 1e-12

    def as_dict(self) -> Dict[str, float]:
        return {"max_abs": self.max_abs, "mean_abs": self.mean_abs, "ref_range": self.range,
                "max_rel": self.max_abs / self.range, "mean_rel": self.mean_abs / self.range}


def output_diffs(ref: Dict[str, np.ndarray], cand: Dict[str, np.ndarray], stats: Dict[str, OutputStats]) -> None:
    """Add one image's raw outputs (role -> float32 array) to ``stats`` (role -> :class:`OutputStats`).

    Raises:
        ValueError: the backends return different roles or shapes.
    """
    if set(ref) != set(cand):
        raise ValueError(f"outputs differ: reference {sorted(ref)}, candidate {sorted(cand)}")
    for role in sorted(ref):
        r, c = np.asarray(ref[role]), np.asarray(cand[role])
        if r.shape != c.shape:
            raise ValueError(f"output {role!r}: reference shape {r.shape}, candidate {c.shape}")
        stats.setdefault(role, OutputStats()).add(r, c)


# ------------------------------------------------------------------------------------------- the check

@dataclass
class ParityReport:
    """Everything :func:`run_parity` measured; :meth:`failures` applies a :class:`Tolerance`."""

    images: int = 0
    outputs: Dict[str, OutputStats] = field(default_factory=dict)
    agreement: Agreement = field(default_factory=Agreement)
    iou_threshold: float = 0.5
    score_margin: float = 0.0
    reference_ms: List[float] = field(default_factory=list)
    candidate_ms: List[float] = field(default_factory=list)

    def failures(self, tol: Tolerance) -> List[str]:
        """One line per exceeded limit (empty: within tolerance). No image at all is a failure."""
        out = []
        if not self.images:
            out.append("no image was compared")
        for role, s in sorted(self.outputs.items()):
            if s.max_abs / s.range > tol.max_rel:
                out.append(f"{role}: max |d| {s.max_abs:.4g} = {100 * s.max_abs / s.range:.3g} % of the range "
                           f"> {100 * tol.max_rel:.3g} %")
            if s.mean_abs / s.range > tol.mean_rel:
                out.append(f"{role}: mean |d| {s.mean_abs:.4g} = {100 * s.mean_abs / s.range:.3g} % of the range "
                           f"> {100 * tol.mean_rel:.3g} %")
        a = self.agreement
        for name, value, limit in (("recall", a.recall, tol.min_recall), ("precision", a.precision, tol.min_precision),
                                   ("mean IoU", a.mean_iou, tol.min_mean_iou),
                                   ("class agreement", a.class_agreement, tol.min_class_agreement)):
            if value < limit:
                out.append(f"detections: {name} {value:.3f} < {limit}")
        return out

    def as_dict(self, tol: Optional[Tolerance] = None) -> Dict[str, Any]:
        d: Dict[str, Any] = {
            "images": self.images, "iou_threshold": self.iou_threshold, "score_margin": self.score_margin,
            "outputs": {k: v.as_dict() for k, v in sorted(self.outputs.items())},
            "detections": self.agreement.as_dict(),
            "reference_ms_median": float(np.median(self.reference_ms)) if self.reference_ms else None,
            "candidate_ms_median": float(np.median(self.candidate_ms)) if self.candidate_ms else None,
        }
        if tol is not None:
            d["tolerance"] = dataclasses.asdict(tol)
            d["failures"] = self.failures(tol)
            d["passed"] = not d["failures"]
        return d


def _dets(outputs: Dict[str, np.ndarray], meta: ModelMeta, lb: Any, wh: Tuple[int, int]) -> Dets:
    boxes, scores, classes = postprocess(outputs, meta, lb, wh)
    return Dets(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                np.asarray(classes, np.int64))


def run_parity(reference: Backend, candidate: Backend, frames: Iterable[Tuple[str, np.ndarray]],
               tol: Tolerance, iou_threshold: float = 0.5, meta: Optional[ModelMeta] = None) -> ParityReport:
    """Run both backends on every frame and collect a :class:`ParityReport`.

    Args:
        reference: the ONNX Runtime backend (its ``meta`` drives pre- and post-processing).
        candidate: the backend under test (same model).
        frames: ``(name, (H, W, 3) uint8 BGR image)`` pairs, e.g. :func:`edge.engine.read_frames`.
        tol: supplies the score margin of the detection matching.
        iou_threshold: IoU a detection pair needs (0-1).
        meta: override the reference's metadata (default ``reference.meta``).

    Raises:
        ValueError: the two backends return different output roles or shapes.
    """
    meta = meta or reference.meta
    rep = ParityReport(iou_threshold=iou_threshold, score_margin=tol.score_margin)
    for _name, img in frames:
        x, lb = preprocess(img, meta)
        t0 = time.perf_counter()
        r = reference.infer(x)
        t1 = time.perf_counter()
        c = candidate.infer(x)
        t2 = time.perf_counter()
        rep.reference_ms.append(1000 * (t1 - t0))
        rep.candidate_ms.append(1000 * (t2 - t1))
        output_diffs(r, c, rep.outputs)
        rep.images += 1
        if meta.role == "classifier":  # a face-crop image: the probabilities above are the whole output
            continue
        wh = (img.shape[1], img.shape[0])
        rep.agreement += compare_detections(_dets(r, meta, lb, wh), _dets(c, meta, lb, wh), meta, tol.score_margin,
                                            iou_threshold)
    return rep


def format_report(rep: ParityReport, tol: Tolerance, title: str = "") -> str:
    """A human-readable table of ``rep`` and the verdict against ``tol`` (last line ``PASS`` or ``FAIL ...``)."""
    lines = [title] if title else []
    lines.append(f"{'output':<12}{'max |d|':>12}{'mean |d|':>12}{'ref range':>12}{'max/range':>12}"
                 f"{'mean/range':>12}   limits ({tol.name})")
    for role, s in sorted(rep.outputs.items()):
        lines.append(f"{role:<12}{s.max_abs:>12.4g}{s.mean_abs:>12.4g}{s.range:>12.4g}"
                     f"{100 * s.max_abs / s.range:>11.3g}%{100 * s.mean_abs / s.range:>11.3g}%"
                     f"   {100 * tol.max_rel:.3g}% / {100 * tol.mean_rel:.3g}%")
    a = rep.agreement
    lines.append(f"detections (IoU >= {rep.iou_threshold}, score margin {rep.score_margin}): reference {a.ref_count}, "
                 f"candidate {a.cand_count}, matched {a.matched} (missed {a.missed}, extra {a.extra})")
    lines.append(f"  recall {a.recall:.3f} (>= {tol.min_recall}), precision {a.precision:.3f} "
                 f"(>= {tol.min_precision}), mean IoU {a.mean_iou:.3f} (>= {tol.min_mean_iou}), class agreement "
                 f"{a.class_agreement:.3f} (>= {tol.min_class_agreement}), mean |score d| {a.mean_score_diff:.4f}")
    if rep.reference_ms:
        lines.append(f"latency median: reference {np.median(rep.reference_ms):.1f} ms, candidate "
                     f"{np.median(rep.candidate_ms):.1f} ms ({rep.images} images)")
    fails = rep.failures(tol)
    lines.append("PASS" if not fails else "FAIL: " + "; ".join(fails))
    return "\n".join(lines)


def report_json(rep: ParityReport, tol: Tolerance, **extra: Any) -> str:
    d = rep.as_dict(tol)
    d.update(extra)
    return json.dumps(d, indent=2, sort_keys=True)


def cli_check_parity(args: Any) -> int:
    """``maskwatch check-parity``: ONNX Runtime (CPU) against ``--backend`` on real images.

    Exit codes: 0 within tolerance, 1 beyond tolerance, 2 invalid config or arguments, 3 could not run
    (model, images, engine, TensorRT or pycuda missing; the reason and the fix are printed).
    """
    import sys
    from pathlib import Path

    from edge.backends.onnxruntime import OnnxRuntimeBackend
    from edge.backends.tensorrt import BackendUnavailableError
    from edge.config import load
    from edge.engine import EngineError, read_frames

    cfg = load(args.config)
    e = cfg.model.engine
    model = Path(args.model).expanduser() if args.model else cfg.model.resolved_path()
    precision = args.precision or e.precision
    tol_name = args.tolerance or (precision if args.backend == "tensorrt" else "exact")
    tol = TOLERANCES[tol_name]
    if not 0 < args.iou <= 1 or args.count < 1:
        print("check-parity: --iou must be in (0, 1] and --count >= 1", file=sys.stderr)
        return 2
    ref = cand = None
    try:
        if not model.is_file():
            raise FileNotFoundError(f"no model file at {model}")
        frames = list(read_frames(args.images, args.count))
        if not frames:
            raise FileNotFoundError(f"no readable image in {args.images}")
        if args.backend == "tensorrt":  # first: a missing TensorRT or engine fails before ONNX Runtime loads
            from edge.backends.tensorrt import TensorRTBackend
            dla = args.dla_core if args.dla_core is not None else e.dla_core
            cand = TensorRTBackend(model, engine_dir=Path(args.engine_dir) if args.engine_dir else e.resolved_dir(),
                                   precision=precision, dla_core=dla, engine=args.engine)
            what = f"tensorrt {precision} ({cand.engine_file.name})"
        else:
            cand = OnnxRuntimeBackend(model, threads=args.threads or None)
            what = "onnxruntime (CPU, a second session)"
        ref = OnnxRuntimeBackend(model, threads=args.threads or None)
        title = (f"check-parity: {model} on {len(frames)} images from {args.images}: reference onnxruntime (CPU) vs "
                 f"{what}; tolerance {tol.name}")
        rep = run_parity(ref, cand, frames, tol, args.iou)
    except (FileNotFoundError, EngineError, BackendUnavailableError, ValueError, RuntimeError) as err:
        print(f"check-parity: cannot run: {err}", file=sys.stderr)
        return 3
    finally:
        for b in (cand, ref):
            if b is not None:
                b.close()
    print(format_report(rep, tol, title), flush=True)
    if args.json:
        Path(args.json).write_text(report_json(rep, tol, model=str(model), image_source=str(args.images),
                                               backend=args.backend, precision=precision) + "\n", encoding="utf-8")
    return 0 if not rep.failures(tol) else 1
