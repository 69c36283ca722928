"""Evaluation as the appliance outputs it (issue 20), on hand-made SSD outputs run through the real decoder,
post-processing and ``models.evaluation.evaluate.evaluate``; and the decoder's class-prior decision rule."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from edge.decoders import ClusterParams, decode_ssd, prior_decision
from edge.model import ModelMeta, apply_thresholds, postprocess
from edge.preprocess import Letterbox
from models.data import Sample
from models.evaluation.evaluate import evaluate

W, H = 640, 352
A = [100, 100, 160, 170]   # labelled mask_incorrect
B = [300, 100, 360, 170]   # labelled mask
C = [500, 200, 560, 270]   # labelled no_mask

# per prior: (background, mask, no_mask, mask_incorrect) softmax and its box (input px = image px here)
PRIORS = [
    ((0.10, 0.50, 0.10, 0.30), A),  # a mask_incorrect face on which `mask` wins the plain argmax
    ((0.10, 0.80, 0.05, 0.05), B),
    ((0.30, 0.36, 0.34, 0.00), C),  # an unmasked face whose probability is split between mask and no_mask
]


def ssd_meta(**cluster) -> ModelMeta:
    cl = dataclasses.asdict(ClusterParams(method="nms", iou_threshold=0.5, **cluster))
    return ModelMeta(decoder="ssd", input_w=W, input_h=H, outputs={"scores": "scores", "boxes": "boxes"},
                     cluster=cl, thresholds={"mask": 0.575, "no_mask": 0.15, "mask_incorrect": 0.15})


def infer(_x):
    s = np.array([p for p, _ in PRIORS], np.float32)[None]
    b = np.array([b for _, b in PRIORS], np.float32)[None]
    return {"scores": s, "boxes": b}


@pytest.fixture()
def samples(tmp_path):
    img = tmp_path / "photo.jpg"
    cv2.imwrite(str(img), np.full((H, W, 3), 90, np.uint8))
    return [Sample(img, np.array([A, B, C], np.float32), np.array([2, 0, 1], np.int64))]


def test_as_output_differs_from_per_class_scores(samples):
    r = evaluate(infer, ssd_meta(), samples)
    out, pcs = r["as_output"], r["per_class_scores"]
    # per-class scoring finds the mask_incorrect face with its own (second) score: AP 1
    assert pcs["voc_AP50_mask_incorrect"] == pytest.approx(1.0)
    # the appliance says `mask` on it (one class per face): AP mask_incorrect 0 as output
    assert out["voc_AP50_mask_incorrect"] == pytest.approx(0.0)
    # as output, the face said `mask` wrongly (0.5) ranks below the real mask (0.8): AP mask 1, precision 1/2...
    # ...and the unmasked face C is said `mask` (0.36) too: no_mask AP 0 as output, 1 per class
    assert out["voc_AP50_no_mask"] == pytest.approx(0.0) and pcs["voc_AP50_no_mask"] == pytest.approx(1.0)
    assert r["AP50_mask_incorrect"] == pytest.approx(0.0)  # top-level COCO figures are as output too
    # at the shipped thresholds (mask 0.575): only B is output; no non-compliant box at all
    nc = out["nc_at_shipped"]
    assert nc["recall"] == 0.0 and nc["n_nc_dets"] == 0 and nc["n_nc_faces"] == 2
    assert out["per_class_at_shipped"]["mask"]["recall"] == pytest.approx(1.0)
    assert r["shipped_thresholds"]["mask"] == pytest.approx(0.575)


def test_class_priors_say_every_class(samples):
    r = evaluate(infer, ssd_meta(class_priors=(1.0, 1.2, 2.0), class_score="face"), samples)
    out = r["as_output"]
    for c in ("mask", "no_mask", "mask_incorrect"):
        assert out[f"voc_AP50_{c}"] == pytest.approx(1.0), c
    # face scores 0.9 / 0.9 / 0.7 pass every shipped threshold: both non-compliant faces are output
    assert out["nc_at_shipped"]["recall"] == 1.0 and out["nc_at_shipped"]["precision"] == 1.0


def test_prior_decision_rule():
    s = np.array([p for p, _ in PRIORS], np.float32)
    c, sc = prior_decision(s, (1, 1, 1), "face")
    assert c.tolist() == [0, 0, 0] and np.allclose(sc, [0.9, 0.9, 0.7])
    c, sc = prior_decision(s, (1, 1.2, 2), "class")
    assert c.tolist() == [2, 0, 1]
    assert sc[0] == pytest.approx(0.9 * 0.6 / (0.5 + 0.12 + 0.6))
    with pytest.raises(ValueError):
        prior_decision(s, (1, 1), "face")


def _run(meta, scores, boxes):
    return postprocess({"scores": np.array(scores, np.float32)[None], "boxes": np.array(boxes, np.float32)[None]},
                       meta, Letterbox(1.0, 1.0, 0.0, 0.0), (W, H), meta.cluster_params(conf_threshold=0.05))


def test_unmasked_face_not_lost_to_a_mask_box():
    old = ssd_meta()
    # the plain rule: the split face C is said `mask` at 0.36 and the shipped mask threshold drops it
    b, s, c = _run(old, [PRIORS[2][0]], [C])
    assert c.tolist() == [0] and not apply_thresholds(s, c, old).any()
    new = ssd_meta(class_priors=(1.0, 1.2, 2.0), class_score="face")
    b, s, c = _run(new, [PRIORS[2][0]], [C])
    assert c.tolist() == [1] and apply_thresholds(s, c, new).all()
    # a no_mask box and a lower-scored mask box on the same face (nested: IoU too low for NMS; and a larger
    # one around it): one box, no_mask, whichever rule
    inner = [510, 215, 550, 260]
    outer = [480, 180, 580, 290]
    scores = [(0.2, 0.1, 0.7, 0.0), (0.4, 0.55, 0.05, 0.0), (0.45, 0.5, 0.05, 0.0)]
    for meta in (old, new):
        b, s, c = _run(meta, scores, [C, inner, outer])
        assert c.tolist() == [1] and np.allclose(b[0], C), (meta.cluster, b, c)


def test_empty_priors_keep_the_old_rule():
    s = np.array([p for p, _ in PRIORS], np.float32)
    b = np.array([b for _, b in PRIORS], np.float32)
    old = decode_ssd(s, b, ClusterParams(method="nms", iou_threshold=0.5, conf_threshold=0.05))
    # every class of every prior at >= 0.05: A mask + A incorrect + A no_mask, B 3 classes, C mask + no_mask
    assert len(old[0]) == 8
    assert ClusterParams(class_priors=[1, 2, 3]).class_priors == (1.0, 2.0, 3.0)


class _HandMadeDetector:
    """The hand-made SSD outputs above behind the backend interface (``meta``, ``infer``)."""

    def __init__(self, meta):
        self.meta = meta

    def infer(self, x):
        return infer(x)


def test_cascade_headline_is_one_class_per_face(samples):
    from models.evaluation.classifier import evaluate_cascade

    det = _HandMadeDetector(ssd_meta())
    r = evaluate_cascade(det, None, samples)  # no classifier: the detector's own class, as the runtime
    out = r["as_output"]
    assert out["voc_AP50_mask_incorrect"] == pytest.approx(0.0) and r["AP50_mask_incorrect"] == pytest.approx(0.0)
    assert "not what the appliance outputs" in r["per_class_scores"]["note"]  # the secondary figure is labelled
    # at the detector's shipped thresholds only B (mask, 0.8) is kept: no non-compliant box
    assert out["nc_at_shipped"]["n_nc_dets"] == 0 and out["nc_at_shipped"]["n_nc_faces"] == 2
    r2 = evaluate_cascade(_HandMadeDetector(ssd_meta(class_priors=(1.0, 1.2, 2.0), class_score="face")), None, samples)
    assert r2["as_output"]["voc_AP50_mask_incorrect"] == pytest.approx(1.0)
