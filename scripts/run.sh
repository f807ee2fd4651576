#!/usr/bin/env bash
# The main job, on any machine, with no download: install (idempotent), then a short XRPO training
# with stock `python -m verl.trainer.main_ppo` on the embedded toy setup (python -m recipe.xrpo.scale_model.train).
# Arguments go to the launcher, e.g. `bash scripts/run.sh --steps 20 -- algorithm.xrpo.planning.n_base=3`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
python -m recipe.xrpo.scale_model.train "$@"
