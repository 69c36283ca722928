#!/usr/bin/env bash
# Release a models.train.ultralight run with the decision rule chosen on ilc2021-dev half a (issue 20):
#   [INPUT_H=352] [STAGE1=RUN_DIR_OF_STAGE_1] scripts/release_with_rule.sh RUN_DIR VERSION OUT_DIR
# 1. export best.pt (validation's choice of epoch) at 640 x INPUT_H;
# 2. models.evaluation.decision: class priors, score and one threshold chosen on ilc2021-dev half a
#    (md5(file stem)[0] in 0-7), written into the model's metadata;
# 3. models.evaluation.evaluate as output on ilc2021-dev half b (the report), on all of ilc2021-dev (for reference:
#    half a chose), and on the validation split; ORT latency (2 threads, 200 runs).
set -euo pipefail
run=${1:?usage: $0 RUN_DIR VERSION OUT_DIR}
version=${2:?usage: $0 RUN_DIR VERSION OUT_DIR}
out=${3:?usage: $0 RUN_DIR VERSION OUT_DIR}
data=${DATA:-../shared/data/face-mask-andrewmvd}
ilc=${ILC:-../shared/data/ilc2021-dev}
py=${PYTHON:-python3}
threads=${THREADS:-1}
h=${INPUT_H:-352}
mkdir -p "$out"
"$py" -m models.export --ckpt "$run/best.pt" --out "$run/candidate_$h.onnx" --version "$version" --fp32-weights \
    --input-h "$h" --parity-images "$data/images" --parity-count 8 | tee "$out/export.json"
"$py" -m models.evaluation.decision --model "$run/candidate_$h.onnx" --data "$ilc" --choose a --out "$out/model.onnx" \
    --json "$out/decision_ilc2021_dev_half_a.json" --threads "$threads"
"$py" -m models.evaluation.evaluate --model "$out/model.onnx" --data "$ilc" --split half-b --out "$out/eval_ilc2021_dev_half_b.json" --threads "$threads" > /dev/null
"$py" -m models.evaluation.evaluate --model "$out/model.onnx" --data "$data" --out "$out/eval.json" --plots "$out" --threads "$threads" > /dev/null
"$py" -m models.evaluation.benchmark --model "$out/model.onnx" --runs 200 --threads 2 --json | tee "$out/latency.json"
cp "$run/curves.png" "$out/training_curves.png"
cp "$run/split.json" "$out/split.json"
cp "$run/history.json" "$out/history.json"
if [ -n "${STAGE1:-}" ]; then cp "$STAGE1/history.json" "$out/history_stage1.json"; fi
# the figures stored in the model are those of the half that did not choose
"$py" -m models.evaluation.decision --out "$out/model.onnx" --embed "$out/eval_ilc2021_dev_half_b.json" --embed-label "ilc2021-dev half b (as output)"
