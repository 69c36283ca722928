"""Choose the detector's decision rule (class priors, score, one operating threshold) on one half of a set,
write it into a copy of the model, and measure it on the other half.

CLI::

    python -m models.evaluation.decision --model models/released/ultralight_mask/model.onnx --data ../shared/data/ilc2021-dev \
        --out runs/rule/model.onnx --json runs/rule/choice.json

The rule (:func:`edge.decoders.prior_decision`, read by the runtime from the model's ONNX metadata
``cluster`` dict: ``class_priors``, ``class_score``): every SSD prior proposes one class,
``argmax_c w_c p_c``, with the score ``1 - p_background`` (``face``) or the re-weighted posterior
(``class``). Candidates: the plain rule (no priors) and a grid of weights ``w = (1, w_no_mask,
w_mask_incorrect)`` in both score modes. Chosen on the ``--choose`` half (``models.data.half``: ``a`` =
md5 of the file stem starting with 0-7): the highest mean as-output VOC AP@0.5 over mask, no_mask and
mask_incorrect (:func:`models.evaluation.evaluate.as_output_metrics`: one class per face). Then **one** threshold for
every class: the one giving the highest non-compliant (no_mask + mask_incorrect) recall at NC precision
>= ``--min-precision`` (0.80) on the same half; if no threshold reaches it, the best NC F1. The other half
is the report; it never chooses. The network runs once per photo; the decoder runs per candidate.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from edge.model import METADATA_KEY, ModelMeta, postprocess, preprocess
from models.evaluation.evaluate import as_output_metrics, nc_at_thresholds

log = logging.getLogger("models.evaluation.decision")
W_NO_MASK = (0.75, 1.0, 1.5, 2.0, 3.0)
W_INCORRECT = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
THRESHOLDS = tuple(np.round(np.arange(0.20, 0.951, 0.025), 3))


def cache_outputs(backend, samples) -> List[Tuple]:
    """Run the network once per photo: ``[(outputs, letterbox, (w, h))]``."""
    out = []
    for s in samples:
        img = cv2.imread(str(s.image))
        x, lb = preprocess(img, backend.meta)
        out.append(({k: np.asarray(v) for k, v in backend.infer(x).items()}, lb, (img.shape[1], img.shape[0])))
    return out


def decode_all(cached, meta: ModelMeta, priors: Sequence[float], mode: str, floor: float = 0.05):
    """The runtime's detections (one class per face) of every cached photo under a rule."""
    cl = meta.cluster_params(conf_threshold=floor, class_priors=tuple(priors), class_score=mode)
    return [postprocess(o, meta, lb, wh, cl, True) for o, lb, wh in cached]


def candidates() -> List[Tuple[Tuple[float, ...], str]]:
    out: List[Tuple[Tuple[float, ...], str]] = [((), "face")]
    for mode, wn, wi in itertools.product(("face", "class"), W_NO_MASK, W_INCORRECT):
        out.append(((1.0, wn, wi), mode))
    return out


def objective(m: Dict) -> float:
    return float(np.mean([m["voc_AP50_mask"], m["voc_AP50_no_mask"], m["voc_AP50_mask_incorrect"]]))


def choose_threshold(gts, output, min_precision: float) -> Tuple[float, Dict]:
    """One threshold for every class: highest NC recall at NC precision >= ``min_precision``, else best NC F1."""
    pts = [(t, nc_at_thresholds(gts, output, np.full(3, t, np.float32))) for t in THRESHOLDS]
    ok = [(t, p) for t, p in pts if p["precision"] >= min_precision and p["n_nc_dets"] > 0]
    if ok:
        return max(ok, key=lambda tp: (tp[1]["recall"], tp[1]["precision"]))
    f1 = lambda p: 2 * p["precision"] * p["recall"] / max(p["precision"] + p["recall"], 1e-9)  # noqa: E731
    return max(pts, key=lambda tp: f1(tp[1]))


def write_model(src: Path, dst: Path, meta: ModelMeta) -> None:
    """Copy ``src`` to ``dst`` with ``meta`` as its ``maskwatch`` metadata (weights untouched)."""
    import onnx

    m = onnx.load(str(src))
    for p in m.metadata_props:
        if p.key == METADATA_KEY:
            p.value = meta.to_json()
    onnx.checker.check_model(m)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(dst))


