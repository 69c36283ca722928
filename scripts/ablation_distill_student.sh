#!/usr/bin/env bash
# The issue-21 ablation on one student (YuNet-n), schedule (8 epochs) and data, one setting per run:
#   scripts/ablation_distill_student.sh SEED SETTING [SETTING...]
#     nokd     labels only
#     kd       difficulty-aware KD, class term in the sigmoid head's form, box term x 0.1 (the defaults)
#     kdpl     kd + the teacher's confident unlabelled faces as labels
#     kdon     kd with the teacher run on every augmented crop (consistent teaching)
#     kdeq5    KD as seed 000's eq. 5 is printed: softmax class term, box term x 1 (the first ablation)
# Each run trains, then scripts/eval_distill_student.sh exports it and measures validation and
# ilc2021-dev half b; the settings given run one after another (one CPU thread each: start one
# command per free core). Logs and run folders in runs/ds/ (git-ignored); re-running resumes.
# The teacher: TEACHER (default: the released ultralight_mask). The card's table used 1.2.0:
#   git show 4261a6c:models/ultralight_mask/model.onnx > runs/ds/ultralight_1.2.0.onnx
#   TEACHER=runs/ds/ultralight_1.2.0.onnx CACHE=runs/ds/teacher_ultralight.npz scripts/ablation_distill_student.sh 0 nokd kd
# Table: python -m models.train.distill_student summarize runs/ds/*_s?
set -euo pipefail
seed=${1:?usage: $0 SEED SETTING [SETTING...]}
shift
[ "$#" -gt 0 ] || { echo "usage: $0 SEED nokd|kd|kdpl|kdon|kdeq5 ..." >&2; exit 2; }
py=${PYTHON:-python3}
teacher=${TEACHER:-models/released/ultralight_mask/model.onnx}
cache=${CACHE:-runs/ds/teacher_$(basename "$(dirname "$teacher")")_$(basename "$teacher" .onnx).npz}
C=(--data ../shared/data/face-mask-andrewmvd --crop 256 --epochs "${EPOCHS:-8}" --cls-lr-mult 5 --threads 1 --seed "$seed" --resume)
T=(--teacher "$teacher" --teacher-cache "$cache" --kd)
mkdir -p runs/ds
for s in "$@"; do
  case $s in
    nokd) extra=() ;;
    kd) extra=("${T[@]}") ;;
    kdpl) extra=("${T[@]}" --pseudo --pseudo-conf 0.6 --pseudo-iou 0.3) ;;
    kdon) extra=("${T[@]}" --kd-online) ;;
    kdeq5) extra=("${T[@]}" --kd-class-form softmax --kd-box-weight 1) ;;
    *) echo "unknown setting $s" >&2; exit 2 ;;
  esac
  out=runs/ds/${s}_s$seed
  echo "$s seed $seed -> $out (log runs/ds/${s}_s$seed.log)"
  nice -n 15 "$py" -m models.train.distill_student "${C[@]}" "${extra[@]}" --out "$out" > "runs/ds/${s}_s$seed.log" 2>&1
  PYTHON=$py bash scripts/eval_distill_student.sh "$out" >> "runs/ds/${s}_s$seed.log" 2>&1
done
