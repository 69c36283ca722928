#!/usr/bin/env bash
# Export and measure one models.train.distill_student run (issue 21 ablation): ONNX export of best.pt
# (decoder yolo, as yunet_mask), models.evaluation.evaluate on the validation split and on ilc2021-dev half b (measured
# only, never used to choose). Background-friendly: nice 15, one thread.
#   scripts/eval_distill_student.sh RUN_DIR
set -euo pipefail
run=${1:?usage: $0 RUN_DIR}
py=${PYTHON:-python3}
data=${DATA:-../shared/data/face-mask-andrewmvd}
ilc=${ILC:-../shared/data/ilc2021-dev}
nice -n 15 "$py" -m models.export --ckpt "$run/best.pt" --out "$run/model.onnx" --version 0.0.0-ablation --fp32-weights > "$run/export.log"
nice -n 15 "$py" -m models.evaluation.evaluate --model "$run/model.onnx" --data "$data" --out "$run/eval_val.json" --threads 1 > /dev/null
nice -n 15 "$py" -m models.evaluation.evaluate --model "$run/model.onnx" --data "$ilc" --split half-b --out "$run/eval_ilc2021_dev_half_b.json" --threads 1 > /dev/null
echo "$run: done"
