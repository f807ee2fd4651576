#!/usr/bin/env bash
# XRPO on GSPO's loss: algorithm.adv_estimator=xrpo with exactly run_gspo.sh's loss (sequence-level
# ratio, clip 3e-4 / 4e-4, no KL), at the same rollout budget. XRPO knobs and the seeded-prompt budget
# (XRPO_PROMPT_LENGTH -> actor_rollout_ref.rollout.prompt_length): see common.sh.
#   bash recipe/xrpo/run_xrpo_gspo.sh [extra Hydra overrides...]
#   DRY_RUN=1 bash recipe/xrpo/run_xrpo_gspo.sh     # compose and print the config only
set -euo pipefail
# shellcheck source=recipe/xrpo/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

ALGO_ARGS=(
    "${XRPO_ARGS[@]}"
    "${GSPO_LOSS_ARGS[@]}"
)
launch xrpo_gspo "$@"
