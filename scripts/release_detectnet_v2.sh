#!/usr/bin/env bash
# Export, evaluate, benchmark and release a trained DetectNet_v2 checkpoint.
#   scripts/release_detectnet_v2.sh RUN_DIR VERSION [OUT_DIR]
# CLUSTER_ARGS (optional) sets the stored clustering, e.g. "--cluster-method nms --iou-threshold 0.4".
# RUN_DIR holds best.pt from `python -m models.train.detectnet_v2`; OUT_DIR defaults to models/released/detectnet_v2_r18.
set -euo pipefail
run=${1:?usage: $0 RUN_DIR VERSION [OUT_DIR]}
version=${2:?usage: $0 RUN_DIR VERSION [OUT_DIR]}
out=${3:-models/released/detectnet_v2_r18}
data=${DATA:-../shared/data/face-mask-andrewmvd}
py=${PYTHON:-python3}
mkdir -p "$out"
read -r -a cluster_args <<< "${CLUSTER_ARGS:-}"
# 1. export once to evaluate the exact file that ships (fp16-stored weights)
"$py" -m models.export --ckpt "$run/best.pt" --out "$run/candidate.onnx" --version "$version" ${cluster_args[@]+"${cluster_args[@]}"}
# 2. evaluate it on the validation split: AP, operating threshold, PR curve, confusion matrix
"$py" -m models.evaluation.evaluate --model "$run/candidate.onnx" --data "$data" --out "$out/eval.json" --plots "$out"
# 3. export again with the thresholds and metrics embedded, with a parity check on real images
"$py" -m models.export --ckpt "$run/best.pt" --out "$out/model.onnx" --version "$version" ${cluster_args[@]+"${cluster_args[@]}"} \
    --eval "$out/eval.json" --parity-images "$data/images" --parity-count 8 | tee "$out/export.json"
# 4. latency in ONNX Runtime, batch 1, this machine's CPU
"$py" -m models.evaluation.benchmark --model "$out/model.onnx" --runs 50 --json | tee "$out/latency.json"
cp "$run/curves.png" "$out/training_curves.png"
cp "$run/split.json" "$out/split.json"
