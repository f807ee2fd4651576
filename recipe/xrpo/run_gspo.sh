#!/usr/bin/env bash
# GSPO baseline: GRPO's group-relative advantages with GSPO's loss (sequence-level importance ratio,
# tight clipping, no KL; configs/loss/gspo.yaml). Settings: configs/math_comparison.yaml.
#   bash recipe/xrpo/run_gspo.sh [extra Hydra overrides...]
#   DRY_RUN=1 bash recipe/xrpo/run_gspo.sh     # compose and print the config only
set -euo pipefail
# shellcheck source=recipe/xrpo/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

ALGO_ARGS=(algorithm.adv_estimator=grpo loss=gspo)
launch gspo "$@"
