#!/usr/bin/env bash
# XRPO on GSPO's loss: algorithm.adv_estimator=xrpo with exactly run_gspo.sh's loss, at the same
# rollout budget. Settings: configs/math_comparison.yaml; XRPO's own: algorithm.xrpo.*.
#   bash recipe/xrpo/run_xrpo_gspo.sh [extra Hydra overrides...]
#   DRY_RUN=1 bash recipe/xrpo/run_xrpo_gspo.sh     # compose and print the config only
set -euo pipefail
# shellcheck source=recipe/xrpo/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

ALGO_ARGS=(algorithm.adv_estimator=xrpo loss=gspo)
launch xrpo_gspo "$@"
