#!/usr/bin/env bash
# GRPO baseline: group-relative advantages, rollout.n rollouts per prompt, GRPO's loss (token-level
# clipped objective with a KL loss; configs/loss/grpo.yaml). Settings: configs/math_comparison.yaml.
#   bash recipe/xrpo/run_grpo.sh [extra Hydra overrides...]
#   DRY_RUN=1 bash recipe/xrpo/run_grpo.sh     # compose and print the config only
set -euo pipefail
# shellcheck source=recipe/xrpo/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

ALGO_ARGS=(algorithm.adv_estimator=grpo loss=grpo)
launch grpo "$@"
