"""Run an ONNX model over a folder of images or a video; write COCO-style detections.

CLI (ONNX Runtime + the NumPy decoder; no torch)::

    python -m models.evaluation.predict --model models/released/detectnet_v2_r18/model.onnx \
        --images ../shared/data/videos/unmasked-man-outdoor-720p.mp4 --out detections.json --draw out/

Output: a JSON list of ``{"file_name", "bbox": [x, y, w, h] (original px), "score",
"category": "mask" | "no_mask" | "mask_incorrect"}``; video detections also carry
``"frame"`` (0-based). Detections are kept at the per-class thresholds stored in the
model (``--conf`` overrides). ``--draw`` writes annotated images, or an annotated
``.mp4`` for a video input.

The cascade (``--classifier CLS.onnx``): each kept face is classified on its crop from the full-resolution
image by :func:`edge.classifier.classify_detections`, the function the evaluation uses and whose vote rule
(:func:`edge.classifier.combine`) the runtime applies per track; ``category`` is the decided class and
``probs`` the combined probabilities. Without ``--model`` the appliance's defaults are used, detector and
classifier, exactly as ``maskwatch run`` with no config loads them (``model.path`` and
``model.classifier`` of :class:`edge.config.Config`); with ``--model`` but no ``--classifier`` the
detector's classes are used.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np

from edge.model import ModelMeta, apply_thresholds, postprocess, preprocess

log = logging.getLogger("models.evaluation.predict")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm"}
#: BGR colours: mask green, no_mask red, mask_incorrect orange
COLOURS = {"mask": (80, 200, 60), "no_mask": (40, 40, 230), "mask_incorrect": (0, 160, 255)}


def frames(path: Path) -> Iterator[Tuple[str, Optional[int], np.ndarray]]:
    """Yield ``(file_name, frame index or None, BGR image)`` from an image folder, one image or a video."""
    if path.is_dir():
        for p in sorted(q for q in path.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES):
            img = cv2.imread(str(p))
            if img is None:
                log.warning("skipping unreadable image %s", p)
                continue
            yield p.name, None, img
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise FileNotFoundError(f"cannot open video {path}")
        i = 0
        while True:
            ok, img = cap.read()
            if not ok:
                break
            yield path.name, i, img
            i += 1
        cap.release()
    else:
        img = cv2.imread(str(path))
        if img is None:
            raise FileNotFoundError(f"cannot read image {path}")
        yield path.name, None, img


def draw(img: np.ndarray, dets: List[Dict]) -> np.ndarray:
    """Draw COCO-style ``dets`` on a copy of ``img``."""
    out = img.copy()
    t = max(1, round(min(img.shape[:2]) / 300))
    for d in dets:
        x, y, w, h = (int(round(v)) for v in d["bbox"])
        c = COLOURS.get(d["category"], (255, 255, 255))
        cv2.rectangle(out, (x, y), (x + w, y + h), c, t)
        cv2.putText(out, f"{d['category']} {d['score']:.2f}", (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * t, c, t, cv2.LINE_AA)
    return out


def predict(model: Path, source: Path, conf: Optional[float] = None, draw_dir: Optional[Path] = None,
            classifier: Optional[Path] = None) -> List[Dict]:
    """Run ``model`` (and the ``classifier`` cascade when given) over ``source``; returns the detection list
    (see module doc)."""
    from edge.backends.onnxruntime import OnnxRuntimeBackend
    from edge.classifier import Classifier, classify_detections, decide
    from edge.config import Config

    ccfg = Config().classifier
    be = OnnxRuntimeBackend(model)
    meta: ModelMeta = be.meta
    cls = Classifier(classifier) if classifier else None
    results: List[Dict] = []
    writer = None
    if draw_dir:
        draw_dir.mkdir(parents=True, exist_ok=True)
    for name, idx, img in frames(source):
        x, lb = preprocess(img, meta)
        boxes, scores, classes = postprocess(be.infer(x), meta, lb, (img.shape[1], img.shape[0]))
        keep = apply_thresholds(scores, classes, meta, conf)
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        probs = classify_detections(cls, img, boxes, scores, classes, len(meta.classes), ccfg.min_crop_px, ccfg.weight)
        decided = decide(probs, meta.classes, cls.meta.thresholds if cls else None) if len(probs) else classes
        dets = []
        for b, s, c, p in zip(boxes, scores, decided, probs):
            d = {"file_name": name, "bbox": [round(float(b[0]), 1), round(float(b[1]), 1), round(float(b[2] - b[0]), 1),
                                             round(float(b[3] - b[1]), 1)], "score": round(float(s), 4),
                 "category": meta.classes[int(c)]}
            if cls is not None:
                d["probs"] = [round(float(v), 4) for v in p]
            if idx is not None:
                d["frame"] = idx
            dets.append(d)
        results.extend(dets)
        if draw_dir:
            vis = draw(img, dets)
            if idx is None:
                cv2.imwrite(str(draw_dir / name), vis)
            else:
                if writer is None:
                    fps = cv2.VideoCapture(str(source)).get(cv2.CAP_PROP_FPS) or 25.0
                    writer = cv2.VideoWriter(str(draw_dir / (Path(name).stem + "_annotated.mp4")),
                                             cv2.VideoWriter_fourcc(*"mp4v"), fps, (img.shape[1], img.shape[0]))
                writer.write(vis)
    if writer is not None:
        writer.release()
    return results


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="detector ONNX file (default: the appliance's default detector and "
                    "classifier, as `maskwatch run` with no config)")
    ap.add_argument("--classifier", type=Path, help="secondary classifier ONNX (role: classifier): the cascade")
    ap.add_argument("--images", type=Path, required=True, help="image folder, image file or video file")
    ap.add_argument("--out", type=Path, required=True, help="detections JSON (COCO results style)")
    ap.add_argument("--conf", type=float, help="score threshold for every class (default: the model's per-class thresholds)")
    ap.add_argument("--draw", type=Path, help="folder for annotated images / video")
    a = ap.parse_args(argv)
    if a.model is None:
        from edge.config import Config
        mc = Config().model
        a.model, a.classifier = mc.resolved_path(), a.classifier or mc.resolved_classifier()
    res = predict(a.model, a.images, a.conf, a.draw, a.classifier)
    a.out.write_text(json.dumps(res, indent=1))
    by = {}
    for d in res:
        by[d["category"]] = by.get(d["category"], 0) + 1
    log.info("%d detections %s -> %s", len(res), by, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
