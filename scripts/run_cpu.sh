#!/usr/bin/env bash
# The main job on any machine, no GPU and no download: install (idempotent), then run.
# Until the CPU training mode lands, the main job is the rollout-budget simulation of XRPO's
# planner against GRPO at the same budget (python -m verl_xrpo.simulate --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
python -m verl_xrpo.simulate "$@"
