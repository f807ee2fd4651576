#!/usr/bin/env bash
# Installs verl-xrpo and what its tests need into the current Python, from nothing.
# torch comes first so that verl's dependencies do not pull a CUDA build onto a CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
python -m pip install --quiet --disable-pip-version-check -e ".[test]"
python - <<'PY'
import verl
from verl.trainer.ppo import core_algos
assert "xrpo" in core_algos.ADV_ESTIMATOR_REGISTRY, "verl-xrpo's verl plugin did not register 'xrpo'"
print(f"installed: verl {verl.__version__}, xrpo registered with verl")
PY
