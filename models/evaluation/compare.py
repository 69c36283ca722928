"""Comparison tables and the accuracy-vs-latency plot of every released model.

CLI::

    python -m models.evaluation.compare --out docs/model_comparison.md --plot models/released/accuracy_vs_latency.png \\
        --ablation runs/s_base runs/s_kd_t25 runs/s_kd_t50 runs/s_kd_t75 runs/s_kd_fixed runs/s_kd_w025 runs/s_kd_clsonly

Reads, for each folder ``models/released/<name>/`` holding a ``model.onnx``: ``eval.json`` (models.evaluation.evaluate),
``latency.json`` (models.evaluation.benchmark) and ``export.json`` (models.export: params, GFLOPs), and
``models/released/detectnet_v2_r18_pruned/pruning_table.json`` when present. All figures come from the same
validation split (102 images) and the same 2-core CPU. Prints Markdown tables:

* detectors in the style of seed 004 Tables 1-2 (AP per class, mAP@0.5, ONNX Runtime latency and fps);
* teacher / student baseline / student distilled in the style of seed 000 Table III;
* pruning ratio against params, FLOPs, latency and mAP@0.5;
* the distillation ablation (adaptive λ at several t against a fixed λ) from training histories.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional

from edge.config import model_role

MODELS = Path(__file__).resolve().parents[1] / "released"

#: Released folders: (display name, backbone / architecture, role in Table III).
KNOWN = {
    "detectnet_v2_r18": ("DetectNet_v2 ResNet-18", "ResNet-18, stride 16", "teacher"),
    "detectnet_v2_r18_pruned": ("DetectNet_v2 ResNet-18 pruned", "ResNet-18 pruned, stride 16", None),
    "yolo_student_baseline": ("YOLO student, baseline", "ShuffleNetV2 + FPN/PAN, strides 8/16/32", "student baseline"),
    # retired releases (docs/models.md says how to recover them): titled if their folder is brought back
    "yolo_student_kd": ("YOLO student, distilled", "ShuffleNetV2 + FPN/PAN, strides 8/16/32", "student distilled"),
    "yunet_mask": ("YuNet-n fine-tuned (pretrained start)", "YuNet-n + class branch, strides 8/16/32", None),
    "ultralight_mask": ("Ultra-Light RFB fine-tuned (pretrained start)", "Ultra-Light RFB SSD, strides 8/16/32/64", None),
    "yunet_student": ("YOLO-style student, YuNet-n (pretrained start)", "YuNet-n + class branch, strides 8/16/32", None),
}


#: The distillation ablation (:func:`ablation_rows` of the runs), kept beside the released student baseline
#: (its ``s_base`` row) so the table survives ``runs/``.
ABLATION = MODELS / "yolo_student_baseline" / "ablation.json"


def _load(p: Path) -> Optional[Dict]:
    return json.loads(p.read_text()) if p.exists() else None


def _export_stats(p: Path) -> Dict:
    """export.json is the exporter's log: a JSON object, possibly after log lines."""
    if not p.exists():
        return {}
    text = p.read_text()
    i = text.find("{")
    return json.loads(text[i:]) if i >= 0 else {}


def released(models_dir: Path = MODELS) -> List[Dict]:
    """One row per released model folder, in :data:`KNOWN` order, then any others."""
    names = [n for n in KNOWN if (models_dir / n / "model.onnx").exists()]
    names += sorted(p.parent.name for p in models_dir.glob("*/model.onnx") if p.parent.name not in KNOWN
                    and model_role(p) == "detector")  # the mask classifier is not a detector row
    rows = []
    for n in names:
        d = models_dir / n
        ev, lat, ex = _load(d / "eval.json") or {}, _load(d / "latency.json") or {}, _export_stats(d / "export.json")
        title, backbone, role = KNOWN.get(n, (n, "?", None))
        rows.append({"name": n, "title": title, "backbone": backbone, "role": role, "input": lat.get("input", "?"),
                     "params_M": ex.get("params_M"), "GFLOPs": ex.get("GFLOPs"), "ms": lat.get("ms_median"),
                     "fps": lat.get("fps_median"), "size_MB": (d / "model.onnx").stat().st_size / 1e6, **ev})
    return rows


def _f(v, fmt="{:.3f}") -> str:
    return "–" if v is None else fmt.format(v)


