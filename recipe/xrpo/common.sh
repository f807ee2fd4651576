#!/usr/bin/env bash
# What the four comparison runs (run_grpo.sh, run_gspo.sh, run_xrpo_grpo.sh, run_xrpo_gspo.sh) take
# from the machine: paths and hardware, as environment variables. Sourced by them, not run on its own.
# Every other setting is in configs/math_comparison.yaml and its model presets (configs/preset/);
# change one with a Hydra override after the script name (overrides come last, so they win):
#   MODEL_PATH=/models/Qwen2.5-7B-Instruct bash recipe/xrpo/run_grpo.sh preset=qwen2_5_7b_instruct data.seed=2
# DRY_RUN=1 appends `--cfg job`: verl composes and prints the full config, then exits (no GPU, model or
# data needed), which checks every key before a long run.
set -euo pipefail

CONFIG_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/configs"

# ---- paths ------------------------------------------------------------------------------------------
# A local copy of the preset's model; unset, verl loads the preset's Hugging Face id.
MODEL_PATH=${MODEL_PATH:-}
# Made by prepare_math_data.py. All validation sets are in one file; verl reports each data_source.
DATA_DIR=${DATA_DIR:-${HOME}/data/xrpo_math}
TRAIN_FILES=${TRAIN_FILES:-${DATA_DIR}/train.parquet}
VAL_FILES=${VAL_FILES:-${DATA_DIR}/val_all.parquet}
# Checkpoints go to $CKPT_ROOT/<trainer.project_name>/<trainer.experiment_name>.
CKPT_ROOT=${CKPT_ROOT:-${HOME}/checkpoints}

# ---- hardware ---------------------------------------------------------------------------------------
NNODES=${NNODES:-1}
NGPUS=${NGPUS:-8}  # per node

# ---- plumbing ---------------------------------------------------------------------------------------
PYTHON=${PYTHON:-python3}
DRY_RUN=${DRY_RUN:-0}

# launch NAME [extra overrides...]: runs main_ppo on the comparison config with the script's ALGO_ARGS
# (estimator and loss), this machine's paths and GPUs, then the extras. Runs are named NAME-seed<N>.
launch() {
    local name=$1
    shift
    local cmd=(
        "${PYTHON}" -m verl.trainer.main_ppo --config-path="${CONFIG_DIR}" --config-name=math_comparison
        "${ALGO_ARGS[@]}"
        data.train_files="${TRAIN_FILES}"
        data.val_files="${VAL_FILES}"
        trainer.nnodes="${NNODES}"
        trainer.n_gpus_per_node="${NGPUS}"
        # interpolations, resolved by verl: they follow data.seed=... and trainer.project_name=...
        trainer.experiment_name="${name}-seed\${data.seed}"
        trainer.default_local_dir="${CKPT_ROOT}/\${trainer.project_name}/\${trainer.experiment_name}"
    )
    if [[ -n "${MODEL_PATH}" ]]; then
        cmd+=(actor_rollout_ref.model.path="${MODEL_PATH}")
    fi
    cmd+=("$@")
    if [[ "${DRY_RUN}" == 1 ]]; then
        cmd+=(--cfg job)
    fi
    printf '%q ' "${cmd[@]}" >&2
    echo >&2
    "${cmd[@]}"
}
