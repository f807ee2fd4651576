#!/usr/bin/env bash
# The test command: install (idempotent), lint and format check, run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
ruff check verl_xrpo hydra_plugins benchmarks tests scripts recipe
ruff format --check verl_xrpo hydra_plugins benchmarks tests scripts recipe
python -m pytest "$@"
