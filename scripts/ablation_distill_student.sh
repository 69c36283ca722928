#!/usr/bin/env bash
# The issue-21 ablation on one student (YuNet-n), schedule and data: no KD, KD, KD + pseudo-labels.
#   scripts/ablation_distill_student.sh SEED [SETTING...]     (SETTING: nokd kd kdpl; default all three)
# Runs in the background at nice 15 with one thread (the machine is shared), logs and run folders in
# runs/ds/ (git-ignored); re-running resumes an interrupted run (--resume).
set -euo pipefail
seed=${1:?usage: $0 SEED [nokd|kd|kdpl ...]}
shift
if [ "$#" -gt 0 ]; then settings=("$@"); else settings=(nokd kd kdpl); fi
py=${PYTHON:-python3}
C=(--data ../shared/data/face-mask-andrewmvd --crop 256 --epochs "${EPOCHS:-2}" --cls-lr-mult 5 --threads 1 --seed "$seed" --resume)
T=(--teacher models/released/ultralight_mask/model.onnx --teacher-cache runs/ds/teacher_ultralight.npz)
P=(--pseudo --pseudo-conf 0.6 --pseudo-iou 0.3)
mkdir -p runs/ds
for s in "${settings[@]}"; do
  case $s in
    nokd) extra=() ;;
    kd) extra=("${T[@]}" --kd) ;;
    kdpl) extra=("${T[@]}" --kd "${P[@]}") ;;
    *) echo "unknown setting $s" >&2; exit 2 ;;
  esac
  out=runs/ds/${s}_s$seed
  nohup nice -n 15 "$py" -m models.train.distill_student "${C[@]}" "${extra[@]}" --out "$out" > "runs/ds/${s}_s$seed.log" 2>&1 &
  echo "$s seed $seed: pid $! -> $out (log runs/ds/${s}_s$seed.log)"
done
