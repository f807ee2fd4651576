#!/usr/bin/env bash
# GRPO baseline: group-relative advantages, rollout.n rollouts per prompt, token-level clipped loss with a
# low-variance KL loss (coefficient KL_LOSS_COEF, default 0.001). Settings: common.sh.
#   bash recipe/xrpo/run_grpo.sh [extra Hydra overrides...]
#   DRY_RUN=1 bash recipe/xrpo/run_grpo.sh     # compose and print the config only
set -euo pipefail
# shellcheck source=recipe/xrpo/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

ALGO_ARGS=(
    algorithm.adv_estimator=grpo
    "${GRPO_LOSS_ARGS[@]}"
)
launch grpo "$@"
