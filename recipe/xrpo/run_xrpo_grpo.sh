#!/usr/bin/env bash
# XRPO on GRPO's loss: algorithm.adv_estimator=xrpo (rollout planning, in-context seeding, novelty
# sharpening, with the defaults of verl_xrpo/config.py) with exactly run_grpo.sh's loss and KL, at the
# same rollout budget. Settings: configs/math_comparison.yaml; XRPO's own: algorithm.xrpo.*.
#   bash recipe/xrpo/run_xrpo_grpo.sh [extra Hydra overrides, e.g. algorithm.xrpo.seeding.enable=false]
#   DRY_RUN=1 bash recipe/xrpo/run_xrpo_grpo.sh     # compose and print the config only
set -euo pipefail
# shellcheck source=recipe/xrpo/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

ALGO_ARGS=(algorithm.adv_estimator=xrpo loss=grpo)
launch xrpo_grpo "$@"