def detector_table(rows: List[Dict]) -> str:
    out = ["| model | backbone | input | params (M) | GFLOPs | ONNX (MB) | AP@0.5 mask | AP@0.5 no_mask | "
           "AP@0.5 mask_incorrect | mAP@0.5 | mAP@0.5 mask+no_mask | ORT CPU ms (median) | fps |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['title']} | {r['backbone']} | {r['input']} | {_f(r['params_M'], '{:.2f}')} | "
                   f"{_f(r['GFLOPs'], '{:.2f}')} | {r['size_MB']:.1f} | {_f(r.get('AP50_mask'))} | "
                   f"{_f(r.get('AP50_no_mask'))} | {_f(r.get('AP50_mask_incorrect'))} | {_f(r.get('mAP50'))} | "
                   f"{_f(r.get('mAP50_mask_no_mask'))} | {_f(r['ms'], '{:.1f}')} | {_f(r['fps'], '{:.1f}')} |")
    return "\n".join(out)


#: The teacher's evaluation at the time the released students were distilled and the pruned model
#: was cut (``detectnet_v2_r18`` 1.0.0); the folder's ``eval.json`` belongs to the current release.
TEACHER_AT_DISTILLATION = ("1.0.0", "detectnet_v2_r18/eval_1.0.0.json")


def distillation_table(rows: List[Dict], models_dir: Path = MODELS) -> str:
    out = ["| network | mAP@0.5 | precision | mAP@0.5:0.95 | recall |", "|---|---|---|---|---|"]
    version, rel = TEACHER_AT_DISTILLATION
    used = _load(models_dir / rel)
    labelled = [(f"teacher used for distillation: DetectNet_v2 ResNet-18 {version}", used)] if used else []
    for role in ("teacher", "student baseline", "student distilled"):
        prefix = "current release" if role == "teacher" and used else role
        labelled += [(f"{prefix}: {r['title']}", r) for r in rows if r["role"] == role]
    for label, r in labelled:
        out.append(f"| {label} | {_f(r.get('mAP50'))} | {_f(r.get('precision'))} | "
                   f"{_f(r.get('mAP50_95'))} | {_f(r.get('recall'))} |")
    return "\n".join(out)


def pruning_table(models_dir: Path = MODELS) -> str:
    """Params, FLOPs, latency and mAP@0.5 against the pruning stage (``pruning_table.json`` of models.train.prune)."""
    t = _load(models_dir / "detectnet_v2_r18_pruned" / "pruning_table.json")
    if not t:
        return "(no pruning table)"
    rows = t["rows"] if isinstance(t, dict) else t
    out = ["| stage | channel ratio removed | weights kept | params (M) | GFLOPs (FLOPs kept) | ORT CPU ms (median) | "
           "latency vs unpruned | mAP@0.5 | mAP@0.5 mask+no_mask | mAP@0.5:0.95 | fine-tune epochs |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['stage']} | {_f(r.get('ratio'), '{:.2f}')} | {_f(r.get('weights_kept', r.get('params_kept')), '{:.1%}')} | "
                   f"{_f(r.get('params_M'), '{:.2f}')} | {_f(r.get('GFLOPs'), '{:.2f}')} ({_f(r.get('flops_kept'), '{:.1%}')}) | "
                   f"{_f(r.get('ort_ms_median'), '{:.1f}')} | {_f(r.get('latency_vs_unpruned'), '{:.2f}')} | "
                   f"{_f(r.get('mAP50'))} | {_f(r.get('mAP50_mask_no_mask'))} | {_f(r.get('mAP50_95'))} | "
                   f"{r.get('fine_tune_epochs', '–')} |")
    if isinstance(t, dict) and t.get("latency"):
        out += ["", f"Latency: {t['latency']}"]
    return "\n".join(out)


def ablation_rows(run_dirs: List[Path]) -> List[Dict]:
    """One row per distillation run folder (``history.json`` + the arguments in ``last.pt``), last epoch and best."""
    import torch  # only for reading each run's arguments from last.pt

    rows = []
    for d in run_dirs:
        h = _load(d / "history.json")
        if not h:
            continue
        val = [e for e in h if "mAP50" in e]
        if not val:
            continue
        last, best = val[-1], max(val, key=lambda e: e["mAP50_mask_no_mask"])
        ck_args = torch.load(d / "last.pt", map_location="cpu", weights_only=False)["args"]
        if not ck_args.get("teacher"):
            lam = "none (baseline)"
        elif ck_args.get("kd_fixed_lambda") is not None:
            lam = f"fixed λ = {ck_args['kd_fixed_lambda']}"
        else:
            lam = f"adaptive, t = {ck_args['kd_t']}"
        if ck_args.get("teacher") and ck_args.get("kd_weight", 1.0) != 1.0:
            lam += f", KD weight {ck_args['kd_weight']}"
        if ck_args.get("teacher") and ck_args.get("kd_box_weight", 1.0) != 1.0:
            lam += f", box term ×{ck_args['kd_box_weight']}"
        rows.append({"run": d.name, "lambda": lam, "epochs": last["epoch"], "mAP50": last["mAP50"],
                     "mAP50_mask_no_mask": last["mAP50_mask_no_mask"], "mAP50_95": last["mAP50_95"],
                     "AP50_no_mask": last["AP50_no_mask"], "best_mAP50_mask_no_mask": best["mAP50_mask_no_mask"],
                     "best_epoch": best["epoch"], "lambda_mean": last.get("lambda_mean")})
    return rows


