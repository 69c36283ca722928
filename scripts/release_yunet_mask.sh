#!/usr/bin/env bash
# Release a models.train.yunet run as models/released/yunet_mask (see scripts/release_finetuned.sh):
#   [STAGE1=RUN_DIR_OF_STAGE_1] scripts/release_yunet_mask.sh RUN_DIR VERSION [OUT_DIR]
exec "$(dirname "$0")/release_finetuned.sh" "${1:?usage: $0 RUN_DIR VERSION [OUT_DIR]}" "${2:?usage: $0 RUN_DIR VERSION [OUT_DIR]}" "${3:-models/released/yunet_mask}"
