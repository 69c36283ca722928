"""The secondary mask classifier: face crops from the full-resolution frame, classified per track.

The DeepStream primary -> secondary pattern: the detector (primary) finds faces in the frame shrunk to
its input size; the classifier (secondary) decides the class on each face's crop taken from the
full-resolution frame, once when a track is confirmed and again every ``interval_frames`` frames (or
sooner when the face has grown), all of a frame's crops in one batch.

One module, used by the runtime (:class:`edge.pipeline.Pipeline`), by ``models.evaluation.predict`` and
``models.evaluation.evaluate`` (the same cascade on photos, :func:`classify_detections`) and by training
(``models.train.classifier`` builds its crops with :func:`crop_faces`), so the crop geometry cannot drift.
NumPy and OpenCV only (Python 3.8, no torch).

Crop geometry (:func:`crop_square`): the face box's longer side ``L``, plus ``margin * L`` on every
side, as a square centred on the box; parts outside the frame are filled with grey
(:data:`PAD_VALUE`), so a box at the frame corner still gives a full, undistorted crop (the face off
centre, letterboxed by the padding); the square is resized to the network input (area interpolation
when shrinking, bilinear when enlarging). A model may also carry ``detail_px`` (:func:`cap_detail`): the
crop is reduced to that side and enlarged back, chosen on the validation split because the training
faces are small (median 22 px) and large sharp faces were classified worse.
"""
from __future__ import annotations

import collections
from pathlib import Path
from typing import Deque, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

#: grey that fills the parts of a crop outside the frame (0 after ``(x - 128) / 128``)
PAD_VALUE = 128


def crop_square(box: Sequence[float], margin: float) -> Tuple[float, float, float, float]:
    """The square crop region of a face box.

    Args:
        box: (4,) xyxy face box in frame px.
        margin: added on every side, as a fraction of the box's longer side (0.2: the square is 1.4x it).

    Returns:
        ``(x0, y0, x1, y1)`` float px, a square centred on the box; it may extend past the frame.
    """
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    side = max(x2 - x1, y2 - y1, 1.0) * (1.0 + 2.0 * margin)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0


def crop_region(image: np.ndarray, region: Sequence[float], size: int) -> np.ndarray:
    """Cut ``region`` (x0, y0, x1, y1 px, may exceed the frame) out of ``image`` as a (size, size, 3) crop.

    Pixels outside the frame are :data:`PAD_VALUE`; a region entirely outside gives a grey crop.
    The region is rounded outwards to whole pixels, so the scale is the same along both axes.
    """
    h, w = image.shape[:2]
    x0, y0 = int(np.floor(region[0])), int(np.floor(region[1]))
    side = max(1, int(np.ceil(max(region[2] - region[0], region[3] - region[1]))))
    x1, y1 = x0 + side, y0 + side
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if cx1 <= cx0 or cy1 <= cy0:
        return np.full((size, size, 3), PAD_VALUE, np.uint8)
    patch = image[cy0:cy1, cx0:cx1]
    if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
        patch = cv2.copyMakeBorder(patch, cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1, cv2.BORDER_CONSTANT,
                                   value=(PAD_VALUE, PAD_VALUE, PAD_VALUE))
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interp)


def crop_faces(image: np.ndarray, boxes: np.ndarray, size: int, margin: float) -> np.ndarray:
    """Square face crops (see the module docstring) of every box.

    Args:
        image: (H, W, 3) uint8 frame (any channel order; kept).
        boxes: (N, 4) xyxy face boxes in frame px.
        size: crop side in px (the classifier's input size).
        margin: see :func:`crop_square`.

    Returns:
        (N, size, size, 3) uint8.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    out = np.empty((len(boxes), size, size, 3), np.uint8)
    for i, b in enumerate(boxes):
        out[i] = crop_region(image, crop_square(b, margin), size)
    return out


def cap_detail(crops: np.ndarray, px: int) -> np.ndarray:
    """(N, S, S, 3) uint8 crops reduced to ``px`` x ``px`` (area) and enlarged back to S (bilinear);
    ``px`` 0 or >= S returns ``crops`` unchanged. The classifier's ``detail_px`` (see :class:`ModelMeta`)."""
    if not px or not len(crops) or px >= crops.shape[1]:
        return crops
    s = crops.shape[1]
    return np.stack([cv2.resize(cv2.resize(c, (px, px), interpolation=cv2.INTER_AREA), (s, s),
                                interpolation=cv2.INTER_LINEAR) for c in crops])