def ablation_table(rows: List[Dict]) -> str:
    out = ["| run | λ | epochs | mAP@0.5 | mAP@0.5 mask+no_mask | AP@0.5 no_mask | mAP@0.5:0.95 | "
           "best mAP@0.5 mask+no_mask (epoch) | mean λ |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['run']} | {r['lambda']} | {r['epochs']} | {r['mAP50']:.3f} | {r['mAP50_mask_no_mask']:.3f} | "
                   f"{r['AP50_no_mask']:.3f} | {r['mAP50_95']:.3f} | {r['best_mAP50_mask_no_mask']:.3f} ({r['best_epoch']}) | "
                   f"{_f(r['lambda_mean'])} |")
    return "\n".join(out)


def plot(rows: List[Dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, r in enumerate(rows):
        if r["ms"] is None or r.get("mAP50") is None:
            continue
        ax.scatter(r["ms"], r["mAP50"], s=60, zorder=3)
        ax.annotate(r["title"], (r["ms"], r["mAP50"]), textcoords="offset points", xytext=(6, 4 if i % 2 else -10),
                    fontsize=8)
    t = _load(MODELS / "detectnet_v2_r18_pruned" / "pruning_table.json")
    for r in (t["rows"] if isinstance(t, dict) else []):  # every pruning stage (1 and 3 are not released by name)
        if r["stage"] in (1, 3):
            ax.scatter(r["ort_ms_median"], r["mAP50"], s=30, marker="x", color="grey", zorder=3)
            ax.annotate(f"pruned stage {r['stage']} ({r['weights_kept']:.0%} weights)", (r["ort_ms_median"], r["mAP50"]),
                        textcoords="offset points", xytext=(6, -10), fontsize=7, color="grey")
    ax.set_xscale("log"); ax.set_xlabel("ONNX Runtime latency, batch 1, 2-core CPU (median ms, log scale)")
    ax.set_ylabel("mAP@0.5 (3 classes, validation split)"); ax.grid(alpha=0.3, which="both")
    ax.axvline(1000 / 60, color="grey", ls="--", lw=0.8); ax.text(1000 / 60, ax.get_ylim()[1] * 0.98, " 60 fps", fontsize=8, va="top")
    ax.set_title("Accuracy against latency of every released model")
    fig.tight_layout(); fig.savefig(path, dpi=110); plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="write the Markdown tables here")
    ap.add_argument("--plot", type=Path, help="write the accuracy-vs-latency PNG here")
    ap.add_argument("--ablation", type=Path, nargs="*", default=[], help="distillation run folders (history.json)")
    ap.add_argument("--readme", type=Path, help="also replace the text between <!-- compare:start --> and "
                    "<!-- compare:end --> in this file")
    a = ap.parse_args(argv)
    rows = released()
    text = ["### Detectors (seed 004 Tables 1-2 style)", "", detector_table(rows), "",
            "### Distillation (seed 000 Table III style; precision and recall over all classes at the operating thresholds)",
            "", distillation_table(rows), "", "### Pruning", "", pruning_table(), ""]
    saved = ABLATION
    if a.ablation:  # from the run folders; kept beside the student baseline so the table survives runs/
        abl = ablation_rows(a.ablation)
        saved.write_text(json.dumps(abl, indent=1))
    else:
        abl = _load(saved) or []
    if abl:
        text += ["### Distillation ablation (validation every 3 epochs; figures at the last epoch)", "",
                 ablation_table(abl), ""]
    md = "\n".join(text)
    print(md)
    if a.out:
        a.out.write_text(md)
    if a.plot:
        plot(rows, a.plot)
    if a.readme:
        text = a.readme.read_text()
        i, j = text.index("<!-- compare:start -->"), text.index("<!-- compare:end -->")
        a.readme.write_text(text[:i] + "<!-- compare:start -->\n" + md + text[j:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
