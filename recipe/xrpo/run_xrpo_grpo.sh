#!/usr/bin/env bash
# XRPO on GRPO's loss: algorithm.adv_estimator=xrpo (rollout planning, in-context seeding, novelty
# sharpening) with exactly run_grpo.sh's loss and KL, at the same rollout budget (train_batch_size x
# rollout.n per step). XRPO knobs (XRPO_* variables, algorithm.xrpo.*) and the longer prompt budget of
# seeded prompts (XRPO_PROMPT_LENGTH -> actor_rollout_ref.rollout.prompt_length): see common.sh.
#   bash recipe/xrpo/run_xrpo_grpo.sh [extra Hydra overrides, e.g. algorithm.xrpo.seeding.enable=False]
#   DRY_RUN=1 bash recipe/xrpo/run_xrpo_grpo.sh     # compose and print the config only
set -euo pipefail
# shellcheck source=recipe/xrpo/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

ALGO_ARGS=(
    "${XRPO_ARGS[@]}"
    "${GRPO_LOSS_ARGS[@]}"
)
launch xrpo_grpo "$@"
