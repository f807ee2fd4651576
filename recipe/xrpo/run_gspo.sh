#!/usr/bin/env bash
# GSPO baseline: GRPO's group-relative advantages with GSPO's sequence-level importance ratio
# (loss_mode=gspo, loss_agg_mode=seq-mean-token-mean, clip ratios 3e-4 / 4e-4, no KL). Settings: common.sh.
#   bash recipe/xrpo/run_gspo.sh [extra Hydra overrides...]
#   DRY_RUN=1 bash recipe/xrpo/run_gspo.sh     # compose and print the config only
set -euo pipefail
# shellcheck source=recipe/xrpo/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

ALGO_ARGS=(
    algorithm.adv_estimator=grpo
    "${GSPO_LOSS_ARGS[@]}"
)
launch gspo "$@"
