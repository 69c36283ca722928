"""``python -m models``: the map of the training side: every command, and which command made each release.

The same map, with the data and the full recipes, is docs/models.md. Each command has its own ``--help``.
"""
from __future__ import annotations

import sys

#: (module, what it does), grouped by role; every ``python -m models.X`` and ``models.ROLE.X`` command of the package.
COMMANDS = {
    "train (make a model)": [
        ("models.train.detectnet_v2", "DetectNet_v2 ResNet-18 detector from scratch (-> detectnet_v2_r18)"),
        ("models.train.yolo_student", "YOLO-style student, alone or distilled from a teacher (-> yolo_student_baseline)"),
        ("models.train.yunet", "fine-tune the pretrained YuNet-n face detector into the 3 classes"),
        ("models.train.ultralight", "fine-tune the pretrained Ultra-Light RFB SSD into the 3 classes (-> ultralight_mask)"),
        ("models.train.distill_student", "YuNet-n student distilled from the default detector (difficulty-aware weights, "
                                   "teacher pseudo-labels; not released: docs/distillation.md)"),
        ("models.train.prune", "channel pruning of the ResNet-18, prune -> retrain -> prune more (-> detectnet_v2_r18_pruned)"),
        ("models.train.synth_masks", "synthetic masks drawn from YuNet's 5 landmarks on the training photos "
                               "(landmark cache, example sheet; models.train.ultralight --synth uses it)"),
        ("models.train.classifier", "secondary mask classifier on face crops: train, export, crops, detail-sweep "
                              "(-> mask_classifier)"),
    ],
    "export and release": [
        ("models.export", "checkpoint -> ONNX with its metadata embedded, PyTorch-vs-ONNX-Runtime parity"),
        ("models.evaluation.decision", "choose the SSD decision rule (class priors, threshold) on ilc2021-dev half a and "
                            "embed it in the model (-> ultralight_mask 1.2.0)"),
    ],
    "evaluate and compare": [
        ("models.evaluation.evaluate", "AP per class, the appliance's one-class-per-face figures, PR curve, confusion "
                            "(detectors; classifiers and the cascade too)"),
        ("models.evaluation.predict", "run an ONNX model over images or a video, write COCO-style detections"),
        ("models.evaluation.benchmark", "batch-1 ONNX Runtime latency on this CPU"),
        ("models.evaluation.compare", "comparison tables and accuracy-vs-latency plot of every released model"),
        ("models.train.bench", "training speed per precision (bf16, channels_last) on this CPU"),
    ],
}

#: release folder -> (the commands that made it, the data it was trained on).
RELEASES = {
    "ultralight_mask": ("models.train.ultralight (2 stages), then scripts/release_with_rule.sh at 640x480: export, models.evaluation.decision on ilc2021-dev half a (1.3.0)",
                        "face-mask-andrewmvd training split; start: ../shared/weights/ultra-light"),
    "mask_classifier": ("models.train.classifier train + export (on by default, weight 0.8 chosen on ilc2021-dev half a)",
                        "face crops of face-mask-andrewmvd; start: ../shared/weights/imagenet MobileNetV2"),
    "detectnet_v2_r18": ("models.train.detectnet_v2 (2 phases) + scripts/release_detectnet_v2.sh",
                         "face-mask-andrewmvd training split, from scratch"),
    "detectnet_v2_r18_pruned": ("models.train.prune (from detectnet_v2_r18 1.0.0) --release",
                                "face-mask-andrewmvd training split"),
    "yolo_student_baseline": ("models.train.yolo_student (no teacher) + scripts/release_detectnet_v2.sh",
                              "face-mask-andrewmvd training split, from scratch"),
    "yunet_student": ("models.train.distill_student (the no-KD setting of its ablation) + scripts/release_finetuned.sh",
                      "face-mask-andrewmvd training split; start: ../shared/weights/yunet YuNet-n"),
}


def format_map() -> str:
    lines = ["maskwatch training side (python -m models.COMMAND --help for each; map: docs/models.md)", ""]
    for group, cmds in COMMANDS.items():
        lines.append(f"{group}:")
        w = max(len(m) for m, _ in cmds)
        lines += [f"  python -m {m.ljust(w)}  {what}" for m, what in cmds]
        lines.append("")
    lines.append("releases (models/released/<name>/model.onnx + MODEL_CARD.md; model.path: <name> in the config):")
    w = max(len(n) for n in RELEASES)
    lines += [f"  {n.ljust(w)}  {how}; data: {data}" for n, (how, data) in RELEASES.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    print(format_map())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