def choose(backend, samples, min_precision: float = 0.80) -> Dict:
    """The chosen rule on ``samples`` (see module doc): ``{"class_priors", "class_score", "threshold",
    "objective", "table": [every candidate's figures]}``."""
    gts = [(s.boxes, s.labels) for s in samples]
    cached = cache_outputs(backend, samples)
    meta = backend.meta
    table = []
    for priors, mode in candidates():
        out = decode_all(cached, meta, priors, mode)
        m = as_output_metrics(gts, out, np.full(3, 0.5, np.float32))
        row = {"class_priors": list(priors), "class_score": mode, "objective": objective(m),
               **{k: m[k] for k in ("voc_AP50_mask", "voc_AP50_no_mask", "voc_AP50_mask_incorrect",
                                    "voc_mAP50_mask_no_mask")}}
        table.append(row)
        log.info("%s", json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}))
    best = max(table, key=lambda r: r["objective"])
    out = decode_all(cached, meta, best["class_priors"], best["class_score"])
    t, point = choose_threshold(gts, out, min_precision)
    return {"class_priors": best["class_priors"], "class_score": best["class_score"], "threshold": float(t),
            "nc_at_threshold": point, "objective": best["objective"], "table": table}


def embed_metrics(model: Path, eval_json: Path, label: str) -> Dict:
    """Store the as-output figures of ``eval_json`` (``models.evaluation.evaluate`` on a set that did **not** choose, e.g.
    ilc2021-dev half b) in ``model``'s metadata ``metrics``: ``AP50_<class>``, ``mAP50``, ``mAP50_95`` (COCO, as
    output), ``no_mask_recall`` / ``no_mask_precision`` at the shipped thresholds, and ``metrics_set``."""
    import onnx

    ev = json.loads(Path(eval_json).read_text())
    props = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    meta = ModelMeta.from_json(props[METADATA_KEY])
    pc = ev["as_output"]["per_class_at_shipped"]["no_mask"]
    keep = {k: v for k, v in meta.metrics.items() if k == "decision_rule_chosen_on"}  # older figures: other sets
    meta.metrics = dict(keep, **{k: ev[k] for k in ev if k.startswith(("AP50_", "mAP50"))},
                        no_mask_recall=pc["recall"], no_mask_precision=pc["precision"], metrics_set=label)
    write_model(model, model, meta)
    return meta.metrics


def main(argv=None) -> int:
    from edge.backends.onnxruntime import OnnxRuntimeBackend
    from models.data import half, read_dataset

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="SSD detector .onnx (decoder: ssd)")
    ap.add_argument("--data", type=Path, help="the set to choose on (ilc2021-dev)")
    ap.add_argument("--choose", default="a", choices=["a", "b"], help="the half that chooses (models.data.half)")
    ap.add_argument("--min-precision", type=float, default=0.80, help="NC precision the threshold must keep")
    ap.add_argument("--out", type=Path, required=True, help="the model with the chosen rule (.onnx)")
    ap.add_argument("--json", type=Path, help="the choice and every candidate's figures")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--embed", type=Path, help="instead: store this models.evaluation.evaluate JSON's as-output figures in "
                    "--out's metadata (embed_metrics), labelled --embed-label")
    ap.add_argument("--embed-label", default="ilc2021-dev half b")
    a = ap.parse_args(argv)
    if a.embed:
        print(json.dumps(embed_metrics(a.out, a.embed, a.embed_label), indent=1))
        return 0
    if a.model is None or a.data is None:
        ap.error("--model and --data are required (except with --embed)")
    be = OnnxRuntimeBackend(a.model, threads=a.threads)
    if be.meta.decoder != "ssd":
        ap.error(f"{a.model}: decoder {be.meta.decoder!r}; the class-prior rule is for SSD models")
    samples = half(read_dataset(a.data), a.choose)
    log.info("choosing on %s half %s: %d photos", a.data.name, a.choose, len(samples))
    res = choose(be, samples, a.min_precision)
    cl = dict(be.meta.cluster, class_priors=res["class_priors"], class_score=res["class_score"])
    meta = dataclasses.replace(be.meta, cluster=cl, thresholds={c: res["threshold"] for c in be.meta.classes})
    meta.metrics = dict(meta.metrics, decision_rule_chosen_on=f"{a.data.name} half {a.choose} (md5(file stem)[0] in "
                        f"{'0-7' if a.choose == 'a' else '8-f'})")
    write_model(a.model, a.out, meta)
    res = {"model": str(a.model), "out": str(a.out), "chosen_on": f"{a.data.name} half {a.choose}", **res}
    text = json.dumps(res, indent=1)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(text)
    print(json.dumps({k: v for k, v in res.items() if k != "table"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
