#!/usr/bin/env bash
# Export, evaluate (validation split and ilc2021-dev), benchmark and release a fine-tuned detector's
# checkpoint (models.train.yunet: YuNet; models.train.ultralight: the Ultra-Light RFB SSD).
#   scripts/release_finetuned.sh RUN_DIR VERSION OUT_DIR
# (scripts/release_yunet_mask.sh and scripts/release_ultralight_mask.sh call it with their OUT_DIR.)
# STAGE1=RUN_DIR of the first stage also copies its history
# (history_stage1.json). ilc2021-dev is measured only: thresholds come from the
# validation split (models.evaluation.evaluate on the training photos' md5 split).
set -euo pipefail
run=${1:?usage: $0 RUN_DIR VERSION OUT_DIR}
version=${2:?usage: $0 RUN_DIR VERSION OUT_DIR}
out=${3:?usage: $0 RUN_DIR VERSION OUT_DIR}
data=${DATA:-../shared/data/face-mask-andrewmvd}
ilc=${ILC:-../shared/data/ilc2021-dev}
py=${PYTHON:-python3}
threads=${THREADS:-1}
mkdir -p "$out"
"$py" -m models.export --ckpt "$run/best.pt" --out "$run/candidate.onnx" --version "$version" --fp32-weights
"$py" -m models.evaluation.evaluate --model "$run/candidate.onnx" --data "$data" --out "$out/eval.json" --plots "$out" --threads "$threads" > /dev/null
"$py" -m models.export --ckpt "$run/best.pt" --out "$out/model.onnx" --version "$version" --fp32-weights \
    --eval "$out/eval.json" --parity-images "$data/images" --parity-count 8 | tee "$out/export.json"
"$py" -m models.evaluation.evaluate --model "$out/model.onnx" --data "$ilc" --split all --out "$out/eval_ilc2021_dev.json" --threads "$threads" > /dev/null
"$py" -m models.evaluation.evaluate --model "$out/model.onnx" --data "$ilc" --split half-b --out "$out/eval_ilc2021_dev_half_b.json" --threads "$threads" > /dev/null
# the figures stored in the model: as output, on ilc2021-dev half b (the thresholds came from validation)
"$py" -m models.evaluation.decision --out "$out/model.onnx" --embed "$out/eval_ilc2021_dev_half_b.json" --embed-label "ilc2021-dev half b (as output)"
"$py" -m models.evaluation.benchmark --model "$out/model.onnx" --runs 200 --threads 2 --json | tee "$out/latency.json"
cp "$run/curves.png" "$out/training_curves.png"
cp "$run/split.json" "$out/split.json"
cp "$run/history.json" "$out/history.json"
if [ -n "${STAGE1:-}" ]; then cp "$STAGE1/history.json" "$out/history_stage1.json"; fi