def crops_to_tensor(crops: np.ndarray, color: str = "RGB", mean: Sequence[float] = (128.0, 128.0, 128.0),
                    std: Sequence[float] = (128.0, 128.0, 128.0)) -> np.ndarray:
    """(N, S, S, 3) uint8 BGR crops -> (N, 3, S, S) float32 ``(px - mean) / std`` in ``color`` order."""
    x = crops[..., ::-1] if color == "RGB" else crops
    x = (x.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits (float32)."""
    z = np.asarray(logits, np.float32)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def decide(probs: np.ndarray, classes: Sequence[str], thresholds: Optional[Dict[str, float]] = None) -> np.ndarray:
    """(N, C) class probabilities -> (N,) int64 decided class ids.

    The rule: ``mask_incorrect`` when its probability reaches ``thresholds["mask_incorrect"]`` (a value
    the model may carry in its metadata), otherwise the most probable class; without that threshold,
    plain argmax.
    """
    probs = np.asarray(probs, np.float32).reshape(-1, len(classes))
    pred = probs.argmax(axis=1).astype(np.int64)
    t = (thresholds or {}).get("mask_incorrect")
    if t is not None and "mask_incorrect" in classes:
        k = list(classes).index("mask_incorrect")
        pred = np.where(probs[:, k] >= t, k, np.where(pred == k, _argmax_without(probs, k), pred))
    return pred


def _argmax_without(probs: np.ndarray, k: int) -> np.ndarray:
    p = probs.copy()
    p[:, k] = -1.0
    return p.argmax(axis=1).astype(np.int64)


def combine(det_share: np.ndarray, cls_probs: Optional[np.ndarray], weight: float) -> np.ndarray:
    """The vote rule: ``weight * classifier probabilities + (1 - weight) * detector share``.

    Args:
        det_share: (C,) or (N, C) the detector's class share: for a track the score-weighted vote over
            its recent frames divided by its sum (:meth:`edge.tracking.Track.vote`); for a single photo
            the one-hot of the detected class.
        cls_probs: same shape, the classifier's probabilities (for a track: the mean of its recent
            classifications), or ``None`` when the face was never classified (too small, or no
            classifier): the detector's share is returned unchanged.
        weight: the classifier's weight, 0-1 (``classifier.weight``).

    Returns:
        float array of the same shape, rows summing to 1 when the inputs do.
    """
    d = np.asarray(det_share, np.float64)
    if cls_probs is None:
        return d
    return weight * np.asarray(cls_probs, np.float64) + (1.0 - weight) * d


class Classifier:
    """A loaded classifier model (``role: classifier``): face boxes of a frame in, class probabilities out.

    Args:
        model: the ``.onnx`` path, or an already loaded :class:`edge.backends.base.Backend` whose
            ``meta.role`` is ``classifier``.
        threads: ONNX Runtime CPU threads (0: all cores) when ``model`` is a path.
        max_batch: most crops per inference call (a frame with more faces runs several batches).
        spin: ONNX Runtime thread busy-waiting (see :class:`edge.backends.onnxruntime.OnnxRuntimeBackend`).

    Raises:
        ValueError: the model is not a classifier (its metadata ``role`` is not ``classifier``).
        FileNotFoundError: no file at ``model``.
    """

    def __init__(self, model, threads: int = 0, max_batch: int = 16, spin: bool = True):
        if isinstance(model, (str, Path)):
            if not Path(model).is_file():
                raise FileNotFoundError(f"no classifier model file at {model}")
            from edge.backends.onnxruntime import OnnxRuntimeBackend
            model = OnnxRuntimeBackend(model, threads=threads or None, spin=spin)
        self.backend = model
        self.meta = model.meta
        if self.meta.role != "classifier":
            raise ValueError(f"model role is {self.meta.role!r}, not 'classifier' (a detector given as classifier?)")
        self.classes = list(self.meta.classes)
        self.size = int(self.meta.input_w)
        self.max_batch = max(1, int(max_batch))
        #: largest batch the backend takes: TensorRT engines of the classifier are built for batch 1
        self.backend_batch = 1 if type(model).__name__ == "TensorRTBackend" else 1 << 30

    def crops(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 crops of ``boxes`` (frame px) with the model's margin and input size, and its
        ``detail_px`` cap (:func:`cap_detail`)."""
        return cap_detail(crop_faces(image, boxes, self.size, float(self.meta.crop_margin)), int(self.meta.detail_px))

    def probs_of_crops(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 BGR crops -> (N, C) float32 probabilities, in batches of ``max_batch``."""
        if not len(crops):
            return np.zeros((0, len(self.classes)), np.float32)
        m = self.meta
        out = []
        step = min(self.max_batch, self.backend_batch)
        for i in range(0, len(crops), step):
            x = crops_to_tensor(crops[i:i + step], m.color, m.mean, m.std)
            out.append(np.asarray(self.backend.infer(x)["probs"], np.float32).reshape(len(x), -1))
        return np.concatenate(out)

    def probs(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 BGR frame and (N, 4) xyxy boxes -> (N, C) float32 probabilities (one batch)."""
        return self.probs_of_crops(self.crops(image, boxes))

    def warmup(self, runs: int = 2) -> None:
        grey = np.full((1, self.size, self.size, 3), PAD_VALUE, np.uint8)
        for _ in range(runs):
            self.probs_of_crops(grey)


def face_px(boxes: np.ndarray) -> np.ndarray:
    """(N,) longer side of each (N, 4) xyxy box, px."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])


def classify_detections(cls: Optional[Classifier], image: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                        classes: np.ndarray, num_classes: int, min_crop_px: float = 24.0,
                        weight: float = 0.8, cls_probs: Optional[np.ndarray] = None) -> np.ndarray:
    """The cascade on one photo: the combined class probabilities of each detected face.

    The function ``models.evaluation.predict`` and ``models.evaluation.evaluate`` use; the runtime applies the same
    :func:`combine` per track (:class:`SecondaryClassifier`). A face whose longer side is under
    ``min_crop_px`` (in ``image`` px), or every face when ``cls`` is ``None``, keeps the detector's class
    (one-hot); the others get ``combine(one_hot(detector class), classifier probs, weight)``.

    Args:
        cls: the classifier, or ``None`` for detector-only.
        image: (H, W, 3) uint8 BGR, full resolution.
        boxes: (K, 4) xyxy px; scores (K,) detector scores (unused by the rule, kept for callers);
        classes: (K,) detector class ids.
        num_classes: C.
        cls_probs: the classifier's probabilities of the faces at or above ``min_crop_px``, in order, when
            already computed (an evaluation sweeping ``weight``); ``image`` is then not read.

    Returns:
        (K, C) float64 probabilities.
    """
    classes = np.asarray(classes, np.int64)
    onehot = np.zeros((len(classes), num_classes), np.float64)
    onehot[np.arange(len(classes)), classes] = 1.0
    if cls is None or not len(classes):
        return onehot
    big = face_px(boxes) >= min_crop_px
    out = onehot.copy()
    if big.any():
        p = cls.probs(image, np.asarray(boxes)[big]) if cls_probs is None else cls_probs
        out[big] = combine(onehot[big], p, weight)
    return out


class _TrackState:
    __slots__ = ("last_frame", "last_px", "probs")

    def __init__(self, history: int):
        self.last_frame = -1
        self.last_px = 0.0
        self.probs = collections.deque(maxlen=history)  # type: Deque[np.ndarray]


class SecondaryClassifier:
    """Runs the classifier on tracked faces: the runtime's half of the cascade.

    Each processed frame (:meth:`update`, after :meth:`edge.tracking.Tracker.update`):

    1. :meth:`due` picks the confirmed tracks matched in this frame whose face (longer side, full-resolution
       px) is at least ``min_crop_px`` and that were never classified, or last classified
       ``interval_frames`` or more processed frames ago, or whose face has grown by ``grow_fraction``
       or more since then;
    2. their crops, cut from the full-resolution frame, run as one batch;
    3. each such track's ``secondary`` becomes (mean of its last ``history`` classifier probability
       vectors, ``weight``), which :meth:`edge.tracking.Track.vote` combines with the detector's vote
       share (:func:`combine`); the detections of confirmed tracks get the re-voted class.

    Args:
        classifier: the loaded :class:`Classifier`.
        cfg: an :class:`edge.config.ClassifierConfig` (or any object with its attributes).
    """

    def __init__(self, classifier: Classifier, cfg):
        self.classifier = classifier
        self.frame = -1
        self.frames = 0        # processed frames
        self.faces = 0         # crops classified in all
        self.states = {}       # type: Dict[int, _TrackState]
        self.configure(cfg)

    def configure(self, cfg) -> None:
        self.cfg = cfg
        self.classifier.max_batch = int(cfg.max_batch)
        for st in self.states.values():
            st.probs = collections.deque(st.probs, maxlen=int(cfg.history))

    def due(self, tracks: Sequence, t: float) -> List:
        """The tracks to classify in the current frame (the rule in the class docstring)."""
        cfg, out = self.cfg, []
        for tr in tracks:
            if tr.id <= 0 or tr.last_t != t:
                continue
            px = float(face_px(tr.box)[0])
            if px < cfg.min_crop_px:
                continue
            st = self.states.get(tr.id)
            if (st is None or st.last_frame < 0 or self.frame - st.last_frame >= cfg.interval_frames
                    or px >= st.last_px * (1.0 + cfg.grow_fraction)):
                out.append(tr)
        return out

    def update(self, image: np.ndarray, tracker, dets, t: float):
        """Classify the due tracks of this frame; returns ``dets`` with confirmed tracks' classes re-voted.

        Args:
            image: (H, W, 3) uint8 BGR full-resolution frame.
            tracker: the :class:`edge.tracking.Tracker` just updated with this frame.
            dets: the tracker's output :class:`edge.types.Detections` for this frame.
            t: the frame's timestamp (s), as given to the tracker.
        """
        self.frame += 1
        self.frames += 1
        live = {tr.id for tr in tracker.tracks if tr.id > 0}
        for tid in [k for k in self.states if k not in live]:
            del self.states[tid]
        todo = self.due(tracker.tracks, t)
        if todo:
            probs = self.classifier.probs(image, np.stack([tr.box for tr in todo]))
            self.faces += len(todo)
            for tr, p in zip(todo, probs):
                st = self.states.get(tr.id)
                if st is None:
                    st = self.states[tr.id] = _TrackState(int(self.cfg.history))
                st.last_frame, st.last_px = self.frame, float(face_px(tr.box)[0])
                st.probs.append(p)
                tr.secondary = (np.mean(np.stack(st.probs), axis=0), float(self.cfg.weight))
        for tr in tracker.tracks:  # a weight change on reload applies at once
            if tr.secondary is not None:
                tr.secondary = (tr.secondary[0], float(self.cfg.weight))
        if dets.track_id is None or not len(dets):
            return dets
        cls = dets.class_id.copy()
        for i, tid in enumerate(dets.track_id):
            if tid > 0:
                tr = tracker.get(int(tid))
                if tr is not None:
                    cls[i] = tr.vote(tracker.num_classes)[0]
        return type(dets)(dets.xyxy, dets.scores, cls, dets.track_id)

    @property
    def faces_per_frame(self) -> float:
        return self.faces / self.frames if self.frames else 0.0


def load_secondary(cfg, detector_classes: Sequence[str]) -> Optional[SecondaryClassifier]:
    """The runtime's :class:`SecondaryClassifier` for a :class:`edge.config.Config`, or ``None`` when
    ``model.classifier`` is null. The backend is ``model.backend``: ONNX Runtime with ``model.threads``
    (1 when that is 0) and no thread busy-waiting, or the classifier's TensorRT engine at batch 1.

    Raises:
        FileNotFoundError: no classifier file.
        ValueError: the file is not a classifier, or its classes differ from the detector's.
    """
    path = cfg.model.resolved_classifier()
    if path is None:
        return None
    model = path
    if cfg.model.backend == "tensorrt":  # the classifier's engine, built like the detector's (maskwatch build-engine)
        from edge.detector import load_backend
        model = load_backend("tensorrt", path, cfg.model.threads, cfg.model.engine)
    # one thread, no busy-waiting: it runs on a few frames only and must not slow the detector's session
    cls = Classifier(model, threads=cfg.model.threads or 1, max_batch=cfg.classifier.max_batch, spin=False)
    if list(cls.classes) != list(detector_classes):
        raise ValueError(f"classifier classes {cls.classes} differ from the detector's {list(detector_classes)}")
    cls.warmup()
    return SecondaryClassifier(cls, cfg.classifier)
